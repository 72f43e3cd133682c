// sfp8_dot_avx512vbmi.c: the SFP8 decode dot with AVX512-VBMI and AVX512-BF16 (see sfp8_dot.h),
// the way gemma.cpp decodes SFP: a code's bf16 pattern is two bytes, each one 128-entry table
// lookup (vpermi2b over two 64-byte tables: the code's low 7 bits pick, bit 7 is ignored), the
// sign bit or-ed into the high byte. Interleaving the byte vectors (vpunpck{l,h}bw) gives bf16
// weights in a lane-wise order; the activations are rounded to bf16 once per call and laid out
// in that same order (prep), so each 64 weights cost 2 lookups, 1 ternary-logic, 2 unpacks and
// 2 vdpbf16ps. Tails (n % 64) take the f32 path.
#include <immintrin.h>

#include "../../tensor/dtype.h"
#include "../../tensor/sfp8.h"
#include "sfp8_dot.h"

#define TGT __attribute__((target("avx512f,avx512bw,avx512vbmi,avx512bf16")))

// The bf16 pattern of code c (sfp8.h), low and high bytes, in two 64-byte halves each.
static uint8_t tab_lo[128] __attribute__((aligned(64))), tab_hi[128] __attribute__((aligned(64)));

static void tables_init(void) {
    for (int c = 0; c < 128; c++) {
        const uint16_t h = c == 0 ? 0 : c < 64 ? (uint16_t)(0x3400 + (c << 5)) : (uint16_t)(0x3800 + (c << 4));
        tab_lo[c] = (uint8_t)h, tab_hi[c] = (uint8_t)(h >> 8);
    }
}

// x[0, n) to bf16, each 64 in the order the dot's unpacks produce: for 128-bit lane k (0..3)
// first x[16k .. 16k + 8) (unpacklo's), after all four lanes x[16k + 8 .. 16k + 16) (unpackhi's).
static void prep_vbmi(uint16_t *xp, const float *x, int64_t n) {
    for (int64_t o = 0; o + 64 <= n; o += 64)
        for (int half = 0; half < 2; half++)
            for (int k = 0; k < 4; k++)
                for (int j = 0; j < 8; j++) xp[o + half * 32 + k * 8 + j] = g3_f32_to_bf16(x[o + 16 * k + 8 * half + j]);
}

TGT static float dot_vbmi(const uint8_t *w, const uint16_t *xp, const float *x, int64_t n) {
    const __m512i lo0 = _mm512_load_si512(tab_lo), lo1 = _mm512_load_si512(tab_lo + 64);
    const __m512i hi0 = _mm512_load_si512(tab_hi), hi1 = _mm512_load_si512(tab_hi + 64), sign = _mm512_set1_epi8((char)0x80);
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 64 <= n; k += 64) {
        const __m512i c = _mm512_loadu_si512(w + k);
        const __m512i lo = _mm512_permutex2var_epi8(lo0, c, lo1);
        const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(hi0, c, hi1), c, sign, 0xF8);  // hi | (c & 0x80)
        const __m512i wa = _mm512_unpacklo_epi8(lo, hi), wb = _mm512_unpackhi_epi8(lo, hi);
        a0 = _mm512_dpbf16_ps(a0, (__m512bh)wa, (__m512bh)_mm512_loadu_si512(xp + k));
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)wb, (__m512bh)_mm512_loadu_si512(xp + k + 32));
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; k < n; k++) s += g3_sfp8_decode(w[k]) * x[k];
    return s;
}

void g3_sfp8_fill_avx512vbmi(G3Sfp8Kernels *k) {
    tables_init();
    k->prep = prep_vbmi;
    k->dot_prep = dot_vbmi;
}
