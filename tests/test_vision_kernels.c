// test_vision_kernels.c: the tower's fast paths against their references. The row-wise ops'
// vector versions (vops_avx512.c) against the scalar ones (vops.c) on row lengths with tails;
// the blocked attention (vattn.c) against a direct per-row loop in double, with a patch count
// that is not a whole number of its query blocks, in f32 and bf16 products; and a random
// bf16 tower's fast mode (bf16 GEMMs, vector ops) against its exact mode, at every kernel
// level the CPU has (the scalar level runs fast mode on the references).
#include "check.h"

#include <omp.h>

#include "base/base.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "vision/vision.h"
#include "vision/vops.h"

static void fill(float *x, long n, G3Rng *r, float amp) {
    for (long i = 0; i < n; i++) x[i] = amp * (2.0f * (float)(g3_rng_next(r) >> 40) / (float)(1 << 24) - 1.0f);
}

static void test_vops(void) {
    G3Rng r;
    g3_rng_seed(&r, 3);
    const int lens[] = {1, 15, 16, 33, 100, 1152};
    for (int li = 0; li < (int)G3_ARRAY_LEN(lens); li++) {
        const int n = lens[li], R = 3;
        float *x = malloc(sizeof(float) * R * n), *w = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *y0 = malloc(sizeof(float) * R * n), *y1 = malloc(sizeof(float) * R * n);
        fill(x, (long)R * n, &r, 3.0f);
        fill(w, n, &r, 1.0f);
        fill(b, n, &r, 0.5f);
        for (int i = 0; i < R * n; i++) x[i] += 0.7f;  // a mean away from 0
        g3_vops_layernorm(y0, x, w, b, R, n, 1e-6f, 0);
        g3_vops_layernorm(y1, x, w, b, R, n, 1e-6f, 1);
        if (n > 1) CHECK(rel_err(y1, y0, (long)R * n) < 1e-5, "layernorm n=%d rel err %.3g", n, rel_err(y1, y0, (long)R * n));
        memcpy(y0, x, sizeof(float) * R * n);
        memcpy(y1, x, sizeof(float) * R * n);
        g3_vops_bias_gelu(y0, b, R, n, 0, 0);
        g3_vops_bias_gelu(y1, b, R, n, 0, 1);
        CHECK(rel_err(y1, y0, (long)R * n) < 1e-6, "gelu n=%d rel err %.3g", n, rel_err(y1, y0, (long)R * n));
        memcpy(y0, x, sizeof(float) * n);
        memcpy(y1, x, sizeof(float) * n);
        float s0 = g3_vops_softmax_exp(y0, n, 0.3f, 0), s1 = g3_vops_softmax_exp(y1, n, 0.3f, 1);
        CHECK(fabsf(s1 - s0) <= 1e-6f * s0 && rel_err(y1, y0, n) < 1e-6, "softmax n=%d sums %g %g, rel err %.3g", n, s0, s1,
              rel_err(y1, y0, n));
        free(x), free(w), free(b), free(y0), free(y1);
    }
}

// out[NP, D]: softmax(q k^T / sqrt(HD)) v per head, every row seeing every row, in double.
static void attention_ref(float *out, const float *q, const float *k, const float *v, int NP, int D, int NH) {
    const int HD = D / NH;
    double *p = malloc(sizeof(double) * NP);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < NP; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < NP; j++) {
                double s = 0;
                for (int d = 0; d < HD; d++) s += (double)q[(long)i * D + h * HD + d] * k[(long)j * D + h * HD + d];
                p[j] = s / sqrt((double)HD);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < NP; j++) sum += p[j] = exp(p[j] - mx);
            for (int d = 0; d < HD; d++) {
                double o = 0;
                for (int j = 0; j < NP; j++) o += p[j] * v[(long)j * D + h * HD + d];
                out[(long)i * D + h * HD + d] = (float)(o / sum);
            }
        }
    free(p);
}

static void test_attention(void) {
    const int NP = 300, D = 48, NH = 3, threads = 2;  // 300 rows: two whole query blocks and a part
    G3Rng r;
    g3_rng_seed(&r, 5);
    float *q = malloc(sizeof(float) * NP * D), *k = malloc(sizeof(float) * NP * D), *v = malloc(sizeof(float) * NP * D);
    float *ref = malloc(sizeof(float) * NP * D), *out = malloc(sizeof(float) * NP * D);
    float *scratch = malloc(sizeof(float) * g3_vision_attention_floats(NP, D, threads));
    fill(q, (long)NP * D, &r, 1.5f);
    fill(k, (long)NP * D, &r, 1.5f);
    fill(v, (long)NP * D, &r, 1.0f);
    attention_ref(ref, q, k, v, NP, D, NH);
    const struct { int bf16, fast; double tol; } cases[] = {{0, 0, 1e-6}, {0, 1, 1e-6}, {1, 1, 2e-2}};
    for (int i = 0; i < (int)G3_ARRAY_LEN(cases); i++) {
        g3_vision_attention(g3_backend_cpu(), cases[i].bf16, cases[i].fast, out, q, k, v, NP, D, NH, 1.0f / sqrtf((float)(D / NH)), scratch, threads);
        double e = rel_err(out, ref, (long)NP * D);
        CHECK(e < cases[i].tol, "attention bf16=%d fast=%d rel err %.3g (at most %.3g)", cases[i].bf16, cases[i].fast, e, cases[i].tol);
        printf("attention bf16=%d fast=%d rel err %.3g\n", cases[i].bf16, cases[i].fast, e);
    }
    free(q), free(k), free(v), free(ref), free(out), free(scratch);
}

// A small random bf16 tower: fast mode within bf16's rounding of exact mode.
static void test_tower_fast(void) {
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    vc.hidden = 64, vc.inter = 160, vc.layers = 2, vc.heads = 4, vc.image_size = 140, vc.tokens = 25;  // 10 x 10 patches
    G3Vision v;
    if (g3_vision_random(&v, &vc, G3_BF16, 9, 0.1f)) { CHECK(0, "%s", g3_error()); return; }
    const int S = vc.image_size, NP = g3_vision_patches(&vc);
    G3Rng r;
    g3_rng_seed(&r, 11);
    float *px = malloc(sizeof(float) * 3 * S * S), *a = malloc(sizeof(float) * NP * vc.hidden), *b = malloc(sizeof(float) * NP * vc.hidden);
    fill(px, 3L * S * S, &r, 1.0f);
    CHECK(g3_vision_encode(&v, g3_backend_cpu(), G3_MM_EXACT, px, a, NULL) == 0, "%s", g3_error());
    CHECK(g3_vision_encode(&v, g3_backend_cpu(), G3_MM_FAST, px, b, NULL) == 0, "%s", g3_error());
    double e = rel_err(b, a, (long)NP * vc.hidden);
    CHECK(e < 3e-2 && e > 0, "bf16 tower fast vs exact rel err %.3g", e);
    printf("bf16 tower: fast vs exact rel err %.3g (level %s)\n", e, g3_isa_name(g3_kernels_level()));
    free(px), free(a), free(b);
    g3_vision_free(&v);
}

int main(void) {
    omp_set_num_threads(2);
    const G3Isa top = g3_kernels_init(G3_ISA_AVX512BF16);
    for (int lv = G3_ISA_SCALAR; lv <= (int)top; lv++) {
        if (lv != G3_ISA_SCALAR && lv != (int)top) continue;  // the references and the best level
        g3_kernels_init((G3Isa)lv);
        test_vops();
        test_attention();
        test_tower_fast();
    }
    return check_done();
}
