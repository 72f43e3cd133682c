// vision_ops.c: the CPU backend's ops for the vision tower (backend.h: layernorm, bias_act,
// attention_full) over the tower's row-wise kernels (vision/vops.c: scalar references, their
// AVX-512 versions where not exact) and its blocked attention (vision/vattn.c).
#include <omp.h>

#include "../../vision/vision.h"
#include "../../vision/vops.h"
#include "backend_cpu.h"

void g3_cpu_layernorm(G3Backend *be, float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int exact) {
    (void)be;
    g3_vops_layernorm(y, x, w, b, R, n, eps, !exact);
}

void g3_cpu_bias_act(G3Backend *be, float *y, const float *b, int R, int n, int act, int exact) {
    (void)be;
    if (act) g3_vops_bias_gelu(y, b, R, n, act == 2, !exact);
    else if (b) g3_vops_bias(y, b, R, n);
}

size_t g3_cpu_attention_full_workspace(G3Backend *be, int T, int NH, int HD) {
    (void)be;
    return g3_vision_attention_floats(T, NH * HD, omp_get_max_threads()) * sizeof(float);
}

int g3_cpu_attention_full(G3Backend *be, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                          float scale, G3MatmulMode mode) {
    g3_vision_attention(be, mode == G3_MM_BF16, mode != G3_MM_EXACT, out, q, k, v, T, NH * HD, NH, scale, work, omp_get_max_threads());
    return 0;
}
