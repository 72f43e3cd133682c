// test_kernels.c: every kernel level the CPU has (scalar, AVX2, AVX-512, AVX512-BF16)
// against the scalar references, on odd sizes and unaligned pointers: g3_matmul for f32,
// bf16 and f16 weights in exact and fast modes, g3_sgemm and g3_gemm_bf16 in all
// transpose/accumulate combinations, products against a packed B, and the degenerate sizes
// (0 and 1).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "kernels/kernels.h"

static unsigned long long rng = 88172645463325252ull;
static float frand(void) {  // uniform in [-1, 1)
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

// Weights [N, K] of type wt (at a 1-element offset from an aligned base), from f32 values.
static void *make_weights(G3DType wt, int N, int K, void **base) {
    size_t n = (size_t)N * K, es = g3_dtype_size(wt);
    *base = malloc((n + 1) * es);
    char *w = (char *)*base + es;
    for (size_t i = 0; i < n; i++) {
        float v = frand();
        if (wt == G3_F32) ((float *)w)[i] = v;
        else if (wt == G3_BF16) ((uint16_t *)w)[i] = g3_f32_to_bf16(v);
        else ((uint16_t *)w)[i] = g3_f32_to_f16(v);
    }
    return w;
}

// Whether fast mode at this level rounds x to bf16. Where it does, the kernel must match the
// reference's fast mode (x rounded, exact products, f32 sums) to summation-order rounding,
// far tighter than the ~1e-2 the fast contract allows; elsewhere fast runs the exact path.
static int rounds_x(G3Isa isa, G3DType wt, int fast) { return fast && wt == G3_BF16 && isa >= G3_ISA_AVX512BF16; }

// The error of y against yr relative to the size of the terms summed (the reference run on
// |x| and |w|): a plain relative error blows up on an output whose terms cancel, and f32 sums
// in another order are only held to a fraction of the terms' size (one K = 257, N = 1 case
// read 1.8e-5 that way, a few ulps of its terms).
static double matmul_err(const float *y, const float *yr, const float *x, const void *w, G3DType wt, int T, int K, int N,
                         int rx) {
    size_t nw = (size_t)N * K, es = g3_dtype_size(wt);
    float *xa = malloc((size_t)T * K * 4), *ya = malloc((size_t)T * N * 4);
    char *wa = malloc(nw * es);
    for (long i = 0; i < (long)T * K; i++) xa[i] = fabsf(x[i]);
    memcpy(wa, w, nw * es);
    for (size_t i = 0; i < nw; i++) {
        if (wt == G3_F32) ((float *)wa)[i] = fabsf(((float *)wa)[i]);
        else ((uint16_t *)wa)[i] &= 0x7fff;
    }
    g3_matmul_ref(ya, xa, wa, wt, T, K, N, rx);
    double num = 0, den = 0;
    for (long i = 0; i < (long)T * N; i++) {
        double d = (double)y[i] - yr[i];
        num += d * d, den += (double)ya[i] * ya[i];
    }
    free(xa), free(ya), free(wa);
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_matmul(G3Isa isa) {
    static const int Ts[] = {1, 2, 3, 5, 17, 40}, Ks[] = {1, 7, 31, 32, 33, 96, 257}, Ns[] = {1, 3, 17, 64, 130};
    static const G3DType wts[] = {G3_F32, G3_BF16, G3_F16};
    for (int a = 0; a < 3; a++)
        for (int ki = 0; ki < 7; ki++)
            for (int ni = 0; ni < 5; ni++) {
                int K = Ks[ki], N = Ns[ni];
                void *wbase;
                void *w = make_weights(wts[a], N, K, &wbase);
                for (int ti = 0; ti < 6; ti++) {
                    int T = Ts[ti];
                    float *xbase = malloc(((size_t)T * K + 1) * 4), *x = xbase + 1;  // unaligned
                    float *y = (float *)malloc(((size_t)T * N + 3) * 4) + 3, *yr = malloc((size_t)T * N * 4);
                    for (long i = 0; i < (long)T * K; i++) x[i] = frand();
                    for (int fast = 0; fast <= 1; fast++) {
                        for (long i = 0; i < (long)T * N; i++) y[i] = NAN;  // every output must be written
                        g3_matmul(y, x, w, wts[a], T, K, N, fast);
                        g3_matmul_ref(yr, x, w, wts[a], T, K, N, rounds_x(isa, wts[a], fast));
                        double e = matmul_err(y, yr, x, w, wts[a], T, K, N, rounds_x(isa, wts[a], fast));
                        CHECK(e < 1e-5, "%s matmul %s fast=%d T=%d K=%d N=%d: err %g of the terms' size",
                              g3_isa_name(isa), g3_dtype_name(wts[a]), fast, T, K, N, e);
                    }
                    free(xbase), free(y - 3), free(yr);
                }
                free(wbase);
            }
}

// A test epilogue: counts the visits of every element of C and adds 1000 to it, so that a
// missed, repeated or early (before the last depth step) visit shows in C or in the counts.
typedef struct {
    float *C;
    int *seen, N;
} EpiCheck;
static void epi_check(void *ctx, int i0, int j0, int m, int n) {
    EpiCheck *e = ctx;
    for (int i = i0; i < i0 + m; i++)
        for (int j = j0; j < j0 + n; j++) {
#pragma omp atomic
            e->seen[(size_t)i * e->N + j]++;
            e->C[(size_t)i * e->N + j] += 1000.0f;
        }
}
static void epi_prefetch(void *ctx, int i0, int j0, int m, int n) { (void)ctx, (void)i0, (void)j0, (void)m, (void)n; }

static void test_sgemm_epi(G3Isa isa) {
    static const int sizes[][3] = {{1, 1, 1}, {3, 40, 17}, {2, 9, 30}, {97, 130, 300}, {40, 70, 2500}, {300, 600, 64}, {5, 7, 0}};
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++) {
        int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++) {
                int acc = (ta + tb + s) & 1;
                float *A = malloc(((size_t)M * K + 1) * 4), *B = malloc(((size_t)K * N + 1) * 4);
                float *C = malloc((size_t)M * N * 4), *Cr = malloc((size_t)M * N * 4);
                int *seen = calloc((size_t)M * N, sizeof(int));
                for (long i = 0; i < (long)M * K; i++) A[i] = frand();
                for (long i = 0; i < (long)K * N; i++) B[i] = frand();
                for (long i = 0; i < (long)M * N; i++) C[i] = Cr[i] = frand();
                EpiCheck ec = {C, seen, N};
                G3SgemmEpilogue epi = {epi_check, s & 1 ? epi_prefetch : NULL, &ec};
                g3_sgemm_epi(ta, tb, M, N, K, A, B, C, acc, &epi);
                g3_sgemm_ref(ta, tb, M, N, K, A, B, Cr, acc);
                for (long i = 0; i < (long)M * N; i++) Cr[i] += 1000.0f;
                int once = 1;
                for (long i = 0; i < (long)M * N; i++) once &= seen[i] == 1;
                double e = rel_err(C, Cr, (long)M * N);
                CHECK(once && e < 1e-6, "%s sgemm_epi ta=%d tb=%d acc=%d M=%d N=%d K=%d: %s, rel err %g", g3_isa_name(isa), ta, tb,
                      acc, M, N, K, once ? "each element once" : "elements missed or repeated", e);
                free(A), free(B), free(C), free(Cr), free(seen);
            }
    }
}

static void test_sgemm(G3Isa isa) {
    static const int sizes[][3] = {{1, 1, 1}, {1, 17, 33}, {5, 1, 7}, {7, 9, 1}, {13, 31, 40}, {33, 65, 17},
                                   {3, 20, 50}, {64, 64, 64}, {97, 130, 300}, {200, 37, 513}, {8, 32, 256},
                                   {1500, 21, 300}, {20, 2100, 40}, {150, 48, 64},
                                   {40, 70, 2500}, {9, 33, 1025}};  // several depth steps at every ISA's kc
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++) {
        int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
        float *A = (float *)malloc(((size_t)M * K + 1) * 4) + 1, *B = (float *)malloc(((size_t)K * N + 1) * 4) + 1;
        float *C = (float *)malloc(((size_t)M * N + 1) * 4) + 1, *Cr = malloc((size_t)M * N * 4), *C0 = malloc((size_t)M * N * 4);
        for (long i = 0; i < (long)M * K; i++) A[i] = frand();
        for (long i = 0; i < (long)K * N; i++) B[i] = frand();
        for (long i = 0; i < (long)M * N; i++) C0[i] = frand();
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++)
                for (int acc = 0; acc <= 1; acc++) {
                    memcpy(C, C0, (size_t)M * N * 4);
                    memcpy(Cr, C0, (size_t)M * N * 4);
                    g3_sgemm(ta, tb, M, N, K, A, B, C, acc);
                    g3_sgemm_ref(ta, tb, M, N, K, A, B, Cr, acc);
                    double e = rel_err(C, Cr, (long)M * N);
                    CHECK(e < 1e-5, "%s sgemm ta=%d tb=%d acc=%d M=%d N=%d K=%d: rel err %g", g3_isa_name(isa), ta, tb,
                          acc, M, N, K, e);
                }
        free(A - 1), free(B - 1), free(C - 1), free(Cr), free(C0);
        // With row strides past the row lengths (g3_sgemm_ld): the same products, and the
        // padding between C's rows untouched.
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++) {
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 5, ldc = N + 7, acc = (ta + tb) & 1;
                size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
                float *As = malloc(na * 4), *Bs = malloc(nb * 4), *Cs = malloc(nc * 4), *Csr = malloc(nc * 4);
                for (size_t i = 0; i < na; i++) As[i] = frand();
                for (size_t i = 0; i < nb; i++) Bs[i] = frand();
                for (size_t i = 0; i < nc; i++) Cs[i] = Csr[i] = frand();
                g3_sgemm_ld(ta, tb, M, N, K, As, lda, Bs, ldb, Cs, ldc, acc);
                g3_sgemm_ld_ref(ta, tb, M, N, K, As, lda, Bs, ldb, Csr, ldc, acc);
                double e = rel_err(Cs, Csr, (long)nc);
                int pad_same = 1;
                for (int m = 0; m < M; m++)
                    for (int j = N; j < ldc; j++) pad_same &= Cs[(size_t)m * ldc + j] == Csr[(size_t)m * ldc + j];
                CHECK(e < 1e-5 && pad_same, "%s sgemm_ld ta=%d tb=%d M=%d N=%d K=%d: rel err %g, padding %s", g3_isa_name(isa), ta,
                      tb, M, N, K, e, pad_same ? "kept" : "written");
                free(As), free(Bs), free(Cs), free(Csr);
            }
    }
    // Degenerate sizes: K = 0 gives zeros (or leaves C alone when accumulating); M or N = 0 is a no-op.
    float c[4] = {1, 2, 3, 4}, dummy = 5;
    g3_sgemm(0, 0, 2, 2, 0, &dummy, &dummy, c, 1);
    CHECK(c[0] == 1 && c[3] == 4, "K=0 accumulate leaves C");
    g3_sgemm(0, 1, 2, 2, 0, &dummy, &dummy, c, 0);
    CHECK(c[0] == 0 && c[3] == 0, "K=0 gives zeros");
    g3_sgemm(1, 1, 0, 2, 3, &dummy, &dummy, c, 0);
    g3_sgemm(1, 0, 2, 0, 3, &dummy, &dummy, c, 0);
    float y[2] = {7, 7};
    g3_matmul(y, &dummy, &dummy, G3_F32, 1, 0, 2, 0);
    CHECK(y[0] == 0 && y[1] == 0, "matmul K=0 gives zeros");
}

static void epi_double(void *ctx, int i0, int j0, int m, int n) {  // exact, so the errors stay relative to C
    EpiCheck *e = ctx;
    for (int i = i0; i < i0 + m; i++)
        for (int j = j0; j < j0 + n; j++) {
#pragma omp atomic
            e->seen[(size_t)i * e->N + j]++;
            e->C[(size_t)i * e->N + j] *= 2.0f;
        }
}

// g3_gemm_bf16 against its reference (the operands rounded, f32 sums) at every level: pair
// packing of every transpose, odd depths (a zero-padded last pair), partial tiles, several
// depth steps, and the epilogue once per element. It must differ from the f32 product by
// about bf16's rounding, or it did not round.
static void test_gemm_bf16(G3Isa isa) {
    static const int sizes[][3] = {{1, 1, 1}, {5, 1, 7}, {13, 31, 40}, {33, 65, 17}, {97, 130, 301}, {8, 32, 256},
                                   {1500, 21, 300}, {20, 2100, 41}, {40, 70, 4500}, {9, 33, 2049}, {300, 600, 64}};
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++) {
        int M = sizes[s][0], N = sizes[s][1], K = sizes[s][2];
        float *A = (float *)malloc(((size_t)M * K + 1) * 4) + 1, *B = (float *)malloc(((size_t)K * N + 1) * 4) + 1;
        float *C = malloc((size_t)M * N * 4), *Cr = malloc((size_t)M * N * 4), *C0 = malloc((size_t)M * N * 4);
        float *Cf = malloc((size_t)M * N * 4);
        int *seen = malloc((size_t)M * N * sizeof(int));
        for (long i = 0; i < (long)M * K; i++) A[i] = frand();
        for (long i = 0; i < (long)K * N; i++) B[i] = frand();
        for (long i = 0; i < (long)M * N; i++) C0[i] = frand();
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++) {
                int acc = (ta + tb + s) & 1;
                memcpy(C, C0, (size_t)M * N * 4), memcpy(Cr, C0, (size_t)M * N * 4), memcpy(Cf, C0, (size_t)M * N * 4);
                memset(seen, 0, (size_t)M * N * sizeof(int));
                EpiCheck ec = {C, seen, N};
                G3SgemmEpilogue epi = {epi_double, epi_prefetch, &ec};
                if (s & 1) g3_gemm_bf16_epi(ta, tb, M, N, K, A, B, C, acc, &epi);
                else g3_gemm_bf16(ta, tb, M, N, K, A, B, C, acc);
                g3_gemm_bf16_ref(ta, tb, M, N, K, A, B, Cr, acc);
                g3_sgemm_ref(ta, tb, M, N, K, A, B, Cf, acc);
                int once = 1;
                for (long i = 0; i < (long)M * N; i++) {
                    if (s & 1) Cr[i] *= 2.0f, Cf[i] *= 2.0f, once &= seen[i] == 1;
                }
                double e = rel_err(C, Cr, (long)M * N), ef = rel_err(C, Cf, (long)M * N);
                int rounds = K < 8 || ef > 1e-4;  // a few products can round alike
                CHECK(once && e < 1e-5 && rounds, "%s gemm_bf16 ta=%d tb=%d acc=%d M=%d N=%d K=%d: rel err %g (%g from f32)%s",
                      g3_isa_name(isa), ta, tb, acc, M, N, K, e, ef, once ? "" : ", epilogue missed or repeated elements");
            }
        free(A - 1), free(B - 1), free(C), free(Cr), free(C0), free(Cf), free(seen);
    }
}

// g3_sgemm_packed: B packed once (both storage orders), products against slices of it (depth
// and column offsets, partial panels, accumulate) against the reference on the same slices.
static void test_sgemm_packed(G3Isa isa) {
    const int K = 150, N = 100, M = 13, ldb_pad = 3, lda = 160, ldc = 120;
    const int al = g3_sgemm_packed_cols();
    float *A = malloc((size_t)M * lda * 4), *C = malloc((size_t)M * ldc * 4), *Cr = malloc((size_t)M * ldc * 4);
    float *buf = malloc(g3_sgemm_packed_floats(K, N) * 4);
    for (int i = 0; i < M * lda; i++) A[i] = frand();
    for (int tb = 0; tb <= 1; tb++) {
        int ldb = (tb ? K : N) + ldb_pad;
        float *B = malloc((size_t)(tb ? N : K) * ldb * 4);
        for (int i = 0; i < (tb ? N : K) * ldb; i++) B[i] = frand();
        G3PackedB pb;
        g3_sgemm_pack_b(&pb, buf, tb, K, N, B, ldb);
        static const int sl[][5] = {{13, 100, 150, 0, 0}, {5, 37, 64, 10, 1}, {8, 33, 1, 149, 2}, {1, 7, 20, 3, 3}};  // m n k k0 n0-panel
        for (int c = 0; c < 4; c++)
            for (int acc = 0; acc <= 1; acc++) {
                int m = sl[c][0], k0 = sl[c][3], n0 = sl[c][4] * al, n = G3_MIN(sl[c][1], N - n0), k = G3_MIN(sl[c][2], K - k0);
                for (int i = 0; i < M * ldc; i++) C[i] = Cr[i] = frand();
                g3_sgemm_packed(m, n, k, A, lda, &pb, k0, n0, C, ldc, acc);
                const float *Bs = tb ? B + (size_t)n0 * ldb + k0 : B + (size_t)k0 * ldb + n0;
                g3_sgemm_ld_ref(0, tb, m, n, k, A, lda, Bs, ldb, Cr, ldc, acc);
                double e = rel_err(C, Cr, (long)M * ldc);
                CHECK(e < 1e-5, "%s sgemm_packed tb=%d acc=%d m=%d n=%d k=%d k0=%d n0=%d: rel err %g", g3_isa_name(isa), tb, acc, m,
                      n, k, k0, n0, e);
            }
        free(B);
    }
    free(A), free(C), free(Cr), free(buf);
}

static void test_large(G3Isa isa, int T, int K, int N) {
    void *wbase;
    void *w = make_weights(G3_BF16, N, K, &wbase);
    float *x = malloc((size_t)T * K * 4), *y = malloc((size_t)T * N * 4), *yr = malloc((size_t)T * N * 4);
    for (long i = 0; i < (long)T * K; i++) x[i] = frand();
    for (int fast = 0; fast <= 1; fast++) {
        g3_matmul(y, x, w, G3_BF16, T, K, N, fast);
        g3_matmul_ref(yr, x, w, G3_BF16, T, K, N, rounds_x(isa, G3_BF16, fast));
        double e = rel_err(y, yr, (long)T * N);
        CHECK(e < 1e-5, "%s bf16 fast=%d T=%d K=%d N=%d: rel err %g", g3_isa_name(isa), fast, T, K, N, e);
    }
    free(wbase), free(x), free(y), free(yr);
}

// Larger products, so that the threaded paths (several column shares) and the K chunks of
// the bf16 kernel (K > 2304) run too.
static void test_threaded(G3Isa isa) {
    test_large(isa, 9, 1000, 700);
    test_large(isa, 6, 5001, 45);
    test_large(isa, 4, 1100, 301);  // the few-rows streaming path (AVX2: T <= 8, K <= 1536)
    test_large(isa, 7, 1536, 67);
}

int main(void) {
    G3Isa top = g3_kernels_init(G3_ISA_AVX512BF16);
    printf("detected: %s\n", g3_isa_name(top));
    for (int isa = G3_ISA_SCALAR; isa <= (int)top; isa++) {
        CHECK(g3_kernels_init((G3Isa)isa) == (G3Isa)isa, "init %s", g3_isa_name((G3Isa)isa));
        test_matmul((G3Isa)isa);
        test_sgemm((G3Isa)isa);
        test_sgemm_epi((G3Isa)isa);
        test_gemm_bf16((G3Isa)isa);
        test_sgemm_packed((G3Isa)isa);
        test_threaded((G3Isa)isa);
    }
    g3_kernels_init(top);
    return check_done();
}
