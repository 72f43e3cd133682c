// kernels.h: the numeric kernels of gemma3.c. They know nothing of models: plain arrays
// in, plain arrays out, output first, dimensions last. Every kernel has a scalar reference
// (kernels_ref.c, the ground truth kept forever) and may have fast versions (AVX2, AVX-512,
// AVX512-BF16) chosen once at start-up from the CPU's features (g3_kernels_init).
//
// Dimension letters: T rows of activations (tokens), K the reduced (input) dimension,
// N output features. Weight matrices are [N, K] row-major, exactly as checkpoints store
// them ([out, in]), and are used in place (memory-mapped), never repacked.
#ifndef G3_KERNELS_H
#define G3_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"

typedef enum { G3_ISA_SCALAR = 0, G3_ISA_AVX2, G3_ISA_AVX512, G3_ISA_AVX512BF16 } G3Isa;

// Detects the CPU and picks kernels. Safe to call more than once. max_isa caps the choice
// (tests use it to compare each level against the reference); returns the level chosen.
G3Isa g3_kernels_init(G3Isa max_isa);
const char *g3_isa_name(G3Isa isa);
// The level in use (initialising with every level the CPU has if nothing did yet).
G3Isa g3_kernels_level(void);

// y[T, N] = x[T, K] . w[N, K]^T, w of type wt (F32, BF16 or F16), x and y f32.
// fast = 0: exact, products of f32 values (bf16/f16 weights widened exactly) summed in f32.
// fast = 1: may round x to bf16 and use bf16 dot-product instructions (error ~1e-3 rel).
// Multithreaded with OpenMP inside; call from outside a parallel region.
// wt must be F32, BF16 or F16: g3_matmul has no status to return, so it is the callers'
// promise. The model loader and g3_model_set refuse a type without a CPU linear kernel by
// name, and the CPU backend sends the block types (Q8_0, Q4_0) to backend/cpu/linear_quant.c.
void g3_matmul(float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, int fast);

// g3_matmul in two steps, for callers that run several products inside one parallel region
// (the CPU backend's fused decode ops): g3_matmul_operand prepares x once in the calling
// thread (fast BF16: its bf16 copy, in a buffer of that thread kept until its next call; the
// others: x itself), then g3_matmul_cols computes columns [n0, n1) of y from it in any thread.
// With n0 a multiple of 16 (as g3_matmul's own shares) the results are g3_matmul's, bit for bit.
// NULL: no memory for the copy.
const void *g3_matmul_operand(const float *x, G3DType wt, int T, int K, int fast);
void g3_matmul_cols(float *y, const void *xop, const void *w, G3DType wt, int T, int K, int N, int n0, int n1, int fast);

// General f32 GEMM for training and attention: C[M, N] = A . B (+ C if accumulate), where
// A is [M, K] (ta = 0) or stored as [K, M] (ta = 1), and B is [K, N] (tb = 0) or stored as
// [N, K] (tb = 1). All row-major and contiguous. Multithreaded inside.
void g3_sgemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate);
// The same with row strides, as BLAS's lda/ldb/ldc: the distance in floats between one stored
// row of A (of B, of C) and the next, at least its row length (K or M for A as stored, N or
// K for B, N for C). For heads inside [T, heads * head_dim] rows without copying them out.
void g3_sgemm_ld(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                 int accumulate);

// An epilogue for g3_sgemm_epi: fn(ctx, i0, j0, m, n) is called once for each block of C
// (rows [i0, i0 + m), columns [j0, j0 + n)) after the block holds its final value, while it
// is still in cache, by the thread that computed it; the blocks are disjoint and cover C, and
// blocks may be handled by several threads at once. prefetch (may be NULL) is called with a
// block before it is computed, to start fetching what fn will read. Element-wise work on a
// product's output (GeGLU after the MLP's projections) then costs no pass over memory.
typedef struct G3SgemmEpilogue {
    void (*fn)(void *ctx, int i0, int j0, int m, int n);
    void (*prefetch)(void *ctx, int i0, int j0, int m, int n);
    void *ctx;
} G3SgemmEpilogue;
// g3_sgemm, then epi over all of C (epi NULL: g3_sgemm).
void g3_sgemm_epi(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                  const G3SgemmEpilogue *epi);

// Mixed precision (training's bf16 mode, as PyTorch's bf16 autocast): the same products with
// every element of A and B rounded to bf16 (to nearest even), their products (exact in f32)
// summed in f32, C f32. With AVX512-BF16 at twice the f32 rate (pairs of products per lane;
// denormal operands count as zero); without it, the f32 kernel on the rounded operands.
void g3_gemm_bf16(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate);
void g3_gemm_bf16_epi(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                      const G3SgemmEpilogue *epi);
// 1 where g3_gemm_bf16 runs on the CPU's bf16 dot product, 0 where it emulates it at the f32 rate.
int g3_gemm_bf16_native(void);

// B packed once for many single-threaded products against parts of it: attention's keys and
// values of one head serve every block of its queries, and packing them for each block was a
// quarter of those products' time. buf holds g3_sgemm_packed_floats(K, N) floats; B is kept
// for the reference path (CPUs without a micro-kernel), so it must outlive pb.
typedef struct {
    const float *B;
    float *p;
    int tb, ldb, K, N;
} G3PackedB;
size_t g3_sgemm_packed_floats(int K, int N);
void g3_sgemm_pack_b(G3PackedB *pb, float *buf, int tb, int K, int N, const float *B, int ldb);
// C[M, N] (+)= A[M, K] . op(B)[k0 : k0 + K, n0 : n0 + N] on the calling thread: A row-major
// (row stride lda), read in place; C row stride ldc; n0 a multiple of g3_sgemm_packed_cols().
void g3_sgemm_packed(int M, int N, int K, const float *A, int lda, const G3PackedB *pb, int k0, int n0, float *C, int ldc,
                     int accumulate);
// The column alignment of n0, and the rows of one micro-tile (callers that trim K per group
// of rows, as causal attention does, go a tile of rows at a time).
int g3_sgemm_packed_cols(void);
int g3_sgemm_packed_rows(void);

// Scalar references, exported for the tests and for anyone who wants the ground truth.
void g3_matmul_ref(float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, int fast);
void g3_sgemm_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate);
void g3_sgemm_ld_ref(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                     int accumulate);
void g3_gemm_bf16_ld_ref(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                         int ldc, int accumulate);
void g3_gemm_bf16_ref(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate);

#endif
