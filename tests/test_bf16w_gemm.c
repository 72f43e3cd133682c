// test_bf16w_gemm.c: prefill's product over bf16 weights (kernels/cpu/bf16w_gemm.h,
// backend/cpu/linear_bf16.c). The packer against the weights it packs (odd depths padded with
// zero, rows past the panel zero); the AVX512-BF16 tile (where the CPU has it) against the
// reference tile at every tile height and odd widths and depths; the activation rounding
// against g3_f32_to_bf16; and the backend's linear in fast mode (which takes this path from
// 32 rows) against g3_matmul's row kernel (the same products, another order of the sums) at
// odd shapes, the down projection's depth and a K-chunked depth included.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "backend/cpu/linear_quant.h"
#include "base/base.h"
#include "check.h"
#include "kernels/cpu/bf16w_gemm.h"
#include "kernels/kernels.h"
#include "tensor/dtype.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

static uint16_t *random_bf16(size_t n) {
    uint16_t *w = malloc(n * sizeof *w);
    for (size_t i = 0; i < n; i++) w[i] = g3_f32_to_bf16(uniform() * 0.1f);
    return w;
}

static void test_pack_and_tiles(int fast) {
    const int kcs[] = {1, 2, 7, 32, 33, 64, 65, 301}, ncs[] = {1, 5, 16, 17, 32};
    for (size_t ki = 0; ki < sizeof kcs / sizeof *kcs; ki++)
        for (size_t ni = 0; ni < sizeof ncs / sizeof *ncs; ni++) {
            const int kc = kcs[ki], nr = ncs[ni], kd = (kc + 1) / 2, ld = kc + 3, ldx = kd * 2 + 4;
            uint16_t *w = random_bf16((size_t)nr * ld), *x = random_bf16((size_t)8 * ldx);
            for (int r = 0; r < 8; r++) x[(size_t)r * ldx + kc] = kc & 1 ? 0 : x[(size_t)r * ldx + kc];  // a padded pair's x half: any value
            uint32_t *p = malloc((size_t)kd * G3_BF16W_ROWS * sizeof *p);
            g3_bf16w_pack(p, w + 1, ld, nr, 0, kc);  // from element 1: k0 offsets are the caller's pointer
            int bad = 0;
            for (int a = 0; a < kd; a++)
                for (int j = 0; j < G3_BF16W_ROWS; j++) {
                    uint32_t lo = j < nr ? w[(size_t)j * ld + 1 + 2 * a] : 0, hi = j < nr && 2 * a + 1 < kc ? w[(size_t)j * ld + 2 + 2 * a] : 0;
                    bad += p[(size_t)a * G3_BF16W_ROWS + j] != (lo | hi << 16);
                }
            CHECK(bad == 0, "pack kc %d rows %d: %d words wrong", kc, nr, bad);
            if (fast) {  // the AVX-512 packer: the same words
                uint32_t *pv = malloc((size_t)kd * G3_BF16W_ROWS * sizeof *pv);
                g3_bf16w_pack_avx512bf16(pv, w + 1, ld, nr, 0, kc);
                CHECK(memcmp(p, pv, (size_t)kd * G3_BF16W_ROWS * sizeof *p) == 0, "AVX-512 pack kc %d rows %d differs", kc, nr);
                free(pv);
            }
            if (fast)
                for (int R = 1; R <= 8; R++)
                    for (int add = 0; add < 2; add++) {
                        float y0[8 * 40], y1[8 * 40];
                        for (int i = 0; i < 8 * 40; i++) y0[i] = y1[i] = uniform();
                        g3_bf16w_tile_ref(y0, 40, p, kd, x, ldx, R, nr, add);
                        g3_bf16w_tile_avx512bf16(y1, 40, p, kd, x, ldx, R, nr, add);
                        CHECK(rel_err(y1, y0, 8 * 40) < 1e-5, "tile R %d kc %d cols %d add %d: rel err %.3g", R, kc, nr, add,
                              rel_err(y1, y0, 8 * 40));
                    }
            free(w), free(x), free(p);
        }
    // rounding of the activations
    float xs[3 * 37];
    for (int i = 0; i < 3 * 37; i++) xs[i] = uniform() * 100.0f;
    uint16_t a[3 * 40], b[3 * 40];
    g3_bf16w_round_rows(a, 40, xs, 3, 37);
    int bad = 0;
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 40; k++) bad += a[r * 40 + k] != (k < 37 ? g3_f32_to_bf16(xs[r * 37 + k]) : 0);
    CHECK(bad == 0, "round_rows: %d values", bad);
    if (fast) {
        g3_bf16w_round_rows_avx512bf16(b, 40, xs, 3, 37);
        CHECK(memcmp(a, b, sizeof a) == 0, "round_rows_avx512bf16 differs from the reference");
    }
}

static void test_linear(void) {
    G3Backend *be = g3_backend_cpu();
    const struct { int N, K, R; } shapes[] = {{37, 96, 33}, {64, 1152, 40}, {33, 2501, 32}, {100, 6912, 35}, {16, 64, 31}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int N = shapes[si].N, K = shapes[si].K, R = shapes[si].R;
        uint16_t *w = random_bf16((size_t)N * K);
        float *x = malloc((size_t)R * K * 4), *y0 = malloc((size_t)R * N * 4), *y1 = malloc((size_t)R * N * 4);
        for (long i = 0; i < (long)R * K; i++) x[i] = uniform();
        G3Weight wt = {G3_BF16, N, K, K * 2, w, G3_MEM_HOST, NULL};
        g3_matmul(y0, x, w, G3_BF16, R, K, N, 1);  // the row kernel, fast mode
        CHECK(be->linear(be, y1, x, &wt, R, G3_MM_FAST) == 0, "%s", g3_error());
        const double e = rel_err(y1, y0, (long)R * N);
        CHECK(e < 2e-6 * sqrt((double)K), "linear bf16 [%d x %d] x %d rows: rel err %.3g against g3_matmul's fast path", N, K, R, e);
        const int took = g3_cpu_linear_bf16_gemm(y1, x, &wt, R);
        if (g3_kernels_level() >= G3_ISA_AVX512BF16 && R >= G3_BF16_GEMM_MIN_ROWS) CHECK(took == 0, "the panels were not used");
        else CHECK(took == 1, "the panels ran without AVX512-BF16 or with few rows");
        free(w), free(x), free(y0), free(y1);
    }
}

int main(void) {
    test_pack_and_tiles(g3_kernels_level() >= G3_ISA_AVX512BF16);
    test_linear();
    return check_done();
}
