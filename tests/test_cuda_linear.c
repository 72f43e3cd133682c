// test_cuda_linear.c: the GPU's matrix products against scalar references in double: the
// weight-streaming kernel (decode and small batches, every weight type, aligned and odd
// shapes), the cuBLAS path in both modes, and the general GEMM with its transposes.
#ifndef G3_CUDA
#include <stdio.h>
int main(void) {
    puts("test_cuda_linear: skipped: built without CUDA (make CUDA=1)");
    return 0;
}
#else
#include "cuda/cuda_test.h"

// y[T][N] = x . w^T in double; bf16x rounds x to bf16 first (the FAST mode's operands).
static void linear_ref(float *y, const float *x, const float *w, int T, int K, int N, int bf16x) {
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) {
                float xv = x[(long)t * K + k];
                if (bf16x) xv = g3_bf16_to_f32(g3_f32_to_bf16(xv));
                s += (double)xv * w[(long)n * K + k];
            }
            y[(long)t * N + n] = (float)s;
        }
}

static void check_linear(G3Cuda *cu, G3DType wt, int T, int K, int N) {
    float *x = malloc(sizeof(float) * T * K), *wv = malloc(sizeof(float) * N * K);
    float *ref = malloc(sizeof(float) * T * N), *refb = malloc(sizeof(float) * T * N), *got = malloc(sizeof(float) * T * N);
    fill(x, (long)T * K, 2.0f);
    fill(wv, (long)N * K, 0.1f);
    void *w = make_weights(wt, wv, (long)N * K);
    linear_ref(ref, x, wv, T, K, N, 0);
    linear_ref(refb, x, wv, T, K, N, 1);
    float *dx = dev_from(cu, x, sizeof(float) * T * K), *dy = dev_from(cu, NULL, sizeof(float) * T * N);
    void *dw = dev_from(cu, w, (size_t)N * K * g3_dtype_size(wt));
    const char *tn = g3_dtype_name(wt);
    // the streaming kernel (exact in both modes)
    poison(cu, dy, sizeof(float) * T * N);
    CHECK(g3cu_linear_stream(cu, dy, dx, dw, wt, T, K, N) == 0, "%s", g3_error());
    to_host(cu, got, dy, sizeof(float) * T * N);
    double e = rel_err(got, ref, (long)T * N);
    CHECK(all_finite(got, (long)T * N) && e < 1e-5, "stream %s T %d K %d N %d: rel err %.3g", tn, T, K, N, e);
    // cuBLAS, exact (TF32 off)
    poison(cu, dy, sizeof(float) * T * N);
    CHECK(g3cu_linear_blas(cu, dy, dx, dw, wt, T, K, N, G3CU_EXACT) == 0, "%s", g3_error());
    to_host(cu, got, dy, sizeof(float) * T * N);
    e = rel_err(got, ref, (long)T * N);
    CHECK(all_finite(got, (long)T * N) && e < 1e-5, "blas exact %s T %d K %d N %d: rel err %.3g", tn, T, K, N, e);
    // cuBLAS, fast: bf16 weights against the bf16-rounded activations; others TF32
    poison(cu, dy, sizeof(float) * T * N);
    CHECK(g3cu_linear_blas(cu, dy, dx, dw, wt, T, K, N, G3CU_FAST) == 0, "%s", g3_error());
    to_host(cu, got, dy, sizeof(float) * T * N);
    e = wt == G3_BF16 ? rel_err(got, refb, (long)T * N) : rel_err(got, ref, (long)T * N);
    CHECK(all_finite(got, (long)T * N) && e < (wt == G3_BF16 ? 1e-5 : 5e-3), "blas fast %s T %d K %d N %d: rel err %.3g", tn, T,
          K, N, e);
    // the dispatcher
    poison(cu, dy, sizeof(float) * T * N);
    CHECK(g3cu_linear(cu, dy, dx, dw, wt, T, K, N, G3CU_EXACT) == 0, "%s", g3_error());
    to_host(cu, got, dy, sizeof(float) * T * N);
    e = rel_err(got, ref, (long)T * N);
    CHECK(e < 1e-5, "linear %s T %d: rel err %.3g", tn, T, e);
    poison(cu, dy, sizeof(float) * T * N);
    CHECK(g3cu_linear(cu, dy, dx, dw, wt, T, K, N, G3CU_FAST) == 0, "%s", g3_error());
    to_host(cu, got, dy, sizeof(float) * T * N);
    e = rel_err(got, T > 4 && wt == G3_BF16 ? refb : ref, (long)T * N);
    CHECK(all_finite(got, (long)T * N) && e < (T > 4 && wt != G3_BF16 ? 5e-3 : 1e-5), "linear fast %s T %d: rel err %.3g", tn, T, e);
    g3cu_free(cu, dx); g3cu_free(cu, dy); g3cu_free(cu, dw);
    free(x); free(wv); free(w); free(ref); free(refb); free(got);
}

// The fused decode products: q/k/v in one launch (linear_multi) and gate/up with GeGLU
// (linear_geglu) against the separate calls (g3cu_linear, g3cu_geglu), in both modes, at T
// where the fused kernel runs and past it (its fallback): the same sums, up to rounding.
static void check_fused(G3Cuda *cu, G3DType wt, int T, int K, const int N3[3], G3CuMode mode, int erf_form) {
    int NT = N3[0] + N3[1] + N3[2];
    float *x = malloc(sizeof(float) * T * K), *wv = malloc(sizeof(float) * NT * K);
    fill(x, (long)T * K, 2.0f);
    fill(wv, (long)NT * K, 0.1f);
    void *w = make_weights(wt, wv, (long)NT * K);
    char *dw = dev_from(cu, w, (size_t)NT * K * g3_dtype_size(wt));
    float *dx = dev_from(cu, x, sizeof(float) * T * K);
    float *dsep = dev_from(cu, NULL, sizeof(float) * T * NT), *dfus = dev_from(cu, NULL, sizeof(float) * T * NT);
    float *sep = malloc(sizeof(float) * T * NT), *fus = malloc(sizeof(float) * T * NT);
    const void *ws[3];
    float *ys[3];
    long off = 0, yo = 0;
    for (int i = 0; i < 3; i++) {
        ws[i] = dw + off * g3_dtype_size(wt);
        CHECK(g3cu_linear(cu, dsep + yo, dx, ws[i], wt, T, K, N3[i], mode) == 0, "%s", g3_error());
        ys[i] = dfus + yo;
        off += (long)N3[i] * K;
        yo += (long)T * N3[i];
    }
    poison(cu, dfus, sizeof(float) * T * NT);
    CHECK(g3cu_linear_multi(cu, 3, ys, dx, ws, wt, T, K, N3, mode) == 0, "%s", g3_error());
    to_host(cu, sep, dsep, sizeof(float) * T * NT);
    to_host(cu, fus, dfus, sizeof(float) * T * NT);
    // the same products; the warps that share a row are chosen for the whole launch, so where a
    // part alone would get another split its sums may round differently (exact f32 either way)
    double em = rel_err(fus, sep, (long)T * NT);
    CHECK(all_finite(fus, (long)T * NT) && em < 1e-6, "linear_multi %s T %d K %d N %d/%d/%d mode %d: rel err %.3g from the separate calls",
          g3_dtype_name(wt), T, K, N3[0], N3[1], N3[2], (int)mode, em);
    // gate and up: the first N rows of the first two weights
    const int N = N3[0] < N3[1] ? N3[0] : N3[1];
    float *dg = dsep, *du = dsep + (long)T * N;
    CHECK(g3cu_linear(cu, dg, dx, ws[0], wt, T, K, N, mode) == 0 && g3cu_linear(cu, du, dx, ws[1], wt, T, K, N, mode) == 0 &&
              g3cu_geglu(cu, dg, du, (long)T * N, erf_form) == 0,
          "%s", g3_error());
    poison(cu, dfus, sizeof(float) * T * NT);
    CHECK(g3cu_linear_geglu(cu, dfus, dfus + (long)T * N, dx, ws[0], ws[1], wt, T, K, N, erf_form, mode) == 0, "%s", g3_error());
    to_host(cu, sep, dg, sizeof(float) * T * N);
    to_host(cu, fus, dfus, sizeof(float) * T * N);
    double e = rel_err(fus, sep, (long)T * N);
    int same = !memcmp(sep, fus, sizeof(float) * T * N);
    // the same formula in two kernels: equal bits unless the compiler contracted differently
    CHECK(all_finite(fus, (long)T * N) && e < 1e-6, "linear_geglu %s T %d K %d N %d erf %d mode %d: rel err %.3g",
          g3_dtype_name(wt), T, K, N, erf_form, (int)mode, e);
    if (!same) printf("linear_geglu %s T %d K %d N %d: rel err %.3g from the separate calls (not bit-equal)\n", g3_dtype_name(wt), T, K, N, e);
    g3cu_free(cu, dw); g3cu_free(cu, dx); g3cu_free(cu, dsep); g3cu_free(cu, dfus);
    free(x); free(wv); free(w); free(sep); free(fus);
}

static void gemm_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int acc, int bf) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double s = acc ? C[(long)i * N + j] : 0;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(long)k * M + i] : A[(long)i * K + k], b = tb ? B[(long)j * K + k] : B[(long)k * N + j];
                if (bf) { a = g3_bf16_to_f32(g3_f32_to_bf16(a)); b = g3_bf16_to_f32(g3_f32_to_bf16(b)); }
                s += (double)a * b;
            }
            C[(long)i * N + j] = (float)s;
        }
}

static void check_gemm(G3Cuda *cu, int ta, int tb, int M, int N, int K, int acc, G3CuMode mode) {
    float *A = malloc(sizeof(float) * M * K), *B = malloc(sizeof(float) * K * N), *C = malloc(sizeof(float) * M * N),
          *got = malloc(sizeof(float) * M * N);
    fill(A, (long)M * K, 1.0f);
    fill(B, (long)K * N, 1.0f);
    fill(C, (long)M * N, 1.0f);
    float *dA = dev_from(cu, A, sizeof(float) * M * K), *dB = dev_from(cu, B, sizeof(float) * K * N),
          *dC = dev_from(cu, C, sizeof(float) * M * N);
    if (!acc) poison(cu, dC, sizeof(float) * M * N);
    CHECK(g3cu_gemm(cu, ta, tb, M, N, K, dA, dB, dC, acc, mode) == 0, "%s", g3_error());
    to_host(cu, got, dC, sizeof(float) * M * N);
    gemm_ref(ta, tb, M, N, K, A, B, C, acc, mode == G3CU_FAST);
    double e = rel_err(got, C, (long)M * N);
    CHECK(all_finite(got, (long)M * N) && e < 1e-5, "gemm ta %d tb %d %dx%dx%d acc %d mode %d: rel err %.3g", ta, tb, M, N, K, acc,
          mode, e);
    g3cu_free(cu, dA); g3cu_free(cu, dB); g3cu_free(cu, dC);
    free(A); free(B); free(C); free(got);
}

int main(void) {
    G3Cuda *cu = cuda_test_start("test_cuda_linear");
    if (!cu) return 0;
    const G3DType types[] = {G3_BF16, G3_F16, G3_F32};
    // (K, N): the 1B model's attention and MLP widths, a long-and-narrow one (many warps per
    // row), and odd ones (K not a whole number of 16-byte chunks: the scalar kernel; N not a
    // multiple of the rows per tile)
    const int shapes[][2] = {{1152, 1536}, {6912, 96}, {256, 1001}, {40, 37}, {20, 13}, {1000, 7}};
    const int Ts[] = {1, 2, 3, 5, 8, 13, 16, 17, 40};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
            for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) check_linear(cu, types[ti], Ts[k], shapes[si][0], shapes[si][1]);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                check_gemm(cu, ta, tb, 33, 70, 129, acc, G3CU_EXACT);
                check_gemm(cu, ta, tb, 64, 48, 96, acc, G3CU_FAST);
            }
    // the 1B model's q/k/v (1024/256/256 of 1152) and odd widths; gate/up pairs from the first two
    const int fshapes[][4] = {{1152, 1024, 1024, 256}, {256, 37, 61, 5}, {40, 9, 9, 3}, {1152, 6912, 6912, 4}};
    const int fTs[] = {1, 2, 4, 5, 16, 20};
    for (int ti = 0; ti < 3; ti++)
        for (size_t si = 0; si < sizeof fshapes / sizeof fshapes[0]; si++)
            for (size_t k = 0; k < sizeof fTs / sizeof fTs[0]; k++)
                for (int mode = 0; mode < 2; mode++)
                    check_fused(cu, types[ti], fTs[k], fshapes[si][0], &fshapes[si][1], mode ? G3CU_FAST : G3CU_EXACT, (int)(k % 2));
    // a type with no kernel is refused by name
    CHECK(g3cu_linear(cu, NULL, NULL, NULL, G3_I8, 1, 8, 8, G3CU_EXACT) == -1 && strstr(g3_error(), "I8"), "%s", g3_error());
    CHECK(g3cu_sync(cu) == 0, "%s", g3_error());
    g3cu_delete(cu);
    return check_done();
}
#endif
