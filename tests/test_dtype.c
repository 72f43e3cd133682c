// test_dtype.c: the dtype traits table. Each weight type's row converters (to_f32, from_f32)
// agree bit for bit with the scalar conversions (g3_bf16_to_f32, g3_f32_to_f16, ...), on every
// 16-bit word (so every subnormal, infinity and NaN), on rounding ties, overflow to infinity
// and underflow to zero, at odd lengths, without writing past n; a round trip through f32 is
// exact for every non-NaN word; the non-weight types convert values as C's casts do; byte
// counts come out right and refuse what they should; the table is consistent with itself.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "tensor/dtype.h"

// The pattern every quantized block struct follows (ggml's Q8_0 layout, for the test only).
typedef struct {
    uint16_t d;
    int8_t qs[32];
} TestBlockQ8_0;
G3_BLOCK_SIZE_CHECK(TestBlockQ8_0, 34);

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Deterministic values across every exponent range, plus the hard cases.
static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint32_t next(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)rng;
}
enum { NV = 4096 };
static float vals[NV];
static int make_values(void) {
    const float hard[] = {
        0.0f, -0.0f, 1.0f, -1.0f, 3.14159265f, INFINITY, -INFINITY, NAN, -NAN,
        1e-40f, -1e-40f, 1.17549435e-38f,          // f32 subnormal, smallest normal
        5.96046448e-8f, 2.98023224e-8f, 2.99e-8f,  // f16: smallest subnormal, half of it (tie to 0), just above
        6.09755516e-5f, 6.10351562e-5f,            // f16: largest subnormal, smallest normal
        65504.0f, 65519.99f, 65520.0f, 1e6f,      // f16: max, below and at the overflow tie, far over
        1.00390625f, 1.01171875f,                 // bf16 ties (1 + 2^-8 to even below, 1 + 3 * 2^-8 to even above)
        1.00048828f, 1.00146484f,                 // f16 ties (1 + 2^-11, 1 + 3 * 2^-11)
        3.4028235e38f, -3.4028235e38f,            // f32 max: bf16 rounds it to infinity
    };
    int n = 0;
    for (size_t i = 0; i < sizeof hard / sizeof *hard; i++) vals[n++] = hard[i];
    vals[n++] = from_bits(0x7f800001u);  // signalling NaN
    vals[n++] = from_bits(0xffc12345u);  // NaN with a payload
    while (n < NV) vals[n++] = from_bits(next());
    return n;
}

// Bitwise equality of two float arrays, with any NaN equal to any NaN (the scalar
// conversions fix a NaN's payload; both sides must still be NaN).
static int same_f32(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!(isnan(a[i]) && isnan(b[i])) && bits(a[i]) != bits(b[i])) return 0;
    return 1;
}

static void test_table(void) {
    CHECK(g3_type(G3_DTYPE_COUNT) == NULL && g3_type((G3DType)-1) == NULL && g3_type((G3DType)1000) == NULL, "out of range types have traits");
    for (int t = 0; t < G3_DTYPE_COUNT; t++) {
        const G3TypeTraits *tt = g3_type((G3DType)t);
        if (!tt) { CHECK(0, "type %d has no traits", t); continue; }
        int plain = t == G3_F32 || t == G3_BF16 || t == G3_F16, quant = t >= G3_Q8_0;  // ggml's blocks: CPU kernel only
        int weight = plain || quant;
        CHECK(tt->name && !strcmp(tt->name, g3_dtype_name((G3DType)t)), "type %d: name %s", t, tt->name);
        CHECK(g3_dtype_from_name(tt->name, strlen(tt->name)) == t, "%s: the name does not look itself up", tt->name);
        CHECK(tt->block >= 1 && tt->block_bytes >= 1, "%s: block %d of %d bytes", tt->name, tt->block, tt->block_bytes);
        CHECK(tt->block != 1 || g3_dtype_size((G3DType)t) == tt->block_bytes, "%s: element size %d", tt->name, g3_dtype_size((G3DType)t));
        CHECK(tt->is_float == weight, "%s: is_float %d", tt->name, tt->is_float);
        CHECK(tt->to_f32 != NULL, "%s: no to_f32", tt->name);
        CHECK((tt->from_f32 != NULL) == weight, "%s: from_f32 %s", tt->name, tt->from_f32 ? "set" : "missing");
        uint32_t want = plain ? (1u << G3_BACKEND_CPU) | (1u << G3_BACKEND_CUDA) : quant ? 1u << G3_BACKEND_CPU : 0;
        CHECK(tt->linear_backends == want, "%s: linear backends %#x, want %#x", tt->name, tt->linear_backends, want);
    }
    CHECK(g3_dtype_size(G3_DTYPE_COUNT) == 0 && !strcmp(g3_dtype_name(G3_DTYPE_COUNT), "?"), "unknown type");
    CHECK(g3_dtype_from_name("Q99", 3) == -1 && g3_dtype_from_name("F3", 2) == -1, "unknown names");
}

static void test_bytes(void) {
    struct { G3DType t; int64_t n, want; } cases[] = {
        {G3_F32, 7, 28}, {G3_BF16, 7, 14}, {G3_F16, 1, 2}, {G3_F64, 3, 24}, {G3_I64, 2, 16}, {G3_I32, 5, 20},
        {G3_U8, 9, 9}, {G3_I8, 0, 0}, {G3_F32, -1, -1}, {G3_DTYPE_COUNT, 4, -1},
        {G3_F32, INT64_MAX / 4, (INT64_MAX / 4) * 4}, {G3_F32, INT64_MAX / 4 + 1, -1}, {G3_F64, INT64_MAX, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t r = g3_type_row_bytes(cases[i].t, cases[i].n), b = g3_type_bytes(cases[i].t, cases[i].n);
        CHECK(r == cases[i].want && b == cases[i].want, "%s x %lld: row %lld, tensor %lld bytes, want %lld", g3_dtype_name(cases[i].t),
              (long long)cases[i].n, (long long)r, (long long)b, (long long)cases[i].want);
    }
    // a row of a 2-D tensor times its rows is the tensor
    CHECK(g3_type_bytes(G3_BF16, 96 * 128) == 96 * g3_type_row_bytes(G3_BF16, 128), "rows x row bytes");
}

// Converts vals[0..n) through type t's from_f32 and to_f32 at length n (odd lengths too) and
// compares with the scalar conversions; a guard word after n must stay untouched.
static void test_rows(G3DType t, uint16_t (*enc)(float), float (*dec)(uint16_t)) {
    const G3TypeTraits *tt = g3_type(t);
    static uint16_t h[NV + 1], want_h[NV];
    static float f[NV + 1], want_f[NV];
    const int64_t lens[] = {1, 3, 7, 33, 257, NV - 1};
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        int64_t n = lens[li];
        h[n] = 0xbeef;
        tt->from_f32(h, vals, n);
        for (int64_t i = 0; i < n; i++) want_h[i] = enc(vals[i]);
        CHECK(memcmp(h, want_h, (size_t)n * 2) == 0, "%s from_f32 (n %lld) differs from the scalar conversion", tt->name, (long long)n);
        CHECK(h[n] == 0xbeef, "%s from_f32 wrote past n %lld", tt->name, (long long)n);
        f[n] = 42.0f;
        tt->to_f32(f, h, n);
        for (int64_t i = 0; i < n; i++) want_f[i] = dec(h[i]);
        CHECK(same_f32(f, want_f, n), "%s to_f32 (n %lld) differs from the scalar conversion", tt->name, (long long)n);
        CHECK(f[n] == 42.0f, "%s to_f32 wrote past n %lld", tt->name, (long long)n);
    }
    // every 16-bit word: to_f32 as the scalar, and back to the same word (a NaN to a NaN)
    static uint16_t all[65536], back[65536];
    static float wide[65536];
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    tt->to_f32(wide, all, 65536);
    tt->from_f32(back, wide, 65536);
    int bad_dec = 0, bad_trip = 0, first = -1;
    for (int i = 0; i < 65536; i++) {
        float d = dec(all[i]);
        if (!(isnan(d) && isnan(wide[i])) && bits(d) != bits(wide[i])) bad_dec++;
        int ok = isnan(wide[i]) ? isnan(dec(back[i])) : back[i] == all[i];
        if (!ok) { bad_trip++; if (first < 0) first = i; }
    }
    CHECK(bad_dec == 0, "%s to_f32: %d words differ from the scalar", tt->name, bad_dec);
    CHECK(bad_trip == 0, "%s: %d words do not survive a round trip (first %#06x -> %#06x)", tt->name, bad_trip, first, first >= 0 ? back[first] : 0);
}

// The spot values the scalar conversions must give (so that the row test compares with
// something right): subnormals, overflow, ties, NaN.
static void test_scalar_cases(void) {
    CHECK(g3_f32_to_f16(5.96046448e-8f) == 0x0001 && g3_f16_to_f32(0x0001) == 5.96046448e-8f, "f16 smallest subnormal");
    CHECK(g3_f32_to_f16(2.98023224e-8f) == 0x0000, "f16: half the smallest subnormal ties to even (zero)");
    CHECK(g3_f32_to_f16(6.09755516e-5f) == 0x03ff && g3_f16_to_f32(0x03ff) == 6.09755516e-5f, "f16 largest subnormal");
    CHECK(g3_f32_to_f16(65504.0f) == 0x7bff && g3_f32_to_f16(65520.0f) == 0x7c00 && g3_f32_to_f16(-1e6f) == 0xfc00, "f16 overflow");
    CHECK(g3_f32_to_f16(1.00048828f) == 0x3c00 && g3_f32_to_f16(1.00146484f) == 0x3c02, "f16 ties to even");
    CHECK(isnan(g3_f16_to_f32(g3_f32_to_f16(NAN))) && isinf(g3_f16_to_f32(0x7c00)), "f16 NaN and inf");
    CHECK(g3_f32_to_bf16(1.00390625f) == 0x3f80 && g3_f32_to_bf16(1.01171875f) == 0x3f82, "bf16 ties to even");
    CHECK(g3_f32_to_bf16(3.4028235e38f) == 0x7f80 && g3_f32_to_bf16(-INFINITY) == 0xff80, "bf16 overflow and -inf");
    CHECK(isnan(g3_bf16_to_f32(g3_f32_to_bf16(from_bits(0x7f800001u)))), "bf16 keeps a signalling NaN a NaN");
    CHECK(g3_bf16_to_f32(g3_f32_to_bf16(1e-40f)) != 0, "bf16 keeps f32 subnormals");
}

static void test_f32(void) {
    const G3TypeTraits *tt = g3_type(G3_F32);
    static float out[NV + 1], back[NV + 1];
    out[NV - 1] = back[NV - 1] = 7.0f;
    tt->from_f32(out, vals, NV - 1);
    tt->to_f32(back, out, NV - 1);
    CHECK(memcmp(out, vals, (NV - 1) * 4) == 0 && memcmp(back, vals, (NV - 1) * 4) == 0, "F32 conversions are not copies");
    CHECK(out[NV - 1] == 7.0f && back[NV - 1] == 7.0f, "F32 wrote past n");
}

// Values only, as C's casts give them, from unaligned sources; g3_to_f32 is the same function.
static void test_values(void) {
    char buf[64 + 1];
    float got[8], via[8];
    const double d[] = {1.5, -2.25, 1e300, -0.0};
    memcpy(buf + 1, d, sizeof d);
    g3_type(G3_F64)->to_f32(got, buf + 1, 4);
    CHECK(got[0] == 1.5f && got[1] == -2.25f && isinf(got[2]) && bits(got[3]) == 0x80000000u, "F64 values");
    const int64_t i64[] = {-3, 1LL << 40, 0};
    memcpy(buf + 1, i64, sizeof i64);
    g3_type(G3_I64)->to_f32(got, buf + 1, 3);
    CHECK(got[0] == -3 && got[1] == 1099511627776.0f && got[2] == 0, "I64 values");
    const int32_t i32[] = {-7, 123456, 2147483647};
    memcpy(buf + 1, i32, sizeof i32);
    g3_type(G3_I32)->to_f32(got, buf + 1, 3);
    g3_to_f32(via, buf + 1, G3_I32, 3);
    CHECK(got[0] == -7 && got[1] == 123456 && got[2] == 2147483648.0f && !memcmp(got, via, 12), "I32 values");
    const uint8_t u8[] = {0, 200, 255};
    g3_type(G3_U8)->to_f32(got, u8, 3);
    CHECK(got[0] == 0 && got[1] == 200 && got[2] == 255, "U8 values");
    const int8_t i8[] = {-128, 5, 127};
    g3_type(G3_I8)->to_f32(got, i8, 3);
    CHECK(got[0] == -128 && got[1] == 5 && got[2] == 127, "I8 values");
    // g3_to_f32 of a weight type is its traits' to_f32
    uint16_t hb[3] = {0x3f80, 0xc000, 0x7fc0};
    g3_to_f32(via, hb, G3_BF16, 3);
    CHECK(via[0] == 1 && via[1] == -2 && isnan(via[2]), "g3_to_f32 BF16");
    via[0] = 9;
    g3_to_f32(via, hb, G3_DTYPE_COUNT, 1);  // unknown: nothing written, no crash
    CHECK(via[0] == 9, "g3_to_f32 wrote for an unknown type");
}

int main(void) {
    make_values();
    test_table();
    test_bytes();
    test_scalar_cases();
    test_f32();
    test_rows(G3_BF16, g3_f32_to_bf16, g3_bf16_to_f32);
    test_rows(G3_F16, g3_f32_to_f16, g3_f16_to_f32);
    test_values();
    return check_done();
}
