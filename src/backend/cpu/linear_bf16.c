// linear_bf16.c: the CPU's linear layer over bf16 weights with many activation rows (prefill)
// in the fast mode: the activations rounded to bf16 once per call, each panel of 32 weight rows
// packed once (kernels/cpu/bf16w_gemm.h) and swept by every tile of 8 activation rows; threads
// take panels. The arithmetic is g3_matmul's fast path (bf16 activations, exact products, f32
// sums); only the order of the sums differs.
//
// With many rows (G3_BF16_GEMM_BLOCK_ROWS or more: a picture's 4096 patches, a long prompt) the
// loop turns around: the whole weight is packed first (by the team), then each thread takes a
// block of BLOCK_ROWS activation rows and, a depth chunk at a time, sweeps every panel over it,
// so its rows stay in the core's L2 and the panels stream. Panel-major, every panel swept all
// the rows from L3 (9.4 MB at 4096 x 1152 for each 32 weight rows): ~330 GFLOP/s a Zen 5 core
// on the vision tower's products against ~400 for the tile in cache.
#include <stdlib.h>

#include "../../base/base.h"
#include "../../kernels/cpu/bf16w_gemm.h"
#include "../../kernels/kernels.h"
#include "linear_quant.h"

static _Thread_local uint16_t *xb_buf;
static _Thread_local size_t xb_cap;
static _Thread_local uint32_t *pan_buf;
static _Thread_local uint32_t *wp_buf;  // the whole packed weight (many rows)
static _Thread_local size_t wp_cap;

enum {
    BLOCK_ROWS = 128,  // activation rows per work item: 128 x 1152 x 2 bytes = 288 KB, in L2
    BLOCK_KC = 1152,   // depth per sweep (even): the item's rows' chunk stays in L2 at any K
};

// Rows-outer order (see the top): xb [R][Kp] already rounded.
static int gemm_rows(float *y, const uint16_t *xb, int Kp, const G3Weight *w, int R) {
    const int N = (int)w->rows, K = (int)w->cols, kdt = Kp / 2, np = (N + G3_BF16W_ROWS - 1) / G3_BF16W_ROWS;
    const int64_t ldw = w->row_bytes / 2;
    const size_t words = (size_t)np * kdt * G3_BF16W_ROWS;
    if (words > wp_cap) {
        g3_free_aligned(wp_buf);
        wp_cap = words;
        wp_buf = g3_malloc_aligned(words * sizeof *wp_buf);
        if (!wp_buf) return wp_cap = 0, g3_errorf("linear: out of memory for the bf16 panels");
    }
    uint32_t *wp = wp_buf;
    const int nb = (R + BLOCK_ROWS - 1) / BLOCK_ROWS;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int q = 0; q < np; q++)
            g3_bf16w_pack(wp + (size_t)q * kdt * G3_BF16W_ROWS, (const uint16_t *)w->data + (int64_t)q * G3_BF16W_ROWS * ldw, ldw,
                          G3_MIN(G3_BF16W_ROWS, N - q * G3_BF16W_ROWS), 0, K);
#pragma omp for schedule(dynamic, 1)
        for (int ib = 0; ib < nb; ib++) {
            const int r0 = ib * BLOCK_ROWS, r1 = G3_MIN(R, r0 + BLOCK_ROWS);
            for (int k0 = 0; k0 < K; k0 += BLOCK_KC) {
                const int kd = (G3_MIN(BLOCK_KC, K - k0) + 1) / 2;
                for (int q = 0; q < np; q++) {
                    const int n0 = q * G3_BF16W_ROWS, nr = G3_MIN(G3_BF16W_ROWS, N - n0);
                    const uint32_t *p = wp + ((size_t)q * kdt + k0 / 2) * G3_BF16W_ROWS;
                    for (int r = r0; r < r1; r += G3_BF16W_RT)
                        g3_bf16w_tile_avx512bf16(y + (size_t)r * N + n0, N, p, kd, xb + (size_t)r * Kp + k0, Kp, G3_MIN(G3_BF16W_RT, r1 - r),
                                                 nr, k0 > 0);
                }
            }
        }
    }
    return 0;
}

int g3_cpu_linear_bf16_gemm(float *y, const float *x, const G3Weight *w, int R) {
    if (R < G3_BF16_GEMM_MIN_ROWS || w->type != G3_BF16 || g3_kernels_level() < G3_ISA_AVX512BF16) return 1;
    const int N = (int)w->rows, K = (int)w->cols, Kp = (K + 1) & ~1, np = (N + G3_BF16W_ROWS - 1) / G3_BF16W_ROWS;
    const int64_t ldw = w->row_bytes / 2;
    if ((size_t)R * Kp > xb_cap) {
        g3_free_aligned(xb_buf);
        xb_cap = (size_t)R * Kp;
        xb_buf = g3_malloc_aligned(xb_cap * sizeof *xb_buf);
        if (!xb_buf) return xb_cap = 0, -1;
    }
    uint16_t *xb = xb_buf;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < R; r++) g3_bf16w_round_rows_avx512bf16(xb + (size_t)r * Kp, Kp, x + (size_t)r * K, 1, K);
    if (R >= G3_BF16_GEMM_BLOCK_ROWS) return gemm_rows(y, xb, Kp, w, R);
    int fail = 0;
#pragma omp parallel
    {
        if (!pan_buf) pan_buf = g3_malloc_aligned((size_t)G3_BF16W_KC / 2 * G3_BF16W_ROWS * sizeof *pan_buf);
        uint32_t *p = pan_buf;
        if (!p) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int q = 0; q < np; q++) {
            if (!p) continue;
            const int n0 = q * G3_BF16W_ROWS, nr = G3_MIN(G3_BF16W_ROWS, N - n0);
            for (int k0 = 0; k0 < K; k0 += G3_BF16W_KC) {
                const int kc = G3_MIN(G3_BF16W_KC, K - k0), kd = (kc + 1) / 2;
                g3_bf16w_pack(p, (const uint16_t *)w->data + (int64_t)n0 * ldw, ldw, nr, k0, kc);
                for (int r0 = 0; r0 < R; r0 += G3_BF16W_RT)
                    g3_bf16w_tile_avx512bf16(y + (size_t)r0 * N + n0, N, p, kd, xb + (size_t)r0 * Kp + k0, Kp,
                                             G3_MIN(G3_BF16W_RT, R - r0), nr, k0 > 0);
            }
        }
    }
    return fail ? g3_errorf("linear: out of memory for the bf16 panels") : 0;
}
