// quant_q5x16_scalar.c: quant_q5x16.h's repack, reference product and GEMM panels (plain C).
#include "quant_q5x16.h"

#include <string.h>

#include "../../tensor/quant.h"

static uint64_t load64(const uint8_t *p) {  // little-endian, whatever the host
    return (uint64_t)g3_q5_qh(p) | (uint64_t)g3_q5_qh(p + 4) << 32;
}

static void store64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

void g3_q5x16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb) {
    const int64_t ng = (N + 2 * G3_Q5X16_ROWS - 1) / (2 * G3_Q5X16_ROWS) * 2;  // whole pairs
    memset(out, 0, (size_t)g3_q5x16_bytes(N, nb));  // padding rows: zero bytes, zero bits, zero scale
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *grp = (uint8_t *)g3_q5x16_group(out, g, nb);
        for (int r = 0; r < G3_Q5X16_ROWS; r++) {
            const int64_t n = g * G3_Q5X16_ROWS + r;
            if (n >= N) break;
            const G3BlockQ5_0 *blk = (const G3BlockQ5_0 *)((const uint8_t *)w + n * row_bytes);
            for (int b = 0; b < nb; b++) {
                uint8_t *d = grp + (size_t)b * 2 * G3_Q5X16_BLOCK_BYTES;
                for (int h = 0; h < 4; h++) memcpy(d + 64 * h + 4 * r, blk[b].qs + 4 * h, 4);
                const uint32_t qh = g3_q5_qh(blk[b].qh);
                for (int j = 0; j < 8; j++) {  // mask j's bits 4r..4r+3: qh's bits 4j..4j+3
                    uint8_t *mp = d + 256 + 8 * j;
                    store64(mp, load64(mp) | (uint64_t)((qh >> (4 * j)) & 15) << (4 * r));
                }
                memcpy(d + G3_Q5X16_QUANT_BYTES + 2 * r, &blk[b].d, 2);
            }
        }
    }
}

// Row r's 32 values (0..31, before the offset of 16) of the block at q (320 bytes), in element order.
static void row_values(uint8_t u[32], const uint8_t *q, int r) {
    for (int h = 0; h < 4; h++)
        for (int i = 0; i < 4; i++) {
            const uint8_t v = q[64 * h + 4 * r + i];
            u[4 * h + i] = v & 0x0f, u[16 + 4 * h + i] = v >> 4;
        }
    for (int j = 0; j < 8; j++) {
        const uint64_t m = load64(q + 256 + 8 * j);
        for (int i = 0; i < 4; i++) u[4 * j + i] |= (uint8_t)(((m >> (4 * r + i)) & 1) << 4);
    }
}

void g3_q5x16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    for (int r = 0; r < nrows; r++) {
        float acc = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = group + (size_t)b * 2 * G3_Q5X16_BLOCK_BYTES;
            uint8_t u[32];
            row_values(u, blk, r);
            int32_t s = 0;
            for (int j = 0; j < 32; j++) s += (int32_t)u[j] * a[b].qs[j];
            s -= 16 * a[b].sum;
            uint16_t d;
            memcpy(&d, blk + G3_Q5X16_QUANT_BYTES + 2 * r, 2);
            acc += (float)s * (g3_f16_to_f32(d) * a[b].d);
        }
        y[r] = acc;
    }
}

G3Q5x16Gemv g3_q5x16_gemv(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q5x16_gemv_avx512vnni : g3_q5x16_gemv_ref;
}

void g3_q5x16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    g3_q5x16_gemv_ref(y, group, nb, a, G3_Q5X16_ROWS);
    g3_q5x16_gemv_ref(y + G3_Q5X16_ROWS, group + G3_Q5X16_BLOCK_BYTES, nb, a, G3_Q5X16_ROWS);  // the pair's second
}

G3Q5x16Gemv2 g3_q5x16_gemv2(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q5x16_gemv2_avx512vnni : g3_q5x16_gemv2_ref;
}

G3Q5x16Panel g3_q5x16_to_panel_fn(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q5x16_to_panel_avx512vnni : g3_q5x16_to_panel;
}

void g3_q5x16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb) {
    for (int b = 0; b < nb; b++) {
        const uint8_t *q = group + (size_t)b * 2 * G3_Q5X16_BLOCK_BYTES, *sc = q + G3_Q5X16_QUANT_BYTES;
        // the panel's quad j is the group's register j (low nibbles) or j - 4 (high), byte for
        // byte, plus 16 where mask j has the byte's bit
        uint8_t *lo = &p[b].q[0][0][0], *hi = &p[b].q[4][0][0];
        for (int t = 0; t < 256; t++) lo[t] = q[t] & 0x0f, hi[t] = q[t] >> 4;
        for (int j = 0; j < 8; j++) {
            const uint64_t m = load64(q + 256 + 8 * j);
            uint8_t *u = &p[b].q[j][0][0];
            for (int t = 0; t < 64; t++) u[t] |= (uint8_t)(((m >> t) & 1) << 4);
        }
        for (int r = 0; r < G3_Q5X16_ROWS; r++) {
            uint16_t d;
            memcpy(&d, sc + 2 * r, 2);
            p[b].scale[0][r] = p[b].scale[1][r] = g3_f16_to_f32(d);
            p[b].bias[r] = 0.0f;
        }
    }
}
