// train_ops.h: the training ops of the exact f32 forward/backward pass, each an
// X_forward / X_backward pair (outputs, inputs, then dimensions; gradients carry a d prefix).
// Row-wise and attention ops only: the matrix products are g3_sgemm calls in train_pass.c.
// Every backward ADDS its parameter gradients (dw, dE) and, where it says so, its input
// gradients; callers zero what they need. Dimension letters: B sequences of T tokens,
// C hidden, NH/NKV query/key-value heads of HD dims, V vocabulary.
// These are exact ops (no bf16 rounding); they are checked against double-precision finite
// differences in tests/test_ops_backward.c.
#ifndef G3_TRAIN_OPS_H
#define G3_TRAIN_OPS_H

#include <stdint.h>

#include "../backend/backend.h"  // G3AttnMask

// x[rows, C] = E[ids[r]] * scale (scale = sqrt(C), exact in f32 as the reference computes it).
void g3_embedding_forward(float *x, const int32_t *ids, const float *E, int rows, int C, float scale);
// dE[ids[r]] += dx[r] * scale (serial: ids repeat).
void g3_embedding_backward(float *dE, const float *dx, const int32_t *ids, int rows, int C, float scale);

// Gemma's RMSNorm over rows x[rows, n]: y = x * rstd * (1 + w), rstd[rows] = 1/sqrt(mean(x^2)+eps)
// (mean in double). w is the stored weight (the +1 is applied here, so params can change freely).
// y may alias x; rstd may be NULL (inference keeps nothing for backward).
void g3_rmsnorm_forward(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
// dx = (or += if accumulate) the input gradient; dw += sum over rows of dy * x * rstd (dw NULL:
// a frozen weight, no gradient).
// dx must not alias dy unless accumulate is 0.
void g3_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int rows, int n, int accumulate);
// scalar references of the two above (the fast ones: AVX2, sums in double lanes)
void g3_rmsnorm_forward_ref(float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
void g3_rmsnorm_backward_ref(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                             int rows, int n, int accumulate);

// RoPE over x[B*T, nheads*HD] in place, "rotate half" layout (d pairs with d + HD/2); the
// tables cos/sin[T, HD/2] hold the angles of each position t.
void g3_rope_forward(float *x, const float *cos, const float *sin, int B, int T, int nheads, int HD);
// The transpose rotation (by -angle), in place on dx.
void g3_rope_backward(float *dx, const float *cos, const float *sin, int B, int T, int nheads, int HD);

// Causal grouped-query attention. q[B*T, NH*HD], k/v[B*T, NKV*HD]; out[B*T, NH*HD];
// lse[B, NH, T] the log-sum-exp of each row's (scaled, capped) scores, kept for backward
// (backward recomputes the probabilities instead of storing [T, T] per head).
// Query t sees key j iff 0 <= t - j < window (window <= 0: no window). softcap 0 = none.
// Each (sequence, head) task runs blocks of query rows as single-threaded GEMMs over the
// keys the block can see. scratch: [nthreads, g3_attention_scratch(T, HD)] floats;
// nthreads bounds the OpenMP team.
long g3_attention_scratch(int T, int HD);
// The backward's last step: the per-query-head partials dkh/dvh [B*T, NH*HD] of each group
// summed into their key/value head, dk/dv [B*T, NKV*HD] (overwritten).
void g3_attention_sum_groups(float *dk, float *dv, const float *dkh, const float *dvh, int B, int T, int NH, int NKV, int HD,
                             int nthreads);
void g3_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                          float *scratch, int nthreads);
// dq, dk, dv are overwritten. dkh/dvh[B*T, NH*HD] are per-query-head partials (so heads of a
// group run in parallel without races), summed into dk/dv at the end.
void g3_attention_backward(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                           const float *q, const float *k, const float *v, const float *lse,
                           int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                           float *scratch, int nthreads);
// The direct per-row loops over visible keys: the scalar references of the two above
// (scratch [nthreads, 3T]), kept as ground truth for the tests.
void g3_attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                              int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                              float *scratch, int nthreads);
void g3_attention_backward_ref(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                               const float *q, const float *k, const float *v, const float *lse,
                               int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                               float *scratch, int nthreads);

// The same attention under a block mask (backend.h G3AttnMask, shared by the B sequences):
// per (sequence, head) the full [T, T] scores as one GEMM, the masked softmax, P . V; scratch
// [nthreads, g3_attention_masked_scratch(T)] floats. Backward recomputes P from lse.
long g3_attention_masked_scratch(int T);
void g3_attention_masked_forward(float *out, float *lse, const float *q, const float *k, const float *v, const G3AttnMask *mask,
                                 int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                 float *scratch, int nthreads);
void g3_attention_masked_backward(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                                  const float *q, const float *k, const float *v, const float *lse, const G3AttnMask *mask,
                                  int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                  float *scratch, int nthreads);
// Their scalar references: the direct per-row loops over the keys the mask shows
// (scratch [nthreads, 3T]).
void g3_attention_masked_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v, const G3AttnMask *mask,
                                     int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                     float *scratch, int nthreads);
void g3_attention_masked_backward_ref(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                                      const float *q, const float *k, const float *v, const float *lse, const G3AttnMask *mask,
                                      int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                      float *scratch, int nthreads);

// GeGLU: a = act(g) * u with act = gelu (tanh approximation, or the erf form).
void g3_geglu_forward(float *a, const float *g, const float *u, long n, int erf_form);
// dg = da * u * act'(g), du = da * act(g) (overwritten).
void g3_geglu_backward(float *dg, float *du, const float *da, const float *g, const float *u, long n, int erf_form);
// GeGLU as an epilogue of the product that makes its input (G3SgemmEpilogue, kernels.h), on
// [rows, ld] matrices: forward (dg NULL) after u = xn . Wu^T: a = gelu(g) u from the block of
// u still in cache; backward after da = dmo . Wd with dg as the product's C: a (recomputed,
// if non-NULL), dg and du from the block of da. The same bits as g3_geglu_forward/backward.
typedef struct {
    float *a, *dg, *du;
    const float *g, *u;
    int ld, erf_form;
} G3GegluEpi;
void g3_geglu_epi(void *ctx, int i0, int j0, int m, int n);
void g3_geglu_epi_prefetch(void *ctx, int i0, int j0, int m, int n);
// scalar references (libm tanhf/erff) of g3_geglu_forward/backward
void g3_geglu_forward_ref(float *a, const float *g, const float *u, long n, int erf_form);
void g3_geglu_backward_ref(float *dg, float *du, const float *da, const float *g, const float *u, long n, int erf_form);

// Softcap y = tanh(x / cap) * cap (y may alias x); backward from the output y:
// dx = dy * (1 - (y/cap)^2) (dx may alias dy).
void g3_softcap_forward(float *y, const float *x, long n, float cap);
void g3_softcap_backward(float *dx, const float *dy, const float *y, long n, float cap);

// Cross-entropy of one row of logits z[V] (before the final softcap; softcap 0 = none)
// against target, fused with the cap and the softmax: returns -log softmax(cap(z))[target]
// (in double) and writes dz = d loss / d z times dscale. dz may alias z: only one [V] row is
// ever touched, so rows can be processed in chunks for any vocabulary.
double g3_crossentropy_forward_backward(float *dz, const float *z, int target, int V, float softcap, float dscale);
double g3_crossentropy_forward_backward_ref(float *dz, const float *z, int target, int V, float softcap, float dscale);  // libm expf
// The loss alone, of logits z[V] already capped.
double g3_crossentropy_forward(const float *z, int target, int V);

#endif
