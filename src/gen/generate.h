// generate.h: a list of prompts run to the end through the generation engine (engine.h):
// every prompt with the same options, results in an array. Up to `slots` of them live in the
// KV cache together, one batched forward pass per step, a finished prompt's slot going to the
// next waiting one (continuous batching). Batched results equal one-at-a-time results.
// Callers that add sequences as they come, or continue them (chat, a server), use the engine.
#ifndef G3_GENERATE_H
#define G3_GENERATE_H

#include <stdint.h>

#include "../model/forward.h"
#include "engine.h"

typedef struct {
    int max_tokens;           // new tokens per sequence
    const int32_t *stop_ids;  // tokens that end a sequence (not emitted), e.g. <eos>, <end_of_turn>
    int nstop;
    // Chooses the next token of sequence i from its logits (modifiable) and history
    // (prompt + generated), or returns -1 with a message (that sequence stops with
    // G3_STOP_ERROR). NULL: greedy (g3_argmax, ties to the lowest id).
    int32_t (*choose)(void *ctx, int i, float *logits, const int32_t *hist, int nhist);
    // Or (choose NULL): the sampler of sequence i, asked for when it is about to choose (NULL:
    // greedy), the same one until it is done; the engine then runs what it can of the sampler
    // where the logits are (engine.h).
    G3Sampler *(*sampler)(void *ctx, int i);
    // Called for each new token; returns non-zero to stop that sequence (stop strings), in
    // which case *reason is set by the callee (G3_STOP_STRING, ...).
    int (*on_token)(void *ctx, int i, int32_t id, G3StopReason *reason);
    // Called once a sequence is finished (results may be written then).
    void (*on_done)(void *ctx, int i);
    void *ctx;
    volatile int *abort;      // set to 1 (e.g. from a SIGINT handler) to stop all sequences
} G3GenOptions;

typedef struct {
    int prompt_tokens, new_tokens;
    double prefill_s, decode_s;   // wall time of this sequence's prefill; of the decode steps it took part in
    G3StopReason stop;
    int32_t *ids;                 // generated ids (malloc'd; the caller frees)
    char error[256];
} G3GenResult;

// Generates for n prompts with a state whose slots are the batch size (s->nslots; its
// max_rows must be at least that). The state's context must hold each prompt plus max_tokens
// (longer ones stop at G3_STOP_CONTEXT; prompts that alone exceed it, or hold ids outside the
// vocabulary, fail with an error recorded in their result, the others go on). max_tokens 0
// only reads the prompts. res[n] is filled. Returns 0, or -1 on an error that stops everything.
int g3_generate(G3State *s, const int32_t *const *prompts, const int *lens, int n, const G3GenOptions *o, G3GenResult *res);

#endif
