// sgemm.c: the blocked f32 GEMM driver behind g3_sgemm (Goto/BLIS loop order). It packs
// panels of A and B into contiguous, zero-padded buffers so that the ISA micro-kernel
// (cpu/sgemm_*.c) sees one simple layout whatever the transposes are, and splits the
// work across OpenMP threads. Not a kernel itself: the arithmetic is in the micro-kernel.
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "cpu/kernels_cpu.h"

#define KC 256   // depth of a packed panel: a KC x NR slice of B stays in L1
#define MC 96    // rows of A packed per work item (a multiple of every MR): ~96 KB, in L2
#define NC 2048  // columns of B packed per outer step: KC x NC = 2 MB, in L3
#define NJ 256   // columns per work item inside a packed B panel
#define MIN_PARALLEL_MACS (1L << 18)

// Per calling thread, grown on demand and kept: the packed B panel (shared by the team)
// and one packed A block per team thread.
static _Thread_local float *bpack, *apack;
static _Thread_local size_t bpack_cap, apack_cap;

static float *grow(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        g3_free_aligned(*buf);
        *buf = g3_malloc_aligned(n * sizeof(float));
        *cap = *buf ? n : 0;
    }
    return *buf;
}

// op(A)[m, k] for m in [i0, i0+mc), k in [p0, p0+kc), as micro-panels of MR rows: for each
// panel, kc steps of MR values; rows past M are zero.
static void pack_a(float *dst, int ta, const float *A, int M, int K, int i0, int mc, int p0, int kc, int MR) {
    for (int ip = 0; ip < mc; ip += MR) {
        int rows = mc - ip < MR ? mc - ip : MR;
        float *d = dst + (size_t)ip * kc;
        if (ta) {  // A stored [K, M]: the MR values of one k are contiguous
            for (int k = 0; k < kc; k++) {
                const float *s = A + (size_t)(p0 + k) * M + i0 + ip;
                for (int r = 0; r < rows; r++) d[(size_t)k * MR + r] = s[r];
                for (int r = rows; r < MR; r++) d[(size_t)k * MR + r] = 0.0f;
            }
        } else {
            for (int r = 0; r < MR; r++) {
                if (r >= rows) {
                    for (int k = 0; k < kc; k++) d[(size_t)k * MR + r] = 0.0f;
                } else {
                    const float *s = A + (size_t)(i0 + ip + r) * K + p0;
                    for (int k = 0; k < kc; k++) d[(size_t)k * MR + r] = s[k];
                }
            }
        }
    }
}

// op(B)[k, n] for k in [p0, p0+kc), n in [j0, j0+nc), as micro-panels of NR columns.
static void pack_b_panel(float *dst, int tb, const float *B, int N, int K, int j, int nr, int p0, int kc, int NR) {
    if (!tb) {  // B stored [K, N]: rows of the panel are contiguous
        for (int k = 0; k < kc; k++) {
            const float *s = B + (size_t)(p0 + k) * N + j;
            float *d = dst + (size_t)k * NR;
            memcpy(d, s, (size_t)nr * sizeof(float));
            for (int c = nr; c < NR; c++) d[c] = 0.0f;
        }
    } else {  // B stored [N, K]: columns of the panel are contiguous
        for (int c = 0; c < NR; c++) {
            float *d = dst + c;
            if (c >= nr) {
                for (int k = 0; k < kc; k++) d[(size_t)k * NR] = 0.0f;
            } else {
                const float *s = B + (size_t)(j + c) * K + p0;
                for (int k = 0; k < kc; k++) d[(size_t)k * NR] = s[k];
            }
        }
    }
}

int g3_sgemm_blocked(const G3CpuKernels *kn, int ta, int tb, int M, int N, int K, const float *A,
                     const float *B, float *C, int accumulate) {
    const int MR = kn->sgemm_mr, NR = kn->sgemm_nr;
    int ncmax = N < NC ? N : NC, kcmax = K < KC ? K : KC;
    int nth = (omp_in_parallel() || (long)M * N * K < MIN_PARALLEL_MACS) ? 1 : omp_get_max_threads();
    size_t bcap = (size_t)((ncmax + NR - 1) / NR) * NR * kcmax, acap = (size_t)MC * KC;
    float *bp = grow(&bpack, &bpack_cap, bcap), *apall = grow(&apack, &apack_cap, acap * nth);
    if (!bp || !apall) return -1;  // out of memory (recorded by g3_malloc_aligned): caller falls back

#pragma omp parallel num_threads(nth) if (nth > 1)
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        int npanels = (nc + NR - 1) / NR;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC;
            int acc = pc > 0 || accumulate;
#pragma omp for schedule(static)
            for (int p = 0; p < npanels; p++) {
                int nr = nc - p * NR < NR ? nc - p * NR : NR;
                pack_b_panel(bp + (size_t)p * NR * kc, tb, B, N, K, jc + p * NR, nr, pc, kc, NR);
            }
            int mblocks = (M + MC - 1) / MC, nblocks = (nc + NJ - 1) / NJ;
#pragma omp for schedule(dynamic, 1)
            for (int item = 0; item < mblocks * nblocks; item++) {
                int ic = (item / nblocks) * MC, jj = (item % nblocks) * NJ;
                int mc = M - ic < MC ? M - ic : MC, nj = nc - jj < NJ ? nc - jj : NJ;
                float *ap = apall + acap * omp_get_thread_num();
                pack_a(ap, ta, A, M, K, ic, mc, pc, kc, MR);
                for (int jr = 0; jr < nj; jr += NR) {
                    int nr = nj - jr < NR ? nj - jr : NR;
                    const float *b = bp + (size_t)((jj + jr) / NR) * NR * kc;
                    for (int ir = 0; ir < mc; ir += MR) {
                        int mr = mc - ir < MR ? mc - ir : MR;
                        kn->sgemm_micro(kc, ap + (size_t)ir * kc, b, C + (size_t)(ic + ir) * N + jc + jj + jr, N, mr, nr, acc);
                    }
                }
            }
        }
    }
    return 0;
}
