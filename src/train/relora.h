// relora.h: LoRA over a trainable-precision base, and ReLoRA (Lialin et al. 2023, "ReLoRA:
// High-Rank Training Through Low-Rank Updates").
//
// The hybrid model (G3TrainModel.hybrid): every model tensor in f32 in the training table,
// then the adapter's factors. The adapted linear weights are frozen (G3Param.frozen: no
// gradient, no optimizer update), everything else (embedding, norms, linear layers not
// targeted) is trained, as ReLoRA trains them. This is what LoRA from scratch (`train --init
// SHAPE --lora ...`) and ReLoRA (`--relora-every N`) run on; a plain `--model M --lora` run
// keeps its base as stored instead (lora.c).
//
// ReLoRA: every N steps the adapters are merged into the base (W += s B A, in f32), A is drawn
// afresh (PEFT's Kaiming-uniform) and B zeroed, so the logits do not change at the merge; the
// adapters' AdamW moments are magnitude-pruned (the smallest `prune` fraction of |m| and of
// |v| in each factor set to zero; prune = 1 is a reset), and the learning rate re-warms
// (schedule.h's jagged restarts). An optional full-rank warm start trains every weight for the
// first W steps (adapter off), then switches to the adapter.
#ifndef G3_RELORA_H
#define G3_RELORA_H

#include <stdint.h>

#include "optim.h"
#include "train.h"

// Turns a full training model (g3_train_model_new / _from: every tensor f32 in the table) into
// the hybrid one: the adapter of spec s appended to the table (A ~ PEFT's Kaiming-uniform from
// seed, B = 0), the targeted weights frozen. 0 or -1 (tm is then freed).
int g3_train_model_add_lora(G3TrainModel *tm, const G3LoraSpec *s, uint64_t seed);
// full = 1: the full-rank phase (targeted weights trained, adapter detached and frozen);
// 0: the low-rank phase. Updates o's frozen segments too (o may be NULL). A training context
// must be made again afterwards (its gradient table and adapter scratch follow the phase).
void g3_hybrid_set_full_rank(G3TrainModel *tm, G3AdamW *o, int full);

// The ReLoRA merge number gen (1, 2, ...): W += s B A for every adapted weight, A redrawn
// (from seed and gen), B = 0; then each adapter factor's moments pruned: the
// floor(prune * n) smallest |m| and, separately, |v| set to zero (prune 0 keeps them, 1
// zeroes them all). *pruned (may be NULL) receives the fraction of moments zeroed. 32-bit
// AdamW only. 0 or -1.
int g3_relora_merge(G3TrainModel *tm, G3AdamW *o, double prune, uint64_t seed, int64_t gen, double *pruned);
// The same merge for a training context resident on a device (train.h): W += s B A by the
// backend's ops where the weights are (a gemm per adapted weight, in f32: the host merge sums in
// double, so the two agree to f32 rounding, not bit for bit), A drawn on the host (the same draw)
// and sent over, B zeroed, and only the factors' moments brought over, pruned as above and sent
// back; nothing else crosses. The host copies of the merged weights stay stale until
// g3_train_ctx_sync_host. Any other context: g3_relora_merge itself. 0 or -1.
int g3_train_ctx_relora_merge(G3TrainCtx *cx, G3AdamW *o, double prune, uint64_t seed, int64_t gen, double *pruned);
// Zeroes the floor(frac * n) entries of x[n] of smallest magnitude (ties broken by index, so
// the count is exact); returns how many were zeroed.
int64_t g3_prune_smallest(float *x, int64_t n, double frac);

// Effective rank (Roy & Vetterli 2007) of d[rows, cols]: exp of the entropy of its normalised
// singular values sigma_i / sum sigma (1 for a rank-1 matrix, min(rows, cols) for one with
// equal singular values; 0 for zero). Singular values by cyclic Jacobi on the smaller Gram
// matrix, in double: Householder tridiagonalisation and implicit QL; reference = 1 takes the
// plain cyclic Jacobi rotations instead (slow, the check of the fast path).
double g3_effective_rank(const float *d, int64_t rows, int64_t cols);
double g3_effective_rank_ex(const float *d, int64_t rows, int64_t cols, int reference);
// The current weight of model tensor i as trained (the base, plus s B A if the adapter is
// attached and adapts it) into w[numel]. 0 or -1.
int g3_hybrid_weight(const G3TrainModel *tm, int i, float *w);

#endif
