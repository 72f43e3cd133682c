// test_ops_backward.c: each training op's backward (train_ops.h, f32) against central
// finite differences of a double-precision scalar twin of its forward, on odd sizes.
// The loss is L = sum(out * R) for a fixed random R, so d L / d out = R is what each
// backward receives. In double, eps = 1e-5 gives derivatives good to ~1e-9, so the
// comparison measures the f32 backward alone (tolerance 1e-4 relative); the f32 forward
// is also held to its double twin (1e-5).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"

static uint64_t rng = 0x243f6a8885a308d3ULL;
static double randn(void) {  // Box-Muller on a xorshift stream
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        u[i] = ((rng >> 11) + 1) * 0x1.0p-53;
    }
    return sqrt(-2 * log(u[0])) * cos(6.283185307179586 * u[1]);
}
static void fill(double *d, float *f, long n, double std) {
    for (long i = 0; i < n; i++) { d[i] = (float)(std * randn()); if (f) f[i] = (float)d[i]; }
}
static float *tof(const double *d, long n) {
    float *f = malloc((size_t)n * sizeof *f);
    for (long i = 0; i < n; i++) f[i] = (float)d[i];
    return f;
}

// A double twin: out[nout] = op(in) where in is one flat vector of all differentiable inputs.
typedef void (*Twin)(double *out, const double *in, const void *ctx);

// Central differences of sum(out * R) with respect to in[0..nin), into g.
static void numgrad(double *g, Twin f, const double *in, long nin, long nout, const double *R, const void *ctx) {
    double *x = malloc((size_t)nin * sizeof *x), *out = malloc((size_t)nout * sizeof *out);
    memcpy(x, in, (size_t)nin * sizeof *x);
    const double eps = 1e-5;
    for (long i = 0; i < nin; i++) {
        double s[2];
        for (int k = 0; k < 2; k++) {
            x[i] = in[i] + (k ? -eps : eps);
            f(out, x, ctx);
            s[k] = 0;
            for (long j = 0; j < nout; j++) s[k] += out[j] * R[j];
        }
        x[i] = in[i];
        g[i] = (s[0] - s[1]) / (2 * eps);
    }
    free(x); free(out);
}

// rel err of an f32 gradient against a double one
static double rel_err_d(const float *a, const double *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void expect(const char *op, const char *what, const float *got, const double *ref, long n, double tol) {
    double e = rel_err_d(got, ref, n);
    CHECK(e <= tol, "%s: %s rel err %.3g > %.1g", op, what, e, tol);
    printf("  %-34s %-6s rel err %.2e\n", op, what, e);
}

// ---- RMSNorm (also QK-norm: rows = tokens * heads, n = head_dim, one shared weight) ----

typedef struct { int rows, n; } NormCtx;
static void rmsnorm_twin(double *y, const double *in, const void *cp) {
    const NormCtx *c = cp;
    const double *x = in, *w = in + (long)c->rows * c->n;
    for (int r = 0; r < c->rows; r++) {
        double ss = 0;
        for (int i = 0; i < c->n; i++) ss += x[r * c->n + i] * x[r * c->n + i];
        double rs = 1 / sqrt(ss / c->n + 1e-6);
        for (int i = 0; i < c->n; i++) y[r * c->n + i] = x[r * c->n + i] * rs * (1 + w[i]);
    }
}
static void test_rmsnorm(const char *name, int rows, int n) {
    NormCtx c = {rows, n};
    long nx = (long)rows * n, nin = nx + n;
    double *in = malloc(nin * sizeof *in), *R = malloc(nx * sizeof *R), *y = malloc(nx * sizeof *y), *g = malloc(nin * sizeof *g);
    fill(in, NULL, nx, 1.3);
    fill(in + nx, NULL, n, 0.3);
    fill(R, NULL, nx, 1);
    float *x = tof(in, nx), *w = tof(in + nx, n), *dy = tof(R, nx), *yf = malloc(nx * 4), *rs = malloc(rows * 4);
    float *dx = calloc(nx, 4), *dw = calloc(n, 4);
    g3_rmsnorm_forward(yf, rs, x, w, rows, n, 1e-6f);
    rmsnorm_twin(y, in, &c);
    expect(name, "y", yf, y, nx, 1e-5);
    g3_rmsnorm_backward(dx, dw, dy, x, w, rs, rows, n, 0);
    numgrad(g, rmsnorm_twin, in, nin, nx, R, &c);
    expect(name, "dx", dx, g, nx, 1e-4);
    expect(name, "dw", dw, g + nx, n, 1e-4);
    // accumulate = 1 adds to what is there
    for (long i = 0; i < nx; i++) dx[i] = 1.0f;
    g3_rmsnorm_backward(dx, dw, dy, x, w, rs, rows, n, 1);
    for (long i = 0; i < nx; i++) g[i] += 1.0;
    expect(name, "dx+=", dx, g, nx, 1e-4);
    free(in); free(R); free(y); free(g); free(x); free(w); free(dy); free(yf); free(rs); free(dx); free(dw);
}

// ---- RoPE ----

typedef struct { int B, T, H, HD; const float *cos, *sin; } RopeCtx;
static void rope_twin(double *y, const double *x, const void *cp) {
    const RopeCtx *c = cp;
    int h2 = c->HD / 2;
    for (long r = 0; r < (long)c->B * c->T; r++)
        for (int h = 0; h < c->H; h++)
            for (int d = 0; d < h2; d++) {
                long o = (r * c->H + h) * c->HD;
                double cs = c->cos[(r % c->T) * h2 + d], sn = c->sin[(r % c->T) * h2 + d];
                y[o + d] = x[o + d] * cs - x[o + d + h2] * sn;
                y[o + d + h2] = x[o + d + h2] * cs + x[o + d] * sn;
            }
}
static void test_rope(void) {
    const int B = 2, T = 5, H = 3, HD = 10;
    float cos[T * HD / 2], sin[T * HD / 2];
    for (int t = 0; t < T; t++) g3_rope_angles(cos + t * HD / 2, sin + t * HD / 2, t, HD, 10000.0, 1.0);
    RopeCtx c = {B, T, H, HD, cos, sin};
    long n = (long)B * T * H * HD;
    double *x = malloc(n * 8), *R = malloc(n * 8), *y = malloc(n * 8), *g = malloc(n * 8);
    fill(x, NULL, n, 1);
    fill(R, NULL, n, 1);
    float *xf = tof(x, n), *d = tof(R, n);
    g3_rope_forward(xf, cos, sin, B, T, H, HD);
    rope_twin(y, x, &c);
    expect("rope", "y", xf, y, n, 1e-6);
    g3_rope_backward(d, cos, sin, B, T, H, HD);
    numgrad(g, rope_twin, x, n, n, R, &c);
    expect("rope", "dx", d, g, n, 1e-5);
    free(x); free(R); free(y); free(g); free(xf); free(d);
}

// ---- attention ----

typedef struct { int B, T, NH, NKV, HD, window; double scale, softcap; } AttnCtx;
static void attn_twin(double *out, const double *in, const void *cp) {
    const AttnCtx *c = cp;
    const long QD = (long)c->NH * c->HD, KD = (long)c->NKV * c->HD, BT = (long)c->B * c->T;
    const double *q = in, *k = q + BT * QD, *v = k + BT * KD;
    double p[64];
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->NH; h++) {
            int kh = h / (c->NH / c->NKV);
            for (int t = 0; t < c->T; t++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j <= t; j++) {
                    if (c->window > 0 && t - j >= c->window) { p[j] = -INFINITY; continue; }
                    double s = 0;
                    for (int d = 0; d < c->HD; d++) s += q[(b * c->T + t) * QD + h * c->HD + d] * k[(b * c->T + j) * KD + kh * c->HD + d];
                    s *= c->scale;
                    if (c->softcap > 0) s = tanh(s / c->softcap) * c->softcap;
                    p[j] = s;
                    mx = fmax(mx, s);
                }
                for (int j = 0; j <= t; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int d = 0; d < c->HD; d++) {
                    double o = 0;
                    for (int j = 0; j <= t; j++) o += p[j] / sum * v[(b * c->T + j) * KD + kh * c->HD + d];
                    out[(b * c->T + t) * QD + h * c->HD + d] = o;
                }
            }
        }
}
static void test_attention(int window, double softcap) {
    AttnCtx c = {2, 7, 4, 2, 6, window, 1 / sqrt(5.0), softcap};  // scale != 1/sqrt(HD), as query_pre_attn_scalar allows
    const long QD = c.NH * c.HD, KD = c.NKV * c.HD, BT = c.B * c.T, nin = BT * (QD + 2 * KD), nout = BT * QD;
    double *in = malloc(nin * 8), *R = malloc(nout * 8), *out = malloc(nout * 8), *g = malloc(nin * 8);
    fill(in, NULL, nin, 1.5);  // large enough for peaked rows and a softcap that bends
    fill(R, NULL, nout, 1);
    float *f = tof(in, nin), *q = f, *k = f + BT * QD, *v = k + BT * KD;
    float *o = malloc(nout * 4), *lse = malloc(BT * c.NH * 4), *dout = tof(R, nout), *scratch = malloc(g3_attention_scratch(c.T, c.HD) * 4);
    float *dq = malloc(BT * QD * 4), *dkv = malloc(2 * BT * KD * 4), *dkh = malloc(BT * QD * 4), *dvh = malloc(BT * QD * 4);
    char name[64];
    snprintf(name, sizeof name, "attention (window %d, softcap %g)", window, softcap);
    g3_attention_forward(o, lse, q, k, v, c.B, c.T, c.NH, c.NKV, c.HD, window, (float)c.scale, (float)softcap, scratch, 1);
    attn_twin(out, in, &c);
    expect(name, "out", o, out, nout, 1e-5);
    g3_attention_backward(dq, dkv, dkv + BT * KD, dkh, dvh, dout, q, k, v, lse, c.B, c.T, c.NH, c.NKV, c.HD, window,
                          (float)c.scale, (float)softcap, scratch, 1);
    numgrad(g, attn_twin, in, nin, nout, R, &c);
    expect(name, "dq", dq, g, BT * QD, 1e-4);
    expect(name, "dk", dkv, g + BT * QD, BT * KD, 1e-4);
    expect(name, "dv", dkv + BT * KD, g + BT * (QD + KD), BT * KD, 1e-4);
    free(in); free(R); free(out); free(g); free(f); free(o); free(lse); free(dout); free(scratch);
    free(dq); free(dkv); free(dkh); free(dvh);
}

// The blocked-GEMM attention against its direct-loop reference on a sequence of several
// query blocks, with a window that crosses block boundaries, a softcap and 3 heads per group.
static void test_attention_blocks(int window, float softcap) {
    const int B = 2, T = 150, NH = 6, NKV = 2, HD = 16, nthr = 2;
    const long QD = NH * HD, KD = NKV * HD, BT = (long)B * T;
    float *buf = malloc((size_t)(BT * (QD + 2 * KD) + BT * QD) * 4), *q = buf, *k = q + BT * QD, *v = k + BT * KD, *dout = v + BT * KD;
    for (long i = 0; i < BT * (QD + 2 * KD) + BT * QD; i++) buf[i] = (float)randn();
    float *o[2], *lse[2], *dq[2], *dk[2], *dv[2];
    float *dkh = malloc(BT * QD * 4), *dvh = malloc(BT * QD * 4), *scratch = malloc(nthr * g3_attention_scratch(T, HD) * 4);
    for (int m = 0; m < 2; m++) {
        o[m] = malloc(BT * QD * 4); lse[m] = malloc(BT * NH * 4); dq[m] = malloc(BT * QD * 4);
        dk[m] = malloc(BT * KD * 4); dv[m] = malloc(BT * KD * 4);
        (m ? g3_attention_forward_ref : g3_attention_forward)(o[m], lse[m], q, k, v, B, T, NH, NKV, HD, window, 0.3f, softcap, scratch, nthr);
        (m ? g3_attention_backward_ref : g3_attention_backward)(dq[m], dk[m], dv[m], dkh, dvh, dout, q, k, v, lse[m], B, T, NH, NKV, HD,
                                                              window, 0.3f, softcap, scratch, nthr);
    }
    char name[64];
    snprintf(name, sizeof name, "attention blocks vs ref (W %d, cap %g)", window, softcap);
    double e[5] = {rel_err(o[0], o[1], BT * QD), rel_err(lse[0], lse[1], BT * NH), rel_err(dq[0], dq[1], BT * QD),
                   rel_err(dk[0], dk[1], BT * KD), rel_err(dv[0], dv[1], BT * KD)};
    const char *what[5] = {"out", "lse", "dq", "dk", "dv"};
    for (int i = 0; i < 5; i++) {
        CHECK(e[i] <= 1e-5, "%s: %s rel err %.3g", name, what[i], e[i]);
        printf("  %-34s %-6s rel err %.2e\n", name, what[i], e[i]);
    }
    for (int m = 0; m < 2; m++) { free(o[m]); free(lse[m]); free(dq[m]); free(dk[m]); free(dv[m]); }
    free(buf); free(dkh); free(dvh); free(scratch);
}

// ---- GeGLU ----

typedef struct { long n; int erf_form; } GegluCtx;
static void geglu_twin(double *a, const double *in, const void *cp) {
    const GegluCtx *c = cp;
    for (long i = 0; i < c->n; i++) {
        double x = in[i], f;
        if (c->erf_form) f = 0.5 * x * (1 + erf(x / sqrt(2.0)));
        else f = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
        a[i] = f * in[c->n + i];
    }
}
static void test_geglu(int erf_form) {
    GegluCtx c = {33, erf_form};
    double in[66], R[33], a[33], g[66];
    fill(in, NULL, 66, 1.5);
    fill(R, NULL, 33, 1);
    float *f = tof(in, 66), *dr = tof(R, 33), af[33], dg[33], du[33];
    const char *name = erf_form ? "geglu (erf)" : "geglu (tanh)";
    g3_geglu_forward(af, f, f + 33, 33, erf_form);
    geglu_twin(a, in, &c);
    expect(name, "a", af, a, 33, 1e-6);
    g3_geglu_backward(dg, du, dr, f, f + 33, 33, erf_form);
    numgrad(g, geglu_twin, in, 66, 33, R, &c);
    expect(name, "dg", dg, g, 33, 1e-5);
    expect(name, "du", du, g + 33, 33, 1e-5);
    free(f); free(dr);
}

// ---- softcap ----

static void softcap_twin(double *y, const double *x, const void *cp) {
    double cap = *(const double *)cp;
    for (int i = 0; i < 17; i++) y[i] = tanh(x[i] / cap) * cap;
}
static void test_softcap(void) {
    double cap = 3, x[17], R[17], y[17], g[17];
    fill(x, NULL, 17, 4);
    fill(R, NULL, 17, 1);
    float *xf = tof(x, 17), *d = tof(R, 17), yf[17];
    g3_softcap_forward(yf, xf, 17, 3.0f);
    softcap_twin(y, x, &cap);
    expect("softcap", "y", yf, y, 17, 1e-6);
    g3_softcap_backward(d, d, yf, 17, 3.0f);  // in place, from the output
    numgrad(g, softcap_twin, x, 17, 17, R, &cap);
    expect("softcap", "dx", d, g, 17, 1e-5);
    free(xf); free(d);
}

// ---- cross-entropy (fused with the final softcap) ----

typedef struct { int V, target; double cap; } CECtx;
static void ce_twin(double *loss, const double *z, const void *cp) {
    const CECtx *c = cp;
    double mx = -INFINITY, s = 0, zz[64];
    for (int i = 0; i < c->V; i++) { zz[i] = c->cap > 0 ? tanh(z[i] / c->cap) * c->cap : z[i]; mx = fmax(mx, zz[i]); }
    for (int i = 0; i < c->V; i++) s += exp(zz[i] - mx);
    loss[0] = mx + log(s) - zz[c->target];
}
static void test_crossentropy(double cap) {
    CECtx c = {29, 11, cap};
    double z[29], R[1] = {0.7}, loss, g[29];
    fill(z, NULL, 29, 3);
    float *zf = tof(z, 29), dz[29];
    char name[64];
    snprintf(name, sizeof name, "cross-entropy (softcap %g)", cap);
    double lf = g3_crossentropy_forward_backward(dz, zf, c.target, c.V, (float)cap, 0.7f);
    ce_twin(&loss, z, &c);
    CHECK(fabs(lf - loss) <= 1e-6 * fabs(loss), "%s: loss %.9g vs %.9g", name, lf, loss);
    numgrad(g, ce_twin, z, 29, 1, R, &c);
    expect(name, "dz", dz, g, 29, 1e-5);
    // in place, as the training pass runs it
    g3_crossentropy_forward_backward(zf, zf, c.target, c.V, (float)cap, 0.7f);
    expect(name, "dz (in place)", zf, g, 29, 1e-5);
    free(zf);
}

// ---- embedding gather with its sqrt(C) scale ----

static const int32_t emb_ids[5] = {3, 0, 3, 6, 3};  // repeats: the backward must add, not overwrite
static void embed_twin(double *x, const double *E, const void *cp) {
    const int C = 9;
    double scale = (float)sqrt(9.0);
    for (int r = 0; r < 5; r++)
        for (int i = 0; i < C; i++) x[r * C + i] = E[emb_ids[r] * C + i] * scale;
}
static void test_embedding(void) {
    const int V = 7, C = 9;
    double E[63], R[45], x[45], g[63];
    fill(E, NULL, 63, 1);
    fill(R, NULL, 45, 1);
    float *Ef = tof(E, 63), *dx = tof(R, 45), xf[45], dE[63] = {0};
    g3_embedding_forward(xf, emb_ids, Ef, 5, C, sqrtf((float)C));
    embed_twin(x, E, NULL);
    expect("embedding", "x", xf, x, 45, 1e-7);
    g3_embedding_backward(dE, dx, emb_ids, 5, C, sqrtf((float)C));
    numgrad(g, embed_twin, E, V * C, 45, R, NULL);
    expect("embedding", "dE", dE, g, 63, 1e-6);
    free(Ef); free(dx);
}

int main(void) {
    test_rmsnorm("rmsnorm", 5, 37);
    test_rmsnorm("qk-norm (15 heads of 10)", 15, 10);
    test_rope();
    test_attention(0, 0);
    test_attention(3, 0);
    test_attention(0, 1.5);
    test_attention(4, 2.0);
    // the blocked attention at every SIMD level this CPU has (its softmax rows have one
    // version per level), then at the best again for the rest
    static const G3Isa levels[] = {G3_ISA_AVX2, G3_ISA_AVX512};
    for (int i = 0; i < 2; i++) {
        if (g3_kernels_init(levels[i]) != levels[i]) continue;
        printf("attention blocks at %s\n", g3_isa_name(levels[i]));
        test_attention_blocks(0, 0);
        test_attention_blocks(40, 0);
        test_attention_blocks(70, 5.0f);
    }
    g3_kernels_init(G3_ISA_AVX512BF16);
    test_geglu(0);
    test_geglu(1);
    test_softcap();
    test_crossentropy(0);
    test_crossentropy(4);
    test_embedding();
    return check_done();
}
