// quant_weighted.c: importance-weighted rounding for ggml's block types with a scale choice
// (see quant.h, g3_quant_weighted). Plain C, a reference: it runs once per file written.
//
// Each block's scale (and min) is chosen to minimize sum_i w_i (x_i - x'_i)^2: a few candidate
// inverse scales around the max-based one (x_max maps to the top level, then 0.1 of a level
// more or less, 21 candidates), each giving levels q by rounding, then the scale (and min) that
// is the weighted least-squares fit to those q, the q re-rounded once with it. The packed
// result is dequantized with the type's own to_f32 and its weighted error compared with that
// of the reference quantizer's block (quant.c, quant_legacy.c, quant_k.c): the better one is
// kept, so the weighted error is never worse than today's, whatever the search finds. A block
// whose weights are all equal keeps the reference's bytes (the search would often find a lower
// plain squared error, but then the file would change without the importance saying anything).
#include <math.h>
#include <string.h>

#include "quant.h"

enum { NCAND = 10 };  // candidates t = -NCAND..NCAND, 0.1 of a level apart

static int clampr(float v, int lo, int hi) { return v >= (float)hi ? hi : v > (float)lo ? (int)lrintf(v) : lo; }
static float f16r(float v) { return g3_f16_to_f32(g3_f32_to_f16(v)); }

// x ~ d q, q in [lo, hi]; the x of largest magnitude maps near lo (as ggml's Q4_0/Q5_0/Q6_K).
// half: d as stored in f16. Returns d, q out; 0 (all q 0) for a block of zeros or no weight.
static float sym_fit(const float *x, const float *w, int n, int lo, int hi, int half, int *q) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (amax < fabsf(x[i])) amax = fabsf(x[i]), max = x[i];
    memset(q, 0, (size_t)n * sizeof *q);
    if (!(amax > 0.0f) || !(amax <= 3.0e38f)) return 0.0f;
    double best = INFINITY;
    float bd = 0.0f;
    int t[256];
    for (int c = -NCAND; c <= NCAND; c++) {
        float is = ((float)-lo + 0.1f * (float)c) / -max, d = 0.0f;
        for (int it = 0; it < 2; it++) {
            double sxq = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                t[i] = clampr(x[i] * is, lo, hi);
                sxq += (double)w[i] * x[i] * t[i], sqq += (double)w[i] * t[i] * t[i];
            }
            if (!(sqq > 0)) break;
            d = (float)(sxq / sqq);
            if (half) d = f16r(d);
            if (d == 0.0f) break;
            is = 1.0f / d;  // the second pass re-rounds with the fitted scale
        }
        double e = 0;
        for (int i = 0; i < n; i++) e += (double)w[i] * ((double)x[i] - (double)d * t[i]) * ((double)x[i] - (double)d * t[i]);
        if (e < best) best = e, bd = d, memcpy(q, t, (size_t)n * sizeof *q);
    }
    return bd;
}

// x ~ d q + m, q in [0, top]. nonpos: m <= 0 and d >= 0 (the K-quants store -m and d
// unsigned). half: d and m as stored in f16. Returns d, *m and q out.
static float asym_fit(const float *x, const float *w, int n, int top, int half, int nonpos, float *m_out, int *q) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    if (nonpos) mn = fminf(mn, 0.0f), mx = fmaxf(mx, 0.0f);
    memset(q, 0, (size_t)n * sizeof *q);
    *m_out = nonpos ? 0.0f : mn;
    if (!(mx - mn > 0.0f) || !(mx - mn <= 3.0e38f)) return 0.0f;
    double best = INFINITY;
    float bd = 0.0f;
    int t[256];
    for (int c = -NCAND; c <= NCAND; c++) {
        float is = ((float)top + 0.1f * (float)c) / (mx - mn), m = mn, d = 0.0f;
        for (int it = 0; it < 2; it++) {
            double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
            for (int i = 0; i < n; i++) {
                t[i] = clampr((x[i] - m) * is, 0, top);
                sw += w[i], sq += (double)w[i] * t[i], sqq += (double)w[i] * t[i] * t[i];
                sx += (double)w[i] * x[i], sxq += (double)w[i] * x[i] * t[i];
            }
            const double det = sw * sqq - sq * sq;
            if (!(det > 0)) break;
            double dd = (sw * sxq - sq * sx) / det, mm = (sqq * sx - sq * sxq) / det;
            if (nonpos && mm > 0) mm = 0, dd = sxq / sqq;  // the fit with m pinned at 0
            if (nonpos && dd < 0) dd = 0;
            d = (float)dd, m = (float)mm;
            if (half) d = f16r(d), m = f16r(m);
            if (d == 0.0f) break;
            is = 1.0f / d;
        }
        double e = 0;
        for (int i = 0; i < n; i++) {
            const double r = (double)x[i] - ((double)d * t[i] + m);
            e += (double)w[i] * r * r;
        }
        if (e < best) best = e, bd = d, *m_out = m, memcpy(q, t, (size_t)n * sizeof *q);
    }
    return bd;
}

// Nibble packing of 32 levels as ggml's legacy blocks: element j low, j + 16 high; the fifth
// bits (Q5) into qh.
static void pack32(const int *q, uint8_t *qs, uint8_t *qh) {
    uint32_t h = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 15) | (q[j + 16] & 15) << 4);
        h |= (uint32_t)((q[j] >> 4) & 1) << j | (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    if (qh) qh[0] = (uint8_t)h, qh[1] = (uint8_t)(h >> 8), qh[2] = (uint8_t)(h >> 16), qh[3] = (uint8_t)(h >> 24);
}

// One block of the type from x[blk] with weights w: the search's block, packed.
static void block_search(G3DType t, void *dst, const float *x, const float *w) {
    int q[G3_QK_K];
    float m;
    switch (t) {
    case G3_Q8_0: {
        G3BlockQ8_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -127, 127, 1, q));
        for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)q[j];
        break;
    }
    case G3_Q4_0: {
        G3BlockQ4_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -8, 7, 1, q));
        for (int j = 0; j < 32; j++) q[j] += 8;
        pack32(q, b->qs, NULL);
        break;
    }
    case G3_Q5_0: {
        G3BlockQ5_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -16, 15, 1, q));
        for (int j = 0; j < 32; j++) q[j] += 16;
        pack32(q, b->qs, b->qh);
        break;
    }
    case G3_Q4_1: {
        G3BlockQ4_1 *b = dst;
        b->d = g3_f32_to_f16(asym_fit(x, w, 32, 15, 1, 0, &m, q));
        b->m = g3_f32_to_f16(m);
        pack32(q, b->qs, NULL);
        break;
    }
    case G3_Q5_1: {
        G3BlockQ5_1 *b = dst;
        b->d = g3_f32_to_f16(asym_fit(x, w, 32, 31, 1, 0, &m, q));
        b->m = g3_f32_to_f16(m);
        pack32(q, b->qs, b->qh);
        break;
    }
    case G3_Q4_K:
    case G3_Q5_K: {
        // each sub-block of 32 fitted alone, then the 8 scales and 8 mins quantized to 6 bits
        // against their largest (round to nearest), then the levels re-rounded with them
        const int top = t == G3_Q4_K ? 15 : 31;
        float s[8], o[8], smax = 0.0f, omax = 0.0f;
        for (int j = 0; j < 8; j++) {
            s[j] = asym_fit(x + 32 * j, w + 32 * j, 32, top, 0, 1, &m, q);
            o[j] = -m;
            smax = fmaxf(smax, s[j]), omax = fmaxf(omax, o[j]);
        }
        const uint16_t dh = g3_f32_to_f16(smax / 63.0f), dminh = g3_f32_to_f16(omax / 63.0f);
        const float df = g3_f16_to_f32(dh), dminf = g3_f16_to_f32(dminh);
        int sc[8], mm[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = df > 0.0f ? clampr(s[j] / df, 0, 63) : 0;
            mm[j] = dminf > 0.0f ? clampr(o[j] / dminf, 0, 63) : 0;
            const float step = df * (float)sc[j], off = dminf * (float)mm[j], inv = step > 0.0f ? 1.0f / step : 0.0f;
            for (int l = 0; l < 32; l++) q[32 * j + l] = clampr((x[32 * j + l] + off) * inv, 0, top);
        }
        uint8_t *scales;
        if (t == G3_Q4_K) {
            G3BlockQ4_K *b = dst;
            b->d = dh, b->dmin = dminh, scales = b->scales;
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) b->qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
        } else {
            G3BlockQ5_K *b = dst;
            b->d = dh, b->dmin = dminh, scales = b->scales;
            memset(b->qh, 0, sizeof b->qh);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    const int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                    b->qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                    b->qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
                }
        }
        // ggml's packing of eight 6-bit scales and mins into 12 bytes (as quant_k.c)
        for (int j = 0; j < 4; j++) {
            scales[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            scales[j + 4] = (uint8_t)((mm[j] & 63) | ((mm[j + 4] >> 4) << 6));
            scales[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((mm[j + 4] & 0xF) << 4));
        }
        break;
    }
    case G3_Q6_K: {
        G3BlockQ6_K *b = dst;
        float s[16], amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            s[j] = sym_fit(x + 16 * j, w + 16 * j, 16, -32, 31, 0, q);
            amax = fmaxf(amax, fabsf(s[j]));
        }
        b->d = g3_f32_to_f16(amax / 127.0f);
        const float df = g3_f16_to_f32(b->d);
        for (int j = 0; j < 16; j++) {
            const int sc = df > 0.0f ? clampr(s[j] / df, -127, 127) : 0;
            b->scales[j] = (int8_t)sc;
            const float step = df * (float)sc, inv = step != 0.0f ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; l++) q[16 * j + l] = clampr(x[16 * j + l] * inv, -32, 31) + 32;
        }
        memset(b->qh, 0, sizeof b->qh);
        for (int h = 0; h < 2; h++) {
            const int *qq = q + 128 * h;
            uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
            }
        }
        break;
    }
    default: break;
    }
}

static double werr(const float *x, const float *y, const float *w, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

int g3_quant_weighted_has(G3DType t) {
    return t == G3_Q8_0 || t == G3_Q4_0 || t == G3_Q4_1 || t == G3_Q5_0 || t == G3_Q5_1 || t == G3_Q4_K || t == G3_Q5_K || t == G3_Q6_K;
}

void g3_quant_weighted(G3DType t, void *dst, const float *src, const float *w, int64_t n) {
    const G3TypeTraits *tt = g3_type(t);
    if (!w || !g3_quant_weighted_has(t)) { tt->from_f32(dst, src, n); return; }
    const int bn = tt->block, bb = tt->block_bytes;
    uint8_t cand[256];
    float y[G3_QK_K], z[G3_QK_K];
    for (int64_t i = 0; i < n / bn; i++) {
        const float *x = src + i * bn, *wi = w + i * bn;
        uint8_t *b = (uint8_t *)dst + i * bb;
        tt->from_f32(b, x, bn);  // the reference block: the search must beat it to replace it
        double sw = 0;
        int finite = 1, equal = 1;
        for (int j = 0; j < bn; j++) sw += wi[j], finite &= isfinite(x[j]), equal &= wi[j] == wi[0];
        // equal weights carry no information: today's bytes, so that a file differs from the
        // one written without --calibrate only where the importance says something
        if (!(sw > 0) || !finite || equal) continue;
        block_search(t, cand, x, wi);
        tt->to_f32(y, b, bn);
        tt->to_f32(z, cand, bn);
        if (werr(x, z, wi, bn) < werr(x, y, wi, bn)) memcpy(b, cand, (size_t)bb);
    }
}
