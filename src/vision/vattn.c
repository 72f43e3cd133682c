// vattn.c: the tower's multi-head attention, every patch attending to every patch (no mask).
// The work items are (head, block of QB query rows), spread over the OpenMP team; each runs
// its two products through the backend's gemm on its own thread (nested in the team, the CPU
// backend's GEMM takes one thread), with its score block in the core's cache throughout:
//   S[QB, NP]  = Qb . K^T                    (Qb [QB, HD], K [NP, HD]: the head's columns)
//   S          = e^(scale S - rowmax)         (unnormalized softmax; row sums kept)
//   O^T[HD,QB] = V^T . S^T                    (as O^T: HD = 72 is a whole number of the GEMM's
//                                              8-row tiles, where as O's columns it pads to 96)
//   out        = O / rowsum
// The NP x NP matrix never exists: a block is QB x NP floats (2 MB at NP = 4096).
// Products in bf16 (G3_MM_BF16: both operands rounded, f32 sums) when `bf16`, else f32.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"
#include "vops.h"

enum { QB = 128 };  // query rows per work item

size_t g3_vision_attention_floats(int NP, int D, int threads) {
    return 3 * (size_t)NP * D + (size_t)threads * ((size_t)QB * NP + (size_t)QB * D + QB);
}

void g3_vision_attention(G3Backend *be, int bf16, int fast, float *out, const float *q, const float *k, const float *v, int NP, int D,
                         int NH, float scale, float *scratch, int threads) {
    const int HD = D / NH, nb = (NP + QB - 1) / QB;
    const G3MatmulMode mm = bf16 ? G3_MM_BF16 : G3_MM_EXACT;
    float *qh = scratch, *kh = qh + (size_t)NP * D, *vh = kh + (size_t)NP * D, *work = vh + (size_t)NP * D;
    // the heads' columns as contiguous [NH][NP][HD] blocks (the GEMM takes contiguous operands)
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int r = 0; r < NP; r++)
        for (int h = 0; h < NH; h++) {
            const size_t src = (size_t)r * D + (size_t)h * HD, dst = ((size_t)h * NP + r) * HD;
            memcpy(qh + dst, q + src, (size_t)HD * sizeof(float));
            memcpy(kh + dst, k + src, (size_t)HD * sizeof(float));
            memcpy(vh + dst, v + src, (size_t)HD * sizeof(float));
        }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int t = 0; t < NH * nb; t++) {
        const int h = t / nb, r0 = (t % nb) * QB, n = G3_MIN(QB, NP - r0);
        float *S = work + (size_t)omp_get_thread_num() * ((size_t)QB * NP + (size_t)QB * D + QB), *Ot = S + (size_t)QB * NP;
        float *inv = Ot + (size_t)QB * D;
        const float *K = kh + (size_t)h * NP * HD, *V = vh + (size_t)h * NP * HD;
        be->gemm(be, 0, 1, n, NP, HD, qh + ((size_t)h * NP + r0) * HD, K, S, 0, mm);  // S[n, NP] = Qb K^T
        for (int i = 0; i < n; i++) inv[i] = 1.0f / g3_vops_softmax_exp(S + (size_t)i * NP, NP, scale, fast);
        be->gemm(be, 1, 1, HD, n, NP, V, S, Ot, 0, mm);  // O^T[HD, n] = V^T S^T
        for (int i = 0; i < n; i++) {
            float *o = out + (size_t)(r0 + i) * D + (size_t)h * HD;
            for (int j = 0; j < HD; j++) o[j] = Ot[(size_t)j * n + i] * inv[i];
        }
    }
}

// The hooked form: per head, the whole NP x NP score matrix (f32 products through the CPU
// backend's GEMM), the scores hook, the softmax (the scalar reference, or its vector form when
// fast), the pattern hook, then P . V. What the hooks leave in the matrix is what is used.
int g3_vision_attention_hooked(float *out, const float *q, const float *k, const float *v, int NP, int D, int NH, float scale,
                               int fast, int layer, const G3VisionHooks *hooks) {
    G3Backend *cpu = g3_backend_cpu();
    const int HD = D / NH;
    const size_t nh = (size_t)NP * HD;
    float *S = g3_malloc_aligned((size_t)NP * NP * sizeof(float)), *qh = g3_malloc_aligned(4 * nh * sizeof(float));
    if (!S || !qh) {
        g3_free_aligned(S);
        g3_free_aligned(qh);
        return g3_errorf("vision attention hooks: out of memory for a %d x %d score matrix", NP, NP);
    }
    float *kh = qh + nh, *vh = kh + nh, *oh = vh + nh;
    for (int h = 0; h < NH; h++) {
#pragma omp parallel for schedule(static)
        for (int r = 0; r < NP; r++) {
            const size_t src = (size_t)r * D + (size_t)h * HD, dst = (size_t)r * HD;
            memcpy(qh + dst, q + src, (size_t)HD * sizeof(float));
            memcpy(kh + dst, k + src, (size_t)HD * sizeof(float));
            memcpy(vh + dst, v + src, (size_t)HD * sizeof(float));
        }
        cpu->gemm(cpu, 0, 1, NP, NP, HD, qh, kh, S, 0, G3_MM_EXACT);  // S[NP, NP] = Qh Kh^T
        const long nn = (long)NP * NP;
#pragma omp parallel for schedule(static)
        for (long i = 0; i < nn; i++) S[i] *= scale;
        G3VisionHookEvent ev = {G3_VH_ATTN_SCORES, layer, h, NP, NP, 0, 0, S};
        if (g3_vision_hook_wants(hooks, G3_VH_ATTN_SCORES, layer)) hooks->fn(hooks->ctx, &ev);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < NP; i++) {
            float *row = S + (size_t)i * NP;
            const float inv = 1.0f / g3_vops_softmax_exp(row, NP, 1.0f, fast);
            for (int j = 0; j < NP; j++) row[j] *= inv;
        }
        ev.site = G3_VH_PATTERN;
        if (g3_vision_hook_wants(hooks, G3_VH_PATTERN, layer)) hooks->fn(hooks->ctx, &ev);
        cpu->gemm(cpu, 0, 0, NP, HD, NP, S, vh, oh, 0, G3_MM_EXACT);  // O[NP, HD] = P Vh
#pragma omp parallel for schedule(static)
        for (int r = 0; r < NP; r++) memcpy(out + (size_t)r * D + (size_t)h * HD, oh + (size_t)r * HD, (size_t)HD * sizeof(float));
    }
    g3_free_aligned(S);
    g3_free_aligned(qh);
    return 0;
}
