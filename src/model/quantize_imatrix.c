// quantize_imatrix.c: each linear weight's column importance from calibration text (see
// quantize_imatrix.h).
#include "quantize_imatrix.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "forward.h"

enum { PIECE = 64, CHUNK = 512 };

typedef struct {
    const G3Model *m;
    double **sum;    // per tensor [cols]: sum of x^2 over the tokens (the matrices that see the site)
    int *of;         // [layers * 4]: the site's sum array index per layer (-1 none), sites below
    double *fin;     // [hidden]: sum of x^2 of ln_final's output (the output layer's input)
    int fin_rows, emb;  // rows summed in fin; the embedding's tensor index (-1 none)
} Acc;

static int site_slot(G3HookSite s) { return s == G3_HOOK_LN1 ? 0 : s == G3_HOOK_Z ? 1 : s == G3_HOOK_LN2 ? 2 : s == G3_HOOK_MLP_POST ? 3 : -1; }
static int role_slot(int role) {
    switch (role) {
    case W_Q: case W_K: case W_V: return 0;
    case W_O: return 1;
    case W_GATE: case W_UP: return 2;
    case W_DOWN: return 3;
    default: return -1;
    }
}

// Each site's rows summed once into the first matrix that reads it; the others copy at the end.
static void on_hook(void *ctx, const G3HookEvent *ev) {
    Acc *a = ctx;
    if (ev->site == G3_HOOK_LN_FINAL && a->fin && ev->cols == a->m->cfg.hidden) {
        for (int r = 0; r < ev->rows; r++)
            for (int k = 0; k < ev->cols; k++) a->fin[k] += (double)ev->data[(size_t)r * ev->cols + k] * ev->data[(size_t)r * ev->cols + k];
        a->fin_rows += ev->rows;
        return;
    }
    const int sl = site_slot(ev->site);
    if (sl < 0 || ev->layer < 0) return;
    const int ti = a->of[ev->layer * 4 + sl];
    if (ti < 0 || a->m->t[ti].shape[1] != ev->cols) return;
    double *s = a->sum[ti];
    for (int r = 0; r < ev->rows; r++) {
        const float *x = ev->data + (size_t)r * ev->cols;
        for (int k = 0; k < ev->cols; k++) s[k] += (double)x[k] * x[k];
    }
}

void g3_quant_importance_free(float **imp, int nt) {
    for (int i = 0; imp && i < nt; i++) free(imp[i]), imp[i] = NULL;
}

int g3_quant_importance(const G3Model *m, const int32_t *ids, int n, int bos, float **imp, int verbose) {
    const int L = m->cfg.layers;
    for (int i = 0; i < m->nt; i++) imp[i] = NULL;
    if (n < 1) return g3_errorf("calibration: no tokens");
    Acc a = {m, g3_calloc((size_t)m->nt, sizeof *a.sum), g3_malloc((size_t)L * 4 * sizeof *a.of), NULL, 0, -1};
    int rc = a.sum && a.of ? 0 : -1;
    for (int i = 0; !rc && i < m->nt; i++)
        if (m->t[i].kind == G3_KIND_EMBED && m->t[i].ndim == 2 && m->t[i].shape[1] == m->cfg.hidden) {
            a.emb = i;
            if (!(imp[i] = g3_malloc((size_t)m->cfg.hidden * sizeof **imp)) || !(a.fin = g3_calloc((size_t)m->cfg.hidden, sizeof *a.fin))) rc = -1;
            break;
        }
    for (int i = 0; !rc && i < L * 4; i++) a.of[i] = -1;
    for (int i = 0; !rc && i < m->nt; i++) {
        const G3Tensor *t = &m->t[i];
        const int sl = t->ndim == 2 && t->layer >= 0 && t->layer < L ? role_slot(t->role) : -1;
        if (sl < 0) continue;
        if (!(imp[i] = g3_malloc((size_t)t->shape[1] * sizeof **imp))) rc = -1;
        if (a.of[t->layer * 4 + sl] < 0) {
            a.of[t->layer * 4 + sl] = i;
            if (!(a.sum[i] = g3_calloc((size_t)t->shape[1], sizeof **a.sum))) rc = -1;
        }
    }
    // chunks of up to CHUNK tokens (as llama.cpp's imatrix), each from position 0 with bos first
    const int ctx = G3_MIN(n, G3_MIN(CHUNK, m->cfg.max_pos));
    G3State *st = rc ? NULL : g3_state_new(m, 1, ctx, PIECE, 0, NULL);
    int32_t *chunk = rc ? NULL : g3_malloc((size_t)ctx * sizeof *chunk);
    if (!rc && (!st || !chunk)) rc = -1;
    if (!rc)
        g3_state_set_hook(st, on_hook, &a, 1u << G3_HOOK_LN1 | 1u << G3_HOOK_Z | 1u << G3_HOOK_LN2 | 1u << G3_HOOK_MLP_POST | 1u << G3_HOOK_LN_FINAL,
                          ~0ull);
    for (int c0 = 0; !rc && c0 < n; c0 += ctx) {
        const int len = G3_MIN(ctx, n - c0);
        memcpy(chunk, ids + c0, (size_t)len * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        g3_state_reset(st, 0);
        for (int p0 = 0; !rc && p0 < len; p0 += PIECE) {
            G3Segment seg = {0, p0, G3_MIN(PIECE, len - p0)};
            rc = g3_forward(st, chunk + p0, &seg, 1, a.fin ? G3_LOGITS_ALL : G3_LOGITS_NONE);
        }
    }
    g3_state_free(st);
    free(chunk);
    if (!rc && a.fin) {
        // the tied embedding is two matrices: the output layer (its input ln_final's output:
        // weighted by its mean x^2) and the input embedding (each element added to the residual
        // as it is: uniform); the two parts at equal mean weight
        double mean = 0;
        for (int k = 0; k < m->cfg.hidden; k++) mean += a.fin[k];
        mean /= (double)m->cfg.hidden * G3_MAX(1, a.fin_rows);
        for (int k = 0; k < m->cfg.hidden; k++)
            imp[a.emb][k] = mean > 0 ? (float)(1.0 + a.fin[k] / G3_MAX(1, a.fin_rows) / mean) : 1.0f;
    }
    for (int i = 0; !rc && i < m->nt; i++) {
        const G3Tensor *t = &m->t[i];
        if (!imp[i] || i == a.emb) continue;
        const double *s = a.sum[a.of[t->layer * 4 + role_slot(t->role)]];
        for (int64_t k = 0; k < t->shape[1]; k++) imp[i][k] = (float)(s[k] / n);
    }
    if (!rc && verbose) fprintf(stderr, "quantize: column importance from %d calibration tokens (chunks of %d)\n", n, ctx);
    for (int i = 0; a.sum && i < m->nt; i++) free(a.sum[i]);
    free(a.sum), free(a.of), free(a.fin);
    if (rc) g3_quant_importance_free(imp, m->nt);
    return rc;
}
