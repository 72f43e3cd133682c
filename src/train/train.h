// train.h: the trainable model and the exact forward/backward pass over [B, T] batches.
// Parameters, gradients (and, in optim.h, optimizer state) each live in ONE f32 allocation
// laid out in the order of the model's tensor table (model.h): tensor i occupies
// [off[i], off[i] + numel) of each. The table is the only parameter list.
#ifndef G3_TRAIN_H
#define G3_TRAIN_H

#include <stdint.h>

#include "../model/model.h"

typedef struct {
    G3Model m;        // config + table; tensor data points into params (F32)
    float *params;    // [n] f32 master weights
    float *grads;     // [n] gradients, same layout
    int64_t *off;     // [m.nt] offset of tensor i
    int64_t n;
} G3TrainModel;

// A model of config c with zeroed parameters.
int g3_train_model_new(G3TrainModel *tm, const G3Config *c);
// Random initialisation as `gemma3 init` does (init.h), std = initializer_range (0.02).
void g3_train_model_init_random(G3TrainModel *tm, uint64_t seed, float std);
// A trainable copy (f32) of a loaded model's weights.
int g3_train_model_from(G3TrainModel *tm, const G3Model *src);
// Writes config.json + model.safetensors (Hub format, loadable by transformers) into dir,
// weights converted to dt (F32 or BF16), atomically.
int g3_train_model_save(const G3TrainModel *tm, const char *dir, G3DType dt);
void g3_train_model_free(G3TrainModel *tm);
// tm->m's tensors point into params (F32), norms included, so tm->m runs the inference forward
// (forward.h) on the current weights at any time, e.g. between optimizer steps.
// Zeroes tm->grads (before a step's micro-batches), with every thread: a serial memset of a
// 35M-parameter model's gradients held the other thread idle for ~10 ms a step.
void g3_train_zero_grads(G3TrainModel *tm);

// Activations for one micro-batch of B sequences of T tokens, sized once.
typedef struct G3TrainCtx G3TrainCtx;
// recompute = 1: activation checkpointing per layer (keep only each layer's input; recompute
// the layer in backward). *bytes (if non-NULL) receives the activation memory.
G3TrainCtx *g3_train_ctx_new(const G3TrainModel *tm, int B, int T, int recompute, int64_t *bytes);
void g3_train_ctx_free(G3TrainCtx *ctx);
// Mixed precision: on = 1 rounds the operands of the linear layers' and the head's matrix
// products to bf16 (f32 sums, f32 weights, gradients and optimizer state, as PyTorch's bf16
// autocast), about 1.9x the f32 rate on CPUs with AVX512-BF16; 0 (the default) is exact f32.
void g3_train_ctx_set_bf16(G3TrainCtx *ctx, int on);
// The bytes g3_train_ctx_new would allocate for these settings, without allocating them
// (to report what checkpointing saves, or to pick a batch that fits).
int64_t g3_train_ctx_bytes(const G3TrainModel *tm, int B, int T, int recompute);

// Mean next-token cross-entropy of targets[B*T] given inputs[B*T] (a target < 0 is ignored),
// and its gradient ADDED to tm->grads multiplied by grad_scale (1/accum_steps when
// accumulating). Returns the loss, or NAN with g3_error() set.
double g3_train_forward_backward(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets, float grad_scale);
// The logits[B*T, V] of the training forward (after the final softcap), for comparing the
// training pass with inference. 0 or -1.
int g3_train_logits(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, float *logits);
// The loss alone (validation).
double g3_train_loss(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets);

#endif
