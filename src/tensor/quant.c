// quant.c: ggml's Q8_0 and Q4_0 blocks, scalar references (see quant.h). Plain C, kept forever:
// SIMD kernels are held against these.
#include "quant_search.h"

#include <math.h>

void g3_q8_0_to_f32(float *dst, const void *src, int64_t n) {
    const G3BlockQ8_0 *b = src;
    for (int64_t i = 0; i < n / G3_QK8_0; i++) {
        float d = g3_f16_to_f32(b[i].d);
        for (int j = 0; j < G3_QK8_0; j++) dst[i * G3_QK8_0 + j] = (float)b[i].qs[j] * d;
    }
}

void g3_q8_0_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ8_0 *b = dst;
    for (int64_t i = 0; i < n / G3_QK8_0; i++) {
        const float *x = src + i * G3_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < G3_QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = g3_f32_to_f16(d);
        for (int j = 0; j < G3_QK8_0; j++) {
            float v = roundf(x[j] * id);  // in [-127, 127] for finite x; a NaN or infinity gives 0 (ggml: undefined)
            b[i].qs[j] = v == v && fabsf(v) <= 127.0f ? (int8_t)v : 0;
        }
    }
}

void g3_q4_0_to_f32(float *dst, const void *src, int64_t n) {
    const G3BlockQ4_0 *b = src;
    for (int64_t i = 0; i < n / G3_QK4_0; i++) {
        float d = g3_f16_to_f32(b[i].d);
        float *y = dst + i * G3_QK4_0;
        for (int j = 0; j < G3_QK4_0 / 2; j++) {
            y[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            y[j + G3_QK4_0 / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

// ggml's (int8_t)(v) then MIN(15, .) for v = x / d + 8.5 in [0.5, 16.5]; a NaN gives 0.
static int q4_level(float v) { return v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0; }

void g3_q4_0_from_f32_simple(void *dst, const float *src, int64_t n) {
    G3BlockQ4_0 *b = dst;
    for (int64_t i = 0; i < n / G3_QK4_0; i++) {
        const float *x = src + i * G3_QK4_0;
        float amax = 0.0f, max = 0.0f;  // the value of largest magnitude, sign kept: the first one on ties
        for (int j = 0; j < G3_QK4_0; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = g3_f32_to_f16(d);
        for (int j = 0; j < G3_QK4_0 / 2; j++) {
            int lo = q4_level(x[j] * id + 8.5f), hi = q4_level(x[j + G3_QK4_0 / 2] * id + 8.5f);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

void g3_q8_0_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q8_0, g3_q8_0_from_f32_simple, dst, src, n); }

void g3_q4_0_from_f32(void *dst, const float *src, int64_t n) { g3_qsearch_plain(G3_Q4_0, g3_q4_0_from_f32_simple, dst, src, n); }
