// quant_search.c: the scale (and min) search behind the plain quantizers and importance-weighted
// rounding (see quant_search.h). Plain C, a reference: it runs once per file written.
//
// Each block (the K-quants: each sub-block) gets the scale (and min) minimizing
// sum_i w_i (x_i - x'_i)^2 over a few candidates: inverse scales around the max-based one (the
// x of largest magnitude, or the range, mapped to the top level, then 0.2 of a level more or
// less, up to one level: 11 candidates), each giving levels q by rounding, then the scale (and
// min) that is the weighted least-squares fit to those q, with its error from the same sums;
// the best is re-rounded with its own scale while that lowers the error. (21 candidates 0.1
// apart lowered the default model's squared error by at most 0.2% more, at twice the time.)
// The K-quants then quantize their sub-block scales (and mins) against the super-block's
// largest (6 bits; Q6_K int8) and, per sub-block, try the quantized scale and min one step
// either side of the nearest, the levels re-rounded with each: the pair of least error is kept
// (the rounding of the scales is the K-quants' largest loss after the levels').
#include <math.h>
#include <string.h>

#include "quant_search.h"

enum { NCAND = 5 };  // candidates t = -NCAND..NCAND, 0.2 of a level apart

static int clampr(float v, int lo, int hi) { return v >= (float)hi ? hi : v > (float)lo ? (int)lrintf(v) : lo; }
static float f16r(float v) { return g3_f16_to_f32(g3_f32_to_f16(v)); }

// x ~ d q, q in [lo, hi]; the x of largest magnitude maps near lo (as ggml's Q4_0/Q5_0/Q6_K)
// and, with flip, also near hi (the other sign of d: 11 more candidates). half: d as stored in
// f16. Returns d, q out; 0 (all q 0) for a block of zeros or no weight. Each candidate takes
// one pass (the levels, the fit and, from the same sums, its error); the best is then
// re-rounded with its own fitted scale while that lowers the error (twice at most).
static float sym_fit(const float *x, const float *w, int n, int lo, int hi, int half, int flip, int *q) {
    float amax = 0.0f, max = 0.0f;
    double sxx = 0;
    for (int i = 0; i < n; i++) {
        if (amax < fabsf(x[i])) amax = fabsf(x[i]), max = x[i];
        sxx += (double)w[i] * x[i] * x[i];
    }
    memset(q, 0, (size_t)n * sizeof *q);
    if (!(amax > 0.0f) || !(amax <= 3.0e38f)) return 0.0f;
    double best = sxx;  // all levels 0
    float bd = 0.0f;
    int t[256];
    for (int c = flip ? -3 * NCAND - 1 : -NCAND; c <= NCAND + 2; c++) {
        if (c > NCAND && bd == 0.0f) break;
        // c < -NCAND: the flipped candidates; c > NCAND: re-round the best with its own scale
        const float is = c > NCAND    ? 1.0f / bd
                         : c < -NCAND ? ((float)hi + 0.2f * (float)(c + 2 * NCAND + 1)) / max
                                      : ((float)-lo + 0.2f * (float)c) / -max;
        double sxq = 0, sqq = 0;
        for (int i = 0; i < n; i++) {
            t[i] = clampr(x[i] * is, lo, hi);
            sxq += (double)w[i] * x[i] * t[i], sqq += (double)w[i] * t[i] * t[i];
        }
        if (!(sqq > 0)) continue;
        float d = (float)(sxq / sqq);
        if (half) d = f16r(d);
        const double e = sxx - 2 * (double)d * sxq + (double)d * d * sqq;
        if (e < best) best = e, bd = d, memcpy(q, t, (size_t)n * sizeof *q);
        else if (c > NCAND) break;
    }
    return bd;
}

// x ~ d q + m, q in [0, top]. nonpos: m <= 0 and d >= 0 (the K-quants store -m and d
// unsigned). half: d and m as stored in f16. Returns d, *m and q out. Candidates as sym_fit.
static float asym_fit(const float *x, const float *w, int n, int top, int half, int nonpos, float *m_out, int *q) {
    float mn = x[0], mx = x[0];
    double sw = 0, sx = 0, sxx = 0;
    for (int i = 0; i < n; i++) {
        mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
        sw += w[i], sx += (double)w[i] * x[i], sxx += (double)w[i] * x[i] * x[i];
    }
    if (nonpos) mn = fminf(mn, 0.0f), mx = fmaxf(mx, 0.0f);
    memset(q, 0, (size_t)n * sizeof *q);
    *m_out = nonpos ? 0.0f : mn;
    if (!(mx - mn > 0.0f) || !(mx - mn <= 3.0e38f)) return 0.0f;
    double best = INFINITY;
    float bd = 0.0f, bm = *m_out;
    int t[256];
    for (int c = -NCAND; c <= NCAND + 2; c++) {
        if (c > NCAND && bd == 0.0f) break;
        const float is = c > NCAND ? 1.0f / bd : ((float)top + 0.2f * (float)c) / (mx - mn), m0 = c > NCAND ? bm : mn;
        double sq = 0, sqq = 0, sxq = 0;
        for (int i = 0; i < n; i++) {
            t[i] = clampr((x[i] - m0) * is, 0, top);
            sq += (double)w[i] * t[i], sqq += (double)w[i] * t[i] * t[i], sxq += (double)w[i] * x[i] * t[i];
        }
        const double det = sw * sqq - sq * sq;
        if (!(det > 0)) continue;
        double dd = (sw * sxq - sq * sx) / det, mm = (sqq * sx - sq * sxq) / det;
        if (nonpos && mm > 0) mm = 0, dd = sxq / sqq;  // the fit with m pinned at 0
        if (nonpos && dd < 0) dd = 0;
        float d = (float)dd, m = (float)mm;
        if (half) d = f16r(d), m = f16r(m);
        // sum w (x - d q - m)^2 from the sums
        const double e = sxx - 2 * (double)d * sxq - 2 * (double)m * sx + (double)d * d * sqq + 2 * (double)d * m * sq + (double)m * m * sw;
        if (e < best) best = e, bd = d, bm = m, memcpy(q, t, (size_t)n * sizeof *q);
        else if (c > NCAND) break;
    }
    *m_out = bm;
    return bd;
}

// A K-quant sub-block of n at x with its quantized scale step = df * sc and offset
// off = dminf * m (x' = step * q - off, q in [lo, hi]; Q6_K: off 0): sc (and m, when msteps)
// one step either side of the given ones tried, the levels re-rounded with each, the least
// weighted error kept in *sc, *m and q.
static void k_refine(const float *x, const float *w, int n, int lo, int hi, float df, float dminf, int sclo, int schi, int msteps,
                     int *sc, int *m, int *q) {
    const int sc0 = *sc, m0 = *m;
    double best = INFINITY;
    int t[32];
    for (int a = -1; a <= 1; a++)
        for (int b = -msteps; b <= msteps; b++) {
            const int s = sc0 + a, mm = m0 + b;
            if (s < sclo || s > schi || mm < 0 || mm > 63) continue;
            const float step = df * (float)s, off = dminf * (float)mm, inv = step != 0.0f ? 1.0f / step : 0.0f;
            double e = 0;
            for (int l = 0; l < n; l++) {
                t[l] = clampr((x[l] + off) * inv, lo, hi);
                const double r = (double)x[l] - ((double)(step * (float)t[l]) - off);
                e += (double)w[l] * r * r;
            }
            if (e < best) best = e, *sc = s, *m = mm, memcpy(q, t, (size_t)n * sizeof *q);
        }
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

// Q4_K / Q5_K: each sub-block of 32 fitted alone (x ~ s q - o, s, o >= 0), then the 8 scales
// and 8 mins quantized to 6 bits against their largest, each pair refined (k_refine).
static void block_k45(G3DType t, void *dst, const float *x, const float *w) {
    const int top = t == G3_Q4_K ? 15 : 31;
    int q[G3_QK_K];
    float s[8], o[8], smax = 0.0f, omax = 0.0f, m;
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
        k_refine(x + 32 * j, w + 32 * j, 32, 0, top, df, dminf, 0, 63, dminf > 0.0f, &sc[j], &mm[j], q + 32 * j);
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
}

// Q6_K: each sub-block of 16 fitted alone (x ~ s (q - 32), s signed), the 16 scales quantized
// to int8 against their largest, each refined (k_refine, no min).
static void block_q6k(void *dst, const float *x, const float *w) {
    G3BlockQ6_K *b = dst;
    int q[G3_QK_K];
    float s[16], amax = 0.0f;
    for (int j = 0; j < 16; j++) {
        s[j] = sym_fit(x + 16 * j, w + 16 * j, 16, -32, 31, 0, 1, q);
        amax = fmaxf(amax, fabsf(s[j]));
    }
    b->d = g3_f32_to_f16(amax / 127.0f);
    const float df = g3_f16_to_f32(b->d);
    for (int j = 0; j < 16; j++) {
        int sc = df > 0.0f ? clampr(s[j] / df, -127, 127) : 0, m0 = 0;
        k_refine(x + 16 * j, w + 16 * j, 16, -32, 31, df, 0.0f, -127, 127, 0, &sc, &m0, q + 16 * j);
        b->scales[j] = (int8_t)sc;
        for (int l = 0; l < 16; l++) q[16 * j + l] += 32;
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
}

void g3_qsearch_block(G3DType t, void *dst, const float *x, const float *w) {
    int q[32];
    float m;
    switch (t) {
    case G3_Q8_0: {
        G3BlockQ8_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -127, 127, 1, 0, q));
        for (int j = 0; j < 32; j++) b->qs[j] = (int8_t)q[j];
        break;
    }
    case G3_Q4_0: {
        G3BlockQ4_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -8, 7, 1, 0, q));
        for (int j = 0; j < 32; j++) q[j] += 8;
        pack32(q, b->qs, NULL);
        break;
    }
    case G3_Q5_0: {
        G3BlockQ5_0 *b = dst;
        b->d = g3_f32_to_f16(sym_fit(x, w, 32, -16, 15, 1, 1, q));
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
    case G3_Q5_K: block_k45(t, dst, x, w); break;
    case G3_Q6_K: block_q6k(dst, x, w); break;
    default: break;
    }
}

static double sqerr(const float *x, const float *y, const float *w, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

void g3_qsearch_plain(G3DType t, G3QuantFn simple, void *dst, const float *src, int64_t n) {
    const G3TypeTraits *tt = g3_type(t);
    const int bn = tt->block, bb = tt->block_bytes;
    uint8_t cand[256];
    float y[G3_QK_K], z[G3_QK_K], w[G3_QK_K];
    for (int64_t i = 0; i < n / bn; i++) {
        const float *x = src + i * bn;
        uint8_t *b = (uint8_t *)dst + i * bb;
        simple(b, x, bn);
        int finite = 1;
        for (int j = 0; j < bn; j++) finite &= isfinite(x[j]);
        if (!finite) continue;
        for (int j = 0; j < bn; j++) w[j] = 1.0f;
        g3_qsearch_block(t, cand, x, w);
        tt->to_f32(y, b, bn);
        tt->to_f32(z, cand, bn);
        if (sqerr(x, z, w, bn) < sqerr(x, y, w, bn)) memcpy(b, cand, (size_t)bb);
    }
}
