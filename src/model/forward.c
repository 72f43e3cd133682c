// forward.c: the Gemma 2 / Gemma 3 forward pass (inference). One layer reads like the paper:
//   h  = x + post_attn_norm(attn(input_norm(x)))
//   x' = h + post_ffw_norm(mlp(pre_ffw_norm(h)))
// Matrix products go through g3_matmul (exact f32 or bf16 activations); everything else
// is f32 with reductions in double where the reference is sensitive. Hooks (hooks.h) fire at
// every named site; with none set each site is one bitmask test, and attention takes a
// slower path that materialises each head's scores only when a score/pattern hook is set.
#include "forward.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/kernels.h"
#include "../kernels/ops.h"

static float *alloc_f(long n, int64_t *bytes) {
    if (bytes) *bytes += n * (int64_t)sizeof(float);
    float *p = g3_malloc_aligned((size_t)n * sizeof(float));
    if (p) memset(p, 0, (size_t)n * sizeof(float));
    return p;
}

enum { AB = 32 };  // attention row block (attend_segment)

G3State *g3_state_new(const G3Model *m, int nslots, int ctx, int max_rows, int fast, int64_t *bytes) {
    const G3Config *c = &m->cfg;
    if (nslots < 1 || ctx < 1 || max_rows < 1) { g3_errorf("state: slots, context and rows must be positive"); return NULL; }
    if (ctx > c->max_pos) { g3_errorf("context %d exceeds the model's max_position_embeddings %d", ctx, c->max_pos); return NULL; }
    G3State *s = g3_calloc(1, sizeof *s);
    if (!s) return NULL;
    int64_t b = 0;
    s->m = m;
    s->max_rows = max_rows;
    s->nslots = nslots;
    s->ctx = ctx;
    s->fast = fast;
    const long R = max_rows, C = c->hidden, HD = c->head_dim, QD = (long)c->heads * HD, KD = (long)c->kv_heads * HD;
    const long S = ctx + R;
    s->len = g3_calloc((size_t)nslots, sizeof *s->len);
    s->kc = g3_calloc((size_t)c->layers, sizeof *s->kc);
    s->vc = g3_calloc((size_t)c->layers, sizeof *s->vc);
    s->cap = g3_calloc((size_t)c->layers, sizeof *s->cap);
    s->row_pos = g3_calloc((size_t)R, sizeof *s->row_pos);
    if (!s->len || !s->kc || !s->vc || !s->cap || !s->row_pos) goto fail;
    for (int l = 0; l < c->layers; l++) {
        s->cap[l] = c->sliding[l] ? G3_MIN(ctx, c->sliding_window) : ctx;
        long n = (long)nslots * c->kv_heads * s->cap[l] * HD;
        if (!(s->kc[l] = alloc_f(n, &b)) || !(s->vc[l] = alloc_f(n, &b))) goto fail;
    }
    s->nthreads = omp_get_max_threads();
    if (!(s->x = alloc_f(R * C, &b)) || !(s->xn = alloc_f(R * C, &b)) || !(s->tmp = alloc_f(R * C, &b)) ||
        !(s->xlast = alloc_f(R * C, &b)) || !(s->q = alloc_f(R * QD, &b)) || !(s->att = alloc_f(R * QD, &b)) ||
        !(s->k = alloc_f(R * KD, &b)) || !(s->v = alloc_f(R * KD, &b)) || !(s->g = alloc_f(R * c->inter, &b)) ||
        !(s->u = alloc_f(R * c->inter, &b)) || !(s->cos_l = alloc_f(R * HD / 2, &b)) || !(s->sin_l = alloc_f(R * HD / 2, &b)) ||
        !(s->cos_g = alloc_f(R * HD / 2, &b)) || !(s->sin_g = alloc_f(R * HD / 2, &b)) || !(s->kbuf = alloc_f(S * HD, &b)) ||
        !(s->vbuf = alloc_f(S * HD, &b)) || !(s->ablk = alloc_f((long)s->nthreads * AB * (S + 2 * HD), &b)) ||
        !(s->scores = alloc_f(R * S, &b)) || !(s->hq = alloc_f(R * HD, &b)) || !(s->ho = alloc_f(R * HD, &b)) || !(s->tscores = alloc_f((long)s->nthreads * S, &b)) ||
        !(s->logits = alloc_f(G3_MIN(R, nslots) * (long)c->vocab, &b)))
        goto fail;
    s->logits_rows = G3_MIN(max_rows, nslots);
    if (bytes) *bytes = b;
    return s;
fail:
    g3_state_free(s);
    return NULL;
}

void g3_state_free(G3State *s) {
    if (!s) return;
    if (s->kc)
        for (int l = 0; l < s->m->cfg.layers; l++) { g3_free_aligned(s->kc[l]); g3_free_aligned(s->vc[l]); }
    float *bufs[] = {s->x, s->xn, s->tmp, s->xlast, s->q, s->att, s->k, s->v, s->g, s->u, s->cos_l, s->sin_l,
                     s->cos_g, s->sin_g, s->kbuf, s->vbuf, s->ablk, s->scores, s->hq, s->ho, s->tscores, s->logits};
    for (size_t i = 0; i < G3_ARRAY_LEN(bufs); i++) g3_free_aligned(bufs[i]);
    free(s->kc); free(s->vc); free(s->cap); free(s->len); free(s->row_pos);
    free(s);
}

void g3_state_reset(G3State *s, int seq) {
    if (seq >= 0 && seq < s->nslots) s->len[seq] = 0;
}

void g3_state_set_hook(G3State *s, G3HookFn fn, void *ctx, uint32_t sites, uint64_t layers) {
    s->hook = fn;
    s->hook_ctx = fn ? ctx : NULL;
    s->hook_sites = fn ? sites : 0;
    s->hook_layers = fn ? layers : 0;
}

// Whether the hook wants (site, layer l); l < 0 for the unnumbered sites. The first test is
// the only cost of a site when no hook is set. Layers past 63 (no Gemma has them) are hooked
// only when every layer is.
static inline int hook_on(const G3State *s, G3HookSite site, int l) {
    return (s->hook_sites >> site & 1u) && (l < 0 || (l < 64 ? s->hook_layers >> l & 1u : s->hook_layers == ~0ull));
}

// Calls the hook once per segment with that segment's rows of d[rows][cols].
static void fire_rows(G3State *s, G3HookSite site, int l, const G3Segment *segs, int nseg, float *d, int cols, int heads, int hd) {
    if (!s->hook) return;
    long r0 = 0;
    for (int i = 0; i < nseg; i++) {
        G3HookEvent ev = {site, l, -1, i, segs[i].seq, segs[i].pos0, segs[i].n, cols, heads, hd, 0, d + r0 * cols};
        s->hook(s->hook_ctx, &ev);
        r0 += segs[i].n;
    }
}
// The same for LAST-mode outputs d[nseg][cols]: one row per segment, its last.
static void fire_last(G3State *s, G3HookSite site, const G3Segment *segs, int nseg, float *d, int cols) {
    if (!s->hook) return;
    for (int i = 0; i < nseg; i++) {
        G3HookEvent ev = {site, -1, -1, i, segs[i].seq, segs[i].pos0 + segs[i].n - 1, 1, cols, 0, 0, 0, d + (long)i * cols};
        s->hook(s->hook_ctx, &ev);
    }
}
#define HOOK_ROWS(site, l, d, cols, heads, hd) \
    do { if (hook_on(s, site, l)) fire_rows(s, site, l, segs, nseg, d, cols, heads, hd); } while (0)

static void matmul(G3State *s, float *y, const float *x, const G3Tensor *w, int rows) {
    g3_matmul(y, x, w->data, w->dtype, rows, (int)w->shape[1], (int)w->shape[0], s->fast);
}

// Cache row of position p for slot seq, kv head kh.
static inline float *cache_row(float *cache, const G3State *s, int l, int seq, int kh, int p) {
    const G3Config *c = &s->m->cfg;
    long cap = s->cap[l];
    return cache + (((long)seq * c->kv_heads + kh) * cap + p % cap) * c->head_dim;
}

// The score of query position p against key position kp, already scaled; -inf if masked.
static inline float masked(float sc, int p, int kp, int sliding, int W, float softcap) {
    if (kp > p || (sliding && p - kp >= W)) return -INFINITY;
    return softcap > 0 ? tanhf(sc / softcap) * softcap : sc;
}

// Attention for one segment of n >= 2 rows. Keys/values of one kv head are gathered once;
// then each query head runs in blocks of AB rows, and a block only multiplies against the
// keys some row of it can see (causal, and inside the window on sliding layers): prefill
// does half the work of the full square, and a long prompt on a sliding layer a band of
// width W. Rows' scores are softmaxed over their visible range only; the rest is exactly 0.
static void attend_block(G3State *s, int l, const G3Segment *sg, int r0, int h, int lo, int i0, int i1, float *scr) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NH = c->heads, W = c->sliding_window, sliding = c->sliding[l], pos0 = sg->pos0;
    const float scale = 1.0f / sqrtf(c->query_pre_attn_scalar), cap = c->attn_softcap;
    // visible keys of row i (index into kbuf): [first(i), pos0 + i - lo]
#define FIRST(i) (sliding ? G3_MAX(0, pos0 + (i) - (W - 1) - lo) : 0)
    const int ja = FIRST(i0), jb = pos0 + i1 - 1 - lo + 1, w = jb - ja, nb = i1 - i0;
    float *qb = scr, *ob = qb + AB * HD, *blk = ob + AB * HD;  // [AB][HD], [AB][HD], [AB][w]
    for (int i = 0; i < nb; i++)
        memcpy(qb + (long)i * HD, s->q + (long)(r0 + i0 + i) * NH * HD + (long)h * HD, (size_t)HD * sizeof(float));
    g3_sgemm(0, 1, nb, w, HD, qb, s->kbuf + (long)ja * HD, blk, 0);  // blk[nb][w] = q K^T
    for (int i = 0; i < nb; i++) {
        float *row = blk + (long)i * w;
        int a = FIRST(i0 + i) - ja, b = pos0 + i0 + i - lo - ja + 1;  // visible: [a, b)
        for (int j = 0; j < a; j++) row[j] = 0;
        for (int j = a; j < b; j++) row[j] = cap > 0 ? tanhf(row[j] * scale / cap) * cap : row[j] * scale;
        g3_softmax(row + a, b - a);
        for (int j = b; j < w; j++) row[j] = 0;
    }
#undef FIRST
    g3_sgemm(0, 0, nb, HD, w, blk, s->vbuf + (long)ja * HD, ob, 0);  // ob[nb][HD] = P V
    for (int i = 0; i < nb; i++)
        memcpy(s->att + (long)(r0 + i0 + i) * NH * HD + (long)h * HD, ob + (long)i * HD, (size_t)HD * sizeof(float));
}

// Gathers keys/values of kv head kh at positions lo .. lo+S-1 into kbuf/vbuf[S][HD]: the
// cache for positions before the segment, this call's rows (from r0) for its own.
static void gather_kv(G3State *s, int l, const G3Segment *sg, int r0, int kh, int lo, int S) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NKV = c->kv_heads, pos0 = sg->pos0;
    for (int j = 0; j < S; j++) {
        int p = lo + j;
        const float *kr, *vr;
        if (p < pos0) {
            kr = cache_row(s->kc[l], s, l, sg->seq, kh, p);
            vr = cache_row(s->vc[l], s, l, sg->seq, kh, p);
        } else {
            kr = s->k + (long)(r0 + p - pos0) * NKV * HD + (long)kh * HD;
            vr = s->v + (long)(r0 + p - pos0) * NKV * HD + (long)kh * HD;
        }
        memcpy(s->kbuf + (long)j * HD, kr, (size_t)HD * sizeof(float));
        memcpy(s->vbuf + (long)j * HD, vr, (size_t)HD * sizeof(float));
    }
}

static void attend_segment(G3State *s, int l, const G3Segment *sg, int r0) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NH = c->heads, NKV = c->kv_heads, G = NH / NKV, W = c->sliding_window;
    const int n = sg->n, pos0 = sg->pos0;
    const int lo = c->sliding[l] ? G3_MAX(0, pos0 - (W - 1)) : 0;
    const int S = pos0 + n - lo, nblk = (n + AB - 1) / AB;
    for (int kh = 0; kh < NKV; kh++) {
        gather_kv(s, l, sg, r0, kh, lo, S);
        for (int gi = 0; gi < G; gi++) {
            int h = kh * G + gi;
#pragma omp parallel for num_threads(s->nthreads) schedule(dynamic, 1) if (nblk > 1 && (long)n * S > 16384)
            for (int b = 0; b < nblk; b++)
                attend_block(s, l, sg, r0, h, lo, b * AB, G3_MIN(n, (b + 1) * AB), s->ablk + (long)omp_get_thread_num() * AB * (S + 2 * HD));
        }
    }
}

// Attention for one segment of any length with score/pattern hooks: each head's full
// scores[n][S] over keys lo.. are materialised, shown to the hook, softmaxed, shown again,
// and multiplied by V, so that what the hook leaves in either buffer is what is used.
static void attend_hooked(G3State *s, int l, const G3Segment *sg, int segi, int r0) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NH = c->heads, NKV = c->kv_heads, G = NH / NKV, W = c->sliding_window;
    const int n = sg->n, pos0 = sg->pos0, sliding = c->sliding[l];
    const int lo = sliding ? G3_MAX(0, pos0 - (W - 1)) : 0, S = pos0 + n - lo;
    const float scale = 1.0f / sqrtf(c->query_pre_attn_scalar);
    float *sc = s->scores;  // [n][S]
    for (int kh = 0; kh < NKV; kh++) {
        gather_kv(s, l, sg, r0, kh, lo, S);
        for (int gi = 0; gi < G; gi++) {
            int h = kh * G + gi;
            for (int i = 0; i < n; i++)
                memcpy(s->hq + (long)i * HD, s->q + (long)(r0 + i) * NH * HD + (long)h * HD, (size_t)HD * sizeof(float));
            g3_sgemm(0, 1, n, S, HD, s->hq, s->kbuf, sc, 0);  // sc[n][S] = q K^T
#pragma omp parallel for if ((long)n * S > 16384) schedule(static)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < S; j++)
                    sc[(long)i * S + j] = masked(sc[(long)i * S + j] * scale, pos0 + i, lo + j, sliding, W, c->attn_softcap);
            G3HookEvent ev = {G3_HOOK_ATTN_SCORES, l, h, segi, sg->seq, pos0, n, S, 0, 0, lo, sc};
            if (hook_on(s, G3_HOOK_ATTN_SCORES, l)) s->hook(s->hook_ctx, &ev);
#pragma omp parallel for if ((long)n * S > 16384) schedule(static)
            for (int i = 0; i < n; i++) g3_softmax(sc + (long)i * S, S);
            ev.site = G3_HOOK_PATTERN;
            if (hook_on(s, G3_HOOK_PATTERN, l)) s->hook(s->hook_ctx, &ev);
            g3_sgemm(0, 0, n, HD, S, sc, s->vbuf, s->ho, 0);  // ho[n][HD] = P V
            for (int i = 0; i < n; i++)
                memcpy(s->att + (long)(r0 + i) * NH * HD + (long)h * HD, s->ho + (long)i * HD, (size_t)HD * sizeof(float));
        }
    }
}

// Attention for one row (decode), one query head: reads keys straight from the cache.
static void attend_row(G3State *s, int l, const G3Segment *sg, int r, int h, float *sc) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NH = c->heads, NKV = c->kv_heads, kh = h / (NH / NKV), W = c->sliding_window;
    const int sliding = c->sliding[l], p = s->row_pos[r];
    const float scale = 1.0f / sqrtf(c->query_pre_attn_scalar);
    const int lo = sliding ? G3_MAX(0, p - (W - 1)) : 0, S = p + 1 - lo;
    const int r0 = r - (p - sg->pos0);  // the segment's first row
    const float *q = s->q + (long)r * NH * HD + (long)h * HD;
    for (int j = 0; j < S; j++) {
        int kp = lo + j;
        const float *kr = kp < sg->pos0 ? cache_row(s->kc[l], s, l, sg->seq, kh, kp)
                                        : s->k + (long)(r0 + kp - sg->pos0) * NKV * HD + (long)kh * HD;
        sc[j] = masked(g3_dot(q, kr, HD) * scale, p, kp, sliding, W, c->attn_softcap);
    }
    g3_softmax(sc, S);
    float *out = s->att + (long)r * NH * HD + (long)h * HD;
    memset(out, 0, (size_t)HD * sizeof(float));
    for (int j = 0; j < S; j++) {
        int kp = lo + j;
        const float *vr = kp < sg->pos0 ? cache_row(s->vc[l], s, l, sg->seq, kh, kp)
                                        : s->v + (long)(r0 + kp - sg->pos0) * NKV * HD + (long)kh * HD;
        g3_axpy(out, sc[j], vr, HD);
    }
}

// The fast path: short segments (decode steps) run as (row, head) tasks in parallel; long
// ones as GEMMs.
static void attend_fast(G3State *s, int l, const G3Segment *segs, int nseg) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NH = c->heads;
    int r0 = 0, nshort = 0;
    long work = 0;  // multiply-adds of the one-row tasks: threads only pay off above a few thousand
    for (int i = 0; i < nseg; i++)
        if (segs[i].n <= 2) {
            nshort += segs[i].n;
            work += (long)segs[i].n * (segs[i].pos0 + segs[i].n) * NH * HD * 2;
        }
    if (nshort) {
        int *task_seg = g3_malloc((size_t)nshort * sizeof *task_seg);
        int *task_row = g3_malloc((size_t)nshort * sizeof *task_row);
        int nt = 0;
        for (int i = 0, r = 0; i < nseg; r += segs[i].n, i++)
            if (segs[i].n <= 2)
                for (int k = 0; k < segs[i].n; k++) { task_seg[nt] = i; task_row[nt++] = r + k; }
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work > 65536)
        for (int t = 0; t < nshort; t++)
            for (int h = 0; h < NH; h++)
                attend_row(s, l, &segs[task_seg[t]], task_row[t], h, s->tscores + (long)omp_get_thread_num() * (s->ctx + s->max_rows));
        free(task_seg);
        free(task_row);
    }
    for (int i = 0; i < nseg; r0 += segs[i].n, i++)
        if (segs[i].n > 2) attend_segment(s, l, &segs[i], r0);
}

static void attention(G3State *s, int l, const G3Segment *segs, int nseg) {
    const G3Config *c = &s->m->cfg;
    const int HD = c->head_dim, NKV = c->kv_heads;
    int r0 = 0;
    if (s->hook && (hook_on(s, G3_HOOK_ATTN_SCORES, l) || hook_on(s, G3_HOOK_PATTERN, l)))
        for (int i = 0; i < nseg; r0 += segs[i].n, i++) attend_hooked(s, l, &segs[i], i, r0);
    else
        attend_fast(s, l, segs, nseg);
    // append this call's keys/values to the cache (rings keep the newest W positions); after
    // the k/v hooks, so that their edits are what later tokens see
    r0 = 0;
    for (int i = 0; i < nseg; r0 += segs[i].n, i++) {
        int first = G3_MAX(0, segs[i].n - s->cap[l]);  // older rows would be overwritten anyway
        for (int k = first; k < segs[i].n; k++)
            for (int kh = 0; kh < NKV; kh++) {
                int p = segs[i].pos0 + k;
                memcpy(cache_row(s->kc[l], s, l, segs[i].seq, kh, p), s->k + (long)(r0 + k) * NKV * HD + (long)kh * HD, (size_t)HD * sizeof(float));
                memcpy(cache_row(s->vc[l], s, l, segs[i].seq, kh, p), s->v + (long)(r0 + k) * NKV * HD + (long)kh * HD, (size_t)HD * sizeof(float));
            }
    }
}

// QK-norm (Gemma 3) and RoPE of every row's q and k, fused in one pass, or one step at a
// time when a hook wants to see q/k between them.
static void qk_norm_rope(G3State *s, int l, int rows, int norm, int rope) {
    const G3Model *m = s->m;
    const G3Config *c = &m->cfg;
    const int HD = c->head_dim, NH = c->heads, NKV = c->kv_heads;
    const float *cs = c->sliding[l] ? s->cos_l : s->cos_g, *sn = c->sliding[l] ? s->sin_l : s->sin_g;
    const float *qn = c->qk_norm ? g3_layer_tensor(m, l, W_Q_NORM)->norm1p : NULL;
    const float *kn = c->qk_norm ? g3_layer_tensor(m, l, W_K_NORM)->norm1p : NULL;
#pragma omp parallel for if (rows > 8) schedule(static)
    for (int r = 0; r < rows; r++) {
        float *qr = s->q + (long)r * NH * HD, *kr = s->k + (long)r * NKV * HD;
        if (norm && c->qk_norm) {
            for (int h = 0; h < NH; h++) g3_rmsnorm(qr + (long)h * HD, qr + (long)h * HD, qn, HD, c->eps);
            for (int h = 0; h < NKV; h++) g3_rmsnorm(kr + (long)h * HD, kr + (long)h * HD, kn, HD, c->eps);
        }
        if (rope) {
            g3_rope(qr, NH, HD, cs + (long)r * HD / 2, sn + (long)r * HD / 2);
            g3_rope(kr, NKV, HD, cs + (long)r * HD / 2, sn + (long)r * HD / 2);
        }
    }
}

int g3_forward(G3State *s, const int32_t *tokens, const G3Segment *segs, int nseg, G3LogitsMode mode) {
    const G3Model *m = s->m;
    const G3Config *c = &m->cfg;
    const int C = c->hidden, HD = c->head_dim, NH = c->heads, NKV = c->kv_heads, F = c->inter;
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
    if (rows > s->max_rows) return g3_errorf("%d rows exceed this state's %d rows per call", rows, s->max_rows);
    for (int r = 0; r < rows; r++)
        if (tokens[r] < 0 || tokens[r] >= c->vocab) return g3_errorf("token id %d at row %d is outside the vocabulary [0, %d)", tokens[r], r, c->vocab);

    // positions and RoPE tables (two kinds of layers, two tables)
    for (int i = 0, r = 0; i < nseg; i++)
        for (int k = 0; k < segs[i].n; k++) s->row_pos[r++] = segs[i].pos0 + k;
#pragma omp parallel for if (rows > 8) schedule(static)
    for (int r = 0; r < rows; r++) {
        g3_rope_angles(s->cos_l + (long)r * HD / 2, s->sin_l + (long)r * HD / 2, s->row_pos[r], HD, c->rope_local_base, c->rope_local_scale);
        g3_rope_angles(s->cos_g + (long)r * HD / 2, s->sin_g + (long)r * HD / 2, s->row_pos[r], HD, c->rope_global_base, c->rope_global_scale);
    }

    // embedding, scaled by sqrt(hidden) (exactly, as the float64 reference does)
    const G3Tensor *E = &m->t[m->embed_idx];
    const float escale = sqrtf((float)C);
    for (int r = 0; r < rows; r++) {
        float *xr = s->x + (long)r * C;
        g3_to_f32(xr, (const char *)E->data + (long)tokens[r] * C * g3_dtype_size(E->dtype), E->dtype, (size_t)C);
        for (int i = 0; i < C; i++) xr[i] *= escale;
    }
    HOOK_ROWS(G3_HOOK_EMBED, -1, s->x, C, 0, 0);

    for (int l = 0; l < c->layers; l++) {
#define LW(role) g3_layer_tensor(m, l, role)
        HOOK_ROWS(G3_HOOK_RESID_PRE, l, s->x, C, 0, 0);
        // attention block
        g3_rmsnorm_rows(s->xn, s->x, LW(W_ATTN_NORM)->norm1p, rows, C, c->eps);
        HOOK_ROWS(G3_HOOK_LN1, l, s->xn, C, 0, 0);
        matmul(s, s->q, s->xn, LW(W_Q), rows);
        matmul(s, s->k, s->xn, LW(W_K), rows);
        matmul(s, s->v, s->xn, LW(W_V), rows);
        if (hook_on(s, G3_HOOK_Q, l) || hook_on(s, G3_HOOK_K, l)) {
            qk_norm_rope(s, l, rows, 1, 0);
            HOOK_ROWS(G3_HOOK_Q, l, s->q, NH * HD, NH, HD);
            HOOK_ROWS(G3_HOOK_K, l, s->k, NKV * HD, NKV, HD);
            qk_norm_rope(s, l, rows, 0, 1);
        } else {
            qk_norm_rope(s, l, rows, 1, 1);
        }
        HOOK_ROWS(G3_HOOK_V, l, s->v, NKV * HD, NKV, HD);
        HOOK_ROWS(G3_HOOK_ROT_Q, l, s->q, NH * HD, NH, HD);
        HOOK_ROWS(G3_HOOK_ROT_K, l, s->k, NKV * HD, NKV, HD);
        attention(s, l, segs, nseg);
        HOOK_ROWS(G3_HOOK_Z, l, s->att, NH * HD, NH, HD);
        matmul(s, s->tmp, s->att, LW(W_O), rows);
        HOOK_ROWS(G3_HOOK_ATTN_OUT, l, s->tmp, C, 0, 0);
        g3_rmsnorm_rows(s->tmp, s->tmp, LW(W_POST_ATTN_NORM)->norm1p, rows, C, c->eps);
        for (long i = 0; i < (long)rows * C; i++) s->x[i] += s->tmp[i];
        HOOK_ROWS(G3_HOOK_RESID_MID, l, s->x, C, 0, 0);
        // MLP block
        g3_rmsnorm_rows(s->xn, s->x, LW(W_PRE_FFW_NORM)->norm1p, rows, C, c->eps);
        HOOK_ROWS(G3_HOOK_LN2, l, s->xn, C, 0, 0);
        matmul(s, s->g, s->xn, LW(W_GATE), rows);
        HOOK_ROWS(G3_HOOK_MLP_PRE, l, s->g, F, 0, 0);
        matmul(s, s->u, s->xn, LW(W_UP), rows);
        HOOK_ROWS(G3_HOOK_MLP_PRE_LINEAR, l, s->u, F, 0, 0);
        g3_geglu(s->g, s->u, (long)rows * F, c->act == G3_GELU_ERF);
        HOOK_ROWS(G3_HOOK_MLP_POST, l, s->g, F, 0, 0);
        matmul(s, s->tmp, s->g, LW(W_DOWN), rows);
        HOOK_ROWS(G3_HOOK_MLP_OUT, l, s->tmp, C, 0, 0);
        g3_rmsnorm_rows(s->tmp, s->tmp, LW(W_POST_FFW_NORM)->norm1p, rows, C, c->eps);
        for (long i = 0; i < (long)rows * C; i++) s->x[i] += s->tmp[i];
        HOOK_ROWS(G3_HOOK_RESID_POST, l, s->x, C, 0, 0);
#undef LW
    }
    for (int i = 0; i < nseg; i++) s->len[segs[i].seq] += segs[i].n;

    // final norm and the tied output head, only for the rows whose logits are wanted
    if (mode == G3_LOGITS_NONE) return 0;
    const float *fin = m->t[m->final_norm_idx].norm1p;
    int nout = 0;
    if (mode == G3_LOGITS_ALL) {
        g3_rmsnorm_rows(s->xlast, s->x, fin, rows, C, c->eps);
        nout = rows;
        HOOK_ROWS(G3_HOOK_LN_FINAL, -1, s->xlast, C, 0, 0);
    } else {
        for (int i = 0, r = 0; i < nseg; i++) {
            r += segs[i].n;
            g3_rmsnorm(s->xlast + (long)i * C, s->x + (long)(r - 1) * C, fin, C, c->eps);
        }
        nout = nseg;
        if (hook_on(s, G3_HOOK_LN_FINAL, -1)) fire_last(s, G3_HOOK_LN_FINAL, segs, nseg, s->xlast, C);
    }
    if (nout > s->logits_rows) {  // only ALL mode over many rows needs more than one row per slot
        float *nl = g3_malloc_aligned((size_t)nout * c->vocab * sizeof(float));
        if (!nl) return -1;
        g3_free_aligned(s->logits);
        s->logits = nl;
        s->logits_rows = nout;
    }
    g3_matmul(s->logits, s->xlast, E->data, E->dtype, nout, C, c->vocab, s->fast);
    if (c->final_softcap > 0) g3_softcap(s->logits, (long)nout * c->vocab, c->final_softcap);
    if (mode == G3_LOGITS_ALL) HOOK_ROWS(G3_HOOK_LOGITS, -1, s->logits, c->vocab, 0, 0);
    else if (hook_on(s, G3_HOOK_LOGITS, -1)) fire_last(s, G3_HOOK_LOGITS, segs, nseg, s->logits, c->vocab);
    return 0;
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
