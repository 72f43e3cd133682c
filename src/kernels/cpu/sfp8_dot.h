// sfp8_dot.h: the kernels of gemma.cpp's SFP weights (tensor/sfp8.h) for the CPU linear layer
// (backend/cpu/linear_sfp8.c): a dot product of one weight row with f32 activations (decode)
// and a row decoder to f32 (prefill widens panels of rows for the f32 GEMM). One table per
// level, each in its own file:
//   sfp8_dot_scalar.c   the references: tensor/sfp8.c's decoder, products summed in f32
//   sfp8_dot_avx512.c   AVX-512: 16 codes widened to int32, the f32 pattern built by shifts
//                       and adds (sfp8.h), sign and zero by masks, then FMA
//   sfp8_dot_avx512vbmi.c  AVX512-VBMI + BF16: byte-table lookups to bf16 weights, vdpbf16ps
//                       against activations rounded to bf16 (prep, once per call: the fast
//                       modes' rounding, as BF16 weights take)
// The AVX-512 dot differs from the reference only in the order of the f32 sums; the VBMI one
// also by the activations' bf16 rounding (relative 2^-9 per product).
#ifndef G3_SFP8_DOT_H
#define G3_SFP8_DOT_H

#include <stdint.h>

typedef struct {
    float (*dot)(const uint8_t *w, const float *x, int64_t n);
    void (*to_f32)(float *dst, const uint8_t *w, int64_t n);
    // NULL, or the level's own activation layout: prep writes n bf16 values to xp (once per
    // activation row), dot_prep takes them (and x itself for a tail) instead of dot.
    void (*prep)(uint16_t *xp, const float *x, int64_t n);
    float (*dot_prep)(const uint8_t *w, const uint16_t *xp, const float *x, int64_t n);
} G3Sfp8Kernels;

enum { G3_SFP8_SCALAR = 0, G3_SFP8_AVX512, G3_SFP8_AVX512VBMI, G3_SFP8_LEVELS };

// A level's kernels (NULL for a level this CPU lacks); g3_sfp8_kernels() the best one allowed
// by the CPU and the kernels' cap (g3_kernels_level).
const G3Sfp8Kernels *g3_sfp8_kernels_at(int level);
const G3Sfp8Kernels *g3_sfp8_kernels(void);

void g3_sfp8_fill_avx512(G3Sfp8Kernels *k);
void g3_sfp8_fill_avx512vbmi(G3Sfp8Kernels *k);

#endif
