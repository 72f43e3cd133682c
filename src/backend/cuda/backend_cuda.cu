// backend_cuda.cu: the CUDA backend: the op table of backend.h over the kernels of g3cuda.h,
// so that the model pass (model/pass.c) runs on a GPU unchanged. What lives here:
//   - the weights' device copies: a weight (or a norm's f32 vector) is uploaded once, the
//     first time weight_check or an op sees its host address, and found again by that address
//     (the model's bytes never move while it is loaded), so the pass keeps passing host
//     handles and the backend keeps the map;
//   - the segment -> row metadata of the attention kernels (G3CuRow), built on the host once per
//     forward call (every layer passes the same segments) and uploaded;
//   - the few ops the kernels do not have in the table's exact form (out-of-place GeGLU and
//     add), made of the in-place kernels and a device copy;
//   - the hooked attention: when a hook wants a layer's scores or pattern, that layer's
//     attention runs on the CPU backend over host copies (only what was asked for crosses).
//   - training (issue 17): the backward ops, the batch attention and the loss. A training
//     context keeps its parameters in buffers of this backend (alloc), and the model it runs
//     points at them; weight_dev / vec_dev recognise those addresses as already on the device
//     (the list of this backend's allocations) instead of uploading them by host address.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "vision_cuda.h"

extern "C" {
#include "../../base/base.h"
#include "../backend.h"
}
#include "../../kernels/adamw8.h"  // g3_adamw8_tables (its own extern "C")

namespace {

struct MapEntry {
    const void *host;
    void *dev;
    size_t bytes;
};

struct CudaBackend {
    G3Backend be;  // first: the table is the handle
    G3Cuda *cu;
    MapEntry *map;  // open addressing on the host address
    int map_cap, map_n;
    size_t weight_bytes;  // uploaded so far
    // attention metadata of the current call
    G3Segment *segs;
    int nseg, segs_cap;
    G3CuRow *meta_h, *meta_d;
    int meta_rows, meta_cap;
    int failed;  // an op without a return value failed: reported at the next sync
    char failure[512];
    int recording;  // between record_begin and record_end
    int attn_f32;   // G3_CUDA_ATTN=f32: the fast and bf16 modes' attention on the f32 kernels too (comparisons)
    // LoRA over a 16-bit base (issue 19): linear_dx widens the frozen weight here per call
    float *wide;
    size_t wide_bytes;
    // masked attention (packed rows): the mask's arrays uploaded per call [4][rows] int32
    int32_t *mask_d;
    size_t mask_bytes;
    G3CuSampler *sampler;  // sample_top_k's buffers, made at its first call
    // what alloc handed out (sorted by address): device addresses the ops may meet as weights
    struct Alloc { const char *p; size_t bytes; } *allocs;
    int nallocs, allocs_cap;
    int prof_in_adamw;  // G3_CUDA_PROFILE: the last op was AdamW (its next launch is no new step)
    // training's bf16 operands (see "bf16 mode's operands" below): the rounded copies kept
    // between products, and the weights' bf16 copy
    struct Rounded {
        const float *src;  // NULL: free
        long n;            // src's floats rounded (rows of len, each `pitch` bf16 values apart in buf)
        long len, pitch;   // pitch == len: contiguous (any split of n into rows reads it)
        long rows_pad;     // > 0: contiguous rows followed by zero rows up to rows_pad (bf16_rows_padded)
        uint16_t *buf;     // [cap / 2]
        size_t cap;
        unsigned long used;
    } rnd[4];
    unsigned long rnd_clock;
    int rnd_keep;  // G3_CUDA_BF16_CACHE != 0: keep rounded operands between products
    int pad;       // G3_CUDA_PAD != 0: rows not a multiple of 16 bytes padded (see pitch_of)
    float *padout;  // a product's f32 output at the padded pitch, before its copy to C
    size_t padout_bytes;
    int shadow_on;  // G3_CUDA_BF16_SHADOW != 0: offer bf16_shadow
    const float *shadow_src;  // the f32 weights copied [shadow_n]
    long shadow_n;
    uint16_t *shadow;
    size_t shadow_cap;
    int shadow_ok;  // the copy equals shadow_src rounded
    float *q8_tables;  // adamw8: the code maps and thresholds of g3_adamw8_tables, uploaded at its first call
    // the embedding's backward without a wait (see cu_embed_backward): the forward's ids
    // copied to the host as they go by, the rows grouped there, uploaded from pinned memory
    int trains;              // embed_backward was called once: cu_embed stages its ids from then on
    const int32_t *ids_src;  // the device ids staged (NULL: none), [ids_n]
    int ids_n;
    int32_t *ids_h, *grp_h;  // page-locked [ids_cap], [3 ids_cap + 1]
    int ids_cap;
    int32_t *grp_d;          // [3 ids_cap + 1]
    cudaEvent_t ids_ev, grp_ev;  // the staging copy done; the upload of grp_h done
};

// A recorded call: the instantiated graph and the backend's own buffers it was recorded over
// (the scratch and the row metadata grow by reallocation, which makes the recording stale).
struct Rec {
    cudaGraphExec_t exec;
    void *scratch, *meta;
};

CudaBackend *cb_of(G3Backend *be) { return (CudaBackend *)be; }

size_t hash_ptr(const void *p, int cap) { return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (size_t)(cap - 1); }

int map_grow(CudaBackend *cb) {
    int cap = cb->map_cap ? cb->map_cap * 2 : 1024;
    MapEntry *m = (MapEntry *)calloc((size_t)cap, sizeof *m);
    if (!m) return g3_errorf("cuda: out of host memory for the weight map");
    for (int i = 0; i < cb->map_cap; i++) {
        if (!cb->map[i].host) continue;
        size_t h = hash_ptr(cb->map[i].host, cap);
        while (m[h].host) h = (h + 1) & (size_t)(cap - 1);
        m[h] = cb->map[i];
    }
    free(cb->map);
    cb->map = m;
    cb->map_cap = cap;
    return 0;
}

// The device copy of `bytes` at host address h: found, or uploaded now (NULL + error).
const void *device_copy(CudaBackend *cb, const void *h, size_t bytes, const char *name) {
    if (cb->map_cap) {
        size_t i = hash_ptr(h, cb->map_cap);
        while (cb->map[i].host) {
            if (cb->map[i].host == h) {
                if (cb->map[i].bytes >= bytes) return cb->map[i].dev;
                break;  // same address, larger use: cannot happen for model tensors
            }
            i = (i + 1) & (size_t)(cb->map_cap - 1);
        }
    }
    if ((cb->map_n + 1) * 2 > cb->map_cap && map_grow(cb)) return NULL;
    void *d = g3cu_malloc(cb->cu, bytes);
    if (!d) {
        g3_error_prefix("tensor '%s' (%.1f MiB; %.1f MiB of weights already on the GPU)", name ? name : "?", bytes / 1048576.0,
                        cb->weight_bytes / 1048576.0);
        return NULL;
    }
    if (g3cu_upload(cb->cu, d, h, bytes)) { g3cu_free(cb->cu, d); return NULL; }
    size_t i = hash_ptr(h, cb->map_cap);
    while (cb->map[i].host && cb->map[i].host != h) i = (i + 1) & (size_t)(cb->map_cap - 1);
    if (cb->map[i].host) g3cu_free(cb->cu, cb->map[i].dev);  // replaced by the larger copy
    else cb->map_n++;
    cb->map[i] = MapEntry{h, d, bytes};
    cb->weight_bytes += bytes;
    return d;
}

// Whether p lies inside one of this backend's allocations (a training context's parameters).
bool owned(const CudaBackend *cb, const void *p) {
    const char *c = (const char *)p;
    int lo = 0, hi = cb->nallocs - 1;
    while (lo <= hi) {
        const int mid = (lo + hi) / 2;
        const CudaBackend::Alloc &a = cb->allocs[mid];
        if (c < a.p) hi = mid - 1;
        else if (c >= a.p + a.bytes) lo = mid + 1;
        else return true;
    }
    return false;
}

const void *weight_dev(CudaBackend *cb, const G3Weight *w, const char *name) {
    if (w->mem == G3_MEM_DEVICE || owned(cb, w->data)) return w->data;
    return device_copy(cb, w->data, (size_t)(w->rows * w->row_bytes), name);
}
// Norm weights reach the ops as host f32 vectors (model.h normf): their device copy.
const float *vec_dev(CudaBackend *cb, const float *h, long n) {
    if (owned(cb, h)) return h;
    return (const float *)device_copy(cb, h, (size_t)n * sizeof(float), "norm weight");
}

G3CuMode mode_of(G3MatmulMode m) { return m == G3_MM_EXACT ? G3CU_EXACT : G3CU_FAST; }

// Arithmetic ops cannot return errors through the table: the first failed launch is kept and
// reported by the next sync or download (every forward ends with one), like a fault inside a
// kernel.
void note(CudaBackend *cb, int rc) {
    if (rc && !cb->failed) {
        cb->failed = 1;
        snprintf(cb->failure, sizeof cb->failure, "%s", g3_error());
    }
}
int failed(CudaBackend *cb) {
    if (!cb->failed) return 0;
    cb->failed = 0;
    return g3_errorf("%s", cb->failure);
}

// ---- bf16 mode's operands ----
// Training's bf16 mode rounds both operands of every product to bf16 (the CPU's --matmul
// bf16). Rounded per product, one activation is rounded up to four times (q, k and v read
// xn1; a weight gradient and an input gradient read the same dy; the head's dlogits, 1 GB a
// chunk, twice) and every weight twice a step. So:
//  - the weight shadow: a bf16 copy of the training parameters (the bf16_shadow op, which the
//    trainer calls before a forward), kept current by AdamW, which writes it in its own pass
//    (train_ops.cu); products read weights that lie inside it in place;
//  - rounded operands are kept between products, found again by address and length. They
//    hold only between products: every op of the table that is not a product (linear,
//    linear_dx, gemm) empties the set when it starts and when it returns (the wrappers at the
//    end of this file), and a product drops those its output overlaps, so a kept copy is
//    never older than what it was rounded from. (Nothing outside this table writes a
//    trainer's buffers between two of its products.) The loss's gradient is rounded where it
//    is made: cross_entropy writes it into a slot too (cu_cross_entropy).
// Either way the products see the same bits as rounding per product; G3_CUDA_BF16_CACHE=0 and
// G3_CUDA_BF16_SHADOW=0 turn them off (tests compare the runs).

void rnd_clear(CudaBackend *cb) {
    for (auto &r : cb->rnd) r.src = NULL, r.used = 0;
}

// [p, p + n) floats were written: kept copies of them are stale, and so is the weight shadow.
void written(CudaBackend *cb, const void *p, size_t bytes) {
    const char *a = (const char *)p, *b = a + bytes;
    for (auto &r : cb->rnd)
        if (r.src && (const char *)r.src < b && a < (const char *)(r.src + r.n)) r.src = NULL;
    if (cb->shadow_ok && (const char *)cb->shadow_src < b && a < (const char *)(cb->shadow_src + cb->shadow_n)) cb->shadow_ok = 0;
    if (cb->ids_src && (const char *)cb->ids_src < b && a < (const char *)(cb->ids_src + cb->ids_n)) cb->ids_src = NULL;
}

void *grow(CudaBackend *cb, void **buf, size_t *have, size_t bytes);

// The row pitch (elements) that products use for rows of len values: len where that is a
// multiple of 8 (16 bytes), else len rounded up to 64. cuBLAS's fast Hopper kernels need
// 16-byte aligned rows; the head's vocabulary (GemmaZero's 50,257) is not, and its three
// products ran at 94-143 TFLOP/s against 480-720 for the others (the H200 profile of
// 2026-12-07). Single rows and G3_CUDA_PAD=0 keep len.
long pitch_of(const CudaBackend *cb, long rows, long len) {
    return !cb->pad || rows < 2 || len % 8 == 0 ? len : (len + 63) / 64 * 64;
}

// A slot for n bf16 values, other than `keep` (the other operand of the same product): the
// least recently used of those large enough, else the least recently used, grown. Free (src
// NULL) until the caller registers what it holds. NULL + error.
CudaBackend::Rounded *slot_for(CudaBackend *cb, long n, const uint16_t *keep) {
    const size_t bytes = (size_t)n * 2;
    CudaBackend::Rounded *s = NULL;
    for (auto &r : cb->rnd)
        if ((!keep || r.buf != keep) && r.cap >= bytes && (!s || r.used < s->used)) s = &r;
    if (!s)
        for (auto &r : cb->rnd)
            if ((!keep || r.buf != keep) && (!s || r.used < s->used)) s = &r;
    if (s->cap < bytes) {
        g3cu_free(cb->cu, s->buf);  // waits for the device: no queued product still reads it
        s->cap = 0;
        if (!(s->buf = (uint16_t *)g3cu_malloc(cb->cu, bytes))) return NULL;
        s->cap = bytes;
    }
    s->src = NULL;
    s->rows_pad = 0;
    return s;
}

// x[rows][len] (f32, device, contiguous) as bf16 rows *pitch apart: in the weight shadow
// (contiguous), a kept rounding of the same layout, or rounded now (rows padded per pitch_of)
// into a slot other than `keep` (the other operand of the same product). NULL + error.
const uint16_t *bf16_of(CudaBackend *cb, const float *x, long rows, long len, const uint16_t *keep, long *pitch) {
    const long n = rows * len, want = pitch_of(cb, rows, len);
    *pitch = len;
    if (cb->shadow_ok && x >= cb->shadow_src && x + n <= cb->shadow_src + cb->shadow_n) return cb->shadow + (x - cb->shadow_src);
    for (auto &r : cb->rnd)
        if (r.src == x && r.n >= n && (want == len ? r.pitch == r.len : r.len == len && r.pitch == want)) {
            r.used = ++cb->rnd_clock;
            *pitch = want;
            return r.buf;
        }
    CudaBackend::Rounded *s = slot_for(cb, rows * want, keep);
    if (!s || g3cu_round_bf16_pitch(cb->cu, s->buf, want, x, rows, len)) return NULL;
    if (cb->rnd_keep) s->src = x, s->n = n, s->len = len, s->pitch = want;
    s->used = ++cb->rnd_clock;
    *pitch = want;
    return s->buf;
}

// The inner or output dimension of a product padded to, when it is the vocabulary's kind of
// length (not a multiple of 8, and long): as pitch_of's rounding.
static long padded_dim(const CudaBackend *cb, long len) { return cb->pad && len % 8 && len >= 1024 ? (len + 63) / 64 * 64 : len; }

// x[rows][len] (f32, device) as contiguous bf16 rows followed by zero rows up to rows_pad: the
// head's embedding with its vocabulary padded (bf16_product). Copied from the weight shadow
// where x lies in it, else rounded; kept like a rounding, in a slot other than `keep`.
const uint16_t *bf16_rows_padded(CudaBackend *cb, const float *x, long rows, long len, long rows_pad, const uint16_t *keep) {
    const long n = rows * len;
    for (auto &r : cb->rnd)
        if (r.src == x && r.n == n && r.len == len && r.pitch == len && r.rows_pad >= rows_pad) {
            r.used = ++cb->rnd_clock;
            return r.buf;
        }
    CudaBackend::Rounded *s = slot_for(cb, rows_pad * len, keep);
    if (!s) return NULL;
    const bool shadowed = cb->shadow_ok && x >= cb->shadow_src && x + n <= cb->shadow_src + cb->shadow_n;
    if (shadowed ? g3cu_check(cudaMemcpyAsync(s->buf, cb->shadow + (x - cb->shadow_src), (size_t)n * 2, cudaMemcpyDeviceToDevice,
                                              cb->cu->stream), "padded operand")
                 : g3cu_round_bf16(cb->cu, s->buf, x, n))
        return NULL;
    if (g3cu_check(cudaMemsetAsync(s->buf + n, 0, (size_t)(rows_pad - rows) * len * 2, cb->cu->stream), "padded operand"))
        return NULL;
    if (cb->rnd_keep) s->src = x, s->n = n, s->len = len, s->pitch = len, s->rows_pad = rows_pad;
    s->used = ++cb->rnd_clock;
    return s->buf;
}

// C[M, N] (+)= op(A) . op(B) with both operands rounded to bf16 (g3cu_gemm's FAST mode), each
// taken from the shadow or the kept roundings where it is there. An output whose rows are not
// 16-byte aligned (N = the vocabulary: the head's logits) is made at the padded pitch in a
// buffer of this backend and copied into C (a pass over the output, a fraction of what the
// unaligned kernels lose); accumulation (beta 1) and small outputs write C in place.
// The vocabulary (the head's 50,257 rows of E) is also padded as a dimension, with zero rows
// of E and zero columns of dlogits: with only the pitches aligned, cuBLAS still ran the logits
// product (N = V) at 95 TFLOP/s and dxf (K = V) at 125, against 467 for dE, whose V is M (the
// H100 profile of 2026-12-07 14:02 UTC).
int bf16_product(CudaBackend *cb, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    long lda, ldb;
    const long Np = padded_dim(cb, N), Kp = padded_dim(cb, K);
    if (!ta && tb && Np != N && !accumulate && M >= 2) {  // logits[M, V] = xf . E^T: E's rows padded, the output at pitch Np
        const uint16_t *a = bf16_of(cb, A, M, K, NULL, &lda);
        const uint16_t *b = a ? bf16_rows_padded(cb, B, N, K, Np, a) : NULL;
        float *o = b ? (float *)grow(cb, (void **)&cb->padout, &cb->padout_bytes, (size_t)M * Np * sizeof(float)) : NULL;
        int rc = !o || g3cu_gemm_bf16_ld(cb->cu, 0, 1, M, (int)Np, K, a, lda, b, K, o, Np, 0) ? -1 : 0;
        if (!rc) rc = g3cu_copy_rows(cb->cu, C, N, o, Np, M, N);
        written(cb, C, (size_t)M * N * sizeof(float));
        return rc;
    }
    if (!ta && !tb && Kp != K && M >= 2) {  // dxf[M, C] = dlogits . E: the sum over V padded
        const uint16_t *a = bf16_of(cb, A, M, K, NULL, &lda);  // at pitch Kp, the padding zero (cross_entropy, round_bf16_pitch)
        const uint16_t *b = a ? bf16_rows_padded(cb, B, K, N, Kp, a) : NULL;
        const int rc = !b                                                             ? -1
                       : lda != Kp ? g3_errorf("cuda gemm: dlogits at pitch %ld, not the padded %ld", lda, Kp)
                       : g3cu_gemm_bf16_ld(cb->cu, 0, 0, M, N, (int)Kp, a, Kp, b, N, C, N, accumulate) ? -1
                                                                                         : 0;
        written(cb, C, (size_t)M * N * sizeof(float));
        return rc;
    }
    const uint16_t *a = bf16_of(cb, A, ta ? K : M, ta ? M : K, NULL, &lda);
    const uint16_t *b = a ? bf16_of(cb, B, tb ? N : K, tb ? K : N, a, &ldb) : NULL;
    if (!b) return -1;
    const long ldc = pitch_of(cb, M, N);
    int rc;
    if (ldc != N && !accumulate && (long)M * N >= (1L << 20)) {
        const size_t bytes = (size_t)M * ldc * sizeof(float);
        float *o = (float *)grow(cb, (void **)&cb->padout, &cb->padout_bytes, bytes);
        rc = !o || g3cu_gemm_bf16_ld(cb->cu, ta, tb, M, N, K, a, lda, b, ldb, o, ldc, 0) ? -1 : 0;
        if (!rc) rc = g3cu_copy_rows(cb->cu, C, N, o, ldc, M, N);
    } else {
        rc = g3cu_gemm_bf16_ld(cb->cu, ta, tb, M, N, K, a, lda, b, ldb, C, N, accumulate);
    }
    written(cb, C, (size_t)M * N * sizeof(float));
    return rc;
}

int cu_bf16_shadow(G3Backend *be, const float *p, long n, int force) {
    CudaBackend *cb = cb_of(be);
    if (!force && cb->shadow_ok && cb->shadow_src == p && cb->shadow_n == n) return 0;
    cb->shadow_ok = 0;
    if (n <= 0) return 0;
    const size_t bytes = (size_t)n * 2;
    if (bytes > cb->shadow_cap) {
        g3cu_free(cb->cu, cb->shadow);
        cb->shadow_cap = 0;
        if (!(cb->shadow = (uint16_t *)g3cu_malloc(cb->cu, bytes))) {
            g3_error_prefix("the bf16 copy of %ld training parameters", n);
            return -1;
        }
        cb->shadow_cap = bytes;
    }
    if (g3cu_round_bf16(cb->cu, cb->shadow, p, n)) return -1;
    cb->shadow_src = p;
    cb->shadow_n = n;
    cb->shadow_ok = 1;
    return 0;
}

// ---- memory ----

void *cu_alloc(G3Backend *be, size_t bytes) {
    CudaBackend *cb = cb_of(be);
    if (cb->nallocs == cb->allocs_cap) {
        const int cap = cb->allocs_cap ? 2 * cb->allocs_cap : 64;
        CudaBackend::Alloc *a = (CudaBackend::Alloc *)realloc(cb->allocs, (size_t)cap * sizeof *a);
        if (!a) { g3_errorf("cuda: out of host memory"); return NULL; }
        cb->allocs = a;
        cb->allocs_cap = cap;
    }
    void *p = g3cu_malloc(cb->cu, bytes);
    if (p && g3cu_memset(cb->cu, p, 0, bytes ? bytes : 1)) { g3cu_free(cb->cu, p); return NULL; }
    if (!p) return NULL;
    int i = cb->nallocs++;
    while (i > 0 && cb->allocs[i - 1].p > (const char *)p) { cb->allocs[i] = cb->allocs[i - 1]; i--; }
    cb->allocs[i] = CudaBackend::Alloc{(const char *)p, bytes ? bytes : 1};
    return p;
}
void cu_free(G3Backend *be, void *p) {
    CudaBackend *cb = cb_of(be);
    if (!p) return;
    // what lived there (kept roundings, the weights' copy, staged ids) is gone with it
    for (int i = 0; i < cb->nallocs; i++)
        if (cb->allocs[i].p == (const char *)p) written(cb, p, cb->allocs[i].bytes);
    if (cb->shadow_src == (const float *)p) cb->shadow_src = NULL, cb->shadow_n = 0;
    for (int i = 0; i < cb->nallocs; i++)
        if (cb->allocs[i].p == (const char *)p) {
            memmove(cb->allocs + i, cb->allocs + i + 1, (size_t)(cb->nallocs - i - 1) * sizeof *cb->allocs);
            cb->nallocs--;
            break;
        }
    g3cu_free(cb->cu, p);
}
int cu_to_device(G3Backend *be, void *dst, const void *src, size_t bytes) {
    written(cb_of(be), dst, bytes);
    return bytes ? g3cu_upload(cb_of(be)->cu, dst, src, bytes) : 0;
}
int cu_to_host(G3Backend *be, void *dst, const void *src, size_t bytes) {
    CudaBackend *cb = cb_of(be);
    if ((bytes ? g3cu_download(cb->cu, dst, src, bytes) : g3cu_sync(cb->cu))) return -1;
    return failed(cb);
}
int cu_sync(G3Backend *be) { return g3cu_sync(cb_of(be)->cu) || failed(cb_of(be)) ? -1 : 0; }

int cu_weight_check(G3Backend *be, const G3Weight *w, const char *name) {
    if (w->type != G3_F32 && w->type != G3_BF16 && w->type != G3_F16)
        return g3_errorf("tensor '%s': backend cuda has no matrix kernel for weights of type %s yet (F32, BF16, F16)",
                         name ? name : "?", g3_dtype_name(w->type));
    return weight_dev(cb_of(be), w, name) ? 0 : -1;
}

// ---- matrix products ----

int cu_linear(G3Backend *be, float *y, const float *x, const G3Weight *w, int R, G3MatmulMode mode) {
    CudaBackend *cb = cb_of(be);
    const void *wd = weight_dev(cb, w, NULL);
    if (!wd) return -1;
    // training's bf16 mode over f32 master weights: both operands rounded (the CPU's
    // --matmul bf16), on the bf16 tensor cores; a few rows stay exact as in inference
    if (mode == G3_MM_BF16 && w->type == G3_F32 && R > 16)
        return bf16_product(cb, 0, 1, R, (int)w->rows, (int)w->cols, x, (const float *)wd, y, 0);
    written(cb, y, (size_t)R * w->rows * sizeof(float));
    return g3cu_linear(cb->cu, y, x, wd, w->type, R, (int)w->cols, (int)w->rows, mode_of(mode));
}

// q, k and v (or any products of one x) in one launch; weights of other types or widths, and
// training's rounded bf16 products, one linear each.
static int cu_linear_multi(G3Backend *be, int n, float *const *y, const float *x, const G3Weight *const *w, int R,
                           G3MatmulMode mode) {
    CudaBackend *cb = cb_of(be);
    const void *wd[3];
    int N[3], same = n >= 1 && n <= 3 && mode != G3_MM_BF16;
    for (int i = 0; i < n && i < 3; i++) {
        if (!(wd[i] = weight_dev(cb, w[i], NULL))) return -1;
        N[i] = (int)w[i]->rows;
        same &= w[i]->type == w[0]->type && w[i]->cols == w[0]->cols;
    }
    if (!same) {
        for (int i = 0; i < n; i++)
            if (cu_linear(be, y[i], x, w[i], R, mode)) return -1;
        return 0;
    }
    return g3cu_linear_multi(cb->cu, n, y, x, wd, w[0]->type, R, (int)w[0]->cols, N, mode_of(mode));
}

static int cu_linear_geglu(G3Backend *be, float *a, float *u, const float *x, const G3Weight *wg, const G3Weight *wu, int R,
                           int erf_form, G3MatmulMode mode) {
    CudaBackend *cb = cb_of(be);
    const void *dg = weight_dev(cb, wg, NULL), *du = weight_dev(cb, wu, NULL);
    if (!dg || !du) return -1;
    if (mode == G3_MM_BF16 || wg->type != wu->type || wg->rows != wu->rows || wg->cols != wu->cols) {
        if (cu_linear(be, a, x, wg, R, mode) || cu_linear(be, u, x, wu, R, mode)) return -1;
        return g3cu_geglu(cb->cu, a, u, (long)R * wg->rows, erf_form);
    }
    return g3cu_linear_geglu(cb->cu, a, u, x, dg, du, wg->type, R, (int)wg->cols, (int)wg->rows, erf_form, mode_of(mode));
}

// A device buffer of at least `bytes` kept in *buf (grown, never shrunk); NULL + error.
void *grow(CudaBackend *cb, void **buf, size_t *have, size_t bytes) {
    if (bytes <= *have) return *buf;
    g3cu_free(cb->cu, *buf);
    *buf = NULL;
    *have = 0;
    if (!(*buf = g3cu_malloc(cb->cu, bytes))) return NULL;
    *have = bytes;
    return *buf;
}

// dx[R, K] (+)= dy[R, N] . W[N, K]: f32 weights (a training context's parameters), or a
// frozen 16-bit base (LoRA, issue 19): widened exactly into a buffer of this backend for the
// product (the base stays stored as it is; the widened copy is rewritten by the next call).
int cu_linear_dx(G3Backend *be, float *dx, const float *dy, const G3Weight *w, int R, int accumulate, G3MatmulMode mode) {
    CudaBackend *cb = cb_of(be);
    if (w->type != G3_F32 && w->type != G3_BF16 && w->type != G3_F16)
        return g3_errorf("backend cuda: the input gradient of a linear layer needs F32, BF16 or F16 weights, not %s",
                         g3_dtype_name(w->type));
    const void *wd = weight_dev(cb, w, NULL);
    if (!wd) return -1;
    if (mode == G3_MM_BF16 && w->type == G3_F32)
        return bf16_product(cb, 0, 0, R, (int)w->cols, (int)w->rows, dy, (const float *)wd, dx, accumulate);
    if (mode == G3_MM_BF16 && w->type == G3_BF16) {  // a frozen bf16 base (LoRA): its bits are the operand as stored
        long lda;
        const uint16_t *a = bf16_of(cb, dy, R, (long)w->rows, NULL, &lda);
        if (!a) return -1;
        const int rc = g3cu_gemm_bf16_ld(cb->cu, 0, 0, R, (int)w->cols, (int)w->rows, a, lda, (const uint16_t *)wd, (long)w->cols, dx,
                                         (long)w->cols, accumulate);
        written(cb, dx, (size_t)R * w->cols * sizeof(float));
        return rc;
    }
    written(cb, dx, (size_t)R * w->cols * sizeof(float));
    if (w->type != G3_F32) {
        const long n = (long)(w->rows * w->cols);
        float *wf = (float *)grow(cb, (void **)&cb->wide, &cb->wide_bytes, (size_t)n * sizeof(float));
        if (!wf || g3cu_widen(cb->cu, wf, wd, w->type, n)) return -1;
        wd = wf;
    }
    return g3cu_gemm(cb->cu, 0, 0, R, (int)w->cols, (int)w->rows, dy, (const float *)wd, dx, accumulate,
                     mode == G3_MM_BF16 ? G3CU_FAST : G3CU_EXACT);
}

void cu_gemm(G3Backend *be, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
             G3MatmulMode mode) {
    // other than exact, this is training's bf16 mode (both operands rounded); inference never calls gemm
    CudaBackend *cb = cb_of(be);
    if (mode != G3_MM_EXACT) {
        note(cb, bf16_product(cb, ta, tb, M, N, K, A, B, C, accumulate));
        return;
    }
    written(cb, C, (size_t)M * N * sizeof(float));
    note(cb, g3cu_gemm(cb->cu, ta, tb, M, N, K, A, B, C, accumulate, G3CU_EXACT));
}

// ---- row-wise ops ----

void cu_rmsnorm(G3Backend *be, float *y, float *rstd, const float *x, const float *w, int R, int n, float eps) {
    CudaBackend *cb = cb_of(be);
    const float *wd = vec_dev(cb, w, n);
    if (!wd) { note(cb, -1); return; }
    note(cb, g3cu_rmsnorm_rstd(cb->cu, y, rstd, x, wd, R, n, eps));
}

void cu_rope(G3Backend *be, float *x, const float *cos, const float *sin, int R, int nh, int HD) {
    note(cb_of(be), g3cu_qk_norm_rope(cb_of(be)->cu, x, NULL, NULL, NULL, cos, sin, R, nh, 0, HD, 0.f));
}

void cu_geglu(G3Backend *be, float *a, const float *g, const float *u, long n, int erf_form) {
    CudaBackend *cb = cb_of(be);
    if (a != g && g3cu_copy(cb->cu, a, g, (size_t)n * sizeof(float))) { note(cb, -1); return; }
    note(cb, g3cu_geglu(cb->cu, a, u, n, erf_form));
}

// Host staging for the embedding's backward (training): page-locked buffers for R ids and
// their grouping, a device buffer for the upload, two events. 0 or -1 (then no staging).
int ids_staging(CudaBackend *cb, int R) {
    if (R <= cb->ids_cap) return 0;
    if (cb->ids_ev) cudaEventSynchronize(cb->ids_ev);  // the last staging copy wrote ids_h
    if (cb->grp_ev) cudaEventSynchronize(cb->grp_ev);  // the last upload read grp_h
    cudaFreeHost(cb->ids_h);
    cudaFreeHost(cb->grp_h);
    g3cu_free(cb->cu, cb->grp_d);
    cb->ids_h = cb->grp_h = cb->grp_d = NULL;
    cb->ids_cap = 0;
    const size_t gb = sizeof(int32_t) * (3 * (size_t)R + 1);
    if ((!cb->ids_ev && cudaEventCreateWithFlags(&cb->ids_ev, cudaEventDisableTiming) != cudaSuccess) ||
        (!cb->grp_ev && cudaEventCreateWithFlags(&cb->grp_ev, cudaEventDisableTiming) != cudaSuccess) ||
        cudaMallocHost(&cb->ids_h, sizeof(int32_t) * (size_t)R) != cudaSuccess || cudaMallocHost(&cb->grp_h, gb) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    if (!(cb->grp_d = (int32_t *)g3cu_malloc(cb->cu, gb))) return -1;
    cb->ids_cap = R;
    return 0;
}

int cu_embed(G3Backend *be, float *x, const int32_t *ids, const G3Weight *E, int R, float scale) {
    CudaBackend *cb = cb_of(be);
    const void *ed = weight_dev(cb, E, "embedding");
    if (!ed) return -1;
    if (g3cu_embed(cb->cu, x, ed, E->type, ids, R, (int)E->cols, (int)E->rows, scale)) return -1;
    // training: the ids follow to the host while the step runs, for the backward's grouping
    // (never while a graph is recorded: inference)
    cb->ids_src = NULL;
    if (cb->trains && !cb->recording && !ids_staging(cb, R)) {
        if (g3cu_check(cudaMemcpyAsync(cb->ids_h, ids, sizeof(int32_t) * (size_t)R, cudaMemcpyDeviceToHost, cb->cu->stream),
                       "staging the ids") ||
            g3cu_check(cudaEventRecord(cb->ids_ev, cb->cu->stream), "staging the ids"))
            return -1;
        cb->ids_src = ids;
        cb->ids_n = R;
    }
    return 0;
}

void cu_add(G3Backend *be, float *y, const float *a, const float *b, long n) {
    CudaBackend *cb = cb_of(be);
    written(cb, y, (size_t)n * sizeof(float));
    if (y == a) { note(cb, g3cu_add(cb->cu, y, b, n)); return; }
    if (y == b) { note(cb, g3cu_add(cb->cu, y, a, n)); return; }
    if (g3cu_copy(cb->cu, y, a, (size_t)n * sizeof(float))) { note(cb, -1); return; }
    note(cb, g3cu_add(cb->cu, y, b, n));
}

void cu_axpy(G3Backend *be, float *y, float alpha, const float *x, long n) {
    written(cb_of(be), y, (size_t)n * sizeof(float));
    note(cb_of(be), g3cu_axpy(cb_of(be)->cu, y, alpha, x, n));
}

void cu_dropout(G3Backend *be, float *y, const float *x, long n, float p, float scale, uint64_t seed, uint32_t tag, int accumulate) {
    written(cb_of(be), y, (size_t)n * sizeof(float));  // rank-1 updates scale the weights with it
    note(cb_of(be), g3cu_dropout(cb_of(be)->cu, y, x, n, p, scale, seed, tag, accumulate));
}

int cu_argmax(G3Backend *be, int32_t *out, const float *x, int R, int n) { return g3cu_argmax(cb_of(be)->cu, out, x, R, n); }

static_assert(sizeof(G3SampleRow) == sizeof(G3CuSampleRow) && offsetof(G3SampleRow, frequency) == offsetof(G3CuSampleRow, frequency) &&
                  (int)G3_SAMPLE_TOP_K_MAX == (int)G3CU_TOPK_MAX,
              "backend.h's G3SampleRow and g3cuda.h's G3CuSampleRow must agree");

int cu_sample_top_k(G3Backend *be, const float *x, int R, int n, const G3SampleRow *rows, const int32_t *win, int nwin, int kmax,
                    int32_t *ids, float *vals, int32_t *bad) {
    CudaBackend *cb = cb_of(be);
    if (failed(cb)) return -1;
    if (!cb->sampler && !(cb->sampler = g3cu_sampler_new(cb->cu))) return -1;
    return g3cu_sample_top_k(cb->sampler, x, R, n, (const G3CuSampleRow *)rows, win, nwin, kmax, ids, vals, bad);
}

void cu_softcap(G3Backend *be, float *x, long n, float cap) { note(cb_of(be), g3cu_softcap(cb_of(be)->cu, x, n, cap)); }

// ---- the vision tower (vision_ops.cu, vision_attn.cu): its vectors (biases, norms, the
// position table) come as host addresses, copied once like the norm weights ----

void cu_layernorm(G3Backend *be, float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int exact) {
    CudaBackend *cb = cb_of(be);
    const float *wd = vec_dev(cb, w, n), *bd = wd ? vec_dev(cb, b, n) : NULL;
    if (!bd) { note(cb, -1); return; }
    note(cb, g3cu_layernorm(cb->cu, y, x, wd, bd, R, n, eps));
}

void cu_bias_act(G3Backend *be, float *y, const float *b, int R, int n, int act, int exact) {
    CudaBackend *cb = cb_of(be);
    const float *bd = b ? vec_dev(cb, b, n) : NULL;
    if (b && !bd) { note(cb, -1); return; }
    note(cb, g3cu_bias_act(cb->cu, y, bd, R, n, act));
}

size_t cu_attention_full_workspace(G3Backend *be, int T, int NH, int HD) { return g3cu_attn_full_workspace(T, NH, HD); }

int cu_attention_full(G3Backend *be, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                      float scale, G3MatmulMode mode) {
    return g3cu_attn_full(cb_of(be)->cu, out, work, q, k, v, T, NH, HD, scale, mode == G3_MM_BF16);
}

// ---- training: backward ops, batch attention, loss ----

void cu_rmsnorm_backward(G3Backend *be, float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int R, int n, int accumulate) {
    CudaBackend *cb = cb_of(be);
    const float *wd = vec_dev(cb, w, n);
    if (!wd) { note(cb, -1); return; }
    note(cb, g3cu_rmsnorm_backward(cb->cu, dx, dw, dy, x, wd, rstd, R, n, accumulate));
}

void cu_rope_backward(G3Backend *be, float *dx, const float *cos, const float *sin, int R, int nh, int HD) {
    note(cb_of(be), g3cu_rope_backward(cb_of(be)->cu, dx, cos, sin, R, nh, HD));
}

void cu_geglu_backward(G3Backend *be, float *dg, float *du, const float *da, const float *g, const float *u, long n, int erf_form) {
    note(cb_of(be), g3cu_geglu_backward(cb_of(be)->cu, NULL, dg, du, da, g, u, n, erf_form));
}

// da = dmo . Wd into dg, then dg, du and a = gelu(g) u in one element-wise pass.
int cu_mlp_down_backward(G3Backend *be, float *a, float *dg, float *du, const float *dmo, const G3Weight *wd, const float *g,
                         const float *u, int R, int F, int erf_form, G3MatmulMode mode) {
    if (cu_linear_dx(be, dg, dmo, wd, R, 0, mode)) return -1;
    return g3cu_geglu_backward(cb_of(be)->cu, a, dg, du, dg, g, u, (long)R * F, erf_form);
}

// dE[ids[r]] += dx[r] * scale with the rows grouped by id on the host. The ids the forward's
// embedding staged (the same ids, unwritten since: written() drops them otherwise) were copied
// long before: grouping them and uploading the groups from page-locked memory queue the
// kernel without waiting for the device (the host sorts while the GPU runs the backward). The
// first call, and any call without staged ids, downloads the ids and waits.
void cu_embed_backward(G3Backend *be, float *dE, const float *dx, const int32_t *ids, int R, int C, float scale) {
    CudaBackend *cb = cb_of(be);
    cb->trains = 1;
    if (R == 0) return;
    if (cb->ids_src != ids || cb->ids_n != R) {
        note(cb, g3cu_embed_backward(cb->cu, dE, dx, ids, R, C, scale));
        return;
    }
    if (g3cu_check(cudaEventSynchronize(cb->ids_ev), "staged ids") || g3cu_check(cudaEventSynchronize(cb->grp_ev), "embedding groups")) {
        note(cb, -1);
        return;
    }
    const int nu = g3cu_embed_group(cb->grp_h, cb->ids_h, R);
    const size_t gb = sizeof(int32_t) * (size_t)(R + 2 * nu + 1);
    note(cb, g3cu_check(cudaMemcpyAsync(cb->grp_d, cb->grp_h, gb, cudaMemcpyHostToDevice, cb->cu->stream), "embedding groups") ||
                     g3cu_check(cudaEventRecord(cb->grp_ev, cb->cu->stream), "embedding groups") ||
                     g3cu_embed_backward_grouped(cb->cu, dE, dx, cb->grp_d, nu, R, C, scale));
}

// With backward in bf16 training (the weights' copy exists: bf16_shadow was called) the
// gradient is also written rounded to bf16, into a slot of the kept roundings registered as
// z's: the head's dxf and dE products read it as made. Like a product, this op keeps the other
// roundings and drops those of what it writes (the wrappers leave it alone).
void cu_cross_entropy(G3Backend *be, double *loss, float *z, const int32_t *targets, int R, int V, float cap, float dscale,
                      int backward) {
    CudaBackend *cb = cb_of(be);
    written(cb, loss, (size_t)R * sizeof(double));
    written(cb, z, (size_t)R * V * sizeof(float));
    const long pitch = pitch_of(cb, R, V);  // the layout bf16_of asks for: the products find it
    CudaBackend::Rounded *s = backward && cb->rnd_keep && cb->shadow_ok && R > 0 ? slot_for(cb, (long)R * pitch, NULL) : NULL;
    if (backward && cb->rnd_keep && cb->shadow_ok && R > 0 && !s) g3_error_clear();  // no slot: the products round z themselves
    note(cb, g3cu_cross_entropy(cb->cu, loss, z, s ? s->buf : NULL, pitch, targets, R, V, cap, dscale, backward));
    if (s) {
        s->src = z;
        s->n = (long)R * V;
        s->len = V;
        s->pitch = pitch;
        s->used = ++cb->rnd_clock;
    }
}

// Training's bf16 mode takes the tensor-core attention (bf16 operands), f32 keeps the f32 kernels.
int tc_attn(G3Backend *be, G3MatmulMode mode) { return mode == G3_MM_BF16 && !cb_of(be)->attn_f32; }

int cu_attention(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v, int B, int T, int NH,
                 int NKV, int HD, int window, float scale, float softcap, G3MatmulMode mode) {
    return g3cu_attention_train(cb_of(be)->cu, out, lse, q, k, v, B, T, NH, NKV, HD, window, scale, softcap, tc_attn(be, mode));
}

int cu_attention_backward(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *out, const float *q, const float *k,
                          const float *v, const float *lse, int B, int T, int NH, int NKV, int HD, int window, float scale,
                          float softcap, G3MatmulMode mode) {
    return g3cu_attention_train_backward(cb_of(be)->cu, dq, dk, dv, dout, out, q, k, v, lse, B, T, NH, NKV, HD, window, scale, softcap,
                                         tc_attn(be, mode));
}

// The mask's host arrays uploaded for one call (a few bytes a row; packed rows change every
// micro-batch) into the device view the kernels read (issue 19: `train --pack` on the GPU).
int mask_upload(CudaBackend *cb, G3CuMask *dm, const G3AttnMask *m, int B, int T) {
    const long rows = m->stride ? (long)B * T : T;
    const size_t nb = (size_t)rows * sizeof(int32_t);
    int32_t *d = (int32_t *)grow(cb, (void **)&cb->mask_d, &cb->mask_bytes, 4 * nb);
    if (!d) return -1;
    *dm = G3CuMask{d, NULL, NULL, NULL, m->stride};
    if (g3cu_upload(cb->cu, d, m->pos, nb)) return -1;
    if (m->block) {
        if (g3cu_upload(cb->cu, d + rows, m->block, nb)) return -1;
        dm->block = d + rows;
    }
    if (m->seg) {
        if (g3cu_upload(cb->cu, d + 2 * rows, m->seg, nb)) return -1;
        dm->seg = d + 2 * rows;
    }
    if (m->noisy) {
        if (g3cu_upload(cb->cu, d + 3 * rows, m->noisy, (size_t)rows)) return -1;
        dm->noisy = (const uint8_t *)(d + 3 * rows);
    }
    return 0;
}

int cu_attention_masked(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v, const G3AttnMask *mask,
                        int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap) {
    G3CuMask m;
    if (mask_upload(cb_of(be), &m, mask, B, T)) return -1;
    return g3cu_attention_masked(cb_of(be)->cu, out, lse, q, k, v, &m, B, T, NH, NKV, HD, window, scale, softcap);
}

int cu_attention_masked_backward(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                                 const float *v, const float *lse, const G3AttnMask *mask, int B, int T, int NH, int NKV, int HD,
                                 int window, float scale, float softcap) {
    G3CuMask m;
    if (mask_upload(cb_of(be), &m, mask, B, T)) return -1;
    return g3cu_attention_masked_backward(cb_of(be)->cu, dq, dk, dv, dout, q, k, v, lse, &m, B, T, NH, NKV, HD, window, scale, softcap);
}

size_t cu_attention_workspace(G3Backend *be, int B, int T, int NH, int HD) {
    (void)be;
    (void)HD;
    return (size_t)B * T * NH * sizeof(float);  // backward's D
}

int cu_zero(G3Backend *be, void *p, size_t bytes) {
    written(cb_of(be), p, bytes);
    return bytes ? g3cu_memset(cb_of(be)->cu, p, 0, bytes) : 0;
}

double cu_sumsq(G3Backend *be, const float *x, long n) {
    CudaBackend *cb = cb_of(be);
    double s;
    return g3cu_sumsq(cb->cu, &s, x, n) || failed(cb) ? -1.0 : s;
}

int cu_adamw(G3Backend *be, float *p, const float *g, float *m, float *v, long n, const float k[8], float decay_mul) {
    const G3CuAdamW ka = {k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]};
    CudaBackend *cb = cb_of(be);
    // inside the weights' bf16 copy: the step writes it too (it stays current); elsewhere the
    // copy, if it overlaps, is stale
    uint16_t *pb = NULL;
    if (cb->shadow_ok && p >= cb->shadow_src && p + n <= cb->shadow_src + cb->shadow_n) pb = cb->shadow + (p - cb->shadow_src);
    else written(cb, p, (size_t)n * sizeof(float));
    return g3cu_adamw(cb->cu, p, pb, g, m, v, n, &ka, decay_mul);
}

int cu_adamw8(G3Backend *be, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *mmax, float *vmax, long n, const float k[8],
              float decay_mul) {
    const G3CuAdamW ka = {k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]};
    CudaBackend *cb = cb_of(be);
    if (!cb->q8_tables) {  // the CPU's own tables, so that the codes are the CPU's
        const size_t bytes = 4 * 256 * sizeof(float);
        float *t = (float *)g3cu_malloc(cb->cu, bytes);
        if (!t || g3cu_upload(cb->cu, t, g3_adamw8_tables(), bytes)) {
            g3cu_free(cb->cu, t);
            return g3_error_prefix("the 8-bit AdamW code tables");
        }
        cb->q8_tables = t;
    }
    uint16_t *pb = NULL;  // the weights' bf16 copy as in cu_adamw
    if (cb->shadow_ok && p >= cb->shadow_src && p + n <= cb->shadow_src + cb->shadow_n) pb = cb->shadow + (p - cb->shadow_src);
    else written(cb, p, (size_t)n * sizeof(float));
    return g3cu_adamw8(cb->cu, p, pb, g, mq, vq, mmax, vmax, n, cb->q8_tables, &ka, decay_mul);
}

// ---- attention over the cache ----

// The rows' metadata for these segments, on the device: rebuilt only when the segments
// differ from the previous call's (the layers of one forward share them).
int meta_for(CudaBackend *cb, const G3Segment *segs, int nseg, int *rows_out) {
    int rows = 0;
    for (int i = 0; i < nseg; i++) rows += segs[i].n;
    *rows_out = rows;
    if (nseg == cb->nseg && rows == cb->meta_rows && !memcmp(segs, cb->segs, (size_t)nseg * sizeof *segs)) return 0;
    if (nseg > cb->segs_cap) {
        G3Segment *s = (G3Segment *)realloc(cb->segs, (size_t)nseg * sizeof *s);
        if (!s) return g3_errorf("cuda: out of host memory");
        cb->segs = s;
        cb->segs_cap = nseg;
    }
    if (rows > cb->meta_cap) {
        G3CuRow *h = (G3CuRow *)realloc(cb->meta_h, (size_t)rows * sizeof *h);
        if (!h) return g3_errorf("cuda: out of host memory");
        cb->meta_h = h;
        g3cu_free(cb->cu, cb->meta_d);
        if (!(cb->meta_d = (G3CuRow *)g3cu_malloc(cb->cu, (size_t)rows * sizeof(G3CuRow)))) { cb->meta_cap = 0; return -1; }
        cb->meta_cap = rows;
    }
    for (int i = 0, r = 0; i < nseg; i++)
        for (int k = 0; k < segs[i].n; k++, r++) cb->meta_h[r] = G3CuRow{segs[i].seq, segs[i].pos0 + k, r - k, segs[i].n};
    cb->nseg = -1;  // invalid until the upload is queued
    if (g3cu_upload(cb->cu, cb->meta_d, cb->meta_h, (size_t)rows * sizeof(G3CuRow))) return -1;
    memcpy(cb->segs, segs, (size_t)nseg * sizeof *segs);
    cb->nseg = nseg;
    cb->meta_rows = rows;
    return 0;
}

G3CuAttn attn_of(const G3KVCache *kv, int layer, int NH, int window, float scale, float softcap) {
    return G3CuAttn{NH, kv->nkv, kv->hd, kv->cap[layer], window, scale, softcap};
}

// A hooked layer: the CPU backend's attention over host copies of q, k, v and the layer's
// cache, so the hook sees (and may edit) scores and patterns exactly as on the CPU.
int attention_on_host(CudaBackend *cb, float *out, const G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                      const float *q, const float *k, const float *v, int rows, int NH, int window, float scale,
                      float softcap, const G3AttnHook *hook) {
    const long QD = (long)NH * kv->hd, KD = (long)kv->nkv * kv->hd;
    const long cn = (long)kv->slots * kv->nkv * kv->cap[layer] * kv->hd;
    float *buf = (float *)malloc(((size_t)rows * (2 * QD + 2 * KD) + 2 * (size_t)cn) * sizeof(float));
    float **kp = (float **)calloc((size_t)kv->layers, sizeof *kp), **vp = (float **)calloc((size_t)kv->layers, sizeof *vp);
    int rc = -1;
    if (!buf || !kp || !vp) { g3_errorf("cuda: out of host memory for a hooked attention layer"); goto out; }
    {
        float *qh = buf, *kh = qh + rows * QD, *vh = kh + rows * KD, *oh = vh + rows * KD, *kc = oh + rows * QD, *vc = kc + cn;
        G3Cuda *cu = cb->cu;
        if (g3cu_download(cu, qh, q, (size_t)rows * QD * 4) || g3cu_download(cu, kh, k, (size_t)rows * KD * 4) ||
            g3cu_download(cu, vh, v, (size_t)rows * KD * 4) || g3cu_download(cu, kc, kv->k[layer], (size_t)cn * 4) ||
            g3cu_download(cu, vc, kv->v[layer], (size_t)cn * 4))
            goto out;
        G3KVCache hk = *kv;
        kp[layer] = kc;
        vp[layer] = vc;
        hk.k = kp;
        hk.v = vp;
        G3Backend *cpu = g3_backend_cpu();
        if (cpu->attention_cache(cpu, oh, &hk, layer, segs, nseg, qh, kh, vh, NH, window, scale, softcap, hook, G3_MM_EXACT)) goto out;
        if (g3cu_upload(cu, out, oh, (size_t)rows * QD * 4) || g3cu_sync(cu)) goto out;
        rc = 0;
    }
out:
    free(buf);
    free(kp);
    free(vp);
    return rc;
}

// Rows of one segment past which the tiled prefill kernel beats the split-K decode kernel.
enum { PREFILL_MIN_ROWS = 16 };

void cu_kv_append(G3Backend *be, G3KVCache *kv, int layer, const G3Segment *segs, int nseg, const float *k, const float *v);

// attention_cache, and with append (attention_cache_append) the rows' keys and values appended
// after it: by the decode kernels' merge where they run, else by kv_append.
static int attention_cache(G3Backend *be, float *out, const G3KVCache *kv, G3KVCache *kv_app, int layer, const G3Segment *segs,
                           int nseg, const float *q, const float *k, const float *v, int NH, int window, float scale,
                           float softcap, const G3AttnHook *hook, G3MatmulMode mode) {
    CudaBackend *cb = cb_of(be);
    int rows;
    if (meta_for(cb, segs, nseg, &rows)) return -1;
    // the kernels' shapes: head dims that are multiples of 32 up to 256, 1 to 8 query heads per
    // kv head (every Gemma's, and small models' 3 or 5); others (tiny test models) run on the
    // host like a hooked layer. (Until 2026-12-07 only 1, 2, 4, 8: the default model's 5 heads
    // on one kv head ran its attention on the host, and `perplexity --device cuda` took 0.8 s
    // a 512-token chunk.)
    const int G = NH / kv->nkv;
    const int shape_ok = kv->hd % 32 == 0 && kv->hd <= 256 && NH % kv->nkv == 0 && G >= 1 && G <= 8;
    // an image's soft tokens attend both ways inside their run (G3Segment.kend): the kernels
    // know only causal rows, so such a call (a prompt's prefill; never a decode step) runs on
    // the host like a hooked layer
    int both_ways = 0;
    for (int i = 0; i < nseg; i++) both_ways |= segs[i].kend != NULL;
    if (hook || !shape_ok || both_ways) {
        if (attention_on_host(cb, out, kv, layer, segs, nseg, q, k, v, rows, NH, window, scale, softcap, hook)) return -1;
        if (kv_app) cu_kv_append(be, kv_app, layer, segs, nseg, k, v);
        return 0;
    }
    const G3CuAttn a = attn_of(kv, layer, NH, window, scale, softcap);
    int longest = 0, max_keys = 1;
    for (int i = 0; i < nseg; i++) {
        longest = G3_MAX(longest, segs[i].n);
        max_keys = G3_MAX(max_keys, segs[i].pos0 + segs[i].n);
    }
    if (window > 0) max_keys = G3_MIN(max_keys, window);
    if (cb->recording) max_keys = kv->cap[layer];  // replayed later at any length up to the capacity
    if (longest < PREFILL_MIN_ROWS)
        return g3cu_attn_decode_append(cb->cu, out, q, k, v, kv->k[layer], kv->v[layer], kv_app ? kv_app->k[layer] : NULL,
                                       kv_app ? kv_app->v[layer] : NULL, cb->meta_d, rows, max_keys, &a);
    // the fast mode's prefill on the tensor cores (bf16 q, k, v, p), the exact mode's in f32
    const int tc = mode == G3_MM_FAST && g3cu_attn_mma_supported(kv->hd) && !cb->attn_f32;
    for (int i = 0, r0 = 0; i < nseg; r0 += segs[i].n, i++)
        if ((tc ? g3cu_attn_prefill_mma(cb->cu, out, NULL, q, k, v, kv->k[layer], kv->v[layer], r0, segs[i].n, segs[i].seq,
                                        segs[i].pos0, &a)
                : g3cu_attn_prefill(cb->cu, out, q, k, v, kv->k[layer], kv->v[layer], r0, segs[i].n, segs[i].seq, segs[i].pos0,
                                    &a)))
            return -1;
    if (kv_app) cu_kv_append(be, kv_app, layer, segs, nseg, k, v);
    return 0;
}

int cu_attention_cache(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                       const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap,
                       const G3AttnHook *hook, G3MatmulMode mode) {
    return attention_cache(be, out, kv, NULL, layer, segs, nseg, q, k, v, NH, window, scale, softcap, hook, mode);
}

static int cu_attention_cache_append(G3Backend *be, float *out, G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                                     const float *q, const float *k, const float *v, int NH, int window, float scale,
                                     float softcap, const G3AttnHook *hook, G3MatmulMode mode) {
    return attention_cache(be, out, kv, kv, layer, segs, nseg, q, k, v, NH, window, scale, softcap, hook, mode);
}

void cu_kv_append(G3Backend *be, G3KVCache *kv, int layer, const G3Segment *segs, int nseg, const float *k, const float *v) {
    CudaBackend *cb = cb_of(be);
    int rows;
    if (meta_for(cb, segs, nseg, &rows)) { note(cb, -1); return; }
    const G3CuAttn a = attn_of(kv, layer, 1, 0, 1.f, 0.f);
    G3CuAttn ak = a;
    ak.nh = kv->nkv;
    note(cb, g3cu_kv_append(cb->cu, kv->k[layer], kv->v[layer], k, v, cb->meta_d, rows, &ak));
}

// ---- what a device backend adds ----

void *cu_host_alloc(G3Backend *be, size_t bytes) {
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError();
        g3_errorf("cuda: cannot allocate %.1f MiB of page-locked host memory", bytes / 1048576.0);
        return NULL;
    }
    return p;
}
void cu_host_free(G3Backend *be, void *p) { cudaFreeHost(p); }

int cu_segments(G3Backend *be, const G3Segment *segs, int nseg) {
    int rows;
    return meta_for(cb_of(be), segs, nseg, &rows);
}

// Scratch reserved before recording: the ops of a recorded step find it there (the split-K
// attention fits its splits into it; see attn_decode.cu).
enum { RECORD_SCRATCH = 64 << 20 };

int cu_record_begin(G3Backend *be) {
    CudaBackend *cb = cb_of(be);
    if (failed(cb) || g3cu_reserve(cb->cu, RECORD_SCRATCH)) return -1;
    if (g3cu_check(cudaStreamBeginCapture(cb->cu->stream, cudaStreamCaptureModeThreadLocal), "begin capture")) return -1;
    cb->recording = 1;
    return 0;
}

void *cu_record_end(G3Backend *be) {
    CudaBackend *cb = cb_of(be);
    cb->recording = 0;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cb->cu->stream, &g);
    cudaGetLastError();
    if (e != cudaSuccess || cb->failed || !g) {
        if (g) cudaGraphDestroy(g);
        cb->failed = 0;  // nothing of the step ran: the caller runs it unrecorded
        g3_errorf("cuda: the step could not be recorded (%s)", cudaGetErrorString(e));
        return NULL;
    }
    Rec *r = (Rec *)calloc(1, sizeof *r);
    if (!r || g3cu_check(cudaGraphInstantiate(&r->exec, g, 0), "graph instantiate")) {
        free(r);
        cudaGraphDestroy(g);
        return NULL;
    }
    cudaGraphDestroy(g);
    r->scratch = cb->cu->scratch;
    r->meta = cb->meta_d;
    return r;
}

int cu_replay(G3Backend *be, void *rec) {
    CudaBackend *cb = cb_of(be);
    Rec *r = (Rec *)rec;
    if (r->scratch != cb->cu->scratch || r->meta != cb->meta_d) return 1;
    return g3cu_check(cudaGraphLaunch(r->exec, cb->cu->stream), "graph launch");
}

void cu_record_free(G3Backend *be, void *rec) {
    Rec *r = (Rec *)rec;
    if (!r) return;
    cudaGraphExecDestroy(r->exec);
    free(r);
}

void cu_qk_norm_rope(G3Backend *be, float *q, float *k, const float *qw, const float *kw, const float *cos, const float *sin,
                     int R, int NH, int NKV, int HD, float eps) {
    CudaBackend *cb = cb_of(be);
    const float *qd = qw ? vec_dev(cb, qw, HD) : NULL, *kd = kw ? vec_dev(cb, kw, HD) : NULL;
    if ((qw && !qd) || (kw && !kd)) { note(cb, -1); return; }
    note(cb, g3cu_qk_norm_rope(cb->cu, q, k, qd, kd, cos, sin, R, NH, NKV, HD, eps));
}

void cu_add_rmsnorm(G3Backend *be, float *x, float *xn, const float *t, const float *w_post, const float *w_next, int R, int n,
                    float eps) {
    CudaBackend *cb = cb_of(be);
    const float *wp = vec_dev(cb, w_post, n), *wn = w_next ? vec_dev(cb, w_next, n) : NULL;
    if (!wp || (w_next && !wn)) { note(cb, -1); return; }
    note(cb, g3cu_add_rmsnorm(cb->cu, x, xn, t, wp, wn, R, n, eps));
}

void cu_destroy(G3Backend *be) {
    CudaBackend *cb = cb_of(be);
    for (int i = 0; i < cb->map_cap; i++)
        if (cb->map[i].host) g3cu_free(cb->cu, cb->map[i].dev);
    free(cb->map);
    g3cu_free(cb->cu, cb->meta_d);
    g3cu_free(cb->cu, cb->wide);
    g3cu_free(cb->cu, cb->padout);
    g3cu_free(cb->cu, cb->mask_d);
    g3cu_sampler_free(cb->sampler);
    g3cu_free(cb->cu, cb->shadow);
    g3cu_free(cb->cu, cb->q8_tables);
    for (auto &r : cb->rnd) g3cu_free(cb->cu, r.buf);
    g3cu_free(cb->cu, cb->grp_d);
    cudaFreeHost(cb->ids_h);
    cudaFreeHost(cb->grp_h);
    if (cb->ids_ev) cudaEventDestroy(cb->ids_ev);
    if (cb->grp_ev) cudaEventDestroy(cb->grp_ev);
    free(cb->meta_h);
    free(cb->segs);
    free(cb->allocs);
    g3cu_delete(cb->cu);
    free(cb);
}

// ---- the wrappers: every op of the table goes through one ----
// Each op of the table is replaced by a wrapper (one template instantiation per op, so the
// table keeps its C signatures and the ops know nothing of it) that
//  - drops the bf16 operands kept between products around every op that is not a product
//    (see "bf16 mode's operands": what makes a kept copy safe to reuse); cross_entropy, which
//    writes its gradient's rounding itself, looks after them as the products do;
//  - with G3_CUDA_PROFILE=1, times the op (prof.cu); the first AdamW launch after any other op
//    marks an optimizer step (the profiler keeps whole steps).
template <typename R, typename... A> struct Wrap {
    template <R (*F)(G3Backend *, A...)> struct Op {
        static inline const char *name = "?";
        static inline int product = 0, adamw = 0;
        static R call(G3Backend *be, A... a) {
            CudaBackend *cb = cb_of(be);
            if (!product) rnd_clear(cb);
            if (g3cu_prof_on()) {
                if (adamw && !cb->prof_in_adamw) g3cu_prof_step(cb->cu);
                cb->prof_in_adamw = adamw;
            }
            struct After {  // when the call returns, whatever its type
                CudaBackend *cb;
                int scope, product;
                ~After() {
                    g3cu_prof_end(cb->cu, scope, 0, 0);
                    if (!product) rnd_clear(cb);
                }
            } after{cb, g3cu_prof_begin(cb->cu, name), product};
            return F(be, a...);
        }
    };
};
template <typename R, typename... A> Wrap<R, A...> wrap_of(R (*)(G3Backend *, A...));

#define WRAP(op)                                                                    \
    do {                                                                            \
        if (be->op) {                                                               \
            using T = decltype(wrap_of(&cu_##op))::template Op<&cu_##op>;           \
            T::name = #op;                                                          \
            T::product = !strcmp(#op, "linear") || !strcmp(#op, "linear_dx") || !strcmp(#op, "gemm") ||   \
                         !strcmp(#op, "cross_entropy");                                             \
            T::adamw = !strcmp(#op, "adamw") || !strcmp(#op, "adamw8");             \
            be->op = T::call;                                                       \
        }                                                                           \
    } while (0)

void wrap_ops(G3Backend *be) {
    WRAP(alloc); WRAP(free); WRAP(to_device); WRAP(to_host); WRAP(sync); WRAP(weight_check);
    WRAP(linear); WRAP(linear_multi); WRAP(linear_geglu); WRAP(gemm); WRAP(linear_dx);
    WRAP(rmsnorm_backward); WRAP(rope_backward); WRAP(geglu_backward); WRAP(mlp_down_backward);
    WRAP(embed_backward); WRAP(cross_entropy); WRAP(attention); WRAP(attention_backward);
    WRAP(zero); WRAP(sumsq); WRAP(adamw); WRAP(adamw8); WRAP(bf16_shadow); WRAP(rmsnorm); WRAP(rope); WRAP(geglu); WRAP(embed);
    WRAP(add); WRAP(axpy); WRAP(dropout); WRAP(attention_masked); WRAP(attention_masked_backward);
    WRAP(softcap); WRAP(argmax); WRAP(attention_cache); WRAP(attention_cache_append); WRAP(kv_append);
    WRAP(segments); WRAP(replay); WRAP(qk_norm_rope); WRAP(add_rmsnorm); WRAP(layernorm); WRAP(bias_act);
    WRAP(attention_full);
}
#undef WRAP

}  // namespace

extern "C" size_t g3_backend_cuda_weight_bytes(G3Backend *be) {
    return be && be->kind == G3_BACKEND_CUDA ? cb_of(be)->weight_bytes : 0;
}

extern "C" G3Cuda *g3_backend_cuda_context(G3Backend *be) {
    return be && be->kind == G3_BACKEND_CUDA ? cb_of(be)->cu : NULL;
}

extern "C" const char *g3_backend_cuda_device(G3Backend *be) {
    return be && be->kind == G3_BACKEND_CUDA ? g3cu_device_name(cb_of(be)->cu) : "";
}

extern "C" int g3_backend_cuda_mem(G3Backend *be, size_t *free_bytes, size_t *total_bytes) {
    return g3cu_mem_info(cb_of(be)->cu, free_bytes, total_bytes);
}

extern "C" int g3_backend_cuda_devices(void) { return g3cu_device_count(); }

extern "C" double g3_backend_cuda_peak_bf16(G3Backend *be) {
    const char *n = g3_backend_cuda_device(be);
    if (strstr(n, "H100") || strstr(n, "H200") || strstr(n, "H800") || strstr(n, "GH200")) return strstr(n, "PCIe") ? 756e12 : 989e12;
    if (strstr(n, "A100") || strstr(n, "A800")) return 312e12;
    return 0;
}

// Strong definition of backend.c's weak one: a new context on device 0 per call (a state or
// model holds one; two may run side by side).
extern "C" G3Backend *g3_backend_cuda_open(void) {
    G3Cuda *cu = g3cu_new(0);
    if (!cu) return NULL;
    CudaBackend *cb = (CudaBackend *)calloc(1, sizeof *cb);
    if (!cb) { g3cu_delete(cu); g3_errorf("cuda: out of host memory"); return NULL; }
    cb->cu = cu;
    cb->nseg = -1;
    G3Backend *be = &cb->be;
    be->name = "cuda";
    be->kind = G3_BACKEND_CUDA;
    be->host = 0;
    be->attn_kend = 1;  // image runs (rows that see their run's later keys) go through the host path below
    be->impl = cb;
    be->destroy = cu_destroy;
    be->alloc = cu_alloc;
    be->free = cu_free;
    be->to_device = cu_to_device;
    be->to_host = cu_to_host;
    be->sync = cu_sync;
    be->weight_check = cu_weight_check;
    be->linear = cu_linear;
    {  // G3_CUDA_FUSE=0: q/k/v and gate/up as separate products, the append its own launch (to measure what fusing gains)
        const char *e = getenv("G3_CUDA_FUSE");
        const int fuse = !(e && !strcmp(e, "0"));
        be->linear_multi = fuse ? cu_linear_multi : NULL;
        be->linear_geglu = fuse ? cu_linear_geglu : NULL;
        be->attention_cache_append = fuse ? cu_attention_cache_append : NULL;
    }
    be->gemm = cu_gemm;
    be->linear_dx = cu_linear_dx;
    be->rmsnorm_backward = cu_rmsnorm_backward;
    be->rope_backward = cu_rope_backward;
    be->geglu_backward = cu_geglu_backward;
    be->mlp_down_backward = cu_mlp_down_backward;
    be->embed_backward = cu_embed_backward;
    be->cross_entropy = cu_cross_entropy;
    be->attention = cu_attention;
    be->attention_backward = cu_attention_backward;
    be->attention_workspace = cu_attention_workspace;
    be->zero = cu_zero;
    be->sumsq = cu_sumsq;
    be->adamw = cu_adamw;
    be->adamw8 = cu_adamw8;
    be->rmsnorm = cu_rmsnorm;
    be->rope = cu_rope;
    be->geglu = cu_geglu;
    be->embed = cu_embed;
    be->add = cu_add;
    be->axpy = cu_axpy;
    be->dropout = cu_dropout;
    be->attention_masked = cu_attention_masked;
    be->attention_masked_backward = cu_attention_masked_backward;
    be->softcap = cu_softcap;
    be->argmax = cu_argmax;
    be->sample_top_k = cu_sample_top_k;
    be->attention_cache = cu_attention_cache;
    be->kv_append = cu_kv_append;
    be->host_alloc = cu_host_alloc;
    be->host_free = cu_host_free;
    be->segments = cu_segments;
    if (!g3cu_prof_on()) {  // the profiler times ops as they run; a graph's replay would hide them
        be->record_begin = cu_record_begin;
        be->record_end = cu_record_end;
        be->replay = cu_replay;
        be->record_free = cu_record_free;
    }
    be->qk_norm_rope = cu_qk_norm_rope;
    be->add_rmsnorm = cu_add_rmsnorm;
    be->layernorm = cu_layernorm;
    be->bias_act = cu_bias_act;
    be->attention_full_workspace = cu_attention_full_workspace;
    be->attention_full = cu_attention_full;
    const char *attn = getenv("G3_CUDA_ATTN");
    cb->attn_f32 = attn && !strcmp(attn, "f32");
    {  // bf16 mode's operands: G3_CUDA_BF16_CACHE=0 / G3_CUDA_BF16_SHADOW=0 round every operand at every product
        const char *c = getenv("G3_CUDA_BF16_CACHE"), *w = getenv("G3_CUDA_BF16_SHADOW");
        cb->rnd_keep = !(c && !strcmp(c, "0"));
        const char *pd = getenv("G3_CUDA_PAD");  // 0: products read and write unaligned rows as they are
        cb->pad = !(pd && !strcmp(pd, "0"));
        be->bf16_shadow = w && !strcmp(w, "0") ? NULL : cu_bf16_shadow;
    }
    wrap_ops(be);
    return be;
}
