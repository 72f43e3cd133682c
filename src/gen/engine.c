// engine.c: the step-based generation engine (see engine.h): a FIFO queue of sequences, the
// cache slots they live in, and the planning of each step's forward call.
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

const char *g3_stop_name(G3StopReason r) {
    static const char *names[] = {"none", "eos", "stop_string", "max_tokens", "context", "aborted", "error"};
    return (unsigned)r < G3_ARRAY_LEN(names) ? names[r] : "?";
}

enum { QUEUED, ACTIVE, DONE };
// Ids are (generation << IDX_BITS) | table index, so a released id is not mistaken for the
// sequence that later reuses its index; 15 generation bits keep ids positive.
enum { IDX_BITS = 16, MAX_SEQS = 1 << IDX_BITS, GEN_MASK = 0x7fff, DEFAULT_QUEUE = 1024 };

typedef struct Seq {
    int id, state;
    int32_t *hist;        // [cap] every prompt and output token, in order
    int nhist, cap;
    int out0;             // where the current turn's output starts in hist
    int max_tokens;
    int32_t *stop_ids;    // [nstop]
    int nstop;
    G3SeqParams p;        // callbacks, sampler, user (prompt and stop pointers not kept)
    int slot;             // ACTIVE: its slot; else the last one it held, or -1
    int nfed;             // ACTIVE: tokens of hist in the slot's cache
    int cached;           // tokens found in the cache at admission
    long admit_no;        // admission order: prompt chunks are served oldest first
    G3StopReason stop;
    char error[256];
    double prefill_s, decode_s;
    struct Seq *qprev, *qnext;  // the queue, while QUEUED
    G3StateImage *images;       // [p.nimages] copied from the params
} Seq;

typedef struct {
    Seq *owner;    // the live sequence in it, or NULL (free)
    int32_t *tok;  // [ctx] the ids its cache holds, in position order
    int ntok;      // == s->len[slot] while the engine alone drives the state
    long used;     // clock of its last forward call (free slots are reused least recent first)
    int img;       // its cache was read with images the engine registered (no prefix for others)
} Slot;

struct G3Engine {
    G3State *s;
    G3EngineOptions opt;
    Slot *slots;          // [nslots]
    Seq **tab;            // [ntab] records by index (NULL: unused)
    uint16_t *gen;        // [ntab] generation of each index
    int ntab, *freeidx, nfree;
    Seq *qhead, *qtail;
    int nqueued, nlive;
    long admits, clock;
    int in_cb;            // > 0 while a callback runs
    // the plan of one forward call, sized at creation
    int32_t *tokens;      // [max_rows]
    G3Segment *segs;      // [nslots]
    Seq **seg_seq;        // [nslots] the sequence of each segment
    Seq **order;          // [nslots] scratch: prompt readers by admission order
    // the device sampler (backend.h sample_top_k), set up when the state's backend has one
    int dev_sample;       // 0: the logits always come back (no such op, or G3_HOST_SAMPLER=1)
    G3SampleRow *srow;    // [nslots] one row per segment of a call
    int32_t *sid, *sbad;  // [nslots][G3_SAMPLE_TOP_K_MAX] candidate ids, [nslots] bad-logits flags
    float *sval;          // [nslots][G3_SAMPLE_TOP_K_MAX] their logits after the penalties
    int32_t *swin;        // [swin_cap] the rows' penalty windows, one after another (grown)
    int swin_cap, skmax;  // skmax: the stride of sid / sval in the current call
};

// ---- records ----

static Seq *lookup(const G3Engine *e, int id) {
    if (id < 0) return NULL;
    int idx = id & (MAX_SEQS - 1);
    if (idx >= e->ntab || !e->tab[idx] || e->tab[idx]->id != id) return NULL;
    return e->tab[idx];
}

static void seq_free(Seq *q) {
    if (!q) return;
    free(q->hist);
    free(q->stop_ids);
    free(q->images);
    free(q);
}

// A table index for a new record (the table grows by doubling, up to MAX_SEQS).
static int take_index(G3Engine *e) {
    if (e->nfree) return e->freeidx[--e->nfree];
    if (e->ntab == MAX_SEQS) return g3_errorf("engine: %d sequences kept; release finished ones", MAX_SEQS);
    int n = e->ntab ? G3_MIN(2 * e->ntab, MAX_SEQS) : 64;
    Seq **t = g3_realloc(e->tab, (size_t)n * sizeof *t);
    if (!t) return -1;
    e->tab = t;
    uint16_t *g = g3_realloc(e->gen, (size_t)n * sizeof *g);
    if (!g) return -1;
    e->gen = g;
    int *f = g3_realloc(e->freeidx, (size_t)n * sizeof *f);
    if (!f) return -1;
    e->freeidx = f;
    for (int i = n - 1; i > e->ntab; i--) { t[i] = NULL; g[i] = 0; e->freeidx[e->nfree++] = i; }
    t[e->ntab] = NULL;
    g[e->ntab] = 0;
    int idx = e->ntab;
    e->ntab = n;
    return idx;
}

static void enqueue(G3Engine *e, Seq *q) {
    q->state = QUEUED;
    q->qnext = NULL;
    q->qprev = e->qtail;
    if (e->qtail) e->qtail->qnext = q; else e->qhead = q;
    e->qtail = q;
    e->nqueued++;
}

static void unqueue(G3Engine *e, Seq *q) {
    if (q->qprev) q->qprev->qnext = q->qnext; else e->qhead = q->qnext;
    if (q->qnext) q->qnext->qprev = q->qprev; else e->qtail = q->qprev;
    q->qprev = q->qnext = NULL;
    e->nqueued--;
}

// Ends q's turn: frees its slot (the cache stays, for a later prefix match) or its place in
// the queue, then tells the caller.
static void finish(G3Engine *e, Seq *q, G3StopReason why) {
    if (q->state == ACTIVE) {
        e->slots[q->slot].owner = NULL;
        e->nlive--;
    } else if (q->state == QUEUED) {
        unqueue(e, q);
    }
    q->state = DONE;
    q->stop = why;
    if (q->p.on_done) {
        e->in_cb++;
        q->p.on_done(q->p.user, q->id);
        e->in_cb--;
    }
}

static void fail(G3Engine *e, Seq *q, const char *msg) {
    snprintf(q->error, sizeof q->error, "%s", msg);
    finish(e, q, G3_STOP_ERROR);
}

// ---- creation ----

G3Engine *g3_engine_new(G3State *s, const G3EngineOptions *opt) {
    if (!s) { g3_errorf("engine: no state"); return NULL; }
    if (s->max_rows < s->nslots) {
        g3_errorf("engine: the state's %d rows per call cannot hold one decoding row for each of its %d slots", s->max_rows, s->nslots);
        return NULL;
    }
    G3Engine *e = g3_calloc(1, sizeof *e);
    if (!e) return NULL;
    e->s = s;
    if (opt) e->opt = *opt;
    if (e->opt.max_queued <= 0) e->opt.max_queued = DEFAULT_QUEUE;
    const int B = s->nslots;
    e->slots = g3_calloc((size_t)B, sizeof *e->slots);
    e->tokens = g3_malloc((size_t)s->max_rows * sizeof *e->tokens);
    e->segs = g3_malloc((size_t)B * sizeof *e->segs);
    e->seg_seq = g3_malloc((size_t)B * sizeof *e->seg_seq);
    e->order = g3_malloc((size_t)B * sizeof *e->order);
    if (!e->slots || !e->tokens || !e->segs || !e->seg_seq || !e->order) goto fail;
    for (int j = 0; j < B; j++) {
        if (!(e->slots[j].tok = g3_malloc((size_t)s->ctx * sizeof(int32_t)))) goto fail;
        g3_state_reset(s, j);  // the engine knows nothing of what was there before
    }
    const char *hs = getenv("G3_HOST_SAMPLER");
    if (!s->be->host && s->be->sample_top_k && !(hs && !strcmp(hs, "1"))) {
        e->dev_sample = 1;
        e->srow = g3_malloc((size_t)B * sizeof *e->srow);
        e->sid = g3_malloc((size_t)B * G3_SAMPLE_TOP_K_MAX * sizeof *e->sid);
        e->sval = g3_malloc((size_t)B * G3_SAMPLE_TOP_K_MAX * sizeof *e->sval);
        e->sbad = g3_malloc((size_t)B * sizeof *e->sbad);
        if (!e->srow || !e->sid || !e->sval || !e->sbad) goto fail;
    }
    return e;
fail:
    g3_engine_free(e);
    return NULL;
}

void g3_engine_free(G3Engine *e) {
    if (!e) return;
    for (int i = 0; i < e->ntab; i++) seq_free(e->tab[i]);
    if (e->slots)
        for (int j = 0; j < e->s->nslots; j++) free(e->slots[j].tok);
    free(e->slots); free(e->tab); free(e->gen); free(e->freeidx);
    free(e->tokens); free(e->segs); free(e->seg_seq); free(e->order);
    free(e->srow); free(e->sid); free(e->sval); free(e->sbad); free(e->swin);
    free(e);
}

// ---- adding ----

static int check_ids(const G3Engine *e, const int32_t *ids, int n, int at) {
    const int V = e->s->m->cfg.vocab;
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) return g3_errorf("token id %d at position %d is outside the vocabulary [0, %d)", ids[i], at + i, V);
    return 0;
}

// Room for n tokens of history plus max_tokens outputs; the context caps both.
static int reserve(Seq *q, int n, int max_tokens, int ctx) {
    int cap = (int)G3_MIN((long)n + max_tokens, (long)ctx);
    if (cap < n) cap = n;
    if (cap <= q->cap) return 0;
    int32_t *h = g3_realloc(q->hist, (size_t)cap * sizeof *h);
    if (!h) return -1;
    q->hist = h;
    q->cap = cap;
    return 0;
}

int g3_engine_add(G3Engine *e, const G3SeqParams *p) {
    if (e->in_cb) return g3_errorf("engine: add called from a callback");
    const int ctx = e->s->ctx;
    if (!p->prompt || p->nprompt < 1) return g3_errorf("empty prompt");
    if (p->max_tokens < 0) return g3_errorf("max_tokens %d is negative", p->max_tokens);
    if (p->nstop < 0 || (p->nstop > 0 && !p->stop_ids)) return g3_errorf("engine: bad stop ids");
    if (p->max_tokens > 0 ? p->nprompt >= ctx : p->nprompt > ctx)
        return g3_errorf("prompt of %d tokens leaves no room in a context of %d", p->nprompt, ctx);
    if (check_ids(e, p->prompt, p->nprompt, 0)) return -1;
    if (e->nqueued >= e->opt.max_queued) return g3_errorf("engine: queue full (%d sequences waiting)", e->nqueued);
    Seq *q = g3_calloc(1, sizeof *q);
    if (!q) return -1;
    if (reserve(q, p->nprompt, p->max_tokens, ctx) || (p->nstop && !(q->stop_ids = g3_malloc((size_t)p->nstop * sizeof(int32_t)))) ||
        (p->nimages > 0 && !(q->images = g3_malloc((size_t)p->nimages * sizeof *q->images)))) {
        seq_free(q);
        return -1;
    }
    if (p->nimages > 0) memcpy(q->images, p->images, (size_t)p->nimages * sizeof *q->images);
    int idx = take_index(e);
    if (idx < 0) { seq_free(q); return -1; }
    memcpy(q->hist, p->prompt, (size_t)p->nprompt * sizeof(int32_t));
    q->nhist = q->out0 = p->nprompt;
    q->max_tokens = p->max_tokens;
    if (p->nstop) memcpy(q->stop_ids, p->stop_ids, (size_t)p->nstop * sizeof(int32_t));
    q->nstop = p->nstop;
    q->p = *p;
    q->p.prompt = q->p.stop_ids = NULL;
    q->p.images = NULL;
    q->p.nimages = p->nimages > 0 ? p->nimages : 0;
    q->slot = -1;
    q->id = (int)((unsigned)(e->gen[idx] & GEN_MASK) << IDX_BITS | (unsigned)idx);
    e->tab[idx] = q;
    enqueue(e, q);
    return q->id;
}

int g3_engine_extend(G3Engine *e, int id, const int32_t *more, int n, int max_tokens) {
    if (e->in_cb) return g3_errorf("engine: extend called from a callback");
    Seq *q = lookup(e, id);
    if (!q) return g3_errorf("engine: no sequence %d", id);
    if (q->state != DONE) return g3_errorf("engine: sequence %d is still running", id);
    if (q->stop == G3_STOP_ERROR) return g3_errorf("engine: sequence %d ended in an error (%s)", id, q->error);
    if (n < 0 || (n > 0 && !more) || max_tokens < 0) return g3_errorf("engine: bad extension of sequence %d", id);
    const int ctx = e->s->ctx, total = q->nhist + n;
    if (max_tokens > 0 ? total >= ctx : total > ctx)
        return g3_errorf("sequence of %d tokens leaves no room in a context of %d", total, ctx);
    if (check_ids(e, more, n, q->nhist)) return -1;
    if (e->nqueued >= e->opt.max_queued) return g3_errorf("engine: queue full (%d sequences waiting)", e->nqueued);
    if (reserve(q, total, max_tokens, ctx)) return -1;
    if (n) memcpy(q->hist + q->nhist, more, (size_t)n * sizeof *more);
    q->nhist = q->out0 = total;
    q->max_tokens = max_tokens;
    q->stop = G3_STOP_NONE;
    q->error[0] = 0;
    q->prefill_s = q->decode_s = 0;
    q->cached = 0;
    enqueue(e, q);
    return 0;
}

// ---- admission ----

// The free slot for q: one whose tokens all begin q's history (the longest such: its cache
// is reused), else an empty one, else the least recently used.
static int pick_slot(const G3Engine *e, const Seq *q, int *reuse) {
    int match = -1, empty = -1, lru = -1;
    for (int j = 0; j < e->s->nslots; j++) {
        const Slot *sl = &e->slots[j];
        if (sl->owner) continue;
        if (sl->img || q->p.nimages) goto not_a_match;  // images: the same ids, other pixels
        // a match must leave a token to feed (its logits are the next choice), unless q
        // only wants its tokens in the cache
        if (sl->ntok > 0 && e->s->len[j] == sl->ntok && (sl->ntok < q->nhist || (sl->ntok == q->nhist && q->max_tokens == 0)) &&
            !memcmp(sl->tok, q->hist, (size_t)sl->ntok * sizeof(int32_t)) && (match < 0 || sl->ntok > e->slots[match].ntok))
            match = j;
    not_a_match:
        if (sl->ntok == 0 && empty < 0) empty = j;
        if (lru < 0 || sl->used < e->slots[lru].used) lru = j;
    }
    *reuse = match >= 0;
    return match >= 0 ? match : empty >= 0 ? empty : lru;
}

static void admit(G3Engine *e) {
    while (e->qhead && e->nlive < e->s->nslots) {
        Seq *q = e->qhead;
        int reuse, j = pick_slot(e, q, &reuse);
        Slot *sl = &e->slots[j];
        if (!reuse) {
            g3_state_reset(e->s, j);
            sl->ntok = 0;
        }
        if (sl->img || q->p.nimages) {  // the slot's images are those of the sequence in it
            g3_state_clear_images(e->s, j);
            sl->img = 0;
        }
        unqueue(e, q);
        q->state = ACTIVE;
        q->slot = j;
        q->nfed = q->cached = sl->ntok;
        q->admit_no = e->admits++;
        sl->owner = q;
        e->nlive++;
        for (int i = 0; i < q->p.nimages; i++) {
            sl->img = 1;
            if (g3_state_add_image(e->s, j, q->images[i].pos0, q->images[i].n, q->images[i].rows)) {
                fail(e, q, g3_error());
                break;
            }
        }
        if (q->state != ACTIVE) continue;
        if (q->nfed == q->nhist) finish(e, q, G3_STOP_MAX_TOKENS);  // max_tokens 0, all cached
    }
}

// ---- a step ----

// Whether the logits can choose a token: NaN or +inf anywhere (broken weights, an edit gone
// wrong), or every logit -inf, must not quietly become token 0. A single -inf is a masked
// token, allowed (the sampler's definition too). One vectorized pass: 40-80 us for 262,144
// logits on this shared 2-core machine, beside tens of milliseconds of forward pass per token.
static int finite_row(const float *x, int n) {
    int ok = 1;
    float mx = -INFINITY;
#pragma omp simd reduction(& : ok) reduction(max : mx)
    for (int i = 0; i < n; i++) {
        ok &= x[i] < INFINITY;  // false for NaN and +inf
        mx = x[i] > mx ? x[i] : mx;
    }
    return ok && mx > -INFINITY;
}

static void take(G3Engine *e, Seq *q, int32_t tok);

// The sampler q chooses with, or NULL (greedy, or a chooser).
static G3Sampler *sampler_of(G3Engine *e, Seq *q) {
    if (q->p.choose) return NULL;
    if (q->p.sampler || !q->p.sampler_of) return q->p.sampler;
    e->in_cb++;
    G3Sampler *smp = q->p.sampler_of(q->p.user, q->id);
    e->in_cb--;
    return smp;
}

// q has read all its pending tokens: choose the next one from logits [V] and check stops.
// logits NULL: a greedy sequence whose choice the forward pass made (G3_LOGITS_ARGMAX):
// greedy_tok, -1 for logits that hold no choice.
static void advance(G3Engine *e, Seq *q, float *logits, int32_t greedy_tok) {
    const int V = e->s->m->cfg.vocab;
    if (logits ? !finite_row(logits, V) : greedy_tok < 0) { fail(e, q, "non-finite logits (NaN or inf)"); return; }
    G3Sampler *smp = logits ? sampler_of(e, q) : NULL;
    int32_t tok;
    e->in_cb++;
    if (!logits) tok = greedy_tok;
    else if (q->p.choose) tok = q->p.choose(q->p.user, q->id, logits, q->hist, q->nhist);
    else tok = smp ? g3_sampler_sample(smp, logits, q->hist, q->nhist) : g3_argmax(logits, V);
    e->in_cb--;
    take(e, q, tok);
}

// q chose tok (-1: choosing failed, with g3_error set): check it and the stops.
static void take(G3Engine *e, Seq *q, int32_t tok) {
    const int V = e->s->m->cfg.vocab;
    if (tok < 0 || tok >= V) {
        char msg[256];
        if (tok < 0) snprintf(msg, sizeof msg, "choosing a token: %s", g3_error());
        else snprintf(msg, sizeof msg, "chose token %d, outside the vocabulary [0, %d)", tok, V);
        fail(e, q, msg);
        return;
    }
    for (int k = 0; k < q->nstop; k++)
        if (tok == q->stop_ids[k]) { finish(e, q, G3_STOP_EOS); return; }
    q->hist[q->nhist++] = tok;
    G3StopReason why = G3_STOP_STRING;
    int stop = 0;
    if (q->p.on_token) {
        e->in_cb++;
        stop = q->p.on_token(q->p.user, q->id, tok, &why);
        e->in_cb--;
    }
    if (stop) finish(e, q, why);
    else if (q->nhist - q->out0 >= q->max_tokens) finish(e, q, G3_STOP_MAX_TOKENS);
    else if (q->nhist >= e->s->ctx) finish(e, q, G3_STOP_CONTEXT);
}

// ---- the device sampler ----

// Whether q chooses a token after a call that feeds it n tokens (its last pending ones, and
// it still has tokens to make).
static int chooses(const Seq *q, int n) { return q->nfed + n == q->nhist && q->nhist - q->out0 < q->max_tokens; }

// Candidates q's sampler needs from the device (1 when greedy), 0 if it must see all logits.
static int dev_k(G3Engine *e, Seq *q) {
    G3Sampler *smp = sampler_of(e, q);
    return smp ? g3_sampler_device_k(smp, G3_SAMPLE_TOP_K_MAX) : 1;
}

// After a G3_LOGITS_KEEP call: the penalties and the top-k of every choosing row on the
// device, the candidates into e->sid / e->sval (stride e->skmax), the bad-logits flags into
// e->sbad. Rows that do not choose ask for one candidate, unused.
static int sample_on_device(G3Engine *e, int nseg) {
    G3State *s = e->s;
    int nwin = 0, kmax = 1;
    for (int pass = 0; pass < 2; pass++) {  // the windows' total length, then the rows
        nwin = 0;
        for (int i = 0; i < nseg; i++) {
            Seq *q = e->seg_seq[i];
            G3SampleRow *r = &e->srow[i];
            *r = (G3SampleRow){1, nwin, 0, 1.0f, 0.0f, 0.0f};
            G3Sampler *smp = chooses(q, e->segs[i].n) ? sampler_of(e, q) : NULL;
            if (!smp) continue;
            const int32_t *win;
            const int w = g3_sampler_window(smp, q->hist, q->nhist, &win);
            if (w < 0) return -1;
            const G3SamplerConfig *c = g3_sampler_config(smp);
            r->k = g3_sampler_device_k(smp, G3_SAMPLE_TOP_K_MAX);
            r->nw = w;
            r->repeat = c->repeat_penalty;
            r->presence = c->presence_penalty;
            r->frequency = c->frequency_penalty;
            kmax = G3_MAX(kmax, r->k);
            if (pass && w) memcpy(e->swin + nwin, win, (size_t)w * sizeof *win);
            nwin += w;
        }
        if (pass == 0 && nwin > e->swin_cap) {
            int32_t *w = g3_realloc(e->swin, (size_t)nwin * sizeof *w);
            if (!w) return -1;
            e->swin = w;
            e->swin_cap = nwin;
        }
    }
    e->skmax = kmax;
    return s->be->sample_top_k(s->be, s->logits_be, nseg, s->m->cfg.vocab, e->srow, e->swin, nwin, kmax, e->sid, e->sval, e->sbad);
}

// q (segment i of the call) chooses from what the device selected.
static void take_device(G3Engine *e, Seq *q, int i) {
    if (e->sbad[i]) { fail(e, q, "non-finite logits (NaN or inf)"); return; }
    G3Sampler *smp = sampler_of(e, q);
    const int32_t *ids = e->sid + (long)i * e->skmax;
    take(e, q, smp ? g3_sampler_finish(smp, ids, e->sval + (long)i * e->skmax, e->srow[i].k) : ids[0]);
}

// Runs the planned segments as one forward call, then lets each sequence that has read all
// its pending tokens choose its next one.
static int run_call(G3Engine *e, int nseg) {
    G3State *s = e->s;
    const int V = s->m->cfg.vocab;
    int rows = 0;
    for (int i = 0; i < nseg; i++) {
        const Seq *q = e->seg_seq[i];
        memcpy(e->tokens + rows, q->hist + q->nfed, (size_t)e->segs[i].n * sizeof(int32_t));
        rows += e->segs[i].n;
    }
    // Nothing watching, and every sequence that chooses after this call greedy (no sampler, or
    // a plain greedy one): the choices are made where the logits are (on a GPU only the ids
    // come back), the same ids as g3_argmax on the host.
    const int watched = e->opt.all_logits || (s->hook && s->hook_sites);
    int argmax = !watched;
    for (int i = 0; argmax && i < nseg; i++) {
        Seq *q = e->seg_seq[i];
        if (chooses(q, e->segs[i].n)) {
            G3Sampler *smp = sampler_of(e, q);
            argmax = !q->p.choose && (!smp || g3_sampler_plain_greedy(smp));
        }
    }
    // Else, where every sequence that chooses after this call can start its chain on the device
    // (greedy, or a sampler with top-k), only candidates come back.
    int keep = !watched && !argmax && e->dev_sample;
    for (int i = 0; keep && i < nseg; i++) {
        Seq *q = e->seg_seq[i];
        if (chooses(q, e->segs[i].n)) keep = !q->p.choose && (!(q->p.sampler || q->p.sampler_of) || dev_k(e, q) > 0);
    }
    double t0 = g3_now();
    int rc = g3_forward(s, e->tokens, e->segs, nseg,
                        e->opt.all_logits ? G3_LOGITS_ALL : argmax ? G3_LOGITS_ARGMAX : keep ? G3_LOGITS_KEEP : G3_LOGITS_LAST);
    if (!rc && keep) rc = sample_on_device(e, nseg);
    double dt = g3_now() - t0;
    e->clock++;
    if (rc) {
        // the cache of these slots is in an unknown state: forget it
        char msg[256];
        snprintf(msg, sizeof msg, "%s", g3_error());
        for (int i = 0; i < nseg; i++) {
            Seq *q = e->seg_seq[i];
            g3_state_reset(s, q->slot);
            e->slots[q->slot].ntok = 0;
            fail(e, q, msg);
        }
        g3_errorf("%s", msg);
        return -1;
    }
    for (int i = 0, r0 = 0; i < nseg; i++) {
        Seq *q = e->seg_seq[i];
        Slot *sl = &e->slots[q->slot];
        const int n = e->segs[i].n;
        memcpy(sl->tok + sl->ntok, q->hist + q->nfed, (size_t)n * sizeof(int32_t));
        sl->ntok += n;
        sl->used = e->clock;
        if (q->nfed < q->out0) q->prefill_s += dt;
        else q->decode_s += dt;
        q->nfed += n;
        if (q->nfed == q->nhist) {
            if (q->nhist - q->out0 >= q->max_tokens) finish(e, q, G3_STOP_MAX_TOKENS);  // max_tokens 0: reading only
            else if (argmax) advance(e, q, NULL, s->argmax[i]);
            else if (keep) take_device(e, q, i);
            else advance(e, q, s->logits + (long)(e->opt.all_logits ? r0 + n - 1 : i) * V, 0);
        }
        r0 += n;
    }
    return 0;
}

// A prompt chunk of n tokens from position `from` of a slot, shortened to end before an
// image's run that it would cut (forward.h: a run is read in one call). A run longer than the
// state's rows was refused when it was registered, so one that starts the chunk fits.
static int whole_images(const G3State *s, int slot, int from, int n) {
    for (int i = 0; i < s->nimages; i++) {
        const G3StateImage *im = &s->images[i];
        if (im->seq == slot && im->pos0 > from && im->pos0 < from + n && im->pos0 + im->n > from + n) n = im->pos0 - from;
    }
    return n;
}

static void plan(G3Engine *e, int *nseg, int *rows, Seq *q, int n) {
    e->segs[*nseg] = (G3Segment){q->slot, q->nfed, n};
    e->seg_seq[(*nseg)++] = q;
    *rows += n;
}

int g3_engine_step(G3Engine *e) {
    if (e->in_cb) return g3_errorf("engine: step called from a callback");
    admit(e);
    if (e->nlive == 0) return e->nqueued;
    G3State *s = e->s;
    const int R = s->max_rows, B = s->nslots;
    // every decoding sequence (one pending token) in the call; B <= R makes room for all
    int nseg = 0, rows = 0, nord = 0;
    for (int j = 0; j < B; j++) {
        Seq *q = e->slots[j].owner;
        if (!q) continue;
        if (q->nhist - q->nfed == 1) plan(e, &nseg, &rows, q, 1);
        else e->order[nord++] = q;
    }
    // prompt readers, oldest first: whole chunks of min(R, pending) tokens, so that where a
    // prompt is cut never depends on its neighbours; one that does not fit beside the others
    // runs alone if no chunk went yet, else waits for the next step
    for (int a = 1; a < nord; a++)
        for (int b = a; b > 0 && e->order[b]->admit_no < e->order[b - 1]->admit_no; b--) {
            Seq *t = e->order[b];
            e->order[b] = e->order[b - 1];
            e->order[b - 1] = t;
        }
    Seq *alone = NULL;
    int chunks = 0;
    for (int k = 0; k < nord; k++) {
        Seq *q = e->order[k];
        int n = whole_images(s, q->slot, q->nfed, G3_MIN(R, q->nhist - q->nfed));
        if (rows + n <= R) { plan(e, &nseg, &rows, q, n); chunks++; }
        else if (!alone && !chunks) { alone = q; chunks++; }
    }
    if (nseg && run_call(e, nseg)) return -1;
    if (alone) {
        nseg = rows = 0;
        plan(e, &nseg, &rows, alone, whole_images(s, alone->slot, alone->nfed, G3_MIN(R, alone->nhist - alone->nfed)));
        if (run_call(e, nseg)) return -1;
    }
    return e->nlive + e->nqueued;
}

// ---- reading, cancelling, releasing ----

int g3_engine_read(const G3Engine *e, int id, G3SeqInfo *out) {
    const Seq *q = lookup(e, id);
    if (!q) return g3_errorf("engine: no sequence %d", id);
    *out = (G3SeqInfo){q->hist + q->out0, q->nhist - q->out0, q->stop, q->error, q->hist, q->nhist, q->out0, q->cached, q->slot, q->prefill_s, q->decode_s};
    return 0;
}

int g3_engine_cancel(G3Engine *e, int id) {
    if (e->in_cb) return g3_errorf("engine: cancel called from a callback");
    Seq *q = lookup(e, id);
    if (!q) return g3_errorf("engine: no sequence %d", id);
    if (q->state != DONE) finish(e, q, G3_STOP_ABORT);
    return 0;
}

int g3_engine_release(G3Engine *e, int id) {
    if (e->in_cb) return g3_errorf("engine: release called from a callback");
    Seq *q = lookup(e, id);
    if (!q) return g3_errorf("engine: no sequence %d", id);
    if (q->state != DONE) return g3_errorf("engine: sequence %d is still running (cancel it first)", id);
    int idx = id & (MAX_SEQS - 1);
    e->tab[idx] = NULL;
    e->gen[idx]++;
    e->freeidx[e->nfree++] = idx;
    seq_free(q);
    return 0;
}

void g3_engine_counts(const G3Engine *e, int *live, int *queued) {
    if (live) *live = e->nlive;
    if (queued) *queued = e->nqueued;
}
