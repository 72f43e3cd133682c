// ops.h: the small row-wise kernels of the forward pass (norms, activations, RoPE, softmax)
// and vector primitives for attention. RMSNorm, GeGLU, softmax, dot and axpy have AVX-512
// and AVX2 + FMA versions chosen at run time beside their scalar references (exponentials
// in libm were the cost); RoPE and softcap are plain C.
#ifndef G3_OPS_H
#define G3_OPS_H

// y[n] = x / sqrt(mean(x^2) + eps) * w1p, where w1p already holds Gemma's (1 + w).
// The mean is accumulated in double (the fast version: float lanes, combined in double).
// y may alias x.
void g3_rmsnorm(float *y, const float *x, const float *w1p, int n, float eps);
void g3_rmsnorm_ref(float *y, const float *x, const float *w1p, int n, float eps);  // scalar reference
// The same over rows x[R][n] (parallel over rows).
void g3_rmsnorm_rows(float *y, const float *x, const float *w1p, int rows, int n, float eps);
// g[i] = act(g[i]) * u[i]: the GeGLU gate (tanh approximation or erf form).
void g3_geglu(float *g, const float *u, long n, int erf_form);
void g3_geglu_ref(float *g, const float *u, long n, int erf_form);  // scalar reference (libm tanhf/erff)
float g3_gelu_tanh(float x);
// Rotates each head of x[nheads][hd] ("rotate half" layout: dim d pairs with d + hd/2)
// by the angles whose cos/sin are given for d < hd/2.
void g3_rope(float *x, int nheads, int hd, const float *cos, const float *sin);
// Fills cos/sin[hd/2] for a position: angle = pos / scale * base^(-2d/hd), in double.
void g3_rope_angles(float *cos, float *sin, int pos, int hd, double base, double scale);
// In-place softmax of x[n] (entries of -INFINITY get probability 0). Returns the log of the
// normalizer, max + log(sum exp(x - max)) (-INFINITY when every entry is): what a softmax
// over several blocks of x needs to weigh each block's result (attention over the KV cache).
float g3_softmax(float *x, int n);
float g3_softmax_ref(float *x, int n);  // scalar reference (libm expf, double sum)
// x = tanh(x / cap) * cap.
void g3_softcap(float *x, long n, float cap);

// Vector primitives (dispatched: AVX-512, else AVX2 + FMA, else scalar).
float g3_dot(const float *a, const float *b, int n);
void g3_axpy(float *y, float a, const float *x, int n);  // y += a * x
float g3_dot_ref(const float *a, const float *b, int n);
void g3_axpy_ref(float *y, float a, const float *x, int n);

// The level the row-wise kernels use (2 AVX-512, 1 AVX2 + FMA, 0 scalar). g3_kernels_init
// sets it from its own choice (so capping the kernels caps these too); callers only read it.
int g3_ops_isa(void);
void g3_ops_set_level(int level);  // for g3_kernels_init

#endif
