// test_engine.c: the generation engine (gen/engine.h) on the tiny fixtures. add / step / read /
// cancel / release; a sequence added while others decode joins at the next step; cancelling
// frees the slot for a queued one; batched == one-at-a-time (greedy and seeded sampling,
// staggered arrivals, more prompts than slots); extending a finished sequence (and a new one
// that begins with a finished one's tokens) reuses the cache and gives the tokens of prefilling
// the whole history; prompts longer than max_rows are read in chunks without stalling the
// decoding sequences and give the same tokens; non-finite logits stop only their sequence,
// with "non-finite logits"; stops, callbacks and bad input.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "gen/engine.h"
#include "gen/generate.h"
#include "model/forward.h"

enum { CTX = 64, MAXN = 32 };

typedef struct {
    int32_t ids[CTX];
    int n;
    G3StopReason stop;
} Out;

static void prompt_of(int32_t *p, int len, int salt) {
    p[0] = 2;
    for (int k = 1; k < len; k++) p[k] = (int32_t)((salt * 131 + k * 17) % 1000 + 3);
}

static G3Sampler *sampler(const G3Model *m, float temp, uint64_t seed) {
    G3SamplerConfig sc = g3_sampler_defaults();
    sc.temperature = temp;
    sc.seed = seed;
    return g3_sampler_new(&sc, m->cfg.vocab);
}

static Out read_out(G3Engine *e, int id) {
    Out o = {{0}, 0, G3_STOP_NONE};
    G3SeqInfo info;
    if (g3_engine_read(e, id, &info)) { CHECK(0, "read %d: %s", id, g3_error()); return o; }
    o.n = G3_MIN(info.n, CTX);
    memcpy(o.ids, info.ids, (size_t)o.n * sizeof(int32_t));
    o.stop = info.stop;
    return o;
}

static int same(const Out *a, const Out *b) { return a->n == b->n && !memcmp(a->ids, b->ids, (size_t)a->n * sizeof(int32_t)); }

// Steps until nothing is left; returns the number of steps.
static int run_all(G3Engine *e) {
    int left, steps = 0;
    do {
        left = g3_engine_step(e);
        steps++;
    } while (left > 0);
    CHECK(left == 0, "step failed: %s", g3_error());
    return steps;
}

// One prompt alone: one slot, rows R, greedy (temp 0) or sampled with the seed.
static Out alone(const G3Model *m, const int32_t *p, int n, int max_tokens, float temp, uint64_t seed, int R) {
    G3State *s = g3_state_new(m, 1, CTX, R, 1, NULL);
    G3Engine *e = g3_engine_new(s, NULL);
    G3Sampler *smp = temp > 0 ? sampler(m, temp, seed) : NULL;
    G3SeqParams sp = {.prompt = p, .nprompt = n, .max_tokens = max_tokens, .sampler = smp};
    int id = g3_engine_add(e, &sp);
    CHECK(id >= 0, "add: %s", g3_error());
    run_all(e);
    Out o = read_out(e, id);
    g3_sampler_free(smp);
    g3_engine_free(e);
    g3_state_free(s);
    return o;
}

// ---- callbacks ----

typedef struct {
    int done, tokens, stop_at;
    G3Engine *e;
    int nested_rc;  // what a forbidden call from a callback returned
} Log;

static void on_done(void *user, int id) {
    Log *l = user;
    l->done++;
    G3SeqInfo info;
    CHECK(g3_engine_read(l->e, id, &info) == 0 && info.stop != G3_STOP_NONE, "read from on_done");
    l->nested_rc = g3_engine_step(l->e);
}

static int on_token(void *user, int id, int32_t tok, G3StopReason *why) {
    Log *l = user;
    return ++l->tokens == l->stop_at;  // *why keeps its preset, G3_STOP_STRING
}

static int32_t choose_bad(void *user, int id, float *logits, const int32_t *hist, int nhist) {
    return *(int *)user < 0 ? g3_errorf("boom") : *(int *)user;
}

// Writes val into the logits of one slot (-1: any) from its k-th logits call on: every entry, or only
// the first `only` of each row.
typedef struct { int slot, from, calls; float val; int only; } Poison;
static void poison(void *ctx, const G3HookEvent *ev) {
    Poison *p = ctx;
    if ((p->slot >= 0 && ev->seq != p->slot) || ++p->calls < p->from) return;
    for (int r = 0; r < ev->rows; r++)
        for (int i = 0; i < (p->only ? p->only : ev->cols); i++) ev->data[(long)r * ev->cols + i] = p->val;
}

static void basics(const G3Model *m) {
    int32_t pa[20], pb[20];
    prompt_of(pa, 7, 1);
    prompt_of(pb, 4, 2);
    Out ra = alone(m, pa, 7, 8, 0, 0, 16), rb = alone(m, pb, 4, 5, 0, 0, 16);
    G3State *s = g3_state_new(m, 2, CTX, 16, 1, NULL);
    G3Engine *e = g3_engine_new(s, NULL);
    Log la = {0}, lb = {0};
    la.e = lb.e = e;
    G3SeqParams a = {.prompt = pa, .nprompt = 7, .max_tokens = 8, .on_done = on_done, .user = &la};
    int ida = g3_engine_add(e, &a);
    G3SeqInfo info;
    CHECK(ida >= 0 && g3_engine_read(e, ida, &info) == 0 && info.n == 0 && info.stop == G3_STOP_NONE && info.slot == -1, "a queued sequence");
    CHECK(g3_engine_step(e) == 1, "one live sequence");
    CHECK(read_out(e, ida).n == 1, "the prompt and the first token in one step");
    g3_engine_step(e);
    // b arrives while a decodes: it joins at the next step (its prompt beside a's row)
    G3SeqParams b = {.prompt = pb, .nprompt = 4, .max_tokens = 5, .on_done = on_done, .user = &lb};
    int idb = g3_engine_add(e, &b);
    CHECK(read_out(e, idb).n == 0, "b waits for the next step");
    CHECK(g3_engine_step(e) == 2, "two live sequences");
    CHECK(read_out(e, ida).n == 3 && read_out(e, idb).n == 1, "b joined at the next step (a %d, b %d tokens)", read_out(e, ida).n, read_out(e, idb).n);
    run_all(e);
    Out oa = read_out(e, ida), ob = read_out(e, idb);
    CHECK(same(&oa, &ra) && oa.stop == G3_STOP_MAX_TOKENS, "a differs from a alone");
    CHECK(same(&ob, &rb) && ob.stop == G3_STOP_MAX_TOKENS, "b differs from b alone");
    CHECK(la.done == 1 && lb.done == 1, "on_done once each (%d, %d)", la.done, lb.done);
    CHECK(la.nested_rc == -1, "step from a callback was not refused");
    CHECK(g3_engine_read(e, ida, &info) == 0 && info.prompt_tokens == 7 && info.nhist == 15 && info.hist[7] == oa.ids[0], "history");
    // release: the id is forgotten, and not taken by the next sequence
    CHECK(g3_engine_release(e, ida) == 0 && g3_engine_read(e, ida, &info) == -1, "released id still known");
    int idc = g3_engine_add(e, &a);
    CHECK(idc >= 0 && idc != ida && g3_engine_read(e, ida, &info) == -1, "a released id came back (%d)", idc);
    CHECK(g3_engine_release(e, idc) == -1, "a queued sequence was released");
    CHECK(g3_engine_cancel(e, idc) == 0 && read_out(e, idc).stop == G3_STOP_ABORT && g3_engine_release(e, idc) == 0, "cancel a queued one");
    g3_engine_free(e);
    g3_state_free(s);
}

static void cancel_frees_slot(const G3Model *m) {
    int32_t pa[20], pb[20];
    prompt_of(pa, 5, 3);
    prompt_of(pb, 6, 4);
    Out rb = alone(m, pb, 6, 4, 0, 0, 8);
    G3State *s = g3_state_new(m, 1, CTX, 8, 1, NULL);
    G3Engine *e = g3_engine_new(s, NULL);
    Log la = {0};
    la.e = e;
    G3SeqParams a = {.prompt = pa, .nprompt = 5, .max_tokens = 20, .on_done = on_done, .user = &la};
    G3SeqParams b = {.prompt = pb, .nprompt = 6, .max_tokens = 4};
    int ida = g3_engine_add(e, &a), idb = g3_engine_add(e, &b), live, queued;
    g3_engine_step(e);
    g3_engine_step(e);
    g3_engine_counts(e, &live, &queued);
    CHECK(live == 1 && queued == 1 && read_out(e, idb).n == 0, "b should wait for the one slot");
    CHECK(g3_engine_cancel(e, ida) == 0, "cancel");
    Out oa = read_out(e, ida);
    CHECK(oa.stop == G3_STOP_ABORT && oa.n == 2 && la.done == 1, "cancelled: stop %s, %d tokens, on_done %d", g3_stop_name(oa.stop), oa.n, la.done);
    g3_engine_counts(e, &live, &queued);
    CHECK(live == 0 && queued == 1, "the slot was not freed at once");
    CHECK(g3_engine_step(e) == 1 && read_out(e, idb).n == 1, "b did not take the freed slot");
    run_all(e);
    Out ob = read_out(e, idb);
    CHECK(same(&ob, &rb), "b after a cancelled a differs from b alone");
    CHECK(g3_engine_cancel(e, idb) == 0 && read_out(e, idb).stop == G3_STOP_MAX_TOKENS, "cancelling a finished one changed it");
    g3_engine_free(e);
    g3_state_free(s);
}

// 5 prompts (some longer than the 8-position window, one of one token) through 3 slots,
// arriving over several steps, each with its own sampler; against each alone.
static void batched_equals_alone(const G3Model *m, const char *name) {
    const int lens[5] = {3, 9, 15, 1, 22};
    int32_t p[5][CTX];
    for (int i = 0; i < 5; i++) prompt_of(p[i], lens[i], i);
    for (int t = 0; t < 2; t++) {
        float temp = t ? 1.0f : 0.0f;
        Out ref[5];
        for (int i = 0; i < 5; i++) ref[i] = alone(m, p[i], lens[i], 10, temp, 100 + (uint64_t)i, 16);
        G3State *s = g3_state_new(m, 3, CTX, 16, 1, NULL);
        G3Engine *e = g3_engine_new(s, NULL);
        G3Sampler *smp[5];
        int id[5];
        for (int i = 0; i < 5; i++) {
            smp[i] = temp > 0 ? sampler(m, temp, 100 + (uint64_t)i) : NULL;
            G3SeqParams sp = {.prompt = p[i], .nprompt = lens[i], .max_tokens = 10, .sampler = smp[i]};
            id[i] = g3_engine_add(e, &sp);
            g3_engine_step(e);  // arrivals one step apart
        }
        run_all(e);
        for (int i = 0; i < 5; i++) {
            Out o = read_out(e, id[i]);
            CHECK(same(&o, &ref[i]) && o.stop == ref[i].stop, "%s %s: prompt %d (length %d) differs in a batch", name, t ? "sampled" : "greedy", i, lens[i]);
            g3_sampler_free(smp[i]);
        }
        g3_engine_free(e);
        g3_state_free(s);
    }
}

// A 22-token prompt with 4 rows per call: read 4 tokens a step (alone, since a decoding row
// takes one of the 4) while the other sequence still gets a token every step.
static void long_prompt_in_chunks(const G3Model *m) {
    int32_t pa[CTX], pb[CTX];
    prompt_of(pa, 3, 5);
    prompt_of(pb, 22, 6);
    Out ra = alone(m, pa, 3, 12, 0, 0, 4), rb = alone(m, pb, 22, 6, 0, 0, 32), rb4 = alone(m, pb, 22, 6, 0, 0, 4);
    CHECK(same(&rb, &rb4), "a prompt read in chunks of 4 differs from one read whole");
    G3State *s = g3_state_new(m, 2, CTX, 4, 1, NULL);
    G3Engine *e = g3_engine_new(s, NULL);
    G3SeqParams a = {.prompt = pa, .nprompt = 3, .max_tokens = 12}, b = {.prompt = pb, .nprompt = 22, .max_tokens = 6};
    int ida = g3_engine_add(e, &a);
    g3_engine_step(e);
    int idb = g3_engine_add(e, &b), stalled = 0, first_b = 0;
    for (int k = 1; k <= 8; k++) {
        g3_engine_step(e);
        if (read_out(e, ida).n != 1 + k) stalled = 1;
        if (!first_b && read_out(e, idb).n > 0) first_b = k;
    }
    CHECK(!stalled, "the decoding sequence stalled while a long prompt was read");
    CHECK(first_b == 6, "22 tokens in chunks of 4 should take 6 steps, took %d", first_b);
    run_all(e);
    Out oa = read_out(e, ida), ob = read_out(e, idb);
    CHECK(same(&oa, &ra), "the short sequence differs from alone");
    CHECK(same(&ob, &rb), "the long prompt read in chunks beside another differs");
    g3_engine_free(e);
    g3_state_free(s);
}

// A finished sequence continued with more tokens = the whole history prefilled at once.
static void extend_equals_history(const G3Model *m) {
    int32_t p[CTX], more[4] = {40, 41, 42, 43}, whole[CTX];
    prompt_of(p, 9, 7);
    G3State *s = g3_state_new(m, 1, CTX, 16, 1, NULL);
    G3Engine *e = g3_engine_new(s, NULL);
    G3SeqParams a = {.prompt = p, .nprompt = 9, .max_tokens = 5};
    int id = g3_engine_add(e, &a);
    run_all(e);
    Out t1 = read_out(e, id);
    CHECK(t1.n == 5 && t1.stop == G3_STOP_MAX_TOKENS, "first turn");
    CHECK(g3_engine_extend(e, id, more, 4, 6) == 0, "extend: %s", g3_error());
    int steps = run_all(e);
    Out t2 = read_out(e, id);
    G3SeqInfo info;
    g3_engine_read(e, id, &info);
    CHECK(info.cached_tokens == 13 && info.prompt_tokens == 18 && info.nhist == 24, "extend reused %d cached tokens of a prompt of %d (want 13 of 18)",
          info.cached_tokens, info.prompt_tokens);
    CHECK(steps == 6, "the second turn took %d steps (want 6: 5 new ids in one chunk, then 5 decoding)", steps);
    // the reference: the whole history as one prompt
    int n = 0;
    memcpy(whole, p, 9 * sizeof(int32_t)); n = 9;
    memcpy(whole + n, t1.ids, 5 * sizeof(int32_t)); n += 5;
    memcpy(whole + n, more, 4 * sizeof(int32_t)); n += 4;
    Out ref = alone(m, whole, n, 6, 0, 0, 16);
    CHECK(same(&t2, &ref), "extend differs from prefilling the whole history");
    // a new sequence beginning with a finished one's tokens takes over its cache
    int32_t more2[2] = {50, 51};
    memcpy(whole + n, t2.ids, (size_t)t2.n * sizeof(int32_t));
    memcpy(whole + n + t2.n, more2, sizeof more2);
    int nw = n + t2.n + 2;
    G3SeqParams c = {.prompt = whole, .nprompt = nw, .max_tokens = 4};
    int idc = g3_engine_add(e, &c);
    run_all(e);
    g3_engine_read(e, idc, &info);
    Out oc = read_out(e, idc), refc = alone(m, whole, nw, 4, 0, 0, 16);
    CHECK(info.cached_tokens == nw - 3 && same(&oc, &refc), "prefix reuse by a new sequence: %d cached, tokens %s", info.cached_tokens,
          same(&oc, &refc) ? "same" : "differ");
    // extending a sequence whose slot was taken by another reads everything again, same tokens
    CHECK(g3_engine_extend(e, id, more2, 2, 4) == 0, "extend after eviction: %s", g3_error());
    run_all(e);
    g3_engine_read(e, id, &info);
    Out o3 = read_out(e, id);
    CHECK(info.cached_tokens == 0 && same(&o3, &refc), "extend after its slot was reused: %d cached, tokens %s", info.cached_tokens, same(&o3, &refc) ? "same" : "differ");
    // max_tokens 0 only reads; the next turn finds it all in the cache
    G3SeqParams r = {.prompt = p, .nprompt = 9, .max_tokens = 0};
    int idr = g3_engine_add(e, &r);
    run_all(e);
    Out orr = read_out(e, idr);
    CHECK(orr.n == 0 && orr.stop == G3_STOP_MAX_TOKENS, "reading only");
    CHECK(g3_engine_extend(e, idr, more, 1, 3) == 0, "extend a read-only sequence");
    run_all(e);
    g3_engine_read(e, idr, &info);
    CHECK(info.cached_tokens == 9 && info.n == 3, "after reading only: %d cached, %d tokens", info.cached_tokens, info.n);
    g3_engine_free(e);
    g3_state_free(s);
}

static void stops_and_errors(const G3Model *m) {
    const int V = m->cfg.vocab;
    int32_t p[CTX], q[CTX];
    prompt_of(p, 6, 8);
    prompt_of(q, 5, 9);
    Out r = alone(m, p, 6, 8, 1.0f, 5, 16), rq = alone(m, q, 5, 8, 1.0f, 6, 16);
    G3State *s = g3_state_new(m, 2, CTX, 16, 1, NULL);
    G3EngineOptions eo = {.max_queued = 2};
    G3Engine *e = g3_engine_new(s, &eo);
    // a stop id: the sequence ends before it, without emitting it
    G3Sampler *smp = sampler(m, 1.0f, 5);
    int32_t stop = r.ids[3];
    int first = 0;
    while (r.ids[first] != stop) first++;
    G3SeqParams a = {.prompt = p, .nprompt = 6, .max_tokens = 8, .stop_ids = &stop, .nstop = 1, .sampler = smp};
    int id = g3_engine_add(e, &a);
    run_all(e);
    Out o = read_out(e, id);
    CHECK(o.stop == G3_STOP_EOS && o.n == first && !memcmp(o.ids, r.ids, (size_t)first * 4), "stop id: %s after %d tokens (want %d)", g3_stop_name(o.stop), o.n, first);
    // on_token stopping at the 3rd token
    Log l = {0};
    l.stop_at = 3;
    l.e = e;
    g3_sampler_reseed(smp, 5);
    G3SeqParams b = {.prompt = p, .nprompt = 6, .max_tokens = 8, .sampler = smp, .on_token = on_token, .user = &l};
    id = g3_engine_add(e, &b);
    run_all(e);
    o = read_out(e, id);
    CHECK(o.stop == G3_STOP_STRING && o.n == 3 && !memcmp(o.ids, r.ids, 12), "on_token stop: %s after %d", g3_stop_name(o.stop), o.n);
    // a chooser that fails, or answers outside the vocabulary
    int bad = -1;
    G3SeqParams c = {.prompt = p, .nprompt = 6, .max_tokens = 8, .choose = choose_bad, .user = &bad};
    id = g3_engine_add(e, &c);
    run_all(e);
    G3SeqInfo info;
    g3_engine_read(e, id, &info);
    CHECK(info.stop == G3_STOP_ERROR && strstr(info.error, "boom"), "failing chooser: %s '%s'", g3_stop_name(info.stop), info.error);
    CHECK(g3_engine_extend(e, id, p, 1, 1) == -1, "a sequence that ended in an error was continued");
    int big = V;
    c.user = &big;
    id = g3_engine_add(e, &c);
    run_all(e);
    g3_engine_read(e, id, &info);
    CHECK(info.stop == G3_STOP_ERROR && strstr(info.error, "outside the vocabulary"), "chooser out of range: '%s'", info.error);
    // the context: a prompt that leaves no room, and a sequence that fills it
    int32_t longp[CTX];
    prompt_of(longp, CTX, 10);
    G3SeqParams d = {.prompt = longp, .nprompt = CTX, .max_tokens = 1};
    CHECK(g3_engine_add(e, &d) == -1 && strstr(g3_error(), "no room"), "a prompt filling the context was accepted");
    d.max_tokens = 0;
    id = g3_engine_add(e, &d);
    CHECK(id >= 0, "a prompt exactly the context, read only: %s", g3_error());
    d.nprompt = CTX - 3;
    d.max_tokens = 10;
    int idd = g3_engine_add(e, &d);
    run_all(e);
    o = read_out(e, idd);
    CHECK(o.stop == G3_STOP_CONTEXT && o.n == 3, "filling the context: %s after %d", g3_stop_name(o.stop), o.n);
    // bad ids, empty prompts, a full queue
    int32_t bad_ids[3] = {2, V, 5};
    G3SeqParams f = {.prompt = bad_ids, .nprompt = 3, .max_tokens = 2};
    CHECK(g3_engine_add(e, &f) == -1 && strstr(g3_error(), "outside the vocabulary"), "id %d accepted", V);
    bad_ids[1] = -1;
    CHECK(g3_engine_add(e, &f) == -1, "id -1 accepted");
    f.nprompt = 0;
    CHECK(g3_engine_add(e, &f) == -1, "an empty prompt accepted");
    f.prompt = p;
    f.nprompt = 3;
    CHECK(g3_engine_add(e, &f) >= 0 && g3_engine_add(e, &f) >= 0, "queue of 2");
    CHECK(g3_engine_add(e, &f) == -1 && strstr(g3_error(), "queue full"), "a third queued sequence was accepted");
    run_all(e);
    // non-finite logits: only the poisoned sequence stops, with the message
    Poison pz = {1, 3, 0, NAN, 0};
    g3_state_set_hook(s, poison, &pz, 1u << G3_HOOK_LOGITS, ~0ull);
    G3EngineOptions none = {0};
    g3_engine_free(e);
    e = g3_engine_new(s, &none);
    G3Sampler *s0 = sampler(m, 1.0f, 6), *s1 = sampler(m, 1.0f, 5);
    G3SeqParams g0 = {.prompt = q, .nprompt = 5, .max_tokens = 8, .sampler = s0}, g1 = {.prompt = p, .nprompt = 6, .max_tokens = 8, .sampler = s1};
    int i0 = g3_engine_add(e, &g0), i1 = g3_engine_add(e, &g1);
    run_all(e);
    Out o0 = read_out(e, i0);
    g3_engine_read(e, i1, &info);
    CHECK(info.slot == 1 && info.stop == G3_STOP_ERROR && !strcmp(info.error, "non-finite logits (NaN or inf)") && info.n == 2,
          "NaN logits: %s '%s' after %d tokens", g3_stop_name(info.stop), info.error, info.n);
    CHECK(same(&o0, &rq), "the neighbour of a NaN sequence changed");
    // every logit -inf: nothing to choose, the same error; one -inf (a masked token) is fine
    for (int k = 0; k < 2; k++) {
        pz = (Poison){-1, 2, 0, -INFINITY, k ? 1 : 0};  // any slot: the only sequence
        g3_engine_release(e, i0);
        G3SeqParams g2 = {.prompt = q, .nprompt = 5, .max_tokens = 4};
        i0 = g3_engine_add(e, &g2);
        run_all(e);
        g3_engine_read(e, i0, &info);
        if (k == 0) CHECK(info.stop == G3_STOP_ERROR && !strcmp(info.error, "non-finite logits (NaN or inf)") && info.n == 1, "all -inf: %s '%s'", g3_stop_name(info.stop), info.error);
        else CHECK(info.stop == G3_STOP_MAX_TOKENS && info.n == 4, "one -inf logit: %s '%s'", g3_stop_name(info.stop), info.error);
    }
    g3_state_set_hook(s, NULL, NULL, 0, 0);
    g3_sampler_free(s0);
    g3_sampler_free(s1);
    g3_sampler_free(smp);
    g3_engine_free(e);
    // a state without a row per slot is refused
    G3State *narrow = g3_state_new(m, 4, CTX, 2, 1, NULL);
    CHECK(g3_engine_new(narrow, NULL) == NULL && strstr(g3_error(), "rows"), "a state with 2 rows for 4 slots was accepted");
    g3_state_free(narrow);
    g3_state_free(s);
}

// g3_generate, the wrapper: a prompt with a bad id gets an error result, the others go on.
static void generate_wrapper(const G3Model *m) {
    int32_t a[8], b[8] = {2, 5, 5000, 7}, c[8];
    prompt_of(a, 6, 11);
    prompt_of(c, 4, 12);
    const int32_t *ps[3] = {a, b, c};
    int lens[3] = {6, 4, 4};
    G3State *s = g3_state_new(m, 2, CTX, 8, 1, NULL);
    G3GenOptions o = {.max_tokens = 5};
    G3GenResult res[3];
    CHECK(g3_generate(s, ps, lens, 3, &o, res) == 0, "g3_generate: %s", g3_error());
    Out ra = alone(m, a, 6, 5, 0, 0, 8), rc = alone(m, c, 4, 5, 0, 0, 8);
    CHECK(res[1].stop == G3_STOP_ERROR && strstr(res[1].error, "outside the vocabulary"), "bad id: %s '%s'", g3_stop_name(res[1].stop), res[1].error);
    CHECK(res[0].new_tokens == 5 && !memcmp(res[0].ids, ra.ids, 20) && res[2].new_tokens == 5 && !memcmp(res[2].ids, rc.ids, 20), "the good prompts");
    for (int i = 0; i < 3; i++) free(res[i].ids);
    g3_state_free(s);
    // more slots than the engine's default queue: the wrapper's prompts in flight all fit
    enum { B = 600, N = 1300 };
    static int32_t many[N][2];
    static const int32_t *mp[N];
    static int mlens[N];
    static G3GenResult mres[N];
    for (int i = 0; i < N; i++) { many[i][0] = 2; many[i][1] = 3 + i % 1000; mp[i] = many[i]; mlens[i] = 2; }
    s = g3_state_new(m, B, 8, B, 1, NULL);
    o.max_tokens = 1;
    CHECK(s && g3_generate(s, mp, mlens, N, &o, mres) == 0, "%d prompts through %d slots: %s", N, B, g3_error());
    int ok = 0, bad = -1;
    for (int i = 0; i < N; i++) {
        if (mres[i].new_tokens == 1 && mres[i].stop == G3_STOP_MAX_TOKENS) ok++;
        else if (bad < 0) bad = i;
    }
    CHECK(ok == N, "%d prompts through %d slots: %d finished, prompt %d: '%s'", N, B, ok, bad, bad >= 0 ? mres[bad].error : "");
    for (int i = 0; i < N; i++) free(mres[i].ids);
    g3_state_free(s);
}

int main(void) {
    omp_set_num_threads(2);
    const char *fixtures[] = {"gemma3-tiny-f32", "gemma2-tiny-f32"};
    for (int f = 0; f < 2; f++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fixtures[f]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        batched_equals_alone(&m, fixtures[f]);
        long_prompt_in_chunks(&m);
        extend_equals_history(&m);
        if (f == 0) {
            basics(&m);
            cancel_frees_slot(&m);
            stops_and_errors(&m);
            generate_wrapper(&m);
        }
        g3_model_free(&m);
    }
    return check_done();
}
