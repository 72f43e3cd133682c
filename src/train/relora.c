// relora.c: the hybrid LoRA model (an f32 base in the table) and ReLoRA's merge, pruning and
// effective rank. See relora.h.
#include "relora.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../model/adapter.h"

// The table entry of model tensor i (model tensors are entries 0..nt-1 of a full model's table).
static G3Param *entry_of(G3TrainModel *tm, int i) {
    for (int j = 0; j < tm->np; j++)
        if (tm->p[j].tensor == i) return &tm->p[j];
    return NULL;
}

int g3_train_model_add_lora(G3TrainModel *tm, const G3LoraSpec *s, uint64_t seed) {
    if (g3_lora_append(tm, s, seed)) {
        g3_train_model_free(tm);
        return -1;
    }
    tm->hybrid = 1;
    g3_hybrid_set_full_rank(tm, NULL, 0);
    return 0;
}

void g3_hybrid_set_full_rank(G3TrainModel *tm, G3AdamW *o, int full) {
    for (int l = 0; l < tm->m.cfg.layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++)
            if (g3_adapter_module(tm->lora, l, r)) {
                G3Param *p = entry_of(tm, tm->m.layer_idx[l][r]);
                if (p) p->frozen = !full;
            }
    for (int j = 0; j < tm->np; j++)
        if (tm->p[j].tensor < 0 && tm->p[j].off != tm->head_off) tm->p[j].frozen = (uint8_t)full;  // the factors
    tm->m.adapter = full ? NULL : tm->lora;
    if (o) g3_adamw_sync_frozen(o, tm);
}

// Comparison of magnitudes for the k-th smallest (ties by index: a total order).
typedef struct {
    float a;
    int64_t i;
} Mag;
static int mag_cmp(const void *x, const void *y) {
    const Mag *p = x, *q = y;
    return p->a < q->a ? -1 : p->a > q->a ? 1 : (p->i > q->i) - (p->i < q->i);
}

int64_t g3_prune_smallest(float *x, int64_t n, double frac) {
    int64_t k = (int64_t)floor(frac * (double)n);
    if (k <= 0 || n <= 0) return 0;
    if (k >= n) {
        memset(x, 0, sizeof *x * (size_t)n);
        return n;
    }
    Mag *m = malloc(sizeof *m * (size_t)n);
    if (!m) {  // no memory for the ranking: reset instead (a superset of the pruning)
        memset(x, 0, sizeof *x * (size_t)n);
        return n;
    }
    for (int64_t i = 0; i < n; i++) m[i] = (Mag){fabsf(x[i]), i};
    qsort(m, (size_t)n, sizeof *m, mag_cmp);
    for (int64_t i = 0; i < k; i++) x[m[i].i] = 0;
    free(m);
    return k;
}

int g3_relora_merge(G3TrainModel *tm, G3AdamW *o, double prune, uint64_t seed, int64_t gen, double *pruned) {
    if (!tm->hybrid || !tm->lora) return g3_errorf("ReLoRA: the model has no adapter over an f32 base");
    if (o && o->cfg.bits != 32) return g3_errorf("ReLoRA: pruning the optimizer state needs 32-bit AdamW (--optim adamw)");
    const G3Adapter *a = tm->lora;
    for (int l = 0; l < a->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r);
            if (!md) continue;
            int ti = tm->m.layer_idx[l][r];
            g3_lora_merge_f32(tm->params + tm->off[ti], md, a->scale);
        }
    g3_lora_init_factors(tm, seed, gen);
    int64_t zeroed = 0, total = 0;
    if (o)
        for (int j = 0; j < tm->np; j++) {
            const G3Param *p = &tm->p[j];
            if (p->tensor >= 0 || p->off == tm->head_off) continue;  // the factors only
            zeroed += g3_prune_smallest(o->m + p->off, p->numel, prune) + g3_prune_smallest(o->v + p->off, p->numel, prune);
            total += 2 * p->numel;
        }
    if (pruned) *pruned = total ? (double)zeroed / (double)total : 0;
    return 0;
}

int g3_hybrid_weight(const G3TrainModel *tm, int i, float *w) {
    if (tm->off[i] < 0) return g3_errorf("tensor %s is not in the training table", tm->m.t[i].name);
    memcpy(w, tm->params + tm->off[i], sizeof(float) * (size_t)tm->m.t[i].numel);
    if (!tm->m.adapter) return 0;
    for (int l = 0; l < tm->m.cfg.layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++)
            if (tm->m.layer_idx[l][r] == i) {
                const G3LoraModule *md = g3_adapter_module(tm->m.adapter, l, r);
                if (md) g3_lora_merge_f32(w, md, tm->m.adapter->scale);
            }
    return 0;
}

// Eigenvalues of the symmetric g[n, n] (destroyed) into ev[n], by cyclic Jacobi rotations
// until the off-diagonal mass is negligible.
static void jacobi_eigen(double *g, int n, double *ev) {
    for (int sweep = 0; sweep < 60; sweep++) {
        double off = 0, diag = 0;
        for (int p = 0; p < n; p++) {
            diag += g[p * n + p] * g[p * n + p];
            for (int q = p + 1; q < n; q++) off += g[p * n + q] * g[p * n + q];
        }
        if (off <= 1e-24 * diag || off == 0) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = g[p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double theta = (g[q * n + q] - g[p * n + p]) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {  // columns p, q
                    double gkp = g[k * n + p], gkq = g[k * n + q];
                    g[k * n + p] = c * gkp - s * gkq;
                    g[k * n + q] = s * gkp + c * gkq;
                }
                for (int k = 0; k < n; k++) {  // rows p, q
                    double gpk = g[p * n + k], gqk = g[q * n + k];
                    g[p * n + k] = c * gpk - s * gqk;
                    g[q * n + k] = s * gpk + c * gqk;
                }
            }
    }
    for (int p = 0; p < n; p++) ev[p] = g[p * n + p];
}

// The same eigenvalues, fast: Householder reduction to tridiagonal form (eigenvalues only,
// ~4/3 n^3 flops), then the implicit QL iteration with Wilkinson shifts. Jacobi above is the
// reference (tested against each other); at n = 256 this is ~50x faster.
static void tridiag_ql_eigen(double *a, int n, double *d, double *e) {
    for (int i = n - 1; i > 0; i--) {
        const int l = i - 1;
        double h = 0;
        if (l > 0) {
            double scale = 0;
            for (int k = 0; k <= l; k++) scale += fabs(a[i * n + k]);
            if (scale == 0) {
                e[i] = a[i * n + l];
            } else {
                for (int k = 0; k <= l; k++) {
                    a[i * n + k] /= scale;
                    h += a[i * n + k] * a[i * n + k];
                }
                double f = a[i * n + l], g = f >= 0 ? -sqrt(h) : sqrt(h);
                e[i] = scale * g;
                h -= f * g;
                a[i * n + l] = f - g;
                f = 0;
                for (int j = 0; j <= l; j++) {  // e = A u / h (the lower triangle holds A)
                    g = 0;
                    for (int k = 0; k <= j; k++) g += a[j * n + k] * a[i * n + k];
                    for (int k = j + 1; k <= l; k++) g += a[k * n + j] * a[i * n + k];
                    e[j] = g / h;
                    f += e[j] * a[i * n + j];
                }
                const double hh = f / (h + h);
                for (int j = 0; j <= l; j++) {  // A -= u q^T + q u^T
                    f = a[i * n + j];
                    e[j] = g = e[j] - hh * f;
                    for (int k = 0; k <= j; k++) a[j * n + k] -= f * e[k] + g * a[i * n + k];
                }
            }
        } else {
            e[i] = a[i * n + l];
        }
        d[i] = h;
    }
    for (int i = 0; i < n; i++) d[i] = a[i * n + i];
    for (int i = 1; i < n; i++) e[i - 1] = e[i];
    e[n - 1] = 0;
    for (int l = 0; l < n; l++) {
        int iter = 0, m;
        do {
            for (m = l; m < n - 1; m++) {
                double dd = fabs(d[m]) + fabs(d[m + 1]);
                if (fabs(e[m]) <= 1e-15 * dd) break;
            }
            if (m != l) {
                if (iter++ == 60) break;
                double g = (d[l + 1] - d[l]) / (2 * e[l]), r = hypot(g, 1.0);
                g = d[m] - d[l] + e[l] / (g + (g >= 0 ? fabs(r) : -fabs(r)));
                double s = 1, c = 1, p = 0;
                int i;
                for (i = m - 1; i >= l; i--) {
                    double f = s * e[i], b = c * e[i];
                    e[i + 1] = r = hypot(f, g);
                    if (r == 0) {
                        d[i + 1] -= p;
                        e[m] = 0;
                        break;
                    }
                    s = f / r;
                    c = g / r;
                    g = d[i + 1] - p;
                    r = (d[i] - g) * s + 2 * c * b;
                    p = s * r;
                    d[i + 1] = g + p;
                    g = c * r - b;
                }
                if (r == 0 && i >= l) continue;
                d[l] -= p;
                e[l] = g;
                e[m] = 0;
            }
        } while (m != l);
    }
}

double g3_effective_rank_ex(const float *d, int64_t rows, int64_t cols, int reference);
double g3_effective_rank(const float *d, int64_t rows, int64_t cols) { return g3_effective_rank_ex(d, rows, cols, 0); }

double g3_effective_rank_ex(const float *d, int64_t rows, int64_t cols, int reference) {
    const int tr = rows > cols;  // Gram over the smaller side: n x n with n = min(rows, cols)
    const int n = (int)(tr ? cols : rows);
    const int64_t len = tr ? rows : cols;
    double *g = malloc(sizeof *g * (size_t)n * (size_t)n), *ev = malloc(sizeof *ev * (size_t)n), *e = malloc(sizeof *e * (size_t)n);
    if (!g || !ev || !e) {
        free(g);
        free(ev);
        free(e);
        return NAN;
    }
#pragma omp parallel for schedule(dynamic, 4)
    for (int p = 0; p < n; p++)
        for (int q = p; q < n; q++) {
            double s = 0;
            for (int64_t k = 0; k < len; k++)
                s += tr ? (double)d[k * cols + p] * d[k * cols + q] : (double)d[(int64_t)p * cols + k] * d[(int64_t)q * cols + k];
            g[p * n + q] = g[q * n + p] = s;
        }
    if (reference) jacobi_eigen(g, n, ev);
    else tridiag_ql_eigen(g, n, ev, e);
    double sum = 0, h = 0;
    for (int i = 0; i < n; i++) sum += ev[i] = sqrt(ev[i] > 0 ? ev[i] : 0);
    if (sum > 0)
        for (int i = 0; i < n; i++)
            if (ev[i] > 0) h -= ev[i] / sum * log(ev[i] / sum);
    free(g);
    free(ev);
    free(e);
    return sum > 0 ? exp(h) : 0;
}
