// dispatch.c: picks the kernels once from the CPU's features and runs them on the OpenMP
// threads. The public entry points of kernels.h live here: they split the work (columns
// of the output, contiguous blocks, one per thread, static), prepare the bf16 copy of the
// activations for the fast path, and call the chosen ISA's kernel on each share.
// What this is not: a kernel. The arithmetic is in kernels_ref.c and cpu/*.c.
#include <cpuid.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "cpu/kernels_cpu.h"
#include "kernels.h"
#include "ops.h"

static G3CpuKernels kern;
static G3Isa kern_isa = G3_ISA_SCALAR;
static int kern_ready = 0;

// ---- scalar level: the references, cut into column ranges so that they thread ----

static void mm_range_scalar(float *y, const void *x, const void *w, G3DType wt, int T, int K, int N, int n0, int n1) {
    for (int t = 0; t < T; t++)
        g3_matmul_ref(y + (size_t)t * N + n0, (const float *)x + (size_t)t * K,
                      (const char *)w + (size_t)n0 * (size_t)g3_type_row_bytes(wt, K), wt, 1, K, n1 - n0, 0);
}
static void mm_f32_scalar(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range_scalar(y, x, w, G3_F32, T, K, N, n0, n1); }
static void mm_bf16_scalar(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range_scalar(y, x, w, G3_BF16, T, K, N, n0, n1); }
static void mm_f16_scalar(float *y, const void *x, const void *w, int T, int K, int N, int n0, int n1) { mm_range_scalar(y, x, w, G3_F16, T, K, N, n0, n1); }

static void f32_to_bf16_scalar(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = g3_f32_to_bf16(src[i]);
}

void g3_cpu_kernels_scalar(G3CpuKernels *k) {
    memset(k, 0, sizeof *k);
    k->mm_f32 = mm_f32_scalar;
    k->mm_bf16 = mm_bf16_scalar;
    k->mm_f16 = mm_f16_scalar;
    k->f32_to_bf16 = f32_to_bf16_scalar;
}

// ---- detection ----

static G3Isa detect_isa(void) {
    __builtin_cpu_init();
    // __builtin_cpu_supports checks cpuid and (for AVX/AVX-512) that the OS saves the
    // registers (xgetbv), so a 'yes' here means the instructions are usable.
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return G3_ISA_SCALAR;
    unsigned a, b, c, d;  // F16C (vcvtph2ps) is not among __builtin_cpu_supports' names in gcc 12
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_F16C)) return G3_ISA_SCALAR;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        return G3_ISA_AVX2;
    if (!__builtin_cpu_supports("avx512bf16")) return G3_ISA_AVX512;
    return G3_ISA_AVX512BF16;
}

const char *g3_isa_name(G3Isa isa) {
    switch (isa) {
    case G3_ISA_SCALAR: return "scalar";
    case G3_ISA_AVX2: return "avx2";
    case G3_ISA_AVX512: return "avx512";
    case G3_ISA_AVX512BF16: return "avx512bf16";
    }
    return "?";
}

G3Isa g3_kernels_init(G3Isa max_isa) {
    G3Isa isa = detect_isa();
    if (isa > max_isa) isa = max_isa;
    G3CpuKernels k;
    g3_cpu_kernels_scalar(&k);
    if (isa >= G3_ISA_AVX2) g3_cpu_kernels_avx2(&k);
    if (isa >= G3_ISA_AVX512) g3_cpu_kernels_avx512(&k);
    if (isa >= G3_ISA_AVX512BF16) g3_cpu_kernels_avx512bf16(&k);
    kern = k;
    kern_isa = isa;
    kern_ready = 1;
    g3_ops_set_level(isa >= G3_ISA_AVX512 ? 2 : isa >= G3_ISA_AVX2 ? 1 : 0);
    return isa;
}

static inline void ensure_init(void) {
    if (!kern_ready) g3_kernels_init(G3_ISA_AVX512BF16);
}

G3Isa g3_kernels_level(void) {
    ensure_init();
    return kern_isa;
}

// ---- matmul ----

// Below this many multiply-adds a second thread costs more than it saves (a fork/join
// is a few microseconds). Decode (T = 1) is memory-bound, so it pays to split from
// ~128 KB of weights; with several rows the work is compute-bound and the bar is higher.
#define MATMUL_MIN_PARALLEL_MACS (1L << 20)
#define GEMV_MIN_PARALLEL_MACS (1L << 16)

// Per calling thread, grown on demand and kept: the bf16 copy of x for the fast path.
static _Thread_local uint16_t *xb_buf;
static _Thread_local size_t xb_cap;

static uint16_t *xb_scratch(size_t n) {
    if (n > xb_cap) {
        g3_free_aligned(xb_buf);
        xb_cap = n + (n >> 2) + 64;
        xb_buf = g3_malloc_aligned(xb_cap * sizeof(uint16_t));
        if (!xb_buf) xb_cap = 0;
    }
    return xb_buf;
}

static int pick_threads(int T, long work) {
    if (omp_in_parallel() || work < (T == 1 ? GEMV_MIN_PARALLEL_MACS : MATMUL_MIN_PARALLEL_MACS)) return 1;
    return omp_get_max_threads();
}

void g3_matmul(float *y, const float *x, const void *w, G3DType wt, int T, int K, int N, int fast) {
    ensure_init();
    if (T <= 0 || N <= 0) return;
    if (K <= 0) {
        memset(y, 0, (size_t)T * N * sizeof(float));
        return;
    }
    G3MatmulRange fn = wt == G3_BF16 ? kern.mm_bf16 : wt == G3_F16 ? kern.mm_f16 : kern.mm_f32;
    const void *xin = x;
    if (fast && wt == G3_BF16 && kern.mm_bf16_fast) {
        uint16_t *xb = xb_scratch((size_t)T * K);
        if (xb) {
            fn = kern.mm_bf16_fast;
            xin = xb;
        }
    }
    int nth = pick_threads(T, (long)T * K * N);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();  // nt may be < nth
        // Columns are handed out in blocks of 16 so that every share starts on a whole tile.
        int per = ((N + nt - 1) / nt + 15) & ~15;
        if (xin != (const void *)x) {
            size_t total = (size_t)T * K, chunk = (total + nt - 1) / nt;
            size_t a = chunk * id < total ? chunk * id : total, b = a + chunk < total ? a + chunk : total;
            kern.f32_to_bf16((uint16_t *)xin + a, x + a, b - a);
#pragma omp barrier
        }
        if (nt > 1) {
            // On a shared machine one core often runs slower than the other: equal halves
            // left the faster thread waiting ~8% of the time in decode and up to 15% in
            // prefill. Blocks of ~1/6 of a share (decode) or ~1/4 (several rows, where each
            // block re-reads x), taken in turn, even that out.
            int blk = ((N / ((T == 1 ? 6 : 4) * nt)) + 15) & ~15;
            if (blk < (T == 1 ? 16 : 64)) blk = T == 1 ? 16 : 64;
#pragma omp for schedule(dynamic, 1) nowait
            for (int n0 = 0; n0 < N; n0 += blk) fn(y, xin, w, T, K, N, n0, n0 + blk < N ? n0 + blk : N);
        } else {
            int n0 = per * id < N ? per * id : N, n1 = n0 + per < N ? n0 + per : N;
            if (n0 < n1) fn(y, xin, w, T, K, N, n0, n1);
        }
    }
}

const void *g3_matmul_operand(const float *x, G3DType wt, int T, int K, int fast) {
    ensure_init();
    if (!(fast && wt == G3_BF16 && kern.mm_bf16_fast)) return x;
    uint16_t *xb = xb_scratch((size_t)T * K);
    if (xb) kern.f32_to_bf16(xb, x, (size_t)T * K);
    return xb;
}

void g3_matmul_cols(float *y, const void *xop, const void *w, G3DType wt, int T, int K, int N, int n0, int n1, int fast) {
    if (n0 >= n1 || T <= 0) return;
    if (K <= 0) {
        for (int t = 0; t < T; t++) memset(y + (size_t)t * N + n0, 0, (size_t)(n1 - n0) * sizeof(float));
        return;
    }
    G3MatmulRange fn = wt == G3_BF16 ? (fast && kern.mm_bf16_fast ? kern.mm_bf16_fast : kern.mm_bf16)
                       : wt == G3_F16 ? kern.mm_f16 : kern.mm_f32;
    fn(y, xop, w, T, K, N, n0, n1);
}

// ---- sgemm ----

// The general case, any strides: K = 0 gives zeros (or leaves C when accumulating); the
// blocked driver, or the reference if it cannot get its packing buffers. Returns 1 if the
// driver ran epi tile by tile, 0 if the caller still has to run it over C.
static int sgemm_strided(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C,
                         int ldc, int accumulate, const G3SgemmEpilogue *epi, int bf16) {
    if (M <= 0 || N <= 0) return 1;  // no C: nothing for an epilogue
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
        return 0;
    }
    if (kern.sgemm_micro && g3_sgemm_blocked(&kern, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, epi, bf16) == 0) return 1;
    if (bf16) g3_gemm_bf16_ld_ref(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    else g3_sgemm_ld_ref(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    return 0;
}

void g3_sgemm_epi(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                  const G3SgemmEpilogue *epi) {
    ensure_init();
    int done;
    // A few rows times a weight-like [N, K] matrix is a matrix-vector product (attention
    // scores in decode): the matmul kernel reads B once, where packing would copy it.
    if (M > 0 && N > 0 && K > 0 && !ta && tb && !accumulate && M <= 4) {
        g3_matmul(C, A, B, G3_F32, M, K, N, 0);
        done = 0;
    } else if (M > 0 && N > 0 && K > 0 && !tb && M <= 4 && kern.sgemm_small_m) {  // and P . V: stream V once, unpacked
        kern.sgemm_small_m(ta, M, N, K, A, B, C, accumulate);
        done = 0;
    } else {
        done = sgemm_strided(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, accumulate, epi, 0);
    }
    if (epi && !done) epi->fn(epi->ctx, 0, 0, M, N);
}

void g3_sgemm(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    g3_sgemm_epi(ta, tb, M, N, K, A, B, C, accumulate, NULL);
}

void g3_sgemm_ld(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                 int accumulate) {
    if (lda == (ta ? M : K) && ldb == (tb ? K : N) && ldc == N) {  // contiguous: g3_sgemm's shortcuts apply
        g3_sgemm(ta, tb, M, N, K, A, B, C, accumulate);
        return;
    }
    ensure_init();
    sgemm_strided(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, NULL, 0);
}

void g3_gemm_bf16_epi(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate,
                      const G3SgemmEpilogue *epi) {
    ensure_init();
    int done = sgemm_strided(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, accumulate, epi, 1);
    if (epi && !done) epi->fn(epi->ctx, 0, 0, M, N);
}

// ---- packed B ----

enum { PACKED_NR_MAX = 32 };  // the widest micro-panel of any level (AVX-512's 8 x 32)

size_t g3_sgemm_packed_floats(int K, int N) { return (size_t)(N + PACKED_NR_MAX - 1) / PACKED_NR_MAX * PACKED_NR_MAX * K; }

void g3_sgemm_pack_b(G3PackedB *pb, float *buf, int tb, int K, int N, const float *B, int ldb) {
    ensure_init();
    *pb = (G3PackedB){.B = B, .p = buf, .tb = tb, .ldb = ldb, .K = K, .N = N};
    if (kern.sgemm_micro_rowa) g3_sgemm_pack_full(&kern, buf, tb, K, N, B, ldb);
}

int g3_sgemm_packed_cols(void) {
    ensure_init();
    return kern.sgemm_micro_rowa ? kern.sgemm_nr : 1;
}

int g3_sgemm_packed_rows(void) {
    ensure_init();
    return kern.sgemm_micro_rowa ? kern.sgemm_mr : 8;
}

void g3_sgemm_packed(int M, int N, int K, const float *A, int lda, const G3PackedB *pb, int k0, int n0, float *C, int ldc,
                     int accumulate) {
    ensure_init();
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++) memset(C + (size_t)m * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
    if (kern.sgemm_micro_rowa) {
        g3_sgemm_packed_run(&kern, M, N, K, A, lda, pb->p, pb->K, k0, n0, C, ldc, accumulate);
        return;
    }
    // the reference on B where it lies: op(B)[k0 + k, n0 + n]
    const float *B = pb->tb ? pb->B + (size_t)n0 * pb->ldb + k0 : pb->B + (size_t)k0 * pb->ldb + n0;
    g3_sgemm_ld_ref(0, pb->tb, M, N, K, A, lda, B, pb->ldb, C, ldc, accumulate);
}

int g3_gemm_bf16_native(void) {
    ensure_init();
    return kern.bgemm_micro != NULL;
}

void g3_gemm_bf16(int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int accumulate) {
    g3_gemm_bf16_epi(ta, tb, M, N, K, A, B, C, accumulate, NULL);
}
