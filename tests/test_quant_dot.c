// test_quant_dot.c: the quantized dot-product kernels (kernels/cpu/quant_dot.h) at every ISA
// level this CPU has, against the scalar references, at odd block counts (1, 2, 3, 5, 17, 37,
// 144) and on weights with the extremes (Q8_0's -128 and 127, every nibble); the activation
// quantizer within half a step of its input; zero and non-finite activation blocks. Then every
// other ggml type (other_types): random bytes and quantized rows, every level.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/cpu/quant_dot.h"
#include "tensor/quant.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

static void random_weights(G3BlockQ8_0 *q8, G3BlockQ4_0 *q4, int nb) {
    for (int i = 0; i < nb; i++) {
        q8[i].d = g3_f32_to_f16(0.01f + 0.02f * (float)(next_u32() % 100) / 100.0f);
        q4[i].d = g3_f32_to_f16(-0.05f + 0.1f * (float)(next_u32() % 100) / 100.0f);
        for (int j = 0; j < 32; j++) q8[i].qs[j] = (int8_t)(next_u32() & 0xff);  // -128..127: the kernels take ggml's full range
        for (int j = 0; j < 16; j++) q4[i].qs[j] = (uint8_t)(next_u32() & 0xff);
    }
    if (nb > 0) q8[0].qs[0] = -128, q8[0].qs[1] = 127, q4[0].qs[0] = 0xf0;
}

// The other types (Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, and Q8_0 / Q4_0 again): rows of random
// bytes with sane f16 scales (every bit pattern of the quants and the 6-bit / int8 scales,
// -128 included) and rows quantized from random values; every level against the reference,
// the reference against dequantized weights times dequantized activations.
static void other_types(int top) {
    static const struct { G3DType t; int f16[2]; } types[] = {
        {G3_Q8_0, {0, -1}}, {G3_Q4_0, {0, -1}}, {G3_Q4_1, {0, 2}}, {G3_Q5_0, {0, -1}},
        {G3_Q5_1, {0, 2}},  {G3_Q4_K, {0, 2}},  {G3_Q5_K, {0, 2}}, {G3_Q6_K, {208, -1}},
    };
    const int counts[] = {1, 2, 3, 5, 27};  // super-blocks for the K-quants (27: a 6912 row), x 8 + 1 blocks for the others
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3TypeTraits *tt = g3_type(types[ti].t);
        const int kq = tt->block == 256;
        for (size_t ci = 0; ci < sizeof counts / sizeof *counts; ci++)
            for (int mode = 0; mode < 2; mode++) {
                const int nb = kq ? 8 * counts[ci] : 8 * counts[ci] + 1, n = nb * 32, nblk = n / tt->block;
                uint8_t *w = malloc((size_t)nblk * tt->block_bytes);
                float *x = malloc((size_t)n * sizeof *x), *wd = malloc((size_t)n * sizeof *wd);
                G3BlockQ8A *a = malloc((size_t)nb * sizeof *a);
                for (int i = 0; i < n; i++) x[i] = uniform() * (1.0f + (float)(i % 7));
                if (mode == 0) {
                    for (int i = 0; i < nblk * tt->block_bytes; i++) w[i] = (uint8_t)next_u32();
                    for (int i = 0; i < nblk; i++)
                        for (int f = 0; f < 2; f++)
                            if (types[ti].f16[f] >= 0) {
                                uint16_t h = g3_f32_to_f16((f ? 0.02f : 0.01f) * uniform());
                                memcpy(w + (size_t)i * tt->block_bytes + types[ti].f16[f], &h, 2);
                            }
                } else {
                    tt->from_f32(w, x, n);
                    for (int i = 0; i < n; i++) x[i] = uniform();
                }
                g3_quantize_q8a(a, x, nb);
                if (nb > 1) for (int j = 0; j < 32; j++) a[1].qs[j] = j & 1 ? 127 : -127, a[1].sum = 0;
                const G3QDot ref = g3_qdot_kernel(g3_qdot_table(G3_QDOT_SCALAR), types[ti].t);
                CHECK(ref != NULL, "%s has a reference kernel", tt->name);
                if (!ref) return;
                tt->to_f32(wd, w, n);
                double e = 0, m = 0, wmax = 0;
                for (int i = 0; i < n; i++) wmax = fmax(wmax, fabs(wd[i]));
                for (int i = 0; i < n; i++) {
                    double av = (double)a[i / 32].qs[i % 32] * a[i / 32].d;
                    e += wd[i] * av, m += fabs(av) * 4.0 * wmax;  // offsets (Q4_0's 8, the mins) are at most a few |w|
                }
                const float r = ref(w, a, nb);
                CHECK(fabs(e - r) <= 1e-5 * m + 1e-30, "%s reference nb=%d mode %d: %.9g vs dequantized %.9g", tt->name, nb, mode, r, e);
                for (int lv = G3_QDOT_AVX2; lv <= top; lv++) {
                    const float y = g3_qdot_kernel(g3_qdot_table(lv), types[ti].t)(w, a, nb);
                    CHECK(fabs((double)y - r) <= 1e-5 * m + 1e-30, "%s %s nb=%d mode %d: %.9g vs reference %.9g",
                          g3_qdot_level_name(lv), tt->name, nb, mode, y, r);
                }
                free(w), free(x), free(wd), free(a);
            }
    }
    CHECK(g3_qdot_kernel(g3_qdot_table(G3_QDOT_SCALAR), G3_F32) == NULL, "no kernel for F32");
}

int main(void) {
    int top = g3_qdot_cpu_level();
    fprintf(stderr, "CPU level: %s\n", g3_qdot_level_name(top));
    CHECK(g3_qdot_table(G3_QDOT_SCALAR) != NULL && g3_qdot() != NULL, "tables");
    CHECK(g3_qdot_table(G3_QDOT_LEVELS) == NULL && g3_qdot_table(-1) == NULL, "no table past the levels");

    // the activation quantizer
    {
        enum { NB = 9 };
        float x[NB * 32];
        G3BlockQ8A a[NB];
        for (int i = 0; i < NB * 32; i++) x[i] = uniform() * (float)(1 + i / 32);
        for (int j = 0; j < 32; j++) x[3 * 32 + j] = 0.0f;  // a zero block
        g3_quantize_q8a(a, x, NB);
        int ok = 1;
        for (int i = 0; i < NB; i++) {
            int32_t s = 0;
            for (int j = 0; j < 32; j++) {
                s += a[i].qs[j];
                if (fabsf(x[i * 32 + j] - a[i].qs[j] * a[i].d) > 0.5f * a[i].d * 1.0001f + 1e-30f) ok = 0;
                if (a[i].qs[j] < -127) ok = 0;
            }
            if (s != a[i].sum) ok = 0;
        }
        CHECK(ok, "activation blocks within half a step, sums right");
        CHECK(a[3].d == 0.0f && a[3].sum == 0, "zero block");
        for (int lv = G3_QDOT_SCALAR; lv <= top; lv++) {  // every level's quantizer: the reference's blocks
            enum { MB = 400 };  // many blocks: the largest element's x / d lands on both sides of 127
            static float xm[MB * 32];
            static G3BlockQ8A am[MB], bm[MB];
            for (int i = 0; i < MB * 32; i++) xm[i] = uniform() * (float)(1 + i % 13);
            g3_quantize_q8a(am, xm, MB);
            g3_qdot_quantizer(lv)(bm, xm, MB);
            int same_m = 1;
            for (int i = 0; i < MB; i++) same_m &= bm[i].d == am[i].d && bm[i].sum == am[i].sum && !memcmp(bm[i].qs, am[i].qs, 32);
            CHECK(same_m, "%s activation quantizer, %d random blocks: the reference's", g3_qdot_level_name(lv), MB);
            G3BlockQ8A b[NB];
            memset(b, 0x55, sizeof b);
            g3_qdot_quantizer(lv)(b, x, NB);
            int same = 1;
            for (int i = 0; i < NB; i++) same &= b[i].d == a[i].d && b[i].sum == a[i].sum && !memcmp(b[i].qs, a[i].qs, 32);
            CHECK(same, "%s activation quantizer gives the reference's blocks", g3_qdot_level_name(lv));
        }
        x[5] = NAN, x[40] = INFINITY;
        g3_quantize_q8a(a, x, NB);
        for (int lv = G3_QDOT_SCALAR; lv <= top; lv++) g3_qdot_quantizer(lv)(a, x, NB);
        CHECK(1, "non-finite activations quantized without undefined behaviour");
    }

    const int sizes[] = {1, 2, 3, 5, 17, 37, 144};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        int nb = sizes[si];
        G3BlockQ8_0 *q8 = malloc((size_t)nb * sizeof *q8);
        G3BlockQ4_0 *q4 = malloc((size_t)nb * sizeof *q4);
        G3BlockQ8A *a = malloc((size_t)nb * sizeof *a);
        float *x = malloc((size_t)nb * 32 * sizeof *x);
        random_weights(q8, q4, nb);
        for (int i = 0; i < nb * 32; i++) x[i] = uniform();
        g3_quantize_q8a(a, x, nb);
        if (nb > 1) for (int j = 0; j < 32; j++) a[1].qs[j] = j & 1 ? 127 : -127;  // the extremes
        if (nb > 1) { a[1].sum = 0; for (int j = 0; j < 32; j++) a[1].sum += a[1].qs[j]; }
        float r8 = g3_qdot_q8_0_ref(q8, a, nb), r4 = g3_qdot_q4_0_ref(q4, a, nb);
        // a bound for float reordering: the sum of |terms|
        double m8 = 0, m4 = 0;
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < 32; j++) {
                m8 += fabs((double)q8[i].qs[j] * a[i].qs[j] * g3_f16_to_f32(q8[i].d) * a[i].d);
                int nib = j < 16 ? (q4[i].qs[j] & 15) : (q4[i].qs[j - 16] >> 4);
                m4 += fabs((double)(nib - 8) * a[i].qs[j] * g3_f16_to_f32(q4[i].d) * a[i].d) + fabs(8.0 * a[i].qs[j] * g3_f16_to_f32(q4[i].d) * a[i].d);
            }
        for (int lv = G3_QDOT_AVX2; lv <= top; lv++) {
            const G3QDotTable *t = g3_qdot_table(lv);
            float y8 = t->q8_0(q8, a, nb), y4 = t->q4_0(q4, a, nb);
            CHECK(fabs((double)y8 - r8) <= 1e-5 * m8 + 1e-30, "%s Q8_0 nb=%d: %.9g vs reference %.9g", g3_qdot_level_name(lv), nb, y8, r8);
            CHECK(fabs((double)y4 - r4) <= 1e-5 * m4 + 1e-30, "%s Q4_0 nb=%d: %.9g vs reference %.9g", g3_qdot_level_name(lv), nb, y4, r4);
        }
        // the references against the dequantized weights times the dequantized activations
        float *wd = malloc((size_t)nb * 32 * sizeof *wd);
        g3_q8_0_to_f32(wd, q8, nb * 32);
        double e8 = 0;
        for (int i = 0; i < nb * 32; i++) e8 += (double)wd[i] * a[i / 32].qs[i % 32] * a[i / 32].d;
        g3_q4_0_to_f32(wd, q4, nb * 32);
        double e4 = 0;
        for (int i = 0; i < nb * 32; i++) e4 += (double)wd[i] * a[i / 32].qs[i % 32] * a[i / 32].d;
        CHECK(fabs(e8 - r8) <= 1e-5 * m8 + 1e-30 && fabs(e4 - r4) <= 1e-5 * m4 + 1e-30, "references nb=%d: %g %g vs %g %g", nb, r8, r4, e8, e4);
        free(wd);
        free(q8), free(q4), free(a), free(x);
    }
    other_types(top);
    return check_done();
}
