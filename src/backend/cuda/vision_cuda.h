// vision_cuda.h: the CUDA kernels of the vision tower (vision/encoder.c through backend.h's
// layernorm, bias_act and attention_full), behind a plain C interface like g3cuda.h's: device
// pointers, the context's stream, 0 or -1 with g3_errorf. vision_ops.cu: the row-wise ops;
// vision_attn.cu: the attention. The CPU's versions (backend/cpu/vision_ops.c, vision/vops.c,
// vision/vattn.c) are their references (tests/test_cuda_vision.c).
#ifndef G3_VISION_CUDA_H
#define G3_VISION_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct G3Cuda G3Cuda;

// y[rows][n] = (x - mean) / sqrt(var + eps) * w + b per row, statistics in double (the CPU
// reference's arithmetic); y may alias x.
int g3cu_layernorm(G3Cuda *cu, float *y, const float *x, const float *w, const float *b, int rows, int n, float eps);
// y[rows][n] += b[n] (b NULL: nothing), then gelu when act is 1 (tanh form) or 2 (erf form).
int g3cu_bias_act(G3Cuda *cu, float *y, const float *b, long rows, int n, int act);
// Attention of T rows over all T rows, NH heads of HD: q, k, v, out [T][NH * HD] (row-major,
// head h in columns h * HD ..). The scores of a group of heads are materialized ([heads][T][T]
// f32, at most 256 MiB a group) by cuBLAS's strided batched GEMM straight from the heads'
// columns (no copies), a softmax per row, then P . V by the same GEMM into out's columns.
// bf16: q, k, v and the probabilities rounded to bf16 (f32 sums; tensor cores), else f32
// (TF32 off). work: g3cu_attn_full_workspace bytes of device memory.
size_t g3cu_attn_full_workspace(int T, int NH, int HD);
int g3cu_attn_full(G3Cuda *cu, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                   float scale, int bf16);

#ifdef __cplusplus
}
#endif
#endif
