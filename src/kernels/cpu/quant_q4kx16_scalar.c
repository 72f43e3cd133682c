// quant_q4kx16_scalar.c: quant_q4kx16.h's repack, reference products and GEMM panels (plain C).
#include "quant_q4kx16.h"

#include <string.h>

#include "../../tensor/quant.h"

void g3_q4kx16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb) {
    const int64_t ng = (N + G3_Q4KX16_ROWS - 1) / G3_Q4KX16_ROWS;
    const int ns = nb / 8;
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *grp = (uint8_t *)g3_q4kx16_group(out, g, nb);
        // row by row: each ggml row read in order, its pieces written into the group's
        // super-blocks (16 x 2368 / 8 bytes a block of 32: in the L2 while its 16 rows pass)
        for (int r = 0; r < G3_Q4KX16_ROWS; r++) {
            const int64_t n = g * G3_Q4KX16_ROWS + r;
            const G3BlockQ4_K *blk = n < N ? (const G3BlockQ4_K *)((const uint8_t *)w + n * row_bytes) : NULL;
            for (int i = 0; i < ns; i++) {
                uint8_t *sb = grp + (size_t)i * G3_Q4KX16_SUPER_BYTES, sc[8], m[8];
                uint16_t d = 0, dmin = 0x8000;  // padding: zero nibbles, scales, mins; d +0, dmin -0
                if (blk) {
                    g3_k_scales(blk[i].scales, sc, m);
                    d = blk[i].d, dmin = blk[i].dmin;
                } else {
                    memset(sc, 0, 8), memset(m, 0, 8);
                }
                for (int c = 0; c < 4; c++)
                    for (int h = 0; h < 8; h++) {
                        uint8_t *q = sb + (size_t)(c * 8 + h) * 64 + 4 * r;
                        if (blk) memcpy(q, blk[i].qs + 32 * c + 4 * h, 4);
                        else memset(q, 0, 4);
                    }
                for (int j = 0; j < 8; j++) sb[G3_Q4KX16_SCALES + 16 * j + r] = sc[j], sb[G3_Q4KX16_MINS + 16 * j + r] = m[j];
                memcpy(sb + G3_Q4KX16_D + 2 * r, &d, 2);
                memcpy(sb + G3_Q4KX16_DMIN + 2 * r, &dmin, 2);
            }
        }
    }
}

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return g3_f16_to_f32(h);
}

// Row r's int32 sum of sub-block j of super-block sb against the activation block aj.
static int32_t sub_sum(const uint8_t *sb, int r, int j, const G3BlockQ8A *aj) {
    const int c = j / 2, sh = 4 * (j & 1);
    int32_t s = 0;
    for (int h = 0; h < 8; h++)
        for (int i = 0; i < 4; i++) s += (int32_t)((sb[(size_t)(c * 8 + h) * 64 + 4 * r + i] >> sh) & 15) * aj->qs[4 * h + i];
    return s;
}

// Per row the steps of g3_qdot_q4_k_ref (quant_dot_scalar.c's qdot_k): a super-block's eight
// sub-blocks added into their own sum, that sum into the row's.
void g3_q4kx16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    for (int r = 0; r < nrows; r++) {
        float acc = 0.0f;
        for (int i = 0; i < nb / 8; i++) {
            const uint8_t *sb = group + (size_t)i * G3_Q4KX16_SUPER_BYTES;
            const float d = f16_at(sb + G3_Q4KX16_D + 2 * r), dmin = f16_at(sb + G3_Q4KX16_DMIN + 2 * r);
            float sacc = 0.0f;
            for (int j = 0; j < 8; j++) {
                const G3BlockQ8A *aj = a + 8 * i + j;
                const int32_t s = sub_sum(sb, r, j, aj);
                const float sc = (float)sb[G3_Q4KX16_SCALES + 16 * j + r], m = (float)sb[G3_Q4KX16_MINS + 16 * j + r];
                sacc += aj->d * (d * sc * (float)s - dmin * m * (float)aj->sum);
            }
            acc += sacc;
        }
        y[r] = acc;
    }
}

G3Q4x16Gemv g3_q4kx16_gemv(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q4kx16_gemv_avx512vnni : g3_q4kx16_gemv_ref;
}

void g3_q4kx16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    g3_q4kx16_gemv_ref(y, group, nb, a, G3_Q4KX16_ROWS);
    g3_q4kx16_gemv_ref(y + G3_Q4KX16_ROWS, group + (size_t)(nb / 8) * G3_Q4KX16_SUPER_BYTES, nb, a, G3_Q4KX16_ROWS);
}

G3Q4x16Gemv2 g3_q4kx16_gemv2(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q4kx16_gemv2_avx512vnni : g3_q4kx16_gemv2_ref;
}

G3Q4Kx16Panel g3_q4kx16_to_panel_fn(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q4kx16_to_panel_avx512vnni : g3_q4kx16_to_panel;
}

// As quant_gemm_scalar.c's pack_row for Q4_K: block 8i + j holds sub-block j's nibbles, the
// scale d sc_j (both halves) and the bias -dmin m_j.
void g3_q4kx16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb) {
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q4KX16_SUPER_BYTES;
        for (int j = 0; j < 8; j++) {
            G3QPanelBlock *b = p + 8 * i + j;
            const uint8_t *q = sb + (size_t)(j / 2) * 512;  // [8 h][16 r][4]: the panel's [quad][row][byte]
            const int sh = 4 * (j & 1);
            uint8_t *u = &b->q[0][0][0];
            for (int k = 0; k < 512; k++) u[k] = (q[k] >> sh) & 15;
            for (int r = 0; r < G3_Q4KX16_ROWS; r++) {
                const float d = f16_at(sb + G3_Q4KX16_D + 2 * r), dmin = f16_at(sb + G3_Q4KX16_DMIN + 2 * r);
                b->scale[0][r] = b->scale[1][r] = d * (float)sb[G3_Q4KX16_SCALES + 16 * j + r];
                b->bias[r] = -dmin * (float)sb[G3_Q4KX16_MINS + 16 * j + r];
            }
        }
    }
}
