// sbd.h: Set Block Decoding (Gat et al. 2025, arXiv:2509.04185) on a model fine-tuned with
// train/sbd.h's objective. After the prompt, tokens come a block of K at a time: the block starts
// as K <mask> tokens at the next K positions; each forward pass (one NFE) gives every masked
// position a distribution, and the Entropy-Bounded sampler reveals the masked positions of
// lowest entropy, in order, while their summed entropy stays within gamma (at least one each
// pass; greedy: each revealed position takes its most likely token). A block whose positions
// are all revealed is finished; it enters the KV cache in the NEXT block's first forward, as
// clean rows in front of the new block's rows (the prompt is the first of those), so caching
// is exact: the paper's Algorithm 2/3. The block's own rows see the cache and each other both
// ways and are never cached (pass.h block_last). gamma = 0 reveals one token a pass.
// With a sampling chain (temperature > 0), the entropies are those of the tempered
// distributions softmax(z / T) and each revealed position draws its token through the chain
// (sampler.h: penalties over the tokens so far, top-k, temperature, top-p, min-p), one draw a
// position in position order, from the chain's own seeded stream.
// CPU backend only for now (the block attention op; CUDA has none).
#ifndef G3_GEN_SBD_H
#define G3_GEN_SBD_H

#include <stdint.h>

#ifndef G3_SBD_MASK_ID
#define G3_SBD_MASK_ID 4  // <mask> in Gemma 3's vocabulary, when no tokenizer names it
#endif

#include "../model/forward.h"
#include "../model/model.h"
#include "../sampler/sampler.h"

typedef struct {
    int block;                // K >= 1
    double gamma;             // entropy bound (nats), >= 0
    int mask_id;              // <mask>
    int max_tokens;           // new tokens at most
    const int32_t *stop_ids;  // a revealed stop id ends generation once every position before it is revealed
                              // (the id and what follows it are kept out of the output)
    int nstop;
    int fast;                 // 1: inference's fast matrix mode; 0: exact f32
    int recompute;            // 1: no KV cache: every pass recomputes prompt + finished blocks (a test's reference)
    const G3SamplerConfig *sampling;  // NULL or temperature 0: greedy; else draws through this chain (above)
    G3State *state;           // optional: a state of the model to use (slot 0, reset first; context >= prompt +
                              // max_tokens, rows >= that + block); NULL: one is made for the call
} G3SbdOptions;

typedef struct {
    int32_t *ids;  // [n] new tokens (malloc'd; the caller frees)
    int n;
    int nfe;       // forward passes, the prompt's included (it runs with the first block)
    int stopped;   // 1: a stop id ended it
    double seconds;
} G3SbdResult;

// Generates after prompt[np] (np >= 1) on m (CPU backend). 0, or -1 with a message.
int g3_sbd_generate(const G3Model *m, const int32_t *prompt, int np, const G3SbdOptions *o, G3SbdResult *r);

// One forward pass of the decoder: clean[nc] (appended to the cache of slot 0 of s at its
// length; nc may be 0) then the block blk[K] at the following positions; logits[K, V] of the
// block's rows (after the final softcap). Exposed for tests (training vs inference layouts).
int g3_sbd_forward(G3State *s, const int32_t *clean, int nc, const int32_t *blk, int K, float *logits);

#endif
