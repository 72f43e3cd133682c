// test_quant_types.c: ggml's Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K blocks (tensor/quant.h).
// Hand-made blocks dequantize to the values ggml's layouts define (the K-quants' packed 6-bit
// scales and mins, Q5's fifth bits, Q6_K's split nibbles and 2-bit highs); quantize (the max
// rules and the searching quantizers) then dequantize within each format's bound at several
// block counts without writing past the end;
// non-finite and zero input; the CPU backend's linear over each type against the dequantized
// product in every mode; each type through a GGUF file and back.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/base.h"
#include "check.h"
#include "io/gguf.h"
#include "tensor/quant.h"
#include "tensor/weight.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static float uniform(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static const G3DType types[] = {G3_Q4_1, G3_Q5_0, G3_Q5_1, G3_Q4_K, G3_Q5_K, G3_Q6_K};

static void test_known_blocks(void) {
    float y[256];
    G3BlockQ4_1 a = {g3_f32_to_f16(0.5f), g3_f32_to_f16(-1.0f), {0}};
    a.qs[0] = 0x3f, a.qs[15] = 0xa0;  // element 0: 15, element 16: 3, element 15: 0, element 31: 10
    g3_q4_1_to_f32(y, &a, 32);
    CHECK(y[0] == 6.5f && y[16] == 0.5f && y[15] == -1.0f && y[31] == 4.0f, "Q4_1: %g %g %g %g", y[0], y[16], y[15], y[31]);

    G3BlockQ5_0 b = {g3_f32_to_f16(1.0f), {0x01, 0, 0, 0x80}, {0}};  // fifth bit of element 0 and element 31
    b.qs[0] = 0x02, b.qs[15] = 0xf0;
    g3_q5_0_to_f32(y, &b, 32);
    CHECK(y[0] == 2.0f && y[16] == -16.0f && y[31] == 15.0f && y[1] == -16.0f, "Q5_0: %g %g %g %g", y[0], y[16], y[31], y[1]);

    G3BlockQ5_1 c = {g3_f32_to_f16(2.0f), g3_f32_to_f16(1.0f), {0, 0, 1, 0}, {0}};  // bit 16: element 16's
    c.qs[0] = 0x11;
    g3_q5_1_to_f32(y, &c, 32);
    CHECK(y[0] == 3.0f && y[16] == 35.0f && y[1] == 1.0f, "Q5_1: %g %g %g", y[0], y[16], y[1]);

    // Q4_K: sub-block 0 scale 1 min 0, sub-block 5 scale 37 (0b100101) min 50 (0b110010)
    G3BlockQ4_K k4;
    memset(&k4, 0, sizeof k4);
    k4.d = g3_f32_to_f16(1.0f), k4.dmin = g3_f32_to_f16(0.5f);
    k4.scales[0] = 1;
    k4.scales[1] = (uint8_t)((37 >> 4) << 6);   // sub-block 5's top scale bits ride in byte 1
    k4.scales[5] = (uint8_t)((50 >> 4) << 6);   // its top min bits in byte 5
    k4.scales[9] = (uint8_t)((37 & 15) | (50 & 15) << 4);
    k4.qs[0] = 0x07;         // element 0 (sub-block 0): 7
    k4.qs[64 + 3] = 0x90;    // element 160 + 3 (sub-block 5: the high nibbles of bytes 64..95): 9
    g3_q4_k_to_f32(y, &k4, 256);
    CHECK(y[0] == 7.0f && y[163] == 37.0f * 9 - 25.0f && y[160] == -25.0f, "Q4_K: %g %g %g", y[0], y[163], y[160]);

    G3BlockQ5_K k5;
    memset(&k5, 0, sizeof k5);
    k5.d = g3_f32_to_f16(1.0f), k5.dmin = g3_f32_to_f16(1.0f);
    k5.scales[0] = 2, k5.scales[1] = 1, k5.scales[4] = 3;  // sub-block 0: scale 2 min 3; sub-block 1: scale 1
    k5.qs[0] = 0x51;          // element 0: 1, element 32: 5
    k5.qh[0] = 0x03;          // element 0 and element 32 get +16
    g3_q5_k_to_f32(y, &k5, 256);
    CHECK(y[0] == 2.0f * 17 - 3.0f && y[32] == 21.0f, "Q5_K: %g %g", y[0], y[32]);

    G3BlockQ6_K k6;
    memset(&k6, 0, sizeof k6);
    k6.d = g3_f32_to_f16(0.5f);
    for (int j = 0; j < 16; j++) k6.scales[j] = (int8_t)(j - 8);
    k6.ql[0] = 0x21;   // element 0 low nibble 1, element 64 low nibble 2
    k6.qh[0] = 0x39;   // element 0 high 01, element 32 high 10, element 64 high 11, element 96 high 00
    k6.ql[32] = 0x04;  // element 32 low nibble 4
    g3_q6_k_to_f32(y, &k6, 256);
    // element 0: q 0x11 = 17 - 32 = -15, scale -8; 32: q 0x24 = 36 - 32 = 4, scale(2) -6; 64: 0x32 = 50 - 32 = 18, scale(4) -4
    CHECK(y[0] == 0.5f * -8 * -15 && y[32] == 0.5f * -6 * 4 && y[64] == 0.5f * -4 * 18 && y[96] == 0.5f * -2 * -32,
          "Q6_K: %g %g %g %g", y[0], y[32], y[64], y[96]);
}

// Bounds (relative to the largest |x| of the block or super-block, for uniform data): one
// step of the format's grid, plus what the quantized scales add.
static double bound_of(G3DType t) {
    switch (t) {
    case G3_Q4_1: return 2.0 / 15 * 0.5 * 1.01;   // half a step of (max - min) / 15
    case G3_Q5_0: return 1.0 / 16 * 1.01;         // a step (the clamp of -max), as Q4_0
    case G3_Q5_1: return 2.0 / 31 * 0.5 * 1.01;
    case G3_Q4_K: return 2.0 / 15 * 1.2;          // a step: scales rounded up to 6 bits
    case G3_Q5_K: return 2.0 / 31 * 1.3;
    case G3_Q6_K: return 1.0 / 32 * 1.6;
    default: return 0;
    }
}

// simple: the max/min rule (g3_*_from_f32_simple), whose bounds these are; else the traits'
// searching quantizer, whose guarantee is the block's squared error (test_quant_search): one
// value's error may pass the max rule's bound, 1.5x it here.
static void round_trip(G3DType t, int nblocks, int simple) {
    const G3TypeTraits *tt = g3_type(t);
    void (*quant)(void *, const float *, int64_t) = !simple        ? tt->from_f32
                                                    : t == G3_Q4_1 ? g3_q4_1_from_f32_simple
                                                    : t == G3_Q5_0 ? g3_q5_0_from_f32_simple
                                                    : t == G3_Q5_1 ? g3_q5_1_from_f32_simple
                                                    : t == G3_Q4_K ? g3_q4_k_from_f32_simple
                                                    : t == G3_Q5_K ? g3_q5_k_from_f32_simple
                                                                   : g3_q6_k_from_f32_simple;
    const double bound = bound_of(t) * (simple ? 1.0 : 1.5);
    int n = nblocks * tt->block, B = tt->block;
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)(n + 1) * 4);
    uint8_t *b = malloc((size_t)nblocks * tt->block_bytes + 1);
    for (int i = 0; i < n; i++) x[i] = uniform() * (float)(1 + i / B);
    if (nblocks > 2) for (int j = 0; j < B; j++) x[B + j] = 0;
    b[nblocks * tt->block_bytes] = 0xa5;
    y[n] = 42;
    quant(b, x, n);
    tt->to_f32(y, b, n);
    CHECK(b[nblocks * tt->block_bytes] == 0xa5 && y[n] == 42, "%s: wrote past %d blocks", tt->name, nblocks);
    double sq = 0, sqx = 0, worst = 0;
    int bad = 0;
    for (int k = 0; k < nblocks; k++) {
        float amax = 0;
        for (int j = 0; j < B; j++) amax = fmaxf(amax, fabsf(x[k * B + j]));
        for (int j = 0; j < B; j++) {
            double e = fabs((double)y[k * B + j] - x[k * B + j]);
            if (amax > 0) worst = fmax(worst, e / amax);
            if (e > bound * amax + 1e-7) bad++;
            sq += e * e, sqx += (double)x[k * B + j] * x[k * B + j];
        }
    }
    CHECK(bad == 0, "%s%s, %d blocks: %d values over the bound (worst %.4f of the block's max, bound %.4f)", tt->name,
          simple ? " (max rule)" : "", nblocks, bad, worst, bound);
    printf("%s%s, %3d blocks: worst error %.4f of the block's max, relative RMS %.2e\n", tt->name, simple ? " (max rule)" : "", nblocks,
           worst, sqrt(sq / sqx));
    free(x), free(y), free(b);
}

static void test_nonfinite(void) {
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3TypeTraits *tt = g3_type(types[ti]);
        float x[256] = {NAN, 1, -2, INFINITY, -INFINITY}, y[256];
        uint8_t b[256];
        tt->from_f32(b, x, tt->block);
        tt->to_f32(y, b, tt->block);
        float z[256] = {0};
        tt->from_f32(b, z, tt->block);
        tt->to_f32(y, b, tt->block);
        int zero = 1;
        for (int i = 0; i < tt->block; i++) zero &= y[i] == 0.0f;
        CHECK(zero, "%s: zeros come back as zeros", tt->name);
    }
}

static void test_linear(void) {
    G3Backend *be = g3_backend_cpu();
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3TypeTraits *tt = g3_type(types[ti]);
        const int N = 13, K = 2 * tt->block, R = 3;
        float *wf = malloc((size_t)N * K * 4), *wd = malloc((size_t)N * K * 4), *x = malloc((size_t)R * K * 4);
        float *y = malloc((size_t)R * N * 4), *want = malloc((size_t)R * N * 4);
        int64_t rb = g3_type_row_bytes(types[ti], K);
        uint8_t *q = malloc((size_t)(N * rb));
        for (long i = 0; i < (long)N * K; i++) wf[i] = uniform();
        for (long i = 0; i < (long)R * K; i++) x[i] = uniform();
        for (int n = 0; n < N; n++) tt->from_f32(q + n * rb, wf + (long)n * K, K);
        tt->to_f32(wd, q, (int64_t)N * K);
        for (int r = 0; r < R; r++)
            for (int n = 0; n < N; n++) {
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)x[(long)r * K + k] * wd[(long)n * K + k];
                want[(long)r * N + n] = (float)s;
            }
        G3Weight w = {types[ti], N, K, rb, q, G3_MEM_HOST};
        CHECK(be->weight_check(be, &w, "w") == 0, "%s: %s", tt->name, g3_error());
        for (int mode = 0; mode < 3; mode++) {
            CHECK(be->linear(be, y, x, &w, R, (G3MatmulMode)mode) == 0, "%s", g3_error());
            double e = rel_err(y, want, (long)R * N), tol = mode == 0 ? 1e-5 : 2e-2;  // fast modes: int8 activations (test_quant.c's bound)
            CHECK(e < tol, "%s linear mode %d: rel err %.3g", tt->name, mode, e);
        }
        // through a GGUF file: the type id and the bytes come back
        GGUFWriter gw;
        gguf_w_init(&gw, 32);
        int64_t ne[2] = {K, N};
        CHECK(gguf_w_tensor(&gw, "w", types[ti], 2, ne, q, N * rb) == 0, "%s: gguf tensor: %s", tt->name, g3_error());
        uint8_t *file;
        size_t len;
        CHECK(gguf_w_bytes(&gw, &file, &len) == 0, "gguf bytes");
        GGUFFile g;
        CHECK(gguf_parse(&g, file, len, "t.gguf") == 0, "%s: parse: %s", tt->name, g3_error());
        const GGUFTensor *gt = gguf_tensor(&g, "w");
        CHECK(gt && gt->type == types[ti] && gt->nbytes == N * rb && !memcmp(gt->data, q, (size_t)(N * rb)), "%s: GGUF round trip",
              tt->name);
        CHECK(gt && !strcmp(gguf_ggml_type_name(gt->ggml_type), tt->name), "%s: ggml name", tt->name);
        gguf_close(&g);
        free(file);
        gguf_w_free(&gw);
        free(wf), free(wd), free(x), free(y), free(want), free(q);
    }
}

int main(void) {
    test_known_blocks();
    const int counts[] = {1, 3, 8};
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++)
        for (int c = 0; c < 3; c++) round_trip(types[ti], counts[c], 0), round_trip(types[ti], counts[c], 1);
    test_nonfinite();
    test_linear();
    return check_done();
}
