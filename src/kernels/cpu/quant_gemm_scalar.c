// quant_gemm_scalar.c: quant_gemm.h's packers (every ggml type we read, plain C: each weight's
// unsigned q and its block's scale / bias exactly as quant_dot_scalar.c's references read them),
// the activation quantizer, the reference panel kernel and the choice of kernel by level.
#include "quant_gemm.h"

#include <string.h>

#include "../../tensor/quant.h"
#include "quant_dot.h"

int g3_qgemm_kind(G3DType type, G3QGemmKind *kind) {
    G3QGemmKind k = {0, 0, 0};
    switch (type) {
    case G3_Q8_0: k.off = 128; break;
    case G3_Q4_0: k.off = 8; break;
    case G3_Q5_0: k.off = 16; break;
    case G3_Q6_K: k.off = 32, k.halves = 1; break;
    case G3_Q4_1:
    case G3_Q5_1:
    case G3_Q4_K:
    case G3_Q5_K: k.bias = 1; break;
    default: return -1;
    }
    *kind = k;
    return 0;
}

void g3_quantize_q8g(G3BlockQ8G *a, const float *x, int nb) {
    for (int i = 0; i < nb; i++, x += 32) {
        G3BlockQ8A t;
        g3_quantize_q8a(&t, x, 1);
        int s0 = 0;
        for (int j = 0; j < 16; j++) s0 += t.qs[j];
        a[i].d = t.d;
        a[i].s[0] = (int16_t)s0, a[i].s[1] = (int16_t)(t.sum - s0);  // |s| <= 16 x 127
        memcpy(a[i].qs, t.qs, 32);
    }
}

// A row's block as 32 unsigned bytes u into the panel (row n: one 4-byte group per quad), and
// its scales.
static inline void put(G3QPanelBlock *b, int n, const uint8_t u[32], float s0, float s1, float bias) {
    for (int j = 0; j < 8; j++) memcpy(b->q[j][n], u + 4 * j, 4);
    b->scale[0][n] = s0, b->scale[1][n] = s1, b->bias[n] = bias;
}

// Q4-style nibbles (element l low in byte l, l + 16 high), plus Q5's fifth bits when qh
static inline void nibbles(uint8_t u[32], const uint8_t *qs, const uint8_t *qhp) {
    for (int l = 0; l < 16; l++) u[l] = qs[l] & 15, u[l + 16] = qs[l] >> 4;
    if (qhp) {
        uint32_t qh = g3_q5_qh(qhp);
        for (int l = 0; l < 32; l++) u[l] |= (uint8_t)(((qh >> l) & 1) << 4);
    }
}

static void pack_row(G3QPanelBlock *p, G3DType type, const void *row, int n, int nb) {
    uint8_t u[32];
    switch (type) {
    case G3_Q8_0: {
        const G3BlockQ8_0 *b = row;
        for (int j = 0; j < nb; j++) {
            for (int l = 0; l < 32; l++) u[l] = (uint8_t)(b[j].qs[l] + 128);
            float d = g3_f16_to_f32(b[j].d);
            put(p + j, n, u, d, d, 0.0f);
        }
        break;
    }
    case G3_Q4_0: {
        const G3BlockQ4_0 *b = row;
        for (int j = 0; j < nb; j++) {
            nibbles(u, b[j].qs, NULL);
            float d = g3_f16_to_f32(b[j].d);
            put(p + j, n, u, d, d, 0.0f);
        }
        break;
    }
    case G3_Q4_1: {
        const G3BlockQ4_1 *b = row;
        for (int j = 0; j < nb; j++) {
            nibbles(u, b[j].qs, NULL);
            float d = g3_f16_to_f32(b[j].d);
            put(p + j, n, u, d, d, g3_f16_to_f32(b[j].m));
        }
        break;
    }
    case G3_Q5_0: {
        const G3BlockQ5_0 *b = row;
        for (int j = 0; j < nb; j++) {
            nibbles(u, b[j].qs, b[j].qh);
            float d = g3_f16_to_f32(b[j].d);
            put(p + j, n, u, d, d, 0.0f);
        }
        break;
    }
    case G3_Q5_1: {
        const G3BlockQ5_1 *b = row;
        for (int j = 0; j < nb; j++) {
            nibbles(u, b[j].qs, b[j].qh);
            float d = g3_f16_to_f32(b[j].d);
            put(p + j, n, u, d, d, g3_f16_to_f32(b[j].m));
        }
        break;
    }
    case G3_Q4_K:
    case G3_Q5_K: {  // sub-block s: nibbles of qs[32 (s / 2) ...], low for even s; Q5_K: bit s of qh[l]
        const int q5 = type == G3_Q5_K;
        const G3BlockQ4_K *b4 = row;
        const G3BlockQ5_K *b5 = row;
        for (int i = 0; i < nb / 8; i++) {
            const uint8_t *qs = q5 ? b5[i].qs : b4[i].qs, *qh = q5 ? b5[i].qh : NULL;
            uint8_t sc[8], m[8];
            g3_k_scales(q5 ? b5[i].scales : b4[i].scales, sc, m);
            const float d = g3_f16_to_f32(q5 ? b5[i].d : b4[i].d), dmin = g3_f16_to_f32(q5 ? b5[i].dmin : b4[i].dmin);
            for (int s = 0; s < 8; s++) {
                const uint8_t *q = qs + 32 * (s / 2);
                const int sh = 4 * (s & 1);
                for (int l = 0; l < 32; l++) u[l] = (q[l] >> sh) & 15;
                if (qh)
                    for (int l = 0; l < 32; l++) u[l] |= (uint8_t)(((qh[l] >> s) & 1) << 4);
                put(p + 8 * i + s, n, u, d * (float)sc[s], d * (float)sc[s], -dmin * (float)m[s]);
            }
        }
        break;
    }
    case G3_Q6_K: {  // as g3_qdot_q6_k_ref: block k = 4h + g of a super-block
        const G3BlockQ6_K *b = row;
        for (int i = 0; i < nb / 8; i++) {
            const float d = g3_f16_to_f32(b[i].d);
            for (int k = 0; k < 8; k++) {
                const int h = k / 4, g = k % 4, sh = g < 2 ? 0 : 4;
                const uint8_t *ql = b[i].ql + 64 * h + 32 * (g & 1), *qh = b[i].qh + 32 * h;
                for (int l = 0; l < 32; l++) u[l] = (uint8_t)(((ql[l] >> sh) & 15) | ((qh[l] >> (2 * g)) & 3) << 4);
                put(p + 8 * i + k, n, u, d * (float)b[i].scales[2 * k], d * (float)b[i].scales[2 * k + 1], 0.0f);
            }
        }
        break;
    }
    default: break;
    }
}

void g3_qgemm_prefetch(G3DType type, const void *w, int64_t row_bytes, int nrows, int nb) {
    const int64_t used = (int64_t)g3_type(type)->block_bytes * nb / (g3_type(type)->block / 32);
    for (int n = 0; n < nrows; n++)
        for (int64_t o = 0; o < used; o += 64) __builtin_prefetch((const char *)w + n * row_bytes + o, 0, 2);
}

void g3_qgemm_pack(G3QPanelBlock *p, G3DType type, const void *w, int64_t row_bytes, int nrows, int nb) {
    if (nrows < G3_QG_ROWS) memset(p, 0, (size_t)nb * sizeof *p);
    for (int n = 0; n < nrows; n++) pack_row(p, type, (const char *)w + n * row_bytes, n, nb);
}

void g3_qgemm_panel_ref(float *y, int64_t ldy, const G3QPanelBlock *p, int nb, const G3BlockQ8G *a, int R, int ncols,
                        const G3QGemmKind *kind) {
    for (int r = 0; r < R; r++)
        for (int n = 0; n < ncols; n++) {
            float acc = 0.0f;
            for (int i = 0; i < nb; i++) {
                const G3BlockQ8G *ai = a + (int64_t)r * nb + i;
                int32_t s[2] = {-kind->off * ai->s[0], -kind->off * ai->s[1]};
                for (int l = 0; l < 32; l++) s[l >> 4] += (int32_t)p[i].q[l >> 2][n][l & 3] * ai->qs[l];
                float v = kind->halves ? p[i].scale[0][n] * (float)s[0] + p[i].scale[1][n] * (float)s[1]
                                       : p[i].scale[0][n] * (float)(s[0] + s[1]);
                if (kind->bias) v += p[i].bias[n] * (float)(ai->s[0] + ai->s[1]);
                acc += ai->d * v;
            }
            y[r * ldy + n] = acc;
        }
}

G3QGemmPanel g3_qgemm_kernel(int level, G3DType type) {
    G3QGemmKind k;
    if (g3_qgemm_kind(type, &k) || level < 0 || level > g3_qdot_cpu_level()) return NULL;
    if (level >= G3_QDOT_AVX512VNNI) return g3_qgemm_panel_avx512vnni;
    if (level >= G3_QDOT_AVX2) return type == G3_Q8_0 ? g3_qgemm_panel_avx2_q8 : g3_qgemm_panel_avx2;
    return g3_qgemm_panel_ref;
}

G3QGemmQuant g3_qgemm_quantizer(int level) {
    return level >= G3_QDOT_AVX512 && level <= g3_qdot_cpu_level() ? g3_quantize_q8g_avx512 : g3_quantize_q8g;
}
