// capacity.h: the memorization-capacity experiment of Morris et al. 2025 ("How much do
// language models memorize?", arXiv:2505.24832) on Gemma 3 shapes: a model trained on N
// uniform random token sequences until its memorization stops growing, and what it then
// knows about them, in bits.
//
// Bit accounting. The data are sequences of T tokens drawn uniformly from V ids, so each
// holds T * log2(V) bits (64 * 11 = 704 for the defaults) and the uniform reference codes
// each in exactly that. The model reads a start token first (id V: one extra embedding row
// no data token uses, so the model's vocabulary is V + 1) and then predicts every one of the
// T data tokens, so all T positions are scored:
//   nll_bits(x)   = sum_t -log2 p(x_t | start, x_<t)        (the model's code length for x)
//   memorized(x)  = max(0, T log2 V - nll_bits(x))          (what the model saves over uniform)
// summed over the N training sequences. The softmax runs over all V + 1 rows, so probability
// the model puts on the start token counts against it: never an overstatement.
//
// Uses the training engine as a library (train/train.h: the model, the pass; optim.h:
// AdamW). Not here: grids of cells, processes, printing (cli/cmd_capacity.c), the HTML
// report (capacity_html.c).
#ifndef G3_CAPACITY_H
#define G3_CAPACITY_H

#include <stdint.h>
#include <stdio.h>

#include "../model/config.h"
#include "../train/train.h"

typedef struct {
    int layers, width;     // the model: L x C (config: g3_cap_config)
    int vocab, seq_len;    // data: V ids (model vocabulary V + 1), T tokens a sequence
    int64_t nseq;          // N training sequences
    int64_t nheld;         // held-out sequences (held-out loss, membership inference)
    uint64_t seed;         // training data (and, through it, init and batch order)
    uint64_t heldout_seed; // held-out data: another stream
    int bf16;              // matrix products with bf16 operands (f32 master weights and state)
    int batch;             // sequences a step
    double lr, wd;         // AdamW, constant after a linear warmup
    double beta1, beta2;
    int64_t warmup;        // steps
    int64_t max_steps;     // the step cap: a cell that reaches it did not converge
    int64_t eval_steps;    // evaluate at the first epoch end at least this many steps after the last
    // Convergence: memorization has stopped growing when the best total of memorized bits
    // gained less than min_gain (relative) over the last max(window_min, window_frac * steps)
    // steps of the current learning rate. The first lr_drops times that happens, the learning
    // rate is multiplied by lr_drop_factor and training goes on (a noisy plateau at a high rate
    // is not the capacity); the next time, the cell has converged.
    double min_gain, window_frac;
    int64_t window_min;
    int lr_drops;
    double lr_drop_factor;
    // cosine: instead of the drops, the learning rate follows a cosine from lr to 0 over exactly
    // max_steps (after the warmup); the cell has converged when the memorized bits grew less
    // than min_gain over the last window_frac of the steps (the tail of the decay).
    int cosine;
    const char *save_dir;  // if set: write the trained model there (Hub format, f32)
    const char *device;    // "cuda": train on the GPU (a backend of its own per cell); NULL or "cpu": the CPU
} G3CapSpec;

// One evaluation during training.
typedef struct {
    int64_t step;
    double epoch;
    double train_loss;     // nats a token, training sequences (the evaluated model, no dropout)
    double heldout_loss;   // nats a token, held-out sequences
    double memorized_bits; // total over the training sequences
    double lr;             // the learning rate of the steps before it
} G3CapPoint;

typedef struct {
    int64_t params;              // every parameter of the model (tied embedding counted once)
    double bits_per_sequence;    // T log2 V
    double memorized_bits;       // sum over the N sequences (at the best evaluation)
    double memorized_fraction;   // memorized_bits / (N * bits_per_sequence)
    double bits_per_param;       // memorized_bits / params
    double train_loss, heldout_loss;  // nats a token at the end
    double mia_f1;               // membership inference F1 (loss threshold at the pooled median)
    int converged;               // 1: memorization stopped growing (or all bits memorized)
    int grokking;                // held-out loss improved well after train loss saturated
    char stop_reason[96];
    int64_t steps;
    double epochs, seconds;
    G3CapPoint *curve;           // [ncurve] evaluations in order
    int ncurve, capcurve;
} G3CapResult;

// The defaults (documented in docs/capacity.md).
void g3_cap_spec_defaults(G3CapSpec *s);
// Checks a spec's numbers; -1 with a message naming the field.
int g3_cap_spec_check(const G3CapSpec *s);
// The Gemma 3 shape of a grid cell: `layers` x `width`, one KV head, tied embedding of
// vocab + 1 rows, head_dim max(16, width / 4) and width / head_dim query heads (4 for width
// >= 64, as Gemma 3 270M / 1B), MLP 4 x width, QK-norm, Gemma 3's 5 local : 1 global layers
// with window 512 (longer than any sequence here, so every layer sees the whole sequence).
int g3_cap_config(G3Config *c, int layers, int width, int vocab, int seq_len);
// Parameters of that shape.
int64_t g3_cap_params(int layers, int width, int vocab, int seq_len);
// n sequences of T ids uniform in [0, V), a pure function of (seed, sequence, position).
void g3_cap_tokens(int32_t *out, int64_t n, int T, int V, uint64_t seed);
// Code lengths nll_bits[n] of n sequences (seqs [n, T]) under the model, through the
// training forward and the backend's loss op in batches of B sequences (ctx made for B x T;
// on a GPU only each sequence's summed loss comes back); the start token is id V.
int g3_cap_nll_bits(G3TrainModel *tm, G3TrainCtx *ctx, int B, const int32_t *seqs, int64_t n, int T, int V, double *nll_bits);
// sum_i max(0, bits_per_seq - nll_bits[i]).
double g3_cap_memorized(const double *nll_bits, int64_t n, double bits_per_seq);
// F1 of "member iff nll <= threshold" over members m[nm] and non-members h[nh], threshold
// the median of the pooled scores (half called members: chance is 0.5, perfect 1.0).
double g3_cap_mia_f1(const double *m, int64_t nm, const double *h, int64_t nh);

// Progress during a run: called at each evaluation.
typedef void (*G3CapProgress)(void *user, const G3CapSpec *s, const G3CapResult *r, const G3CapPoint *p);
// Trains one cell to its convergence criterion (or the step cap) and measures it.
// 0, or -1 with the message set. Free r with g3_cap_result_free.
int g3_cap_run(const G3CapSpec *s, G3CapResult *r, G3CapProgress progress, void *user);
void g3_cap_result_free(G3CapResult *r);
// The cell as one JSON object (no trailing newline): the spec, the result and its curve.
void g3_cap_cell_json(FILE *f, const G3CapSpec *s, const G3CapResult *r);

#endif
