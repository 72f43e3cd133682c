// analyze.h: looking inside a forward pass. Two halves:
//   - metrics on plain arrays (attention patterns, residual rows, MLP activations), each a
//     small pure function with its own test: no model needed, so they can be checked on
//     synthetic inputs with known answers;
//   - g3_analyze_run: one forward pass through the hook API (hooks.h) that captures the
//     patterns, residual stream and MLP activations of a prompt, then computes every metric
//     and the logit lens; plus the induction run on a repeated random sequence.
// Definitions are those of docs/analyze.md. Patterns are full squares [T][T] (row q = query
// position q, column k = key position k, zero where masked), so metrics never need to know
// about sliding windows; an image's soft tokens see each other both ways, so their rows also
// hold keys after the query (the metrics read keys 0..q). Query position 0 sees only itself (entropy 0, all mass on <bos>), so
// the per-query means run over q = 1..T-1.
// Not here: printing (cmd_analyze.c), JSON and HTML (report.h).
#ifndef G3_ANALYZE_H
#define G3_ANALYZE_H

#include <stdint.h>

#include "model/forward.h"

// Attention distance histogram buckets: 0, 1, 2-3, 4-7, ..., [2^(b-1), 2^b), the last open.
enum { G3_AN_NBUCKET = 16 };
// |mlp.hook_post| below this times the layer's RMS counts as inactive.
#define G3_AN_SPARSE_REL 1e-3

// ---- metrics on one attention row (p over keys 0..n-1) ----
double g3_an_entropy(const float *p, int n);                  // -sum p log p (nats), 0 log 0 = 0
double g3_an_distance(const float *p, int q);                 // sum_k p[k] (q - k), keys 0..q
int g3_an_bucket(int d);                                      // histogram bucket of distance d >= 0
double g3_an_js(const float *p, const float *r, int n);       // Jensen-Shannon divergence (nats, <= log 2)

// ---- one head's pattern [T][T] ----
typedef struct {
    double entropy;    // mean over queries 1..T-1 of the row entropy
    double distance;   // mean over queries of sum_k p(q,k) (q - k)
    double bos;        // mean over queries of p(q, 0)
    double prev;       // mean over queries of p(q, q-1)
    double induction;  // from the induction run (g3_an_induction), NAN until set
    double hist[G3_AN_NBUCKET];  // mean over queries of the mass at each distance bucket (sums to 1)
} G3AnHead;
void g3_an_head(G3AnHead *out, const float *pat, int T);
// Induction score of a pattern over [bos, r1..rn, r1..rn] (T = 2n + 1): mean over the second
// copy's positions q = n+i (i = 1..n) of p(q, i+1), the token after the first occurrence.
double g3_an_induction(const float *pat, int n);
// Mean Jensen-Shannon divergence between two heads' patterns over queries 1..T-1.
double g3_an_js_heads(const float *pa, const float *pb, int T);

// ---- residual stream and MLP ----
double g3_an_mean_norm(const float *x, int rows, int cols);   // mean over rows of the L2 norm
// Fraction of x's n values with |x| < rel * RMS(x); 0 when x is all zero.
double g3_an_sparsity(const float *x, long n, double rel);
// Eigenvalues (ascending) of the symmetric n x n matrix a (double, destroyed): Householder
// tridiagonalisation then implicit QL. 0 or -1 (no convergence).
int g3_an_sym_eigvals(double *out, double *a, int n);
// Effective rank (Roy & Vetterli 2007) of the rows x cols matrix x: exp of the entropy of the
// singular values normalised to sum 1. Singular values come from the eigenvalues of the
// smaller Gram matrix (x x^T or x^T x) in double. 1 <= result <= min(rows, cols); 0 if x = 0;
// -1 when memory runs out (g3_error set).
double g3_an_effective_rank(const float *x, int rows, int cols);

// ---- a whole analysis ----
typedef struct {
    int32_t id;
    float logit, prob;  // prob: softmax over the whole vocabulary
} G3AnTop;

typedef struct {
    double resid_norm;   // mean L2 norm of hook_resid_post rows (all positions)
    double resid_ratio;  // resid_norm / the previous layer's (layer 0: / the embedding's)
    double bos_norm;     // L2 norm of the <bos> row
    double mlp_sparsity; // g3_an_sparsity of mlp.hook_post [T][F], rel G3_AN_SPARSE_REL
    double erank;        // g3_an_effective_rank of resid_post rows 1..T-1 (<bos> left out)
    double js;           // mean JS divergence over pairs of this layer's heads
    double entropy, distance, bos, prev, induction;  // means over the layer's heads
} G3AnLayer;

typedef struct {     // means over the layers of one kind (sliding or global)
    int layers;
    double entropy, distance, bos, prev, induction, js, resid_ratio, mlp_sparsity, erank;
} G3AnKind;

typedef struct {
    int T, L, NH, C, F, V, K;  // positions, layers, query heads, hidden, MLP width, vocab, top-k
    int sliding_window;
    uint8_t sliding[G3_MAX_LAYERS];
    int32_t *ids;          // [T]
    float *pattern;        // [L][NH][T][T]
    float *resid;          // [L+1][T][C]: hook_embed, then each layer's hook_resid_post
    double embed_norm;     // mean L2 norm of hook_embed rows
    G3AnHead *heads;       // [L][NH]
    G3AnLayer *layers;     // [L]
    double *js;            // [L][NH][NH] JS divergence between head pairs (symmetric, 0 diagonal)
    G3AnKind kind[2];      // [0] sliding, [1] global
    double js_all;         // mean JS over all within-layer head pairs of the model
    G3AnTop *lens;         // [L+1][T][K]: embed, then layer 0..L-1; rows before lens_from unset
    int lens_from;         // first position the logit lens covers
    // the induction run
    int ind_n;             // n of [bos, r1..rn, r1..rn]
    int32_t *ind_ids;      // [2n+1]
    float *ind_pattern;    // [L][NH][2n+1][2n+1]
    double seconds;        // wall time of the passes and the analysis
} G3Analysis;

typedef struct {
    int top_k;        // K tokens per logit-lens cell
    int fast;         // bf16 activations in the matrix products (as g3_state_new)
    int lens_last;    // logit lens on the last lens_last positions (0: every position)
    int induction_n;  // n of the repeated random sequence (0: no induction run)
    uint64_t seed;    // of the random sequence
    const uint8_t *skip_ids;  // [V] or NULL: ids the random sequence must not use (special tokens)
    // Called with the prompt's state before its prefill (NULL: nothing): `analyze --image`
    // registers the images' soft tokens there (vision.h g3_vision_attach). 0 or -1.
    int (*prepare)(void *ctx, G3State *s, const int32_t *ids, int T);
    void *prepare_ctx;
} G3AnOptions;

// Runs ids[0..T) through m with hooks capturing patterns, residual stream and MLP
// activations, and fills a with every metric and the logit lens. 0 or -1 (g3_error set).
int g3_analyze_run(G3Analysis *a, const G3Model *m, const int32_t *ids, int T, const G3AnOptions *o);
void g3_analysis_free(G3Analysis *a);
// Bytes g3_analyze_run keeps for T positions (patterns and residual rows dominate).
int64_t g3_analyze_bytes(const G3Config *c, int T, int induction_n);

#endif
