// forward.h: inference over a loaded model: a state with its KV cache and scratch (all sized
// once, at creation, in the memory of the state's backend: no allocation per token), and the
// forward pass over a batch of segments (backend.h G3Segment). Prefill of one prompt is one
// long segment, a batched decode step one one-token segment per sequence. Rows of all
// segments go through every matrix product together, so a batch costs one pass over the
// weights. The arithmetic is the model pass of pass.h; this file owns the state around it.
#ifndef G3_FORWARD_H
#define G3_FORWARD_H

#include <stdint.h>

#include "hooks.h"
#include "model.h"
#include "pass.h"

// ARGMAX: as LAST, but only each segment's greedy choice comes back (s->argmax[nseg], -1 where
// the row's logits hold a NaN or +inf or only -inf), computed where the logits are: on a GPU
// the [nseg, V] logits never cross to the host. s->logits is then not written (a logits hook
// still gets them).
// KEEP: as LAST, but the logits stay in backend memory (s->logits_be [nseg][V]) for an op that
// runs there next (the engine's sampler: backend.h sample_top_k); s->logits is not written
// (a logits hook still gets them).
typedef enum { G3_LOGITS_NONE, G3_LOGITS_LAST, G3_LOGITS_ALL, G3_LOGITS_ARGMAX, G3_LOGITS_KEEP } G3LogitsMode;

#define G3_NO_RECORD ((void *)1)

// An image's run of positions in one slot (g3_state_add_image).
typedef struct {
    int seq, pos0, n;
    const float *rows;  // [n][C] host memory, the caller's
} G3StateImage;

typedef struct {
    const G3Model *m;
    G3Backend *be;  // where the cache, the scratch and the arithmetic live
    int max_rows;   // R: rows per forward call
    int nslots;     // sequences the cache holds
    int ctx;        // positions per sequence
    int fast;       // 1: bf16 activations in the matrix products (G3_MM_FAST)
    int *len;       // [nslots] positions stored per slot (host)
    G3KVCache kv;   // per layer [nslots][NKV][cap[l]][HD]; sliding layers are rings of W positions
    // scratch in backend memory, [R][...] unless noted
    float *x, *xn, *q, *k, *v, *att, *tmp, *g, *u;
    float *cos_l, *sin_l, *cos_g, *sin_g;  // [R][HD/2] RoPE angles of each row's position
    int32_t *ids;                          // [R] token ids (backend copy)
    float *xlast;                          // [R][C] final-norm rows whose logits are computed
    float *logits;                         // host: [R][V] (ALL) or [nseg][V] (LAST)
    float *logits_be;                      // the same in backend memory (= logits on a host backend)
    int logits_rows;                       // rows logits has room for (grows on demand)
    int32_t *argmax, *argmax_be;           // [logits_rows] G3_LOGITS_ARGMAX's ids: host, and backend memory
    float *rope_h;                         // host staging of the RoPE tables (device backends)
    float *stage;                          // host staging of hooked sites (device backends; pass.h)
    void **recs;                           // [2][max_rows + 1] recorded decode steps (LAST, ARGMAX) by row count (backends
                                           // that record; NULL, or G3_NO_RECORD where one cannot be made)
    float *lora_xa, *lora_y;               // [R][r], [R][max_out]: m->adapter's scratch (NULL without one)
    // hooks (hooks.h): fn is called at the sites whose bit is set in hook_sites (bit = 1 << site),
    // for layers whose bit is set in hook_layers (unnumbered sites ignore hook_layers; layers
    // past 63 count as set only when all 64 bits are)
    G3HookFn hook;
    void *hook_ctx;
    uint32_t hook_sites;
    uint64_t hook_layers;
    // image runs (vision/): see g3_state_add_image
    G3StateImage *images;
    int nimages, cap_images;
    const float **soft_rows;  // [R] per call: the host row replacing row r's embedding, or NULL
    int32_t *kend;            // [R] per call: the end of each row's keys (G3Segment.kend)
    G3Segment *segs_img;      // [nslots] the call's segments with kend set
} G3State;

// Creates a state for nslots sequences of up to ctx positions, processing up to max_rows
// rows per call, on the model's backend (m->be; the CPU when NULL). Reports what it allocated through *bytes when non-NULL.
G3State *g3_state_new(const G3Model *m, int nslots, int ctx, int max_rows, int fast, int64_t *bytes);
// The same on a given backend (backend.h); every weight must have a kernel there (the
// message names the tensor and its type otherwise).
G3State *g3_state_new_on(G3Backend *be, const G3Model *m, int nslots, int ctx, int max_rows, int fast, int64_t *bytes);
void g3_state_free(G3State *s);
// Sets (fn non-NULL) or clears (fn NULL) the hook: sites is a bitmask of (1u << G3HookSite),
// layers a bitmask of block indices (~0ull: all). Replaces any hook set before.
void g3_state_set_hook(G3State *s, G3HookFn fn, void *ctx, uint32_t sites, uint64_t layers);
// Forgets a slot's cache (a new sequence starts there). Images stay (g3_state_clear_images).
void g3_state_reset(G3State *s, int seq);
// Images: positions [pos0, pos0 + n) of slot seq take rows[n][C] (host memory, kept alive by
// the caller) as their embeddings, unscaled, and attend to each other both ways (Gemma 3's
// image soft tokens in place of the placeholder run). The run must be read in one forward
// call (n <= max_rows; a call that cuts it is refused) and fit a sliding window; runs of a
// slot must not overlap. Registrations outlive g3_state_reset (the engine resets the slots it
// admits into) until g3_state_clear_images (seq < 0: every slot). 0 or -1.
int g3_state_add_image(G3State *s, int seq, int pos0, int n, const float *rows);
void g3_state_clear_images(G3State *s, int seq);

// Runs the segments' tokens (concatenated in segment order) through the model and appends
// their keys/values to the cache. Logits of the last row of each segment (LAST, into
// s->logits[nseg][V]) or of every row (ALL, [rows][V]). Checks ids, positions and sizes.
int g3_forward(G3State *s, const int32_t *tokens, const G3Segment *segs, int nseg, G3LogitsMode mode);

// Convenience: feeds n tokens to slot seq in chunks of at most max_rows; logits of the last
// token end up in s->logits[0]. With all_logits non-NULL ([n][V]) every row's logits are
// copied there.
int g3_prefill(G3State *s, int seq, const int32_t *tokens, int n, float *all_logits);

#endif
