// sfp8_dot_scalar.c: the reference SFP8 kernels and the level dispatch (see sfp8_dot.h).
#include "sfp8_dot.h"

#include "../../tensor/sfp8.h"
#include "../kernels.h"
#include "quant_dot.h"

static float dot_ref(const uint8_t *w, const float *x, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains, as the other references
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) {
        s0 += g3_sfp8_decode(w[k]) * x[k];
        s1 += g3_sfp8_decode(w[k + 1]) * x[k + 1];
        s2 += g3_sfp8_decode(w[k + 2]) * x[k + 2];
        s3 += g3_sfp8_decode(w[k + 3]) * x[k + 3];
    }
    for (; k < n; k++) s0 += g3_sfp8_decode(w[k]) * x[k];
    return (s0 + s1) + (s2 + s3);
}

static void to_f32_ref(float *dst, const uint8_t *w, int64_t n) { g3_sfp8_to_f32(dst, w, n); }

static G3Sfp8Kernels tables[G3_SFP8_LEVELS];

// The highest level this CPU runs: VBMI needs AVX512-BF16 too (vdpbf16ps).
static int cpu_level(void) {
    if (g3_qdot_cpu_level() < G3_QDOT_AVX512) return G3_SFP8_SCALAR;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512bf16") ? G3_SFP8_AVX512VBMI : G3_SFP8_AVX512;
}
static int ready;

const G3Sfp8Kernels *g3_sfp8_kernels_at(int level) {
    if (level < 0 || level >= G3_SFP8_LEVELS) return NULL;
    const int top = cpu_level();
    if (level > top) return NULL;
#pragma omp critical(g3_sfp8_init)
    if (!ready) {
        tables[G3_SFP8_SCALAR] = (G3Sfp8Kernels){dot_ref, to_f32_ref, NULL, NULL};
        tables[G3_SFP8_AVX512] = tables[G3_SFP8_SCALAR];
        if (top >= G3_SFP8_AVX512) g3_sfp8_fill_avx512(&tables[G3_SFP8_AVX512]);
        tables[G3_SFP8_AVX512VBMI] = tables[G3_SFP8_AVX512];
        if (top >= G3_SFP8_AVX512VBMI) g3_sfp8_fill_avx512vbmi(&tables[G3_SFP8_AVX512VBMI]);
        ready = 1;
    }
    return &tables[level];
}

// The kernels' cap (g3_kernels_level): scalar -> scalar, AVX2 -> scalar (no AVX2 kernel),
// AVX-512 without BF16 -> AVX-512.
const G3Sfp8Kernels *g3_sfp8_kernels(void) {
    const G3Isa cap = g3_kernels_level();
    int level = cpu_level();
    if (cap < G3_ISA_AVX512) level = G3_SFP8_SCALAR;
    else if (cap < G3_ISA_AVX512BF16 && level > G3_SFP8_AVX512) level = G3_SFP8_AVX512;
    return g3_sfp8_kernels_at(level);
}
