// blas.cu: the large products through cuBLAS (prefill's linear layers, training's GEMMs).
// Why cuBLAS here and not a kernel of our own: past a few dozen rows a product is bound by
// arithmetic, and cuBLAS's Hopper kernels (wgmma, TMA) run bf16 near the tensor cores' rate;
// what we add is only the conversion of operands into the types those kernels take:
//   FAST:  activations rounded to bf16 (to nearest even, as the CPU's g3_f32_to_bf16), bf16
//          weights used as stored, f32 accumulate (CUBLAS_COMPUTE_32F);
//   EXACT: f32 operands with TF32 off (CUBLAS_COMPUTE_32F under CUBLAS_DEFAULT_MATH): bf16/f16
//          weights are widened (exactly) into f32 scratch a slab of rows at a time, so the
//          scratch stays bounded (64 MiB) whatever the matrix.
// cuBLAS is column-major: row-major y[T, N] = x[T, K] w[N, K]^T is column-major
// y^T[N, T] = w^T (w read transposed) times x^T, so the calls below name w first.
#include <stdio.h>

#include "common.cuh"

enum { SLAB_FLOATS = 16 << 20 };

__global__ void round_bf16_k(uint16_t *__restrict__ o, const float *__restrict__ x, long n) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = to_bf16(x[i]);
}

template <typename WT>
__global__ void widen_k(float *__restrict__ o, const void *__restrict__ w, long n) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) o[i] = Chunk<WT>::one(w, i);
}

// rows of len floats (contiguous) into rows of pitch bf16 values: the pitch of an operand whose
// rows are not a multiple of 16 bytes long, so that cuBLAS can take its aligned kernels. A
// row per blockIdx.y (no 64-bit division per element).
// The padding is written as zeros: a product whose inner dimension is padded too (the head's
// dxf, K = the vocabulary) sums over it.
__global__ void round_bf16_pitch_k(uint16_t *__restrict__ o, long pitch, const float *__restrict__ x, long rows, long len) {
    for (long r = blockIdx.y; r < rows; r += gridDim.y)
        for (long c = (long)blockIdx.x * blockDim.x + threadIdx.x; c < pitch; c += (long)gridDim.x * blockDim.x)
            o[r * pitch + c] = c < len ? to_bf16(x[r * len + c]) : (uint16_t)0;
}

__global__ void copy_rows_k(float *__restrict__ o, long op, const float *__restrict__ x, long xp, long rows, long len) {
    for (long r = blockIdx.y; r < rows; r += gridDim.y)
        for (long c = (long)blockIdx.x * blockDim.x + threadIdx.x; c < len; c += (long)gridDim.x * blockDim.x)
            o[r * op + c] = x[r * xp + c];
}

static dim3 rows_grid(long rows, long len) {
    const long bx = (len + 1023) / 1024;  // ~4 values a thread along the row
    return dim3((unsigned)(bx < 1 ? 1 : bx > 1024 ? 1024 : bx), (unsigned)(rows < 65535 ? rows : 65535));
}

extern "C" int g3cu_round_bf16_pitch(G3Cuda *cu, uint16_t *o, long pitch, const float *x, long rows, long len) {
    if (pitch == len) return g3cu_round_bf16(cu, o, x, rows * len);
    if (rows < 1 || len < 1) return 0;
    const int ps = g3cu_prof_begin(cu, "bf16 rounding pass (f32 in, bf16 out)");
    round_bf16_pitch_k<<<rows_grid(rows, len), 256, 0, cu->stream>>>(o, pitch, x, rows, len);
    g3cu_prof_end(cu, ps, 0, 6.0 * (double)rows * len);
    return g3cu_launched("round to bf16 (padded rows)");
}

extern "C" int g3cu_copy_rows(G3Cuda *cu, float *o, long op, const float *x, long xp, long rows, long len) {
    if (rows < 1 || len < 1) return 0;
    const int ps = g3cu_prof_begin(cu, "copy of a product's padded f32 output");
    copy_rows_k<<<rows_grid(rows, len), 256, 0, cu->stream>>>(o, op, x, xp, rows, len);
    g3cu_prof_end(cu, ps, 0, 8.0 * (double)rows * len);
    return g3cu_launched("copy rows");
}

extern "C" int g3cu_round_bf16(G3Cuda *cu, uint16_t *o, const float *x, long n) {
    const int ps = g3cu_prof_begin(cu, "bf16 rounding pass (f32 in, bf16 out)");
    round_bf16_k<<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(o, x, n);
    g3cu_prof_end(cu, ps, 0, 6.0 * (double)n);
    return g3cu_launched("round to bf16");
}

static int widen(G3Cuda *cu, float *o, const void *w, G3DType wt, long n) {
    const int ps = g3cu_prof_begin(cu, "widen 16-bit weights to f32");
    if (wt == G3_BF16) widen_k<Bf16><<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(o, w, n);
    else widen_k<F16><<<g3cu_grid(cu, n), 256, 0, cu->stream>>>(o, w, n);
    g3cu_prof_end(cu, ps, 0, 6.0 * (double)n);
    return g3cu_launched("widen weights");
}

// A profiler scope named by a product's kind and shape (prof.cu); -1 when profiling is off.
static int prof_gemm(G3Cuda *cu, const char *kind, int M, int N, int K, int ta, int tb) {
    if (!g3cu_prof_on()) return -1;
    char name[96];
    snprintf(name, sizeof name, "cuBLAS %s M%d N%d K%d%s%s", kind, M, N, K, ta ? " A^T" : "", tb ? " B^T" : "");
    return g3cu_prof_begin(cu, name);
}

static int blas_ok(cublasStatus_t st, const char *what) {
    return st == CUBLAS_STATUS_SUCCESS ? 0 : g3_errorf("cuda %s: cuBLAS status %d", what, (int)st);
}

extern "C" int g3cu_linear_blas(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N,
                                G3CuMode mode) {
    if (T < 1 || K < 1 || N < 1) return g3_errorf("cuda linear: bad shape T %d, K %d, N %d", T, K, N);
    if (wt != G3_F32 && wt != G3_BF16 && wt != G3_F16) return g3_errorf("cuda linear: no kernel for weights of type %s", g3_dtype_name(wt));
    const float one = 1.f, zero = 0.f;
    if (mode == G3CU_FAST && wt == G3_BF16) {
        uint16_t *xb = (uint16_t *)g3cu_scratch(cu, (size_t)T * K * 2);
        if (!xb || g3cu_round_bf16(cu, xb, x, (long)T * K)) return -1;
        const int ps = prof_gemm(cu, "bf16 linear", T, N, K, 0, 1);
        const int rc = blas_ok(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, w, CUDA_R_16BF, K, xb, CUDA_R_16BF, K,
                                            &zero, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                               "linear (bf16)");
        g3cu_prof_end(cu, ps, 2.0 * T * N * K, 0);
        return rc;
    }
    // f32 products: TF32 only when FAST asks for it (f32 or f16 weights)
    const cublasComputeType_t ct = mode == G3CU_FAST ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    if (wt == G3_F32) {
        const int ps = prof_gemm(cu, mode == G3CU_FAST ? "tf32 linear" : "f32 linear", T, N, K, 0, 1);
        const int rc = blas_ok(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, T, K, &one, w, CUDA_R_32F, K, x, CUDA_R_32F, K,
                                            &zero, y, CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT),
                               "linear (f32)");
        g3cu_prof_end(cu, ps, 2.0 * T * N * K, 0);
        return rc;
    }
    const int esz = 2;
    long slab = SLAB_FLOATS / K;
    if (slab < 1) slab = 1;
    if (slab > N) slab = N;
    float *wf = (float *)g3cu_scratch(cu, (size_t)slab * K * sizeof(float));
    if (!wf) return -1;
    for (long n0 = 0; n0 < N; n0 += slab) {
        const int nn = (int)(N - n0 < slab ? N - n0 : slab);
        if (widen(cu, wf, (const char *)w + n0 * K * esz, wt, (long)nn * K)) return -1;
        if (blas_ok(cublasGemmEx(cu->blas, CUBLAS_OP_T, CUBLAS_OP_N, nn, T, K, &one, wf, CUDA_R_32F, K, x, CUDA_R_32F, K, &zero,
                                 y + n0, CUDA_R_32F, N, ct, CUBLAS_GEMM_DEFAULT),
                    "linear (widened weights)"))
            return -1;
    }
    return 0;
}

extern "C" int g3cu_gemm(G3Cuda *cu, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C,
                         int accumulate, G3CuMode mode) {
    if (M < 1 || N < 1 || K < 1) return g3_errorf("cuda gemm: bad shape M %d, N %d, K %d", M, N, K);
    // column-major C^T[N, M] = op(B)^T op(A)^T; a row-major matrix read column-major is its transpose
    const cublasOperation_t ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N, oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int ldb = tb ? K : N, lda = ta ? M : K;
    const float one = 1.f, beta = accumulate ? 1.f : 0.f;
    if (mode == G3CU_FAST) {
        const long na = (long)M * K, nb = (long)K * N;
        uint16_t *ab = (uint16_t *)g3cu_scratch(cu, (size_t)(na + nb + 8) * 2);
        if (!ab) return -1;
        uint16_t *bb = ab + ((na + 7) & ~7L);  // 16-byte aligned for the tensor cores
        if (g3cu_round_bf16(cu, ab, A, na) || g3cu_round_bf16(cu, bb, B, nb)) return -1;
        return g3cu_gemm_bf16(cu, ta, tb, M, N, K, ab, bb, C, accumulate);
    }
    const int ps = prof_gemm(cu, "f32 gemm", M, N, K, ta, tb);
    const int rc = blas_ok(cublasGemmEx(cu->blas, ob, oa, N, M, K, &one, B, CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C,
                                        CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "gemm (f32)");
    g3cu_prof_end(cu, ps, 2.0 * M * N * K, 0);
    return rc;
}

extern "C" int g3cu_gemm_bf16(G3Cuda *cu, int ta, int tb, int M, int N, int K, const uint16_t *A, const uint16_t *B, float *C,
                              int accumulate) {
    return g3cu_gemm_bf16_ld(cu, ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, accumulate);
}

// As g3cu_gemm_bf16 with the row pitches (elements) of the row-major A, B and C given: a pitch
// that is a multiple of 8 (16 bytes) lets cuBLAS take its aligned (TMA) kernels; an odd one
// (the output head's vocabulary, 50,257) sends it to kernels several times slower.
extern "C" int g3cu_gemm_bf16_ld(G3Cuda *cu, int ta, int tb, int M, int N, int K, const uint16_t *A, long lda, const uint16_t *B,
                                 long ldb, float *C, long ldc, int accumulate) {
    if (M < 1 || N < 1 || K < 1) return g3_errorf("cuda gemm: bad shape M %d, N %d, K %d", M, N, K);
    if (lda < (ta ? M : K) || ldb < (tb ? K : N) || ldc < N)
        return g3_errorf("cuda gemm: row pitches %ld, %ld, %ld below the rows (M %d, N %d, K %d)", lda, ldb, ldc, M, N, K);
    // as g3cu_gemm: column-major C^T[N, M] = op(B)^T op(A)^T
    const cublasOperation_t ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N, oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const float one = 1.f, beta = accumulate ? 1.f : 0.f;
    const int ps = prof_gemm(cu, "bf16 gemm", M, N, K, ta, tb);
    const int rc = blas_ok(cublasGemmEx(cu->blas, ob, oa, N, M, K, &one, B, CUDA_R_16BF, (int)ldb, A, CUDA_R_16BF, (int)lda, &beta, C,
                                        CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                           "gemm (bf16)");
    g3cu_prof_end(cu, ps, 2.0 * M * N * K, 0);
    return rc;
}
