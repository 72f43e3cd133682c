// linear_quant.h: the CPU's linear layer over ggml's block types. Every type has kernels:
//   exact: f32 activations times the weights widened exactly, f32 sums (the reference; the
//          exact mode's 1e-6 comparisons hold against it)
//   fast:  activations quantized per block of 32 to int8 (as llama.cpp does), int32 block
//          sums by the CPU's best kernel (kernels/cpu/quant_dot.h): decode reads the weight
//          bytes and little else.
// In exact mode the types other than Q8_0 / Q4_0 widen each weight row to f32 (their
// reference to_f32) and take f32 dots.
// Outside exact mode, 8 rows or more (prefill) go through the f32 GEMM on slices of the weights
// widened to f32, for every block type: compute-bound work wants the GEMM's tiles.
#ifndef G3_LINEAR_QUANT_H
#define G3_LINEAR_QUANT_H

#include "../../kernels/cpu/quant_q4kx16.h"
#include "../../kernels/cpu/quant_q4x16.h"
#include "../../kernels/cpu/quant_q6kx16.h"
#include "../../kernels/cpu/quant_q5x16.h"
#include "../../kernels/cpu/quant_q8x16.h"
#include "../../tensor/weight.h"
#include "../backend.h"

// y[R, N] = x[R, K] . W^T for W [N, K] of a block type (K a multiple of its block, as the
// loader guarantees). 0, or -1 (message) for another type or no memory.
int g3_cpu_linear_quant(float *y, const float *x, const G3Weight *w, int R, int exact);

// y[R, N] = x[R, K] . W^T for W [N, K] of gemma.cpp's SFP8 (linear_sfp8.c): fewer than
// G3_SFP8_GEMM_MIN_ROWS rows (decode) by the CPU's best row dot (kernels/cpu/sfp8_dot.h,
// f32 activations), more by slices of the weights widened to f32 through the f32 GEMM.
// exact: the scalar reference decoder and dot. 0, or -1 (message).
enum { G3_SFP8_GEMM_MIN_ROWS = 8 };
int g3_cpu_linear_sfp8(float *y, const float *x, const G3Weight *w, int R, int exact);

// Many rows (prefill) over BF16 weights in the fast mode (linear_bf16.c: packed panels of 32
// weight rows, kernels/cpu/bf16w_gemm.h). 1 if it does not apply (fewer rows than
// G3_BF16_GEMM_MIN_ROWS, another type, no AVX512-BF16: the caller's g3_matmul then), 0 done,
// -1 out of memory.
enum { G3_BF16_GEMM_MIN_ROWS = 32 };
int g3_cpu_linear_bf16_gemm(float *y, const float *x, const G3Weight *w, int R);

// A weight repacked at load in groups of 16 rows (model/repack.c; Q4_0: quant_q4x16.h, Q8_0:
// quant_q8x16.h, Q5_0: quant_q5x16.h, Q4_K: quant_q4kx16.h, Q6_K: quant_q6kx16.h): the kernels of
// a quant_dot.h level for its type, where each group lies and how its blocks follow each other
// (the K-quants' blocks: whole super-blocks' shares). The types' kernels share their
// signatures, so decode and the GEMM take any of them through this.
typedef struct {
    G3Q4x16Gemv gemv;    // one group, nrows <= 16 of it
    G3Q4x16Gemv2 gemv2;  // two full groups: Q4_0, Q8_0, Q5_0 a pair's (group even), the K-quants' any two in turn
    void (*to_panel)(G3QPanelBlock *p, const uint8_t *group, int nb);  // the GEMM's panel of a group
    const uint8_t *(*group)(const void *packed, int64_t g, int nb);    // where group g starts
    int64_t block_bytes, block_stride;  // a group's bytes per 32-element block, from one block to the next
} G3X16;

// 1 and *k filled if w has a repacked copy, else 0.
static inline int g3_x16(const G3Weight *w, int level, G3X16 *k) {
    if (!w->packed) return 0;
    switch (w->type) {  // Q4_0, Q8_0, Q5_0: pairs of groups block by block (quant_x16.h); the K-quants: groups one after another
    case G3_Q4_0: *k = (G3X16){g3_q4x16_gemv(level), g3_q4x16_gemv2(level), g3_q4x16_to_panel, g3_q4x16_group, G3_Q4X16_BLOCK_BYTES, 2 * G3_Q4X16_BLOCK_BYTES}; return 1;
    case G3_Q8_0: *k = (G3X16){g3_q8x16_gemv(level), g3_q8x16_gemv2(level), g3_q8x16_to_panel, g3_q8x16_group, G3_Q8X16_BLOCK_BYTES, 2 * G3_Q8X16_BLOCK_BYTES}; return 1;
    case G3_Q5_0: *k = (G3X16){g3_q5x16_gemv(level), g3_q5x16_gemv2(level), g3_q5x16_to_panel_fn(level), g3_q5x16_group, G3_Q5X16_BLOCK_BYTES, 2 * G3_Q5X16_BLOCK_BYTES}; return 1;
    case G3_Q4_K: *k = (G3X16){g3_q4kx16_gemv(level), g3_q4kx16_gemv2(level), g3_q4kx16_to_panel_fn(level), g3_q4kx16_group, G3_Q4KX16_BLOCK_BYTES, G3_Q4KX16_BLOCK_BYTES}; return 1;
    case G3_Q6_K: *k = (G3X16){g3_q6kx16_gemv(level), g3_q6kx16_gemv2(level), g3_q6kx16_to_panel_fn(level), g3_q6kx16_group, G3_Q6KX16_BLOCK_BYTES, G3_Q6KX16_BLOCK_BYTES}; return 1;
    default: return 0;
    }
}

// The fused decode ops of backend.h on the CPU (linear_gemv.c), for fewer than
// G3_GEMV_MAX_ROWS activation rows (below linear_quant.c's int8 GEMM): n (1 to 3) products of
// one x, or gate and up with GeGLU (a = gelu(x wg^T) (x wu^T), u overwritten), each in one
// parallel region, with linear's results bit for bit. 1 if they do not apply (more rows, exact
// mode over block types, mixed types or widths, F32 in bf16 mode: the caller runs linear), 0
// done, -1 out of memory.
enum { G3_GEMV_MAX_ROWS = 4 };
int g3_cpu_gemv_multi(int n, float *const *y, const float *x, const G3Weight *const *w, int R, G3MatmulMode mode);
int g3_cpu_gemv_geglu(float *a, float *u, const float *x, const G3Weight *wg, const G3Weight *wu, int R, int erf_form,
                      G3MatmulMode mode);

#endif
