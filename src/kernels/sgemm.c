// sgemm.c: the blocked f32 GEMM driver behind g3_sgemm (Goto/BLIS loop order). It packs
// panels of A and B into contiguous, zero-padded buffers so that the ISA micro-kernel
// (cpu/sgemm_*.c) sees one simple layout whatever the transposes are, and splits the
// work across OpenMP threads. Not a kernel itself: the arithmetic is in the micro-kernel.
// The same driver runs g3_gemm_bf16, its panels then holding bf16 pairs (see pack_pairs).
//
// Each (column block jc, depth block pc) packs B once, by the whole team into a shared
// buffer; each MC-row block of A is packed once too (by its item's thread, or by the team in
// row groups when M is too small to give every thread whole row blocks). An earlier version
// repacked A for every 256-column chunk of every item: ~20% of a training step.
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "cpu/kernels_cpu.h"
#include "kernels.h"

#define MC 144    // rows of A per work item (a multiple of every MR): 144 x kc floats packed (144-576 KB), in L2
#define MG 1440   // rows of A packed per group (10 x MC): 1.4-5.8 MB, in L3 with B's panel
#define NC 2048   // columns of B packed per outer step: kc x NC = 2-8 MB, in L3
#define ITEMS_PER_THREAD 3  // column chunks shrink until there are this many items per thread
#define MIN_ROW_BLOCKS 8  // per thread, when each row block is an item (see below)
#define MIN_PARALLEL_MACS (1L << 18)
// Packing that walks down a matrix (one short run a row: B as [K, N], A as [K, M]) fetches
// the run PREFETCH_ROWS rows ahead: rows kilobytes apart cross a page each, where the hardware
// prefetcher stops, and the packing loop stalled on every row (2.6% of a (b) training step);
// the dW products ran 1-7% faster in interleaved runs. A prefetch past the end does not fault.
#define PREFETCH_ROWS 8
#define RAW_A_MAX_K 512   // see raw_a below
#define RAW_A_MAX_N 2048

// Per calling thread, grown on demand and kept: the packed B panel and A group (shared by
// the team that the calling thread forks).
static _Thread_local float *bpack, *apack;
static _Thread_local size_t bpack_cap, apack_cap;

enum { F32, ROUNDED, PAIRS };  // what the packed panels hold (see pack_a)

static float *grow(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        g3_free_aligned(*buf);
        *buf = g3_malloc_aligned(n * sizeof(float));
        *cap = *buf ? n : 0;
    }
    return *buf;
}

// Micro-panels of op(A): rows [i, i+rows), k in [p0, p0+kc); each panel is kc steps of MR
// values, in order, rows past `rows` zero. Transposed, A is read a whole row segment (all
// the panels' rows at one k) at a time: panel by panel, each k was a jump of ldA, and
// power-of-two ldAs put those lines in a few cache sets that missed every time.
static void pack_a_panels(const G3CpuKernels *kn, float *dst, int ta, const float *A, int lda, int i, int rows, int p0,
                          int kc, int MR) {
    int np = (rows + MR - 1) / MR;
    if (ta) {  // A stored [K, M]: one k is a contiguous run of the panels' rows
        for (int k = 0; k < kc; k++) {
            const float *s = A + (size_t)(p0 + k) * lda + i;
            for (int q = 0; q < rows; q += 16) __builtin_prefetch(s + (size_t)PREFETCH_ROWS * lda + q);  // see PREFETCH_ROWS
            int nfull = rows / MR;
            float *d = dst + (size_t)k * MR;
            // whole panels: MR contiguous values each, copied at a constant size (inlined
            // vector moves; the element loop was 5-8% of a training step in the dW products)
            if (MR == 6)
                for (int q = 0; q < nfull; q++) memcpy(d + (size_t)q * MR * kc, s + q * MR, 6 * sizeof(float));
            else if (MR == 8)
                for (int q = 0; q < nfull; q++) memcpy(d + (size_t)q * MR * kc, s + q * MR, 8 * sizeof(float));
            else if (MR == 16)
                for (int q = 0; q < nfull; q++) memcpy(d + (size_t)q * MR * kc, s + q * MR, 16 * sizeof(float));
            else
                for (int q = 0; q < nfull; q++)
                    for (int r = 0; r < MR; r++) d[(size_t)q * MR * kc + r] = s[q * MR + r];
            if (nfull < np) {  // the last, partial panel: zero-padded
                float *dl = d + (size_t)nfull * MR * kc;
                int rq = rows - nfull * MR;
                for (int r = 0; r < MR; r++) dl[r] = r < rq ? s[nfull * MR + r] : 0.0f;
            }
        }
        return;
    }
    for (int q = 0; q < np; q++) {  // A stored [M, K]: MR row streams read side by side
        float *d = dst + (size_t)q * MR * kc;
        int rq = rows - q * MR < MR ? rows - q * MR : MR, i0 = i + q * MR;
        if (rq == MR && kn->sgemm_pack_a) {
            kn->sgemm_pack_a(d, A + (size_t)i0 * lda + p0, lda, kc);
            continue;
        }
        const float *s[16];
        for (int r = 0; r < MR; r++) s[r] = A + (size_t)(i0 + (r < rq ? r : 0)) * lda + p0;
        if (rq == MR && MR == 6) {  // the AVX2 tile: a constant trip count the compiler unrolls
            for (int k = 0; k < kc; k++, d += 6)
                d[0] = s[0][k], d[1] = s[1][k], d[2] = s[2][k], d[3] = s[3][k], d[4] = s[4][k], d[5] = s[5][k];
        } else {
            for (int k = 0; k < kc; k++, d += MR)
                for (int r = 0; r < MR; r++) d[r] = r < rq ? s[r][k] : 0.0f;
        }
    }
}

// One micro-panel of op(B): columns [j, j+nr) (nr <= NR), k in [p0, p0+kc), written as kc
// steps of NR values, in order; columns past `nr` are zero.
static void pack_b_panel(const G3CpuKernels *kn, float *d, int tb, const float *B, int ldb, int j, int nr, int p0, int kc,
                         int NR) {
    if (tb && nr == NR && kn->sgemm_pack_bt) {
        kn->sgemm_pack_bt(d, B + (size_t)j * ldb + p0, ldb, kc);
        return;
    }
    if (!tb) {  // B stored [K, N]: one k is NR contiguous values
        for (int k = 0; k < kc; k++, d += NR) {
            const float *s = B + (size_t)(p0 + k) * ldb + j;
            __builtin_prefetch(s + (size_t)PREFETCH_ROWS * ldb);  // see PREFETCH_ROWS
            if (nr == 16 && NR == 16) memcpy(d, s, 16 * sizeof(float));  // constant sizes: inlined vector copies
            else if (nr == 32 && NR == 32) memcpy(d, s, 32 * sizeof(float));
            else {
                for (int c = 0; c < nr; c++) d[c] = s[c];
                for (int c = nr; c < NR; c++) d[c] = 0.0f;
            }
        }
    } else {  // B stored [N, K]: NR columns, transposed a cache line (16 k) at a time
        for (int k0 = 0; k0 < kc; k0 += 16) {
            int kn = kc - k0 < 16 ? kc - k0 : 16;
            float *dk = d + (size_t)k0 * NR;
            for (int c = 0; c < NR; c++) {
                if (c < nr) {
                    const float *s = B + (size_t)(j + c) * ldb + p0 + k0;
                    for (int k = 0; k < kn; k++) dk[(size_t)k * NR + c] = s[k];
                } else {
                    for (int k = 0; k < kn; k++) dk[(size_t)k * NR + c] = 0.0f;
                }
            }
        }
    }
}

// ---- bf16 operands (g3_gemm_bf16) ----
// With the CPU's bf16 dot product the panels hold pair words (see kernels_cpu.h): an A panel
// is ceil(kc/2) steps of MR words, a B panel of NR. Without it the f32 panels are rounded to
// bf16 where they lie and the f32 micro-kernel multiplies them: the same products.

static inline uint32_t pair_word(float lo, float hi) { return g3_f32_to_bf16(lo) | (uint32_t)g3_f32_to_bf16(hi) << 16; }

static inline float elem(const float *S, int lds, int trans, int r, int k) {  // op(S)[r, k]
    return trans ? S[(size_t)k * lds + r] : S[(size_t)r * lds + k];
}

// Panels [q0, q0 + np) of op(S) rows [i, i + rows) (rows past `rows` zero), scalar: the
// reference of the ISA packers and the path of partial panels.
static void pack_pairs_ref(uint32_t *dst, int trans, const float *S, int lds, int i, int rows, int p0, int kc, int W, int q0,
                           int np) {
    int kd = (kc + 1) / 2;
    for (int q = q0; q < q0 + np; q++)
        for (int k2 = 0; k2 < kd; k2++)
            for (int r = 0; r < W; r++) {
                int m = q * W + r, k = p0 + 2 * k2;
                float lo = m < rows ? elem(S, lds, trans, i + m, k) : 0.0f;
                float hi = m < rows && 2 * k2 + 1 < kc ? elem(S, lds, trans, i + m, k + 1) : 0.0f;
                dst[((size_t)q * kd + k2) * W + r] = pair_word(lo, hi);
            }
}

// op(S)'s rows [i, i + rows), depth [p0, p0 + kc), as panels of W rows of pair words: S is A
// (trans = ta, W = MR) or B seen as B^T (trans = !tb, W = NR).
static void pack_pairs(const G3CpuKernels *kn, uint32_t *dst, int trans, const float *S, int lds, int i, int rows, int p0,
                       int kc, int W) {
    int np = (rows + W - 1) / W, nfull = rows / W, kd = (kc + 1) / 2;
    if (nfull && (trans ? kn->bgemm_pack_cols != NULL : kn->bgemm_pack_rows != NULL)) {
        if (trans) {  // S stored [K, rows]: all the full panels' rows of one k at a time (see pack_a_panels)
            kn->bgemm_pack_cols(dst, S + (size_t)p0 * lds + i, lds, nfull * W, W, (size_t)W * kd, kc);
        } else {
            for (int q = 0; q < nfull; q++)
                kn->bgemm_pack_rows(dst + (size_t)q * W * kd, S + (size_t)(i + q * W) * lds + p0, lds, W, kc);
        }
    } else {
        nfull = 0;
    }
    pack_pairs_ref(dst, trans, S, lds, i, rows, p0, kc, W, nfull, np - nfull);
}

static void round_bf16(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = g3_bf16_to_f32(g3_f32_to_bf16(p[i]));
}

// op(A)'s panels in the form the micro-kernel takes: f32, f32 rounded to bf16, or pair words.
static void pack_a(const G3CpuKernels *kn, int mode, float *dst, int ta, const float *A, int lda, int i, int rows, int p0,
                   int kc, int MR) {
    if (mode == PAIRS) {
        pack_pairs(kn, (uint32_t *)dst, ta, A, lda, i, rows, p0, kc, MR);
        return;
    }
    pack_a_panels(kn, dst, ta, A, lda, i, rows, p0, kc, MR);
    if (mode == ROUNDED) round_bf16(dst, (size_t)(rows + MR - 1) / MR * MR * kc);
}

static void pack_b(const G3CpuKernels *kn, int mode, float *d, int tb, const float *B, int ldb, int j, int nr, int p0, int kc,
                   int NR) {
    if (mode == PAIRS) {
        pack_pairs(kn, (uint32_t *)d, !tb, B, ldb, j, nr, p0, kc, NR);
        return;
    }
    pack_b_panel(kn, d, tb, B, ldb, j, nr, p0, kc, NR);
    if (mode == ROUNDED) round_bf16(d, (size_t)NR * kc);
}

int g3_sgemm_blocked(const G3CpuKernels *kn, int ta, int tb, int M, int N, int K, const float *A, int lda,
                     const float *B, int ldb, float *C, int ldc, int accumulate, const G3SgemmEpilogue *epi, int bf16) {
    const int MR = kn->sgemm_mr, NR = kn->sgemm_nr;
    const int mode = !bf16 ? F32 : kn->bgemm_micro ? PAIRS : ROUNDED;
    // Depth steps of equal size, at most the ISA's sgemm_kc (see kernels_cpu.h; in pair
    // words, twice the depth): K = 1024 with 768 would be 768 + 256, and the short step pays
    // the full pass over C.
    int kmax = mode == PAIRS ? 2 * kn->sgemm_kc : kn->sgemm_kc;
    int ksteps = (K + kmax - 1) / kmax, KC = (K + ksteps - 1) / ksteps;
    int ncmax = N < NC ? N : NC, kcmax = K < KC ? K : KC, mgmax = M < MG ? M : MG;
    int nth = (omp_in_parallel() || (long)M * N * K < MIN_PARALLEL_MACS) ? 1 : omp_get_max_threads();
    // With enough row blocks for every thread, an item is a row block across the whole
    // column panel and its thread packs that A block privately: used once, no barrier.
    // Otherwise (few rows: dW products) the team packs A row groups into a shared buffer.
    int private_a = nth == 1 || (M + MC - 1) / MC >= ITEMS_PER_THREAD * nth, gstep = private_a ? M : MG;
    // A row-major with short rows is read in place: packing it cost as much as the product
    // when N is small (the k and v projections: 70-84 -> 91 GFLOP/s on one Zen 3 core), and
    // its block is dense in cache anyway. Long rows (K > RAW_A_MAX_K) stay packed (their row
    // starts fall in a few cache sets), and so does A when N is wide enough to amortize the
    // packing (the output head measured a few % faster packed). Rows up to the ISA's panel
    // depth are short too: on Zen 5 (kc 1024) in place made the K = 1024 products of shape
    // (a) 5-6% faster.
    int raw_a = mode == F32 && !ta && kn->sgemm_micro_rowa && K <= G3_MAX(RAW_A_MAX_K, kn->sgemm_kc) && N <= RAW_A_MAX_N;
    int kdmax = mode == PAIRS ? (kcmax + 1) / 2 : kcmax;  // packed depth
    size_t bcap = (size_t)((ncmax + NR - 1) / NR) * NR * kdmax, astride = (size_t)MC * kdmax;
    size_t acap = private_a ? astride * nth : (size_t)((mgmax + MR - 1) / MR) * MR * kdmax;
    float *bp = grow(&bpack, &bpack_cap, bcap), *ap = grow(&apack, &apack_cap, acap);
    if (!bp || !ap) return -1;  // out of memory (recorded by g3_malloc_aligned): caller falls back

#pragma omp parallel num_threads(nth) if (nth > 1)
    for (int jc = 0; jc < N; jc += NC) {
        int nc = N - jc < NC ? N - jc : NC;
        int npanels = (nc + NR - 1) / NR;
        for (int pc = 0; pc < K; pc += KC) {
            int kc = K - pc < KC ? K - pc : KC, kd = mode == PAIRS ? (kc + 1) / 2 : kc;  // kd: packed depth
            int acc = pc > 0 || accumulate;
            const G3SgemmEpilogue *last = pc + kc >= K ? epi : NULL;  // tiles are final in the last depth step
            if (mode == PAIRS && !tb && kn->bgemm_pack_cols) {
                // B stored [K, N] in pairs: k outer, each thread a run of pair rows across every
                // whole panel, so each row is read whole and in order. Panel by panel, each step
                // read 2 x 128 bytes of two rows kilobytes apart, stalled on every load (8% of a
                // shape (a) bf16 step).
                int nfull = nc / NR * NR, per = (kd + nth - 1) / nth;
#pragma omp for schedule(static)
                for (int t = 0; t < nth; t++) {
                    int a = t * per, b = G3_MIN(kd, a + per);
                    if (a < b && nfull)
                        kn->bgemm_pack_cols((uint32_t *)bp + (size_t)a * NR, B + (size_t)(pc + 2 * a) * ldb + jc, ldb, nfull, NR,
                                            (size_t)NR * kd, G3_MIN(kc - 2 * a, 2 * (b - a)));
                    if (t == 0 && nfull < nc)
                        pack_pairs_ref((uint32_t *)bp + (size_t)nfull * kd, 1, B, ldb, jc + nfull, nc - nfull, pc, kc, NR, 0, 1);
                }
            } else {
#pragma omp for schedule(static)
                for (int p = 0; p < npanels; p++) {
                    int nr = nc - p * NR < NR ? nc - p * NR : NR;
                    pack_b(kn, mode, bp + (size_t)p * NR * kd, tb, B, ldb, jc + p * NR, nr, pc, kc, NR);
                }
            }
            for (int ig = 0; ig < M; ig += gstep) {
                int mg = M - ig < gstep ? M - ig : gstep;
                if (!private_a && !raw_a) {
                    int apanels = (mg + MR - 1) / MR, per = (apanels + nth - 1) / nth;  // one run of panels a thread
#pragma omp for schedule(static)
                    for (int t = 0; t < nth; t++) {
                        int r0 = t * per * MR, rows = G3_MIN(mg - r0, per * MR);
                        if (rows > 0) pack_a(kn, mode, ap + (size_t)r0 * kd, ta, A, lda, ig + r0, rows, pc, kc, MR);
                    }
                }
                // Row blocks of equal height (a multiple of MR, at most MC), as many as a
                // multiple of the threads when each is its own item: with MC-row blocks and a
                // short last one, M = 1024 made 8 items of which one was 16 rows, and one
                // thread idled for an eighth of every depth step. And at least
                // MIN_ROW_BLOCKS a thread: when a neighbour on the host slows one core, the
                // other waits at the depth step's barrier for up to one item; 64-row items
                // instead of 128 made the M = 1024 products 3-5% faster in interleaved runs
                // (A is still packed once: each row is in one block).
                int mblocks = (mg + MC - 1) / MC;
                if (private_a && nth > 1) mblocks = (G3_MAX(mblocks, MIN_ROW_BLOCKS * nth) + nth - 1) / nth * nth;
                int mcb = ((mg + mblocks - 1) / mblocks + MR - 1) / MR * MR;
                mblocks = (mg + mcb - 1) / mcb;
                // Column chunks: the whole panel when there are enough row blocks to share,
                // else thinner (in whole micro-panels) until every thread has a few items.
                int want = (ITEMS_PER_THREAD * nth + mblocks - 1) / mblocks, nj = nc;
                if (nth > 1 && want > 1) nj = ((npanels + want - 1) / want) * NR;
                int nblocks = (nc + nj - 1) / nj;
#pragma omp for schedule(dynamic, 1)
                for (int item = 0; item < mblocks * nblocks; item++) {
                    int ic = (item / nblocks) * mcb, jj = (item % nblocks) * nj;
                    int mc = mg - ic < mcb ? mg - ic : mcb, njc = nc - jj < nj ? nc - jj : nj;
                    const float *a = ap + (size_t)ic * kd;
                    if (private_a && !raw_a) {  // nblocks is 1 here: this block is packed once
                        float *mine = ap + astride * (size_t)omp_get_thread_num();
                        pack_a(kn, mode, mine, ta, A, lda, ig + ic, mc, pc, kc, MR);
                        a = mine;
                    }
                    for (int jr = 0; jr < njc; jr += NR) {
                        int nr = njc - jr < NR ? njc - jr : NR;
                        const float *b = bp + (size_t)((jj + jr) / NR) * NR * kd;
                        for (int ir = 0; ir < mc; ir += MR) {
                            int mr = mc - ir < MR ? mc - ir : MR;
                            int i0 = ig + ic + ir, j0 = jc + jj + jr;
                            float *c = C + (size_t)i0 * ldc + j0;
                            if (last && last->prefetch) last->prefetch(last->ctx, i0, j0, mr, nr);
                            if (raw_a) kn->sgemm_micro_rowa(kc, A + (size_t)i0 * lda + pc, lda, b, c, ldc, mr, nr, acc);
                            else if (mode == PAIRS)
                                kn->bgemm_micro(kd, (const uint32_t *)a + (size_t)ir * kd, (const uint32_t *)b, c, ldc, mr, nr, acc);
                            else kn->sgemm_micro(kc, a + (size_t)ir * kc, b, c, ldc, mr, nr, acc);
                            if (last) last->fn(last->ctx, i0, j0, mr, nr);
                        }
                    }
                }
            }
        }
    }
    return 0;
}

// ---- packed B, many products (g3_sgemm_packed) ----

void g3_sgemm_pack_full(const G3CpuKernels *kn, float *dst, int tb, int K, int N, const float *B, int ldb) {
    const int NR = kn->sgemm_nr;
    for (int p = 0; p * NR < N; p++)
        pack_b_panel(kn, dst + (size_t)p * NR * K, tb, B, ldb, p * NR, G3_MIN(NR, N - p * NR), 0, K, NR);
}

// Each panel is Ktot steps of NR values, so depth k0 of panel q starts at q * NR * Ktot + k0 * NR.
void g3_sgemm_packed_run(const G3CpuKernels *kn, int M, int N, int K, const float *A, int lda, const float *packed, int Ktot,
                         int k0, int n0, float *C, int ldc, int accumulate) {
    const int MR = kn->sgemm_mr, NR = kn->sgemm_nr;
    for (int jr = 0; jr < N; jr += NR) {
        const float *b = packed + (size_t)((n0 + jr) / NR) * NR * Ktot + (size_t)k0 * NR;
        int nr = G3_MIN(NR, N - jr);
        for (int ir = 0; ir < M; ir += MR)
            kn->sgemm_micro_rowa(K, A + (size_t)ir * lda, lda, b, C + (size_t)ir * ldc + jr, ldc, G3_MIN(MR, M - ir), nr, accumulate);
    }
}
