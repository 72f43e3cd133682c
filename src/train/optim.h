// optim.h: AdamW with decoupled weight decay and bias correction, exactly as torch.optim.AdamW
// computes it, over the flat f32 parameter array of train.h; clipping by global gradient norm;
// and an 8-bit variant whose moments are stored block-wise quantized (as bitsandbytes'
// Adam8bit: 256-value blocks, one f32 absmax per block, the "dynamic" 8-bit code of Dettmers
// et al., signed for m and unsigned for v), which cuts the state from 8 to ~2 bytes a parameter.
//
// The parameter array is seen as segments (the model's tensors, in table order), each with its
// own weight-decay switch; 8-bit blocks never straddle two tensors, so a norm vector's scale is
// not set by a matrix next to it.
//
// A step with gradient accumulation and clipping, as cmd_train does it:
//   zero grads; accum x g3_train_forward_backward(..., 1/accum);
//   norm = g3_grad_norm(grads, n); g3_adamw_step(&opt, params, grads, lr, g3_clip_scale(norm, clip));
#ifndef G3_OPTIM_H
#define G3_OPTIM_H

#include <stdint.h>

#include "../kernels/adamw8.h"  // G3_ADAMW8_BLOCK, the code tables and quantizers
#include "train.h"

typedef struct {
    double beta1, beta2, eps, weight_decay;
    int bits;  // 32: f32 moments; 8: block-wise quantized moments
} G3AdamWConfig;

typedef struct {
    G3AdamWConfig cfg;
    int64_t n;                   // parameters
    int nseg;                    // segments (tensors)
    int64_t *seg_off, *seg_n;    // [nseg] offset and length of each
    uint8_t *seg_decay;          // [nseg] 1: weight decay applies
    uint8_t *seg_skip;           // [nseg] 1: frozen for now (G3Param.frozen): no update at all
    int64_t *seg_blk;            // [nseg] first 8-bit block of each segment
    int64_t nblocks;             // 8-bit: blocks in all
    int64_t t;                   // optimizer steps taken (bias correction uses t + 1)
    float *m, *v;                // 32-bit: [n] first and second moments
    uint8_t *mq, *vq;            // 8-bit: [n] codes
    float *mmax, *vmax;          // 8-bit: [nblocks] absmax of each block
} G3AdamW;

// Defaults of the reference training recipes: betas (0.9, 0.95), eps 1e-8, weight decay 0.1.
G3AdamWConfig g3_adamw_defaults(void);
// Zeroed state for nseg segments of the flat array.
int g3_adamw_init(G3AdamW *o, const G3AdamWConfig *c, int nseg, const int64_t *off, const int64_t *numel,
                  const uint8_t *decay);
// Segments from the trainable table (train.h), one per trainable tensor; weight decay where
// the table says (projections; none on norms or the embedding, as the reference recipes do);
// decay_embed=1 includes the embedding.
int g3_adamw_init_model(G3AdamW *o, const G3AdamWConfig *c, const G3TrainModel *tm, int decay_embed);
void g3_adamw_free(G3AdamW *o);
// Copies the table's frozen flags to the segments (g3_adamw_init_model's one per entry): a
// frozen segment is left alone by g3_adamw_step (no decay, moments kept).
void g3_adamw_sync_frozen(G3AdamW *o, const G3TrainModel *tm);

// One step: g = grads * grad_scale (the clip factor), then for each parameter
//   p -= lr*wd*p (decayed segments);  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
//   p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
// Each element is independent, so the result does not depend on the thread count.
void g3_adamw_step(G3AdamW *o, float *params, const float *grads, double lr, float grad_scale);

// Device-resident training (train_pass.c): after g3_train_ctx_resident(ctx) the parameters,
// gradients and moments (32-bit, or 8-bit codes and block absmax) stay in the context's
// device memory, the step running there through the backend's adamw / adamw8 op; a step is
//   g3_train_ctx_zero_grads(ctx); accum x g3_train_forward_backward(...);
//   g3_train_ctx_step(ctx, &opt, lr, clip, &norm);
// and the host copies (tm->params; opt.m / opt.v, or opt.mq / vq / mmax / vmax) are brought
// up to date only by g3_train_ctx_sync_host (before a checkpoint, a save or any host-side use
// of the weights);
// g3_train_ctx_reload sends host changes (a loaded checkpoint) back. On the CPU, or before
// resident, these are the host calls (zero, norm + clip + step). 0 or -1; g3_train_ctx_step
// also returns 1 when the gradient norm (*norm) is not finite (nothing updated) or the update
// made a weight non-finite (the device copy is then spoiled: stop without saving).
int g3_train_ctx_resident(G3TrainCtx *ctx);
int g3_train_ctx_zero_grads(G3TrainCtx *ctx);
int g3_train_ctx_step(G3TrainCtx *ctx, G3AdamW *o, double lr, double clip, double *norm);
int g3_train_ctx_sync_host(G3TrainCtx *ctx, G3AdamW *o);
int g3_train_ctx_reload(G3TrainCtx *ctx, const G3AdamW *o);

// Bytes of optimizer state for n parameters in these segments, with bits 32 or 8.
int64_t g3_adamw_state_bytes(const G3AdamW *o, int bits);

// Global L2 norm of g[n] in double, summed in a fixed order (the same for any thread count,
// so training is reproducible bit for bit).
double g3_grad_norm(const float *g, int64_t n);
// The factor torch.nn.utils.clip_grad_norm_ applies: max/(norm+1e-6) when norm > max, else 1.
// max <= 0 disables clipping.
float g3_clip_scale(double norm, double max);

#endif
