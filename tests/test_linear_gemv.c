// test_linear_gemv.c: the CPU backend's decode products (backend/cpu/linear_gemv.c): linear,
// linear_multi (q, k, v in one parallel region) and linear_geglu (gate, up and GeGLU in one)
// give the kernels' own results bit for bit (g3_matmul for the float types, one g3_qdot kernel
// call per row on the int8 activations for the block types, the type's g3_qdot_*_ref for
// repacked Q4_0 / Q8_0 / Q5_0 / Q4_K / Q6_K; then g3_geglu_forward), for every weight
// type with a CPU kernel (F32, BF16, F16, Q8_0, Q4_0, Q5_0, Q4_K and Q6_K plain and repacked;
// mixed block types in one call), 1 to 3 activation rows (the fused path) and 5 (the fallback
// to linear), fast and exact modes, at odd widths that cut the column chunks mid-group.
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/base.h"
#include "check.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_q4kx16.h"
#include "kernels/cpu/quant_q4x16.h"
#include "kernels/cpu/quant_q5x16.h"
#include "kernels/cpu/quant_q6kx16.h"
#include "kernels/cpu/quant_q8x16.h"
#include "kernels/kernels.h"
#include "kernels/train_ops.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float uniform(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)(rng >> 40) / 16777216.0f * 2.0f - 1.0f;
}

typedef struct {
    G3Weight w;
    void *data, *packed;
} TestW;

// N x K random weights of type t (from f32 through the type's reference converter); a Q4_0
// weight also gets its repacked copy when `repack` has bit 0, a Q8_0 weight bit 1, Q5_0 bit 2,
// Q4_K bit 3, Q6_K bit 4.
static TestW make_w(G3DType t, int N, int K, int repack) {
    const int64_t rb = g3_type_row_bytes(t, K);
    TestW tw = {{t, N, K, rb, NULL, G3_MEM_HOST, NULL}, g3_malloc_aligned((size_t)(rb * N) + 64), NULL};
    float *f = malloc((size_t)K * sizeof *f);
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++) f[k] = uniform() * 0.1f;
        g3_type(t)->from_f32((char *)tw.data + n * rb, f, K);
    }
    free(f);
    tw.w.data = tw.data;
    if ((repack & 1) && t == G3_Q4_0) {
        tw.packed = g3_malloc_aligned((size_t)g3_q4x16_bytes(N, K / 32));
        g3_q4x16_pack(tw.packed, tw.data, rb, N, K / 32);
        tw.w.packed = tw.packed;
    }
    if ((repack & 2) && t == G3_Q8_0) {
        tw.packed = g3_malloc_aligned((size_t)g3_q8x16_bytes(N, K / 32));
        g3_q8x16_pack(tw.packed, tw.data, rb, N, K / 32);
        tw.w.packed = tw.packed;
    }
    if ((repack & 4) && t == G3_Q5_0) {
        tw.packed = g3_malloc_aligned((size_t)g3_q5x16_bytes(N, K / 32));
        g3_q5x16_pack(tw.packed, tw.data, rb, N, K / 32);
        tw.w.packed = tw.packed;
    }
    if ((repack & 8) && t == G3_Q4_K) {
        tw.packed = g3_malloc_aligned((size_t)g3_q4kx16_bytes(N, K / 32));
        g3_q4kx16_pack(tw.packed, tw.data, rb, N, K / 32);
        tw.w.packed = tw.packed;
    }
    if ((repack & 16) && t == G3_Q6_K) {
        tw.packed = g3_malloc_aligned((size_t)g3_q6kx16_bytes(N, K / 32));
        g3_q6kx16_pack(tw.packed, tw.data, rb, N, K / 32);
        tw.w.packed = tw.packed;
    }
    return tw;
}
static void free_w(TestW *tw) { g3_free_aligned(tw->data), g3_free_aligned(tw->packed); }

static float *rows(int R, int K) {
    float *x = malloc((size_t)R * K * sizeof *x);
    for (long i = 0; i < (long)R * K; i++) x[i] = uniform() * (1.0f + (float)(i % 7));
    return x;
}

// What linear computed before linear_gemv.c: g3_matmul, or one dot kernel call per (row,
// output) on the activations quantized as linear_quant.c does; linear itself where the fused
// path does not apply (5 rows or more, exact mode over block types).
static void ref_linear(float *y, const float *x, const G3Weight *w, int R, G3MatmulMode mode) {
    const G3DType t = w->type;
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32;
    const int isfloat = t == G3_F32 || t == G3_BF16 || t == G3_F16;
    if (R >= 4 || (!isfloat && mode == G3_MM_EXACT) || (t == G3_F32 && mode == G3_MM_BF16)) {
        G3Backend *be = g3_backend_cpu();
        CHECK(be->linear(be, y, x, w, R, mode) == 0, "%s", g3_error());
        return;
    }
    if (isfloat) {
        g3_matmul(y, x, w->data, t, R, K, N, mode != G3_MM_EXACT);
        return;
    }
    G3BlockQ8A *qa = malloc((size_t)R * nb * sizeof *qa);
    for (int r = 0; r < R; r++) g3_qdot_quantizer(g3_qdot_level())(qa + (size_t)r * nb, x + (size_t)r * K, nb);
    const G3QDot dot = !w->packed   ? g3_qdot_kernel(g3_qdot(), t)
                       : t == G3_Q4_0 ? g3_qdot_q4_0_ref
                       : t == G3_Q8_0 ? g3_qdot_q8_0_ref
                       : t == G3_Q4_K ? g3_qdot_q4_k_ref
                       : t == G3_Q6_K ? g3_qdot_q6_k_ref
                                      : g3_qdot_q5_0_ref;
    for (int n = 0; n < N; n++)
        for (int r = 0; r < R; r++) y[(size_t)r * N + n] = dot(g3_weight_row(w, n), qa + (size_t)r * nb, nb);
    free(qa);
}

// linear_multi over three weights of types t[0..2], and linear on each, against ref_linear.
static void test_multi(const G3DType t[3], int K, const int N[3], int R, G3MatmulMode mode, int repack) {
    G3Backend *be = g3_backend_cpu();
    TestW tw[3];
    const G3Weight *w[3];
    float *ys[3], *yf[3];
    for (int i = 0; i < 3; i++) {
        tw[i] = make_w(t[i], N[i], K, repack);
        w[i] = &tw[i].w;
        ys[i] = malloc((size_t)R * N[i] * sizeof(float));
        yf[i] = malloc((size_t)R * N[i] * sizeof(float));
        memset(yf[i], 0xff, (size_t)R * N[i] * sizeof(float));  // NaN: an output left unwritten shows
    }
    float *x = rows(R, K);
    CHECK(be->linear_multi(be, 3, yf, x, w, R, mode) == 0, "%s", g3_error());
    for (int i = 0; i < 3; i++) {
        const size_t bytes = (size_t)R * N[i] * sizeof(float);
        ref_linear(ys[i], x, w[i], R, mode);
        CHECK(memcmp(ys[i], yf[i], bytes) == 0, "linear_multi %s/%s/%s%s K %d R %d mode %d: product %d (N %d) differs (rel %.3g)",
              g3_dtype_name(t[0]), g3_dtype_name(t[1]), g3_dtype_name(t[2]), repack ? " repacked" : "", K, R, mode, i, N[i],
              rel_err(yf[i], ys[i], (long)R * N[i]));
        memset(yf[i], 0xff, bytes);
        CHECK(be->linear(be, yf[i], x, w[i], R, mode) == 0 && memcmp(ys[i], yf[i], bytes) == 0,
              "linear %s%s K %d N %d R %d mode %d: differs (rel %.3g)", g3_dtype_name(t[i]), repack ? " repacked" : "", K, N[i], R,
              mode, rel_err(yf[i], ys[i], (long)R * N[i]));
    }
    for (int i = 0; i < 3; i++) free_w(&tw[i]), free(ys[i]), free(yf[i]);
    free(x);
}

// linear_geglu against ref_linear twice and g3_geglu_forward.
static void test_geglu(G3DType t, int K, int N, int R, G3MatmulMode mode, int erf_form, int repack) {
    G3Backend *be = g3_backend_cpu();
    TestW wg = make_w(t, N, K, repack), wu = make_w(t, N, K, repack);
    float *x = rows(R, K);
    const size_t bytes = (size_t)R * N * sizeof(float);
    float *g = malloc(bytes), *u = malloc(bytes), *a = malloc(bytes), *af = malloc(bytes), *uf = malloc(bytes);
    memset(af, 0xff, bytes);
    ref_linear(g, x, &wg.w, R, mode);
    ref_linear(u, x, &wu.w, R, mode);
    g3_geglu_forward(a, g, u, (long)R * N, erf_form);
    CHECK(be->linear_geglu(be, af, uf, x, &wg.w, &wu.w, R, erf_form, mode) == 0, "%s", g3_error());
    CHECK(memcmp(a, af, bytes) == 0, "linear_geglu %s%s K %d N %d R %d mode %d erf %d: differs from the separate ops (rel %.3g)",
          g3_dtype_name(t), repack ? " repacked" : "", K, N, R, mode, erf_form, rel_err(af, a, (long)R * N));
    free_w(&wg), free_w(&wu), free(x), free(g), free(u), free(a), free(af), free(uf);
}

int main(void) {
    G3Backend *be = g3_backend_cpu();
    CHECK(be->linear_multi && be->linear_geglu, "the CPU backend has no fused decode ops");
    if (!be->linear_multi || !be->linear_geglu) return check_done();
    const G3DType types[] = {G3_F32, G3_BF16, G3_F16, G3_Q8_0, G3_Q4_0, G3_Q5_0, G3_Q4_K, G3_Q6_K};
    const int Rs[] = {1, 2, 3, 5};
    const G3MatmulMode modes[] = {G3_MM_FAST, G3_MM_EXACT};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3DType t = types[ti];
        const int K = g3_type(t)->block == 256 ? 512 : 96;  // K-quants: whole super-blocks
        // repacked copies: Q4_0 (bit 0), Q8_0 (bit 1), Q5_0 (bit 2), Q4_K (bit 3), Q6_K (bit 4)
        const int rbit = t == G3_Q4_0 ? 1 : t == G3_Q8_0 ? 2 : t == G3_Q5_0 ? 4 : t == G3_Q4_K ? 8 : t == G3_Q6_K ? 16 : 0;
        for (int repack = 0; repack <= rbit; repack += rbit ? rbit : 1)
            for (size_t ri = 0; ri < sizeof Rs / sizeof *Rs; ri++)
                for (size_t mi = 0; mi < 2; mi++) {
                    const G3DType t3[3] = {t, t, t};
                    const int N3[3] = {67, 16, 33};
                    test_multi(t3, K, N3, Rs[ri], modes[mi], repack);
                    test_geglu(t, K, 300, Rs[ri], modes[mi], 0, repack);
                }
        // a big one: many chunks per product, both GeGLU forms
        const int Nb[3] = {1000, 256, 256};
        const G3DType t3[3] = {t, t, t};
        test_multi(t3, K, Nb, 1, G3_MM_FAST, 1);
        test_geglu(t, K, 1200, 1, G3_MM_FAST, 0, 1);
        test_geglu(t, K, 1200, 2, G3_MM_FAST, 1, 1);
        if (rbit > 1) {  // and repacked (Q8_0, Q5_0, Q4_K, Q6_K)
            test_multi(t3, K, Nb, 1, G3_MM_FAST, rbit);
            test_geglu(t, K, 1200, 1, G3_MM_FAST, 0, rbit);
            test_geglu(t, K, 1200, 2, G3_MM_FAST, 1, rbit);
        }
    }
    // mixed block types in one call share the int8 activations (Q4_K_M files: Q5_0 / Q8_0 beside
    // each other); float and block types mixed fall back to linear
    const int N3[3] = {67, 16, 33};
    const G3DType mix1[3] = {G3_Q5_0, G3_Q8_0, G3_Q4_0}, mix2[3] = {G3_BF16, G3_Q8_0, G3_F32}, mix3[3] = {G3_Q4_K, G3_Q6_K, G3_Q8_0};
    for (int R = 1; R <= 3; R++) {
        test_multi(mix1, 256, N3, R, G3_MM_FAST, 1);
        test_multi(mix1, 256, N3, R, G3_MM_FAST, 7);  // all three repacked
        test_multi(mix2, 256, N3, R, G3_MM_FAST, 0);
        test_multi(mix3, 512, N3, R, G3_MM_FAST, 8);  // a K-quant repacked beside the ggml rows of another
        test_multi(mix3, 512, N3, R, G3_MM_FAST, 26);  // all three repacked
    }
    return check_done();
}
