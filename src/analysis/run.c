// run.c: g3_analyze_run: the forward passes that feed the metrics of analyze.c. Everything
// is captured through the hook API (hooks.h), read-only: attention patterns (one head per
// call, placed into full [T][T] squares), hook_embed and every hook_resid_post, and
// mlp.hook_post, whose sparsity is counted inside the callback so the [T][F] activations are
// never stored. The prompt runs as one segment (max_rows = T), so each site fires once per
// layer (per head) with every position. Then the logit lens: each stored residual row through
// the model's final norm and tied output head, as forward.c does for the last layer.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "base/base.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "model/pass.h"

typedef struct {
    int T, NH, C;
    float *pattern;   // [L][NH][T][T]
    float *resid;     // [L+1][T][C] or NULL
    long *below, *count;  // [L] mlp.hook_post values under the threshold, and in all (or NULL)
} Capture;

static void on_hook(void *ctx, const G3HookEvent *ev) {
    Capture *c = ctx;
    const int T = c->T;
    switch (ev->site) {
    case G3_HOOK_PATTERN: {
        float *dst = c->pattern + ((long)ev->layer * c->NH + ev->head) * T * T;
        for (int r = 0; r < ev->rows; r++) {
            int q = ev->pos0 + r;
            for (int j = 0; j < ev->cols; j++) {
                int k = ev->key0 + j;
                if (q < T && k < T) dst[(long)q * T + k] = ev->data[(long)r * ev->cols + j];  // k > q: an image's run
            }
        }
        break;
    }
    case G3_HOOK_EMBED:
    case G3_HOOK_RESID_POST: {
        if (!c->resid) break;
        int slot = ev->site == G3_HOOK_EMBED ? 0 : ev->layer + 1;
        for (int r = 0; r < ev->rows && ev->pos0 + r < T; r++)
            memcpy(c->resid + ((long)slot * T + ev->pos0 + r) * c->C, ev->data + (long)r * ev->cols, (size_t)c->C * sizeof(float));
        break;
    }
    case G3_HOOK_MLP_POST: {
        if (!c->below) break;
        long n = (long)ev->rows * ev->cols;
        double frac = g3_an_sparsity(ev->data, n, G3_AN_SPARSE_REL);
        c->below[ev->layer] += lround(frac * n);
        c->count[ev->layer] += n;
        break;
    }
    default: break;
    }
}

// One prefill of ids with the capture hook on the given sites (o: the prompt's prepare step).
static int capture_run(const G3Model *m, const int32_t *ids, int T, int fast, uint32_t sites, Capture *cap, const G3AnOptions *o) {
    G3State *s = g3_state_new(m, 1, T, T, fast, NULL);
    if (!s) return -1;
    g3_state_set_hook(s, on_hook, cap, sites, ~0ull);
    int rc = o && o->prepare && o->prepare(o->prepare_ctx, s, ids, T) ? -1 : g3_prefill(s, 0, ids, T, NULL);
    g3_state_free(s);
    return rc;
}

// The K best of row[V] by logit (ties: lower id first), with softmax probabilities.
static void top_k(G3AnTop *out, const float *row, int V, int K) {
    int n = 0;
    for (int i = 0; i < V; i++) {
        if (n == K && row[i] <= out[K - 1].logit) continue;
        int p = n < K ? n++ : K - 1;
        while (p > 0 && out[p - 1].logit < row[i]) { out[p] = out[p - 1]; p--; }
        out[p].id = i;
        out[p].logit = row[i];
    }
    double mx = out[0].logit, z = 0;
    for (int i = 0; i < V; i++) z += exp((double)row[i] - mx);
    for (int k = 0; k < n; k++) out[k].prob = (float)(exp((double)out[k].logit - mx) / z);
}

// Rows of every layer go through the model's final norm and output head (pass.h, the same
// code as the forward's last step) together, CH at a time: at a real vocabulary each head
// product streams the whole embedding, so fewer, fuller calls are what count.
static int logit_lens(G3Analysis *a, const G3Model *m, int fast) {
    const int T = a->T, C = a->C, V = a->V, K = a->K, CH = 64, TL = T - a->lens_from;
    const long N = (long)(a->L + 1) * TL;
    G3Pass p = {.be = g3_backend_cpu(), .m = m, .mode = fast ? G3_MM_FAST : G3_MM_EXACT};
    float *xn = g3_malloc_aligned((size_t)CH * C * sizeof(float));    // [CH][C]
    float *lg = g3_malloc_aligned((size_t)CH * V * sizeof(float));    // [CH][V]
    if (!xn || !lg) { g3_free_aligned(xn); g3_free_aligned(lg); return -1; }
    for (long r0 = 0; r0 < N; r0 += CH) {
        int n = (int)G3_MIN((long)CH, N - r0);
        for (int r = 0; r < n; r++) {  // row r0 + r is layer slot (r0 + r) / TL, position lens_from + (r0 + r) % TL
            long l = (r0 + r) / TL, t = a->lens_from + (r0 + r) % TL;
            g3_pass_final_norm(&p, xn + (long)r * C, NULL, a->resid + (l * T + t) * C, 1);
        }
        p.R = n;
        if (g3_pass_head(&p, lg, xn, n, 1)) { g3_free_aligned(xn); g3_free_aligned(lg); return -1; }
#pragma omp parallel for if (n > 1)
        for (int r = 0; r < n; r++) {
            long l = (r0 + r) / TL, t = a->lens_from + (r0 + r) % TL;
            top_k(a->lens + (l * T + t) * K, lg + (long)r * V, V, K);
        }
    }
    g3_free_aligned(xn);
    g3_free_aligned(lg);
    return 0;
}

// n distinct random ids from the vocabulary, none of them in skip.
static int random_ids(int32_t *out, int n, int V, uint64_t seed, const uint8_t *skip) {
    G3Rng r;
    g3_rng_seed(&r, seed);
    for (int i = 0, tries = 0; i < n;) {
        if (++tries > 1000 * n + 100000) return g3_errorf("induction: cannot draw %d distinct ordinary ids from a vocabulary of %d", n, V);
        int32_t id = (int32_t)g3_rng_below(&r, (uint64_t)V);
        if (id < 3 || (skip && skip[id])) continue;  // 0-2 are <pad> <eos> <bos> in every Gemma vocabulary
        int dup = 0;
        for (int j = 0; j < i && !dup; j++) dup = out[j] == id;
        if (!dup) out[i++] = id;
    }
    return 0;
}

// NaN or inf weights (or an overflow) poison every metric after them: name the first site and
// position that holds one, rather than fail later inside an eigenvalue solver.
static int check_finite(const G3Analysis *a) {
    for (int slot = 0; slot <= a->L; slot++)
        for (long i = 0; i < (long)a->T * a->C; i++) {
            float v = a->resid[(long)slot * a->T * a->C + i];
            if (isfinite(v)) continue;
            char name[96];
            if (slot == 0) snprintf(name, sizeof name, "hook_embed");
            else g3_hook_name(name, sizeof name, G3_HOOK_RESID_POST, slot - 1);
            return g3_errorf("%s holds %s at position %ld: the model's weights (or an overflow) make its activations non-finite, "
                             "so nothing can be measured", name, isnan(v) ? "NaN" : "inf", i / a->C);
        }
    return 0;
}

// Every metric from the captured arrays.
static int summarize(G3Analysis *a, const long *below, const long *count) {
    const int T = a->T, L = a->L, NH = a->NH, C = a->C;
    const long TT = (long)T * T;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < L * NH; i++) {
        g3_an_head(&a->heads[i], a->pattern + i * TT, T);
        if (a->ind_n > 0) a->heads[i].induction = g3_an_induction(a->ind_pattern + (long)i * (2 * a->ind_n + 1) * (2 * a->ind_n + 1), a->ind_n);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < L * NH * NH; i++) {
        int l = i / (NH * NH), h = i / NH % NH, g = i % NH;
        if (g > h) {
            const float *base = a->pattern + (long)l * NH * TT;
            a->js[i] = a->js[((long)l * NH + g) * NH + h] = g3_an_js_heads(base + h * TT, base + g * TT, T);
        } else if (g == h) {
            a->js[i] = 0;
        }
    }
    int fail = 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int l = 0; l < L; l++) {
        const float *x = a->resid + (long)(l + 1) * T * C;
        a->layers[l].erank = T > 1 ? g3_an_effective_rank(x + C, T - 1, C) : g3_an_effective_rank(x, T, C);
        if (a->layers[l].erank < 0) {
#pragma omp atomic write
            fail = 1;
        }
    }
    if (fail) return -1;
    a->embed_norm = g3_an_mean_norm(a->resid, T, C);
    double js_sum = 0;
    long js_n = 0;
    for (int l = 0; l < L; l++) {
        G3AnLayer *y = &a->layers[l];
        const float *x = a->resid + (long)(l + 1) * T * C;
        y->resid_norm = g3_an_mean_norm(x, T, C);
        double prev = l ? a->layers[l - 1].resid_norm : a->embed_norm;
        y->resid_ratio = prev > 0 ? y->resid_norm / prev : NAN;
        y->bos_norm = g3_an_mean_norm(x, 1, C);
        y->mlp_sparsity = count[l] ? (double)below[l] / count[l] : 0;
        double sum[5] = {0};
        for (int h = 0; h < NH; h++) {
            const G3AnHead *hd = &a->heads[l * NH + h];
            sum[0] += hd->entropy; sum[1] += hd->distance; sum[2] += hd->bos; sum[3] += hd->prev; sum[4] += hd->induction;
        }
        y->entropy = sum[0] / NH; y->distance = sum[1] / NH; y->bos = sum[2] / NH; y->prev = sum[3] / NH;
        y->induction = sum[4] / NH;  // NAN without the induction run
        double s = 0;
        int np = 0;
        for (int h = 0; h < NH; h++)
            for (int g = h + 1; g < NH; g++) { s += a->js[((long)l * NH + h) * NH + g]; np++; }
        y->js = np ? s / np : 0;
        js_sum += s;
        js_n += np;
    }
    a->js_all = js_n ? js_sum / js_n : 0;
    for (int k = 0; k < 2; k++) {
        G3AnKind *kd = &a->kind[k];
        memset(kd, 0, sizeof *kd);
        for (int l = 0; l < L; l++) {
            if (a->sliding[l] != (k == 0)) continue;
            const G3AnLayer *y = &a->layers[l];
            kd->layers++;
            kd->entropy += y->entropy; kd->distance += y->distance; kd->bos += y->bos; kd->prev += y->prev;
            kd->induction += y->induction; kd->js += y->js; kd->resid_ratio += y->resid_ratio;
            kd->mlp_sparsity += y->mlp_sparsity; kd->erank += y->erank;
        }
        if (kd->layers) {
            double n = kd->layers;
            kd->entropy /= n; kd->distance /= n; kd->bos /= n; kd->prev /= n; kd->induction /= n;
            kd->js /= n; kd->resid_ratio /= n; kd->mlp_sparsity /= n; kd->erank /= n;
        }
    }
    return 0;
}

int64_t g3_analyze_bytes(const G3Config *c, int T, int induction_n) {
    int64_t T2 = 2 * (int64_t)induction_n + 1;
    return ((int64_t)c->layers * c->heads * ((int64_t)T * T + (induction_n ? T2 * T2 : 0)) + (int64_t)(c->layers + 1) * T * c->hidden) * 4;
}

int g3_analyze_run(G3Analysis *a, const G3Model *m, const int32_t *ids, int T, const G3AnOptions *o) {
    const G3Config *c = &m->cfg;
    double t0 = g3_now();
    memset(a, 0, sizeof *a);
    if (T < 1) return g3_errorf("analyze: no tokens");
    if (o->top_k < 1 || o->top_k > c->vocab) return g3_errorf("analyze: top-k %d outside [1, %d]", o->top_k, c->vocab);
    if (o->induction_n < 0 || 2 * (long)o->induction_n + 1 > c->max_pos) return g3_errorf("analyze: induction length %d does not fit the context", o->induction_n);
    a->T = T; a->L = c->layers; a->NH = c->heads; a->C = c->hidden; a->F = c->inter; a->V = c->vocab; a->K = o->top_k;
    a->sliding_window = c->sliding_window;
    memcpy(a->sliding, c->sliding, sizeof a->sliding);
    a->lens_from = o->lens_last > 0 && o->lens_last < T ? T - o->lens_last : 0;
    const long L = a->L, NH = a->NH, TT = (long)T * T;
    long *below = g3_calloc((size_t)L, sizeof *below), *count = g3_calloc((size_t)L, sizeof *count);
    a->ids = g3_malloc((size_t)T * sizeof *a->ids);
    a->pattern = g3_calloc((size_t)(L * NH * TT), sizeof(float));
    a->resid = g3_calloc((size_t)((L + 1) * T * a->C), sizeof(float));
    a->heads = g3_calloc((size_t)(L * NH), sizeof *a->heads);
    a->layers = g3_calloc((size_t)L, sizeof *a->layers);
    a->js = g3_calloc((size_t)(L * NH * NH), sizeof *a->js);
    a->lens = g3_calloc((size_t)((L + 1) * T * a->K), sizeof *a->lens);
    int rc = -1;
    if (!below || !count || !a->ids || !a->pattern || !a->resid || !a->heads || !a->layers || !a->js || !a->lens) goto out;
    memcpy(a->ids, ids, (size_t)T * sizeof *ids);

    Capture cap = {T, (int)NH, a->C, a->pattern, a->resid, below, count};
    uint32_t sites = 1u << G3_HOOK_PATTERN | 1u << G3_HOOK_EMBED | 1u << G3_HOOK_RESID_POST | 1u << G3_HOOK_MLP_POST;
    if (capture_run(m, ids, T, o->fast, sites, &cap, o) || check_finite(a)) goto out;

    if (o->induction_n > 0) {  // [bos, r1..rn, r1..rn]: only the patterns are wanted
        const int n = o->induction_n, T2 = 2 * n + 1;
        a->ind_n = n;
        a->ind_ids = g3_malloc((size_t)T2 * sizeof *a->ind_ids);
        a->ind_pattern = g3_calloc((size_t)(L * NH) * T2 * T2, sizeof(float));
        if (!a->ind_ids || !a->ind_pattern) goto out;
        a->ind_ids[0] = c->bos;
        if (random_ids(a->ind_ids + 1, n, c->vocab, o->seed, o->skip_ids)) goto out;
        memcpy(a->ind_ids + 1 + n, a->ind_ids + 1, (size_t)n * sizeof *a->ind_ids);
        Capture ic = {T2, (int)NH, a->C, a->ind_pattern, NULL, NULL, NULL};
        if (capture_run(m, a->ind_ids, T2, o->fast, 1u << G3_HOOK_PATTERN, &ic, NULL)) goto out;
    }
    if (summarize(a, below, count) || logit_lens(a, m, o->fast)) goto out;
    a->seconds = g3_now() - t0;
    rc = 0;
out:
    free(below);
    free(count);
    if (rc) g3_analysis_free(a);
    return rc;
}

void g3_analysis_free(G3Analysis *a) {
    free(a->ids); free(a->pattern); free(a->resid); free(a->heads); free(a->layers); free(a->js); free(a->lens);
    free(a->ind_ids); free(a->ind_pattern);
    memset(a, 0, sizeof *a);
}
