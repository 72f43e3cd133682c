// gemm_shapes.cu: cuBLAS bf16 GEMM rates for the training head's shapes with the vocabulary
// (50,257) left odd, padded only as a row pitch, or padded as a dimension (issue 17: which of
// these the backend's bf16_product should take). Row-major names as the backend uses them:
//   logits[M, V] = xf[M, C] . E[V, C]^T     dxf[M, C] = dlogits[M, V] . E[V, C]
// Build and run on the GPU machine:
//   nvcc -O2 -arch=sm_90 bench/gpu/gemm_shapes.cu -lcublas -o /tmp/gemm_shapes && /tmp/gemm_shapes
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>

static float time_ms(cublasHandle_t h, cublasOperation_t oa, cublasOperation_t ob, int m, int n, int k, const void *A, int lda,
                     const void *B, int ldb, float *C, int ldc) {
    const float one = 1.f, zero = 0.f;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    for (int i = 0; i < 3; i++)
        cublasGemmEx(h, oa, ob, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &zero, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    cudaEventRecord(e0);
    const int reps = 20;
    for (int i = 0; i < reps; i++)
        cublasGemmEx(h, oa, ob, m, n, k, &one, A, CUDA_R_16BF, lda, B, CUDA_R_16BF, ldb, &zero, C, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    return ms / reps;
}

int main(void) {
    const int M = 4096, C = 768, V = 50257, VP = 50304;
    cublasHandle_t h;
    cublasCreate(&h);
    void *x, *E, *dl;
    float *out;
    cudaMalloc(&x, (size_t)M * C * 2), cudaMalloc(&E, (size_t)VP * C * 2), cudaMalloc(&dl, (size_t)M * VP * 2);
    cudaMalloc(&out, (size_t)M * VP * 4);
    cudaMemset(x, 0, (size_t)M * C * 2), cudaMemset(E, 0, (size_t)VP * C * 2), cudaMemset(dl, 0, (size_t)M * VP * 2);
    const double fl = 2.0 * M * C * V;
    struct { const char *what; int n, ldc; } lg[] = {{"logits N 50257, ldc 50257", V, V}, {"logits N 50257, ldc 50304", V, VP},
                                                      {"logits N 50304, ldc 50304", VP, VP}};
    // column-major: C^T[N, M] = E (op T: [C, N] read as N x C) times x^T
    for (auto &c : lg) {
        const float ms = time_ms(h, CUBLAS_OP_T, CUBLAS_OP_N, c.n, M, C, E, C, x, C, out, c.ldc);
        printf("%-34s %7.3f ms  %6.1f TFLOP/s (of the unpadded FLOPs)\n", c.what, ms, fl / ms / 1e9);
    }
    struct { const char *what; int k, lda; } dx[] = {{"dxf K 50257, lda 50257", V, V}, {"dxf K 50257, lda 50304", V, VP},
                                                      {"dxf K 50304, lda 50304", VP, VP}};
    // column-major: dxf^T[C, M] = E^T (op N: [C, K] col-major = E row-major) times dlogits^T
    for (auto &c : dx) {
        const float ms = time_ms(h, CUBLAS_OP_N, CUBLAS_OP_N, C, M, c.k, E, C, dl, c.lda, out, C);
        printf("%-34s %7.3f ms  %6.1f TFLOP/s (of the unpadded FLOPs)\n", c.what, ms, fl / ms / 1e9);
    }
    // dE[V, C] += dlogits^T . xf: column-major dE^T[C, V] = xf^T (op N) times dlogits (op T)
    const float ms = time_ms(h, CUBLAS_OP_N, CUBLAS_OP_T, C, V, M, x, C, dl, VP, out, C);
    printf("%-34s %7.3f ms  %6.1f TFLOP/s\n", "dE M 50257, lda 50304", ms, fl / ms / 1e9);
    cudaError_t e = cudaDeviceSynchronize();
    printf("%s\n", e == cudaSuccess ? "ok" : cudaGetErrorString(e));
    return e != cudaSuccess;
}
