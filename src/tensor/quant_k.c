// quant_k.c: ggml's K-quants Q4_K, Q5_K, Q6_K: dequantization in ggml's exact layouts, the
// simple max/min rules and the searching quantizers built on them (see quant.h,
// quant_search.h). Plain C, the references.
#include <math.h>
#include <string.h>

#include "quant_search.h"

// Sub-block j's 6-bit scale and min from the 12 packed bytes: j < 4 in the low 6 bits of bytes
// j and j + 4; j >= 4 in the nibbles of byte j + 4 with their top 2 bits in bytes j - 4 and j.
static void scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void pack_scale_min(uint8_t *q, const int *sc, const int *m) {
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
    }
}

void g3_q4_k_to_f32(float *y, const void *src, int64_t n) {
    const G3BlockQ4_K *b = src;
    for (int64_t i = 0; i < n / G3_QK_K; i++) {
        const float d = g3_f16_to_f32(b[i].d), dmin = g3_f16_to_f32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int j = 0, is = 0; j < G3_QK_K; j += 64, is += 2, q += 32) {
            int sc, m;
            scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void g3_q5_k_to_f32(float *y, const void *src, int64_t n) {
    const G3BlockQ5_K *b = src;
    for (int64_t i = 0; i < n / G3_QK_K; i++) {
        const float d = g3_f16_to_f32(b[i].d), dmin = g3_f16_to_f32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0, is = 0; j < G3_QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            int sc, m;
            scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

void g3_q6_k_to_f32(float *y, const void *src, int64_t n) {
    const G3BlockQ6_K *b = src;
    for (int64_t i = 0; i < n / G3_QK_K; i++) {
        const float d = g3_f16_to_f32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = (int)((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q2 = (int)((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q3 = (int)((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q4 = (int)((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
    }
}

static int clampi(float v, int lo, int hi) { return v >= (float)hi ? hi : v > (float)lo ? (int)lrintf(v) : lo; }

// Q4_K / Q5_K: each sub-block of 32 gets x ~ s * q - o with o = -min(0, min x) >= 0 and
// s = (max x + o) / top; then s and o are quantized to 6 bits against the block's largest.
// q: the levels out [256].
static void quant_k_sub(const float *x, int top, uint16_t *d_out, uint16_t *dmin_out, uint8_t *scales, uint8_t *q) {
    float s[8], o[8], smax = 0.0f, omax = 0.0f;
    for (int j = 0; j < 8; j++) {
        float mn = 0.0f, mx = 0.0f;
        for (int l = 0; l < 32; l++) {
            float v = x[32 * j + l];
            if (v == v) mn = fminf(mn, v), mx = fmaxf(mx, v);
        }
        o[j] = -mn;
        s[j] = (mx - mn) / (float)top;
        if (!(s[j] <= 3.0e38f)) s[j] = 0.0f;
        if (!(o[j] <= 3.0e38f)) o[j] = 0.0f;
        smax = fmaxf(smax, s[j]), omax = fmaxf(omax, o[j]);
    }
    const float d = smax / 63.0f, dmin = omax / 63.0f;
    *d_out = g3_f32_to_f16(d);
    *dmin_out = g3_f32_to_f16(dmin);
    const float df = g3_f16_to_f32(*d_out), dminf = g3_f16_to_f32(*dmin_out);
    int sc[8], m[8];
    for (int j = 0; j < 8; j++) {
        // round the scale up and the offset up so that the range [min, max] stays covered
        sc[j] = df > 0.0f ? clampi(ceilf(s[j] / df - 1e-4f), 0, 63) : 0;
        m[j] = dminf > 0.0f ? clampi(ceilf(o[j] / dminf - 1e-4f), 0, 63) : 0;
        const float step = df * (float)sc[j], off = dminf * (float)m[j], inv = step > 0.0f ? 1.0f / step : 0.0f;
        for (int l = 0; l < 32; l++) q[32 * j + l] = (uint8_t)clampi((x[32 * j + l] + off) * inv, 0, top);
    }
    pack_scale_min(scales, sc, m);
}

void g3_q4_k_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ4_K *b = dst;
    uint8_t q[G3_QK_K];
    for (int64_t i = 0; i < n / G3_QK_K; i++, src += G3_QK_K) {
        quant_k_sub(src, 15, &b[i].d, &b[i].dmin, b[i].scales, q);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | q[64 * c + 32 + l] << 4);
    }
}

void g3_q5_k_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ5_K *b = dst;
    uint8_t q[G3_QK_K];
    for (int64_t i = 0; i < n / G3_QK_K; i++, src += G3_QK_K) {
        quant_k_sub(src, 31, &b[i].d, &b[i].dmin, b[i].scales, q);
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                b[i].qs[32 * c + l] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                b[i].qh[l] |= (uint8_t)((lo >> 4) << (2 * c) | (hi >> 4) << (2 * c + 1));
            }
    }
}

// Q6_K: each sub-block of 16 gets a signed scale s = x_max / -32 (the value of largest
// magnitude, sign kept, lands on -32 exactly), quantized to int8 against the largest |s|.
void g3_q6_k_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ6_K *b = dst;
    for (int64_t i = 0; i < n / G3_QK_K; i++, src += G3_QK_K) {
        float s[16], amax_s = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 16; l++) {
                float v = src[16 * j + l];
                if (amax < fabsf(v)) amax = fabsf(v), max = v;
            }
            s[j] = max / -32.0f;
            if (!(fabsf(s[j]) <= 3.0e38f)) s[j] = 0.0f;
            amax_s = fmaxf(amax_s, fabsf(s[j]));
        }
        const float d = amax_s / 127.0f;
        b[i].d = g3_f32_to_f16(d);
        const float df = g3_f16_to_f32(b[i].d);
        uint8_t q[G3_QK_K];
        for (int j = 0; j < 16; j++) {
            int sc = df > 0.0f ? clampi(s[j] / df, -127, 127) : 0;
            b[i].scales[j] = (int8_t)sc;
            const float step = df * (float)sc, inv = step != 0.0f ? 1.0f / step : 0.0f;
            for (int l = 0; l < 16; l++) q[16 * j + l] = (uint8_t)(clampi(src[16 * j + l] * inv, -32, 31) + 32);
        }
        memset(b[i].qh, 0, sizeof b[i].qh);
        for (int h = 0; h < 2; h++) {
            const uint8_t *qq = q + 128 * h;
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 15) | (qq[l + 64] & 15) << 4);
                ql[l + 32] = (uint8_t)((qq[l + 32] & 15) | (qq[l + 96] & 15) << 4);
                qh[l] = (uint8_t)((qq[l] >> 4) | (qq[l + 32] >> 4) << 2 | (qq[l + 64] >> 4) << 4 | (qq[l + 96] >> 4) << 6);
            }
        }
    }
}

void g3_q4_k_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q4_K, g3_q4_k_from_f32_simple, dst, src, n); }

void g3_q5_k_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q5_K, g3_q5_k_from_f32_simple, dst, src, n); }

void g3_q6_k_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q6_K, g3_q6_k_from_f32_simple, dst, src, n); }
