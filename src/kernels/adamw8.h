// adamw8.h: AdamW's element step and the 8-bit block step (bitsandbytes' block-wise "dynamic"
// quantization of the two moments), the kernels under train/optim.c's optimizer and the CPU
// backend's adamw8 op. Kernels only: the optimizer's state, segments and schedule live in
// train/optim.h. The CUDA kernel (backend/cuda/train_ops.cu) computes the same bits from the
// tables of g3_adamw8_tables, quantizing with g3_adamw8_code below (tests/test_optim.c holds
// that function to the reference search; tests/test_cuda_train.c the kernel to this step).
#ifndef G3_ADAMW8_H
#define G3_ADAMW8_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {  // the CUDA files include it for g3_adamw8_code and the tables
#endif
#include "../backend/backend.h"  // G3_ADAMW8_BLOCK, G3_HOSTDEV

// A step's constants: backend.h's k[8] of the adamw / adamw8 ops, in that order.
typedef struct {
    float b1, b2, omb1, omb2, step_size, inv_sqrt_bc2, eps, scale;
} G3AdamWK;

static inline G3AdamWK g3_adamw_k(const float k[8]) {
    G3AdamWK s = {k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]};
    return s;
}

// The update of one parameter given its moments, in place. The 32-bit and 8-bit steps both
// call it, so they agree; the CUDA kernels write it out operation for operation.
static inline void g3_adamw_one(const G3AdamWK *k, float decay_mul, float *p, float *m, float *v, float graw) {
    float g = graw * k->scale;
    float pv = *p * decay_mul;
    float mv = k->b1 * *m + k->omb1 * g;
    float vv = k->b2 * *v + k->omb2 * g * g;
    float denom = sqrtf(vv) * k->inv_sqrt_bc2 + k->eps;
    *p = pv - k->step_size * (mv / denom);
    *m = mv;
    *v = vv;
}

// The 8-bit code tables (256 values in [-1, 1] / [0, 1], ascending), and quantization to the
// nearest code: the reference binary search (ties to the lower code) and the bucket-table one
// the CPU step uses (the same answers, tested).
const float *g3_qmap_signed(void);
const float *g3_qmap_unsigned(void);
uint8_t g3_quantize_nearest(const float *map, float x);
uint8_t g3_quantize_nearest_fast(const float *map, float x);

// What a device needs to quantize as the CPU does: [4][256] floats, the signed map, the
// unsigned map, then each map's decision thresholds (thr[i] is the largest float that the
// reference sends to code i rather than i + 1; thr[255] = +inf). Built once, never freed.
const float *g3_adamw8_tables(void);

// The nearest code of x given a map's thresholds thr[256] (g3_adamw8_tables): the number of
// thresholds below x, by an 8-step binary search (thr[255] is never read); NaN and +inf get
// the reference's answers (1 and 254: every comparison fails for NaN, and inf - a <= inf - b
// holds). The CUDA kernel's quantizer, kept here in plain C so that the CPU tests run it.
static inline G3_HOSTDEV uint8_t g3_adamw8_code(const float *thr, float x) {
    if (x != x) return 1;
    if (x == INFINITY) return 254;
    int c = 0;
    for (int s = 128; s > 0; s >>= 1) c += thr[c + s - 1] < x ? s : 0;
    return (uint8_t)c;
}

// The 8-bit step over one tensor's n values in blocks of G3_ADAMW8_BLOCK (the last may be
// short): per block, decode the moments' codes mq, vq [n] with the block's absmax mmax, vmax
// [ceil(n / G3_ADAMW8_BLOCK)], step each value (g3_adamw_one), and re-encode the new moments
// with the block's new absmax. Blocks are shared out by an orphaned `omp for` (nowait): called
// inside a parallel region the team splits them, outside it one thread does all. The tables
// must exist before (any function above builds them). AVX2 where g3_ops_isa() allows, else
// the scalar reference: the same bits (tests/test_optim.c).
void g3_adamw8_blocks(const G3AdamWK *k, float decay_mul, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *mmax,
                      float *vmax, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
