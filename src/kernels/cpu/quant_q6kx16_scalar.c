// quant_q6kx16_scalar.c: quant_q6kx16.h's repack, reference products and GEMM panels (plain C).
#include "quant_q6kx16.h"

#include <string.h>

#include "../../tensor/quant.h"

void g3_q6kx16_pack(void *out, const void *w, int64_t row_bytes, int64_t N, int nb) {
    const int64_t ng = (N + G3_Q6KX16_ROWS - 1) / G3_Q6KX16_ROWS;
    const int ns = nb / 8;
    static const G3BlockQ6_K zero;  // padding: zero bits, scales and d
    for (int64_t g = 0; g < ng; g++) {
        uint8_t *grp = (uint8_t *)g3_q6kx16_group(out, g, nb);
        for (int r = 0; r < G3_Q6KX16_ROWS; r++) {  // row by row, each ggml row read in order
            const int64_t n = g * G3_Q6KX16_ROWS + r;
            const G3BlockQ6_K *row = n < N ? (const G3BlockQ6_K *)((const uint8_t *)w + n * row_bytes) : NULL;
            for (int i = 0; i < ns; i++) {
                const G3BlockQ6_K *b = row ? row + i : &zero;
                uint8_t *sb = grp + (size_t)i * G3_Q6KX16_SUPER_BYTES;
                for (int j = 0; j < 8; j++) {
                    for (int t = 0; t < 4; t++) memcpy(sb + (size_t)(t * 8 + j) * 64 + 4 * r, b->ql + 32 * t + 4 * j, 4);
                    for (int h = 0; h < 2; h++) memcpy(sb + G3_Q6KX16_HIGH + (size_t)(h * 8 + j) * 64 + 4 * r, b->qh + 32 * h + 4 * j, 4);
                }
                for (int s = 0; s < 16; s++) sb[G3_Q6KX16_SCALES + 16 * s + r] = (uint8_t)b->scales[s];
                memcpy(sb + G3_Q6KX16_D + 2 * r, &b->d, 2);
            }
        }
    }
}

// Row r's 6-bit q of element l of block k = 4h + g of super-block sb.
static int q6(const uint8_t *sb, int r, int k, int l) {
    const int h = k / 4, g = k % 4, j = l / 4, i = l % 4;
    const uint8_t lo = sb[(size_t)((2 * h + (g & 1)) * 8 + j) * 64 + 4 * r + i];
    const uint8_t hi = sb[G3_Q6KX16_HIGH + (size_t)(h * 8 + j) * 64 + 4 * r + i];
    return (g < 2 ? lo & 0x0f : lo >> 4) | ((hi >> (2 * g)) & 3) << 4;
}

static float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return g3_f16_to_f32(h);
}

// Per row the steps of g3_qdot_q6_k_ref: one sum over the row's blocks in order.
void g3_q6kx16_gemv_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a, int nrows) {
    for (int r = 0; r < nrows; r++) {
        float acc = 0.0f;
        for (int i = 0; i < nb / 8; i++) {
            const uint8_t *sb = group + (size_t)i * G3_Q6KX16_SUPER_BYTES;
            const float d = f16_at(sb + G3_Q6KX16_D + 2 * r);
            for (int k = 0; k < 8; k++) {
                const G3BlockQ8A *ak = a + 8 * i + k;
                int32_t s[2] = {0, 0};
                for (int l = 0; l < 32; l++) s[l / 16] += (q6(sb, r, k, l) - 32) * ak->qs[l];
                const int8_t sc0 = (int8_t)sb[G3_Q6KX16_SCALES + 16 * (2 * k) + r], sc1 = (int8_t)sb[G3_Q6KX16_SCALES + 16 * (2 * k + 1) + r];
                acc += d * ak->d * (float)(sc0 * s[0] + sc1 * s[1]);
            }
        }
        y[r] = acc;
    }
}

G3Q4x16Gemv g3_q6kx16_gemv(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q6kx16_gemv_avx512vnni : g3_q6kx16_gemv_ref;
}

void g3_q6kx16_gemv2_ref(float *y, const uint8_t *group, int nb, const G3BlockQ8A *a) {
    g3_q6kx16_gemv_ref(y, group, nb, a, G3_Q6KX16_ROWS);
    g3_q6kx16_gemv_ref(y + G3_Q6KX16_ROWS, group + (size_t)(nb / 8) * G3_Q6KX16_SUPER_BYTES, nb, a, G3_Q6KX16_ROWS);
}

G3Q4x16Gemv2 g3_q6kx16_gemv2(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q6kx16_gemv2_avx512vnni : g3_q6kx16_gemv2_ref;
}

G3Q6Kx16Panel g3_q6kx16_to_panel_fn(int level) {
    return level >= G3_QDOT_AVX512VNNI && g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI ? g3_q6kx16_to_panel_avx512vnni : g3_q6kx16_to_panel;
}

// As quant_gemm_scalar.c's pack_row for Q6_K: block 8i + k holds its 6-bit q (unsigned; the
// kind's offset takes the 32 off), the scales d sc_2k and d sc_2k+1, no bias.
void g3_q6kx16_to_panel(G3QPanelBlock *p, const uint8_t *group, int nb) {
    for (int i = 0; i < nb / 8; i++) {
        const uint8_t *sb = group + (size_t)i * G3_Q6KX16_SUPER_BYTES;
        for (int k = 0; k < 8; k++) {
            G3QPanelBlock *b = p + 8 * i + k;
            for (int r = 0; r < G3_Q6KX16_ROWS; r++) {
                for (int l = 0; l < 32; l++) b->q[l / 4][r][l % 4] = (uint8_t)q6(sb, r, k, l);
                const float d = f16_at(sb + G3_Q6KX16_D + 2 * r);
                b->scale[0][r] = d * (float)(int8_t)sb[G3_Q6KX16_SCALES + 16 * (2 * k) + r];
                b->scale[1][r] = d * (float)(int8_t)sb[G3_Q6KX16_SCALES + 16 * (2 * k + 1) + r];
                b->bias[r] = 0.0f;
            }
        }
    }
}
