// backend_cpu.c: the CPU backend: the op table of backend.h over the kernels of src/kernels
// (scalar references and their AVX2 / AVX-512 / AVX512-BF16 versions, chosen at start-up)
// and the training ops of train/train_ops.h. Buffers are host memory (64-byte aligned).
// What only the CPU needs lives here, behind the ops: the GEMM tile epilogue that fuses
// GeGLU's backward into the product making its input, the packed-B attention panels, the
// per-thread workspaces.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/adamw8.h"
#include "../../kernels/kernels.h"
#include "../../kernels/ops.h"
#include "../../kernels/train_ops.h"
#include "../../sampler/sampler.h"
#include "backend_cpu.h"
#include "linear_quant.h"

// ---- memory ----

static _Thread_local void *ws_buf;
static _Thread_local size_t ws_cap;

void *g3_cpu_workspace(size_t bytes) {
    if (bytes > ws_cap) {
        size_t cap = bytes + (bytes >> 2) + 4096;
        void *p = g3_malloc_aligned(cap);
        if (!p) {
            g3_errorf("out of memory: %.1f MiB of scratch", cap / 1048576.0);
            return NULL;
        }
        g3_free_aligned(ws_buf);
        ws_buf = p;
        ws_cap = cap;
    }
    return ws_buf;
}

static void *cpu_alloc(G3Backend *be, size_t bytes) {
    (void)be;
    void *p = g3_malloc_aligned(bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}
static void cpu_free(G3Backend *be, void *p) { (void)be; g3_free_aligned(p); }
static int cpu_copy(G3Backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
static int cpu_sync(G3Backend *be) { (void)be; return 0; }

static int cpu_weight_check(G3Backend *be, const G3Weight *w, const char *name) {
    if (w->type == G3_F32 || w->type == G3_BF16 || w->type == G3_F16 || w->type == G3_SFP8) return 0;
    if (g3_type(w->type) && g3_type(w->type)->block > 1 && g3_type(w->type)->is_float) return 0;  // ggml's blocks: linear_quant.c
    return g3_errorf("tensor '%s': backend %s has no matrix kernel for weights of type %s", name ? name : "?", be->name,
                     g3_dtype_name(w->type));
}

// ---- matrix products ----

static int cpu_linear(G3Backend *be, float *y, const float *x, const G3Weight *w, int R, G3MatmulMode mode) {
    const int N = (int)w->rows, K = (int)w->cols;
    if (R < G3_GEMV_MAX_ROWS) {  // decode: linear_gemv.c (one parallel region, the activations prepared once)
        const int rc = g3_cpu_gemv_multi(1, &y, x, &w, R, mode);
        if (rc <= 0) return rc;
    }
    switch (w->type) {
    case G3_F32:  // the blocked GEMM (a few rows: it takes the matrix-vector kernel itself)
        if (mode == G3_MM_BF16) g3_gemm_bf16(0, 1, R, N, K, x, w->data, y, 0);
        else g3_sgemm(0, 1, R, N, K, x, w->data, y, 0);
        return 0;
    case G3_BF16:
    case G3_F16: {
        // prefill over bf16 weights: packed panels (linear_bf16.c); 1: not taken
        const int rc = mode != G3_MM_EXACT && w->type == G3_BF16 ? g3_cpu_linear_bf16_gemm(y, x, w, R) : 1;
        if (rc <= 0) return rc;
        g3_matmul(y, x, w->data, w->type, R, K, N, mode != G3_MM_EXACT);
        return 0;
    }
    case G3_SFP8: return g3_cpu_linear_sfp8(y, x, w, R, mode == G3_MM_EXACT);  // gemma.cpp's SFP: linear_sfp8.c
    default:
        if (cpu_weight_check(be, w, NULL)) return -1;
        return g3_cpu_linear_quant(y, x, w, R, mode == G3_MM_EXACT);  // ggml's blocks; fast: int8 activations
    }
}

// q, k and v (linear_multi), gate and up with GeGLU (linear_geglu): in decode one parallel
// region each over the products' column chunks (linear_gemv.c); otherwise linear one by one.
static int cpu_linear_multi(G3Backend *be, int n, float *const *y, const float *x, const G3Weight *const *w, int R,
                            G3MatmulMode mode) {
    const int rc = g3_cpu_gemv_multi(n, y, x, w, R, mode);
    for (int i = 0; rc > 0 && i < n; i++)
        if (cpu_linear(be, y[i], x, w[i], R, mode)) return -1;
    return rc < 0 ? -1 : 0;
}

static int cpu_linear_geglu(G3Backend *be, float *a, float *u, const float *x, const G3Weight *wg, const G3Weight *wu, int R,
                            int erf_form, G3MatmulMode mode) {
    const int rc = g3_cpu_gemv_geglu(a, u, x, wg, wu, R, erf_form, mode);
    if (rc <= 0) return rc;
    if (cpu_linear(be, a, x, wg, R, mode) || cpu_linear(be, u, x, wu, R, mode)) return -1;
    g3_geglu_forward(a, a, u, (long)R * wg->rows, erf_form);  // element by element: in place is safe
    return 0;
}

static int cpu_linear_dx(G3Backend *be, float *dx, const float *dy, const G3Weight *w, int R, int accumulate, G3MatmulMode mode) {
    const int N = (int)w->rows, K = (int)w->cols;
    if (w->type != G3_F32 && g3_type(w->type) && g3_type(w->type)->is_float) {
        // A frozen 16-bit or quantized base (LoRA, QLoRA training; the tied head's input
        // gradient): widen NB rows of W at a time to f32 (the type's reference to_f32: a row
        // is whole blocks, rows are contiguous) and add dy[:, n0:n0+nb] . W[n0:n0+nb, :];
        // the weight is never widened whole.
        enum { NB = 256 };
        float *wf = g3_malloc_aligned(sizeof(float) * (size_t)NB * (size_t)K);
        if (!wf) return -1;
        for (int n0 = 0; n0 < N; n0 += NB) {
            const int nb = N - n0 < NB ? N - n0 : NB;
            g3_to_f32(wf, g3_weight_row(w, n0), w->type, (size_t)nb * (size_t)K);
            g3_sgemm_ld(0, 0, R, K, nb, dy + n0, N, wf, K, dx, K, accumulate || n0 > 0);
        }
        g3_free_aligned(wf);
        return 0;
    }
    if (w->type != G3_F32)
        return g3_errorf("backend %s: no input gradient for a linear layer of type %s", be->name, g3_dtype_name(w->type));
    if (mode == G3_MM_BF16) g3_gemm_bf16(0, 0, R, K, N, dy, w->data, dx, accumulate);
    else g3_sgemm(0, 0, R, K, N, dy, w->data, dx, accumulate);
    return 0;
}

static void cpu_gemm(G3Backend *be, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                     G3MatmulMode mode) {
    (void)be;
    if (mode == G3_MM_BF16) g3_gemm_bf16(ta, tb, M, N, K, A, B, C, accumulate);
    else g3_sgemm(ta, tb, M, N, K, A, B, C, accumulate);
}

// ---- row-wise ops ----

static void cpu_rmsnorm(G3Backend *be, float *y, float *rstd, const float *x, const float *w, int R, int n, float eps) {
    (void)be;
    g3_rmsnorm_forward(y, rstd, x, w, R, n, eps);
}
static void cpu_rmsnorm_backward(G3Backend *be, float *dx, float *dw, const float *dy, const float *x, const float *w,
                                 const float *rstd, int R, int n, int accumulate) {
    (void)be;
    g3_rmsnorm_backward(dx, dw, dy, x, w, rstd, R, n, accumulate);
}
static void cpu_rope(G3Backend *be, float *x, const float *cos, const float *sin, int R, int nh, int HD) {
    (void)be;
    g3_rope_forward(x, cos, sin, 1, R, nh, HD);
}
static void cpu_rope_backward(G3Backend *be, float *dx, const float *cos, const float *sin, int R, int nh, int HD) {
    (void)be;
    g3_rope_backward(dx, cos, sin, 1, R, nh, HD);
}
static void cpu_geglu(G3Backend *be, float *a, const float *g, const float *u, long n, int erf_form) {
    (void)be;
    g3_geglu_forward(a, g, u, n, erf_form);
}
static void cpu_geglu_backward(G3Backend *be, float *dg, float *du, const float *da, const float *g, const float *u, long n,
                               int erf_form) {
    (void)be;
    g3_geglu_backward(dg, du, da, g, u, n, erf_form);
}

// da = dmo . Wd into dg, and per tile of it while in cache: a recomputed (cheaper than keeping
// [R, F]), dg and du, from one read of g and u. Two passes after the product were 0.5-0.7 ms a
// layer slower on training shape (a) (the same on (b)).
static int cpu_mlp_down_backward(G3Backend *be, float *a, float *dg, float *du, const float *dmo, const G3Weight *wd,
                                 const float *g, const float *u, int R, int F, int erf_form, G3MatmulMode mode) {
    if (wd->type != G3_F32)
        return g3_errorf("backend %s: the MLP backward needs F32 weights, not %s", be->name, g3_dtype_name(wd->type));
    const int C = (int)wd->rows;
    G3GegluEpi ge = {.a = a, .dg = dg, .du = du, .g = g, .u = u, .ld = F, .erf_form = erf_form};
    G3SgemmEpilogue epi = {g3_geglu_epi, g3_geglu_epi_prefetch, &ge};
    if (mode == G3_MM_BF16) g3_gemm_bf16_epi(0, 0, R, F, C, dmo, wd->data, dg, 0, &epi);
    else g3_sgemm_epi(0, 0, R, F, C, dmo, wd->data, dg, 0, &epi);
    return 0;
}

static int cpu_embed(G3Backend *be, float *x, const int32_t *ids, const G3Weight *E, int R, float scale) {
    const int C = (int)E->cols;
    if (cpu_weight_check(be, E, "embedding")) return -1;  // a row of any of its types converts through to_f32
#pragma omp parallel for if ((long)R * C > 16384) schedule(static)
    for (int r = 0; r < R; r++) {
        float *xr = x + (long)r * C;
        g3_to_f32(xr, (const char *)E->data + (long)ids[r] * E->row_bytes, E->type, (size_t)C);
        for (int i = 0; i < C; i++) xr[i] *= scale;
    }
    return 0;
}
static void cpu_embed_backward(G3Backend *be, float *dE, const float *dx, const int32_t *ids, int R, int C, float scale) {
    (void)be;
    g3_embedding_backward(dE, dx, ids, R, C, scale);
}

// y = a + b over n floats (the residual adds), with every thread: serial, they held the other
// thread idle twice a layer in training.
static void cpu_add(G3Backend *be, float *y, const float *a, const float *b, long n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) y[i] = a[i] + b[i];
}
static void cpu_axpy(G3Backend *be, float *y, float alpha, const float *x, long n) {
    (void)be;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) y[i] += alpha * x[i];
}
// LoRA's scale and dropout (backend.h dropout): the element loop of model/pass.c, as it was.
static void cpu_dropout(G3Backend *be, float *y, const float *x, long n, float p, float scale, uint64_t seed, uint32_t tag,
                        int accumulate) {
    (void)be;
    if (accumulate) {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long e = 0; e < n; e++)
            if (g3_dropout_keep(seed, tag, e, p)) y[e] += x[e] * scale;
    } else {
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long e = 0; e < n; e++) y[e] = g3_dropout_keep(seed, tag, e, p) ? x[e] * scale : 0.0f;
    }
}

static void cpu_softcap(G3Backend *be, float *x, long n, float cap) {
    (void)be;
    g3_softcap(x, n, cap);
}

static void cpu_cross_entropy(G3Backend *be, double *loss, float *z, const int32_t *targets, int R, int V, float cap, float dscale,
                              int backward) {
    (void)be;
#pragma omp parallel for schedule(static) if ((int64_t)R * V > 65536)
    for (int i = 0; i < R; i++) {
        float *zr = z + (int64_t)i * V;
        const int t = targets[i];
        if (t < 0) {
            loss[i] = 0;
            if (backward) memset(zr, 0, (size_t)V * sizeof(float));
        } else if (backward) {
            loss[i] = g3_crossentropy_forward_backward(zr, zr, t, V, cap, dscale);
        } else {
            if (cap > 0) g3_softcap_forward(zr, zr, V, cap);
            loss[i] = g3_crossentropy_forward(zr, t, V);
        }
    }
}

// ---- attention over [B, T] batches ----

static int cpu_attention(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T,
                          int NH, int NKV, int HD, int window, float scale, float softcap, G3MatmulMode mode) {
    (void)be;
    (void)mode;  // f32 in every mode
    const int nth = omp_get_max_threads();
    float *scratch = g3_cpu_workspace((size_t)nth * g3_attention_scratch(T, HD) * sizeof(float));
    if (!scratch) return -1;
    g3_attention_forward(out, lse, q, k, v, B, T, NH, NKV, HD, window, scale, softcap, scratch, nth);
    return 0;
}

static int cpu_attention_backward(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *out, const float *q,
                                   const float *k, const float *v, const float *lse, int B, int T, int NH, int NKV, int HD,
                                   int window, float scale, float softcap, G3MatmulMode mode) {
    (void)be;
    (void)mode;
    const int nth = omp_get_max_threads();
    const size_t heads = (size_t)B * T * NH * HD;  // dkh, dvh: per-query-head partials
    float *ws = g3_cpu_workspace((2 * heads + (size_t)nth * g3_attention_scratch(T, HD)) * sizeof(float));
    if (!ws) return -1;
    g3_attention_backward(dq, dk, dv, ws, ws + heads, dout, q, k, v, lse, B, T, NH, NKV, HD, window, scale, softcap,
                          ws + 2 * heads, nth);
    return 0;
}

static size_t cpu_attention_workspace(G3Backend *be, int B, int T, int NH, int HD) {
    (void)be;
    return (2 * (size_t)B * T * NH * HD + (size_t)omp_get_max_threads() * g3_attention_scratch(T, HD)) * sizeof(float);
}

// ---- the optimizer ----

// AdamW's 8-bit step over one tensor: the kernel train/optim.c runs on the host, its blocks
// shared among the threads (with few blocks, one thread: a norm's 1-4 blocks are not worth a
// team).
static int cpu_adamw8(G3Backend *be, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *mmax, float *vmax, long n,
                      const float k[8], float decay_mul) {
    (void)be;
    const G3AdamWK ks = g3_adamw_k(k);
    g3_adamw8_tables();  // built before the threads read them
#pragma omp parallel if (n > 16 * G3_ADAMW8_BLOCK)
    g3_adamw8_blocks(&ks, decay_mul, p, g, mq, vq, mmax, vmax, n);
    return 0;
}

// ---- the instance ----

static int cpu_argmax(G3Backend *be, int32_t *out, const float *x, int R, int n) {
    (void)be;
    for (int r = 0; r < R; r++) {
        const float *xr = x + (long)r * n;
        int ok = 1;
        float mx = -INFINITY;
        // vector code (the head's 262k logits a decoded token, while the other thread waits)
#pragma omp simd reduction(&:ok) reduction(max:mx)
        for (int i = 0; i < n; i++) {
            ok &= xr[i] < INFINITY;  // false for NaN and +inf
            mx = xr[i] > mx ? xr[i] : mx;
        }
        out[r] = ok && mx > -INFINITY ? g3_argmax(xr, n) : -1;
    }
    return 0;
}

static G3Backend cpu = {
    .name = "cpu",
    .attn_kend = 1,
    .kind = G3_BACKEND_CPU,
    .host = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .sync = cpu_sync,
    .weight_check = cpu_weight_check,
    .linear = cpu_linear,
    .linear_dx = cpu_linear_dx,
    .linear_multi = cpu_linear_multi,
    .linear_geglu = cpu_linear_geglu,
    .gemm = cpu_gemm,
    .rmsnorm = cpu_rmsnorm,
    .rmsnorm_backward = cpu_rmsnorm_backward,
    .rope = cpu_rope,
    .rope_backward = cpu_rope_backward,
    .geglu = cpu_geglu,
    .geglu_backward = cpu_geglu_backward,
    .mlp_down_backward = cpu_mlp_down_backward,
    .embed = cpu_embed,
    .embed_backward = cpu_embed_backward,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .dropout = cpu_dropout,
    .softcap = cpu_softcap,
    .argmax = cpu_argmax,
    .cross_entropy = cpu_cross_entropy,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .attention_workspace = cpu_attention_workspace,
    .attention_cache = g3_cpu_attention_cache,
    .kv_append = g3_cpu_kv_append,
    .attention_masked = g3_cpu_attention_masked,
    .attention_masked_backward = g3_cpu_attention_masked_backward,
    .attention_cache_block = g3_cpu_attention_cache_block,
    .layernorm = g3_cpu_layernorm,
    .bias_act = g3_cpu_bias_act,
    .attention_full_workspace = g3_cpu_attention_full_workspace,
    .attention_full = g3_cpu_attention_full,
    .adamw8 = cpu_adamw8,
};

G3Backend *g3_backend_cpu(void) {
    cpu.level = g3_kernels_level();
    return &cpu;
}
