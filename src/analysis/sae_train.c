// sae_train.c: training a JumpReLU (or TopK) SAE on batches of activations (sae.h). The
// forward pass, the backward pass written out by hand (the arithmetic is small: three GEMMs
// each way), the straight-through estimator for the thresholds and Adam over one flat
// parameter array. Not here: where the activations come from (the command streams them from
// the model through a hook).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/rng.h"
#include "../backend/backend.h"
#include "../kernels/kernels.h"
#include "sae.h"

G3SaeTrainConfig g3_sae_train_defaults(void) {
    return (G3SaeTrainConfig){.kind = G3_SAE_JUMPRELU, .d_model = 0, .d_sae = 0, .k = 32, .l0_target = 32, .lambda = 1.0, .lr = 5e-4,
                              .beta1 = 0.0, .beta2 = 0.999, .bandwidth = 0.001, .init_threshold = 0, .seed = 1};
}

static float normal(G3Rng *r) {  // Box-Muller
    double u = g3_rng_uniform(r), v = g3_rng_uniform(r);
    return (float)(sqrt(-2 * log(u > 0 ? u : 1e-300)) * cos(2 * M_PI * v));
}

struct G3SaeTrainer {
    G3SaeTrainConfig c;
    int D, S;
    // parameters, their gradients and Adam's moments: one flat array each, carved as
    // w_enc [D][S], b_enc [S], log_th [S], w_dec [S][D], b_dec [D]
    float *p, *g, *m, *v;
    int64_t np;
    float *w_enc, *b_enc, *log_th, *w_dec, *b_dec;
    float *g_w_enc, *g_b_enc, *g_log_th, *g_w_dec, *g_b_dec;
    double scale;  // input multiplier (mean squared norm 1), 0 until the first batch
    int64_t t;     // steps taken
    int64_t *fired, rows;
    // per-batch buffers, [cap] rows
    int cap;
    float *xs, *pre, *f, *xhat, *df;
    // on a GPU (g3_sae_trainer_use): the first step runs here (it sets the scale and the
    // thresholds), the rest on the device; the host arrays are refreshed by sync_host
    G3Backend *be;
    G3DevSae *dev;
    int dev_stale;  // the device has steps the host arrays lack
};

void g3_sae_trainer_free(G3SaeTrainer *t) {
    if (!t) return;
    g3_dev_sae_free(t->dev);
    free(t->p); free(t->g); free(t->m); free(t->v);
    free(t->fired);
    free(t->xs); free(t->pre); free(t->f); free(t->xhat); free(t->df);
    free(t);
}

G3SaeTrainer *g3_sae_trainer_new(const G3SaeTrainConfig *c) {
    if (c->d_model < 1 || c->d_sae < 1) { g3_errorf("SAE training: d_model %d and width %d must be >= 1", c->d_model, c->d_sae); return NULL; }
    if (c->kind == G3_SAE_TOPK && (c->k < 1 || c->k > c->d_sae)) { g3_errorf("SAE training: k %d must be in [1, width %d]", c->k, c->d_sae); return NULL; }
    if (c->kind == G3_SAE_RELU) { g3_errorf("SAE training: ReLU SAEs are not trained here (JumpReLU or TopK)"); return NULL; }
    if (!(c->lr > 0) || !(c->bandwidth > 0) || !(c->init_threshold >= 0) || c->l0_target < 0 || c->lambda < 0) {
        g3_errorf("SAE training: lr and bandwidth must be > 0, the initial threshold, the L0 target and lambda >= 0");
        return NULL;
    }
    G3SaeTrainer *t = g3_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->c = *c;
    const int D = t->D = c->d_model, S = t->S = c->d_sae;
    t->np = 2 * (int64_t)D * S + 2 * (int64_t)S + D;
    t->p = g3_calloc((size_t)t->np, sizeof(float));
    t->g = g3_calloc((size_t)t->np, sizeof(float));
    t->m = g3_calloc((size_t)t->np, sizeof(float));
    t->v = g3_calloc((size_t)t->np, sizeof(float));
    t->fired = g3_calloc((size_t)S, sizeof *t->fired);
    if (!t->p || !t->g || !t->m || !t->v || !t->fired) { g3_sae_trainer_free(t); return NULL; }
    float *q = t->p, *gq = t->g;
    t->w_enc = q; t->g_w_enc = gq; q += (int64_t)D * S; gq += (int64_t)D * S;
    t->b_enc = q; t->g_b_enc = gq; q += S; gq += S;
    t->log_th = q; t->g_log_th = gq; q += S; gq += S;
    t->w_dec = q; t->g_w_dec = gq; q += (int64_t)S * D; gq += (int64_t)S * D;
    t->b_dec = q; t->g_b_dec = gq;
    // decoder rows: random unit directions; the encoder starts as their transpose
    G3Rng rng;
    g3_rng_seed(&rng, c->seed);
    for (int j = 0; j < S; j++) {
        float *w = t->w_dec + (int64_t)j * D;
        double n2 = 0;
        for (int d = 0; d < D; d++) { w[d] = normal(&rng); n2 += (double)w[d] * w[d]; }
        float inv = (float)(1 / sqrt(n2 > 0 ? n2 : 1));
        for (int d = 0; d < D; d++) { w[d] *= inv; t->w_enc[(int64_t)d * S + j] = w[d]; }
        t->log_th[j] = (float)log(c->init_threshold > 0 ? c->init_threshold : 1e-3);
    }
    return t;
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

// init_threshold 0: each feature's threshold starts at the quantile of its pre-activations on
// the first batch that makes it fire on l0_target / d_sae of the rows, so L0 starts at the
// target instead of at about half the width (Gemma Scope starts every threshold at 0.001 and
// lets long training move them; a short run on a CPU would not get there).
static int init_thresholds(G3SaeTrainer *t, int n) {
    const int S = t->S;
    double target = t->c.l0_target > 0 ? t->c.l0_target : 0.01 * S;
    int rank = (int)((1 - G3_MIN(target / S, 1.0)) * (n - 1));
    float *col = g3_malloc((size_t)n * sizeof *col);
    if (!col) return -1;
    for (int j = 0; j < S; j++) {
        for (int r = 0; r < n; r++) col[r] = t->pre[(size_t)r * S + j];
        qsort(col, (size_t)n, sizeof *col, cmp_float);
        t->log_th[j] = logf(G3_MAX(col[rank], 1e-4f));
    }
    free(col);
    return 0;
}

static int grow(G3SaeTrainer *t, int n) {
    if (n <= t->cap) return 0;
    const size_t D = (size_t)t->D, S = (size_t)t->S;
    free(t->xs); free(t->pre); free(t->f); free(t->xhat); free(t->df);
    t->xs = g3_malloc((size_t)n * D * sizeof(float));
    t->xhat = g3_malloc((size_t)n * D * sizeof(float));
    t->pre = g3_malloc((size_t)n * S * sizeof(float));
    t->f = g3_malloc((size_t)n * S * sizeof(float));
    t->df = g3_malloc((size_t)n * S * sizeof(float));
    t->cap = t->xs && t->xhat && t->pre && t->f && t->df ? n : 0;
    return t->cap ? 0 : -1;
}

// TopK on one row: f gets the k largest of pre (ReLU'd), others 0.
static void topk_row(float *f, const float *pre, int S, int k) {
    float cut = INFINITY;
    int idx = -1;
    for (int r = 0; r < k; r++) {
        int best = -1;
        for (int j = 0; j < S; j++) {
            int below = pre[j] < cut || (pre[j] == cut && j > idx);
            if (below && (best < 0 || pre[j] > pre[best])) best = j;
        }
        if (best < 0) break;
        cut = pre[best];
        idx = best;
    }
    for (int j = 0; j < S; j++) {
        int in = pre[j] > cut || (pre[j] == cut && j <= idx);
        f[j] = in && pre[j] > 0 ? pre[j] : 0.0f;
    }
}

int g3_sae_trainer_use(G3SaeTrainer *t, G3Backend *be) {
    if (!be || be->host) {
        t->be = NULL;
        return 0;
    }
    if (t->c.kind != G3_SAE_JUMPRELU) return g3_errorf("SAE training on %s: only JumpReLU SAEs (TopK trains on the CPU)", be->name);
    if (t->t > 0) return g3_errorf("SAE training: choose the device before the first step");
    t->be = be;
    return 0;
}

// The host arrays as the device left them (parameters, moments, firing counts).
static int sync_host(G3SaeTrainer *t) {
    if (!t->dev || !t->dev_stale) return 0;
    if (g3_dev_sae_get(t->dev, t->p, t->m, t->v, t->fired)) return -1;
    t->dev_stale = 0;
    return 0;
}

static int dev_step(G3SaeTrainer *t, const float *x, int n, G3SaeStepStats *st) {
    const G3SaeTrainConfig *c = &t->c;
    if (!t->dev && !(t->dev = g3_dev_sae_new(t->be, t->D, t->S, t->p, t->m, t->v, t->fired))) return -1;
    t->t++;
    const double bc1 = 1 - pow(c->beta1, (double)t->t), bc2 = 1 - pow(c->beta2, (double)t->t);
    const G3DevSaeStep k = {(float)t->scale, c->l0_target, c->lambda, (float)(1 / c->bandwidth), (float)(c->lr / bc1),
                            (float)(1 / sqrt(bc2)), (float)c->beta1, (float)c->beta2};
    G3DevSaeStats ds;
    t->dev_stale = 1;
    if (g3_dev_sae_step(t->dev, x, n, &k, &ds)) return -1;
    t->rows += n;
    if (st) {
        st->mse = ds.err / n / t->D / (t->scale * t->scale);
        st->fvu = ds.var > 0 ? ds.err / ds.var : 0;
        st->l0 = (double)ds.active / n;
        st->loss = ds.err / n + ds.pen;
        st->lambda = c->lambda;
    }
    if (!isfinite(ds.err)) return g3_errorf("SAE training diverged (reconstruction error %g): lower the learning rate", ds.err);
    return 0;
}

int g3_sae_train_step(G3SaeTrainer *t, const float *x, int n, G3SaeStepStats *st) {
    if (n < 1) return g3_errorf("SAE training: empty batch");
    if (t->be && t->t > 0) return dev_step(t, x, n, st);
    if (grow(t, n)) return -1;
    const int D = t->D, S = t->S;
    const G3SaeTrainConfig *c = &t->c;
    if (t->scale == 0) {  // the first batch fixes the input scale and the decoder bias
        double n2 = 0;
        for (size_t i = 0; i < (size_t)n * D; i++) n2 += (double)x[i] * x[i];
        n2 /= n;
        if (!(n2 > 0) || !isfinite(n2)) return g3_errorf("SAE training: the first batch's activations are all zero or not finite");
        t->scale = 1 / sqrt(n2);
        for (int d = 0; d < D; d++) {
            double s = 0;
            for (int r = 0; r < n; r++) s += x[(size_t)r * D + d];
            t->b_dec[d] = (float)(s / n * t->scale);
        }
    }
    const float sc = (float)t->scale;
    for (size_t i = 0; i < (size_t)n * D; i++) {
        t->xs[i] = x[i] * sc;
        if (!isfinite(t->xs[i])) return g3_errorf("SAE training: activation row %zu is not finite", i / (size_t)D);
    }
    // forward: pre = xs W_enc + b_enc; f; xhat = f W_dec + b_dec
    g3_sgemm(0, 0, n, S, D, t->xs, t->w_enc, t->pre, 0);
    if (t->t == 0 && c->kind == G3_SAE_JUMPRELU && c->init_threshold == 0) {
        for (int r = 0; r < n; r++)
            for (int j = 0; j < S; j++) t->pre[(size_t)r * S + j] += t->b_enc[j];
        if (init_thresholds(t, n)) return -1;
        for (int r = 0; r < n; r++)
            for (int j = 0; j < S; j++) t->pre[(size_t)r * S + j] -= t->b_enc[j];
    }
    int64_t active = 0;
#pragma omp parallel for reduction(+ : active) schedule(static)
    for (int r = 0; r < n; r++) {
        float *pr = t->pre + (size_t)r * S, *fr = t->f + (size_t)r * S;
        for (int j = 0; j < S; j++) pr[j] += t->b_enc[j];
        if (c->kind == G3_SAE_TOPK) topk_row(fr, pr, S, c->k);
        else
            for (int j = 0; j < S; j++) fr[j] = pr[j] > expf(t->log_th[j]) ? pr[j] : 0.0f;
        for (int j = 0; j < S; j++) active += fr[j] != 0.0f;
    }
    g3_sgemm(0, 0, n, D, S, t->f, t->w_dec, t->xhat, 0);
    double err = 0, var = 0;
    float *mean = t->g_b_dec;  // scratch: the batch mean, before the gradient is written there
    for (int d = 0; d < D; d++) mean[d] = 0;
    for (int r = 0; r < n; r++)
        for (int d = 0; d < D; d++) mean[d] += t->xs[(size_t)r * D + d] / n;
    for (int r = 0; r < n; r++)
        for (int d = 0; d < D; d++) {
            size_t i = (size_t)r * D + d;
            t->xhat[i] += t->b_dec[d];
            double e = (double)t->xhat[i] - t->xs[i], u = (double)t->xs[i] - mean[d];
            err += e * e;
            var += u * u;
            t->xhat[i] = (float)(2 * e / n);  // from here on xhat holds dL/dxhat
        }
    const double l0 = (double)active / n;
    double pen = 0, dpen = 0;  // penalty and dP/dL0
    if (c->kind == G3_SAE_JUMPRELU) {
        if (c->l0_target > 0) { double u = l0 / c->l0_target - 1; pen = c->lambda * u * u; dpen = 2 * c->lambda * u / c->l0_target; }
        else { pen = c->lambda * l0; dpen = c->lambda; }
    }
    // backward
    float *dx = t->xhat;
    for (int d = 0; d < D; d++) {
        double s = 0;
        for (int r = 0; r < n; r++) s += dx[(size_t)r * D + d];
        t->g_b_dec[d] = (float)s;
    }
    g3_sgemm(1, 0, S, D, n, t->f, dx, t->g_w_dec, 0);   // [S][D] = f^T dx
    g3_sgemm(0, 1, n, S, D, dx, t->w_dec, t->df, 0);    // [n][S] = dx W_dec^T
    const float eps = (float)c->bandwidth, inv_eps = 1.0f / eps;
    memset(t->g_log_th, 0, (size_t)S * sizeof(float));
    memset(t->g_b_enc, 0, (size_t)S * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < S; j0 += 64) {  // columns in blocks: each thread owns its thresholds' sums
        int j1 = G3_MIN(S, j0 + 64);
        for (int r = 0; r < n; r++) {
            float *dfr = t->df + (size_t)r * S;
            const float *pr = t->pre + (size_t)r * S, *fr = t->f + (size_t)r * S;
            for (int j = j0; j < j1; j++) {
                float g = dfr[j];
                if (c->kind == G3_SAE_JUMPRELU) {
                    float th = expf(t->log_th[j]), u = (pr[j] - th) * inv_eps;
                    if (u > -0.5f && u < 0.5f)  // the rectangle kernel: the STE's pseudo-derivatives
                        t->g_log_th[j] += th * (g * (-th * inv_eps) + (float)(dpen / n) * (-inv_eps));
                }
                dfr[j] = fr[j] != 0.0f ? g : 0.0f;  // dpre: through the active features only
                t->g_b_enc[j] += dfr[j];
            }
        }
    }
    g3_sgemm(1, 0, D, S, n, t->xs, t->df, t->g_w_enc, 0);  // [D][S] = xs^T dpre
    // decoder rows stay unit-norm: drop each row gradient's component along the row
#pragma omp parallel for schedule(static)
    for (int j = 0; j < S; j++) {
        float *w = t->w_dec + (size_t)j * D, *g = t->g_w_dec + (size_t)j * D;
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)g[d] * w[d];
        for (int d = 0; d < D; d++) g[d] -= (float)dot * w[d];
    }
    // Adam
    t->t++;
    const double b1 = c->beta1, b2 = c->beta2, bc1 = 1 - pow(b1, (double)t->t), bc2 = 1 - pow(b2, (double)t->t);
    const float step = (float)(c->lr / bc1), isb2 = (float)(1 / sqrt(bc2)), fb1 = (float)b1, fb2 = (float)b2;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < t->np; i++) {
        float g = t->g[i];
        t->m[i] = fb1 * t->m[i] + (1 - fb1) * g;
        t->v[i] = fb2 * t->v[i] + (1 - fb2) * g * g;
        t->p[i] -= step * t->m[i] / (sqrtf(t->v[i]) * isb2 + 1e-8f);
    }
#pragma omp parallel for schedule(static)
    for (int j = 0; j < S; j++) {
        float *w = t->w_dec + (size_t)j * D;
        double n2 = 0;
        for (int d = 0; d < D; d++) n2 += (double)w[d] * w[d];
        if (n2 > 0) for (int d = 0; d < D; d++) w[d] /= (float)sqrt(n2);
    }
    for (int r = 0; r < n; r++)
        for (int j = 0; j < S; j++) t->fired[j] += t->f[(size_t)r * S + j] != 0.0f;
    t->rows += n;
    if (st) {
        st->mse = err / n / D / (t->scale * t->scale);
        st->fvu = var > 0 ? err / var : 0;
        st->l0 = l0;
        st->loss = err / n + pen;
        st->lambda = c->lambda;
    }
    if (!isfinite(err)) return g3_errorf("SAE training diverged (reconstruction error %g): lower the learning rate", err);
    return 0;
}

int g3_sae_trainer_export(G3SaeTrainer *t, G3Sae *out) {
    if (sync_host(t)) return -1;
    const int D = t->D, S = t->S;
    if (g3_sae_alloc(out, D, S)) return -1;
    out->kind = t->c.kind;
    out->k = t->c.k;
    snprintf(out->format, sizeof out->format, "trained");
    // the SAE saw x * scale: in x's units, pre = x (scale W_enc) + b_enc' with pre' = pre / scale
    // so that f and thresholds are in x's units too: W_enc' = W_enc, b_enc' = b_enc / scale,
    // threshold' = threshold / scale, W_dec' = W_dec, b_dec' = b_dec / scale.
    const float inv = t->scale > 0 ? (float)(1 / t->scale) : 1.0f;
    memcpy(out->w_enc, t->w_enc, (size_t)D * S * sizeof(float));
    memcpy(out->w_dec, t->w_dec, (size_t)D * S * sizeof(float));
    for (int j = 0; j < S; j++) {
        out->b_enc[j] = t->b_enc[j] * inv;
        out->threshold[j] = t->c.kind == G3_SAE_JUMPRELU ? expf(t->log_th[j]) * inv : 0.0f;
    }
    for (int d = 0; d < D; d++) out->b_dec[d] = t->b_dec[d] * inv;
    return 0;
}

const int64_t *g3_sae_trainer_fired(G3SaeTrainer *t, int64_t *rows) {
    if (rows) *rows = t->rows;
    return sync_host(t) ? NULL : t->fired;
}
