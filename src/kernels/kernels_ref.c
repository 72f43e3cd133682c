// kernels_ref.c: the scalar references of the kernels in kernels.h, the ground truth every
// SIMD variant is tested against. Written for clarity, not speed: plain loops, f32
// accumulation in index order. Not to be optimised; the fast versions live in cpu/.
#include "kernels.h"

// Element k of a weight row of type wt, widened exactly to f32.
static inline float weight_at(const void *w, G3DType wt, size_t i) {
    switch (wt) {
    case G3_BF16: return g3_bf16_to_f32(((const uint16_t *)w)[i]);
    case G3_F16: return g3_f16_to_f32(((const uint16_t *)w)[i]);
    default: return ((const float *)w)[i];
    }
}

void g3_matmul_ref(float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, int fast) {
    // fast mode with bf16 weights is defined as: x rounded to bf16 (nearest even), then the
    // same exact products summed in f32 (bf16 x bf16 products are exact in f32).
    int round_x = fast && wt == G3_BF16;
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * K;
        for (int n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float xv = round_x ? g3_bf16_to_f32(g3_f32_to_bf16(xt[k])) : xt[k];
                acc += xv * weight_at(w, wt, (size_t)n * K + k);
            }
            y[(size_t)t * N + n] = acc;
        }
    }
}

static float bf16_round(float x) { return g3_bf16_to_f32(g3_f32_to_bf16(x)); }

// C (+)= op(A) . op(B) in f32 sums, the operands rounded to bf16 first when bf16 is set.
static void gemm_ld_ref(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                        int accumulate, int bf16) {
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                float a = ta ? A[(size_t)k * lda + m] : A[(size_t)m * lda + k];
                float b = tb ? B[(size_t)n * ldb + k] : B[(size_t)k * ldb + n];
                acc += bf16 ? bf16_round(a) * bf16_round(b) : a * b;
            }
            C[(size_t)m * ldc + n] = accumulate ? C[(size_t)m * ldc + n] + acc : acc;
        }
    }
}

void g3_sgemm_ld_ref(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                     int accumulate) {
    gemm_ld_ref(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, 0);
}

void g3_sgemm_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    g3_sgemm_ld_ref(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, accumulate);
}

void g3_gemm_bf16_ld_ref(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                         int ldc, int accumulate) {
    gemm_ld_ref(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, 1);
}

void g3_gemm_bf16_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    g3_gemm_bf16_ld_ref(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, accumulate);
}
