// linear_bf16.c: the CPU's linear layer over bf16 weights with many activation rows (prefill)
// in the fast mode: the activations rounded to bf16 once per call, each panel of 32 weight rows
// packed once (kernels/cpu/bf16w_gemm.h) and swept by every tile of 8 activation rows; threads
// take panels. The arithmetic is g3_matmul's fast path (bf16 activations, exact products, f32
// sums); only the order of the sums differs.
#include <stdlib.h>

#include "../../base/base.h"
#include "../../kernels/cpu/bf16w_gemm.h"
#include "../../kernels/kernels.h"
#include "linear_quant.h"

static _Thread_local uint16_t *xb_buf;
static _Thread_local size_t xb_cap;
static _Thread_local uint32_t *pan_buf;

enum { PANELS = 4 };  // consecutive panels a thread takes at a time: the next one can be prefetched

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
    int fail = 0;
#pragma omp parallel
    {
        if (!pan_buf) pan_buf = g3_malloc_aligned((size_t)G3_BF16W_KC / 2 * G3_BF16W_ROWS * sizeof *pan_buf);
        uint32_t *p = pan_buf;
        if (!p) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, PANELS)
        for (int q = 0; q < np; q++) {
            if (!p) continue;
            const int n0 = q * G3_BF16W_ROWS, nr = G3_MIN(G3_BF16W_ROWS, N - n0);
            for (int k0 = 0; k0 < K; k0 += G3_BF16W_KC) {
                const int kc = G3_MIN(G3_BF16W_KC, K - k0), kd = (kc + 1) / 2;
                g3_bf16w_pack_avx512bf16(p, (const uint16_t *)w->data + (int64_t)n0 * ldw, ldw, nr, k0, kc);
                // the next chunk's weights asked for while the tiles run on this one (the
                // next depth of this panel, else the next panel of this thread's run of
                // PANELS): read when its pack comes, 32 rows from memory each wait out the
                // latency (the packer spent 87% of its time on its loads)
                const int nk0 = k0 + G3_BF16W_KC < K ? k0 + G3_BF16W_KC : 0, nn0 = nk0 ? n0 : n0 + G3_BF16W_ROWS;
                if (nn0 < N && (nk0 || (q + 1) % PANELS)) {
                    const int nnr = G3_MIN(G3_BF16W_ROWS, N - nn0), nkc = G3_MIN(G3_BF16W_KC, K - nk0);
                    for (int j = 0; j < nnr; j++) {
                        const char *row = (const char *)((const uint16_t *)w->data + (int64_t)(nn0 + j) * ldw + nk0);
                        for (int o = 0; o < 2 * nkc; o += 64) __builtin_prefetch(row + o, 0, 2);
                    }
                }
                for (int r0 = 0; r0 < R; r0 += G3_BF16W_RT)
                    g3_bf16w_tile_avx512bf16(y + (size_t)r0 * N + n0, N, p, kd, xb + (size_t)r0 * Kp + k0, Kp,
                                             G3_MIN(G3_BF16W_RT, R - r0), nr, k0 > 0);
            }
        }
    }
    return fail ? g3_errorf("linear: out of memory for the bf16 panels") : 0;
}
