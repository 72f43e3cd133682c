// forward.c: inference state (KV cache, scratch) and g3_forward: the model pass of pass.c over
// segments of many sequences, with the cache as attention's memory, hooks at every named site
// and the output head for the rows whose logits are wanted. What this is not: arithmetic
// (the backend's ops do it, called by pass.c) or decoding (gen/engine.c).
#include "forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/ops.h"
#include "adapter.h"

// Host buffers that travel to and from the backend: page-locked where it offers that.
static void *host_alloc(G3Backend *be, size_t bytes) {
    return be->host_alloc ? be->host_alloc(be, bytes) : g3_malloc_aligned(bytes);
}
static void host_free(G3Backend *be, void *p) {
    if (be->host_free) {
        if (p) be->host_free(be, p);
    } else {
        g3_free_aligned(p);
    }
}

// Forgets the recorded decode steps (the buffers they use moved).
static void drop_records(G3State *s) {
    for (int r = 0; s->recs && r < 2 * (s->max_rows + 1); r++) {
        if (s->recs[r] && s->recs[r] != G3_NO_RECORD) s->be->record_free(s->be, s->recs[r]);
        s->recs[r] = NULL;
    }
}

static float *alloc_f(G3Backend *be, long n, int64_t *bytes) {
    if (bytes) *bytes += n * (int64_t)sizeof(float);
    return be->alloc(be, (size_t)n * sizeof(float));
}

G3State *g3_state_new(const G3Model *m, int nslots, int ctx, int max_rows, int fast, int64_t *bytes) {
    return g3_state_new_on(m->be ? m->be : g3_backend_cpu(), m, nslots, ctx, max_rows, fast, bytes);
}

G3State *g3_state_new_on(G3Backend *be, const G3Model *m, int nslots, int ctx, int max_rows, int fast, int64_t *bytes) {
    const G3Config *c = &m->cfg;
    if (nslots < 1 || ctx < 1 || max_rows < 1) { g3_errorf("state: slots, context and rows must be positive"); return NULL; }
    if (ctx > c->max_pos) { g3_errorf("context %d exceeds the model's max_position_embeddings %d", ctx, c->max_pos); return NULL; }
    for (int i = 0; i < m->nt; i++) {
        G3Weight w = g3_tensor_weight(&m->t[i]);
        if (m->t[i].kind == G3_KIND_NORM)  // the ops take the f32 copy (a device backend uploads it now)
            w = (G3Weight){G3_F32, 1, m->t[i].numel, m->t[i].numel * 4, g3_norm_weight(m, i), G3_MEM_HOST};
        if (be->weight_check(be, &w, m->t[i].name)) return NULL;
    }
    const G3Adapter *ad = m->adapter;
    for (int l = 0; ad && l < c->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *lm = g3_adapter_module(ad, l, r);
            if (lm && (be->weight_check(be, &lm->A, "lora_A") || be->weight_check(be, &lm->B, "lora_B"))) return NULL;
        }
    G3State *s = g3_calloc(1, sizeof *s);
    if (!s) return NULL;
    int64_t b = 0;
    s->m = m;
    s->be = be;
    s->max_rows = max_rows;
    s->nslots = nslots;
    s->ctx = ctx;
    s->fast = fast;
    const long R = max_rows, C = c->hidden, HD = c->head_dim, QD = (long)c->heads * HD, KD = (long)c->kv_heads * HD;
    s->kv = (G3KVCache){.layers = c->layers, .slots = nslots, .ctx = ctx, .nkv = c->kv_heads, .hd = (int)HD};
    s->len = g3_calloc((size_t)nslots, sizeof *s->len);
    s->kv.k = g3_calloc((size_t)c->layers, sizeof *s->kv.k);
    s->kv.v = g3_calloc((size_t)c->layers, sizeof *s->kv.v);
    s->kv.cap = g3_calloc((size_t)c->layers, sizeof *s->kv.cap);
    if (!s->len || !s->kv.k || !s->kv.v || !s->kv.cap) goto fail;
    for (int l = 0; l < c->layers; l++) {
        s->kv.cap[l] = c->sliding[l] ? G3_MIN(ctx, c->sliding_window) : ctx;
        long n = (long)nslots * c->kv_heads * s->kv.cap[l] * HD;
        if (!(s->kv.k[l] = alloc_f(be, n, &b)) || !(s->kv.v[l] = alloc_f(be, n, &b))) goto fail;
    }
    s->logits_rows = G3_MIN(max_rows, nslots);
    if (!(s->x = alloc_f(be, R * C, &b)) || !(s->xn = alloc_f(be, R * C, &b)) || !(s->tmp = alloc_f(be, R * C, &b)) ||
        !(s->xlast = alloc_f(be, R * C, &b)) || !(s->q = alloc_f(be, R * QD, &b)) || !(s->att = alloc_f(be, R * QD, &b)) ||
        !(s->k = alloc_f(be, R * KD, &b)) || !(s->v = alloc_f(be, R * KD, &b)) || !(s->g = alloc_f(be, R * c->inter, &b)) ||
        !(s->u = alloc_f(be, R * c->inter, &b)) || !(s->cos_l = alloc_f(be, R * HD / 2, &b)) ||
        !(s->sin_l = alloc_f(be, R * HD / 2, &b)) || !(s->cos_g = alloc_f(be, R * HD / 2, &b)) ||
        !(s->sin_g = alloc_f(be, R * HD / 2, &b)) || !(s->ids = be->alloc(be, (size_t)R * sizeof(int32_t))) ||
        !(s->logits_be = alloc_f(be, (long)s->logits_rows * c->vocab, &b)) ||
        !(s->argmax_be = be->alloc(be, (size_t)G3_MAX(max_rows, nslots) * sizeof(int32_t))))
        goto fail;
    if (ad && (!(s->lora_xa = alloc_f(be, R * ad->r, &b)) || !(s->lora_y = alloc_f(be, R * ad->max_out, &b)))) goto fail;
    if (be->host) {
        s->logits = s->logits_be;
        s->argmax = s->argmax_be;
    } else if (!(s->argmax = host_alloc(be, (size_t)G3_MAX(max_rows, nslots) * sizeof(int32_t))) || !(s->logits = host_alloc(be, (size_t)s->logits_rows * c->vocab * sizeof(float))) ||
               !(s->rope_h = host_alloc(be, (size_t)4 * R * HD / 2 * sizeof(float))) ||
               !(s->stage = host_alloc(be, (size_t)R * G3_MAX(G3_MAX(C, c->inter), G3_MAX(QD, KD)) * sizeof(float))) ||
               (be->record_begin && !(s->recs = g3_calloc(2 * ((size_t)R + 1), sizeof *s->recs)))) {
        goto fail;
    }
    if (bytes) *bytes = b;
    return s;
fail:
    g3_error_prefix("state for %d sequences of %d positions on %s", nslots, ctx, be->name);
    g3_state_free(s);
    return NULL;
}

void g3_state_free(G3State *s) {
    if (!s) return;
    G3Backend *be = s->be;
    if (s->kv.k)
        for (int l = 0; l < s->m->cfg.layers; l++) { be->free(be, s->kv.k[l]); be->free(be, s->kv.v[l]); }
    float *bufs[] = {s->x, s->xn, s->tmp, s->xlast, s->q, s->att, s->k, s->v, s->g, s->u,
                     s->cos_l, s->sin_l, s->cos_g, s->sin_g, s->logits_be, s->lora_xa, s->lora_y};
    for (size_t i = 0; i < G3_ARRAY_LEN(bufs); i++) be->free(be, bufs[i]);
    be->free(be, s->ids);
    be->free(be, s->argmax_be);
    if (!be->host) host_free(be, s->argmax);
    drop_records(s);
    free(s->recs);
    if (!be->host) { host_free(be, s->logits); host_free(be, s->rope_h); host_free(be, s->stage); }
    free(s->kv.k); free(s->kv.v); free(s->kv.cap); free(s->len);
    free(s->images); free(s->soft_rows); free(s->kend); free(s->segs_img);
    free(s);
}

void g3_state_reset(G3State *s, int seq) {
    if (seq >= 0 && seq < s->nslots) s->len[seq] = 0;
}

int g3_state_add_image(G3State *s, int seq, int pos0, int n, const float *rows) {
    const G3Config *c = &s->m->cfg;
    if (seq < 0 || seq >= s->nslots) return g3_errorf("image: slot %d outside [0, %d)", seq, s->nslots);
    if (n < 1 || pos0 < 0 || pos0 + n > s->ctx)
        return g3_errorf("image: positions %d..%d outside the context of %d", pos0, pos0 + n - 1, s->ctx);
    if (n > s->max_rows)
        return g3_errorf("image: a run of %d soft tokens must be read in one call, but the state reads %d rows per call", n, s->max_rows);
    for (int l = 0; l < c->layers; l++)
        if (c->sliding[l] && n > c->sliding_window)
            return g3_errorf("image: a run of %d soft tokens is longer than the sliding window of %d", n, c->sliding_window);
    for (int i = 0; i < s->nimages; i++) {
        const G3StateImage *o = &s->images[i];
        if (o->seq == seq && pos0 < o->pos0 + o->n && o->pos0 < pos0 + n)
            return g3_errorf("image: positions %d..%d of slot %d overlap another image's %d..%d", pos0, pos0 + n - 1, seq, o->pos0, o->pos0 + o->n - 1);
    }
    if (!s->soft_rows && (!(s->soft_rows = g3_calloc((size_t)s->max_rows, sizeof *s->soft_rows)) ||
                          !(s->kend = g3_calloc((size_t)s->max_rows, sizeof *s->kend)) ||
                          !(s->segs_img = g3_calloc((size_t)s->nslots, sizeof *s->segs_img))))
        return -1;
    if (s->nimages == s->cap_images) {
        int cap = s->cap_images ? 2 * s->cap_images : 8;
        G3StateImage *ni = g3_realloc(s->images, (size_t)cap * sizeof *ni);
        if (!ni) return -1;
        s->images = ni;
        s->cap_images = cap;
    }
    s->images[s->nimages++] = (G3StateImage){seq, pos0, n, rows};
    return 0;
}

void g3_state_clear_images(G3State *s, int seq) {
    int k = 0;
    for (int i = 0; i < s->nimages; i++)
        if (seq >= 0 && s->images[i].seq != seq) s->images[k++] = s->images[i];
    s->nimages = k;
}

// The call's image rows: soft_rows and the segments with kend (segs_img), where a
// registered image falls in a segment. 1 if any, 0 if none, -1 when a call cuts a run or the
// backend cannot attend both ways.
static int image_rows(G3State *s, const G3Segment *segs, int nseg, int rows) {
    if (!s->nimages) return 0;
    const int C = s->m->cfg.hidden;
    int any = 0;
    memset(s->soft_rows, 0, (size_t)rows * sizeof *s->soft_rows);
    for (int i = 0, r0 = 0; i < nseg; r0 += segs[i].n, i++) {
        const G3Segment *sg = &segs[i];
        s->segs_img[i] = *sg;
        s->segs_img[i].kend = NULL;
        for (int j = 0; j < s->nimages; j++) {
            const G3StateImage *im = &s->images[j];
            if (im->seq != sg->seq || im->pos0 >= sg->pos0 + sg->n || im->pos0 + im->n <= sg->pos0) continue;
            if (im->pos0 < sg->pos0 || im->pos0 + im->n > sg->pos0 + sg->n)
                return g3_errorf("slot %d: the image at positions %d..%d is cut by a call over positions %d..%d (an image's run is read in one call)",
                                 sg->seq, im->pos0, im->pos0 + im->n - 1, sg->pos0, sg->pos0 + sg->n - 1);
            if (!s->segs_img[i].kend) {
                for (int k = 0; k < sg->n; k++) s->kend[r0 + k] = sg->pos0 + k + 1;
                s->segs_img[i].kend = s->kend + r0;
            }
            for (int k = 0; k < im->n; k++) {
                const int r = r0 + im->pos0 - sg->pos0 + k;
                s->soft_rows[r] = im->rows + (long)k * C;
                s->kend[r] = im->pos0 + im->n;
            }
            any = 1;
        }
    }
    if (any && !s->be->attn_kend)
        return g3_errorf("backend %s: attention both ways inside an image's soft tokens is not implemented; run images on the CPU", s->be->name);
    return any;
}

void g3_state_set_hook(G3State *s, G3HookFn fn, void *ctx, uint32_t sites, uint64_t layers) {
    s->hook = fn;
    s->hook_ctx = fn ? ctx : NULL;
    s->hook_sites = fn ? sites : 0;
    s->hook_layers = fn ? layers : 0;
}

// The LAST-mode outputs d[nseg][cols] to a hook: one row per segment, its last.
static void fire_last(G3State *s, G3HookSite site, const G3Segment *segs, int nseg, float *d, int cols) {
    for (int i = 0; i < nseg; i++) {
        G3HookEvent ev = {site, -1, -1, i, segs[i].seq, segs[i].pos0 + segs[i].n - 1, 1, cols, 0, 0, 0, d + (long)i * cols};
        s->hook(s->hook_ctx, &ev);
    }
}

// RoPE angles of every row's position for the two kinds of layers, in double (host), then
// where the backend wants them.
static int rope_tables(G3State *s, const G3Segment *segs, int nseg, int rows) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim;
    const long n = (long)rows * HD / 2;
    float *cl = s->be->host ? s->cos_l : s->rope_h, *sl = s->be->host ? s->sin_l : cl + n;
    float *cg = s->be->host ? s->cos_g : sl + n, *sg = s->be->host ? s->sin_g : cg + n;
    for (int i = 0, r = 0; i < nseg; i++)
        for (int k = 0; k < segs[i].n; k++, r++) {
            int pos = segs[i].pos0 + k;
            g3_rope_angles(cl + (long)r * HD / 2, sl + (long)r * HD / 2, pos, HD, c->rope_local_base, c->rope_local_scale);
            g3_rope_angles(cg + (long)r * HD / 2, sg + (long)r * HD / 2, pos, HD, c->rope_global_base, c->rope_global_scale);
        }
    if (s->be->host) return 0;
    size_t nb = (size_t)n * sizeof(float);
    return s->be->to_device(s->be, s->cos_l, cl, nb) || s->be->to_device(s->be, s->sin_l, sl, nb) ||
                   s->be->to_device(s->be, s->cos_g, cg, nb) || s->be->to_device(s->be, s->sin_g, sg, nb)
               ? -1
               : 0;
}

// Makes room for nout rows of logits (only ALL mode over many rows needs more than one row
// per slot).
static int logits_room(G3State *s, int nout) {
    if (nout <= s->logits_rows) return 0;
    G3Backend *be = s->be;
    const size_t bytes = (size_t)nout * s->m->cfg.vocab * sizeof(float);
    float *nb = be->alloc(be, bytes);
    if (!nb) return -1;
    if (!be->host) {
        float *nh = host_alloc(be, bytes);
        if (!nh) { be->free(be, nb); return -1; }
        host_free(be, s->logits);
        s->logits = nh;
    }
    drop_records(s);  // they write the old buffer
    be->free(be, s->logits_be);
    s->logits_be = nb;
    if (be->host) s->logits = nb;
    s->logits_rows = nout;
    return 0;
}

// The device part of a forward call: embedding, layers, final norm and head (into
// logits_be). Hooks fire inside (none while recording).
static int device_pass(G3State *s, G3Pass *p, const int32_t *ids, const G3Segment *segs, int nseg, G3LogitsMode mode) {
    const G3Config *c = &s->m->cfg;
    const int C = c->hidden, rows = p->R;
    // one layer's activations, reused by every layer: the residual x is updated in place, the
    // branches go through xn / tmp, q and k are normed and rotated in place
    const G3LayerActs acts = {.xn1 = s->xn, .qraw = s->q, .kraw = s->k, .q = s->q, .k = s->k, .v = s->v, .att = s->att,
                              .ao = s->tmp, .h = s->x, .xn2 = s->xn, .g = s->g, .u = s->u, .a = s->g, .mo = s->tmp,
                              .tmp = s->tmp};
    if (g3_pass_embed(p, s->x, ids)) return -1;
    for (int l = 0; l < c->layers; l++)
        if (g3_layer_forward(p, l, &acts, s->x, s->x)) return -1;
    if (mode == G3_LOGITS_NONE) return 0;
    // final norm and the tied output head, only for the rows whose logits are wanted
    G3Backend *be = s->be;
    if (mode == G3_LOGITS_ALL || rows == nseg) {  // every row (a decode step: every row is a last row)
        g3_pass_final_norm(p, s->xlast, NULL, s->x, rows);
        if (mode == G3_LOGITS_ALL) g3_pass_fire(p, G3_HOOK_LN_FINAL, -1, s->xlast, C, 0, 0);
    } else {
        for (int i = 0, r = 0; i < nseg; i++) {
            r += segs[i].n;
            g3_pass_final_norm(p, s->xlast + (long)i * C, NULL, s->x + (long)(r - 1) * C, 1);
        }
    }
    if (mode != G3_LOGITS_ALL && g3_pass_hook_on(p, G3_HOOK_LN_FINAL, -1)) {
        const size_t nb = (size_t)nseg * C * sizeof(float);
        float *d = be->host ? s->xlast : s->stage;
        if (!be->host && be->to_host(be, d, s->xlast, nb)) return -1;
        fire_last(s, G3_HOOK_LN_FINAL, segs, nseg, d, C);
        if (!be->host && be->to_device(be, s->xlast, d, nb)) return -1;
    }
    const int nout = mode == G3_LOGITS_ALL ? rows : nseg;
    G3Pass ph = *p;
    ph.R = nout;
    if (g3_pass_head(&ph, s->logits_be, s->xlast, nout, 1)) return -1;
    if (mode != G3_LOGITS_ARGMAX) return 0;
    return G3_NEED(be, argmax) || be->argmax(be, s->argmax_be, s->logits_be, nout, c->vocab) ? -1 : 0;
}

// After the device part: the cache lengths, the logits on the host, the logits hook.
static int forward_done(G3State *s, const G3Pass *p, const G3Segment *segs, int nseg, G3LogitsMode mode, int nout) {
    G3Backend *be = s->be;
    const int V = s->m->cfg.vocab;
    for (int i = 0; i < nseg; i++) s->len[segs[i].seq] += segs[i].n;
    if (mode == G3_LOGITS_NONE) return be->host ? 0 : be->sync(be);
    if (mode == G3_LOGITS_ARGMAX) {
        if (!be->host && be->to_host(be, s->argmax, s->argmax_be, (size_t)nout * sizeof(int32_t))) return -1;
        if (!g3_pass_hook_on(p, G3_HOOK_LOGITS, -1)) return 0;
    }
    if (mode == G3_LOGITS_KEEP && !g3_pass_hook_on(p, G3_HOOK_LOGITS, -1)) return 0;  // the next op reads them where they are
    if (!be->host && be->to_host(be, s->logits, s->logits_be, (size_t)nout * V * sizeof(float))) return -1;
    // the logits are on the host by now: fired as host memory whatever the backend
    G3Pass ph = *p;
    ph.be = g3_backend_cpu();
    ph.stage = NULL;
    if (mode == G3_LOGITS_ALL) g3_pass_fire(&ph, G3_HOOK_LOGITS, -1, s->logits, V, 0, 0);
    else if (g3_pass_hook_on(&ph, G3_HOOK_LOGITS, -1)) fire_last(s, G3_HOOK_LOGITS, segs, nseg, s->logits, V);
    return 0;
}

static int forward_unrecorded(G3State *s, G3Pass *p, const int32_t *ids, const G3Segment *segs, int nseg, G3LogitsMode mode,
                              int nout) {
    if (device_pass(s, p, ids, segs, nseg, mode)) return -1;
    return forward_done(s, p, segs, nseg, mode, nout);
}

int g3_forward(G3State *s, const int32_t *tokens, const G3Segment *segs, int nseg, G3LogitsMode mode) {
    const G3Model *m = s->m;
    const G3Config *c = &m->cfg;
    G3Backend *be = s->be;
    int rows = 0;
    for (int i = 0; i < nseg; i++) {
        const G3Segment *sg = &segs[i];
        if (sg->seq < 0 || sg->seq >= s->nslots) return g3_errorf("segment %d: slot %d outside [0, %d)", i, sg->seq, s->nslots);
        if (sg->n < 1) return g3_errorf("segment %d: no tokens", i);
        if (sg->pos0 != s->len[sg->seq]) return g3_errorf("segment %d: starts at position %d but slot %d holds %d", i, sg->pos0, sg->seq, s->len[sg->seq]);
        if (sg->pos0 + sg->n > s->ctx) return g3_errorf("sequence of %d tokens exceeds the context of %d", sg->pos0 + sg->n, s->ctx);
        for (int j = 0; j < i; j++)
            if (segs[j].seq == sg->seq) return g3_errorf("segment %d: slot %d appears twice in one call", i, sg->seq);
        rows += sg->n;
    }
    if (nseg < 1) return g3_errorf("no segments");
    if (rows > s->max_rows) return g3_errorf("%d rows exceed this state's %d rows per call", rows, s->max_rows);
    for (int r = 0; r < rows; r++)
        if (tokens[r] < 0 || tokens[r] >= c->vocab) return g3_errorf("token id %d at row %d is outside the vocabulary [0, %d)", tokens[r], r, c->vocab);
    if (rope_tables(s, segs, nseg, rows)) return -1;
    const int32_t *ids = tokens;
    if (!be->host) {
        if (be->to_device(be, s->ids, tokens, (size_t)rows * sizeof(int32_t))) return -1;
        ids = s->ids;
    }

    const int images = image_rows(s, segs, nseg, rows);
    if (images < 0) return -1;
    if (images) segs = s->segs_img;
    if (be->segments && be->segments(be, segs, nseg)) return -1;

    G3Pass p = {.be = be, .m = m, .mode = s->fast ? G3_MM_FAST : G3_MM_EXACT, .R = rows,
                .cos_l = s->cos_l, .sin_l = s->sin_l, .cos_g = s->cos_g, .sin_g = s->sin_g,
                .kv = &s->kv, .segs = segs, .nseg = nseg,
                .hook = s->hook, .hook_ctx = s->hook_ctx, .hook_sites = s->hook_sites, .hook_layers = s->hook_layers,
                .stage = s->stage, .lora_xa = s->lora_xa, .lora_y = s->lora_y,
                .soft_rows = images ? s->soft_rows : NULL, .chain = 1};
    const int nout = mode == G3_LOGITS_ALL ? rows : mode == G3_LOGITS_NONE ? 0 : nseg;
    if (logits_room(s, nout)) return -1;
    // A decode step (one row per segment, no hook, the last rows' logits or choices) on a backend that
    // records: its ops are recorded once per row count and replayed at every later step
    // (one launch instead of hundreds). Everything they read that changes between steps
    // (ids, RoPE tables, segments) was uploaded above into the state's fixed buffers.
    const int hooked = (s->hook && s->hook_sites) || images;  // (a call with images is never recorded)
    // (KEEP's device part is LAST's: they share a recording)
    void **rec = s->recs ? &s->recs[rows + (mode == G3_LOGITS_ARGMAX ? s->max_rows + 1 : 0)] : NULL;
    if (rec && !hooked && (mode == G3_LOGITS_LAST || mode == G3_LOGITS_KEEP || mode == G3_LOGITS_ARGMAX) && rows == nseg && *rec != G3_NO_RECORD) {
        for (int tries = 0; tries < 2; tries++) {
            if (!*rec) {
                if (be->record_begin(be)) return -1;
                int rc = device_pass(s, &p, ids, segs, nseg, mode);
                void *made = be->record_end(be);
                if (rc || !made) {  // not recordable here (an op needed memory it could not get while recording)
                    *rec = G3_NO_RECORD;
                    return forward_unrecorded(s, &p, ids, segs, nseg, mode, nout);
                }
                *rec = made;
            }
            int rc = be->replay(be, *rec);
            if (rc < 0) return -1;
            if (rc == 0) return forward_done(s, &p, segs, nseg, mode, nout);
            be->record_free(be, *rec);  // stale: record again
            *rec = NULL;
        }
        return g3_errorf("%s: a recorded decode step went stale twice", be->name);
    }
    return forward_unrecorded(s, &p, ids, segs, nseg, mode, nout);
}

int g3_prefill(G3State *s, int seq, const int32_t *tokens, int n, float *all_logits) {
    const int V = s->m->cfg.vocab;
    if (n < 1) return g3_errorf("empty prompt");
    if (seq < 0 || seq >= s->nslots) return g3_errorf("slot %d outside [0, %d)", seq, s->nslots);
    if (s->len[seq] + n > s->ctx) return g3_errorf("prompt of %d tokens (plus %d already in the cache) exceeds the context of %d", n, s->len[seq], s->ctx);
    for (int done = 0; done < n;) {
        int k = G3_MIN(s->max_rows, n - done);
        G3Segment sg = {seq, s->len[seq], k};
        if (g3_forward(s, tokens + done, &sg, 1, all_logits ? G3_LOGITS_ALL : G3_LOGITS_LAST)) return -1;
        if (all_logits) memcpy(all_logits + (long)done * V, s->logits, (size_t)k * V * sizeof(float));
        done += k;
    }
    if (all_logits) memcpy(s->logits, all_logits + (long)(n - 1) * V, (size_t)V * sizeof(float));
    return 0;
}
