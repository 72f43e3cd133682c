// quantize_auto.c: the per-matrix choice of type under a bits-per-weight budget (see
// quantize_auto.h).
#include "quantize_auto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "forward.h"

enum { NLADDER = 4, PIECE = 64, ERR_ROWS = 64 };
static const G3DType ladder[NLADDER] = {G3_Q4_K, G3_Q5_K, G3_Q6_K, G3_Q8_0};

// A K-quant on rows that are not whole super-blocks: llama.cpp's fallback (as quantize.c).
static G3DType fit(G3DType t, int64_t cols) {
    if (cols % g3_type(t)->block == 0) return t;
    switch (t) {
    case G3_Q4_K: return G3_Q5_0;
    case G3_Q5_K: return G3_Q5_1;
    default: return G3_Q8_0;
    }
}

static int is_matrix(const G3Tensor *t) { return t->kind != G3_KIND_NORM && t->ndim == 2 && t->shape[1] % 32 == 0; }

// log-softmax of the logits of positions 1..n-1 (the predictions of tokens 2..n) into lp
// [(n - 1) x V], or, with ref given, the mean KL(ref || model) over them into *kl.
static int run(const G3Model *m, const int32_t *ids, int n, float *lp, const float *ref, double *kl) {
    const int V = m->cfg.vocab;
    G3State *st = g3_state_new(m, 1, n, PIECE, 1, NULL);
    if (!st) return -1;
    double sum = 0;
    for (int p0 = 0; p0 < n; p0 += PIECE) {
        const int cnt = G3_MIN(PIECE, n - p0);
        G3Segment seg = {0, p0, cnt};
        if (g3_forward(st, ids + p0, &seg, 1, G3_LOGITS_ALL)) { g3_state_free(st); return -1; }
        for (int j = 0; j < cnt && p0 + j < n - 1; j++) {
            const float *x = st->logits + (size_t)j * V;
            float mx = -INFINITY;
            for (int v = 0; v < V; v++) mx = fmaxf(mx, x[v]);
            double s = 0;
            for (int v = 0; v < V; v++) s += exp((double)x[v] - mx);
            const double lse = mx + log(s);
            if (lp) {
                float *o = lp + (size_t)(p0 + j) * V;
                for (int v = 0; v < V; v++) o[v] = (float)(x[v] - lse);
            } else {
                const float *r = ref + (size_t)(p0 + j) * V;
                double d = 0;
                for (int v = 0; v < V; v++) d += exp((double)r[v]) * ((double)r[v] - (x[v] - lse));
                sum += d > 0 ? d : 0;
            }
        }
    }
    g3_state_free(st);
    if (kl) *kl = sum / (n - 1);
    return 0;
}

// Squared error of quantizing up to ERR_ROWS rows of t (spread over it) to type ty.
static double sq_err(const G3Tensor *t, G3DType ty) {
    const int64_t rows = t->shape[0], cols = t->shape[1], step = G3_MAX((int64_t)1, rows / ERR_ROWS);
    const G3TypeTraits *tt = g3_type(ty);
    float *f = g3_malloc((size_t)cols * sizeof *f), *g = g3_malloc((size_t)cols * sizeof *g);
    void *q = g3_malloc((size_t)g3_type_row_bytes(ty, cols));
    double e = 0;
    if (f && g && q)
        for (int64_t r = 0; r < rows; r += step) {
            g3_to_f32(f, (const char *)t->data + r * t->row_bytes, t->dtype, (size_t)cols);
            tt->from_f32(q, f, cols);
            tt->to_f32(g, q, cols);
            for (int64_t k = 0; k < cols; k++) e += ((double)f[k] - g[k]) * ((double)f[k] - g[k]);
        }
    else e = -1;
    free(f), free(g), free(q);
    return e;
}

// Tensor i quantized whole to ty (a buffer the caller frees).
static void *quantize_tensor(const G3Tensor *t, G3DType ty) {
    const int64_t rows = t->shape[0], cols = t->shape[1], rb = g3_type_row_bytes(ty, cols);
    char *d = g3_malloc((size_t)(rb * rows));
    if (!d) return NULL;
    const G3TypeTraits *tt = g3_type(ty);
    int fail = 0;
#pragma omp parallel
    {
        float *f = g3_malloc((size_t)cols * sizeof *f);
        if (!f) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 64)
        for (int64_t r = 0; r < rows; r++) {
            if (!f) continue;
            g3_to_f32(f, (const char *)t->data + r * t->row_bytes, t->dtype, (size_t)cols);
            tt->from_f32(d + r * rb, f, cols);
        }
        free(f);
    }
    if (fail) { free(d); return NULL; }
    return d;
}

int g3_quant_auto(G3Model *m, const int32_t *ids, int n, double bits, G3DType *types, int verbose) {
    if (n < 2) return g3_errorf("quantize --auto: the calibration text has %d tokens (at least 2)", n);
    const int nt = m->nt, V = m->cfg.vocab;
    double *kl = g3_calloc((size_t)nt * NLADDER, sizeof *kl);  // estimated KL of tensor i at ladder type j
    int *level = g3_calloc((size_t)nt, sizeof *level);
    float *ref = g3_malloc((size_t)(n - 1) * V * sizeof *ref);
    int rc = -1;
    if (!kl || !level || !ref) goto out;
    double params = 0, qbits = 0, lo = 0, hi = 0;
    for (int i = 0; i < nt; i++) {
        const G3Tensor *t = &m->t[i];
        types[i] = G3_F32;
        if (!is_matrix(t)) continue;
        params += (double)t->numel;
        lo += 8.0 * (double)g3_type_bytes(fit(ladder[0], t->shape[1]), t->numel);
        hi += 8.0 * (double)g3_type_bytes(fit(ladder[NLADDER - 1], t->shape[1]), t->numel);
    }
    if (params == 0) { g3_errorf("quantize --auto: the model has no matrices"); goto out; }
    if (bits < lo / params - 1e-9 || bits > hi / params + 1e-9) {
        g3_errorf("quantize --auto: %.3f bits/weight is outside what the types can give this model (%.3f to %.3f)", bits, lo / params, hi / params);
        goto out;
    }
    if (run(m, ids, n, ref, NULL, NULL)) goto out;
    for (int i = 0; i < nt; i++) {
        G3Tensor *t = &m->t[i];
        if (!is_matrix(t)) continue;
        const G3DType low = fit(ladder[0], t->shape[1]), orig = t->dtype;
        const void *orig_data = t->data;
        void *q = quantize_tensor(t, low);
        if (!q) goto out;
        double k0 = 0;
        int e = g3_model_set(m, i, low, q) || run(m, ids, n, NULL, ref, &k0);
        if (g3_model_set(m, i, orig, orig_data) && !e) e = 1;  // restore whatever happened
        free(q);
        if (e) goto out;
        const double e0 = sq_err(t, low);
        for (int j = 0; j < NLADDER; j++) {
            const double ej = j ? sq_err(t, fit(ladder[j], t->shape[1])) : e0;
            kl[(size_t)i * NLADDER + j] = e0 > 0 ? k0 * ej / e0 : 0;
        }
        if (verbose) fprintf(stderr, "  %-24s %-5s alone: KL %.3g\n", t->name, g3_type(low)->name, k0);
    }
    // greedy: the upgrade saving the most KL per added bit while the budget allows
    qbits = lo;
    for (;;) {
        int best = -1;
        double best_rate = 0, best_cost = 0;
        for (int i = 0; i < nt; i++) {
            const G3Tensor *t = &m->t[i];
            if (!is_matrix(t)) continue;
            const int64_t c = t->shape[1], now = g3_type_bytes(fit(ladder[level[i]], c), t->numel);
            for (int j = level[i] + 1; j < NLADDER; j++) {  // any higher rung (a fallback can make two rungs cost the same)
                const double cost = 8.0 * (double)(g3_type_bytes(fit(ladder[j], c), t->numel) - now);
                const double gain = kl[(size_t)i * NLADDER + level[i]] - kl[(size_t)i * NLADDER + j];
                if (gain <= 0 || qbits + cost > bits * params + 1e-6) continue;
                const double rate = gain / fmax(cost, 1.0);
                if (best < 0 || rate > best_rate) best = i * NLADDER + j, best_rate = rate, best_cost = cost;
            }
        }
        if (best < 0) break;
        level[best / NLADDER] = best % NLADDER;
        qbits += best_cost;
    }
    double est = 0;
    for (int i = 0; i < nt; i++)
        if (is_matrix(&m->t[i])) {
            types[i] = fit(ladder[level[i]], m->t[i].shape[1]);
            est += kl[(size_t)i * NLADDER + level[i]];
        }
    if (verbose) fprintf(stderr, "quantize --auto: %.3f bits/weight over the matrices (budget %.3f), estimated KL %.3g (sum of the parts)\n",
                         qbits / params, bits, est);
    rc = 0;
out:
    free(kl), free(level), free(ref);
    return rc;
}
