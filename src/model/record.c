// record.c: the recording hook of record.h: arrays per (site, layer) sized once, filled by
// position as the hooks fire.
#include "record.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

// Heads and floats per head of a site's rows (heads 0: a plain row of cols floats).
static void site_dims(const G3Config *c, G3HookSite site, int *heads, int *cols) {
    *heads = 0;
    switch (site) {
    case G3_HOOK_Q: case G3_HOOK_ROT_Q: case G3_HOOK_Z: *heads = c->heads; *cols = c->head_dim; return;
    case G3_HOOK_K: case G3_HOOK_ROT_K: case G3_HOOK_V: *heads = c->kv_heads; *cols = c->head_dim; return;
    case G3_HOOK_MLP_PRE: case G3_HOOK_MLP_PRE_LINEAR: case G3_HOOK_MLP_POST: *cols = c->inter; return;
    case G3_HOOK_LOGITS: *cols = c->vocab; return;
    default: *cols = c->hidden; return;
    }
}

static int is_attn(G3HookSite site) { return site == G3_HOOK_ATTN_SCORES || site == G3_HOOK_PATTERN; }

void g3_rec_valid_names(char *buf, int cap, const G3Config *c) {
    int n = snprintf(buf, (size_t)cap, "hook_embed");
    for (int i = 0; i < G3_HOOK_NSITES && n < cap; i++)
        if (g3_hook_site_layered((G3HookSite)i))
            n += snprintf(buf + n, (size_t)(cap - n), ", blocks.{0..%d}.%s", c->layers - 1, g3_hook_site_suffix((G3HookSite)i));
    if (n < cap) snprintf(buf + n, (size_t)(cap - n), ", ln_final.hook_normalized, logits");
}

int g3_rec_init(G3Recorder *r, const G3Config *c, int batch, int T, const char *const *patterns, int npat) {
    memset(r, 0, sizeof *r);
    r->cfg = c;
    r->batch = batch;
    r->T = T;
    const int L = c->layers;
    if (batch < 1 || T < 1) return g3_errorf("recorder: batch and positions must be positive");
    r->index = g3_malloc((size_t)G3_HOOK_NSITES * (L + 1) * sizeof *r->index);
    char *used = g3_calloc((size_t)(npat > 0 ? npat : 1), 1);  // [npat] whether the pattern matched
    if (!r->index || !used) { free(used); g3_rec_free(r); return -1; }
    for (int i = 0; i < G3_HOOK_NSITES * (L + 1); i++) r->index[i] = -1;
    // forward-pass order: embed, then each layer's sites in site order, then the final ones
    int cap = 0;
    for (int pass = 0; pass < 3; pass++)
        for (int l = pass == 1 ? 0 : -1; l < (pass == 1 ? L : 0); l++)
            for (int si = 0; si < G3_HOOK_NSITES; si++) {
                G3HookSite site = (G3HookSite)si;
                if (g3_hook_site_layered(site) != (pass == 1)) continue;
                if (pass == 0 && site != G3_HOOK_EMBED) continue;
                if (pass == 2 && site == G3_HOOK_EMBED) continue;
                char name[64];
                g3_hook_name(name, sizeof name, site, l);
                int hit = 0;
                for (int p = 0; p < npat; p++)
                    if (g3_hook_match(patterns[p], name)) { hit = 1; used[p] = 1; }
                if (!hit) continue;
                if (r->narr == cap) {
                    cap = cap ? 2 * cap : 32;
                    G3RecArray *na = g3_realloc(r->arr, (size_t)cap * sizeof *na);
                    if (!na) goto fail;
                    r->arr = na;
                }
                G3RecArray *a = &r->arr[r->narr];
                memset(a, 0, sizeof *a);
                snprintf(a->name, sizeof a->name, "%s", name);
                a->site = site;
                a->layer = l;
                int heads, cols;
                site_dims(c, site, &heads, &cols);
                if (is_attn(site)) { a->ndim = 4; a->shape[0] = batch; a->shape[1] = c->heads; a->shape[2] = T; a->shape[3] = T; }
                else if (heads) { a->ndim = 4; a->shape[0] = batch; a->shape[1] = T; a->shape[2] = heads; a->shape[3] = cols; }
                else { a->ndim = 3; a->shape[0] = batch; a->shape[1] = T; a->shape[2] = cols; }
                size_t n = 1;
                for (int d = 0; d < a->ndim; d++)
                    if (g3_mul_size(n, (size_t)a->shape[d], &n)) { g3_errorf("%s: array too large", name); goto fail; }
                if (n > SIZE_MAX / sizeof(float)) { g3_errorf("%s: array too large", name); goto fail; }
                if (!(a->data = g3_malloc(n * sizeof(float)))) { g3_error_prefix("recording %s (%.1f MiB)", name, n * 4.0 / 1048576); goto fail; }
                if (site == G3_HOOK_ATTN_SCORES) for (size_t i = 0; i < n; i++) a->data[i] = -INFINITY;
                else memset(a->data, 0, n * sizeof(float));
                r->index[si * (L + 1) + l + 1] = r->narr++;
                r->sites |= 1u << si;
                if (l >= 0) r->layers |= l < 64 ? 1ull << l : ~0ull;  // forward.c: layers past 63 need all bits
            }
    for (int p = 0; p < npat; p++)
        if (!used[p]) {
            char names[2048];
            g3_rec_valid_names(names, sizeof names, c);
            g3_errorf("hook pattern '%s' matches no site of this model; valid names: %s ('*' matches any run of characters)", patterns[p], names);
            goto fail;
        }
    free(used);
    return 0;
fail:
    free(used);
    g3_rec_free(r);
    return -1;
}

void g3_rec_free(G3Recorder *r) {
    for (int i = 0; i < r->narr; i++) free(r->arr[i].data);
    free(r->arr);
    free(r->index);
    r->arr = NULL;
    r->index = NULL;
    r->narr = 0;
}

G3RecArray *g3_rec_find(const G3Recorder *r, G3HookSite site, int layer) {
    if ((unsigned)site >= G3_HOOK_NSITES || layer < -1 || layer >= r->cfg->layers) return NULL;
    int i = r->index[site * (r->cfg->layers + 1) + layer + 1];
    return i < 0 ? NULL : &r->arr[i];
}

void g3_rec_hook(void *ctx, const G3HookEvent *ev) {
    G3Recorder *r = ctx;
    G3RecArray *a = g3_rec_find(r, ev->site, ev->layer);
    if (!a || ev->seq < 0 || ev->seq >= r->batch) return;
    const long T = r->T, b = ev->seq;
    if (is_attn(ev->site)) {
        const long NH = r->cfg->heads;
        for (int i = 0; i < ev->rows; i++) {
            long p = ev->pos0 + i, n = G3_MIN((long)ev->cols, T - ev->key0);
            if (p >= T || n <= 0) continue;
            memcpy(a->data + ((b * NH + ev->head) * T + p) * T + ev->key0, ev->data + (long)i * ev->cols, (size_t)n * sizeof(float));
        }
        return;
    }
    long rows = G3_MIN((long)ev->rows, T - ev->pos0);
    if (rows > 0) memcpy(a->data + (b * T + ev->pos0) * ev->cols, ev->data, (size_t)rows * ev->cols * sizeof(float));
}

void g3_rec_attach(G3Recorder *r, G3State *s) {
    g3_state_set_hook(s, g3_rec_hook, r, r->sites, r->layers);
}
