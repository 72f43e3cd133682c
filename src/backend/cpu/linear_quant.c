// linear_quant.c: the scalar linear layer over Q8_0 / Q4_0 weights (see linear_quant.h).
// Each weight row is read once per call and, for a batch of activation rows, reused from cache
// across a tile of rows; threads split the output columns. Plain C on purpose: this is the
// reference, not the fast path (decode is about the bytes: the SIMD kernels come next).
#include "linear_quant.h"

#include "../../base/base.h"
#include "../../tensor/quant.h"

// sum_k W[k] x[k] over nb blocks of one Q8_0 row.
static float dot_q8_0(const G3BlockQ8_0 *b, const float *x, int nb) {
    float acc = 0.0f;
    for (int i = 0; i < nb; i++, x += G3_QK8_0) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the adds need not wait on each other
        for (int j = 0; j < G3_QK8_0; j += 4) {
            s0 += (float)b[i].qs[j] * x[j];
            s1 += (float)b[i].qs[j + 1] * x[j + 1];
            s2 += (float)b[i].qs[j + 2] * x[j + 2];
            s3 += (float)b[i].qs[j + 3] * x[j + 3];
        }
        acc += ((s0 + s1) + (s2 + s3)) * g3_f16_to_f32(b[i].d);
    }
    return acc;
}

// The same for Q4_0: element j of a block in the low nibble of byte j, j + 16 in the high one.
static float dot_q4_0(const G3BlockQ4_0 *b, const float *x, int nb) {
    float acc = 0.0f;
    for (int i = 0; i < nb; i++, x += G3_QK4_0) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int j = 0; j < G3_QK4_0 / 2; j += 2) {
            s0 += (float)((b[i].qs[j] & 0x0f) - 8) * x[j];
            s1 += (float)((b[i].qs[j] >> 4) - 8) * x[j + 16];
            s2 += (float)((b[i].qs[j + 1] & 0x0f) - 8) * x[j + 1];
            s3 += (float)((b[i].qs[j + 1] >> 4) - 8) * x[j + 17];
        }
        acc += ((s0 + s1) + (s2 + s3)) * g3_f16_to_f32(b[i].d);
    }
    return acc;
}

int g3_cpu_linear_quant(float *y, const float *x, const G3Weight *w, int R) {
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32;
    const int q8 = w->type == G3_Q8_0;
    if (!q8 && w->type != G3_Q4_0) return g3_errorf("linear_quant: type %s is not Q8_0 or Q4_0", g3_dtype_name(w->type));
    enum { RT = 8 };  // activation rows per tile: a weight row stays in L1 while they pass
#pragma omp parallel for schedule(static) if ((long)N * K * R > 65536)
    for (int n = 0; n < N; n++) {
        const void *row = g3_weight_row(w, n);
        for (int r0 = 0; r0 < R; r0 += RT)
            for (int r = r0; r < R && r < r0 + RT; r++) {
                const float *xr = x + (long)r * K;
                y[(long)r * N + n] = q8 ? dot_q8_0(row, xr, nb) : dot_q4_0(row, xr, nb);
            }
    }
    return 0;
}
