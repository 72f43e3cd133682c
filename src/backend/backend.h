// backend.h: one table of ops per backend. The model pass (model/pass.c) is written once
// against this table, and inference, batched decode and training (forward and backward) all
// run through it; a CUDA backend is a second table, not a second model. A backend is an
// instance chosen per model state or training context (never per process): two states may
// run on two backends, or on the CPU backend capped at two ISA levels, side by side.
//
// Buffers are backend memory (host memory for the CPU backend, device memory for CUDA), made
// by alloc and moved with to_device / to_host; the pass never dereferences them itself unless
// `host` is set (hooks on a device backend copy the sites asked for). Weights are G3Weight
// handles (tensor/weight.h): type, shape, row bytes and where the bytes live.
//
// Conventions: outputs first, then inputs, then dimensions (letters: R rows, C hidden, N/K
// output/input features, NH/NKV/HD heads, F MLP width, V vocabulary). An op that a backend
// lacks is NULL; g3_backend_need() turns that into an error naming the backend and the op.
// Ops that can fail on their input (unsupported weight type, out of memory) return 0 or -1
// with g3_error() set; the arithmetic ops cannot fail and return nothing.
#ifndef G3_BACKEND_H
#define G3_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"
#include "../tensor/weight.h"

// How a matrix product treats its operands.
typedef enum {
    G3_MM_EXACT = 0,  // f32 products of f32 activations and the weights widened exactly, f32 sums
    G3_MM_FAST = 1,   // inference's fast mode: activations may be rounded to bf16 where the weights
                      // are bf16 (bf16 dot-product instructions); f32 weights stay exact
    G3_MM_BF16 = 2,   // training's mixed precision (PyTorch's bf16 autocast): both operands rounded
                      // to bf16, f32 sums
} G3MatmulMode;

// A run of consecutive tokens of one sequence (a KV-cache slot): prefill of one prompt is one
// long segment, a batched decode step one one-token segment per sequence.
typedef struct {
    int seq;   // cache slot
    int pos0;  // position of the segment's first token (= the slot's length before the call)
    int n;     // tokens
    // NULL: causal. Else [n]: row i sees the keys at positions < kend[i], where
    // pos0 + i + 1 <= kend[i] <= pos0 + n: an image's run of soft tokens attends both ways
    // inside itself (vision/). Read only by attention_cache, on a backend with attn_kend set.
    const int32_t *kend;
} G3Segment;

// The KV cache of a state: per layer [slots][NKV][cap[l]][HD] keys and values in backend
// memory; sliding layers keep rings of cap = min(ctx, window) positions (position p at p % cap).
typedef struct {
    int layers, slots, ctx, nkv, hd;
    int *cap;           // [layers] positions kept
    float **k, **v;     // [layers] backend buffers
} G3KVCache;

// What attention_cache needs to call the score/pattern hooks of hooks.h (NULL: no hook).
// fn(ctx, layer, head, seg, scores[rows][keys], key0, pattern?) is called once with the
// scaled, capped, masked scores (pattern 0) and once with their softmax (pattern 1); what
// it leaves in the buffer is what is used.
typedef struct {
    void (*fn)(void *ctx, int layer, int head, int seg, float *scores, int rows, int keys, int key0, int pattern);
    void *ctx;
    int want_scores, want_pattern;
} G3AttnHook;

// A block-structured attention mask for the batch attention (Set Block Decoding's training
// layout, train/sbd.h; packed examples, train/examples.h): per row t of a sequence, its
// position pos[t], its block block[t], whether it is a row of the noisy copy, and its segment
// seg[t]. Query q sees key k iff they are in the same segment (seg NULL: one segment), the
// window allows it (window <= 0, or pos[q] - pos[k] < window: by position) and
//   clean q, clean k: pos[k] <= pos[q]           (causal)
//   noisy q, noisy k: block[k] == block[q]       (its own block, both ways)
//   noisy q, clean k: block[k] < block[q]        (strictly earlier blocks)
//   clean q, noisy k: never
// noisy NULL: every row clean (block unused). Every row sees itself, so no row is empty. All
// rows clean with pos[t] = t is causal attention. With stride 0 the arrays are one [T] layout
// shared by the B sequences of the batch; with stride T they are [B, T], sequence b's at b * T
// (packed rows: each row its own examples; g3_attn_mask_seq gives sequence b's view).
typedef struct {
    const int32_t *pos;    // [T]
    const int32_t *block;  // [T]
    const uint8_t *noisy;  // [T] 1: noisy row, 0: clean row; NULL: all clean
    const int32_t *seg;    // [T] segment of each row, or NULL
    int stride;            // 0, or T: per-sequence arrays
} G3AttnMask;

static inline G3AttnMask g3_attn_mask_seq(const G3AttnMask *m, int b) {
    G3AttnMask s = *m;
    const long o = (long)b * m->stride;
    s.pos += o;
    if (s.block) s.block += o;
    if (s.noisy) s.noisy += o;
    if (s.seg) s.seg += o;
    s.stride = 0;
    return s;
}

static inline int g3_attn_mask_sees(const G3AttnMask *m, int q, int k, int window) {
    if (m->seg && m->seg[q] != m->seg[k]) return 0;
    if (window > 0 && m->pos[q] - m->pos[k] >= window) return 0;
    if (!m->noisy || !m->noisy[q]) return (!m->noisy || !m->noisy[k]) && m->pos[k] <= m->pos[q];
    return m->noisy[k] ? m->block[k] == m->block[q] : m->block[k] < m->block[q];
}

// LoRA dropout's keep decision for element e of the tensor tagged `tag` (model/pass.c: one tag
// per layer and module): splitmix64 of (seed, tag, e), kept when its top 24 bits as a fraction
// are >= p. Integer arithmetic and one exact float compare, so every backend (the CUDA kernel
// includes this header) draws the same mask; backward draws the forward's mask again.
#ifdef __CUDACC__
#define G3_HOSTDEV __host__ __device__
#else
#define G3_HOSTDEV
#endif
static inline G3_HOSTDEV int g3_dropout_keep(uint64_t seed, uint32_t tag, int64_t e, float p) {
    uint64_t z = seed ^ ((uint64_t)tag * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)e * 0xD1B54A32D192ED03ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

// One row of sample_top_k: the k best wanted (1 .. G3_SAMPLE_TOP_K_MAX) after the penalties of
// sampler.h (g3_sample_penalties) over the window tokens win[w0 .. w0 + nw) (nw 0: none).
typedef struct {
    int k, w0, nw;
    float repeat, presence, frequency;
} G3SampleRow;
enum { G3_SAMPLE_TOP_K_MAX = 256 };

// The 8-bit AdamW's block (adamw8 below, train/optim.h): one absmax for each run of this many
// moments of a tensor.
enum { G3_ADAMW8_BLOCK = 256 };

typedef struct G3Backend G3Backend;
struct G3Backend {
    const char *name;  // "cpu", "cuda": used in messages
    int kind;          // G3_BACKEND_CPU / G3_BACKEND_CUDA (tensor/dtype.h)
    int host;          // 1: buffers are host memory, readable in place
    int level;         // CPU: the ISA level its kernels use (kernels.h G3Isa); else 0
    int attn_kend;     // 1: attention_cache honours G3Segment.kend (callers refuse image runs elsewhere)
    void *impl;
    void (*destroy)(G3Backend *be);  // NULL for the process's shared instances

    // ---- memory ----
    void *(*alloc)(G3Backend *be, size_t bytes);  // zeroed; NULL with g3_error set
    void (*free)(G3Backend *be, void *p);
    int (*to_device)(G3Backend *be, void *dst, const void *src, size_t bytes);
    int (*to_host)(G3Backend *be, void *dst, const void *src, size_t bytes);
    int (*sync)(G3Backend *be);
    // Makes w usable by this backend's ops (uploads it once, for a device backend); the CPU
    // backend uses host weights in place. 0 or -1 (type without a kernel here: the message
    // names the backend and the type).
    int (*weight_check)(G3Backend *be, const G3Weight *w, const char *name);

    // ---- matrix products ----
    // y[R, N] = x[R, K] . W^T, W [N, K] of any type weight_check accepted.
    int (*linear)(G3Backend *be, float *y, const float *x, const G3Weight *w, int R, G3MatmulMode mode);
    // dx[R, K] (+)= dy[R, N] . W: the input gradient of linear.
    int (*linear_dx)(G3Backend *be, float *dx, const float *dy, const G3Weight *w, int R, int accumulate, G3MatmulMode mode);
    // C[M, N] (+)= op(A) . op(B), f32 buffers, A [M, K] (ta 0) or [K, M] (ta 1), B [K, N] or
    // [N, K] (tb 1): weight gradients (dW += dy^T . x) and anything else general.
    void (*gemm)(G3Backend *be, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                 G3MatmulMode mode);

    // ---- row-wise ops ----
    // Gemma's RMSNorm over rows x[R, n]: y = x * rstd * (1 + w), w as stored (the op adds
    // the 1), rstd[R] = 1/sqrt(mean(x^2) + eps) kept for backward when non-NULL. y may alias x.
    void (*rmsnorm)(G3Backend *be, float *y, float *rstd, const float *x, const float *w, int R, int n, float eps);
    // dx (+)= the input gradient, dw += sum over rows of dy * x * rstd.
    void (*rmsnorm_backward)(G3Backend *be, float *dx, float *dw, const float *dy, const float *x, const float *w,
                             const float *rstd, int R, int n, int accumulate);
    // RoPE in place on x[R, nh * HD] ("rotate half": d pairs with d + HD/2), cos/sin[R, HD/2]
    // the angles of each row's position; backward rotates by the negative angles.
    void (*rope)(G3Backend *be, float *x, const float *cos, const float *sin, int R, int nh, int HD);
    void (*rope_backward)(G3Backend *be, float *dx, const float *cos, const float *sin, int R, int nh, int HD);
    // a[n] = gelu(g) * u (tanh form, or erf); a may alias g.
    void (*geglu)(G3Backend *be, float *a, const float *g, const float *u, long n, int erf_form);
    // dg = da * u * gelu'(g), du = da * gelu(g).
    void (*geglu_backward)(G3Backend *be, float *dg, float *du, const float *da, const float *g, const float *u, long n,
                           int erf_form);
    // The MLP's backward from its output gradient: da = dmo[R, C] . Wd (Wd [C, F]), then dg, du
    // as geglu_backward, and a = gelu(g) * u recomputed (for dWd). One op so that a backend can
    // fuse the element-wise part into the product (the CPU does it per tile while in cache).
    int (*mlp_down_backward)(G3Backend *be, float *a, float *dg, float *du, const float *dmo, const G3Weight *wd,
                             const float *g, const float *u, int R, int F, int erf_form, G3MatmulMode mode);
    // x[R, C] = E[ids[r]] * scale (rows of a typed embedding widened exactly to f32).
    int (*embed)(G3Backend *be, float *x, const int32_t *ids, const G3Weight *E, int R, float scale);
    // dE[V, C] += dx[r] * scale at row ids[r] (f32 gradient).
    void (*embed_backward)(G3Backend *be, float *dE, const float *dx, const int32_t *ids, int R, int C, float scale);
    // y = a + b (y may alias either).
    void (*add)(G3Backend *be, float *y, const float *a, const float *b, long n);
    // y += alpha * x (a LoRA adapter's scaled low-rank term, model/adapter.h).
    void (*axpy)(G3Backend *be, float *y, float alpha, const float *x, long n);
    // LoRA's scaled and dropped-out terms (model/pass.c): over n elements,
    //   y[e] = keep(e) ? x[e] * scale : 0        (accumulate 0; y may alias x)
    //   y[e] += x[e] * scale where keep(e)      (accumulate 1)
    // keep(e) = g3_dropout_keep(seed, tag, e, p) (above); p = 0 keeps every element (a scale).
    void (*dropout)(G3Backend *be, float *y, const float *x, long n, float p, float scale, uint64_t seed, uint32_t tag,
                    int accumulate);
    // x = tanh(x / cap) * cap in place.
    void (*softcap)(G3Backend *be, float *x, long n, float cap);
    // Cross-entropy of logit rows z[R, V] (before the final softcap; cap 0 = none) against
    // targets (< 0: ignored, loss 0): loss[r] = -log softmax(cap(z))[target] in double; with
    // backward, z is overwritten by d loss[r] / d z * dscale (ignored rows: zeros).
    void (*cross_entropy)(G3Backend *be, double *loss, float *z, const int32_t *targets, int R, int V, float cap, float dscale,
                          int backward);

    // ---- attention ----
    // Causal grouped-query attention over B sequences of T rows from position 0 (training):
    // q[B*T, NH*HD], k/v[B*T, NKV*HD] -> out[B*T, NH*HD], lse[B, NH, T] kept for backward.
    // Query t sees key j iff 0 <= t - j < window (window <= 0: all); softcap 0 = none. In
    // training's G3_MM_BF16 a backend may take q, k, v, the probabilities and (backward) dout
    // and ds as bf16 operands with f32 accumulation (the CUDA tensor-core kernels).
    int (*attention)(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                      int NH, int NKV, int HD, int window, float scale, float softcap, G3MatmulMode mode);
    // dq, dk, dv overwritten; out is the forward's output (a backend may use dout . out, the
    // softmax backward's row term, instead of recomputing it from the scores).
    int (*attention_backward)(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *out, const float *q,
                               const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD,
                               int window, float scale, float softcap, G3MatmulMode mode);
    // Attention of the segments' rows (concatenated in segment order: q[R, NH*HD], k/v[R, NKV*HD])
    // over their slot's cached positions and their own; out[R, NH*HD]. Reads the cache as it is
    // before kv_append. window as above (the layer's), hook may be NULL. In G3_MM_FAST a
    // backend may round q, k, v and the probabilities to bf16 (the CUDA tensor-core kernel).
    int (*attention_cache)(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                           const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap,
                           const G3AttnHook *hook, G3MatmulMode mode);
    // Bytes the two batch attention ops keep as their own scratch for B x T rows (NULL: none);
    // callers count it in the memory they report.
    size_t (*attention_workspace)(G3Backend *be, int B, int T, int NH, int HD);
    // out[r] = the first index of the largest of x[r][0 .. n) (greedy decoding's choice, so that
    // only ids leave a device), or -1 where the row holds a NaN or +inf or only -inf. out is
    // backend memory.
    int (*argmax)(G3Backend *be, int32_t *out, const float *x, int R, int n);
    // Appends the rows' keys and values to their slots (rings keep the newest cap positions).
    void (*kv_append)(G3Backend *be, G3KVCache *kv, int layer, const G3Segment *segs, int nseg, const float *k,
                      const float *v);

    // ---- optional: Set Block Decoding (train/sbd.h, gen/sbd.h); NULL: not supported here ----
    // attention / attention_backward under a block mask (above) instead of causal.
    int (*attention_masked)(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const G3AttnMask *mask, int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap);
    int (*attention_masked_backward)(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, const float *lse, const G3AttnMask *mask, int B, int T,
                                     int NH, int NKV, int HD, int window, float scale, float softcap);
    // A block of rows (one segment, positions pos0 .. pos0 + n - 1 of its slot) that sees the
    // slot's cached positions [0, pos0) and every row of the block, both ways (inside the window
    // by position): SBD's decoding step. Nothing is appended.
    int (*attention_cache_block)(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *seg,
                                 const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap);

    // ---- optional: the vision tower's (vision/encoder.c); NULL: the tower cannot run here ----
    // LayerNorm with a bias over rows x[R, n]: y = (x - mean) / sqrt(var + eps) * w + b; w and
    // b are f32 vectors passed as rmsnorm's w (host addresses a device backend copies once).
    // y may alias x. exact: the reference's arithmetic (statistics in double); else a backend
    // may use a faster form (the CPU's AVX-512 rows with f32 sums).
    void (*layernorm)(G3Backend *be, float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int exact);
    // y[R, n] += b[n] (b NULL: nothing; passed as rmsnorm's w), then y = gelu(y) when act is
    // 1 (tanh form) or 2 (erf form); act 0: the bias alone. exact as layernorm's.
    void (*bias_act)(G3Backend *be, float *y, const float *b, int R, int n, int act, int exact);
    // Attention of T rows over all T rows, no mask (the vision tower's): q, k, v [T, NH*HD] ->
    // out [T, NH*HD], scores scaled by scale. work: backend memory of attention_full_workspace
    // bytes. G3_MM_EXACT: f32 products and the reference softmax; G3_MM_FAST: f32 products, a
    // faster softmax; G3_MM_BF16: q, k, v and the probabilities as bf16 operands, f32 sums.
    size_t (*attention_full_workspace)(G3Backend *be, int T, int NH, int HD);
    int (*attention_full)(G3Backend *be, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH,
                          int HD, float scale, G3MatmulMode mode);

    // ---- optional: what a device backend adds (NULL on the CPU; callers fall back) ----
    // Host memory that copies to and from this backend are fastest with (page-locked for a
    // GPU); NULL with g3_error set.
    void *(*host_alloc)(G3Backend *be, size_t bytes);
    void (*host_free)(G3Backend *be, void *p);
    // The segments of the call about to run, before its ops (attention_cache and kv_append
    // get them again): a device backend uploads its per-row metadata here, outside any
    // recording.
    int (*segments)(G3Backend *be, const G3Segment *segs, int nseg);
    // Recording a call's ops once and replaying them (CUDA graphs: one launch for a whole
    // decode step). record_begin, the ops, record_end gives the recording (NULL + error:
    // the ops then did not run either). While recording, attention_cache sizes its work for
    // the cache's capacity rather than the current lengths, so a recording serves every
    // later length. replay returns 0, 1 when the recording went stale (the backend moved a
    // buffer it uses: record again), or -1.
    int (*record_begin)(G3Backend *be);
    void *(*record_end)(G3Backend *be);
    int (*replay)(G3Backend *be, void *rec);
    void (*record_free)(G3Backend *be, void *rec);
    // Fused inference ops (fewer passes over memory, fewer launches), used by the pass where
    // nothing needs the steps in between (no hook there, no 1/rms kept for backward):
    // per head of q[R, NH*HD] and k[R, NKV*HD]: RMSNorm with (1 + qw) / (1 + kw) (skipped where
    // NULL), then RoPE as rope;
    void (*qk_norm_rope)(G3Backend *be, float *q, float *k, const float *qw, const float *kw, const float *cos,
                         const float *sin, int R, int NH, int NKV, int HD, float eps);
    // x[R, n] += rmsnorm(t, w_post); then, when w_next is non-NULL, xn = rmsnorm(x, w_next).
    void (*add_rmsnorm)(G3Backend *be, float *x, float *xn, const float *t, const float *w_post, const float *w_next, int R,
                        int n, float eps);
    // attention_cache, then kv_append of the same rows (one op, so that a backend can append
    // from attention's last kernel); the hook argument as attention_cache's;
    int (*attention_cache_append)(G3Backend *be, float *out, G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                                  const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap,
                                  const G3AttnHook *hook, G3MatmulMode mode);
    // y[i][R, w[i].rows] = x . w[i]^T for n (1 to 3) weights of one type and input width (q, k
    // and v): linear's results, in one pass over the weights where the backend can;
    int (*linear_multi)(G3Backend *be, int n, float *const *y, const float *x, const G3Weight *const *w, int R,
                        G3MatmulMode mode);
    // a[R, N] = gelu(x . wg^T) * (x . wu^T) (geglu of the two linears), g and u not kept; u
    // [R, N] is scratch the backend may overwrite.
    int (*linear_geglu)(G3Backend *be, float *a, float *u, const float *x, const G3Weight *wg, const G3Weight *wu, int R,
                        int erf_form, G3MatmulMode mode);
    // The sampler's heavy part where the logits are (sampler.h: the rest runs on the host over
    // what comes back). For each row r of x[R, n] (backend memory, left as it is): bad[r] = 1
    // where x[r] holds a NaN or +inf or only -inf (before the penalties, as the host checks),
    // else 0; ids[r * kmax + i] / vals[r * kmax + i], i < rows[r].k: the k best of the row
    // after its penalties (the same IEEE operations as g3_sample_penalties, in its order),
    // best first, equal values by ascending id (-0 as +0). rows, win[nwin], ids, vals and
    // bad are host memory; complete on return. kmax <= G3_SAMPLE_TOP_K_MAX.
    int (*sample_top_k)(G3Backend *be, const float *x, int R, int n, const G3SampleRow *rows, const int32_t *win, int nwin,
                        int kmax, int32_t *ids, float *vals, int32_t *bad);
    // Training with the parameters resident in this backend's memory (train.h
    // g3_train_ctx_resident): zeroing, the global gradient norm's sum of squares (double;
    // -1 on failure) and AdamW's element-wise step over n parameters with f32 moments, as
    // optim.h computes it. k = {beta1, beta2, 1 - beta1, 1 - beta2, lr / (1 - beta1^t),
    // 1 / sqrt(1 - beta2^t), eps, gradient scale}.
    int (*zero)(G3Backend *be, void *p, size_t bytes);
    double (*sumsq)(G3Backend *be, const float *x, long n);
    // Training's bf16 mode (optional; CUDA): params[n], f32 weights in this backend's memory,
    // get a bf16 copy that bf16-mode products read instead of rounding the weights per
    // product; adamw over any part of params writes the copy too, so it stays current through
    // the steps. Made now when force is set, or when the backend's copy is not current (other
    // writes into params drop it); the caller forces it after writing params by other means.
    int (*bf16_shadow)(G3Backend *be, const float *params, long n, int force);
    int (*adamw)(G3Backend *be, float *p, const float *g, float *m, float *v, long n, const float k[8], float decay_mul);
    // The same step with 8-bit moments (--optim adamw8bit; kernels/adamw8.h) over one tensor's
    // n parameters: blocks of G3_ADAMW8_BLOCK from p (the last may be short), each with codes
    // mq, vq [n] and absmax mmax, vmax [ceil(n / G3_ADAMW8_BLOCK)], all in this backend's
    // memory; decoded, stepped as adamw, re-encoded with the block's new absmax: the CPU's bits
    // on every backend. Writes the bf16 copy as adamw does. The CPU's is g3_adamw8_blocks.
    int (*adamw8)(G3Backend *be, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *mmax, float *vmax, long n,
                  const float k[8], float decay_mul);
};

// The process's CPU backend: the kernels of kernels.h at the ISA level g3_kernels_init chose
// (every level the CPU has, unless a test capped it). Never freed.
G3Backend *g3_backend_cpu(void);
// A backend by name ("cpu", "cuda"); NULL with g3_error set if it is not built in or has no
// device ("cuda: this build has no CUDA backend (make CUDA=1)", "cuda: no GPU found").
G3Backend *g3_backend_open(const char *name);
void g3_backend_free(G3Backend *be);
// Usable CUDA devices: 0 in a build without the CUDA backend or on a machine without a GPU.
int g3_backend_cuda_devices(void);
// A CUDA backend's device, for messages: its name ("" for another backend), free and total
// memory (-1 on failure), and its dense bf16 tensor-core peak in FLOP/s for MFU figures (the
// datasheet's, by name: H100/H200 SXM 989e12, A100 312e12; 0 when not known).
const char *g3_backend_cuda_device(G3Backend *be);
int g3_backend_cuda_mem(G3Backend *be, size_t *free_bytes, size_t *total_bytes);
double g3_backend_cuda_peak_bf16(G3Backend *be);
// Bytes of weights a CUDA backend has uploaded so far (0 for another backend).
size_t g3_backend_cuda_weight_bytes(G3Backend *be);
// A JumpReLU SAE's training steps on a CUDA backend (analysis/sae_train.c drives them;
// cuda/sae_train.cu does them): parameters p laid out as sae_train.c's flat array (w_enc [D][S],
// b_enc [S], log_th [S], w_dec [S][D], b_dec [D]), Adam's moments m, v and the firing counts
// [S] live on the device from g3_dev_sae_new (copied from the host) until g3_dev_sae_get.
// NULL / -1 with g3_error set (a build without CUDA: "built without the CUDA backend").
typedef struct G3DevSae G3DevSae;
typedef struct {
    float scale;                // input multiplier
    double l0_target, lambda;   // L0 penalty: lambda (l0 / target - 1)^2, or lambda l0 when target is 0
    float inv_eps;              // 1 / the straight-through estimator's bandwidth
    float step, isb2, b1, b2;   // Adam: lr / (1 - b1^t), 1 / sqrt(1 - b2^t), betas
} G3DevSaeStep;
typedef struct {
    double err, var, pen;  // summed squared reconstruction error and deviation from the batch mean; penalty
    int64_t active;        // active features summed over the rows
} G3DevSaeStats;
G3DevSae *g3_dev_sae_new(G3Backend *be, int D, int S, const float *p, const float *m, const float *v, const int64_t *fired);
int g3_dev_sae_step(G3DevSae *s, const float *x, int n, const G3DevSaeStep *k, G3DevSaeStats *st);
int g3_dev_sae_get(G3DevSae *s, float *p, float *m, float *v, int64_t *fired);
void g3_dev_sae_free(G3DevSae *s);
// -1 with "backend cpu has no op 'attention_backward'" when op is NULL, else 0.
int g3_backend_need(const G3Backend *be, const void *op, const char *opname);
#define G3_NEED(be, op) g3_backend_need((be), (const void *)(be)->op, #op)

#endif
