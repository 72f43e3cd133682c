// vops.h: the row-wise ops of the SigLIP tower that the text model's backend table does not
// have (LayerNorm with a bias, a bias add, a plain GELU, the attention's softmax), over host
// memory, parallel over rows; the matrix work around them is the backend's.
//
// Each op has a scalar reference (vops.c: libm, statistics and sums in double; exact mode
// runs it) and, with `fast`, an AVX-512 version (vops_avx512.c: exp512 for the exponentials,
// f32 sums) where the kernels' level allows it, held to the reference in tests/test_vision.c.
// Fast without AVX-512 is the reference.
#ifndef G3_VOPS_H
#define G3_VOPS_H

// y[R, n] = (x - mean) / sqrt(var + eps) * w + b per row. y may alias x.
void g3_vops_layernorm(float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int fast);
// y[R, n] += b[n] per row.
void g3_vops_bias(float *y, const float *b, int R, int n);
// x[R, n] = gelu(x + b) in place (b NULL: gelu(x)): the tanh form (PyTorch's gelu(approximate="tanh")) or the
// erf form (the erf form has no vector version).
void g3_vops_bias_gelu(float *x, const float *b, int R, int n, int erf_form, int fast);
// One row of attention scores x[n]: x = e^(scale x - max(scale x)) in place, the softmax
// before its normalization; returns the row's sum (1 / sum normalizes it).
float g3_vops_softmax_exp(float *x, int n, float scale, int fast);

// The AVX-512 versions (vops_avx512.c): call only where g3_kernels_level() >= G3_ISA_AVX512.
void g3_vops_layernorm_avx512(float *y, const float *x, const float *w, const float *b, int n, float eps);
void g3_vops_bias_gelu_tanh_avx512(float *x, const float *b, int n);
float g3_vops_softmax_exp_avx512(float *x, int n, float scale);

#endif
