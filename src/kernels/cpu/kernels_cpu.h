// kernels_cpu.h: what the CPU kernel files give the dispatcher (dispatch.c). Internal to
// src/kernels; callers use kernels.h. Each ISA file fills a G3CpuKernels table with the
// kernels it has; the dispatcher starts from the scalar table and lets each level it is
// allowed to use overwrite entries, so a level only provides what it improves.
#ifndef G3_KERNELS_CPU_H
#define G3_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

// Computes y[t, n] for all t < T and n0 <= n < n1 (one thread's share of the columns).
// y is [T, N], w is [N, K] of the kernel's weight type, x is [T, K]: f32 for the exact
// kernels, bf16 (uint16_t) for the bf16-fast kernel.
typedef void (*G3MatmulRange)(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1);

// sgemm micro-kernel: c[mr, nr] (row stride ldc) = (accumulate ? c : 0) + a . b, with a
// packed as K steps of MR values (zero-padded), b as K steps of NR values (zero-padded).
typedef void (*G3SgemmMicro)(int K, const float *a, const float *b, float *c, int ldc, int mr, int nr, int accumulate);
// The same with a unpacked: mr rows of a row-major A, row stride lda.
typedef void (*G3SgemmMicroRowA)(int K, const float *a, int lda, const float *b, float *c, int ldc, int mr, int nr, int accumulate);
// bf16 micro-kernel (g3_gemm_bf16): the same tile, a and b packed as KD steps of pair words
// (two bf16 in 32 bits: the even k in the low half, the odd k in the high half).
typedef void (*G3BgemmMicro)(int KD, const uint32_t *a, const uint32_t *b, float *c, int ldc, int mr, int nr, int accumulate);

typedef struct {
    G3MatmulRange mm_f32, mm_bf16, mm_f16;  // exact
    G3MatmulRange mm_bf16_fast;             // NULL where the CPU has no bf16 dot product
    void (*f32_to_bf16)(uint16_t *dst, const float *src, size_t n);  // round to nearest even
    G3SgemmMicro sgemm_micro;               // NULL: g3_sgemm falls back to the reference
    G3SgemmMicroRowA sgemm_micro_rowa;      // NULL: A is always packed
    // C[M, N] (+)= op(A) . B for M <= 4 and B not transposed, unpacked; NULL if none.
    void (*sgemm_small_m)(int ta, int M, int N, int K, const float *A, const float *B, float *C, int accumulate);
    // Packs MR full rows of a row-major A (row stride lda), kc values each, as kc steps of MR
    // values: the micro-kernel's A layout. NULL: the driver's scalar loop (its reference).
    void (*sgemm_pack_a)(float *d, const float *A, int lda, int kc);
    // Packs NR full columns of a transposed B (B stored [N, K], row stride ldb), kc values
    // each, as kc steps of NR values: the micro-kernel's B layout. NULL: the driver's loop.
    void (*sgemm_pack_bt)(float *d, const float *B, int ldb, int kc);
    int sgemm_mr, sgemm_nr;
    // Most depth (k) per packed panel: each depth step is one pass over C, and its B
    // micro-panel (kc x NR) is what the micro-kernel rereads from L1 or L2. Zen 3 (32 KB L1,
    // 512 KB L2) ran best at 256 with the 6 x 16 AVX2 tile; Zen 5 (48 KB L1, 1 MB L2) at 1024
    // with 8 x 32 (a 128 KB panel, streamed from L2): the (b) training products went from 357
    // GFLOP/s at 256 to 417 at 512, and 1.7% faster again at 1024 (one pass over C for K = BT).
    int sgemm_kc;
    // bf16 GEMM with the CPU's bf16 dot product (sgemm_mr x sgemm_nr tiles, sgemm_kc pair
    // words of depth per panel); NULL where it has none: the f32 micro-kernel runs on packed
    // panels rounded to bf16, the same products at the f32 rate.
    G3BgemmMicro bgemm_micro;
    // Packs n rows of S (row stride lds, k along the row; n a multiple of 8), kc values each,
    // as ceil(kc/2) steps of n pair words (an odd kc's last pair padded with zero). For A as
    // stored [M, K] and B as stored [N, K].
    void (*bgemm_pack_rows)(uint32_t *d, const float *S, int lds, int n, int kc);
    // Packs columns [0, n) of S (stored [K, *], row stride lds; n a multiple of 8), kc rows,
    // into panels of w columns (w 8 or a multiple of 16) pstride words apart, each ceil(kc/2)
    // steps of w pair words. For A as stored [K, M] and B as stored [K, N].
    void (*bgemm_pack_cols)(uint32_t *d, const float *S, int lds, int n, int w, size_t pstride, int kc);
} G3CpuKernels;

void g3_cpu_kernels_scalar(G3CpuKernels *k);
void g3_cpu_kernels_avx2(G3CpuKernels *k);
void g3_cpu_kernels_avx512(G3CpuKernels *k);
void g3_cpu_kernels_avx512bf16(G3CpuKernels *k);
// The sgemm micro-kernels, in their own files; called by the table fillers above.
void g3_cpu_kernels_avx2_sgemm(G3CpuKernels *k);
void g3_cpu_kernels_avx512_sgemm(G3CpuKernels *k);
void g3_cpu_kernels_avx512bf16_gemm(G3CpuKernels *k);

// The sgemm driver (sgemm.c): blocking, packing and threading around a micro-kernel.
// Returns -1 (and computes nothing) if its packing buffers cannot be allocated.
// epi (may be NULL): see g3_sgemm_epi in kernels.h; run on each micro-tile after its last
// depth step. bf16: the operands rounded to bf16 (g3_gemm_bf16).
struct G3SgemmEpilogue;
int g3_sgemm_blocked(const G3CpuKernels *k, int ta, int tb, int M, int N, int K, const float *A, int lda,
                     const float *B, int ldb, float *C, int ldc, int accumulate, const struct G3SgemmEpilogue *epi, int bf16);

// Packed-B products (g3_sgemm_packed): the whole depth of op(B) as panels of NR columns, and
// a product against a slice of it with A in place. Need sgemm_micro_rowa.
void g3_sgemm_pack_full(const G3CpuKernels *k, float *dst, int tb, int K, int N, const float *B, int ldb);
void g3_sgemm_packed_run(const G3CpuKernels *k, int M, int N, int K, const float *A, int lda, const float *packed, int Ktot,
                         int k0, int n0, float *C, int ldc, int accumulate);

#endif
