// optim.c: AdamW (32-bit and 8-bit block-wise moments), gradient norm and clipping. See optim.h.
// The 8-bit code: bitsandbytes' create_dynamic_map (7 exponent "decades" 1e-6..1, each split
// linearly into 2^i (signed) or 2^(i+1) (unsigned) steps, plus 0 and 1): relative precision
// is roughly constant over six orders of magnitude, which suits v (squares of gradients,
// spanning many decades) far better than a linear code. The parameter update uses the fresh
// f32 moments; only what is stored between steps is quantized, as bitsandbytes does.
#include "optim.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/cpu/vexp.h"
#include "../kernels/ops.h"

G3AdamWConfig g3_adamw_defaults(void) {
    G3AdamWConfig c = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .bits = 32};
    return c;
}

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
    memcpy(qmap_u, u, sizeof u);
}

const float *g3_qmap_signed(void) { qmaps_init(); return qmap_s; }
const float *g3_qmap_unsigned(void) { qmaps_init(); return qmap_u; }

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

int g3_adamw_init(G3AdamW *o, const G3AdamWConfig *c, int nseg, const int64_t *off, const int64_t *numel,
                  const uint8_t *decay) {
    memset(o, 0, sizeof *o);
    if (c->bits != 32 && c->bits != 8) return g3_errorf("AdamW: bits must be 32 or 8, not %d", c->bits);
    if (!(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1 && c->eps > 0 && c->weight_decay >= 0))
        return g3_errorf("AdamW: betas must be in [0, 1), eps > 0, weight decay >= 0");
    qmaps_init();
    o->cfg = *c;
    o->nseg = nseg;
    o->seg_off = g3_malloc(sizeof(int64_t) * (size_t)(nseg ? nseg : 1));
    o->seg_n = g3_malloc(sizeof(int64_t) * (size_t)(nseg ? nseg : 1));
    o->seg_blk = g3_malloc(sizeof(int64_t) * (size_t)(nseg ? nseg : 1));
    o->seg_decay = g3_malloc((size_t)(nseg ? nseg : 1));
    o->seg_skip = g3_calloc((size_t)(nseg ? nseg : 1), 1);
    if (!o->seg_off || !o->seg_n || !o->seg_blk || !o->seg_decay || !o->seg_skip) goto fail;
    for (int i = 0; i < nseg; i++) {
        o->seg_off[i] = off[i];
        o->seg_n[i] = numel[i];
        o->seg_decay[i] = decay[i];
        o->seg_blk[i] = o->nblocks;
        o->nblocks += (numel[i] + G3_ADAMW8_BLOCK - 1) / G3_ADAMW8_BLOCK;
        if (off[i] + numel[i] > o->n) o->n = off[i] + numel[i];
    }
    size_t n = (size_t)o->n ? (size_t)o->n : 1, nb = (size_t)o->nblocks ? (size_t)o->nblocks : 1;
    if (c->bits == 32) {
        o->m = g3_calloc(n, sizeof(float));
        o->v = g3_calloc(n, sizeof(float));
        if (!o->m || !o->v) goto fail;
    } else {
        o->mq = g3_malloc(n);
        o->vq = g3_malloc(n);
        o->mmax = g3_calloc(nb, sizeof(float));
        o->vmax = g3_calloc(nb, sizeof(float));
        if (!o->mq || !o->vq || !o->mmax || !o->vmax) goto fail;
        // Zero moments: the code of 0 with any scale.
        memset(o->mq, g3_quantize_nearest(qmap_s, 0), n);
        memset(o->vq, g3_quantize_nearest(qmap_u, 0), n);
    }
    return 0;
fail:
    g3_adamw_free(o);
    return g3_error_prefix("AdamW state for %lld parameters", (long long)o->n);
}

int g3_adamw_init_model(G3AdamW *o, const G3AdamWConfig *c, const G3TrainModel *tm, int decay_embed) {
    const int np = tm->np;
    int64_t *off = g3_malloc(sizeof(int64_t) * (size_t)np), *numel = g3_malloc(sizeof(int64_t) * (size_t)np);
    uint8_t *decay = g3_malloc((size_t)np);
    if (!off || !numel || !decay) { free(off); free(numel); free(decay); return -1; }
    for (int j = 0; j < np; j++) {  // one segment per trainable tensor
        const G3Param *p = &tm->p[j];
        off[j] = p->off;
        numel[j] = p->numel;
        decay[j] = p->decay || (decay_embed && p->tensor >= 0 && p->tensor == tm->m.embed_idx);
    }
    int rc = g3_adamw_init(o, c, np, off, numel, decay);
    free(off);
    free(numel);
    free(decay);
    if (!rc) g3_adamw_sync_frozen(o, tm);
    return rc;
}

void g3_adamw_sync_frozen(G3AdamW *o, const G3TrainModel *tm) {
    for (int j = 0; j < tm->np && j < o->nseg; j++) o->seg_skip[j] = tm->p[j].frozen;
}

void g3_adamw_free(G3AdamW *o) {
    free(o->seg_off); free(o->seg_n); free(o->seg_decay); free(o->seg_blk); free(o->seg_skip);
    free(o->m); free(o->v); free(o->mq); free(o->vq); free(o->mmax); free(o->vmax);
    memset(o, 0, sizeof *o);
}

int64_t g3_adamw_state_bytes(const G3AdamW *o, int bits) {
    return bits == 8 ? 2 * o->n + 2 * (int64_t)sizeof(float) * o->nblocks : 2 * (int64_t)sizeof(float) * o->n;
}

typedef struct {
    float b1, b2, omb1, omb2, step_size, inv_sqrt_bc2, eps, scale;
} StepK;

// The update of one parameter given its moments (in place); returns nothing, as the moments
// and parameter are updated through pointers. Written once for both variants so they agree.
static inline void adamw_one(const StepK *k, float decay_mul, float *p, float *m, float *v, float graw) {
    float g = graw * k->scale;
    float pv = *p * decay_mul;
    float mv = k->b1 * *m + k->omb1 * g;
    float vv = k->b2 * *v + k->omb2 * g * g;
    float denom = sqrtf(vv) * k->inv_sqrt_bc2 + k->eps;
    *p = pv - k->step_size * (mv / denom);
    *m = mv;
    *v = vv;
}

// The scalar steps of an 8-bit block over entries [j0, len): decode the moments into mb, vb,
// step, and fold their absolute values into *mmax, *vmax; then the re-encoding.
static inline void decode_step8(const StepK *k, float dm, float *p, const float *g, const uint8_t *mq, const uint8_t *vq,
                                float ma, float va, float *mb, float *vb, int j0, int len, float *mmax, float *vmax) {
    for (int j = j0; j < len; j++) {
        mb[j] = qmap_s[mq[j]] * ma;
        vb[j] = qmap_u[vq[j]] * va;
        adamw_one(k, dm, &p[j], &mb[j], &vb[j], g[j]);
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
static void adamw8_block_ref(const StepK *k, float dm, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *ma,
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

// The block with 8 lanes: every operation of adamw_one in the same order (no fusing), so
// the parameters, codes and scales are the same bits as adamw8_block_ref's (tested).
TGT static void adamw8_block_avx2(const StepK *k, float dm, float *p, const float *g, uint8_t *mq, uint8_t *vq, float *ma,
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

void g3_adamw_step(G3AdamW *o, float *params, const float *grads, double lr, float grad_scale) {
    const G3AdamWConfig *c = &o->cfg;
    o->t++;
    double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
    StepK k = {(float)c->beta1, (float)c->beta2, (float)(1 - c->beta1), (float)(1 - c->beta2),
               (float)(lr / bc1), (float)(1 / sqrt(bc2)), (float)c->eps, grad_scale};
    float mul_decay = (float)(1 - lr * c->weight_decay);
    void (*block8)(const StepK *, float, float *, const float *, uint8_t *, uint8_t *, float *, float *, int) =
        g3_ops_isa() >= 1 ? adamw8_block_avx2 : adamw8_block_ref;
#pragma omp parallel
    for (int s = 0; s < o->nseg; s++) {
        if (o->seg_skip[s]) continue;  // the same on every thread: the loop's worksharing stays aligned
        float dm = o->seg_decay[s] ? mul_decay : 1.0f;
        int64_t off = o->seg_off[s], n = o->seg_n[s];
        if (c->bits == 32) {
            float *p = params + off, *m = o->m + off, *v = o->v + off;
            const float *g = grads + off;
            // simd: the elements are independent (gcc -O2 left the loop scalar, and its
            // sqrt and division made AdamW compute-bound); IEEE sqrt and division give the
            // same bits in vector lanes.
#pragma omp for simd schedule(static) nowait
            for (int64_t i = 0; i < n; i++) adamw_one(&k, dm, &p[i], &m[i], &v[i], g[i]);
        } else {
            int64_t nb = (n + G3_ADAMW8_BLOCK - 1) / G3_ADAMW8_BLOCK;
#pragma omp for schedule(static) nowait
            for (int64_t b = 0; b < nb; b++) {
                int64_t i0 = off + b * G3_ADAMW8_BLOCK, blk = o->seg_blk[s] + b;
                int len = (int)G3_MIN((int64_t)G3_ADAMW8_BLOCK, n - b * G3_ADAMW8_BLOCK);
                block8(&k, dm, params + i0, grads + i0, o->mq + i0, o->vq + i0, &o->mmax[blk], &o->vmax[blk], len);
            }
        }
    }
}

// Sum of squares of g[0, n) in double. Eight running sums: one was a chain of dependent
// double adds (4 cycles each), and the norm took 25 ms of a 35.7M-parameter step, as long as
// AdamW itself.
static double sumsq_ref(const float *g, int64_t n) {
    double s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += (double)g[i + j] * g[i + j];
    for (; i < n; i++) s[0] += (double)g[i] * g[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// The same eight sums in two ymm registers of doubles (the same sums in the same order: the
// same bits): built for plain x86-64, the reference ran at half an element a cycle, a third
// of the memory's speed (7 ms of a (b) step on Zen 5).
TGT static double sumsq_avx2(const float *g, int64_t n) {
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d lo = _mm256_cvtps_pd(_mm_loadu_ps(g + i)), hi = _mm256_cvtps_pd(_mm_loadu_ps(g + i + 4));
        s0 = _mm256_add_pd(s0, _mm256_mul_pd(lo, lo));  // a float's square is exact in double,
        s1 = _mm256_add_pd(s1, _mm256_mul_pd(hi, hi));  // so contracted to FMA or not, the same sum
    }
    double s[8];
    _mm256_storeu_pd(s, s0), _mm256_storeu_pd(s + 4, s1);
    for (; i < n; i++) s[0] += (double)g[i] * g[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

double g3_grad_norm(const float *g, int64_t n) {
    enum { NCHUNK = 256 };
    double part[NCHUNK];
    int64_t chunk = (n + NCHUNK - 1) / NCHUNK;
    double (*sumsq)(const float *, int64_t) = g3_ops_isa() >= 1 ? sumsq_avx2 : sumsq_ref;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < NCHUNK; c++) {
        int64_t a = (int64_t)c * chunk, b = G3_MAX(a, G3_MIN(n, a + chunk));
        part[c] = sumsq(g + a, b - a);
    }
    double s = 0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return sqrt(s);
}

float g3_clip_scale(double norm, double max) {
    if (max <= 0 || !(norm > max)) return 1.0f;
    return (float)(max / (norm + 1e-6));
}
