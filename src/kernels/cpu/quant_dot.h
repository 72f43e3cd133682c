// quant_dot.h: dot products of ggml's block-quantized weight rows with activations quantized
// per block of 32 to int8 (as llama.cpp does), for the fast path of the quantized linear layer
// (backend/cpu/linear_quant.c). One table per ISA level, each in its own file:
//   quant_dot_scalar.c      the references (plain C, integer sums: the SIMD kernels give the
//                           same int32 block sums, only the float accumulation order differs)
//   quant_dot_avx2.c        AVX2 (maddubs: |w| x sign-moved a, pairs summed to int32)
//   quant_dot_avx512.c      AVX-512 BW: two blocks per 512-bit register
//   quant_dot_avx512vnni.c  AVX512-VNNI: vpdpbusd does the multiply and the sum of four
// g3_qdot_table(level) gives a level's table (the tests run every level the CPU has);
// g3_qdot() the best one the CPU and the kernels' cap (g3_kernels_level) allow.
#ifndef G3_QUANT_DOT_H
#define G3_QUANT_DOT_H

#include <stdint.h>

#include "../../tensor/quant.h"

// An activation block: x ~= qs * d, qs in [-127, 127]; sum = sum of qs (Q4_0's offset of 8
// and the other offset formats subtract it once per block instead of per element).
typedef struct {
    float d;
    int32_t sum;
    int8_t qs[32];
} G3BlockQ8A;

// sum over nb blocks of W[k] * A[k]: w one weight row of the table's type, a nb blocks.
typedef float (*G3QDot)(const void *w, const G3BlockQ8A *a, int nb);

typedef struct {
    G3QDot q8_0, q4_0;
} G3QDotTable;

enum { G3_QDOT_SCALAR = 0, G3_QDOT_AVX2, G3_QDOT_AVX512, G3_QDOT_AVX512VNNI, G3_QDOT_LEVELS };

// The highest level this CPU runs (cpuid), whatever the cap.
int g3_qdot_cpu_level(void);
// Level's table (levels above the CPU's give NULL).
const G3QDotTable *g3_qdot_table(int level);
// The table in use: the CPU's best, capped by g3_kernels_level() (scalar kernels: scalar here).
const G3QDotTable *g3_qdot(void);
const char *g3_qdot_level_name(int level);

// x[nb * 32] -> nb activation blocks: d = max|x| / 127, qs = round(x / d).
void g3_quantize_q8a(G3BlockQ8A *a, const float *x, int nb);

// The references (quant_dot_scalar.c) and the ISA fillers.
float g3_qdot_q8_0_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q4_0_ref(const void *w, const G3BlockQ8A *a, int nb);
void g3_qdot_fill_avx2(G3QDotTable *t);
void g3_qdot_fill_avx512(G3QDotTable *t);
void g3_qdot_fill_avx512vnni(G3QDotTable *t);

#endif
