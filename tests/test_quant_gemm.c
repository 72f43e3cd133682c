// test_quant_gemm.c: the int8 GEMM of quantized weights (kernels/cpu/quant_gemm.h). For every
// ggml type, at odd sizes (weight rows not a multiple of the 16-row panel, activation rows not a
// multiple of the tiles, block counts 1..37): the packed reference panel kernel against the
// dot-product references of quant_dot_scalar.c (one dot per row and column, on the unpacked
// weights), and every ISA level's panel kernel against the packed reference. Weights are random
// bytes with sane f16 scales (every quant and scale pattern) or rows quantized from values;
// one activation block holds the extremes -127 / 127.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_gemm.h"
#include "tensor/quant.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

static const struct {
    G3DType t;
    int f16[2];  // byte offsets of the block's f16 scales (-1: none)
} types[] = {
    {G3_Q8_0, {0, -1}}, {G3_Q4_0, {0, -1}}, {G3_Q4_1, {0, 2}}, {G3_Q5_0, {0, -1}},
    {G3_Q5_1, {0, 2}},  {G3_Q4_K, {0, 2}},  {G3_Q5_K, {0, 2}}, {G3_Q6_K, {208, -1}},
};

static void one(int ti, int N, int R, int nb, int mode, int top) {
    const G3TypeTraits *tt = g3_type(types[ti].t);
    const int K = nb * 32, nblk = K / tt->block;
    const int64_t rb = (int64_t)nblk * tt->block_bytes;
    uint8_t *w = malloc((size_t)(N * rb));
    float *x = malloc((size_t)R * K * sizeof *x), *row = malloc((size_t)K * sizeof *row);
    G3BlockQ8G *a = malloc((size_t)R * nb * sizeof *a);
    G3BlockQ8A *a8 = malloc((size_t)R * nb * sizeof *a8);
    const int np = (N + G3_QG_ROWS - 1) / G3_QG_ROWS;
    G3QPanelBlock *p = malloc((size_t)np * nb * sizeof *p);
    float *yref = malloc((size_t)R * N * sizeof *yref), *y = malloc((size_t)R * N * sizeof *y);
    double *mag = calloc((size_t)R * N, sizeof *mag);
    for (int n = 0; n < N; n++) {
        uint8_t *wr = w + n * rb;
        if (mode == 0) {
            for (int64_t i = 0; i < rb; i++) wr[i] = (uint8_t)next_u32();
            for (int i = 0; i < nblk; i++)
                for (int f = 0; f < 2; f++)
                    if (types[ti].f16[f] >= 0) {
                        uint16_t h = g3_f32_to_f16((f ? 0.02f : 0.01f) * uniform());
                        memcpy(wr + (size_t)i * tt->block_bytes + types[ti].f16[f], &h, 2);
                    }
        } else {
            for (int k = 0; k < K; k++) row[k] = uniform() * (1.0f + (float)(k % 5));
            tt->from_f32(wr, row, K);
        }
    }
    for (int64_t i = 0; i < (int64_t)R * K; i++) x[i] = uniform() * (1.0f + (float)(i % 7));
    for (int r = 0; r < R; r++) g3_quantize_q8g(a + (int64_t)r * nb, x + (int64_t)r * K, nb);
    if (R * nb > 1)
        for (int j = 0; j < 32; j++) a[1].qs[j] = j & 1 ? 127 : -127;
    if (R * nb > 1) a[1].s[0] = a[1].s[1] = 0;
    for (int i = 0; i < R * nb; i++) {
        a8[i].d = a[i].d, a8[i].sum = a[i].s[0] + a[i].s[1];
        memcpy(a8[i].qs, a[i].qs, 32);
    }
    // the bound for float reordering: sum of |w| |a| per output, from the dequantized weights
    // (4 |w|max per element: the offsets and mins are at most a few |w|)
    for (int n = 0; n < N; n++) {
        tt->to_f32(row, w + n * rb, K);
        double wmax = 0;
        for (int k = 0; k < K; k++) wmax = fmax(wmax, fabs(row[k]));
        for (int r = 0; r < R; r++)
            for (int k = 0; k < K; k++) mag[r * N + n] += 4.0 * wmax * fabs((double)a[r * nb + k / 32].qs[k % 32] * a[r * nb + k / 32].d);
    }
    G3QGemmKind kind;
    CHECK(g3_qgemm_kind(types[ti].t, &kind) == 0, "%s has a GEMM kind", tt->name);
    for (int q = 0; q < np; q++) {
        const int nr = N - q * G3_QG_ROWS < G3_QG_ROWS ? N - q * G3_QG_ROWS : G3_QG_ROWS;
        g3_qgemm_pack(p + (int64_t)q * nb, types[ti].t, w + (int64_t)q * G3_QG_ROWS * rb, rb, nr, nb);
        g3_qgemm_panel_ref(yref + q * G3_QG_ROWS, N, p + (int64_t)q * nb, nb, a, R, nr, &kind);
    }
    const G3QDot dot = g3_qdot_kernel(g3_qdot_table(G3_QDOT_SCALAR), types[ti].t);
    double worst = 0;
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double e = fabs((double)yref[r * N + n] - dot(w + n * rb, a8 + (int64_t)r * nb, nb)) / (mag[r * N + n] + 1e-30);
            worst = fmax(worst, e);
        }
    CHECK(worst <= 1e-5, "%s packed reference vs dot references N=%d R=%d nb=%d mode %d: relative error %.3g", tt->name, N, R, nb, mode, worst);
    for (int lv = G3_QDOT_SCALAR; lv <= top; lv++) {
        G3QGemmPanel k = g3_qgemm_kernel(lv, types[ti].t);
        if (!k) continue;
        for (int i = 0; i < R * N; i++) y[i] = NAN;
        for (int q = 0; q < np; q++) {
            const int nr = N - q * G3_QG_ROWS < G3_QG_ROWS ? N - q * G3_QG_ROWS : G3_QG_ROWS;
            k(y + q * G3_QG_ROWS, N, p + (int64_t)q * nb, nb, a, R, nr, &kind);
        }
        worst = 0;
        for (int i = 0; i < R * N; i++) worst = fmax(worst, y[i] == y[i] ? fabs((double)y[i] - yref[i]) / (mag[i] + 1e-30) : 1.0);
        CHECK(worst <= 1e-5, "%s %s panel kernel N=%d R=%d nb=%d mode %d: relative error %.3g", g3_qdot_level_name(lv), tt->name, N, R, nb,
              mode, worst);
    }
    free(w), free(x), free(row), free(a), free(a8), free(p), free(yref), free(y), free(mag);
}

int main(void) {
    const int top = g3_qdot_cpu_level();
    fprintf(stderr, "CPU level: %s\n", g3_qdot_level_name(top));
    const int Ns[] = {1, 5, 16, 17, 37}, Rs[] = {1, 3, 8, 9, 13}, nbs[] = {1, 3, 9, 37}, kqs[] = {8, 16};
    for (int ti = 0; ti < (int)(sizeof types / sizeof *types); ti++) {
        const int kq = g3_type(types[ti].t)->block == 256;
        for (int ni = 0; ni < 5; ni++)
            for (int ri = 0; ri < 5; ri++)
                for (int bi = 0; bi < (kq ? 2 : 4); bi++)
                    for (int mode = 0; mode < 2; mode++) one(ti, Ns[ni], Rs[ri], kq ? kqs[bi] : nbs[bi], mode, top);
    }
    // the activation quantizers: every level's gives the reference's bytes on finite input
    {
        enum { NB = 400 };  // many blocks: the largest element's x / d lands on both sides of 127
        static G3BlockQ8G r[NB], q[NB];
        static float x[NB * 32];
        for (int i = 0; i < NB * 32; i++) x[i] = uniform() * (float)(1 + i % 9) * (i < 32 ? 1e-30f : 1.0f);
        for (int j = 0; j < 32; j++) x[2 * 32 + j] = 0.0f, x[3 * 32 + j] = j == 5 ? -3.0f : 0.5f;  // a zero block; a negative max
        x[4 * 32 + 7] = 2.5f * (float)(1.0 / 127.0), x[4 * 32 + 8] = 1.0f;  // a tie (x / d = 2.5) rounds to even
        g3_quantize_q8g(r, x, NB);
        for (int lv = G3_QDOT_SCALAR; lv <= top; lv++) {
            memset(q, 0x55, sizeof q);
            g3_qgemm_quantizer(lv)(q, x, NB);
            int same = 1;
            for (int i = 0; i < NB; i++) same &= q[i].d == r[i].d && q[i].s[0] == r[i].s[0] && q[i].s[1] == r[i].s[1] && !memcmp(q[i].qs, r[i].qs, 32);
            CHECK(same, "%s activation quantizer gives the reference's blocks", g3_qdot_level_name(lv));
        }
        x[5] = NAN, x[40] = INFINITY, x[41] = -INFINITY;
        for (int lv = G3_QDOT_SCALAR; lv <= top; lv++) g3_qgemm_quantizer(lv)(q, x, NB);
        CHECK(1, "non-finite activations quantized without undefined behaviour");
    }
    G3QGemmKind k;
    CHECK(g3_qgemm_kind(G3_F32, &k) == -1 && g3_qgemm_kernel(G3_QDOT_SCALAR, G3_BF16) == NULL, "no GEMM for F32 / BF16");
    CHECK(g3_qgemm_kernel(G3_QDOT_SCALAR, G3_Q4_0) == g3_qgemm_panel_ref, "scalar level: the reference");
    return check_done();
}
