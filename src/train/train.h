// train.h: the trainable model and the exact forward/backward pass over [B, T] batches.
// What is trained is a table of named trainable tensors (G3Param), apart from the model's
// weights: for full training every tensor of the model's table, its weights then pointing
// into the f32 parameters; later, adapter tensors only, over a frozen base in its stored
// type. Parameters, gradients (and, in optim.h, optimizer state) each live in ONE f32
// allocation laid out in the order of that table: entry j occupies [off, off + numel) of
// each. Gradients, the optimizer's segments and checkpoints (save and load) walk it.
#ifndef G3_TRAIN_H
#define G3_TRAIN_H

#include <stdint.h>

#include "../backend/backend.h"  // G3AttnMask
#include "../model/model.h"

// One trainable tensor.
typedef struct {
    const char *name;  // its name in checkpoints (the model tensor's, or an adapter's own)
    int ndim;
    int64_t shape[2];
    int64_t numel, off;  // [off, off + numel) of params, grads and optimizer state
    int tensor;          // the model tensor it is, or -1 (outside the model's table)
    uint8_t decay;       // AdamW weight decay by default: projections yes, norms no, embedding
                         // only when asked (g3_adamw_init_model's decay_embed)
    uint8_t frozen;      // in the table (weights saved and restored) but not trained now: no
                         // gradient, no optimizer update (a LoRA-adapted f32 weight, relora.h)
} G3Param;

// LoRA training (lora.c): --lora r=16,alpha=32,targets=all|q,v,...,dropout=0.05[,rslora]
typedef struct {
    int r;
    double alpha;
    int rslora;
    double dropout;
    unsigned targets;  // bit (1 << G3LayerRole) per adapted linear layer
    int classes;       // > 0: a classification head "score.weight" [classes, hidden] is trained too
} G3LoraSpec;

struct G3Adapter;

typedef struct {
    G3Model m;        // config + tensor table; trained tensors point into params (F32)
    G3Param *p;       // [np] the trainable table
    int np;
    float *params;    // [n] f32 master weights
    float *grads;     // [n] gradients, same layout
    int64_t *off;     // [m.nt] offset of model tensor i in params, or -1 if it is frozen
    int64_t n;
    // LoRA training: the adapter being trained (m.adapter points at it; its factors point into
    // params) and one of the same shape over grads; the base model m is loaded as stored and
    // frozen (off[] all -1). NULL for full training.
    struct G3Adapter *lora, *lora_grad;
    G3LoraSpec lora_spec;
    char *names;      // the adapter tensors' names (G3Param.name points here)
    const char *base_name;  // the base model's folder, for adapter_config.json
    int64_t head_off;       // lora_spec.classes > 0: the head's offset in params / grads
    // A LoRA adapter over a trainable-precision base (relora.h: ReLoRA, LoRA from scratch):
    // every model tensor is f32 in the table, the adapted ones frozen (merges change them),
    // the others (embedding, norms, linear layers not targeted) trained; the adapter's factors
    // follow them in the table. Saved as a merged Hub model, not as an adapter.
    int hybrid;
} G3TrainModel;

// A model of config c with zeroed parameters.
int g3_train_model_new(G3TrainModel *tm, const G3Config *c);
// Random initialisation as `gemma3 init` does (init.h), std = initializer_range (0.02).
void g3_train_model_init_random(G3TrainModel *tm, uint64_t seed, float std);
// A trainable copy (f32) of a loaded model's weights.
int g3_train_model_from(G3TrainModel *tm, const G3Model *src);
// Parses a --lora spec ("r=16,alpha=32,targets=all|q,k,v,o,gate,up,down,dropout=0.05,rslora";
// defaults r 16, alpha 2r, targets all, dropout 0). 0 or -1 with a message.
int g3_lora_spec_parse(G3LoraSpec *s, const char *text);
// A LoRA training model over base (a loaded model, weights as stored: bf16 stays bf16), which
// it takes over (*base is cleared). The trainable table is the adapter's factors, named as
// PEFT names them, initialised as PEFT does: A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_
// with a = sqrt(5)) from seed, B = 0.
int g3_train_model_lora(G3TrainModel *tm, G3Model *base, const G3LoraSpec *s, uint64_t seed, const char *base_name);
// Appends the adapter (and head) of spec s to tm's table (g3_train_model_lora on an empty
// table; relora.h's hybrid model after every model tensor). 0 or -1.
int g3_lora_append(G3TrainModel *tm, const G3LoraSpec *s, uint64_t seed);
// Draws every A afresh (PEFT's Kaiming-uniform; draw gen of seed: 0 the first, ReLoRA's
// merges 1, 2, ...) and zeroes every B.
void g3_lora_init_factors(G3TrainModel *tm, uint64_t seed, int64_t gen);
// ||s B A||_F of one module (through r x r Gram matrices), and per layer the norm over its
// modules (sqrt of the sum of squares) into per_layer[layers]: the size of the update the
// adapter makes to the base, logged per layer in metrics.jsonl ("lora_update_norm").
struct G3LoraModule;
double g3_lora_update_norm(const struct G3LoraModule *md, float scale);
void g3_lora_layer_norms(const G3TrainModel *tm, double *per_layer);
// Writes config.json + model.safetensors (Hub format, loadable by transformers) into dir,
// weights converted to dt (F32 or BF16), atomically; for a LoRA model, the adapter in PEFT's
// format instead (adapter_config.json + adapter_model.safetensors, adapter.h), and a
// classification head as classify_head.safetensors ("score.weight" F32 [classes, hidden]).
int g3_train_model_save(const G3TrainModel *tm, const char *dir, G3DType dt);
void g3_train_model_free(G3TrainModel *tm);
// tm->m's tensors point into params (F32), norms included, so tm->m runs the inference forward
// (forward.h) on the current weights at any time, e.g. between optimizer steps.
// Zeroes tm->grads (before a step's micro-batches), with every thread: a serial memset of a
// 35M-parameter model's gradients held the other thread idle for ~10 ms a step.
void g3_train_zero_grads(G3TrainModel *tm);

// Activations for one micro-batch of B sequences of T tokens, sized once.
typedef struct G3TrainCtx G3TrainCtx;
struct G3Backend;
// recompute = 1: activation checkpointing per layer (keep only each layer's input; recompute
// the layer in backward). *bytes (if non-NULL) receives the activation memory.
G3TrainCtx *g3_train_ctx_new(const G3TrainModel *tm, int B, int T, int recompute, int64_t *bytes);
void g3_train_ctx_free(G3TrainCtx *ctx);
// The same on a given backend (NULL: the CPU). On a device backend (CUDA) the activations,
// a copy of the parameters and the gradients live in device memory; every call copies the
// host parameters in (and, with backward, the gradients in and out), so the host-side loop
// above works unchanged, until the context is made resident (below). Full training of the
// next-token, loss and logits paths; LoRA, DPO and classification stay on the CPU for now
// (a clear error).
G3TrainCtx *g3_train_ctx_new_on(const G3TrainModel *tm, struct G3Backend *be, int B, int T, int recompute, int64_t *bytes);
struct G3Backend *g3_train_ctx_backend(const G3TrainCtx *ctx);
// Mixed precision: on = 1 rounds the operands of the linear layers' and the head's matrix
// products to bf16 (f32 sums, f32 weights, gradients and optimizer state, as PyTorch's bf16
// autocast), about 1.9x the f32 rate on CPUs with AVX512-BF16; 0 (the default) is exact f32.
void g3_train_ctx_set_bf16(G3TrainCtx *ctx, int on);
// LoRA dropout (PEFT's lora_dropout) for the passes that follow: probability p of dropping each
// element of an adapter's input (survivors scaled by 1 / (1 - p)), masks drawn from seed (set a
// new seed for each micro-batch; forward and backward of one call share the mask). p = 0 turns
// it off (evaluation).
void g3_train_ctx_set_lora_dropout(G3TrainCtx *ctx, float p, uint64_t seed);
// Set Block Decoding's layout (train/sbd.h) or packed examples (examples.h, mask->stride T:
// each sequence its own segments and positions): attention under this block mask (backend.h;
// the caller keeps it alive while the context uses it), every row's RoPE angles at mask->pos;
// NULL restores causal attention at positions 0..T-1. 0, or -1 (a backend without the masked
// ops, a position outside the model's range, a stride other than 0 or T).
int g3_train_ctx_set_mask(G3TrainCtx *ctx, const G3AttnMask *mask);
// The bytes g3_train_ctx_new would allocate for these settings, without allocating them
// (to report what checkpointing saves, or to pick a batch that fits).
int64_t g3_train_ctx_bytes(const G3TrainModel *tm, int B, int T, int recompute);

// A resident device context's parameter and gradient arrays (backend memory, laid out as
// tm->params / tm->grads) and its backend: 1, or 0 (not resident: use the host arrays).
int g3_train_ctx_device_arrays(G3TrainCtx *ctx, float **params, float **grads, struct G3Backend **be);

// Mean next-token cross-entropy of targets[B*T] given inputs[B*T] (a target < 0 is ignored),
// and its gradient ADDED to tm->grads multiplied by grad_scale (1/accum_steps when
// accumulating). Returns the loss, or NAN with g3_error() set.
double g3_train_forward_backward(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets, float grad_scale);
// The logits[B*T, V] of the training forward (after the final softcap), for comparing the
// training pass with inference. 0 or -1.
int g3_train_logits(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, float *logits);
// Per-sequence log-probabilities: logp[b] = sum over sequence b's targets (>= 0) of
// log p(target), in double, forward only (DPO's policy and reference terms). 0 or -1.
int g3_train_seq_logps(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets, double *logp);
// The gradient of sum_b seq_w[b] * (sequence b's summed cross-entropy), ADDED to tm->grads:
// an objective of the sequence log-probabilities passes seq_w[b] = -d objective / d logp[b].
// Returns the mean cross-entropy (informative), or NAN with g3_error() set.
double g3_train_forward_backward_seq(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets, const float *seq_w);
// Classification (--objective classify): logits[b, K] = Wc[K, C] . xf[b, last[b]] (the final
// norm's output at each sequence's last token), loss = mean cross-entropy against labels[B].
// With do_backward, the gradient (times grad_scale) is ADDED to dWc (if non-NULL) and to the
// model's trained tensors / adapter. *correct (if non-NULL): rows whose argmax is the label.
// Returns the loss, or NAN with g3_error() set.
double g3_train_classify(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *last, const int32_t *labels, int K,
                         const float *Wc, float *dWc, float grad_scale, int do_backward, int *correct);
// The loss alone (validation).
double g3_train_loss(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *inputs, const int32_t *targets);

#endif
