// test_quant.c: ggml's Q8_0 and Q4_0 blocks (tensor/quant.h). The traits table's entries and
// byte counts (whole blocks; -1 for a partial one); dequantization of hand-made blocks to the
// bit; the max rule's rounding (g3_*_from_f32_simple) on chosen values (Q8_0's round-half-away,
// Q4_0's sign-keeping scale and its clamp from 16 to 15, as ggml's _ref functions do); quantize
// then dequantize (the max rule and the traits' searching quantizer) within each format's bound
// at several block counts without writing past the end; NaN and zero blocks quantize without undefined behaviour; safetensors refuses a block type.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "backend/backend.h"
#include "io/safetensors.h"
#include "tensor/quant.h"

static void test_table(void) {
    const G3TypeTraits *q8 = g3_type(G3_Q8_0), *q4 = g3_type(G3_Q4_0);
    CHECK(q8 && !strcmp(q8->name, "Q8_0") && q8->block == 32 && q8->block_bytes == (int)sizeof(G3BlockQ8_0) && q8->is_float && q8->linear_backends == 1u << G3_BACKEND_CPU,
          "Q8_0 traits");
    CHECK(q4 && !strcmp(q4->name, "Q4_0") && q4->block == 32 && q4->block_bytes == (int)sizeof(G3BlockQ4_0) && q4->is_float && q4->linear_backends == 1u << G3_BACKEND_CPU,
          "Q4_0 traits");
    CHECK(g3_type_row_bytes(G3_Q8_0, 64) == 68 && g3_type_row_bytes(G3_Q4_0, 96) == 54 && g3_type_row_bytes(G3_Q8_0, 0) == 0, "whole blocks");
    CHECK(g3_type_row_bytes(G3_Q8_0, 33) == -1 && g3_type_row_bytes(G3_Q4_0, 31) == -1 && g3_type_bytes(G3_Q4_0, 48) == -1, "partial blocks");
    CHECK(g3_dtype_size(G3_Q8_0) == 0 && g3_dtype_size(G3_Q4_0) == 0, "a block type has no element size");
    CHECK(g3_dtype_from_name("Q4_0", 4) == G3_Q4_0, "names");
}

static void test_known_blocks(void) {
    G3BlockQ8_0 b8[2];
    b8[0].d = 0x3800;  // 0.5
    b8[1].d = 0xbc00;  // -1
    for (int j = 0; j < 32; j++) { b8[0].qs[j] = (int8_t)(j * 8 - 128); b8[1].qs[j] = (int8_t)(127 - j); }
    float y[65];
    y[64] = 42;
    g3_q8_0_to_f32(y, b8, 64);
    int ok = y[64] == 42;
    for (int j = 0; j < 32; j++) ok &= y[j] == (float)(j * 8 - 128) * 0.5f && y[32 + j] == -(float)(127 - j);
    CHECK(ok, "Q8_0 dequantization of known blocks");
    G3BlockQ4_0 b4;
    b4.d = 0xc000;  // -2
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    g3_q4_0_to_f32(y, &b4, 32);
    ok = 1;
    for (int j = 0; j < 16; j++) ok &= y[j] == (float)(j - 8) * -2.0f && y[16 + j] == (float)(7 - j) * -2.0f;
    CHECK(ok, "Q4_0 dequantization of a known block (low nibble j, high nibble j + 16)");

    // Q8_0's rounding: d = max|x| / 127 = 1 exactly; round half away from zero
    float x[32] = {127, -127, 63.5f, -63.5f, 0.49f, -0.5f, 2.5f};
    G3BlockQ8_0 q;
    g3_q8_0_from_f32_simple(&q, x, 32);
    CHECK(q.d == 0x3c00 && q.qs[0] == 127 && q.qs[1] == -127 && q.qs[2] == 64 && q.qs[3] == -64 && q.qs[4] == 0 && q.qs[5] == -1 && q.qs[6] == 3 && q.qs[7] == 0,
          "Q8_0 reference rounding: d %#x q %d %d %d %d %d %d %d", q.d, q.qs[0], q.qs[1], q.qs[2], q.qs[3], q.qs[4], q.qs[5], q.qs[6]);
    // Q4_0: the scale keeps the sign of the largest-magnitude value (the first of equals);
    // q = min(15, trunc(x / d + 8.5))
    float z[32] = {-8, 7, 3.5f, -0.25f, 8, 0.6f};
    G3BlockQ4_0 r;
    g3_q4_0_from_f32_simple(&r, z, 32);
    int lv[6];
    for (int j = 0; j < 6; j++) lv[j] = r.qs[j] & 15;
    CHECK(r.d == 0x3c00 && lv[0] == 0 && lv[1] == 15 && lv[2] == 12 && lv[3] == 8 && lv[4] == 15 && lv[5] == 9 && (r.qs[0] >> 4) == 8,
          "Q4_0 reference rounding: d %#x levels %d %d %d %d %d %d", r.d, lv[0], lv[1], lv[2], lv[3], lv[4], lv[5]);
    float w[32] = {8, -8};  // max is +8 (first): d = -1, so -8 maps to 16 and is clamped to 15 (-7)
    g3_q4_0_from_f32_simple(&r, w, 32);
    g3_q4_0_to_f32(y, &r, 32);
    CHECK(r.d == 0xbc00 && y[0] == 8 && y[1] == -7, "Q4_0 clamp: d %#x, %g %g", r.d, y[0], y[1]);
}

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static float uniform(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

// Quantize then dequantize nb blocks; every value within the format's bound of its block. The
// bound is the max rule's (g3_*_from_f32_simple); the traits' quantizer searches for the scale
// of least squared error (test_quant_search), which may move one value's error past it: 1.5x
// the bound there.
static void round_trip(G3DType t, int nb, int simple) {
    const G3TypeTraits *tt = g3_type(t);
    void (*quant)(void *, const float *, int64_t) = !simple ? tt->from_f32 : t == G3_Q8_0 ? g3_q8_0_from_f32_simple : g3_q4_0_from_f32_simple;
    int n = nb * 32;
    float *x = malloc((size_t)n * 4), *y = malloc((size_t)(n + 1) * 4);
    uint8_t *b = malloc((size_t)nb * tt->block_bytes + 1);
    for (int i = 0; i < n; i++) x[i] = uniform() * (float)(1 + i / 32);  // a scale per block
    if (nb > 2) for (int j = 0; j < 32; j++) x[32 + j] = 0;          // an all-zero block
    b[nb * tt->block_bytes] = 0xa5;
    y[n] = 42;
    quant(b, x, n);
    tt->to_f32(y, b, n);
    CHECK(b[nb * tt->block_bytes] == 0xa5 && y[n] == 42, "%s: wrote past %d blocks", tt->name, nb);
    double worst = 0, sq = 0, sqx = 0;
    for (int k = 0; k < nb; k++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[k * 32 + j]));
        // Q8_0: half a step, plus the f16 scale's error times |q| <= 127; Q4_0: one step (the
        // clamp), plus the f16 scale's error times |q - 8| <= 8
        double d = t == G3_Q8_0 ? amax / 127.0 : amax / 8.0;
        double bound = (t == G3_Q8_0 ? d * (0.5 + 127.0 / 2048) : d * (1.0 + 8.0 / 2048)) * (simple ? 1.0 : 1.5);
        for (int j = 0; j < 32; j++) {
            double e = fabs((double)y[k * 32 + j] - x[k * 32 + j]);
            worst = fmax(worst, d > 0 ? e / d : e);
            CHECK(e <= bound * (1 + 1e-6), "%s: block %d value %d: error %g over the bound %g", tt->name, k, j, e, bound);
            sq += e * e;
            sqx += (double)x[k * 32 + j] * x[k * 32 + j];
        }
    }
    printf("%s%s, %3d blocks: worst error %.3f steps, relative RMS %.2e\n", tt->name, simple ? " (max rule)" : "", nb, worst, sqrt(sq / sqx));
    free(x);
    free(y);
    free(b);
}

// Non-finite input: no undefined behaviour (UBSan), finite output where the block allows.
static void test_nonfinite(void) {
    float x[32] = {NAN, 1, -2, INFINITY};
    G3BlockQ8_0 q8;
    G3BlockQ4_0 q4;
    float y[32];
    g3_q8_0_from_f32(&q8, x, 32);
    g3_q4_0_from_f32(&q4, x, 32);
    g3_q8_0_to_f32(y, &q8, 32);
    g3_q4_0_to_f32(y, &q4, 32);
    g3_q8_0_from_f32_simple(&q8, x, 32);
    g3_q4_0_from_f32_simple(&q4, x, 32);
    CHECK(1, "non-finite input quantized");
}

// The CPU backend's linear over quantized weights against a double-precision product of the
// dequantized weights (to_f32, the reference), at odd shapes, on both sides of the threading
// threshold, in every mode (exact: f32 activations, 1e-6; the others quantize them to int8).
static void test_linear(void) {
    G3Backend *be = g3_backend_cpu();
    const struct { int N, K, R; } shapes[] = {{7, 96, 1}, {5, 32, 13}, {67, 1024, 3}, {33, 160, 9}};
    const G3DType types[] = {G3_Q8_0, G3_Q4_0};
    for (int ti = 0; ti < 2; ti++)
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const int N = shapes[si].N, K = shapes[si].K, R = shapes[si].R;
            const G3TypeTraits *tt = g3_type(types[ti]);
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
                // exact: f32 activations; fast modes: int8 activations (a 1/254 step per block)
                double e = rel_err(y, want, (long)R * N), tol = mode == 0 ? 1e-6 : 2e-2;
                CHECK(e < tol, "%s linear [%d x %d] x %d rows, mode %d: rel err %.3g against the dequantized product", tt->name, N, K, R, mode, e);
            }
            free(wf); free(wd); free(x); free(y); free(want); free(q);
        }
}

// Q8_0 is not a safetensors dtype: a header naming it is refused.
static void test_safetensors(void) {
    const char *hdr = "{\"w\":{\"dtype\":\"Q8_0\",\"shape\":[32],\"data_offsets\":[0,34]}}";
    uint64_t n = strlen(hdr);
    char path[] = "/tmp/g3_quant_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { CHECK(0, "mkstemp"); return; }
    FILE *f = fdopen(fd, "wb");
    uint8_t zero[34] = {0};
    fwrite(&n, 8, 1, f);
    fwrite(hdr, 1, n, f);
    fwrite(zero, 1, 34, f);
    fclose(f);
    STSet st;
    CHECK(st_open(&st, path) == -1 && strstr(g3_error(), "Q8_0") && strstr(g3_error(), "'w'"), "%s", g3_error());
    remove(path);
}

int main(void) {
    test_table();
    test_known_blocks();
    const int nbs[] = {1, 3, 17, 64};
    for (int i = 0; i < 4; i++) {
        for (int simple = 0; simple < 2; simple++) round_trip(G3_Q8_0, nbs[i], simple), round_trip(G3_Q4_0, nbs[i], simple);
    }
    test_nonfinite();
    test_linear();
    test_safetensors();
    return check_done();
}
