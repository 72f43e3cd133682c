// attn_block.c: the CPU backend's Set Block Decoding ops (backend.h): the batch attention under
// a block mask (training's doubled layout; kernels in kernels/attention_mask.c) and a block of
// rows attending over a slot's KV cache and each other both ways (decoding).
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/kernels.h"
#include "../../kernels/ops.h"
#include "../../kernels/train_ops.h"
#include "backend_cpu.h"

int g3_cpu_attention_masked(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const G3AttnMask *mask, int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap) {
    (void)be;
    const int nth = omp_get_max_threads();
    float *scratch = g3_cpu_workspace((size_t)nth * g3_attention_masked_scratch(T) * sizeof(float));
    if (!scratch) return -1;
    g3_attention_masked_forward(out, lse, q, k, v, mask, B, T, NH, NKV, HD, window, scale, softcap, scratch, nth);
    return 0;
}

int g3_cpu_attention_masked_backward(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, const float *lse, const G3AttnMask *mask, int B, int T,
                                     int NH, int NKV, int HD, int window, float scale, float softcap) {
    (void)be;
    const int nth = omp_get_max_threads();
    const size_t heads = (size_t)B * T * NH * HD;  // dkh, dvh: per-query-head partials
    float *ws = g3_cpu_workspace((2 * heads + (size_t)nth * g3_attention_masked_scratch(T)) * sizeof(float));
    if (!ws) return -1;
    g3_attention_masked_backward(dq, dk, dv, ws, ws + heads, dout, q, k, v, lse, mask, B, T, NH, NKV, HD, window, scale, softcap,
                                 ws + 2 * heads, nth);
    return 0;
}

// Cache row of position p for slot seq, kv head kh (rings: p % cap).
static inline const float *cache_row(const float *cache, const G3KVCache *kv, int l, int seq, int kh, int p) {
    long cap = kv->cap[l];
    return cache + (((long)seq * kv->nkv + kh) * cap + p % cap) * kv->hd;
}

int g3_cpu_attention_cache_block(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *sg, const float *q,
                                 const float *k, const float *v, int NH, int window, float scale, float softcap) {
    (void)be;
    const int HD = kv->hd, NKV = kv->nkv, G = NH / NKV, n = sg->n, pos0 = sg->pos0, l = layer;
    const int S = pos0 + n, nth = omp_get_max_threads();
    if (window <= 0 && pos0 > kv->cap[l]) return g3_errorf("attention over a block: position %d beyond the cache's %d", pos0, kv->cap[l]);
    float *ws = g3_cpu_workspace((size_t)nth * S * sizeof(float));
    if (!ws) return g3_error_prefix("attention over a block of %d rows at position %d", n, pos0);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nth) if ((long)n * NH * S * HD > 65536)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < NH; h++) {
            float *sc = ws + (long)omp_get_thread_num() * S;
            const int p = pos0 + i, kh = h / G, lo = window > 0 ? G3_MAX(0, p - (window - 1)) : 0;
            const float *qr = q + (long)i * NH * HD + (long)h * HD;
            // keys: cached positions [lo, pos0), then the block's rows j (position pos0 + j) inside the window
            float mx = -INFINITY;
            for (int kp = lo; kp < S; kp++) {
                if (window > 0 && p - kp >= window) { sc[kp] = -INFINITY; continue; }
                const float *kr = kp < pos0 ? cache_row(kv->k[l], kv, l, sg->seq, kh, kp) : k + (long)(kp - pos0) * NKV * HD + (long)kh * HD;
                float z = g3_dot(qr, kr, HD) * scale;
                sc[kp] = softcap > 0 ? tanhf(z / softcap) * softcap : z;
                mx = sc[kp] > mx ? sc[kp] : mx;
            }
            double sum = 0;
            for (int kp = lo; kp < S; kp++) sum += sc[kp] = sc[kp] == -INFINITY ? 0.0f : expf(sc[kp] - mx);
            const float inv = (float)(1.0 / sum);
            float *o = out + (long)i * NH * HD + (long)h * HD;
            memset(o, 0, (size_t)HD * sizeof(float));
            for (int kp = lo; kp < S; kp++) {
                if (sc[kp] == 0.0f) continue;
                const float *vr = kp < pos0 ? cache_row(kv->v[l], kv, l, sg->seq, kh, kp) : v + (long)(kp - pos0) * NKV * HD + (long)kh * HD;
                g3_axpy(o, sc[kp] * inv, vr, HD);
            }
        }
    return 0;
}
