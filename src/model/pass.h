// pass.h: THE model pass, written once over the backend's ops (backend/backend.h) and used by
// everything that runs the model: inference prefill and batched decode (forward.c, with a KV
// cache over segments and hooks), the training forward (train/train_pass.c, B sequences of
// T tokens from position 0, keeping what backward needs) and the training backward, which is
// the forward read in reverse over the same ops. One decoder layer, as in the paper:
//   h  = x + post_attn_norm(o_proj(attn(rope(qk_norm(q, k)), v)))   q, k, v of input_norm(x)
//   x' = h + post_ffw_norm(down(geglu(gate(xn2), up(xn2))))          xn2 = pre_ffw_norm(h)
// then final_norm, the tied output head (logits = xf . E^T) and the optional final softcap.
// Norm weights are used as stored; the ops apply Gemma's (1 + w). A LoRA adapter hanging off
// the model (m->adapter) adds its scaled low-rank term to each linear layer it adapts.
#ifndef G3_PASS_H
#define G3_PASS_H

#include <stdint.h>

#include "../backend/backend.h"
#include "hooks.h"
#include "model.h"

// One layer's activations over R rows (QD = NH*HD, KD = NKV*HD). The pass writes every
// buffer; inference points several at one scratch buffer (the comments say which may alias)
// and passes NULL for the 1/rms vectors, training keeps them all per layer for backward.
typedef struct {
    float *xn1, *rs1;    // [R, C] input_layernorm(x), [R] 1/rms (or NULL)
    float *qraw, *qrs;   // [R, QD] q_proj output before QK-norm (may be q), [R*NH] 1/rms (or NULL)
    float *kraw, *krs;   // [R, KD], [R*NKV]
    float *q, *k, *v;    // [R, QD], [R, KD], [R, KD] after QK-norm and RoPE (v: v_proj output)
    float *lse;          // [B, NH, T] batch attention: log-sum-exp per row, for backward
    float *att;          // [R, QD] attention output (o_proj input)
    float *ao, *rs2;     // [R, C] o_proj output, [R] post_attention_layernorm 1/rms
    float *h;            // [R, C] residual after the attention block (may be x)
    float *xn2, *rs3;    // [R, C] pre_feedforward_layernorm(h), [R]
    float *g, *u;        // [R, F] gate and up outputs
    float *a;            // [R, F] geglu(g, u) (may be g)
    float *mo, *rs4;     // [R, C] down_proj output, [R] post_feedforward_layernorm 1/rms
    float *tmp;          // [R, C] scratch: a post-normed branch (may be ao and mo)
} G3LayerActs;

// Scratch of one layer's backward (training), [R = B*T rows].
typedef struct {
    float *tmp, *dxn;    // [R, C]
    float *a, *dg, *du;  // [R, F] geglu output (recomputed), its input gradients
    float *datt, *dq;    // [R, QD]
    float *dk, *dv;      // [R, KD]
    float *dqn, *dkn;    // [R, QD], [R, KD] gradients before QK-norm (Gemma 3)
    float *da;           // [R, F] gradient of the down projection's input, when an adapter
                         // adapts down_proj (the fused mlp_down_backward cannot add its term)
} G3LayerGradScratch;

typedef struct {
    G3Backend *be;
    const G3Model *m;
    G3MatmulMode mode;
    int R;               // rows of this call
    // RoPE angles of each row's position, for sliding (local) and global layers: [R, HD/2]
    const float *cos_l, *sin_l, *cos_g, *sin_g;
    // attention: a KV cache over segments (inference), or B sequences of T rows (training)
    G3KVCache *kv;
    const G3Segment *segs;
    int nseg;
    int B, T;
    // hooks (hooks.h); NULL: none. Sites fire per segment (inference) or per sequence (batch).
    G3HookFn hook;
    void *hook_ctx;
    uint32_t hook_sites;
    uint64_t hook_layers;
    // host staging of a hooked site on a device backend ([R, widest site] floats): the site is
    // copied here, shown to the hook, and copied back (so edits take); NULL on the CPU
    float *stage;
    // training: the f32 gradient of model tensor i, or NULL where it is frozen ([m->nt])
    float *const *grad;
    // the scratch of m->adapter's low-rank terms (adapter.h), NULL without one:
    // lora_xa [R, r] = x . A^T, lora_y [R, max_out] = lora_xa . B^T
    float *lora_xa, *lora_y;
    // training an adapter: its gradients, as an adapter of the same shape whose factors are
    // the gradient buffers (dA [r, in], dB [out, r]), ADDED to by backward; NULL: frozen.
    // lora_dxa [R, r]: backward's scratch (the gradient of x . A^T).
    const struct G3Adapter *lora_grad;
    float *lora_dxa;
    // training with LoRA dropout (PEFT's lora_dropout on the adapter's input x: the low-rank
    // term is computed from x * mask / (1 - p)): the probability p, the mask's seed (each
    // element's draw is a hash of the seed, layer, role and element index, so backward
    // redraws the forward's mask instead of storing it) and lora_xd [R, widest input]
    // scratch. p = 0 or NULL scratch: no dropout (inference never sets it).
    float lora_dropout;
    uint64_t lora_dropout_seed;
    float *lora_xd;
    // inference with images (vision/): [R] per row, a host row [C] that replaces the row's
    // embedding (an image's soft token: not scaled by sqrt(C)), or NULL; NULL: none
    const float *const *soft_rows;
    // Set Block Decoding (train/sbd.h, gen/sbd.h): the batch attention under this block mask
    // instead of causal (NULL: causal); with a KV cache, block_last = 1 makes the last segment
    // a block of the noisy copy: it sees the cache after the call's other segments were appended
    // and its own rows both ways, and is not appended (backend op attention_cache_block).
    const G3AttnMask *mask;
    int block_last;
    // the caller runs every layer in order over one G3LayerActs, x updated in place (forward.c):
    // a layer's last residual step may then also write the next layer's input norm into xn1
    // (one op less per layer at inference), and that layer skips its own
    int chain;
} G3Pass;

// The f32 norm weight of tensor i as stored (no +1): the tensor's own data when it is F32,
// else the copy the model made at load.
const float *g3_norm_weight(const G3Model *m, int i);

// x[R, C] = embedding rows of ids, times sqrt(C), or p->soft_rows' rows where set; fires hook_embed.
int g3_pass_embed(const G3Pass *p, float *x, const int32_t *ids);
// Layer l from its input x[R, C] to xout[R, C] (xout may be x); fires the layer's hooks.
int g3_layer_forward(const G3Pass *p, int l, const G3LayerActs *a, float *x, float *xout);
// Backward of layer l: dx holds the gradient of the layer's output on entry and of its input
// x on return; weight gradients are ADDED to p->grad[...] (frozen tensors skipped).
int g3_layer_backward(const G3Pass *p, int l, const G3LayerActs *a, const float *x, float *dx, const G3LayerGradScratch *s);
// The final norm of rows x[R, C] into y (rstd may be NULL).
void g3_pass_final_norm(const G3Pass *p, float *y, float *rstd, const float *x, int R);
// logits[R, V] = xf[R, C] . E^T, then the final softcap when cap is 1 (training's fused
// cross-entropy applies the softcap itself and passes 0).
int g3_pass_head(const G3Pass *p, float *logits, const float *xf, int R, int cap);

// Fires hook site (of layer l, -1 for the unnumbered) over the call's rows of d[R, cols]:
// once per segment (inference) or per sequence (batch). On a device backend d is staged
// through p->stage; a failed copy is reported by the backend's next sync.
int g3_pass_hook_on(const G3Pass *p, G3HookSite site, int l);
void g3_pass_fire(const G3Pass *p, G3HookSite site, int l, float *d, int cols, int heads, int hd);

#endif
