// quant_dot.h: dot products of ggml's block-quantized weight rows with activations quantized
// per block of 32 to int8 (as llama.cpp does), for the fast path of the quantized linear layer
// (backend/cpu/linear_quant.c). One table per ISA level, each in its own file:
//   quant_dot_scalar.c      the references (plain C, integer sums: the SIMD kernels give the
//                           same int32 block sums, only the float accumulation order differs)
//   quant_dot_avx2.c        AVX2 (maddubs: |w| x sign-moved a, pairs summed to int32)
//   quant_dot_avx512.c      AVX-512 BW: two blocks per 512-bit register
//   quant_dot_avx512vnni.c  AVX512-VNNI: vpdpbusd does the multiply and the sum of four
// Types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q4_K, Q5_K, Q6_K (the ones Q4_K_M /
// Q5_K_M files hold, with Q5_0 / Q5_1 / Q8_0 where a row is not whole super-blocks: Gemma 3
// 1B's 1152). A level's table starts from the one below it: a kernel a level lacks is the
// lower level's.
// g3_qdot_table(level) gives a level's table (the tests run every level the CPU has);
// g3_qdot() the best one the CPU and the kernels' cap (g3_kernels_level) allow.
#ifndef G3_QUANT_DOT_H
#define G3_QUANT_DOT_H

#include <stdint.h>
#include <string.h>

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

// One kernel per weight type; the K-quants take nb a multiple of 8 (a super-block of 256 is
// eight activation blocks, one per 32-element sub-block: Q4_K/Q5_K sub-blocks are 32 long;
// Q6_K's 16-long ones come in pairs).
typedef struct {
    G3QDot q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k;
} G3QDotTable;

// The table's kernel for a weight type, NULL for types without one.
G3QDot g3_qdot_kernel(const G3QDotTable *t, G3DType type);

enum { G3_QDOT_SCALAR = 0, G3_QDOT_AVX2, G3_QDOT_AVX512, G3_QDOT_AVX512VNNI, G3_QDOT_LEVELS };

// The highest level this CPU runs (cpuid), whatever the cap.
int g3_qdot_cpu_level(void);
// Level's table (levels above the CPU's give NULL).
const G3QDotTable *g3_qdot_table(int level);
// The table in use: the CPU's best, capped by g3_kernels_level() (scalar kernels: scalar here).
const G3QDotTable *g3_qdot(void);
// Its level.
int g3_qdot_level(void);
const char *g3_qdot_level_name(int level);

// x[nb * 32] -> nb activation blocks: d = max|x| / 127, qs = round(x / d).
void g3_quantize_q8a(G3BlockQ8A *a, const float *x, int nb);
void g3_quantize_q8a_avx512(G3BlockQ8A *a, const float *x, int nb);  // the same blocks for finite x
typedef void (*G3QuantA)(G3BlockQ8A *a, const float *x, int nb);
G3QuantA g3_qdot_quantizer(int level);  // a level's activation quantizer

// The references (quant_dot_scalar.c) and the ISA fillers.
float g3_qdot_q8_0_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q4_0_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q4_1_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q5_0_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q5_1_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q4_k_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q5_k_ref(const void *w, const G3BlockQ8A *a, int nb);
float g3_qdot_q6_k_ref(const void *w, const G3BlockQ8A *a, int nb);

// Q4_K / Q5_K's eight 6-bit scales and mins from their 12 packed bytes: j < 4 in the low 6 bits
// of bytes j and j + 4; j >= 4 in the nibbles of byte j + 4 with their top 2 bits in the top
// bits of bytes j - 4 and j.
static inline void g3_k_scales(const uint8_t *q, uint8_t sc[8], uint8_t m[8]) {
    uint32_t u[3], v[4];  // four bytes at a time: byte j of each word is sub-block j's (or j + 4's)
    memcpy(u, q, 12);
    v[0] = u[0] & 0x3f3f3f3fu;
    v[1] = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 6) & 0x03030303u) << 4;
    v[2] = u[1] & 0x3f3f3f3fu;
    v[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 6) & 0x03030303u) << 4;
    memcpy(sc, v, 8);
    memcpy(m, v + 2, 8);
}
// Q5_0 / Q5_1's 32 fifth bits (bit j: element j), little-endian.
static inline uint32_t g3_q5_qh(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
void g3_qdot_fill_avx2(G3QDotTable *t);
void g3_qdot_fill_avx512(G3QDotTable *t);
void g3_qdot_fill_avx512vnni(G3QDotTable *t);

#endif
