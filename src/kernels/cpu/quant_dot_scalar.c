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
    G3QDotTable t = {g3_qdot_q8_0_ref, g3_qdot_q4_0_ref};
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

const G3QDotTable *g3_qdot(void) {
    G3Isa cap = g3_kernels_level();
    int level = g3_qdot_cpu_level();
    if (cap == G3_ISA_SCALAR) level = G3_QDOT_SCALAR;
    else if (cap == G3_ISA_AVX2 && level > G3_QDOT_AVX2) level = G3_QDOT_AVX2;
    return g3_qdot_table(level);
}

const char *g3_qdot_level_name(int level) {
    static const char *names[] = {"scalar", "avx2", "avx512", "avx512vnni"};
    return level >= 0 && level < G3_QDOT_LEVELS ? names[level] : "?";
}
