// test_cuda_ops.c: the GPU's row-wise and element-wise ops against plain scalar references:
// RMSNorm (Gemma's 1 + w), the fused residual + norm, RoPE tables, QK-norm + RoPE, GeGLU
// (both forms), add, softcap, the embedding with its sqrt(hidden) scale, and argmax.
#ifndef G3_CUDA
#include <stdio.h>
int main(void) {
    puts("test_cuda_ops: skipped: built without CUDA (make CUDA=1)");
    return 0;
}
#else
#include "cuda/cuda_test.h"

static void rmsnorm_ref(float *y, const float *x, const float *w, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = (float)(x[i] * r * (1.0 + w[i]));
}

static void rope_ref(float *v, int hd, const float *c, const float *s) {
    int h2 = hd / 2;
    for (int d = 0; d < h2; d++) {
        double a = v[d], b = v[d + h2];
        v[d] = (float)(a * c[d] - b * s[d]);
        v[d + h2] = (float)(b * c[d] + a * s[d]);
    }
}

static double gelu_ref(double x, int erf_form) {
    return erf_form ? 0.5 * x * (1 + erf(x / sqrt(2.0))) : 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

static void test_norms(G3Cuda *cu) {
    const int ns[] = {1152, 5, 3000};
    for (int k = 0; k < 3; k++) {
        const int n = ns[k], R = 7;
        float *x = malloc(sizeof(float) * R * n), *t = malloc(sizeof(float) * R * n), *w = malloc(sizeof(float) * n),
              *w2 = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * R * n), *ref2 = malloc(sizeof(float) * R * n),
              *got = malloc(sizeof(float) * R * n);
        fill(x, (long)R * n, 3.0f);
        fill(t, (long)R * n, 50.0f);
        fill(w, n, 0.5f);
        fill(w2, n, 0.5f);
        float *dx = dev_from(cu, x, sizeof(float) * R * n), *dy = dev_from(cu, NULL, sizeof(float) * R * n),
              *dt = dev_from(cu, t, sizeof(float) * R * n), *dw = dev_from(cu, w, sizeof(float) * n),
              *dw2 = dev_from(cu, w2, sizeof(float) * n);
        for (int r = 0; r < R; r++) rmsnorm_ref(ref + (long)r * n, x + (long)r * n, w, n, 1e-6f);
        poison(cu, dy, sizeof(float) * R * n);
        CHECK(g3cu_rmsnorm(cu, dy, dx, dw, R, n, 1e-6f) == 0, "%s", g3_error());
        to_host(cu, got, dy, sizeof(float) * R * n);
        CHECK(rel_err(got, ref, (long)R * n) < 1e-6, "rmsnorm n %d: %.3g", n, rel_err(got, ref, (long)R * n));
        // in place
        CHECK(g3cu_rmsnorm(cu, dx, dx, dw, R, n, 1e-6f) == 0, "%s", g3_error());
        to_host(cu, got, dx, sizeof(float) * R * n);
        CHECK(rel_err(got, ref, (long)R * n) < 1e-6, "rmsnorm in place n %d", n);
        // x += norm(t, w); xn = norm(x, w2), with xn aliasing t
        g3cu_upload(cu, dx, x, sizeof(float) * R * n);
        for (int r = 0; r < R; r++) {
            float *xr = x + (long)r * n, *tr = ref + (long)r * n;
            rmsnorm_ref(tr, t + (long)r * n, w, n, 1e-6f);
            for (int i = 0; i < n; i++) xr[i] += tr[i];
            rmsnorm_ref(ref2 + (long)r * n, xr, w2, n, 1e-6f);
        }
        CHECK(g3cu_add_rmsnorm(cu, dx, dt, dt, dw, dw2, R, n, 1e-6f) == 0, "%s", g3_error());
        to_host(cu, got, dx, sizeof(float) * R * n);
        CHECK(rel_err(got, x, (long)R * n) < 1e-6, "add_rmsnorm x n %d: %.3g", n, rel_err(got, x, (long)R * n));
        to_host(cu, got, dt, sizeof(float) * R * n);
        CHECK(rel_err(got, ref2, (long)R * n) < 1e-6, "add_rmsnorm xn n %d: %.3g", n, rel_err(got, ref2, (long)R * n));
        g3cu_free(cu, dx); g3cu_free(cu, dy); g3cu_free(cu, dt); g3cu_free(cu, dw); g3cu_free(cu, dw2);
        free(x); free(t); free(w); free(w2); free(ref); free(ref2); free(got);
    }
}

static void test_rope(G3Cuda *cu) {
    const int hds[] = {256, 64, 32, 18};
    for (int k = 0; k < 4; k++) {
        const int hd = hds[k], h2 = hd / 2, R = 5, NH = 4, NKV = 2;
        int32_t pos[5] = {0, 1, 17, 4095, 32767};
        float *c = malloc(sizeof(float) * R * h2), *s = malloc(sizeof(float) * R * h2), *gc = malloc(sizeof(float) * R * h2),
              *gs = malloc(sizeof(float) * R * h2);
        for (int r = 0; r < R; r++)
            for (int d = 0; d < h2; d++) {
                double a = pos[r] * (pow(10000.0, -2.0 * d / hd) / 8.0);
                c[r * h2 + d] = (float)cos(a);
                s[r * h2 + d] = (float)sin(a);
            }
        int32_t *dpos = dev_from(cu, pos, sizeof pos);
        float *dc = dev_from(cu, NULL, sizeof(float) * R * h2), *ds = dev_from(cu, NULL, sizeof(float) * R * h2);
        CHECK(g3cu_rope_tables(cu, dc, ds, dpos, R, hd, 10000.0, 8.0) == 0, "%s", g3_error());
        to_host(cu, gc, dc, sizeof(float) * R * h2);
        to_host(cu, gs, ds, sizeof(float) * R * h2);
        double md = 0;
        for (int i = 0; i < R * h2; i++) md = fmax(md, fmax(fabs(gc[i] - c[i]), fabs(gs[i] - s[i])));
        CHECK(md < 1e-6, "rope tables hd %d: max diff %.3g", hd, md);
        // QK-norm + RoPE, with and without the norm
        for (int norm = 0; norm < 2; norm++) {
            float *q = malloc(sizeof(float) * R * NH * hd), *kk = malloc(sizeof(float) * R * NKV * hd),
                  *qw = malloc(sizeof(float) * hd), *kw = malloc(sizeof(float) * hd), *got = malloc(sizeof(float) * R * NH * hd);
            fill(q, (long)R * NH * hd, 4.0f);
            fill(kk, (long)R * NKV * hd, 4.0f);
            fill(qw, hd, 0.5f);
            fill(kw, hd, 0.5f);
            float *dq = dev_from(cu, q, sizeof(float) * R * NH * hd), *dk = dev_from(cu, kk, sizeof(float) * R * NKV * hd),
                  *dqw = dev_from(cu, qw, sizeof(float) * hd), *dkw = dev_from(cu, kw, sizeof(float) * hd);
            CHECK(g3cu_qk_norm_rope(cu, dq, dk, norm ? dqw : NULL, norm ? dkw : NULL, dc, ds, R, NH, NKV, hd, 1e-6f) == 0, "%s",
                  g3_error());
            for (int r = 0; r < R; r++) {
                for (int h = 0; h < NH; h++) {
                    float *v = q + ((long)r * NH + h) * hd;
                    if (norm) rmsnorm_ref(v, v, qw, hd, 1e-6f);
                    rope_ref(v, hd, c + r * h2, s + r * h2);
                }
                for (int h = 0; h < NKV; h++) {
                    float *v = kk + ((long)r * NKV + h) * hd;
                    if (norm) rmsnorm_ref(v, v, kw, hd, 1e-6f);
                    rope_ref(v, hd, c + r * h2, s + r * h2);
                }
            }
            to_host(cu, got, dq, sizeof(float) * R * NH * hd);
            CHECK(rel_err(got, q, (long)R * NH * hd) < 1e-6, "qk_norm_rope q hd %d norm %d: %.3g", hd, norm,
                  rel_err(got, q, (long)R * NH * hd));
            to_host(cu, got, dk, sizeof(float) * R * NKV * hd);
            CHECK(rel_err(got, kk, (long)R * NKV * hd) < 1e-6, "qk_norm_rope k hd %d norm %d", hd, norm);
            g3cu_free(cu, dq); g3cu_free(cu, dk); g3cu_free(cu, dqw); g3cu_free(cu, dkw);
            free(q); free(kk); free(qw); free(kw); free(got);
        }
        g3cu_free(cu, dpos); g3cu_free(cu, dc); g3cu_free(cu, ds);
        free(c); free(s); free(gc); free(gs);
    }
    CHECK(g3cu_qk_norm_rope(cu, NULL, NULL, NULL, NULL, NULL, NULL, 1, 1, 1, 512, 1e-6f) == -1, "head dim 512 refused");
}

static void test_elementwise(G3Cuda *cu) {
    const long n = 100003;  // odd: the vector loop's tail, and an unaligned start below
    float *g = malloc(sizeof(float) * (n + 1)), *u = malloc(sizeof(float) * (n + 1)), *ref = malloc(sizeof(float) * n),
          *got = malloc(sizeof(float) * n);
    fill(g, n + 1, 6.0f);
    fill(u, n + 1, 2.0f);
    float *dg = dev_from(cu, NULL, sizeof(float) * (n + 1)), *du = dev_from(cu, u, sizeof(float) * (n + 1));
    for (int erf_form = 0; erf_form < 2; erf_form++)
        for (int off = 0; off < 2; off++) {
            g3cu_upload(cu, dg, g, sizeof(float) * (n + 1));
            CHECK(g3cu_geglu(cu, dg + off, du + off, n, erf_form) == 0, "%s", g3_error());
            for (long i = 0; i < n; i++) ref[i] = (float)(gelu_ref(g[i + off], erf_form) * u[i + off]);
            to_host(cu, got, dg + off, sizeof(float) * n);
            CHECK(rel_err(got, ref, n) < 1e-6, "geglu erf %d offset %d: %.3g", erf_form, off, rel_err(got, ref, n));
        }
    g3cu_upload(cu, dg, g, sizeof(float) * (n + 1));
    CHECK(g3cu_add(cu, dg + 1, du, n) == 0, "%s", g3_error());
    for (long i = 0; i < n; i++) ref[i] = g[i + 1] + u[i];
    to_host(cu, got, dg + 1, sizeof(float) * n);
    CHECK(rel_err(got, ref, n) == 0, "add");
    g3cu_upload(cu, dg, g, sizeof(float) * (n + 1));
    CHECK(g3cu_softcap(cu, dg, n, 5.0f) == 0, "%s", g3_error());
    for (long i = 0; i < n; i++) ref[i] = (float)(tanh(g[i] / 5.0) * 5.0);
    to_host(cu, got, dg, sizeof(float) * n);
    CHECK(rel_err(got, ref, n) < 1e-6, "softcap: %.3g", rel_err(got, ref, n));
    CHECK(g3cu_softcap(cu, dg, n, 0.0f) == -1, "softcap 0 refused");
    g3cu_free(cu, dg); g3cu_free(cu, du);
    free(g); free(u); free(ref); free(got);
}

static void test_embed(G3Cuda *cu) {
    const int V = 1000, C = 1152, R = 4;
    int32_t tok[4] = {0, 999, 517, 1000};  // the last is out of range: a zero row
    const G3DType types[] = {G3_F32, G3_BF16, G3_F16};
    for (int ti = 0; ti < 3; ti++) {
        float *ev = malloc(sizeof(float) * V * C), *got = malloc(sizeof(float) * R * C);
        fill(ev, (long)V * C, 0.05f);
        void *E = make_weights(types[ti], ev, (long)V * C);
        void *dE = dev_from(cu, E, (size_t)V * C * g3_dtype_size(types[ti]));
        int32_t *dt = dev_from(cu, tok, sizeof tok);
        float *dx = dev_from(cu, NULL, sizeof(float) * R * C);
        poison(cu, dx, sizeof(float) * R * C);
        const float sc = sqrtf((float)C);
        CHECK(g3cu_embed(cu, dx, dE, types[ti], dt, R, C, V, sc) == 0, "%s", g3_error());
        to_host(cu, got, dx, sizeof(float) * R * C);
        int bad = 0;
        for (int r = 0; r < R; r++)
            for (int i = 0; i < C; i++) {
                float want = tok[r] < V ? ev[(long)tok[r] * C + i] * sc : 0.f;
                bad += got[(long)r * C + i] != want;
            }
        CHECK(bad == 0, "embed %s: %d values differ", g3_dtype_name(types[ti]), bad);
        g3cu_free(cu, dE); g3cu_free(cu, dt); g3cu_free(cu, dx);
        free(ev); free(E); free(got);
    }
}

static void test_argmax(G3Cuda *cu) {
    const int R = 4, n = 262144 + 5;
    float *x = malloc(sizeof(float) * R * n);
    fill(x, (long)R * n, 10.0f);
    x[(long)0 * n + 123456] = 50.f;                                // one maximum
    x[(long)1 * n + 7] = 50.f; x[(long)1 * n + 200000] = 50.f;     // a tie: the first
    for (int i = 0; i < n; i++) x[(long)2 * n + i] = -INFINITY;    // nothing to choose: -1
    x[(long)3 * n + n - 1] = 50.f;                                 // the last
    float *dx = dev_from(cu, x, sizeof(float) * R * n);
    int32_t *dout = dev_from(cu, NULL, sizeof(int32_t) * R), out[4];
    CHECK(g3cu_argmax(cu, dout, dx, R, n) == 0, "%s", g3_error());
    to_host(cu, out, dout, sizeof out);
    CHECK(out[0] == 123456 && out[1] == 7 && out[2] == -1 && out[3] == n - 1, "argmax: %d %d %d %d", out[0], out[1], out[2], out[3]);
    CHECK(g3cu_argmax(cu, dout, dx, 1, 3) == 0, "%s", g3_error());  // fewer elements than threads
    to_host(cu, out, dout, sizeof(int32_t));
    int want = 0;
    for (int i = 1; i < 3; i++) if (x[i] > x[want]) want = i;
    CHECK(out[0] == want, "argmax of 3: %d, want %d", out[0], want);
    x[(long)3 * n + 17] = NAN;  // a NaN anywhere: -1, as the engine refuses such logits
    CHECK(g3cu_upload(cu, dx, x, sizeof(float) * R * n) == 0, "%s", g3_error());
    CHECK(g3cu_argmax(cu, dout, dx, R, n) == 0, "%s", g3_error());
    to_host(cu, out, dout, sizeof out);
    CHECK(out[0] == 123456 && out[3] == -1, "argmax with a NaN: %d %d", out[0], out[3]);
    g3cu_free(cu, dx); g3cu_free(cu, dout);
    free(x);
}

int main(void) {
    G3Cuda *cu = cuda_test_start("test_cuda_ops");
    if (!cu) return 0;
    test_norms(cu);
    test_rope(cu);
    test_elementwise(cu);
    test_embed(cu);
    test_argmax(cu);
    CHECK(g3cu_sync(cu) == 0, "%s", g3_error());
    g3cu_delete(cu);
    return check_done();
}
#endif
