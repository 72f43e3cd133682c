// adamw8.c: the 8-bit AdamW block step and its code tables. See adamw8.h.
// The 8-bit code: bitsandbytes' create_dynamic_map (7 exponent "decades" 1e-6..1, each split
// linearly into 2^i (signed) or 2^(i+1) (unsigned) steps, plus 0 and 1): relative precision
// is roughly constant over six orders of magnitude, which suits v (squares of gradients,
// spanning many decades) far better than a linear code. The parameter update uses the fresh
// f32 moments; only what is stored between steps is quantized, as bitsandbytes does.
// (Moved here from train/optim.c, unchanged, so that a backend's op can run it: kernels may not
// depend on train/.)
#include "adamw8.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "cpu/vexp.h"
#include "ops.h"

static float qmap_s[256], qmap_u[256];

// Quantizing to the nearest code by table. The nearest code to x is the number of decision
// thresholds below it: thr[i] is the largest float that the reference (binary search, then
// |x - map[i]| <= |map[i+1] - x|) sends to code i rather than i + 1, found once at init by a
// search over floats, so the answer is the reference's to the last bit. To find the count
// fast, the float line is cut into buckets by the top 16 bits of |x| (1/128 of an octave),
// clamped to [2^-30, 1]: a bucket's entry is the count below its lowest value, and at most
// one threshold lies inside it (the codes are never closer than 1/128 of an octave; init
// checks it). So a code is one byte lookup, one threshold lookup and a comparison, where
// the binary search needed eight dependent loads and made 8-bit AdamW ~35 ns a parameter,
// 30x the 32-bit step.
enum {
    QB_SHIFT = 16,
    QB_A0 = (97 << 23) >> QB_SHIFT,   // |x| below 2^-30 shares the first bucket (codes start at ~3e-7)
    QB_A1 = (127 << 23) >> QB_SHIFT,  // |x| of 1 and above share the last
    QB_M = QB_A1 - QB_A0,             // buckets per sign, less one
    QB_N = 2 * (QB_M + 1),            // keys: negative buckets descending, then positive ascending
};
typedef struct {
    uint8_t c0[QB_N + 4];            // thresholds below each bucket (+ 4: the AVX2 path reads 4 bytes a key)
    float thr[256];                  // decision thresholds, ascending, then +inf
} QTable;
static QTable qtab_s, qtab_u;
static float dev_tables[4][256];  // g3_adamw8_tables: the maps and thresholds, in one piece to upload

static float f32_of(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}
static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}
// Float order as unsigned order (negative floats reversed), and back.
static uint32_t ord_of(float x) { uint32_t u = bits_of(x); return u >> 31 ? ~u : u | 0x80000000u; }
static float of_ord(uint32_t o) { return f32_of(o >> 31 ? o & 0x7FFFFFFFu : ~o); }

// The bucket of x, monotone in x: 0 .. QB_M for x < 0 (the most negative first), then
// QB_M + 1 .. for x >= 0. (NaN is the callers' case.)
static inline int qkey(float x) {
    uint32_t u = bits_of(x);
    int a = (int)((u & 0x7FFFFFFFu) >> QB_SHIFT);
    int m = (a < QB_A0 ? QB_A0 : a > QB_A1 ? QB_A1 : a) - QB_A0;
    return (u >> 31) ? QB_M - m : QB_M + 1 + m;
}

// Returns 0, or -1 if a bucket holds more than one threshold (not so for these maps).
static int qtable_init(QTable *t, const float *map) {
    for (int i = 0; i < 255; i++) {  // largest x in [map[i], map[i+1]) that stays at code i
        uint32_t lo = ord_of(map[i]), hi = ord_of(map[i + 1]);  // at lo the test holds; at hi it fails
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            float x = of_ord(mid);
            if (fabsf(x - map[i]) <= fabsf(map[i + 1] - x)) lo = mid; else hi = mid;
        }
        t->thr[i] = of_ord(lo);
    }
    t->thr[255] = INFINITY;
    int most = 0;
    for (int key = 0; key < QB_N; key++) {
        int neg = key <= QB_M, m = neg ? QB_M - key : key - QB_M - 1;
        uint32_t a = (uint32_t)(QB_A0 + m);
        float lomag = m == 0 ? 0.0f : f32_of(a << QB_SHIFT);
        float himag = m == QB_M ? INFINITY : f32_of(((a + 1) << QB_SHIFT) - 1);
        float x0 = neg ? -himag : lomag, x1 = neg ? -lomag : himag;  // the bucket's ends
        int below = 0, inside = 0;
        for (int i = 0; i < 255; i++) {
            if (t->thr[i] < x0) below++;
            else if (t->thr[i] < x1) inside++;
        }
        t->c0[key] = (uint8_t)below;
        most = G3_MAX(most, inside);
    }
    memset(t->c0 + QB_N, 0, 4);
    return most <= 1 ? 0 : -1;
}

static inline uint8_t quantize_table(const QTable *t, float x) {
    // NaN and +inf: the reference's answers (every comparison fails; inf - a <= inf - b holds)
    if (x != x || x == INFINITY) return x == x ? 254 : 1;
    int c0 = t->c0[qkey(x)];
    return (uint8_t)(c0 + (t->thr[c0] < x));
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void dynamic_map(float *out, int is_signed) {
    double d[256];
    int n = 0;
    for (int i = 0; i < 7; i++) {
        int steps = is_signed ? 1 << i : 1 << (i + 1);
        double scale = pow(10, -6 + i);
        for (int k = 0; k < steps; k++) {
            double b0 = 0.1 + 0.9 * k / steps, b1 = 0.1 + 0.9 * (k + 1) / steps;
            d[n++] = scale * (b0 + b1) / 2;
            if (is_signed) d[n++] = -scale * (b0 + b1) / 2;
        }
    }
    d[n++] = 0;
    d[n++] = 1;
    qsort(d, 256, sizeof d[0], cmp_double);
    for (int i = 0; i < 256; i++) out[i] = (float)d[i];
}

static void qmaps_init(void) {
    // Idempotent and the same bits every time, so a race between threads is harmless; callers
    // run it before any parallel region anyway. The tables are built before the flag value
    // (qmap_u[255] == 1) is stored.
    if (qmap_u[255] == 1.0f) return;
    dynamic_map(qmap_s, 1);
    float u[256];
    dynamic_map(u, 0);
    if (qtable_init(&qtab_s, qmap_s) || qtable_init(&qtab_u, u)) abort();  // a code table unlike the fixed ones above
    memcpy(dev_tables[0], qmap_s, sizeof qmap_s);
    memcpy(dev_tables[1], u, sizeof u);
    memcpy(dev_tables[2], qtab_s.thr, sizeof qtab_s.thr);
    memcpy(dev_tables[3], qtab_u.thr, sizeof qtab_u.thr);
    memcpy(qmap_u, u, sizeof u);
}

const float *g3_qmap_signed(void) { qmaps_init(); return qmap_s; }
const float *g3_qmap_unsigned(void) { qmaps_init(); return qmap_u; }
const float *g3_adamw8_tables(void) { qmaps_init(); return dev_tables[0]; }

uint8_t g3_quantize_nearest(const float *map, float x) {
    int lo = 0, hi = 255;  // invariant: the answer lies in [lo, hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (map[mid] <= x) lo = mid; else hi = mid;
    }
    return (uint8_t)(fabsf(x - map[lo]) <= fabsf(map[hi] - x) ? lo : hi);
}

uint8_t g3_quantize_nearest_fast(const float *map, float x) {
    qmaps_init();
    return quantize_table(map == qmap_s ? &qtab_s : &qtab_u, x);
}

// The scalar steps of an 8-bit block over entries [j0, len): decode the moments into mb, vb,
// step, and fold their absolute values into *mmax, *vmax; then the re-encoding.
static inline void decode_step8(const G3AdamWK *k, float dm, float *p, const float *g, const uint8_t *mq, const uint8_t *vq,
                                float ma, float va, float *mb, float *vb, int j0, int len, float *mmax, float *vmax) {
    for (int j = j0; j < len; j++) {
        mb[j] = qmap_s[mq[j]] * ma;
        vb[j] = qmap_u[vq[j]] * va;
        g3_adamw_one(k, dm, &p[j], &mb[j], &vb[j], g[j]);
        *mmax = fmaxf(*mmax, fabsf(mb[j]));
        *vmax = fmaxf(*vmax, vb[j]);
    }
}
static inline void encode8(uint8_t *mq, uint8_t *vq, const float *mb, const float *vb, float mi, float vi, int j0, int len) {
    for (int j = j0; j < len; j++) {
        mq[j] = quantize_table(&qtab_s, mb[j] * mi);
        vq[j] = quantize_table(&qtab_u, vb[j] * vi);
    }
}
static inline float inv_or_zero(float x) { return x > 0 ? 1 / x : 0; }

// One 8-bit block (len <= G3_ADAMW8_BLOCK values at p, g, mq, vq, with their absmax in *ma,
// *va): decode the moments, step, re-encode with the block's new absmax.
static void adamw8_block_ref(const G3AdamWK *k, float dm, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *ma,
                             float *va, int len) {
    float mb[G3_ADAMW8_BLOCK], vb[G3_ADAMW8_BLOCK], mmax = 0, vmax = 0;
    decode_step8(k, dm, p, g, mq, vq, *ma, *va, mb, vb, 0, len, &mmax, &vmax);
    encode8(mq, vq, mb, vb, inv_or_zero(mmax), inv_or_zero(vmax), 0, len);
    *ma = mmax;
    *va = vmax;
}

#define TGT __attribute__((target("avx2,fma")))

// The table quantizer on 8 lanes (the same steps as quantize_table, so the same codes).
TGT static inline __m256i quantize8(const QTable *t, __m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i a = _mm256_srli_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), QB_SHIFT);
    __m256i m = _mm256_sub_epi32(_mm256_min_epi32(_mm256_max_epi32(a, _mm256_set1_epi32(QB_A0)), _mm256_set1_epi32(QB_A1)),
                                 _mm256_set1_epi32(QB_A0));
    __m256i key = _mm256_blendv_epi8(_mm256_add_epi32(_mm256_set1_epi32(QB_M + 1), m), _mm256_sub_epi32(_mm256_set1_epi32(QB_M), m),
                                     _mm256_srai_epi32(u, 31));
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    key = _mm256_andnot_si256(_mm256_castps_si256(nan), key);  // any valid key for NaN lanes (set below)
    __m256i c0 = _mm256_and_si256(_mm256_i32gather_epi32((const int *)t->c0, key, 1), _mm256_set1_epi32(0xFF));
    __m256 th = _mm256_i32gather_ps(t->thr, c0, 4);
    __m256i code = _mm256_sub_epi32(c0, _mm256_castps_si256(_mm256_cmp_ps(th, x, _CMP_LT_OQ)));  // -1 where below x
    code = _mm256_blendv_epi8(code, _mm256_set1_epi32(1), _mm256_castps_si256(nan));
    return _mm256_blendv_epi8(code, _mm256_set1_epi32(254), _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_set1_ps(INFINITY), _CMP_EQ_OQ)));
}

// 8 codes (0..255 in int32 lanes) stored as 8 bytes.
TGT static inline void store_codes8(uint8_t *d, __m256i c) {
    const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256i b = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(c, pick), _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64((__m128i *)d, _mm256_castsi256_si128(b));
}

// The block with 8 lanes: every operation of g3_adamw_one in the same order (no fusing), so
// the parameters, codes and scales are the same bits as adamw8_block_ref's (tested).
TGT static void adamw8_block_avx2(const G3AdamWK *k, float dm, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *ma,
                                  float *va, int len) {
    float mb[G3_ADAMW8_BLOCK], vb[G3_ADAMW8_BLOCK];
    const __m256 b1 = _mm256_set1_ps(k->b1), b2 = _mm256_set1_ps(k->b2), omb1 = _mm256_set1_ps(k->omb1);
    const __m256 omb2 = _mm256_set1_ps(k->omb2), ss = _mm256_set1_ps(k->step_size), ibc = _mm256_set1_ps(k->inv_sqrt_bc2);
    const __m256 eps = _mm256_set1_ps(k->eps), sc = _mm256_set1_ps(k->scale), vdm = _mm256_set1_ps(dm);
    const __m256 vma = _mm256_set1_ps(*ma), vva = _mm256_set1_ps(*va);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 mx = _mm256_setzero_ps(), vx = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= len; j += 8) {
        __m256i mc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(mq + j)));
        __m256i vc = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(vq + j)));
        __m256 m = _mm256_mul_ps(_mm256_i32gather_ps(qmap_s, mc, 4), vma), v = _mm256_mul_ps(_mm256_i32gather_ps(qmap_u, vc, 4), vva);
        __m256 gs = _mm256_mul_ps(_mm256_loadu_ps(g + j), sc);
        __m256 pv = _mm256_mul_ps(_mm256_loadu_ps(p + j), vdm);
        m = _mm256_add_ps(_mm256_mul_ps(b1, m), _mm256_mul_ps(omb1, gs));
        v = _mm256_add_ps(_mm256_mul_ps(b2, v), _mm256_mul_ps(_mm256_mul_ps(omb2, gs), gs));
        __m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(v), ibc), eps);
        _mm256_storeu_ps(p + j, _mm256_sub_ps(pv, _mm256_mul_ps(ss, _mm256_div_ps(m, den))));
        _mm256_storeu_ps(mb + j, m);
        _mm256_storeu_ps(vb + j, v);
        mx = _mm256_max_ps(_mm256_and_ps(m, absmask), mx);  // a NaN lane keeps mx, as fmaxf does
        vx = _mm256_max_ps(v, vx);
    }
    float mmax = hmax8(mx), vmax = hmax8(vx);
    decode_step8(k, dm, p, g, mq, vq, *ma, *va, mb, vb, j, len, &mmax, &vmax);  // a tensor's last block: scalar tail
    float mi = inv_or_zero(mmax), vi = inv_or_zero(vmax);
    const __m256 vmi = _mm256_set1_ps(mi), vvi = _mm256_set1_ps(vi);
    for (j = 0; j + 8 <= len; j += 8) {
        store_codes8(mq + j, quantize8(&qtab_s, _mm256_mul_ps(_mm256_loadu_ps(mb + j), vmi)));
        store_codes8(vq + j, quantize8(&qtab_u, _mm256_mul_ps(_mm256_loadu_ps(vb + j), vvi)));
    }
    encode8(mq, vq, mb, vb, mi, vi, j, len);
    *ma = mmax;
    *va = vmax;
}

void g3_adamw8_blocks(const G3AdamWK *k, float decay_mul, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *mmax,
                      float *vmax, int64_t n) {
    void (*block8)(const G3AdamWK *, float, float *, const float *, uint8_t *, uint8_t *, float *, float *, int) =
        g3_ops_isa() >= 1 ? adamw8_block_avx2 : adamw8_block_ref;
    const int64_t nb = (n + G3_ADAMW8_BLOCK - 1) / G3_ADAMW8_BLOCK;
#pragma omp for schedule(static) nowait
    for (int64_t b = 0; b < nb; b++) {
        const int64_t i0 = b * G3_ADAMW8_BLOCK;
        const int len = (int)G3_MIN((int64_t)G3_ADAMW8_BLOCK, n - i0);
        block8(k, decay_mul, p + i0, g + i0, mq + i0, vq + i0, &mmax[b], &vmax[b], len);
    }
}
