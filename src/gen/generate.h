// generate.h: decoding many sequences at once. Prompts wait in a queue; up to `slots` of
// them live in the KV cache together; each step runs every live sequence's newest token
// through ONE batched forward pass (one read of the weights for the whole batch), then each
// sequence chooses its next token and checks its own stop conditions. A finished sequence
// frees its slot for the next waiting prompt (continuous batching). Batched results equal
// one-at-a-time results: each sequence's arithmetic does not depend on its neighbours.
#ifndef G3_GENERATE_H
#define G3_GENERATE_H

#include <stdint.h>

#include "../model/forward.h"

typedef enum { G3_STOP_NONE = 0, G3_STOP_EOS, G3_STOP_STRING, G3_STOP_MAX_TOKENS, G3_STOP_CONTEXT, G3_STOP_ABORT, G3_STOP_ERROR } G3StopReason;
const char *g3_stop_name(G3StopReason r);

typedef struct {
    int max_tokens;           // new tokens per sequence
    const int32_t *stop_ids;  // tokens that end a sequence (not emitted), e.g. <eos>, <end_of_turn>
    int nstop;
    // Chooses the next token of sequence i from its logits (modifiable) and history
    // (prompt + generated). NULL: greedy (argmax, ties to the lowest id).
    int32_t (*choose)(void *ctx, int i, float *logits, const int32_t *hist, int nhist);
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

// Generates for n prompts with a state whose slots are the batch size (s->nslots). The
// state's context must hold each prompt plus max_tokens (longer ones stop at G3_STOP_CONTEXT;
// prompts that alone exceed it fail with an error recorded in their result, the others go
// on). res[n] is filled. Returns 0, or -1 on an error that stops everything.
int g3_generate(G3State *s, const int32_t *const *prompts, const int *lens, int n, const G3GenOptions *o, G3GenResult *res);

#endif
