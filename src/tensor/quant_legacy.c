// quant_legacy.c: ggml's Q4_1, Q5_0 and Q5_1 blocks, scalar references: ggml's max rules
// (_simple) and the searching quantizers built on them (see quant.h, quant_search.h).
#include <math.h>

#include "quant_search.h"

static float fmin32(const float *x, float *max_out) {
    float mn = x[0], mx = x[0];
    for (int j = 1; j < 32; j++) mn = fminf(mn, x[j]), mx = fmaxf(mx, x[j]);
    *max_out = mx;
    return mn;
}

// ggml's (uint8_t)(int8_t)(v + 0.5f) for v in [0, levels], clamped; NaN gives 0
static int level_up(float v, int top) { return v >= (float)top ? top : v > 0.0f ? (int)(v + 0.5f) : 0; }
static int level_trunc(float v, int top) { return v >= (float)top ? top : v > 0.0f ? (int)v : 0; }

void g3_q4_1_to_f32(float *dst, const void *src, int64_t n) {
    const G3BlockQ4_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = g3_f16_to_f32(b[i].d), m = g3_f16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) dst[j] = (float)(b[i].qs[j] & 15) * d + m, dst[j + 16] = (float)(b[i].qs[j] >> 4) * d + m;
    }
}

void g3_q4_1_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ4_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float mx, mn = fmin32(src, &mx);
        const float d = (mx - mn) / 15.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = g3_f32_to_f16(d);
        b[i].m = g3_f32_to_f16(mn);
        for (int j = 0; j < 16; j++)
            b[i].qs[j] = (uint8_t)(level_up((src[j] - mn) * id, 15) | level_up((src[j + 16] - mn) * id, 15) << 4);
    }
}

static uint32_t qh_of(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void qh_put(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24); }

void g3_q5_0_to_f32(float *dst, const void *src, int64_t n) {
    const G3BlockQ5_0 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = g3_f16_to_f32(b[i].d);
        uint32_t qh = qh_of(b[i].qh);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((int)((b[i].qs[j] & 15) | ((qh >> j) & 1) << 4) - 16) * d;
            dst[j + 16] = (float)((int)((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) - 16) * d;
        }
    }
}

void g3_q5_0_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ5_0 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(src[j])) amax = fabsf(src[j]), max = src[j];
        const float d = max / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = g3_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = level_trunc(src[j] * id + 16.5f, 31), hi = level_trunc(src[j + 16] * id + 16.5f, 31);
            b[i].qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        qh_put(b[i].qh, qh);
    }
}

void g3_q5_1_to_f32(float *dst, const void *src, int64_t n) {
    const G3BlockQ5_1 *b = src;
    for (int64_t i = 0; i < n / 32; i++, dst += 32) {
        float d = g3_f16_to_f32(b[i].d), m = g3_f16_to_f32(b[i].m);
        uint32_t qh = qh_of(b[i].qh);
        for (int j = 0; j < 16; j++) {
            dst[j] = (float)((b[i].qs[j] & 15) | ((qh >> j) & 1) << 4) * d + m;
            dst[j + 16] = (float)((b[i].qs[j] >> 4) | ((qh >> (j + 16)) & 1) << 4) * d + m;
        }
    }
}

void g3_q5_1_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ5_1 *b = dst;
    for (int64_t i = 0; i < n / 32; i++, src += 32) {
        float mx, mn = fmin32(src, &mx);
        const float d = (mx - mn) / 31.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = g3_f32_to_f16(d);
        b[i].m = g3_f32_to_f16(mn);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int lo = level_up((src[j] - mn) * id, 31), hi = level_up((src[j + 16] - mn) * id, 31);
            b[i].qs[j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        qh_put(b[i].qh, qh);
    }
}

void g3_q4_1_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q4_1, g3_q4_1_from_f32_simple, dst, src, n); }

void g3_q5_0_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q5_0, g3_q5_0_from_f32_simple, dst, src, n); }

void g3_q5_1_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q5_1, g3_q5_1_from_f32_simple, dst, src, n); }
