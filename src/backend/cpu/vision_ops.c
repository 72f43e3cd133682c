// vision_ops.c: the CPU backend's ops for the vision tower (backend.h: layernorm, bias_act,
// attention_full) over the tower's row-wise kernels (vision/vops.c: scalar references, their
// AVX-512 versions where not exact) and its attention: in bf16 with AVX512-BF16 the fused pass
// (vision/vflash.c), otherwise the blocked one (vision/vattn.c).
#include <omp.h>

#include "../../vision/vision.h"
#include "../../base/base.h"
#include "../../vision/vflash.h"
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
    const int th = omp_get_max_threads();
    const size_t blocked = g3_vision_attention_floats(T, NH * HD, th) * sizeof(float);
    return g3_vflash_best() ? G3_MAX(blocked, g3_vflash_bytes(T, NH * HD, NH, th)) : blocked;
}

int g3_cpu_attention_full(G3Backend *be, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                          float scale, G3MatmulMode mode) {
    const G3VFlashKernels *fk = mode == G3_MM_BF16 ? g3_vflash_best() : NULL;
    if (fk) {  // bf16 with the CPU's bf16 dot product: the fused pass (vflash.h)
        g3_vflash_attention(fk, out, q, k, v, T, NH * HD, NH, scale, work, omp_get_max_threads());
        return 0;
    }
    g3_vision_attention(be, mode == G3_MM_BF16, mode != G3_MM_EXACT, out, q, k, v, T, NH * HD, NH, scale, work, omp_get_max_threads());
    return 0;
}
