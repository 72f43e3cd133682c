// record.h: a hook that copies chosen sites into whole arrays, one per (site, layer), laid
// out by batch slot and absolute position, so that a prefill, a run of decode steps or a
// batched call all land in the same place. What `gemma3 trace` writes, and what tests and
// benchmarks use to look at every site at once. It only reads: edits are for other hooks.
//
// Shapes (B slots, T positions; NH, NKV, HD, C, F, V as in hooks.h):
//   row sites            [B][T][cols]        (cols C, F or V)
//   per-head sites       [B][T][H][HD]       (q, rot_q, z: H = NH; k, rot_k, v: H = NKV)
//   attn_scores/pattern  [B][NH][T][T]       [b][h][query][key] over keys 0..T-1
// Entries no call wrote stay 0, except attn_scores, which starts at -inf (masked keys).
#ifndef G3_RECORD_H
#define G3_RECORD_H

#include <stdint.h>

#include "forward.h"

typedef struct {
    char name[64];       // hook name: "blocks.3.hook_resid_post"
    G3HookSite site;
    int layer;           // -1 for the unnumbered sites
    int ndim;
    int64_t shape[4];
    float *data;         // C order, shape[0] x ... x shape[ndim-1]
} G3RecArray;

typedef struct {
    const G3Config *cfg;
    int batch, T;
    int narr;
    G3RecArray *arr;     // [narr] in forward-pass order (embed, layer 0's sites, ..., logits)
    int *index;          // [NSITES][L + 1] array of (site, layer), -1 if not recorded
    uint32_t sites;      // what to pass to g3_state_set_hook
    uint64_t layers;
} G3Recorder;

// Chooses every site whose hook name matches one of the glob patterns (hooks.h) and
// allocates its array. A pattern that matches no site of this model is an error listing
// the valid names. Returns 0, or -1 with g3_error set.
int g3_rec_init(G3Recorder *r, const G3Config *c, int batch, int T, const char *const *patterns, int npat);
// Sets r as s's hook (g3_state_set_hook); slot b of s fills batch row b.
void g3_rec_attach(G3Recorder *r, G3State *s);
void g3_rec_free(G3Recorder *r);
// The array of (site, layer), or NULL when it is not recorded.
G3RecArray *g3_rec_find(const G3Recorder *r, G3HookSite site, int layer);
// The hook itself (ctx is the G3Recorder), for callers that chain it with their own.
void g3_rec_hook(void *ctx, const G3HookEvent *ev);
// Writes a list of the model's hook names, one per layer for block sites, to buf (for error
// messages and --help): "hook_embed, blocks.{0..5}.hook_resid_pre, ...".
void g3_rec_valid_names(char *buf, int cap, const G3Config *c);

#endif
