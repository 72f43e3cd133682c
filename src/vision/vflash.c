// vflash.c: see vflash.h. The driver (packing, work items, the chunk loop) and the scalar
// reference kernels, in the same arithmetic as the vector ones: bf16 rounded to nearest even,
// each pair word's two products added to an f32 sum in order, base-2 exponentials (exp2f).
#include "vflash.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/kernels.h"
#include "../tensor/dtype.h"

// ---- scalar references ----

static uint32_t pair(float lo, float hi) { return g3_f32_to_bf16(lo) | (uint32_t)g3_f32_to_bf16(hi) << 16; }

static void pack_rows_ref(uint32_t *p, int w, const float *x, int64_t ldx, int n, int hd) {
    const int kd = (hd + 1) / 2;
    for (int k2 = 0; k2 < kd; k2++)
        for (int r = 0; r < w; r++) {
            const float *xr = x + (int64_t)r * ldx + 2 * k2;
            p[(size_t)k2 * w + r] = r < n ? pair(xr[0], 2 * k2 + 1 < hd ? xr[1] : 0.0f) : 0;
        }
}

static void pack_cols8_ref(uint32_t *p, size_t pstride, const float *v, int64_t ldv, int nvalid, int nk, int hd, int hdp) {
    for (int dp = 0; dp < hdp / G3_VF_KR; dp++)
        for (int k2 = 0; k2 < nk / 2; k2++)
            for (int i = 0; i < G3_VF_KR; i++) {
                const int d = dp * G3_VF_KR + i, j = 2 * k2;
                const float lo = j < nvalid && d < hd ? v[(int64_t)j * ldv + d] : 0.0f;
                const float hi = j + 1 < nvalid && d < hd ? v[(int64_t)(j + 1) * ldv + d] : 0.0f;
                p[dp * pstride + (size_t)k2 * G3_VF_KR + i] = pair(lo, hi);
            }
}

static void tile_ref(float *c, int64_t ldc, const uint32_t *a, const uint32_t *b, int kd, const float *alpha) {
    for (int r = 0; r < G3_VF_KR; r++)
        for (int j = 0; j < G3_VF_LANES; j++) {
            float acc = 0.0f;
            for (int k2 = 0; k2 < kd; k2++) {
                const uint32_t x = a[(size_t)k2 * G3_VF_KR + r], y = b[(size_t)k2 * G3_VF_LANES + j];
                acc += g3_bf16_to_f32((uint16_t)x) * g3_bf16_to_f32((uint16_t)y);
                acc += g3_bf16_to_f32((uint16_t)(x >> 16)) * g3_bf16_to_f32((uint16_t)(y >> 16));
            }
            float *o = c + (int64_t)r * ldc + j;
            *o = alpha ? alpha[j] * *o + acc : acc;
        }
}

static void scores_ref(float *s, const uint32_t *k, const uint32_t *q, int kd, int rows, int valid, float *smax) {
    for (int r = 0; r < rows; r += G3_VF_KR) tile_ref(s + (size_t)r * G3_VF_LANES, G3_VF_LANES, k + (size_t)r * kd, q, kd, NULL);
    for (int j = 0; j < G3_VF_LANES; j++) {
        smax[j] = -INFINITY;
        for (int r = 0; r < valid; r++) smax[j] = fmaxf(smax[j], s[(size_t)r * G3_VF_LANES + j]);
    }
}

static void softmax_ref(uint32_t *p, const float *s, int rows, int valid, float c, const float *smax, float *m, float *l, float *alpha) {
    for (int j = 0; j < G3_VF_LANES; j++) {
        const float mx = fmaxf(m[j], c * smax[j]);
        float sum = 0.0f;
        alpha[j] = exp2f(m[j] - mx);
        for (int r = 0; r < rows; r += 2) {
            const float e0 = r < valid ? exp2f(c * s[(size_t)r * G3_VF_LANES + j] - mx) : 0.0f;
            const float e1 = r + 1 < valid ? exp2f(c * s[(size_t)(r + 1) * G3_VF_LANES + j] - mx) : 0.0f;
            sum += e0;
            sum += e1;
            p[(size_t)r / 2 * G3_VF_LANES + j] = pair(e0, e1);
        }
        l[j] = alpha[j] * l[j] + sum;
        m[j] = mx;
    }
}

static void unpack_ref(float *out, int64_t ldo, const float *o, const float *l, int nq, int hd) {
    for (int j = 0; j < nq; j++)
        for (int d = 0; d < hd; d++) out[(int64_t)j * ldo + d] = o[(size_t)d * G3_VF_LANES + j] / l[j];
}

static const G3VFlashKernels ref = {pack_rows_ref, pack_cols8_ref, tile_ref, scores_ref, softmax_ref, unpack_ref};

const G3VFlashKernels *g3_vflash_ref(void) { return &ref; }

const G3VFlashKernels *g3_vflash_best(void) {
    return g3_kernels_level() >= G3_ISA_AVX512BF16 ? g3_vflash_avx512bf16() : NULL;
}

// ---- the driver ----

// Where things are in the work area, in 4-byte words, each part 64-byte aligned.
typedef struct {
    int HD, kd, HDp, NK, nqb;  // head width, its pairs, rounded up to 8; keys rounded up to 8; lane blocks
    size_t q, k, v, thread;    // words: Q panels, K panels, V^T panels, one thread's scratch
} Layout;

static size_t words64(size_t n) { return (n + 15) & ~(size_t)15; }

static Layout layout(int NP, int D, int NH) {
    Layout L;
    L.HD = D / NH, L.kd = (L.HD + 1) / 2, L.HDp = (L.HD + G3_VF_KR - 1) / G3_VF_KR * G3_VF_KR;
    L.NK = (NP + G3_VF_KR - 1) / G3_VF_KR * G3_VF_KR, L.nqb = (NP + G3_VF_LANES - 1) / G3_VF_LANES;
    L.q = words64((size_t)NH * L.nqb * L.kd * G3_VF_LANES);
    L.k = words64((size_t)NH * L.NK * L.kd);
    L.v = words64((size_t)NH * L.HDp * (L.NK / 2));
    // S^T chunk [CHUNK][32] f32, P^T [CHUNK / 2][32] words, O^T [GROUP][HDp][32] f32, m, l [GROUP][32], alpha, smax [32]
    L.thread = words64((size_t)G3_VF_CHUNK * G3_VF_LANES + G3_VF_CHUNK / 2 * G3_VF_LANES + (size_t)G3_VF_GROUP * L.HDp * G3_VF_LANES +
                       (2 * G3_VF_GROUP + 2) * G3_VF_LANES);
    return L;
}

size_t g3_vflash_bytes(int NP, int D, int NH, int threads) {
    const Layout L = layout(NP, D, NH);
    return 4 * (L.q + L.k + L.v + (size_t)threads * L.thread);
}

void g3_vflash_attention(const G3VFlashKernels *kn, float *out, const float *q, const float *k, const float *v, int NP, int D, int NH,
                         float scale, void *work, int threads) {
    const Layout L = layout(NP, D, NH);
    const int HD = L.HD, kd = L.kd, HDp = L.HDp, NK = L.NK, nqb = L.nqb, nkp = NK / G3_VF_KR, nkc = (NK + G3_VF_CHUNK - 1) / G3_VF_CHUNK;
    const int ng = (nqb + G3_VF_GROUP - 1) / G3_VF_GROUP;
    const float c = scale * 1.4426950408889634f;  // scores to base-2 exponents
    uint32_t *qp = work, *kp = qp + L.q, *vp = kp + L.k;
    float *scratch = (float *)(vp + L.v);
#pragma omp parallel num_threads(threads)
    {
        // the operands as pair words: Q [head][lane block][kd][32], K [head][key panel][kd][8],
        // V^T [head][dim panel][NK / 2][8] (packed a chunk of keys at a time)
#pragma omp for schedule(static) nowait
        for (int t = 0; t < NH * nqb; t++) {  // row blocks outer: q's rows are read whole, in order
            const int h = t % NH, b = t / NH;
            kn->pack_rows(qp + ((size_t)h * nqb + b) * kd * G3_VF_LANES, G3_VF_LANES, q + (size_t)b * G3_VF_LANES * D + (size_t)h * HD, D,
                          G3_MIN(G3_VF_LANES, NP - b * G3_VF_LANES), HD);
        }
#pragma omp for schedule(static) nowait
        for (int t = 0; t < NH * nkp; t++) {
            const int h = t % NH, pnl = t / NH;
            kn->pack_rows(kp + ((size_t)h * nkp + pnl) * kd * G3_VF_KR, G3_VF_KR, k + (size_t)pnl * G3_VF_KR * D + (size_t)h * HD, D,
                          G3_MIN(G3_VF_KR, NP - pnl * G3_VF_KR), HD);
        }
#pragma omp for schedule(static)
        for (int t = 0; t < NH * nkc; t++) {
            const int h = t % NH, c0 = (t / NH) * G3_VF_CHUNK;
            kn->pack_cols8(vp + (size_t)h * HDp * (NK / 2) + (size_t)c0 / 2 * G3_VF_KR, (size_t)(NK / 2) * G3_VF_KR, v + (size_t)c0 * D + (size_t)h * HD,
                           D, NP - c0, G3_MIN(G3_VF_CHUNK, NK - c0), HD, HDp);
        }
        // work items: (head, GROUP lane blocks), each over every chunk of keys
        float *S = scratch + (size_t)omp_get_thread_num() * L.thread, *O = S + G3_VF_CHUNK * G3_VF_LANES;
        uint32_t *P = (uint32_t *)(O + (size_t)G3_VF_GROUP * HDp * G3_VF_LANES);
        float *m = (float *)(P + G3_VF_CHUNK / 2 * G3_VF_LANES), *l = m + G3_VF_GROUP * G3_VF_LANES, *alpha = l + G3_VF_GROUP * G3_VF_LANES, *smax = alpha + G3_VF_LANES;
#pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < NH * ng; t++) {
            const int h = t / ng, b0 = (t % ng) * G3_VF_GROUP, nb = G3_MIN(G3_VF_GROUP, nqb - b0);
            const uint32_t *K = kp + (size_t)h * nkp * kd * G3_VF_KR, *V = vp + (size_t)h * HDp * (NK / 2);
            memset(O, 0, sizeof(float) * (size_t)nb * HDp * G3_VF_LANES);
            for (int i = 0; i < nb * G3_VF_LANES; i++) m[i] = -INFINITY, l[i] = 0.0f;
            for (int c0 = 0; c0 < NK; c0 += G3_VF_CHUNK) {
                const int rows = G3_MIN(G3_VF_CHUNK, NK - c0), valid = G3_MIN(rows, NP - c0);
                for (int b = 0; b < nb; b++) {
                    const uint32_t *Q = qp + ((size_t)h * nqb + b0 + b) * kd * G3_VF_LANES;
                    kn->scores(S, K + (size_t)c0 * kd, Q, kd, rows, valid, smax);
                    kn->softmax(P, S, rows, valid, c, smax, m + b * G3_VF_LANES, l + b * G3_VF_LANES, alpha);
                    float *Ob = O + (size_t)b * HDp * G3_VF_LANES;
                    for (int dp = 0; dp < HDp / G3_VF_KR; dp++)
                        kn->tile(Ob + (size_t)dp * G3_VF_KR * G3_VF_LANES, G3_VF_LANES, V + (size_t)dp * (NK / 2) * G3_VF_KR + (size_t)c0 / 2 * G3_VF_KR,
                                 P, rows / 2, alpha);
                }
            }
            for (int b = 0; b < nb; b++) {
                const int row = (b0 + b) * G3_VF_LANES;
                kn->unpack(out + (size_t)row * D + (size_t)h * HD, D, O + (size_t)b * HDp * G3_VF_LANES, l + b * G3_VF_LANES,
                           G3_MIN(G3_VF_LANES, NP - row), HD);
            }
        }
    }
}
