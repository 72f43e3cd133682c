// linear_quant.h: the CPU's linear layer over ggml's block types (Q8_0, Q4_0): the scalar
// references that SIMD kernels (activations quantized per block to int8, as llama.cpp does)
// will be held against.
#ifndef G3_LINEAR_QUANT_H
#define G3_LINEAR_QUANT_H

#include "../../tensor/weight.h"

// y[R, N] = x[R, K] . W^T for W [N, K] of type Q8_0 or Q4_0 (K a multiple of 32, as the
// loader guarantees). f32 activations, f32 sums; each block's products summed before its
// scale multiplies them. 0, or -1 (message) for another type.
int g3_cpu_linear_quant(float *y, const float *x, const G3Weight *w, int R);

#endif
