// test_ops.c: the row-wise kernels' fast versions against their scalar references, on odd
// sizes and unaligned pointers: GeGLU (AVX-512 polynomial exp vs libm tanhf), softmax, RMSNorm, dot,
// axpy, and training's GeGLU forward/backward, RMSNorm forward/backward and cross-entropy.
#include <math.h>
#include <stdlib.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return ((*s >> 8) / 16777216.0f - 0.5f) * 2;
}

static double max_rel(const float *a, const float *b, long n) {
    double e = 0;
    for (long i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-6));
    return e;
}

// Training's RMSNorm over 3 rows of n, forward and backward (dx both ways, dw), and the
// cross-entropy of one row of n logits with and without the softcap, in place too.
static void train_rows(long n, unsigned *seed) {
    const int R = 3;
    long m = R * n;
    float *x = malloc(m * sizeof(float)), *dy = malloc(m * sizeof(float)), *w = malloc(n * sizeof(float)), *o[8], rs[2][3];
    for (int k = 0; k < 8; k++) o[k] = calloc(m, sizeof(float));
    for (long i = 0; i < m; i++) { x[i] = 3 * frand(seed); dy[i] = frand(seed); o[6][i] = o[7][i] = frand(seed); }
    for (long i = 0; i < n; i++) w[i] = 0.5f * frand(seed);
    g3_rmsnorm_forward(o[0], rs[0], x, w, R, (int)n, 1e-6f);
    g3_rmsnorm_forward_ref(o[1], rs[1], x, w, R, (int)n, 1e-6f);
    g3_rmsnorm_backward(o[2], o[4], dy, x, w, rs[1], R, (int)n, 0);
    g3_rmsnorm_backward_ref(o[3], o[5], dy, x, w, rs[1], R, (int)n, 0);
    g3_rmsnorm_backward(o[6], o[4] + n, dy, x, w, rs[1], R, (int)n, 1);
    g3_rmsnorm_backward_ref(o[7], o[5] + n, dy, x, w, rs[1], R, (int)n, 1);
    double ey = max_rel(o[0], o[1], m), er = max_rel(rs[0], rs[1], R), edx = max_rel(o[2], o[3], m);
    double eacc = max_rel(o[6], o[7], m), edw = max_rel(o[4], o[5], 2 * n);
    CHECK(ey < 1e-6 && er < 1e-6 && edx < 1e-5 && eacc < 1e-5 && edw < 1e-5,
          "train rmsnorm n=%ld: y %.3g, rstd %.3g, dx %.3g, dx+= %.3g, dw %.3g", n, ey, er, edx, eacc, edw);
    for (int cap = 0; cap <= 1; cap++) {
        float *z = x, *zi = o[1];  // one row of n logits (3 rows' worth of room), spread like a head's
        for (long i = 0; i < n; i++) zi[i] = z[i] *= 4;
        int t = (int)(n / 3);
        double lf = g3_crossentropy_forward_backward(o[2], z, t, (int)n, cap ? 5.0f : 0, 0.3f);
        double lr = g3_crossentropy_forward_backward_ref(o[3], z, t, (int)n, cap ? 5.0f : 0, 0.3f);
        double li = g3_crossentropy_forward_backward(zi, zi, t, (int)n, cap ? 5.0f : 0, 0.3f);
        double ed = 0;  // each entry per unit of dscale: probabilities are tiny next to the target's
        for (long i = 0; i < n; i++) ed = fmax(ed, fabs((double)o[2][i] - o[3][i]) / 0.3 + fabs((double)zi[i] - o[3][i]) / 0.3);
        CHECK(fabs(lf - lr) <= 1e-6 * fmax(1, fabs(lr)) && li == lf && ed < 1e-6,
              "train cross-entropy n=%ld softcap %d: loss %.9g vs %.9g (in place %.9g), dz %.3g", n, cap, lf, lr, li, ed);
    }
    for (int k = 0; k < 8; k++) free(o[k]);
    free(x); free(dy); free(w);
}

static void run_level(int level) {
    unsigned seed = 7;
    long sizes[] = {1, 3, 15, 16, 17, 100, 1000, 70001};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        long n = sizes[si];
        float *g = malloc((n + 1) * sizeof(float)), *u = malloc((n + 1) * sizeof(float)), *r = malloc(n * sizeof(float));
        for (long i = 0; i <= n; i++) { g[i] = 12 * frand(&seed); u[i] = frand(&seed); }
        g[0] = n > 3 ? -95 : g[0];  // far tails: exp saturates, gelu -> 0 or x
        if (n > 3) g[1] = 95;
        for (long i = 0; i < n; i++) r[i] = g[i + 1];
        float *ru = u + 1;
        float *f = malloc(n * sizeof(float));
        for (long i = 0; i < n; i++) f[i] = g[i + 1];
        g3_geglu_ref(r, ru, n, 0);
        g3_geglu(g + 1, ru, n, 0);  // unaligned
        // Both against the formula in double. The fast form x * sigmoid(2u) avoids the
        // cancellation in 1 + tanh(u) for negative x, so it is held tighter than the reference.
        double maxe = 0, maxr = 0;
        for (long i = 0; i < n; i++) {
            double x = f[i], uu = 0.7978845608028654 * (x + 0.044715 * x * x * x);
            double d = 0.5 * x * (1 + tanh(uu)) * ru[i];
            double e = fabs((double)g[i + 1] - d) / (fabs(d) + 1e-6), er = fabs((double)r[i] - d) / (fabs(d) + 1e-6);
            if (e > maxe) maxe = e;
            if (er > maxr) maxr = er;
        }
        CHECK(maxe < 2e-6, "geglu n=%ld: fast max rel err %.3g (reference's own: %.3g)", n, maxe, maxr);
        float a = g3_dot(f, ru, (int)n), b = g3_dot_ref(f, ru, (int)n);
        CHECK(fabsf(a - b) <= 1e-4f * (1 + fabsf(b)) * sqrtf((float)n), "dot n=%ld: %g vs %g", n, a, b);
        for (long i = 0; i < n; i++) r[i] = f[i];
        g3_axpy(f, 0.37f, ru, (int)n);
        g3_axpy_ref(r, 0.37f, ru, (int)n);
        double e = rel_err(f, r, n);
        CHECK(e < 1e-6, "axpy n=%ld: rel err %.3g", n, e);
        // softmax: wide logits, some masked (-inf) entries, against the scalar reference
        for (long i = 0; i < n; i++) { f[i] = 30 * frand(&seed); r[i] = f[i]; }
        for (long i = 2; i < n; i += 7) f[i] = r[i] = -INFINITY;
        // the returned log-normalizer against log(sum exp) in double
        double mx = -INFINITY, lsum = 0;
        for (long i = 0; i < n; i++) mx = fmax(mx, r[i]);
        for (long i = 0; i < n; i++) lsum += r[i] == -INFINITY ? 0 : exp((double)r[i] - mx);
        const double lse = mx + log(lsum);
        const float lf = g3_softmax(f, (int)n), lr = g3_softmax_ref(r, (int)n);
        CHECK(fabs(lf - lse) <= 1e-6 * (1 + fabs(lse)) && fabs(lr - lse) <= 1e-6 * (1 + fabs(lse)),
              "softmax n=%ld: log-normalizer %.9g (reference %.9g) against %.9g", n, lf, lr, lse);
        double se = 0;
        int zeros = 1;
        for (long i = 0; i < n; i++) {
            se = fmax(se, fabs((double)f[i] - r[i]) / (r[i] + 1e-30));
            if (i >= 2 && (i - 2) % 7 == 0 && f[i] != 0) zeros = 0;
        }
        CHECK(se < 1e-5 && zeros, "softmax n=%ld: max rel err %.3g, masked entries exactly 0: %d", n, se, zeros);
        // rmsnorm, in place and unaligned, against the reference
        for (long i = 0; i < n; i++) { f[i] = 3 * frand(&seed) + 0.5f; r[i] = f[i]; g[i + 1] = f[i]; }
        g3_rmsnorm(g + 1, g + 1, ru, (int)n, 1e-6f);
        g3_rmsnorm_ref(r, f, ru, (int)n, 1e-6f);
        e = rel_err(g + 1, r, n);
        CHECK(e < 1e-6, "rmsnorm n=%ld: rel err %.3g", n, e);
        // training GeGLU forward/backward (tanh form), fast against the scalar reference
        {
            float *gg = malloc(n * sizeof(float)), *da = malloc(n * sizeof(float)), *o[6];
            for (int k = 0; k < 6; k++) o[k] = malloc(n * sizeof(float));
            for (long i = 0; i < n; i++) { gg[i] = 8 * frand(&seed); da[i] = frand(&seed); }
            g3_geglu_forward(o[0], gg, ru, n, 0);
            g3_geglu_forward_ref(o[1], gg, ru, n, 0);
            g3_geglu_backward(o[2], o[3], da, gg, ru, n, 0);
            g3_geglu_backward_ref(o[4], o[5], da, gg, ru, n, 0);
            // against the formulas in double (the reference loses digits in 1 + tanh for x < 0)
            double ef = 0, edg = 0, edu = 0, rf = 0, rdg = 0;
            for (long i = 0; i < n; i++) {
                double x = gg[i], t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
                double f = 0.5 * x * (1 + t), df = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
                double wf = f * ru[i], wdg = da[i] * ru[i] * df, wdu = da[i] * f;
                ef = fmax(ef, fabs(o[0][i] - wf) / (fabs(wf) + 1e-6));
                // gelu' is O(1) and crosses zero near x = -0.75: its error is held absolute, per unit of da u
                double sc = fabs((double)da[i] * ru[i]) + 1e-30;
                edg = fmax(edg, fabs(o[2][i] - wdg) / sc);
                edu = fmax(edu, fabs(o[3][i] - wdu) / (fabs(wdu) + 1e-6));
                rf = fmax(rf, fabs(o[1][i] - wf) / (fabs(wf) + 1e-6));
                rdg = fmax(rdg, fabs(o[4][i] - wdg) / sc);
            }
            CHECK(ef < 2e-6 && edg < 1e-6 && edu < 2e-6, "train geglu n=%ld: fast forward %.3g, dg %.3g, du %.3g (reference's own: %.3g, %.3g)", n,
                  ef, edg, edu, rf, rdg);
            for (int k = 0; k < 6; k++) free(o[k]);
            free(gg); free(da);
        }
        train_rows(n, &seed);
        free(g); free(u); free(r); free(f);
    }
    float none[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    const float lnone = g3_softmax(none, 5);
    CHECK(none[0] == 0 && none[4] == 0 && lnone == -INFINITY, "softmax of an all-masked row is all zero, log-normalizer -inf (level %d)",
          level);
}

// GeGLU as the epilogue of the MLP's products (train_pass.c) against the product followed
// by the separate GeGLU pass: the same bits, forward (a, u) and backward (a, dg, du), on a
// size the GEMM splits across threads and one it runs on a single thread.
static void test_geglu_epi(const char *level) {
    static const int shapes[][3] = {{300, 200, 64}, {13, 45, 7}};  // rows, F, C
    unsigned seed = 99;
    for (int s = 0; s < 2; s++) {
        int M = shapes[s][0], F = shapes[s][1], C = shapes[s][2];
        size_t mf = (size_t)M * F;
        float *xn = malloc((size_t)M * C * 4), *wu = malloc((size_t)F * C * 4), *wd = malloc((size_t)C * F * 4);
        float *dmo = malloc((size_t)M * C * 4), *g = malloc(mf * 4), *o[10];
        for (int k = 0; k < 10; k++) o[k] = malloc(mf * 4);
        for (size_t i = 0; i < (size_t)M * C; i++) xn[i] = frand(&seed), dmo[i] = frand(&seed);
        for (size_t i = 0; i < (size_t)F * C; i++) wu[i] = 0.3f * frand(&seed), wd[i] = 0.3f * frand(&seed);
        for (size_t i = 0; i < mf; i++) g[i] = 4 * frand(&seed);
        // forward: o0 = u, o1 = a fused; o2 = u, o3 = a apart
        G3GegluEpi fe = {.a = o[1], .g = g, .u = o[0], .ld = F};
        g3_sgemm_epi(0, 1, M, F, C, xn, wu, o[0], 0, &(G3SgemmEpilogue){g3_geglu_epi, g3_geglu_epi_prefetch, &fe});
        g3_sgemm(0, 1, M, F, C, xn, wu, o[2], 0);
        g3_geglu_forward(o[3], g, o[2], (long)mf, 0);
        int fwd = !memcmp(o[0], o[2], mf * 4) && !memcmp(o[1], o[3], mf * 4);
        // backward: o4 = dg, o5 = du, o6 = a fused; o7, o8, o9 apart (u = o0)
        G3GegluEpi be = {.a = o[6], .dg = o[4], .du = o[5], .g = g, .u = o[0], .ld = F};
        g3_sgemm_epi(0, 0, M, F, C, dmo, wd, o[4], 0, &(G3SgemmEpilogue){g3_geglu_epi, NULL, &be});
        g3_sgemm(0, 0, M, F, C, dmo, wd, o[7], 0);
        g3_geglu_forward(o[9], g, o[0], (long)mf, 0);
        g3_geglu_backward(o[7], o[8], o[7], g, o[0], (long)mf, 0);
        int bwd = !memcmp(o[4], o[7], mf * 4) && !memcmp(o[5], o[8], mf * 4) && !memcmp(o[6], o[9], mf * 4);
        CHECK(fwd && bwd, "%s: GeGLU epilogue M=%d F=%d C=%d: forward %s, backward %s", level, M, F, C,
              fwd ? "same bits" : "DIFFERS", bwd ? "same bits" : "DIFFERS");
        for (int k = 0; k < 10; k++) free(o[k]);
        free(xn), free(wu), free(wd), free(dmo), free(g);
    }
}

int main(void) {
    if (g3_kernels_init(G3_ISA_SCALAR) == G3_ISA_SCALAR) test_geglu_epi("scalar");
    // every SIMD level this CPU has (AVX-512, AVX2 + FMA) against the scalar references
    for (int level = 2; level >= 1; level--) {
        G3Isa want = level == 2 ? G3_ISA_AVX512 : G3_ISA_AVX2;
        if (g3_kernels_init(want) != want || g3_ops_isa() != level) continue;
        printf("row-wise kernels at level %d (%s)\n", level, level == 2 ? "avx512" : "avx2");
        run_level(level);
        test_geglu_epi(level == 2 ? "avx512" : "avx2");
    }
    return check_done();
}
