// rank1.h: dynamic rank-1 updates of every linear weight (`gemma3 train --rank1 ...`,
// docs/lora.md "Rank-1 merging").
//
// Every step, each linear weight W [out, in] of the decoder layers (q, k, v, o, gate, up,
// down) takes a rank-1 update in a direction d, a unit vector on its smaller side (d [out]
// when out <= in, "left"; else d [in], "right"), with Adam run on the projected gradient:
//   r = d^T G  (left: [in])   or   r = G d  (right: [out])        G = dL/dW, clipped
//   m = b1 m + (1 - b1) r,   v = b2 v + (1 - b2) r^2,   n = m^ / (sqrt(v^) + eps)   (bias-corrected)
//   W = (1 - lr wd) W - lr d n^T   (left)   or   W - lr n d^T   (right)
// Every T steps (and at the first) d is chosen afresh:
//   svd:    the top singular vector of G on that side, by `iters` power iterations
//           (d <- G G^T d, normalised) started from the previous d (a seeded random vector the
//           first time): GaLore (Zhao et al. 2024) with rank 1;
//   random: a Gaussian unit vector from (seed, step / T, matrix): Flora's random projections
//           (Hao et al. 2024) with rank 1 (Flora also carries the compressed momentum over to
//           the new projection; here the moments are reset, or kept as they are with `keep`).
// When d changes, the moments are reset (and Adam's bias correction restarts: the steps since
// the reset count), unless `keep` (GaLore keeps them across projection changes).
// The third variant, a rank-1 LoRA trained T steps then merged (COLA, Xia et al. 2024; ReLoRA
// with r = 1), is `--rank1 lora,every=T`: ReLoRA's machinery (relora.h) with r = 1, alpha 1,
// the adapter's moments reset at each merge and no re-warm.
// Everything else (embedding, norms) is trained by AdamW as usual. Optimizer memory: 2 floats
// per row or column on the smaller side of each linear weight instead of 2 per weight, plus d.
#ifndef G3_RANK1_H
#define G3_RANK1_H

#include <stdint.h>

#include "optim.h"
#include "train.h"

typedef enum { G3_RANK1_SVD = 0, G3_RANK1_RANDOM, G3_RANK1_LORA } G3Rank1Mode;

typedef struct {
    G3Rank1Mode mode;
    int every;  // T: steps between direction changes (default 1: every step)
    int iters;  // svd: power iterations (default 2)
    int keep;   // keep the moments when the direction changes
} G3Rank1Spec;

// "svd|random|lora[,every=T][,iters=N][,keep]". 0 or -1 with a message.
int g3_rank1_parse(G3Rank1Spec *s, const char *text);

typedef struct {
    G3Rank1Spec spec;
    uint64_t seed;
    int n;          // matrices
    int *param;     // [n] their entry in the training table
    int *layer;     // [n]
    uint8_t *left;  // [n] 1: d has out entries
    int64_t *dim;   // [n] length of d
    int64_t *len;   // [n] length of r, m, v
    float **d, **m, **v;  // [n] each
    int64_t *t;     // [n] Adam steps since the last reset
    double *cos;    // [n] |cos| between the last two directions (NaN before the second)
    // g3_rank1_step_ctx's device scratch: d [max dim], r and n [max len] (of backend dbe)
    struct G3Backend *dbe;
    float *dbuf;
} G3Rank1;

// The state for every linear weight of a full training model (tm->off[] all set). Marks those
// tensors' AdamW segments skipped in o (they are updated here instead). 0 or -1.
int g3_rank1_init(G3Rank1 *r, const G3Rank1Spec *s, const G3TrainModel *tm, G3AdamW *o, uint64_t seed);
void g3_rank1_free(G3Rank1 *r);
// Step `step` (0-based) of every matrix: new directions when step % every == 0, then the update
// above with gradient tm->grads * grad_scale and AdamW's betas, eps and weight decay.
void g3_rank1_step(G3Rank1 *r, G3TrainModel *tm, const G3AdamWConfig *c, int64_t step, double lr, float grad_scale);
// The same step for a training context resident on a device (train.h): the weights and their
// gradients stay there. Per matrix, the projections r = d^T G (or G d) and svd's power
// iterations are backend gemms whose small results (len or dim floats) come over, the
// direction's choice and Adam on r run on the host as above (d, m, v live there), and the
// update is a scale and a rank-1 gemm where W is: W = decay W + d (-lr n)^T. The sums are f32
// (g3_rank1_step's are double): the two agree to f32 rounding. A context that is not resident:
// g3_rank1_step. 0, 1 when the update made the weights non-finite, or -1.
struct G3TrainCtx;
int g3_rank1_step_ctx(G3Rank1 *r, G3TrainModel *tm, struct G3TrainCtx *cx, const G3AdamWConfig *c, int64_t step, double lr,
                      float grad_scale);
// The state's bytes (directions and moments).
int64_t g3_rank1_state_bytes(const G3Rank1 *r);
// Per layer, the mean |cos| between each matrix's last two directions (NaN: none yet).
void g3_rank1_layer_cos(const G3Rank1 *r, int layers, double *per_layer);
// The state beside a checkpoint: DIR/rank1_state.safetensors (written atomically, tagged with
// the step) and its loading (the step must match the checkpoint's). 0 or -1.
int g3_rank1_save(const G3Rank1 *r, const G3TrainModel *tm, const char *dir, int64_t step);
int g3_rank1_load(G3Rank1 *r, const G3TrainModel *tm, const char *dir, int64_t step);

#endif
