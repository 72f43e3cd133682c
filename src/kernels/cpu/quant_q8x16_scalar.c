// quant_q8x16_scalar.c: quant_q8x16.h's repack, reference product and GEMM panels (plain C).
#include "quant_q8x16.h"

#include <string.h>

#include "../../tensor/quant.h"

void g3_q8x16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb) {
    const int64_t ng = (N + 2 * G3_Q8X16_ROWS - 1) / (2 * G3_Q8X16_ROWS) * 2;  // whole pairs
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *grp = (uint8_t *)g3_q8x16_group(out, g, nb);
        // row by row: each ggml row read in order, its quads written into the group (the pair
        // is 40 KB for 1152-wide rows: in the L2 while its 16 rows pass)
        for (int r = 0; r < G3_Q8X16_ROWS; r++) {
            const int64_t n = g * G3_Q8X16_ROWS + r;
            const G3BlockQ8_0 *blk = n < N ? (const G3BlockQ8_0 *)((const uint8_t *)w + n * row_bytes) : NULL;
            for (int b = 0; b < nb; b++) {
                uint8_t *gb = grp + (size_t)b * 2 * G3_Q8X16_BLOCK_BYTES, *d = gb + 4 * r, *sc = gb + G3_Q8X16_QUANT_BYTES;
                if (!blk) {  // padding: zero bytes, zero scale (the GEMM panel's padding)
                    for (int j = 0; j < 8; j++) memset(d + 64 * j, 0, 4);
                    memset(sc + 2 * r, 0, 2);
                    continue;
                }
                for (int j = 0; j < 8; j++) {  // a quad at a time: + 128 is the sign bit flipped
                    uint32_t v;
                    memcpy(&v, blk[b].qs + 4 * j, 4);
                    v ^= 0x80808080u;
                    memcpy(d + 64 * j, &v, 4);
                }
                memcpy(sc + 2 * r, &blk[b].d, 2);
            }
        }
    }
}

void g3_q8x16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    for (int r = 0; r < nrows; r++) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = group + (size_t)b * 2 * G3_Q8X16_BLOCK_BYTES, *q = blk + 4 * r, *sc = blk + G3_Q8X16_QUANT_BYTES;
            int32_t s = -128 * a[b].sum;  // the bytes are q + 128 (quant_q8x16.h)
            for (int j = 0; j < 8; j++)
                for (int i = 0; i < 4; i++) s += (int32_t)q[64 * j + i] * a[b].qs[4 * j + i];
            uint16_t d;
            memcpy(&d, sc + 2 * r, 2);
            acc += (float)s * (g3_f16_to_f32(d) * a[b].d);
        }
        y[r] = acc;
    }
}

G3Q8x16Gemv g3_q8x16_gemv(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q8x16_gemv_avx512vnni : g3_q8x16_gemv_ref;
}

void g3_q8x16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    g3_q8x16_gemv_ref(y, group, nb, a, G3_Q8X16_ROWS);
    g3_q8x16_gemv_ref(y + G3_Q8X16_ROWS, group + G3_Q8X16_BLOCK_BYTES, nb, a, G3_Q8X16_ROWS);  // the pair's second
}

G3Q8x16Gemv2 g3_q8x16_gemv2(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q8x16_gemv2_avx512vnni : g3_q8x16_gemv2_ref;
}

void g3_q8x16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb) {
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = group + (size_t)b * 2 * G3_Q8X16_BLOCK_BYTES, *sc = blk + G3_Q8X16_QUANT_BYTES;
        memcpy(p[b].q, blk, G3_Q8X16_QUANT_BYTES);  // the same [quad][row][4] bytes
        for (int r = 0; r < G3_Q8X16_ROWS; r++) {
            uint16_t d;
            memcpy(&d, sc + 2 * r, 2);
            p[b].scale[0][r] = p[b].scale[1][r] = g3_f16_to_f32(d);
            p[b].bias[r] = 0.0f;
        }
    }
}
