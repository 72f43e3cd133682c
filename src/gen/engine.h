// engine.h: the generation engine: many sequences decoded together over one G3State, one step
// at a time. Every command that generates (generate, its prompt-file batches, chat, trace,
// intervene) and the future server drive it the same way:
//
//   id = g3_engine_add(e, &params);       // queued; joins at the next step
//   while (g3_engine_step(e) > 0) ...     // one batched forward pass per step
//   g3_engine_read(e, id, &info);         // tokens so far, stop reason
//   g3_engine_cancel(e, id);              // frees its slot at once
//   g3_engine_extend(e, id, more, n, k);  // next turn, reusing the cached history
//   g3_engine_release(e, id);             // forget it
//
// A step admits queued sequences into free cache slots, then runs ONE g3_forward call whose
// segments are every live sequence's pending tokens: one row for each decoding sequence (its
// newest token) and prompt chunks of up to max_rows tokens for sequences still reading their
// prompt, as many as fit in the state's max_rows next to the decoding rows. A prompt chunk
// that does not fit runs in a call of its own (at most one per step), so a long prompt delays
// the others by one chunk per step, never by its whole length. After the call each sequence
// whose pending tokens are all in the cache chooses its next token from its logits (its own
// sampler, or greedy) and checks its own stops; a finished sequence frees its slot for the
// next step (continuous batching).
//
// Where the logits are on a device (a GPU backend with sample_top_k), a sequence that samples
// with a sampler whose chain starts with top-k (Gemma's default) or is greedy has its
// penalties and its top-k applied there: only k candidates cross to the host, where
// g3_sampler_finish draws from them, the tokens of the host path for the same seed (sampler.h
// says why). Other configurations, a chooser, hooks or all_logits bring the logits back.
// G3_HOST_SAMPLER=1 in the environment forces the host path (to compare).
//
// Batched results equal one-at-a-time results: each sequence has its own sampler and stops,
// a row of g3_forward does not see the other segments of its call, and a prompt is always cut
// into chunks at the same places (multiples of max_rows from where its reading starts, or
// just before an image's run that a chunk would cut), whatever runs beside it. What is not
// promised is the last bit of every logit: a kernel may sum in another order for another
// number of rows (today the one-row matrix product does), so a token decoded alone and in a
// batch can differ by ~1e-6 relative in its activations. The tokens are the same in the tests
// (greedy and seeded sampling, every fixture).
//
// The cache as a prefix store: a slot keeps the tokens it holds after its sequence ends. A
// sequence admitted later whose tokens begin with all of a free slot's tokens takes that slot
// and reads only the rest (a chat's next turn, a server's next request in one conversation);
// other free slots are taken empty first, then least recently used.
//
// Memory: everything a step needs is allocated by g3_engine_new; a sequence's token buffer is
// allocated by add/extend for its prompt plus max_tokens, so steps allocate nothing.
// Not thread-safe: one thread drives an engine. Not here: beams, speculative decoding,
// sharing one slot's cache with another (a copy the state API does not offer).
#ifndef G3_ENGINE_H
#define G3_ENGINE_H

#include <stdint.h>

#include "../model/forward.h"
#include "../sampler/sampler.h"

typedef enum { G3_STOP_NONE = 0, G3_STOP_EOS, G3_STOP_STRING, G3_STOP_MAX_TOKENS, G3_STOP_CONTEXT, G3_STOP_ABORT, G3_STOP_ERROR } G3StopReason;
const char *g3_stop_name(G3StopReason r);  // "none", "eos", "stop_string", "max_tokens", "context", "aborted", "error"

typedef struct G3Engine G3Engine;

typedef struct {
    int max_queued;  // sequences waiting for a slot at most (add fails beyond); 0: 1024
    int all_logits;  // logits of every row, not only each segment's last: hooks at ln_final and
                     // logits then see every prompt position (trace, intervene); costs [rows][V]
} G3EngineOptions;

// Drives s (owns nothing of it; s must outlive the engine and be driven by nothing else
// meanwhile): s->nslots sequences live at once. s->max_rows must be >= s->nslots (one row
// per decoding sequence in a step). opt NULL: defaults. NULL with a message.
G3Engine *g3_engine_new(G3State *s, const G3EngineOptions *opt);
void g3_engine_free(G3Engine *e);

typedef struct {
    const int32_t *prompt;  // [nprompt] ids, copied; each in [0, vocab)
    int nprompt;            // >= 1; with max_tokens the context must hold it plus one token
    int max_tokens;         // new tokens at most; 0: only run the prompt through the model
                            // (hooks, cache) and stop with G3_STOP_MAX_TOKENS
    const int32_t *stop_ids;  // tokens that end the sequence (not emitted), copied
    int nstop;
    // The next token: choose (if set), else sampler (borrowed; one per sequence: it keeps
    // the random stream), else greedy (g3_argmax). logits [V] may be modified; hist is the
    // whole sequence so far (every prompt and output). choose returns the id, or -1 with a
    // message (the sequence stops with G3_STOP_ERROR).
    int32_t (*choose)(void *user, int id, float *logits, const int32_t *hist, int nhist);
    G3Sampler *sampler;
    // Called for each new token (streaming, stop strings); non-zero stops the sequence with
    // *reason (preset to G3_STOP_STRING). The token stays in the output.
    int (*on_token)(void *user, int id, int32_t tok, G3StopReason *reason);
    // Called once when the sequence (or its latest turn) ends, whatever the reason.
    void (*on_done)(void *user, int id);
    void *user;
    // Images of the prompt (forward.h g3_state_add_image; .seq is not read), registered with
    // the slot the sequence is admitted into; the array is copied, the rows are borrowed until
    // the sequence is released. A sequence with images never takes a cached prefix, and a
    // slot read with them is never one for another sequence.
    const G3StateImage *images;
    int nimages;
    // Or the sampler asked for when the sequence is about to choose (NULL: greedy), for a
    // caller that hands samplers out from a pool as sequences start; it must return the same
    // sampler for the rest of the turn. Used when choose and sampler are NULL. (Last here, so
    // that positional initializers stay valid.)
    G3Sampler *(*sampler_of)(void *user, int id);
    // Callbacks run inside step and cancel; they may call g3_engine_read and nothing
    // else of the engine (the others fail there).
} G3SeqParams;

// Queues a sequence. Returns its id (>= 0), or -1 with a message (bad ids, a prompt the
// context cannot hold, the queue full, a call from a callback).
int g3_engine_add(G3Engine *e, const G3SeqParams *p);

// One step (see above). Returns the number of sequences still live or queued (0: nothing
// left to do), or -1 if the forward pass failed: the sequences of that call stop with
// G3_STOP_ERROR and the message, and the caller should stop.
int g3_engine_step(G3Engine *e);

typedef struct {
    const int32_t *ids;  // [n] tokens of the current turn (valid until the next engine call
    int n;               // other than read)
    G3StopReason stop;   // G3_STOP_NONE while queued or running
    const char *error;   // G3_STOP_ERROR: what went wrong ("non-finite logits": any NaN or +inf,
                         // or all -inf; a bad chooser; a failed forward pass); else ""
    const int32_t *hist; // [nhist] the whole sequence: every prompt and output token
    int nhist;
    int prompt_tokens;   // tokens before the current turn's output (all earlier turns included)
    int cached_tokens;   // of those, found in the cache at admission and not recomputed
    int slot;            // cache slot it holds or last held; -1 if never admitted
    double prefill_s;    // wall time of the calls that read its prompt (this turn)
    double decode_s;     // wall time of the calls that fed its generated tokens (this turn)
} G3SeqInfo;

// 0, or -1 for an unknown id.
int g3_engine_read(const G3Engine *e, int id, G3SeqInfo *out);
// Stops a queued or running sequence with G3_STOP_ABORT (on_done is called) and frees its
// slot at once; a finished sequence is left as it is. 0, or -1 for an unknown id.
int g3_engine_cancel(G3Engine *e, int id);
// Continues a finished sequence (not one that ended in an error): appends more[n] (may be 0)
// to its history and queues it to generate up to max_tokens more, with the same sampler,
// stops and callbacks. Its slot's cache is reused if still there, so only the new tokens
// (and its last output token, not yet fed) are read. n = 0 with max_tokens 0 just feeds the
// last output token. 0, or -1 with a message.
int g3_engine_extend(G3Engine *e, int id, const int32_t *more, int n, int max_tokens);
// Forgets a finished sequence (its id becomes unknown). 0, or -1 (unknown, or still running:
// cancel it first).
int g3_engine_release(G3Engine *e, int id);
// Sequences holding a slot, and waiting for one.
void g3_engine_counts(const G3Engine *e, int *live, int *queued);

#endif
