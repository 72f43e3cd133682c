// bf16w_gemm_scalar.c: bf16w_gemm.h's packer, reference tile and activation rounding (plain C).
#include "bf16w_gemm.h"

#include <string.h>

#include "../../tensor/dtype.h"

void g3_bf16w_pack(uint32_t *p, const uint16_t *w, int64_t ldw, int nrows, int k0, int kc) {
    const int kd = (kc + 1) / 2, full = kc / 2;  // full: pairs with both elements inside kc
    const uint16_t *row[G3_BF16W_ROWS];
    for (int j = 0; j < G3_BF16W_ROWS; j++) row[j] = j < nrows ? w + (int64_t)j * ldw + k0 : NULL;
    // pair by pair, the 32 rows' words side by side: the writes are one contiguous stream and
    // each row is read in order (its cache lines serve 16 pairs)
    for (int a = 0; a < full; a++, p += G3_BF16W_ROWS)
        for (int j = 0; j < G3_BF16W_ROWS; j++) {
            uint32_t v = 0;
            if (row[j]) memcpy(&v, row[j] + 2 * a, 4);  // little-endian: the even element low
            p[j] = v;
        }
    if (full < kd)  // an odd kc: the last pair's high half zero
        for (int j = 0; j < G3_BF16W_ROWS; j++) p[j] = row[j] ? row[j][2 * full] : 0;
}

void g3_bf16w_tile_ref(float *y, int64_t ldy, const uint32_t *p, int kd, const uint16_t *x, int64_t ldx, int R, int ncols, int add) {
    for (int r = 0; r < R; r++)
        for (int j = 0; j < ncols; j++) {
            float acc = 0.0f;
            for (int a = 0; a < kd; a++) {
                const uint32_t wp = p[(size_t)a * G3_BF16W_ROWS + j];
                const uint16_t *xp = x + (int64_t)r * ldx + 2 * a;
                acc += g3_bf16_to_f32(xp[0]) * g3_bf16_to_f32((uint16_t)wp);
                acc += g3_bf16_to_f32(xp[1]) * g3_bf16_to_f32((uint16_t)(wp >> 16));
            }
            float *o = y + (int64_t)r * ldy + j;
            *o = add ? *o + acc : acc;
        }
}

void g3_bf16w_round_rows(uint16_t *dst, int64_t ldd, const float *x, int R, int K) {
    for (int r = 0; r < R; r++) {
        uint16_t *d = dst + (int64_t)r * ldd;
        for (int k = 0; k < K; k++) d[k] = g3_f32_to_bf16(x[(int64_t)r * K + k]);
        for (int64_t k = K; k < ldd; k++) d[k] = 0;
    }
}
