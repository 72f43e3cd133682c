// g3cuda.h: the CUDA kernels of gemma3.c behind a plain C interface (no CUDA types here, so
// gcc-built code and tests include it as is). This is the groundwork of issue 16: each entry
// point is one op of the backend table of issue 14 (src/backend/backend.h), computed on the
// GPU over device pointers, queued on the context's stream. It is built only with `make
// CUDA=1` (G3_CUDA is then defined); nothing in the CPU build refers to it.
//
// Conventions, as kernels.h: output first, dimensions last; T rows of activations, K the
// reduced dimension, N output features; weights [N, K] row-major in their stored type (F32,
// BF16, F16), used in place. Activations are f32. Norm weights are stored WITHOUT Gemma's 1
// (the op adds it). Every function returns 0, or -1 with g3_errorf naming the op and what
// was wrong; launches are asynchronous, so a fault inside a kernel shows at the next
// g3cu_sync (or download), which reports it.
#ifndef G3_CUDA_H
#define G3_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {  // dtype.h too: its functions are C's
#endif

#include "../../tensor/dtype.h"

typedef struct G3Cuda G3Cuda;

// EXACT: f32 products and sums (bf16/f16 weights widened exactly; cuBLAS with TF32 off), the
// GPU twin of the CPU's exact mode. FAST: large products on bf16 tensor cores (activations
// rounded to bf16, f32 accumulate), the twin of the CPU's fast mode; small-T products are
// exact in both modes (they are bound by reading the weights, not by arithmetic).
typedef enum { G3CU_EXACT = 0, G3CU_FAST = 1 } G3CuMode;

// ---- device and memory ----
// Number of usable CUDA devices; 0 when there is no GPU or no driver (never an error).
int g3cu_device_count(void);
// A context on device dev: its own stream, cuBLAS handle and scratch. NULL + g3_errorf.
G3Cuda *g3cu_new(int dev);
void g3cu_delete(G3Cuda *cu);
const char *g3cu_device_name(const G3Cuda *cu);
int g3cu_sm_count(const G3Cuda *cu);
// Free and total device memory in bytes (-1 + g3_errorf on failure).
int g3cu_mem_info(G3Cuda *cu, size_t *free_bytes, size_t *total_bytes);
// The context's cudaStream_t, for callers that capture CUDA graphs or time with events.
void *g3cu_stream(G3Cuda *cu);
// Device memory; NULL + g3_errorf naming what was asked and what is free.
void *g3cu_malloc(G3Cuda *cu, size_t bytes);
void g3cu_free(G3Cuda *cu, void *p);
// Host -> device (src may be reused on return), device -> host (complete on return, after
// everything queued before it), device -> device (queued).
int g3cu_upload(G3Cuda *cu, void *dst, const void *src, size_t bytes);
int g3cu_download(G3Cuda *cu, void *dst, const void *src, size_t bytes);
int g3cu_copy(G3Cuda *cu, void *dst, const void *src, size_t bytes);
int g3cu_memset(G3Cuda *cu, void *dst, int byte, size_t bytes);
// Waits for everything queued; reports a fault of any kernel since the last sync.
int g3cu_sync(G3Cuda *cu);
// Makes sure the context's scratch holds at least `bytes` (ops grow it on demand, but not
// while a CUDA graph is being captured: reserve before capturing).
int g3cu_reserve(G3Cuda *cu, size_t bytes);

// ---- matrix products ----
// y[T, N] = x[T, K] . w[N, K]^T, w of type wt. Few rows (T <= 4 in FAST mode, T <= 16 in
// EXACT): the weight-streaming kernel (each weight byte read once for all T rows, 16-byte
// loads), exact; more: cuBLAS in the given mode.
int g3cu_linear(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, G3CuMode mode);
// The two paths on their own (tests and benchmarks compare them): the streaming kernel
// for any T (in passes of 16 rows past 16), and the cuBLAS path for any T.
int g3cu_linear_stream(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N);
// n (1 to 3) products of the same x[T, K] in one launch where the streaming kernel serves T:
// y[i][T, N[i]] = x . w[i]^T, all weights of type wt: n g3cu_linear calls, up to rounding (the
// warps that split a row are chosen for the whole launch).
int g3cu_linear_multi(G3Cuda *cu, int n, float *const *y, const float *x, const void *const *w, G3DType wt, int T, int K,
                      const int *N, G3CuMode mode);
// a[T, N] = gelu(x . wg^T) * (x . wu^T), both products in one pass where the streaming kernel
// serves T (two g3cu_linear and g3cu_geglu up to rounding); u [T, N] is scratch otherwise.
int g3cu_linear_geglu(G3Cuda *cu, float *a, float *u, const float *x, const void *wg, const void *wu, G3DType wt, int T,
                      int K, int N, int erf_form, G3CuMode mode);
int g3cu_linear_blas(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, G3CuMode mode);
// o[n] = x[n] rounded to bf16 (to nearest even, as the CPU's g3_f32_to_bf16).
int g3cu_round_bf16(G3Cuda *cu, uint16_t *o, const float *x, long n);
// x's rows (rows x len floats, contiguous) rounded into rows `pitch` bf16 values apart (the
// values past len are left as they are).
int g3cu_round_bf16_pitch(G3Cuda *cu, uint16_t *o, long pitch, const float *x, long rows, long len);
// o[r][c] = x[r][c] for rows x len floats, rows op and xp floats apart.
int g3cu_copy_rows(G3Cuda *cu, float *o, long op, const float *x, long xp, long rows, long len);
// C[M, N] (+)= op(A) . op(B), row-major f32 as g3_sgemm: A [M, K] (ta = 0) or [K, M] (ta = 1),
// B [K, N] (tb = 0) or [N, K] (tb = 1). FAST rounds A and B to bf16 (training's bf16 mode).
int g3cu_gemm(G3Cuda *cu, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
              G3CuMode mode);
// The same product over operands already in bf16 (bits as g3cu_round_bf16 writes them):
// training's bf16 mode, whose operands the backend rounds once and reuses (backend_cuda.cu).
int g3cu_gemm_bf16(G3Cuda *cu, int ta, int tb, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                   int accumulate);
// The same with the row pitches (elements) of A, B and C given (>= their row lengths).
int g3cu_gemm_bf16_ld(G3Cuda *cu, int ta, int tb, int M, int N, int K, const uint16_t *A, long lda, const uint16_t *B, long ldb,
                      float *C, long ldc, int accumulate);

// ---- row-wise ops ----
// y[rows][n] = x / sqrt(mean(x^2) + eps) * (1 + w); y may alias x.
int g3cu_rmsnorm(G3Cuda *cu, float *y, const float *x, const float *w, int rows, int n, float eps);
// The same, also writing rstd[rows] = 1 / sqrt(mean(x^2) + eps) when rstd is non-NULL (backward).
int g3cu_rmsnorm_rstd(G3Cuda *cu, float *y, float *rstd, const float *x, const float *w, int rows, int n, float eps);
// The residual step between sublayers, fused: x += rmsnorm(t, w_post); then, if w_next,
// xn = rmsnorm(x, w_next) (the next sublayer's input norm). t may alias xn.
int g3cu_add_rmsnorm(G3Cuda *cu, float *x, float *xn, const float *t, const float *w_post, const float *w_next, int rows,
                     int n, float eps);
// cos/sin[rows][hd/2] for positions pos[rows] (device): angle = pos / scale * base^(-2d/hd), in
// double, as g3_rope_angles.
int g3cu_rope_tables(G3Cuda *cu, float *cos, float *sin, const int32_t *pos, int rows, int hd, double base, double scale);
// Per head of q[rows][nh * hd] and k[rows][nkv * hd]: RMSNorm with (1 + qw) / (1 + kw) (QK-norm;
// skipped where the weight is NULL), then RoPE "rotate half" (dim d pairs with d + hd/2) by
// cos/sin[rows][hd/2] (skipped when cos is NULL). One pass over q and k; nkv may be 0 (k NULL)
// to treat one tensor alone.
int g3cu_qk_norm_rope(G3Cuda *cu, float *q, float *k, const float *qw, const float *kw, const float *cos, const float *sin,
                      int rows, int nh, int nkv, int hd, float eps);
// g[i] = gelu(g[i]) * u[i] (tanh approximation, or the erf form).
int g3cu_geglu(G3Cuda *cu, float *g, const float *u, long n, int erf_form);
// x[rows][C] = E[tokens[r]] * scale (E [vocab, C] of type et; a token outside [0, vocab)
// gives a zero row: the host checks ids before they get here).
int g3cu_embed(G3Cuda *cu, float *x, const void *E, G3DType et, const int32_t *tokens, int rows, int C, int vocab,
               float scale);
int g3cu_add(G3Cuda *cu, float *y, const float *x, long n);              // y += x
int g3cu_axpy(G3Cuda *cu, float *y, float alpha, const float *x, long n);  // y += alpha * x
int g3cu_softcap(G3Cuda *cu, float *x, long n, float cap);              // x = tanh(x / cap) * cap
// out[r] = the first index of the largest of x[r][0 .. n) (as the CPU's argmax).
int g3cu_argmax(G3Cuda *cu, int32_t *out, const float *x, int rows, int n);

// ---- the sampler's heavy part (sample.cu; backend.h sample_top_k says what it computes) ----
// One row: the k best wanted, after the penalties over window tokens win[w0 .. w0 + nw)
// (backend.h's G3SampleRow, field for field).
typedef struct {
    int32_t k, w0, nw;
    float repeat, presence, frequency;
} G3CuSampleRow;
enum { G3CU_TOPK_MAX = 256 };
typedef struct G3CuSampler G3CuSampler;  // its device and page-locked buffers, grown on demand
G3CuSampler *g3cu_sampler_new(G3Cuda *cu);
void g3cu_sampler_free(G3CuSampler *s);
// x[rows][n] in device memory; rp, win, ids, vals, bad in host memory; synchronous.
int g3cu_sample_top_k(G3CuSampler *s, const float *x, int rows, int n, const G3CuSampleRow *rp, const int32_t *win, int nwin,
                      int kmax, int32_t *ids, float *vals, int32_t *bad);

// ---- attention over the KV cache ----
// The cache of one layer: kc/vc [slots][nkv][cap][hd] f32; position p of a slot lives at ring
// index p % cap (cap = the context on global layers, min(context, window) on sliding ones),
// as on the CPU. One row of a call: the slot it belongs to, its position, and its segment
// (the call's rows row0 .. row0 + n - 1 are the segment's consecutive positions). Keys
// before the segment come from the cache, the segment's own from this call's k/v rows.
typedef struct {
    int32_t seq, pos, row0, n;
} G3CuRow;
typedef struct {
    int nh, nkv, hd;  // query heads, kv heads, head dim (hd a multiple of 32, at most 256)
    int cap;          // positions per (slot, kv head) in the cache
    int window;       // sliding window (keys p - window < kp <= p); 0: global (causal only)
    float scale;      // score scale (1 / sqrt(query_pre_attn_scalar))
    float softcap;    // scores = tanh(s / softcap) * softcap when > 0 (Gemma 2)
} G3CuAttn;
// out[rows][nh * hd] for q[rows][nh * hd], k/v[rows][nkv * hd], rows described by meta[rows]
// (device memory). Split-K over the keys (flash-decoding): max_keys, the most keys a row sees
// (or a bound on it: the context, for a graph replayed at growing lengths), sets the split.
int g3cu_attn_decode(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                     const float *vc, const G3CuRow *meta, int rows, int max_keys, const G3CuAttn *a);
// The same, then the rows' keys and values appended to kc_app / vc_app (the cache kc / vc) as
// g3cu_kv_append does, by the merge kernel where there is one (one launch less a layer).
int g3cu_attn_decode_append(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                            const float *vc, float *kc_app, float *vc_app, const G3CuRow *meta, int rows, int max_keys,
                            const G3CuAttn *a);
// The same for one segment of n rows (slot seq, positions pos0 .. pos0 + n - 1, the call's rows
// row0 ..), tiled over query rows and keys (prefill): q/k/v/out point at the call's row 0.
int g3cu_attn_prefill(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                      const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a);
// The same, also writing each row's log-sum-exp of its scores to lse[h * n + i] (training:
// B sequences from position 0 run as B segments without a cache; kc, vc unused).
int g3cu_attn_prefill_lse(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, const float *kc,
                          const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a);
// The same over B sequences of n rows from position 0 in one launch (training's forward):
// sequence b's rows start at row b * n, its lse at lse + b * nh * n; the same bits as B calls
// of g3cu_attn_prefill_mma(row0 b * n, seq b, pos0 0, no cache).
int g3cu_attn_prefill_mma_batch(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, int B, int n,
                                const G3CuAttn *a);
// The prefill kernel on the bf16 tensor cores (attn_mma.cu): q, k, v rounded to bf16, f32
// accumulation and softmax; the fast mode's (head dims 64, 128, 256; lse may be NULL).
int g3cu_attn_mma_supported(int hd);
int g3cu_attn_prefill_mma(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, const float *kc,
                          const float *vc, int row0, int n, int seq, int pos0, const G3CuAttn *a);
// Appends the call's k/v rows to the cache (after attention has read it; a segment longer
// than cap keeps its newest cap positions).
int g3cu_kv_append(G3Cuda *cu, float *kc, float *vc, const float *k, const float *v, const G3CuRow *meta, int rows,
                   const G3CuAttn *a);

// ---- training (train_ops.cu, attn_train.cu) ----
// RMSNorm's backward: dx (+)= the input gradient; dw (if non-NULL) += sum over rows of
// dy * x * rstd (per-block partials added atomically: the order of addition varies).
int g3cu_rmsnorm_backward(G3Cuda *cu, float *dx, float *dw, const float *dy, const float *x, const float *w,
                          const float *rstd, int R, int n, int accumulate);
// RoPE's backward in place on dx[R][nh * hd] (rotation by the negative angles of cos/sin[R][hd/2]).
int g3cu_rope_backward(G3Cuda *cu, float *dx, const float *cos, const float *sin, int R, int nh, int hd);
// dg = da u gelu'(g), du = da gelu(g), and a = gelu(g) u when a is non-NULL; da may alias dg.
int g3cu_geglu_backward(G3Cuda *cu, float *a, float *dg, float *du, const float *da, const float *g, const float *u, long n,
                        int erf_form);
// dE[ids[r]] += dx[r] * scale, each id's rows added in row order (deterministic, no atomics):
// the ids come to the host (a wait for the device), are grouped there, and go back.
int g3cu_embed_backward(G3Cuda *cu, float *dE, const float *dx, const int32_t *ids, int R, int C, float scale);
// The same in two halves, for a caller that has the ids on the host already: the grouping
// (host code) of hid[R] into g[3R + 1] = the rows ordered by id then row [R], the distinct ids
// [nu], where each one's rows start [nu + 1]; returns nu. Then the launch over g copied to the
// device (d), queued without waiting.
int g3cu_embed_group(int32_t *g, const int32_t *hid, int R);
int g3cu_embed_backward_grouped(G3Cuda *cu, float *dE, const float *dx, const int32_t *d, int nu, int R, int C, float scale);
// Cross-entropy of rows z[R][V] (softcap cap first when > 0) against targets (< 0: ignored,
// loss 0): loss[r] (double, device) = logsumexp - z[target]; with backward, z becomes
// d loss / d z * dscale (ignored rows zero), and zb[R][V] (when not NULL) that gradient
// rounded to bf16 (as g3cu_round_bf16 would round z afterwards).
int g3cu_cross_entropy(G3Cuda *cu, double *loss, float *z, uint16_t *zb, long zb_pitch, const int32_t *targets, int R, int V,
                       float cap, float dscale, int backward);
// Causal GQA attention over B sequences of T rows (backend.h's attention), any even head dim
// up to 256: out[B*T][NH*HD], lse[B][NH][T]; and its backward (dq, dk, dv overwritten; uses
// B*NH*T floats of the context's scratch). tc: the tensor-core kernels where they take the
// head dim (bf16 operands, f32 accumulation: training's bf16 mode; the backward's needs out).
int g3cu_attention_train(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                         int NH, int NKV, int HD, int window, float scale, float softcap, int tc);
int g3cu_attention_train_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *dout, const float *out, const float *q,
                                  const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD,
                                  int window, float scale, float softcap, int tc);
// The backward on the tensor cores (attn_mma_train.cu; head dims 64 and 128), D = dout . out
// per row [B][NH][T] computed already.
int g3cu_attn_mma_train_supported(int hd);
int g3cu_attn_mma_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *D, const float *dout, const float *q,
                           const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD, int window,
                           float scale, float softcap);
// One AdamW step over n parameters with f32 moments (optim.h's formula, the same operations
// in the same order as the CPU: the same bits); with pb (may be NULL), pb[i] = the new p[i]
// rounded to bf16 (as g3cu_round_bf16) in the same pass.
typedef struct {
    float b1, b2, omb1, omb2, step_size, inv_sqrt_bc2, eps, scale;
} G3CuAdamW;
int g3cu_adamw(G3Cuda *cu, float *p, uint16_t *pb, const float *g, float *m, float *v, long n, const G3CuAdamW *k,
               float decay_mul);
// The same step with 8-bit moments (kernels/adamw8.h g3_adamw8_blocks, the same bits) over
// one tensor's n parameters: codes mq, vq [n], absmax mmax, vmax [ceil(n / 256)], tables the
// device copy of g3_adamw8_tables() ([4][256] floats); pb as above.
int g3cu_adamw8(G3Cuda *cu, float *p, uint16_t *pb, const float *g, uint8_t *mq, uint8_t *vq, float *mmax, float *vmax, long n,
                const float *tables, const G3CuAdamW *k, float decay_mul);
// *out = sum of x[i]^2 in double (waits for the stream).
int g3cu_sumsq(G3Cuda *cu, double *out, const float *x, long n);

// ---- LoRA training and packed rows (lora_ops.cu, attn_mask.cu; issue 19) ----
// LoRA's scale and dropout over n elements (backend.h dropout): y[e] = keep ? x[e] * scale : 0,
// or (accumulate) y[e] += x[e] * scale where kept; keep = g3_dropout_keep(seed, tag, e, p).
int g3cu_dropout(G3Cuda *cu, float *y, const float *x, long n, float p, float scale, uint64_t seed, uint32_t tag, int accumulate);
// o[n] = w[n] widened to f32 (w of type F32, BF16 or F16).
int g3cu_widen(G3Cuda *cu, float *o, const void *w, G3DType wt, long n);
// backend.h's G3AttnMask with its arrays in device memory (pos required; block, seg, noisy
// may be NULL as there; stride 0 or T).
typedef struct {
    const int32_t *pos, *block, *seg;
    const uint8_t *noisy;
    int stride;
} G3CuMask;
// Batch attention under the mask (backend.h attention_masked / attention_masked_backward):
// out[B*T][NH*HD], lse[B][NH][T]; backward overwrites dq, dk, dv (B*NH*T floats of scratch).
int g3cu_attention_masked(G3Cuda *cu, float *out, float *lse, const float *q, const float *k, const float *v, const G3CuMask *m,
                          int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap);
int g3cu_attention_masked_backward(G3Cuda *cu, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                   const float *v, const float *lse, const G3CuMask *m, int B, int T, int NH, int NKV, int HD,
                                   int window, float scale, float softcap);

// ---- profiling (prof.cu): G3_CUDA_PROFILE=1 ----
// Whether the profiler is on (the environment is read once). Everything below is a no-op when
// it is off. Scopes: begin returns a handle (-1: not timed), end takes it with the FLOPs and
// bytes the scope moved (0 where unknown); nested scopes are parts of the enclosing one.
int g3cu_prof_on(void);
int g3cu_prof_begin(G3Cuda *cu, const char *name);
void g3cu_prof_end(G3Cuda *cu, int scope, double flops, double bytes);
// A host-side counter (cudaMalloc, stream syncs, ...): one more call, its host time and bytes.
void g3cu_prof_count(const char *name, double host_s, double bytes);
// The GPU time of the scopes the stream has passed, taken now (at syncs: nothing waits).
void g3cu_prof_collect(void);
// An optimizer step begins (its first AdamW launch): the first G3_CUDA_PROFILE_SKIP steps
// (default 2) are dropped, then the figures are kept per whole step.
void g3cu_prof_step(G3Cuda *cu);
// The table, to stderr (also printed when the process exits).
void g3cu_prof_report(void);
// The host clock in seconds (monotonic), for the counters' times.
double g3cu_prof_now(void);

#ifdef __cplusplus
}
#endif
#endif
