// generate.c: continuous batching over the KV-cache slots (see generate.h).
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

const char *g3_stop_name(G3StopReason r) {
    static const char *names[] = {"none", "eos", "stop_string", "max_tokens", "context", "aborted", "error"};
    return (unsigned)r < G3_ARRAY_LEN(names) ? names[r] : "?";
}

static int32_t argmax(const float *x, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

typedef struct {
    int prompt;     // index of the prompt in this slot, -1 if free
    int32_t *hist;  // prompt + generated, capacity ctx
    int nhist;
    int32_t next;   // token to feed at the next step
} Slot;

// Chooses a token for slot sl from logits and records it; returns 1 if the sequence ended.
static int advance(G3State *s, const G3GenOptions *o, G3GenResult *res, Slot *sl, float *logits) {
    int i = sl->prompt;
    G3GenResult *r = &res[i];
    int32_t tok = o->choose ? o->choose(o->ctx, i, logits, sl->hist, sl->nhist) : argmax(logits, s->m->cfg.vocab);
    for (int k = 0; k < o->nstop; k++)
        if (tok == o->stop_ids[k]) { r->stop = G3_STOP_EOS; return 1; }
    r->ids[r->new_tokens++] = tok;
    sl->hist[sl->nhist++] = tok;
    sl->next = tok;
    G3StopReason why = G3_STOP_STRING;
    if (o->on_token && o->on_token(o->ctx, i, tok, &why)) { r->stop = why; return 1; }
    if (r->new_tokens >= o->max_tokens) { r->stop = G3_STOP_MAX_TOKENS; return 1; }
    if (sl->nhist >= s->ctx) { r->stop = G3_STOP_CONTEXT; return 1; }
    return 0;
}

static void finish(const G3GenOptions *o, int i) {
    if (o->on_done) o->on_done(o->ctx, i);
}

int g3_generate(G3State *s, const int32_t *const *prompts, const int *lens, int n, const G3GenOptions *o, G3GenResult *res) {
    const int V = s->m->cfg.vocab, B = s->nslots;
    memset(res, 0, (size_t)n * sizeof *res);
    Slot *slots = g3_calloc((size_t)B, sizeof *slots);
    int32_t *tokens = g3_malloc((size_t)B * sizeof *tokens);
    G3Segment *segs = g3_malloc((size_t)B * sizeof *segs);
    int *seg_slot = g3_malloc((size_t)B * sizeof *seg_slot);
    int rc = -1;
    if (!slots || !tokens || !segs || !seg_slot) goto out;
    for (int b = 0; b < B; b++) {
        slots[b].prompt = -1;
        if (!(slots[b].hist = g3_malloc((size_t)s->ctx * sizeof(int32_t)))) goto out;
    }
    int next_prompt = 0, live = 0;
    for (;;) {
        // fill free slots with waiting prompts (each prefilled on its own: prompts differ in length)
        for (int b = 0; b < B && next_prompt < n; b++) {
            if (slots[b].prompt >= 0) continue;
            while (next_prompt < n) {
                int i = next_prompt++;
                G3GenResult *r = &res[i];
                r->prompt_tokens = lens[i];
                r->ids = g3_malloc((size_t)(o->max_tokens > 0 ? o->max_tokens : 1) * sizeof(int32_t));
                if (!r->ids) goto out;
                if (o->abort && *o->abort) { r->stop = G3_STOP_ABORT; finish(o, i); continue; }
                if (lens[i] < 1 || lens[i] >= s->ctx) {
                    r->stop = G3_STOP_ERROR;
                    snprintf(r->error, sizeof r->error, lens[i] < 1 ? "empty prompt" : "prompt of %d tokens leaves no room in a context of %d", lens[i], s->ctx);
                    finish(o, i);
                    continue;
                }
                g3_state_reset(s, b);
                double t0 = g3_now();
                if (g3_prefill(s, b, prompts[i], lens[i], NULL)) {
                    r->stop = G3_STOP_ERROR;
                    snprintf(r->error, sizeof r->error, "%s", g3_error());
                    finish(o, i);
                    continue;
                }
                r->prefill_s = g3_now() - t0;
                Slot *sl = &slots[b];
                sl->prompt = i;
                memcpy(sl->hist, prompts[i], (size_t)lens[i] * sizeof(int32_t));
                sl->nhist = lens[i];
                if (o->max_tokens <= 0) { r->stop = G3_STOP_MAX_TOKENS; sl->prompt = -1; finish(o, i); continue; }
                if (advance(s, o, res, sl, s->logits)) { sl->prompt = -1; finish(o, i); continue; }
                live++;
                break;
            }
        }
        if (live == 0) {
            if (next_prompt >= n) break;
            continue;
        }
        // one decode step for every live sequence, as one batched forward pass
        int nseg = 0;
        for (int b = 0; b < B; b++) {
            if (slots[b].prompt < 0) continue;
            tokens[nseg] = slots[b].next;
            segs[nseg] = (G3Segment){b, s->len[b], 1};
            seg_slot[nseg++] = b;
        }
        double t0 = g3_now();
        if (g3_forward(s, tokens, segs, nseg, G3_LOGITS_LAST)) goto out;
        double dt = g3_now() - t0;
        for (int k = 0; k < nseg; k++) {
            Slot *sl = &slots[seg_slot[k]];
            res[sl->prompt].decode_s += dt;
            int done = advance(s, o, res, sl, s->logits + (long)k * V);
            if (!done && o->abort && *o->abort) { res[sl->prompt].stop = G3_STOP_ABORT; done = 1; }
            if (done) {
                finish(o, sl->prompt);
                sl->prompt = -1;
                live--;
            }
        }
    }
    rc = 0;
out:
    if (slots)
        for (int b = 0; b < B; b++) free(slots[b].hist);
    free(slots); free(tokens); free(segs); free(seg_slot);
    return rc;
}
