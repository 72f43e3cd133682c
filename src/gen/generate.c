// generate.c: g3_generate, a list of prompts through the engine (see generate.h).
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

typedef struct {
    const G3GenOptions *o;
    G3GenResult *res;
    G3Engine *e;
    int i;     // prompt index
    int id;    // engine id while in the engine
    int done;  // finished: its result is filled, its id may be released
} Item;

static int32_t choose_cb(void *user, int id, float *logits, const int32_t *hist, int nhist) {
    Item *it = user;
    return it->o->choose(it->o->ctx, it->i, logits, hist, nhist);
}

static G3Sampler *sampler_cb(void *user, int id) {
    Item *it = user;
    return it->o->sampler(it->o->ctx, it->i);
}

static int on_token_cb(void *user, int id, int32_t tok, G3StopReason *why) {
    Item *it = user;
    return it->o->on_token(it->o->ctx, it->i, tok, why);
}

// The result is complete before the caller's on_done sees it (batch journals it there).
static void on_done_cb(void *user, int id) {
    Item *it = user;
    G3GenResult *r = &it->res[it->i];
    G3SeqInfo info;
    if (g3_engine_read(it->e, id, &info) == 0) {
        memcpy(r->ids, info.ids, (size_t)info.n * sizeof(int32_t));
        r->new_tokens = info.n;
        r->stop = info.stop;
        snprintf(r->error, sizeof r->error, "%s", info.error);
        r->prefill_s = info.prefill_s;
        r->decode_s = info.decode_s;
    }
    it->done = 1;
    if (it->o->on_done) it->o->on_done(it->o->ctx, it->i);
}

static void fail_early(const G3GenOptions *o, G3GenResult *r, int i, G3StopReason why, const char *msg) {
    r->stop = why;
    snprintf(r->error, sizeof r->error, "%s", msg);
    if (o->on_done) o->on_done(o->ctx, i);
}

int g3_generate(G3State *s, const int32_t *const *prompts, const int *lens, int n, const G3GenOptions *o, G3GenResult *res) {
    const int B = s->nslots, mt = G3_MAX(0, o->max_tokens);
    memset(res, 0, (size_t)n * sizeof *res);
    for (int i = 0; i < n; i++) {
        res[i].prompt_tokens = lens[i];
        if (!(res[i].ids = g3_malloc((size_t)G3_MAX(mt, 1) * sizeof(int32_t)))) return -1;
    }
    G3EngineOptions eo = {.max_queued = 2 * B};  // every prompt in flight may wait at first
    G3Engine *e = g3_engine_new(s, &eo);
    Item *items = g3_calloc((size_t)n + 1, sizeof *items);
    int *flight = g3_malloc((size_t)2 * B * sizeof *flight);  // prompts in the engine
    int rc = -1, next = 0, nflight = 0;
    if (!e || !items || !flight) goto out;
    for (;;) {
        // B waiting beside the B live ones keep every slot busy; adding in prompt order keeps
        // the admission order of the engine's queue
        while (next < n && nflight < 2 * B) {
            int i = next++;
            Item *it = &items[i];
            *it = (Item){o, res, e, i, -1, 0};
            if (o->abort && *o->abort) { fail_early(o, &res[i], i, G3_STOP_ABORT, ""); continue; }
            G3SeqParams p = {prompts[i], lens[i], mt, o->stop_ids, o->nstop, o->choose ? choose_cb : NULL, NULL,
                             o->on_token ? on_token_cb : NULL, on_done_cb, it};
            p.sampler_of = o->choose || !o->sampler ? NULL : sampler_cb;
            if ((it->id = g3_engine_add(e, &p)) < 0) { fail_early(o, &res[i], i, G3_STOP_ERROR, g3_error()); continue; }
            flight[nflight++] = i;
        }
        if (nflight == 0) break;
        if (g3_engine_step(e) < 0) goto out;
        if (o->abort && *o->abort)
            for (int k = 0; k < nflight; k++) g3_engine_cancel(e, items[flight[k]].id);
        int keep = 0;
        for (int k = 0; k < nflight; k++) {
            Item *it = &items[flight[k]];
            if (it->done) g3_engine_release(e, it->id);
            else flight[keep++] = flight[k];
        }
        nflight = keep;
    }
    rc = 0;
out:
    g3_engine_free(e);
    free(items);
    free(flight);
    return rc;
}
