// intervene.c: see intervene.h. Every intervention is an edit applied inside the forward
// pass's hook callback, so an intervened pass costs a clean one plus the edits; recording (for
// patch sources, means and tests) is the same callback writing into position-indexed buffers.
#include "intervene.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../gen/engine.h"
#include "../model/record.h"

static int is_attn(G3HookSite s) { return s == G3_HOOK_ATTN_SCORES || s == G3_HOOK_PATTERN; }

int g3_site_width(const G3Config *c, G3HookSite site) {
    switch (site) {
    case G3_HOOK_Q: case G3_HOOK_ROT_Q: case G3_HOOK_Z: return c->heads * c->head_dim;
    case G3_HOOK_K: case G3_HOOK_V: case G3_HOOK_ROT_K: return c->kv_heads * c->head_dim;
    case G3_HOOK_ATTN_SCORES: case G3_HOOK_PATTERN: return 0;
    case G3_HOOK_MLP_PRE: case G3_HOOK_MLP_PRE_LINEAR: case G3_HOOK_MLP_POST: return c->inter;
    case G3_HOOK_LOGITS: return c->vocab;
    default: return c->hidden;
    }
}

// Heads a head index may name at a site (0: not a per-head site).
static int site_heads(const G3Config *c, G3HookSite site) {
    switch (site) {
    case G3_HOOK_Q: case G3_HOOK_ROT_Q: case G3_HOOK_Z: case G3_HOOK_ATTN_SCORES: case G3_HOOK_PATTERN: return c->heads;
    case G3_HOOK_K: case G3_HOOK_V: case G3_HOOK_ROT_K: return c->kv_heads;
    default: return 0;
    }
}

static const char *site_name(char *buf, int cap, G3HookSite site, int layer) { return g3_hook_name(buf, cap, site, layer); }

static int check_target(const G3Config *c, G3HookSite site, int layer, int head) {
    char nm[96];
    if ((int)site < 0 || site >= G3_HOOK_NSITES) return g3_errorf("hook site %d does not exist", (int)site);
    if (g3_hook_site_layered(site)) {
        if (layer < 0 || layer >= c->layers)
            return g3_errorf("layer %d is out of range for blocks.L.%s: the model has layers 0-%d", layer, g3_hook_site_suffix(site), c->layers - 1);
    } else if (layer != -1) {
        return g3_errorf("%s belongs to no layer (got layer %d)", g3_hook_site_suffix(site), layer);
    }
    if (head != -1) {
        int nh = site_heads(c, site);
        site_name(nm, sizeof nm, site, layer);
        if (!nh) return g3_errorf("%s has no heads (asked for head %d)", nm, head);
        if (head < 0 || head >= nh) return g3_errorf("head %d is out of range for %s: it has heads 0-%d", head, nm, nh - 1);
    }
    return 0;
}

// Floats one edit writes per row: one head's HD columns, or the site's width (0: attention).
static int part_width(const G3Config *c, G3HookSite site, int head) {
    return head >= 0 && !is_attn(site) ? c->head_dim : g3_site_width(c, site);
}

void g3_iv_init(G3Intervention *iv, const G3Model *m) {
    memset(iv, 0, sizeof *iv);
    iv->m = m;
}

static void capture_free(G3Capture *cp) { free(cp->data); }

void g3_iv_free(G3Intervention *iv) {
    for (int i = 0; i < iv->nedit; i++) free(iv->edit[i].vec);
    for (int i = 0; i < iv->nsrc; i++) capture_free(&iv->src[i]);
    for (int i = 0; i < iv->nrec; i++) capture_free(&iv->rec[i]);
    free(iv->edit); free(iv->src); free(iv->rec);
    memset(iv, 0, sizeof *iv);
}

static G3Edit *new_edit(G3Intervention *iv, G3EditKind kind, G3HookSite site, int layer, int head) {
    if (check_target(&iv->m->cfg, site, layer, head)) return NULL;
    G3Edit *ne = g3_realloc(iv->edit, (size_t)(iv->nedit + 1) * sizeof *ne);
    if (!ne) return NULL;
    iv->edit = ne;
    G3Edit *e = &iv->edit[iv->nedit++];
    *e = (G3Edit){kind, site, layer, head, NULL, 0, -1, 0};
    return e;
}

int g3_iv_zero(G3Intervention *iv, G3HookSite site, int layer, int head) {
    return new_edit(iv, G3_EDIT_ZERO, site, layer, head) ? 0 : -1;
}

// SET and ADD write one vector into every row, so the site needs a fixed width.
static int vec_edit(G3Intervention *iv, G3EditKind kind, G3HookSite site, int layer, int head, const float *vec, int n, float scale) {
    const G3Config *c = &iv->m->cfg;
    char nm[96];
    if (check_target(c, site, layer, head)) return -1;
    site_name(nm, sizeof nm, site, layer);
    int w = part_width(c, site, head);
    if (!w) return g3_errorf("%s: a vector cannot be written into attention scores or patterns (their width changes with the position)", nm);
    if (n != w)
        return g3_errorf("%s: the vector has %d values but %s is %d wide", nm, n, head >= 0 ? "one head" : "the site", w);
    float *v = g3_malloc((size_t)n * sizeof *v);
    if (!v) return -1;
    memcpy(v, vec, (size_t)n * sizeof *v);
    G3Edit *e = new_edit(iv, kind, site, layer, head);
    if (!e) { free(v); return -1; }
    e->vec = v;
    e->scale = scale;
    return 0;
}

int g3_iv_set(G3Intervention *iv, G3HookSite site, int layer, int head, const float *vec, int n) {
    return vec_edit(iv, G3_EDIT_SET, site, layer, head, vec, n, 1);
}

int g3_iv_add(G3Intervention *iv, G3HookSite site, int layer, const float *vec, int n, float scale) {
    return vec_edit(iv, G3_EDIT_ADD, site, layer, -1, vec, n, scale);
}

int g3_iv_steer(G3Intervention *iv, int layer, const float *vec, int n, float scale) {
    const G3Config *c = &iv->m->cfg;
    if (layer < 0 || layer >= c->layers) return g3_errorf("steering layer %d is out of range: the model has layers 0-%d", layer, c->layers - 1);
    if (n != c->hidden) return g3_errorf("the steering vector has %d values but the model's hidden size is %d", n, c->hidden);
    return g3_iv_add(iv, G3_HOOK_RESID_POST, layer, vec, n, scale);
}

// ---- recording ----

static int capture_init(G3Capture *cp, const G3Config *c, G3HookSite site, int layer, int P) {
    int w = g3_site_width(c, site);
    *cp = (G3Capture){site, layer, P, is_attn(site) ? c->heads * P : w, 0, NULL};
    size_t n;
    if (g3_mul_size((size_t)P, (size_t)cp->cols, &n) || !(cp->data = g3_malloc(n * sizeof(float)))) {
        if (!cp->data) g3_error_prefix("recording %s", g3_hook_site_suffix(site));
        return -1;
    }
    float fill = site == G3_HOOK_ATTN_SCORES ? -INFINITY : 0.0f;  // keys never seen read as masked
    for (size_t i = 0; i < n; i++) cp->data[i] = fill;
    return 0;
}

int g3_iv_record(G3Intervention *iv, G3HookSite site, int layer, int P) {
    if (check_target(&iv->m->cfg, site, layer, -1)) return -1;
    if (P < 1) return g3_errorf("recording needs at least one position");
    G3Capture *nr = g3_realloc(iv->rec, (size_t)(iv->nrec + 1) * sizeof *nr);
    if (!nr) return -1;
    iv->rec = nr;
    if (capture_init(&iv->rec[iv->nrec], &iv->m->cfg, site, layer, P)) return -1;
    return iv->nrec++;
}

static void capture_event(G3Capture *cp, const G3HookEvent *ev) {
    for (int r = 0; r < ev->rows; r++) {
        int p = ev->pos0 + r;
        if (p < 0 || p >= cp->P) continue;
        const float *src = ev->data + (long)r * ev->cols;
        float *dst = cp->data + (long)p * cp->cols;
        if (is_attn(cp->site)) {  // [P][NH][P]: this head's row, keys by absolute position
            dst += (long)ev->head * cp->P;
            for (int j = 0; j < ev->cols; j++)
                if (ev->key0 + j < cp->P) dst[ev->key0 + j] = src[j];
        } else {
            memcpy(dst, src, (size_t)G3_MIN(ev->cols, cp->cols) * sizeof(float));
        }
        if (p + 1 > cp->n) cp->n = p + 1;
    }
}

// ---- the callback ----

static void apply_edit(const G3Intervention *iv, const G3Edit *e, const G3HookEvent *ev) {
    if (is_attn(e->site) && e->head >= 0 && ev->head != e->head) return;
    int c0 = 0, nc = ev->cols;
    if (!is_attn(e->site) && e->head >= 0) { c0 = e->head * ev->head_dim; nc = ev->head_dim; }
    const G3Capture *src = e->kind == G3_EDIT_PATCH ? &iv->src[e->src] : NULL;
    for (int r = 0; r < ev->rows; r++) {
        float *row = ev->data + (long)r * ev->cols + c0;
        int p = ev->pos0 + r;
        switch (e->kind) {
        case G3_EDIT_ZERO:
            if (e->site == G3_HOOK_ATTN_SCORES) {
                for (int j = 0; j < nc; j++) if (row[j] != -INFINITY) row[j] = 0;
            } else {
                memset(row, 0, (size_t)nc * sizeof(float));
            }
            break;
        case G3_EDIT_SET: memcpy(row, e->vec, (size_t)nc * sizeof(float)); break;
        case G3_EDIT_ADD:
            for (int j = 0; j < nc; j++) row[j] += e->scale * e->vec[j];
            break;
        case G3_EDIT_PATCH: {
            // generated positions are never patched; "last" pairs the two prompts' last positions
            if (p >= iv->prompt_len) break;
            int q = p;
            if (e->last) {
                if (p != iv->prompt_len - 1) break;
                q = src->n - 1;
            } else if (p >= src->n) {
                break;
            }
            const float *sr = src->data + (long)q * src->cols;
            if (is_attn(e->site)) {
                sr += (long)ev->head * src->P;
                for (int j = 0; j < nc; j++) {
                    int k = ev->key0 + j;
                    row[j] = k < src->P ? sr[k] : e->site == G3_HOOK_ATTN_SCORES ? -INFINITY : 0;
                }
            } else {
                memcpy(row, sr + c0, (size_t)nc * sizeof(float));
            }
            break;
        }
        }
    }
}

void g3_iv_hook(void *ctx, const G3HookEvent *ev) {
    G3Intervention *iv = ctx;
    for (int i = 0; i < iv->nedit; i++)
        if (iv->edit[i].site == ev->site && iv->edit[i].layer == ev->layer) apply_edit(iv, &iv->edit[i], ev);
    for (int i = 0; i < iv->nrec; i++)
        if (iv->rec[i].site == ev->site && iv->rec[i].layer == ev->layer) capture_event(&iv->rec[i], ev);
}

static uint64_t layer_bit(int layer) { return layer < 0 ? 0 : layer < 64 ? 1ull << layer : ~0ull; }

void g3_iv_attach(G3State *s, G3Intervention *iv) {
    uint32_t sites = 0;
    uint64_t layers = 0;
    for (int i = 0; i < iv->nedit; i++) { sites |= 1u << iv->edit[i].site; layers |= layer_bit(iv->edit[i].layer); }
    for (int i = 0; i < iv->nrec; i++) { sites |= 1u << iv->rec[i].site; layers |= layer_bit(iv->rec[i].layer); }
    if (sites) g3_state_set_hook(s, g3_iv_hook, iv, sites, layers);
    else g3_state_set_hook(s, NULL, NULL, 0, 0);
}

// What can only be checked once the target prompt is known.
static int iv_ready(G3Intervention *iv, int T) {
    char nm[96];
    for (int i = 0; i < iv->nedit; i++) {
        const G3Edit *e = &iv->edit[i];
        if (e->kind == G3_EDIT_PATCH && e->last && is_attn(e->site) && iv->src[e->src].n != T)
            return g3_errorf("%s: patching attention at the last position needs prompts of equal length (target %d, source %d tokens); "
                             "patch all positions instead", site_name(nm, sizeof nm, e->site, e->layer), T, iv->src[e->src].n);
    }
    for (int i = 0; i < iv->nrec; i++) iv->rec[i].n = 0;
    iv->prompt_len = T;
    return 0;
}

// ---- runners ----

int g3_iv_logits(float *out, const G3Model *m, G3Intervention *iv, const int32_t *ids, int T, int fast) {
    if (T < 1) return g3_errorf("empty prompt");
    if (iv && iv_ready(iv, T)) return -1;
    G3State *s = g3_state_new(m, 1, T, G3_MIN(T, 512), fast, NULL);
    if (!s) return -1;
    if (iv) g3_iv_attach(s, iv);
    int rc = g3_prefill(s, 0, ids, T, out);
    g3_state_free(s);
    return rc;
}

int g3_iv_generate(int32_t *out, const G3Model *m, G3Intervention *iv, const int32_t *ids, int T, int n, int fast) {
    if (T < 1) return g3_errorf("empty prompt");
    if (n < 1) return 0;
    if (iv && iv_ready(iv, T)) return -1;
    G3State *s = g3_state_new(m, 1, T + n, G3_MIN(T, 512), fast, NULL);
    if (!s) return -1;
    // every prompt row's logits, so that hooks at ln_final / logits see the prompt's positions
    G3EngineOptions eo = {.all_logits = 1};
    G3Engine *e = g3_engine_new(s, &eo);
    int rc = -1, id, left;
    if (!e) goto out;
    if (iv) g3_iv_attach(s, iv);
    G3SeqParams p = {.prompt = ids, .nprompt = T, .max_tokens = n};  // greedy, no stops
    if ((id = g3_engine_add(e, &p)) < 0) goto out;
    while ((left = g3_engine_step(e)) > 0) {}
    G3SeqInfo info;
    if (left < 0 || g3_engine_read(e, id, &info)) goto out;
    if (info.stop == G3_STOP_ERROR) { g3_errorf("%s run, generated token %d: %s", iv ? "intervened" : "clean", info.n + 1, info.error); goto out; }
    memcpy(out, info.ids, (size_t)info.n * sizeof *out);
    rc = 0;
out:
    g3_engine_free(e);
    g3_state_free(s);
    return rc;
}

// ---- means ----

typedef struct {
    const G3Config *c;
    const G3HookSite *sites;
    const int *layers;
    int nsites;
    double **sum;  // [nsites][width]
    long *count;   // [nsites]
    const int32_t *ids;
    int T, skip_bos;
} MeanCtx;

static void mean_hook(void *ctx, const G3HookEvent *ev) {
    MeanCtx *mc = ctx;
    for (int i = 0; i < mc->nsites; i++) {
        if (mc->sites[i] != ev->site || mc->layers[i] != ev->layer) continue;
        for (int r = 0; r < ev->rows; r++) {
            int p = ev->pos0 + r;
            if (p < 0 || p >= mc->T || (mc->skip_bos && mc->ids[p] == mc->c->bos)) continue;
            const float *row = ev->data + (long)r * ev->cols;
            for (int j = 0; j < ev->cols; j++) mc->sum[i][j] += row[j];
            mc->count[i]++;
        }
    }
}

int g3_site_means(float *const *out, const G3Model *m, const G3HookSite *sites, const int *layers, int nsites,
                  const int32_t *const *prompts, const int *lens, int nprompts, int skip_bos, int fast) {
    const G3Config *c = &m->cfg;
    char nm[96];
    if (nprompts < 1) return g3_errorf("no prompts to average over");
    uint32_t mask = 0;
    uint64_t lmask = 0;
    for (int i = 0; i < nsites; i++) {
        if (check_target(c, sites[i], layers[i], -1)) return -1;
        if (!g3_site_width(c, sites[i])) return g3_errorf("%s: attention scores and patterns have no mean over positions", site_name(nm, sizeof nm, sites[i], layers[i]));
        mask |= 1u << sites[i];
        lmask |= layer_bit(layers[i]);
    }
    MeanCtx mc = {c, sites, layers, nsites, g3_calloc((size_t)nsites, sizeof(double *)), g3_calloc((size_t)nsites, sizeof(long)), NULL, 0, skip_bos};
    int rc = -1, maxT = 0;
    if (!mc.sum || !mc.count) goto out;
    for (int i = 0; i < nsites; i++)
        if (!(mc.sum[i] = g3_calloc((size_t)g3_site_width(c, sites[i]), sizeof(double)))) goto out;
    for (int k = 0; k < nprompts; k++) maxT = G3_MAX(maxT, lens[k]);
    if (maxT < 1) { g3_errorf("the prompts are empty"); goto out; }
    G3State *s = g3_state_new(m, 1, maxT, G3_MIN(maxT, 512), fast, NULL);
    if (!s) goto out;
    g3_state_set_hook(s, mean_hook, &mc, mask, lmask);
    for (int k = 0; k < nprompts; k++) {
        if (lens[k] < 1) continue;
        mc.ids = prompts[k];
        mc.T = lens[k];
        g3_state_reset(s, 0);
        if (g3_prefill(s, 0, prompts[k], lens[k], NULL)) { g3_error_prefix("prompt %d", k + 1); g3_state_free(s); goto out; }
    }
    g3_state_free(s);
    for (int i = 0; i < nsites; i++) {
        if (!mc.count[i]) { g3_errorf("no positions to average over (every prompt is only <bos>)"); goto out; }
        for (int j = 0; j < g3_site_width(c, sites[i]); j++) out[i][j] = (float)(mc.sum[i][j] / mc.count[i]);
    }
    rc = 0;
out:
    if (mc.sum) for (int i = 0; i < nsites; i++) free(mc.sum[i]);
    free(mc.sum); free(mc.count);
    return rc;
}

int g3_steer_from_sets(float *out, const G3Model *m, int layer, const int32_t *const *pos, const int *pos_lens, int npos,
                       const int32_t *const *neg, const int *neg_lens, int nneg, int fast) {
    const int C = m->cfg.hidden;
    G3HookSite site = G3_HOOK_RESID_POST;
    float *mneg = g3_malloc((size_t)C * sizeof *mneg);
    if (!mneg) return -1;
    if (g3_site_means(&out, m, &site, &layer, 1, pos, pos_lens, npos, 1, fast)) { g3_error_prefix("positive prompts"); free(mneg); return -1; }
    if (g3_site_means(&mneg, m, &site, &layer, 1, neg, neg_lens, nneg, 1, fast)) { g3_error_prefix("negative prompts"); free(mneg); return -1; }
    for (int j = 0; j < C; j++) out[j] -= mneg[j];
    free(mneg);
    return 0;
}

// ---- ablation and patching from specs ----

// "12" -> 12 or "*" -> -2; -1 on error.
static int parse_index(const char **p, int allow_star) {
    if (allow_star && **p == '*') { (*p)++; return -2; }
    char *end;
    errno = 0;
    long v = strtol(*p, &end, 10);
    if (end == *p || errno || v < 0 || v > 1 << 20) return -1;
    *p = end;
    return (int)v;
}

typedef struct { G3HookSite site; int layer, head; } Target;

static int push_target(Target **t, int *n, G3HookSite site, int layer, int head) {
    Target *nt = g3_realloc(*t, (size_t)(*n + 1) * sizeof *nt);
    if (!nt) return -1;
    *t = nt;
    nt[(*n)++] = (Target){site, layer, head};
    return 0;
}

// heads: "L.H,L.H" (H may be *: every head of the layer); mlps: "L,L" (or "*": every layer).
static int parse_targets(const G3Config *c, const char *heads, const char *mlps, Target **out, int *nout) {
    for (const char *p = heads; p && *p;) {
        const char *item = p;
        int l = parse_index(&p, 0), h = -1;
        if (l >= 0 && *p == '.') { p++; h = parse_index(&p, 1); }
        if (l < 0 || h == -1 || (*p && *p != ','))
            return g3_errorf("--ablate-head: bad item '%.*s' (want LAYER.HEAD, e.g. 2.1 or 2.*)", (int)strcspn(item, ","), item);
        if (l >= c->layers) return g3_errorf("--ablate-head %d.%s: layer %d is out of range: the model has layers 0-%d", l, h == -2 ? "*" : "H", l, c->layers - 1);
        if (h >= c->heads) return g3_errorf("--ablate-head %d.%d: head %d is out of range: layers have heads 0-%d", l, h, h, c->heads - 1);
        for (int k = h == -2 ? 0 : h; k < (h == -2 ? c->heads : h + 1); k++)
            if (push_target(out, nout, G3_HOOK_Z, l, k)) return -1;
        if (*p == ',') p++;
    }
    for (const char *p = mlps; p && *p;) {
        const char *item = p;
        int l = parse_index(&p, 1);
        if (l == -1 || (*p && *p != ','))
            return g3_errorf("--ablate-mlp: bad item '%.*s' (want a layer number, or *)", (int)strcspn(item, ","), item);
        if (l >= c->layers) return g3_errorf("--ablate-mlp %d: layer %d is out of range: the model has layers 0-%d", l, l, c->layers - 1);
        for (int k = l == -2 ? 0 : l; k < (l == -2 ? c->layers : l + 1); k++)
            if (push_target(out, nout, G3_HOOK_MLP_OUT, k, -1)) return -1;
        if (*p == ',') p++;
    }
    return 0;
}

int g3_iv_ablate(G3Intervention *iv, const char *heads, const char *mlps, G3Ablation how,
                 const int32_t *const *prompts, const int *lens, int nprompts, int fast) {
    const G3Config *c = &iv->m->cfg;
    Target *t = NULL;
    int n = 0, rc = -1;
    G3HookSite *sites = NULL;
    int *layers = NULL;
    float **means = NULL;
    if (parse_targets(c, heads, mlps, &t, &n)) goto out;
    if (how == G3_ABLATE_ZERO) {
        for (int i = 0; i < n; i++) if (g3_iv_zero(iv, t[i].site, t[i].layer, t[i].head)) goto out;
        rc = 0;
        goto out;
    }
    // one pass over the prompts gives every target's mean (a head takes its slice of hook_z)
    sites = g3_malloc((size_t)G3_MAX(n, 1) * sizeof *sites);
    layers = g3_malloc((size_t)G3_MAX(n, 1) * sizeof *layers);
    means = g3_calloc((size_t)G3_MAX(n, 1), sizeof *means);
    if (!sites || !layers || !means) goto out;
    for (int i = 0; i < n; i++) {
        sites[i] = t[i].site;
        layers[i] = t[i].layer;
        if (!(means[i] = g3_malloc((size_t)g3_site_width(c, t[i].site) * sizeof(float)))) goto out;
    }
    if (n && g3_site_means(means, iv->m, sites, layers, n, prompts, lens, nprompts, 0, fast)) { g3_error_prefix("mean ablation"); goto out; }
    for (int i = 0; i < n; i++) {
        const float *v = means[i] + (t[i].head >= 0 ? (long)t[i].head * c->head_dim : 0);
        if (g3_iv_set(iv, t[i].site, t[i].layer, t[i].head, v, part_width(c, t[i].site, t[i].head))) goto out;
    }
    rc = 0;
out:
    if (means) for (int i = 0; i < n; i++) free(means[i]);
    free(means); free(sites); free(layers); free(t);
    return rc;
}

int g3_iv_patch(G3Intervention *iv, const char *patterns, const int32_t *src_ids, int Ts, int last, int fast) {
    const G3Config *c = &iv->m->cfg;
    char nm[96], pat[256];
    G3Intervention rec;
    g3_iv_init(&rec, iv->m);
    float *logits = NULL;
    int rc = -1;
    if (Ts < 1) return g3_errorf("--patch: the source prompt is empty");
    for (const char *p = patterns; *p;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof pat) { g3_errorf("--patch: bad site list near '%.40s'", p); goto out; }
        memcpy(pat, p, len);
        pat[len] = 0;
        int found = 0;
        // forward-pass order: hook_embed, each layer's sites, then ln_final and logits
        for (int pass = 0; pass < 3; pass++)
            for (int l = pass == 1 ? 0 : -1; l < (pass == 1 ? c->layers : 0); l++)
                for (int s = pass == 2 ? 1 : 0; s < (pass == 0 ? 1 : G3_HOOK_NSITES); s++) {
                    if (g3_hook_site_layered(s) != (pass == 1) || !g3_hook_match(pat, site_name(nm, sizeof nm, s, l))) continue;
                    found = 1;
                    int dup = 0;
                    for (int k = 0; k < rec.nrec; k++) dup |= rec.rec[k].site == (G3HookSite)s && rec.rec[k].layer == l;
                    if (!dup && g3_iv_record(&rec, s, l, Ts) < 0) goto out;
                }
        if (!found) {
            G3HookSite s;
            int l;
            char names[2048];
            g3_rec_valid_names(names, sizeof names, c);
            if (!strchr(pat, '*') && g3_hook_parse(pat, &s, &l) == 0)
                g3_errorf("--patch %s: layer %d is out of range: the model has layers 0-%d", pat, l, c->layers - 1);
            else
                g3_errorf("--patch: no hook site matches '%s'; valid names: %s ('*' matches any run of characters)", pat, names);
            goto out;
        }
        p += len;
        if (*p == ',') p++;
    }
    // the source run is clean: its activations are what the model computes on the source prompt
    if (!(logits = g3_malloc((size_t)Ts * c->vocab * sizeof(float)))) goto out;
    if (g3_iv_logits(logits, iv->m, &rec, src_ids, Ts, fast)) { g3_error_prefix("--patch: source prompt"); goto out; }
    G3Capture *ns = g3_realloc(iv->src, (size_t)(iv->nsrc + rec.nrec) * sizeof *ns);
    if (!ns) goto out;
    iv->src = ns;
    for (int k = 0; k < rec.nrec; k++) {
        G3Edit *e = new_edit(iv, G3_EDIT_PATCH, rec.rec[k].site, rec.rec[k].layer, -1);
        if (!e) goto out;
        e->src = iv->nsrc;
        e->last = last;
        iv->src[iv->nsrc++] = rec.rec[k];
        rec.rec[k].data = NULL;  // moved
    }
    rc = rec.nrec;
out:
    free(logits);
    g3_iv_free(&rec);
    return rc;
}

// ---- comparison ----

void g3_softmax_d(double *out, const float *logits, int V) {
    double mx = logits[0], z = 0;
    for (int i = 1; i < V; i++) if (logits[i] > mx) mx = logits[i];
    for (int i = 0; i < V; i++) z += (out[i] = exp((double)logits[i] - mx));
    for (int i = 0; i < V; i++) out[i] /= z;
}

static double logsumexp(const float *x, int V) {
    double mx = x[0], z = 0;
    for (int i = 1; i < V; i++) if (x[i] > mx) mx = x[i];
    for (int i = 0; i < V; i++) z += exp((double)x[i] - mx);
    return mx + log(z);
}

double g3_kl_logits(const float *p, const float *q, int V) {
    double lp = logsumexp(p, V), lq = logsumexp(q, V), kl = 0;
    for (int i = 0; i < V; i++) {
        double a = (double)p[i] - lp, b = (double)q[i] - lq;
        kl += exp(a) * (a - b);
    }
    return kl > 0 ? kl : 0;  // rounding can leave -1e-17 for equal distributions
}

double g3_loss_logits(const float *logits, const int32_t *ids, int T, int V) {
    if (T < 2) return NAN;
    double sum = 0;
    for (int t = 0; t + 1 < T; t++) {
        const float *row = logits + (long)t * V;
        sum += logsumexp(row, V) - row[ids[t + 1]];
    }
    return sum / (T - 1);
}

int g3_topk(int32_t *ids, double *probs, const float *logits, int V, int k) {
    k = G3_MIN(k, V);
    double lse = logsumexp(logits, V);
    int n = 0;
    for (int i = 0; i < V; i++) {  // insertion into a sorted list of k: V x k, k is small
        if (n == k && logits[i] <= logits[ids[n - 1]]) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && logits[ids[j - 1]] < logits[i]) { ids[j] = ids[j - 1]; j--; }
        ids[j] = i;
    }
    for (int j = 0; j < k; j++) probs[j] = exp((double)logits[ids[j]] - lse);
    return k;
}

int g3_iv_compare(G3IvResult *r, G3Intervention *iv, const int32_t *ids, int T, int fast) {
    const G3Model *m = iv->m;
    const int V = m->cfg.vocab;
    memset(r, 0, sizeof *r);
    r->T = T;
    r->V = V;
    if (T < 1) return g3_errorf("empty prompt");
    if (!(r->clean = g3_malloc((size_t)T * V * sizeof(float))) || !(r->edited = g3_malloc((size_t)T * V * sizeof(float)))) goto fail;
    if (g3_iv_logits(r->clean, m, NULL, ids, T, fast) || g3_iv_logits(r->edited, m, iv, ids, T, fast)) goto fail;
    r->loss_clean = g3_loss_logits(r->clean, ids, T, V);
    r->loss_edited = g3_loss_logits(r->edited, ids, T, V);
    const float *lc = r->clean + (long)(T - 1) * V, *le = r->edited + (long)(T - 1) * V;
    r->kl = g3_kl_logits(lc, le, V);
    for (int t = 0; t < T; t++) r->kl_mean += g3_kl_logits(r->clean + (long)t * V, r->edited + (long)t * V, V) / T;
    r->top = g3_argmax(lc, V);
    r->p_top_clean = exp((double)lc[r->top] - logsumexp(lc, V));
    r->p_top_edited = exp((double)le[r->top] - logsumexp(le, V));
    return 0;
fail:
    g3_iv_result_free(r);
    return -1;
}

void g3_iv_result_free(G3IvResult *r) {
    free(r->clean);
    free(r->edited);
    r->clean = r->edited = NULL;
}

// ---- vector files ----

static int npy_load(const char *path, const unsigned char *b, size_t len, float **out) {
    if (len < 10 || b[6] < 1 || b[6] > 3) return g3_errorf("%s: not a .npy file this reader knows (version %d)", path, len > 6 ? b[6] : -1);
    size_t hl = b[6] == 1 ? (size_t)b[8] | (size_t)b[9] << 8 : len >= 12 ? (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24 : SIZE_MAX;
    size_t h0 = b[6] == 1 ? 10 : 12;
    if (hl > len - h0) return g3_errorf("%s: truncated .npy header", path);
    char hdr[4096];
    size_t n = G3_MIN(hl, sizeof hdr - 1);
    memcpy(hdr, b + h0, n);
    hdr[n] = 0;
    int f8 = strstr(hdr, "'<f8'") != NULL;
    if (!f8 && !strstr(hdr, "'<f4'")) return g3_errorf("%s: the .npy array must be float32 or float64, little-endian (header: %s)", path, hdr);
    if (strstr(hdr, "'fortran_order': True")) return g3_errorf("%s: Fortran-ordered .npy arrays are not supported", path);
    const char *sh = strstr(hdr, "'shape':");
    const char *lp = sh ? strchr(sh, '(') : NULL;
    if (!lp) return g3_errorf("%s: .npy header has no shape", path);
    long dims[8];
    int nd = 0;
    for (const char *p = lp + 1; *p && *p != ')';) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p || nd == 8) return g3_errorf("%s: bad .npy shape", path);
        dims[nd++] = d;
        p = end;
    }
    // 1-D, or a row / column of a 2-D array ([1, C] is what many tools save)
    long count = nd == 1 ? dims[0] : nd == 2 && (dims[0] == 1 || dims[1] == 1) ? dims[0] * dims[1] : -1;
    if (count < 0) return g3_errorf("%s: the .npy array must be one vector (1-D), not shape with %d dimensions", path, nd);
    size_t esz = f8 ? 8 : 4;
    if ((size_t)count > (len - h0 - hl) / esz) return g3_errorf("%s: the .npy file holds fewer values than its shape says (%ld)", path, count);
    float *v = g3_malloc((size_t)G3_MAX(count, 1) * sizeof *v);
    if (!v) return -1;
    const unsigned char *d = b + h0 + hl;
    for (long i = 0; i < count; i++) {
        if (f8) { double x; memcpy(&x, d + i * 8, 8); v[i] = (float)x; }
        else memcpy(&v[i], d + i * 4, 4);
    }
    *out = v;
    return (int)count;
}

int g3_vec_load(const char *path, float **out) {
    size_t len;
    char *b = g3_read_file(path, &len);
    if (!b) return -1;
    int n;
    if (len >= 6 && !memcmp(b, "\x93NUMPY", 6)) {
        n = npy_load(path, (const unsigned char *)b, len, out);
        free(b);
        return n;
    }
    int cap = 256;
    float *v = g3_malloc((size_t)cap * sizeof *v);
    n = 0;
    for (const char *p = b; v && *p;) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\r' || *p == '\t' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (end == p || errno == ERANGE || !isfinite(x)) {
            int line = 1;
            for (const char *q = b; q < p; q++) line += *q == '\n';
            g3_errorf("%s: line %d: '%.20s' is not a number (a vector file is .npy or floats separated by spaces or commas)", path, line, p);
            free(v); free(b);
            return -1;
        }
        if (n == cap) {
            float *nv = g3_realloc(v, (size_t)(cap *= 2) * sizeof *nv);
            if (!nv) { free(v); free(b); return -1; }
            v = nv;
        }
        v[n++] = (float)x;
        p = end;
    }
    free(b);
    if (!v) return -1;
    if (n == 0) { free(v); return g3_errorf("%s: no numbers in the vector file", path); }
    *out = v;
    return n;
}

int g3_vec_save_npy(const char *path, const float *vec, int n) {
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }", n);
    int total = (10 + hl + 1 + 63) / 64 * 64;  // header padded with spaces to 64 bytes, ending in \n
    size_t len = (size_t)total + (size_t)n * 4;
    unsigned char *b = g3_malloc(len);
    if (!b) return -1;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)((total - 10) & 0xff);
    b[9] = (unsigned char)((total - 10) >> 8);
    memset(b + 10, ' ', (size_t)total - 10);
    memcpy(b + 10, hdr, (size_t)hl);
    b[total - 1] = '\n';
    memcpy(b + total, vec, (size_t)n * 4);
    int rc = g3_write_file_atomic(path, b, len);
    free(b);
    return rc;
}
