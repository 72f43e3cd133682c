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
static int ready;

const G3Sfp8Kernels *g3_sfp8_kernels_at(int level) {
    if (level < 0 || level >= G3_SFP8_LEVELS) return NULL;
    const int top = g3_qdot_cpu_level() >= G3_QDOT_AVX512 ? G3_SFP8_AVX512 : G3_SFP8_SCALAR;
    if (level > top) return NULL;
#pragma omp critical(g3_sfp8_init)
    if (!ready) {
        tables[G3_SFP8_SCALAR] = (G3Sfp8Kernels){dot_ref, to_f32_ref};
        tables[G3_SFP8_AVX512] = tables[G3_SFP8_SCALAR];
        if (top >= G3_SFP8_AVX512) g3_sfp8_fill_avx512(&tables[G3_SFP8_AVX512]);
        ready = 1;
    }
    return &tables[level];
}

const G3Sfp8Kernels *g3_sfp8_kernels(void) {
    return g3_sfp8_kernels_at(g3_qdot_level() >= G3_QDOT_AVX512 ? G3_SFP8_AVX512 : G3_SFP8_SCALAR);
}
