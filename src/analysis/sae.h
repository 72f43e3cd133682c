// sae.h: sparse autoencoders over one hook site's activations: JumpReLU (Gemma Scope's),
// ReLU and TopK; loading Gemma Scope 2 (params.safetensors + config.json), Gemma Scope 1
// (params.npz) and SAELens (sae_weights.safetensors + cfg.json) folders, saving in Gemma
// Scope 2's layout; encoding, decoding, and training (sae_train.c). The SAE is held in f32
// whatever the file stores. Not here: running the model (the command and the Python package
// capture the site through hooks and hand the rows over).
//
//   pre = (x - b_dec if apply_b_dec_to_input) W_enc + b_enc       [n][d_sae]
//   f   = JumpReLU: pre > threshold ? pre : 0;   ReLU: max(pre, 0);
//         TopK: the k largest of pre (ties to the lower index), ReLU'd, others 0
//   x^  = f W_dec + b_dec                                           [n][d_model]
#ifndef G3_SAE_H
#define G3_SAE_H

#include <stdint.h>

#include "../model/config.h"
#include "../model/hooks.h"

typedef enum { G3_SAE_JUMPRELU, G3_SAE_RELU, G3_SAE_TOPK } G3SaeKind;

typedef struct {
    G3SaeKind kind;
    int d_model, d_sae;
    int k;                     // TopK: features kept per row
    int apply_b_dec_to_input;  // SAELens' option: encode x - b_dec
    char site[96];             // the hook site its config names (our TransformerLens name), or ""
    char format[24];           // "gemma-scope-2", "gemma-scope-1", "saelens" (where it was loaded from)
    float *w_enc;              // [d_model][d_sae]
    float *b_enc;              // [d_sae]
    float *threshold;          // [d_sae] (JumpReLU; zeros otherwise)
    float *w_dec;              // [d_sae][d_model]
    float *b_dec;              // [d_model]
} G3Sae;

// Zeroed weights of the given size (kind JumpReLU).
int g3_sae_alloc(G3Sae *s, int d_model, int d_sae);
void g3_sae_free(G3Sae *s);
// A folder holding params.safetensors (Gemma Scope 2), params.npz (Gemma Scope 1) or
// sae_weights.safetensors (SAELens), or one of those files. Tensor names in either spelling
// (w_enc / W_enc); every shape is checked against the others and every value must be finite
// (messages name the file and tensor). 0, or -1.
int g3_sae_load(G3Sae *s, const char *path);
// Writes dir/params.safetensors (w_enc, b_enc, threshold, w_dec, b_dec as F32) and
// dir/config.json (architecture, d_model, width, hook_name, and extra: a JSON object body of
// further members, may be NULL), each atomically. The folder is created if needed.
int g3_sae_save(const G3Sae *s, const char *dir, const char *extra);
// The SAE fits the site: its d_model is the site's width for this model. -1 with a message
// naming both otherwise (or for an attention score/pattern site, which has no fixed width).
int g3_sae_check_site(const G3Sae *s, const G3Config *c, const char *site_name);

// f[n][d_sae] from x[n][d_model].
int g3_sae_encode(const G3Sae *s, const float *x, int n, float *f);
// x[n][d_model] from f[n][d_sae] (sums only the non-zero features: f is sparse).
void g3_sae_decode(const G3Sae *s, const float *f, int n, float *x);
// Non-zero entries of f[n][d_sae] per row, averaged.
double g3_sae_l0(const float *f, int n, int d_sae);

// ---- training (sae_train.c) ----
//
// JumpReLU as Gemma Scope trains it (Rajamanoharan et al. 2024, "Jumping Ahead"): loss =
// mean ||x - x^||^2 + lambda * P(L0), L0 the mean count of active features per row; the
// threshold (held as log threshold) learns through the straight-through estimator with a
// rectangle kernel of bandwidth eps: dH(z - t)/dt = -K((z - t)/eps)/eps, dJumpReLU/dt =
// -t K(.)/eps. P is Gemma Scope 2's quadratic penalty toward a target, (L0/target - 1)^2, or
// with target 0 Gemma Scope 1's plain L0. TopK instead keeps the k largest (no penalty).
// Inputs are scaled by a constant so that their mean squared norm is 1 (estimated from the
// first batch; folded back into the saved weights), decoder rows are kept at unit norm (the
// gradient's component along each row is removed before the step), Adam (beta1 0, beta2
// 0.999 as in the paper, by default).
typedef struct {
    G3SaeKind kind;      // JUMPRELU or TOPK
    int d_model, d_sae;
    int k;               // TopK
    double l0_target;    // JumpReLU: the L0 to aim at (0: plain L0 penalty)
    double lambda;       // sparsity coefficient
    double lr, beta1, beta2;
    double bandwidth;    // eps of the STE
    double init_threshold;  // 0: from the first batch, each feature firing on l0_target/d_sae of it
    uint64_t seed;
} G3SaeTrainConfig;

// Defaults (sae_train.c): JumpReLU, target L0 32, lambda 1, lr 5e-4, Adam (0, 0.999),
// bandwidth 0.001, thresholds from the first batch.
G3SaeTrainConfig g3_sae_train_defaults(void);

typedef struct {
    double loss, mse;    // mse: mean over rows of ||x - x^||^2 / d_model, in the input's units
    double fvu;          // fraction of variance unexplained (||x - x^||^2 / ||x - mean x||^2)
    double l0;           // mean active features per row
    double lambda;
} G3SaeStepStats;

typedef struct G3SaeTrainer G3SaeTrainer;
G3SaeTrainer *g3_sae_trainer_new(const G3SaeTrainConfig *c);
void g3_sae_trainer_free(G3SaeTrainer *t);
// One Adam step on x[n][d_model] (n rows; buffers grow to the largest n seen).
int g3_sae_train_step(G3SaeTrainer *t, const float *x, int n, G3SaeStepStats *st);
// The SAE in the input's units (the normalization folded in): a copy the caller frees with
// g3_sae_free.
int g3_sae_trainer_export(G3SaeTrainer *t, G3Sae *out);
// Per feature, the rows seen since the trainer started on which it fired ([d_sae]); and the
// rows seen. A feature that never fired is dead. NULL if a device's counts cannot be read.
const int64_t *g3_sae_trainer_fired(G3SaeTrainer *t, int64_t *rows);
// Trains on a device backend (a CUDA one; NULL or the CPU: here) from the first step on
// (JumpReLU only; that first step runs on the host, as it sets the input scale and the
// thresholds). Export and firing counts copy the device's state back.
typedef struct G3Backend G3Backend;
int g3_sae_trainer_use(G3SaeTrainer *t, G3Backend *be);

#endif
