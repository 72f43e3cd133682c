// vision_attn.cu: the vision tower's attention on the GPU (vision_cuda.h): every row sees
// every row, so the work is three dense products a head, which cuBLAS runs near the card's
// rate, around one row-wise softmax:
//   S[h]  = Q_h . K_h^T        [T, T] per head, a group of heads per strided batched GEMM
//   P     = softmax(scale S)   a block per row (max, exponentials and their sum in double, divide),
//                              the row in registers up to 8192 keys (one read, one write)
//   O_h   = P[h] . V_h         into out's columns h * HD .. (h + 1) * HD - 1
// A head's columns are read in place: row-major q [T, NH*HD] is, column-major, [NH*HD, T] with
// leading dimension NH*HD, and head h is its rows h*HD .. (stride HD between heads). At T = 4096
// a head's scores are 64 MiB; a group holds as many heads as fit 256 MiB. Plain and exact in
// f32 (TF32 off); in bf16 mode q, k, v and P are rounded to bf16 first (the CPU's fast mode
// rounds the same operands) and the products run on the tensor cores with f32 sums.
#include "common.cuh"
#include "vision_cuda.h"

enum { SM_T = 256, GROUP_BYTES = 256 << 20 };

static int group_heads(int T, int NH) {
    const size_t per = (size_t)T * T * sizeof(float);
    long g = (long)(GROUP_BYTES / per);
    return (int)(g < 1 ? 1 : g > NH ? NH : g);
}
static size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

extern "C" size_t g3cu_attn_full_workspace(int T, int NH, int HD) {
    const size_t g = (size_t)group_heads(T, NH), tt = (size_t)T * T, td = (size_t)T * NH * HD;
    return align256(g * tt * sizeof(float)) + align256(g * tt * 2) + 3 * align256(td * 2);
}

// Row blockIdx.x of S [rows][n]: p = e^(scale s - max) / sum, as the CPU reference (vops.c)
// computes it; written back to S (f32), or to P as bf16 when P is non-NULL.
__global__ void __launch_bounds__(SM_T) vis_softmax_k(float *S, uint16_t *P, int n, float scale) {
    float *r = S + (long)blockIdx.x * n;
    float mx = -INFINITY;
    for (int i = threadIdx.x; i < n; i += SM_T) mx = fmaxf(mx, r[i] * scale);
    mx = block_max_nt<SM_T>(mx);
    double s = 0;
    for (int i = threadIdx.x; i < n; i += SM_T) {
        const float e = expf(r[i] * scale - mx);
        r[i] = e;
        s += e;
    }
    const float inv = 1.0f / (float)block_sum_nt<SM_T>(s);
    if (P) {
        uint16_t *pr = P + (long)blockIdx.x * n;
        for (int i = threadIdx.x; i < n; i += SM_T) pr[i] = to_bf16(r[i] * inv);
    } else {
        for (int i = threadIdx.x; i < n; i += SM_T) r[i] *= inv;
    }
}

// The same with the row in registers (PER values a thread, n <= PER * SM_T): one read of the
// scores and one write of the probabilities, where the plain kernel makes three passes. The
// plain one is the reference (tests/test_cuda_vision.c runs rows of both kinds).
template <int PER>
__global__ void __launch_bounds__(SM_T) vis_softmax_reg_k(const float *S, float *Pf, uint16_t *P, int n, float scale) {
    const long row = (long)blockIdx.x * n;
    float e[PER];
    float mx = -INFINITY;
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * SM_T;
        e[j] = i < n ? S[row + i] * scale : -INFINITY;
        mx = fmaxf(mx, e[j]);
    }
    mx = block_max_nt<SM_T>(mx);
    double s = 0;
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * SM_T;
        e[j] = i < n ? expf(e[j] - mx) : 0.0f;
        s += e[j];
    }
    const float inv = 1.0f / (float)block_sum_nt<SM_T>(s);
#pragma unroll
    for (int j = 0; j < PER; j++) {
        const int i = threadIdx.x + j * SM_T;
        if (i >= n) break;
        if (P) P[row + i] = to_bf16(e[j] * inv);
        else Pf[row + i] = e[j] * inv;
    }
}

// Softmax of rows S[rows][n] into P (bf16) or in place: the register kernel where the row fits.
static int softmax_rows(G3Cuda *cu, float *S, uint16_t *P, long rows, int n, float scale) {
    const unsigned g = (unsigned)rows;
    if (n <= 4 * SM_T) vis_softmax_reg_k<4><<<g, SM_T, 0, cu->stream>>>(S, S, P, n, scale);
    else if (n <= 8 * SM_T) vis_softmax_reg_k<8><<<g, SM_T, 0, cu->stream>>>(S, S, P, n, scale);
    else if (n <= 16 * SM_T) vis_softmax_reg_k<16><<<g, SM_T, 0, cu->stream>>>(S, S, P, n, scale);
    else if (n <= 32 * SM_T) vis_softmax_reg_k<32><<<g, SM_T, 0, cu->stream>>>(S, S, P, n, scale);
    else vis_softmax_k<<<g, SM_T, 0, cu->stream>>>(S, P, n, scale);
    return g3cu_launched("vision attention (softmax)");
}

static int blas_ok(cublasStatus_t st, const char *what) {
    return st == CUBLAS_STATUS_SUCCESS ? 0 : g3_errorf("cuda vision attention, %s: cuBLAS status %d", what, (int)st);
}

extern "C" int g3cu_attn_full(G3Cuda *cu, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                              float scale, int bf16) {
    if (T < 1 || NH < 1 || HD < 1) return g3_errorf("cuda vision attention: bad shape T %d, NH %d, HD %d", T, NH, HD);
    const int G = group_heads(T, NH), D = NH * HD;
    const size_t tt = (size_t)T * T, td = (size_t)T * D;
    char *w = (char *)work;
    float *S = (float *)w;
    uint16_t *P = (uint16_t *)(w + align256(G * tt * sizeof(float)));
    uint16_t *qb = (uint16_t *)((char *)P + align256(G * tt * 2)), *kb = (uint16_t *)((char *)qb + align256(td * 2)),
             *vb = (uint16_t *)((char *)kb + align256(td * 2));
    if (bf16) {
        if (g3cu_round_bf16(cu, qb, q, (long)td)) return -1;
        if (g3cu_round_bf16(cu, kb, k, (long)td)) return -1;
        if (g3cu_round_bf16(cu, vb, v, (long)td)) return -1;
        if (g3cu_launched("vision attention (round to bf16)")) return -1;
    }
    const cudaDataType_t it = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const float one = 1.f, zero = 0.f;
    for (int h0 = 0; h0 < NH; h0 += G) {
        const int g = NH - h0 < G ? NH - h0 : G;
        const void *qa = bf16 ? (const void *)(qb + (size_t)h0 * HD) : (const void *)(q + (size_t)h0 * HD);
        const void *ka = bf16 ? (const void *)(kb + (size_t)h0 * HD) : (const void *)(k + (size_t)h0 * HD);
        const void *va = bf16 ? (const void *)(vb + (size_t)h0 * HD) : (const void *)(v + (size_t)h0 * HD);
        // column-major S^T[T(j), T(i)] = K_h^T(j, d) Q_h(d, i): row-major S[i][j] = q_i . k_j
        if (blas_ok(cublasGemmStridedBatchedEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, T, T, HD, &one, ka, it, D, (long long)HD, qa, it, D,
                                               (long long)HD, &zero, S, CUDA_R_32F, T, (long long)tt, g, CUBLAS_COMPUTE_32F,
                                               CUBLAS_GEMM_DEFAULT),
                    "scores"))
            return -1;
        if (softmax_rows(cu, S, bf16 ? P : NULL, (long)g * T, T, scale)) return -1;
        // column-major O^T[HD, T] = V_h(d, j) P^T(j, i), written with leading dimension D into out's columns
        const void *pa = bf16 ? (const void *)P : (const void *)S;
        if (blas_ok(cublasGemmStridedBatchedEx(cu->blas, CUBLAS_OP_N, CUBLAS_OP_N, HD, T, T, &one, va, it, D, (long long)HD, pa, it, T,
                                               (long long)tt, &zero, out + (size_t)h0 * HD, CUDA_R_32F, D, (long long)HD, g,
                                               CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "P . V"))
            return -1;
    }
    return 0;
}
