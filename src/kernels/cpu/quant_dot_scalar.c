// quant_dot_scalar.c: the reference dot products of quant_dot.h, the activation quantizer, and
// the choice of table by CPU level. Plain C, kept forever: the SIMD kernels are held against it.
#include "quant_dot.h"

#include <cpuid.h>
#include <math.h>
#include <stddef.h>

#include "../kernels.h"

void g3_quantize_q8a(G3BlockQ8A *a, const float *x, int nb) {
    for (int i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int32_t s = 0;
        for (int j = 0; j < 32; j++) {
            float v = nearbyintf(x[j] * id);  // |v| <= 127 for finite x; NaN or inf: 0
            int8_t q = v == v && fabsf(v) <= 127.0f ? (int8_t)v : 0;
            a[i].qs[j] = q;
            s += q;
        }
        a[i].d = d == d && d <= 3.0e38f ? d : 0.0f;
        a[i].sum = s;
    }
}

float g3_qdot_q8_0_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ8_0 *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb; i++) {
        int32_t s = 0;
        for (int j = 0; j < 32; j++) s += (int32_t)b[i].qs[j] * a[i].qs[j];
        acc += (float)s * (g3_f16_to_f32(b[i].d) * a[i].d);
    }
    return acc;
}

// element j of a block in the low nibble of byte j, j + 16 in the high one; value q - 8
float g3_qdot_q4_0_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_0 *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++) s += (int32_t)(b[i].qs[j] & 0x0f) * a[i].qs[j] + (int32_t)(b[i].qs[j] >> 4) * a[i].qs[j + 16];
        s -= 8 * a[i].sum;
        acc += (float)s * (g3_f16_to_f32(b[i].d) * a[i].d);
    }
    return acc;
}

// Q4_1: x = q * d + m, so W.A = d A.d sum(q a) + m A.d sum(a)
float g3_qdot_q4_1_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_1 *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb; i++) {
        int32_t s = 0;
        for (int j = 0; j < 16; j++) s += (int32_t)(b[i].qs[j] & 0x0f) * a[i].qs[j] + (int32_t)(b[i].qs[j] >> 4) * a[i].qs[j + 16];
        acc += ((float)s * g3_f16_to_f32(b[i].d) + (float)a[i].sum * g3_f16_to_f32(b[i].m)) * a[i].d;
    }
    return acc;
}

// Q5_0 / Q5_1: the Q4 nibbles plus a fifth bit from qh (bit j: element j)
static int32_t q5_sum(const uint8_t *qs, const uint8_t *qhp, const int8_t *a) {
    uint32_t qh = g3_q5_qh(qhp);
    int32_t s = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4, hi = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        s += lo * a[j] + hi * a[j + 16];
    }
    return s;
}

float g3_qdot_q5_0_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_0 *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb; i++) acc += (float)(q5_sum(b[i].qs, b[i].qh, a[i].qs) - 16 * a[i].sum) * (g3_f16_to_f32(b[i].d) * a[i].d);
    return acc;
}

float g3_qdot_q5_1_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_1 *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb; i++)
        acc += ((float)q5_sum(b[i].qs, b[i].qh, a[i].qs) * g3_f16_to_f32(b[i].d) + (float)a[i].sum * g3_f16_to_f32(b[i].m)) * a[i].d;
    return acc;
}

// Q4_K / Q5_K: sub-block j (activation block 8i + j) is x = d sc_j q - dmin m_j, so its part is
// A.d (d sc_j sum(q a) - dmin m_j sum(a)). Sub-block j's q: the low (j even) or high nibbles of
// qs[32 (j / 2) ...], plus for Q5_K bit j of qh[l].
static float qdot_k(const uint8_t *qs, const uint8_t *qh, const uint8_t *packed, uint16_t d16, uint16_t dmin16, const G3BlockQ8A *a) {
    uint8_t sc[8], m[8];
    g3_k_scales(packed, sc, m);
    const float d = g3_f16_to_f32(d16), dmin = g3_f16_to_f32(dmin16);
    float acc = 0.0f;
    for (int j = 0; j < 8; j++) {
        const uint8_t *q = qs + 32 * (j / 2);
        int32_t s = 0;
        for (int l = 0; l < 32; l++) {
            int v = j & 1 ? q[l] >> 4 : q[l] & 0x0f;
            if (qh) v |= ((qh[l] >> j) & 1) << 4;
            s += v * a[j].qs[l];
        }
        acc += a[j].d * (d * (float)sc[j] * (float)s - dmin * (float)m[j] * (float)a[j].sum);
    }
    return acc;
}

float g3_qdot_q4_k_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ4_K *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb / 8; i++) acc += qdot_k(b[i].qs, NULL, b[i].scales, b[i].d, b[i].dmin, a + 8 * i);
    return acc;
}

float g3_qdot_q5_k_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ5_K *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb / 8; i++) acc += qdot_k(b[i].qs, b[i].qh, b[i].scales, b[i].d, b[i].dmin, a + 8 * i);
    return acc;
}

// Q6_K: activation block k = 4h + g of a super-block holds elements 128h + 32g + l; its q is
// a nibble of ql[64h + 32 (g & 1) + l] (low for g < 2) with bits 2g, 2g + 1 of qh[32h + l] on
// top, minus 32; its two halves of 16 take the int8 scales 2k and 2k + 1.
float g3_qdot_q6_k_ref(const void *w, const G3BlockQ8A *a, int nb) {
    const G3BlockQ6_K *b = w;
    float acc = 0.0f;
    for (int i = 0; i < nb / 8; i++) {
        const float d = g3_f16_to_f32(b[i].d);
        for (int k = 0; k < 8; k++) {
            const int h = k / 4, g = k % 4;
            const uint8_t *ql = b[i].ql + 64 * h + 32 * (g & 1), *qh = b[i].qh + 32 * h;
            const G3BlockQ8A *ak = a + 8 * i + k;
            int32_t s[2] = {0, 0};
            for (int l = 0; l < 32; l++) {
                int q = (g < 2 ? ql[l] & 0x0f : ql[l] >> 4) | ((qh[l] >> (2 * g)) & 3) << 4;
                s[l / 16] += (q - 32) * ak->qs[l];
            }
            acc += d * ak->d * (float)(b[i].scales[2 * k] * s[0] + b[i].scales[2 * k + 1] * s[1]);
        }
    }
    return acc;
}

G3QDot g3_qdot_kernel(const G3QDotTable *t, G3DType type) {
    switch (type) {
    case G3_Q8_0: return t->q8_0;
    case G3_Q4_0: return t->q4_0;
    case G3_Q4_1: return t->q4_1;
    case G3_Q5_0: return t->q5_0;
    case G3_Q5_1: return t->q5_1;
    case G3_Q4_K: return t->q4_k;
    case G3_Q5_K: return t->q5_k;
    case G3_Q6_K: return t->q6_k;
    default: return NULL;
    }
}

static int cpu_level(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return G3_QDOT_SCALAR;
    unsigned a, b, c, d;  // F16C (vcvtph2ps) is not among every compiler's __builtin_cpu_supports names
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C)) return G3_QDOT_SCALAR;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
          __builtin_cpu_supports("avx512dq")))
        return G3_QDOT_AVX2;
    if (!__builtin_cpu_supports("avx512vnni")) return G3_QDOT_AVX512;
    return G3_QDOT_AVX512VNNI;
}

int g3_qdot_cpu_level(void) {
    static int level = -1;
    if (level < 0) level = cpu_level();
    return level;
}

static G3QDotTable tables[G3_QDOT_LEVELS];
static int tables_ready;

static void make_tables(void) {
    G3QDotTable t = {g3_qdot_q8_0_ref, g3_qdot_q4_0_ref, g3_qdot_q4_1_ref, g3_qdot_q5_0_ref,
                     g3_qdot_q5_1_ref, g3_qdot_q4_k_ref, g3_qdot_q5_k_ref, g3_qdot_q6_k_ref};
    int top = g3_qdot_cpu_level();
    tables[G3_QDOT_SCALAR] = t;
    if (top >= G3_QDOT_AVX2) g3_qdot_fill_avx2(&t), tables[G3_QDOT_AVX2] = t;
    if (top >= G3_QDOT_AVX512) g3_qdot_fill_avx512(&t), tables[G3_QDOT_AVX512] = t;
    if (top >= G3_QDOT_AVX512VNNI) g3_qdot_fill_avx512vnni(&t), tables[G3_QDOT_AVX512VNNI] = t;
    tables_ready = 1;
}

const G3QDotTable *g3_qdot_table(int level) {
    if (level < 0 || level >= G3_QDOT_LEVELS || level > g3_qdot_cpu_level()) return NULL;
#pragma omp critical(g3_qdot_init)
    if (!tables_ready) make_tables();
    return &tables[level];
}

int g3_qdot_level(void) {
    G3Isa cap = g3_kernels_level();
    int level = g3_qdot_cpu_level();
    if (cap == G3_ISA_SCALAR) level = G3_QDOT_SCALAR;
    else if (cap == G3_ISA_AVX2 && level > G3_QDOT_AVX2) level = G3_QDOT_AVX2;
    return level;
}

const G3QDotTable *g3_qdot(void) { return g3_qdot_table(g3_qdot_level()); }

const char *g3_qdot_level_name(int level) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    return level >= 0 && level < G3_QDOT_LEVELS ? names[level] : "?";
}

G3QuantA g3_qdot_quantizer(int level) {
    return level >= G3_QDOT_AVX512 && level <= g3_qdot_cpu_level() ? g3_quantize_q8a_avx512 : g3_quantize_q8a;
}
