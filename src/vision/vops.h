// vops.h: the row-wise ops of the SigLIP tower that the text model's backend table does not
// have (LayerNorm with a bias, a bias add, a plain GELU). Scalar references over host
// memory, parallel over rows; the matrix work around them is the backend's.
#ifndef G3_VOPS_H
#define G3_VOPS_H

// y[R, n] = (x - mean) / sqrt(var + eps) * w + b per row (statistics in double). y may alias x.
void g3_vops_layernorm(float *y, const float *x, const float *w, const float *b, int R, int n, float eps);
// y[R, n] += b[n] per row.
void g3_vops_bias(float *y, const float *b, int R, int n);
// x = gelu(x) in place: the tanh form (PyTorch's gelu(approximate="tanh")) or the erf form.
void g3_vops_gelu(float *x, long n, int erf_form);
// Softmax in place of rows x[R, n] after multiplying them by scale.
void g3_vops_softmax_scaled(float *x, int R, int n, float scale);

#endif
