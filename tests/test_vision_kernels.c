// test_vision_kernels.c: the tower's fast paths against their references. The row-wise ops'
// vector versions (vops_avx512.c) against the scalar ones (vops.c) on row lengths with tails;
// the blocked attention (vattn.c) against a direct per-row loop in double, with a patch count
// that is not a whole number of its query blocks, in f32 and bf16 products; and a random
// bf16 tower's fast mode (bf16 GEMMs, vector ops) against its exact mode, at every kernel
// level the CPU has (the scalar level runs fast mode on the references). The fused bf16
// attention (vflash.h): each AVX512-BF16 kernel against its scalar reference, and the whole
// pass on either table against the double loop, with a key count that is not a whole number
// of 8-key panels and an odd head width.
#include "check.h"

#include <omp.h>

#include "base/base.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "vision/vision.h"
#include "tensor/dtype.h"
#include "vision/vflash.h"
#include "vision/vops.h"

static void fill(float *x, long n, G3Rng *r, float amp) {
    for (long i = 0; i < n; i++) x[i] = amp * (2.0f * (float)(g3_rng_next(r) >> 40) / (float)(1 << 24) - 1.0f);
}

static void test_vops(void) {
    G3Rng r;
    g3_rng_seed(&r, 3);
    const int lens[] = {1, 15, 16, 33, 100, 1152};
    for (int li = 0; li < (int)G3_ARRAY_LEN(lens); li++) {
        const int n = lens[li], R = 3;
        float *x = malloc(sizeof(float) * R * n), *w = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        float *y0 = malloc(sizeof(float) * R * n), *y1 = malloc(sizeof(float) * R * n);
        fill(x, (long)R * n, &r, 3.0f);
        fill(w, n, &r, 1.0f);
        fill(b, n, &r, 0.5f);
        for (int i = 0; i < R * n; i++) x[i] += 0.7f;  // a mean away from 0
        g3_vops_layernorm(y0, x, w, b, R, n, 1e-6f, 0);
        g3_vops_layernorm(y1, x, w, b, R, n, 1e-6f, 1);
        if (n > 1) CHECK(rel_err(y1, y0, (long)R * n) < 1e-5, "layernorm n=%d rel err %.3g", n, rel_err(y1, y0, (long)R * n));
        memcpy(y0, x, sizeof(float) * R * n);
        memcpy(y1, x, sizeof(float) * R * n);
        g3_vops_bias_gelu(y0, b, R, n, 0, 0);
        g3_vops_bias_gelu(y1, b, R, n, 0, 1);
        CHECK(rel_err(y1, y0, (long)R * n) < 1e-6, "gelu n=%d rel err %.3g", n, rel_err(y1, y0, (long)R * n));
        memcpy(y0, x, sizeof(float) * n);
        memcpy(y1, x, sizeof(float) * n);
        float s0 = g3_vops_softmax_exp(y0, n, 0.3f, 0), s1 = g3_vops_softmax_exp(y1, n, 0.3f, 1);
        CHECK(fabsf(s1 - s0) <= 1e-6f * s0 && rel_err(y1, y0, n) < 1e-6, "softmax n=%d sums %g %g, rel err %.3g", n, s0, s1,
              rel_err(y1, y0, n));
        free(x), free(w), free(b), free(y0), free(y1);
    }
}

// out[NP, D]: softmax(q k^T / sqrt(HD)) v per head, every row seeing every row, in double.
static void attention_ref(float *out, const float *q, const float *k, const float *v, int NP, int D, int NH) {
    const int HD = D / NH;
    double *p = malloc(sizeof(double) * NP);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < NP; i++) {
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < NP; j++) {
                double s = 0;
                for (int d = 0; d < HD; d++) s += (double)q[(long)i * D + h * HD + d] * k[(long)j * D + h * HD + d];
                p[j] = s / sqrt((double)HD);
                mx = fmax(mx, p[j]);
            }
            for (int j = 0; j < NP; j++) sum += p[j] = exp(p[j] - mx);
            for (int d = 0; d < HD; d++) {
                double o = 0;
                for (int j = 0; j < NP; j++) o += p[j] * v[(long)j * D + h * HD + d];
                out[(long)i * D + h * HD + d] = (float)(o / sum);
            }
        }
    free(p);
}

static void test_attention(void) {
    const int NP = 300, D = 48, NH = 3, threads = 2;  // 300 rows: two whole query blocks and a part
    G3Rng r;
    g3_rng_seed(&r, 5);
    float *q = malloc(sizeof(float) * NP * D), *k = malloc(sizeof(float) * NP * D), *v = malloc(sizeof(float) * NP * D);
    float *ref = malloc(sizeof(float) * NP * D), *out = malloc(sizeof(float) * NP * D);
    float *scratch = malloc(sizeof(float) * g3_vision_attention_floats(NP, D, threads));
    fill(q, (long)NP * D, &r, 1.5f);
    fill(k, (long)NP * D, &r, 1.5f);
    fill(v, (long)NP * D, &r, 1.0f);
    attention_ref(ref, q, k, v, NP, D, NH);
    const struct { int bf16, fast; double tol; } cases[] = {{0, 0, 1e-6}, {0, 1, 1e-6}, {1, 1, 2e-2}};
    for (int i = 0; i < (int)G3_ARRAY_LEN(cases); i++) {
        g3_vision_attention(g3_backend_cpu(), cases[i].bf16, cases[i].fast, out, q, k, v, NP, D, NH, 1.0f / sqrtf((float)(D / NH)), scratch, threads);
        double e = rel_err(out, ref, (long)NP * D);
        CHECK(e < cases[i].tol, "attention bf16=%d fast=%d rel err %.3g (at most %.3g)", cases[i].bf16, cases[i].fast, e, cases[i].tol);
        printf("attention bf16=%d fast=%d rel err %.3g\n", cases[i].bf16, cases[i].fast, e);
    }
    free(q), free(k), free(v), free(ref), free(out), free(scratch);
}

static float bf(uint32_t w, int hi) { return g3_bf16_to_f32((uint16_t)(hi ? w >> 16 : w)); }

// vflash's kernels, AVX512-BF16 against the references on the same inputs.
static void test_vflash_kernels(const G3VFlashKernels *ref, const G3VFlashKernels *vk) {
    G3Rng r;
    g3_rng_seed(&r, 17);
    enum { NR = 40, LD = 80, KD = 37, ROWS = 64 };  // head widths up to 73 (odd), a chunk of 64 keys
    float *x = malloc(sizeof(float) * NR * LD);
    fill(x, (long)NR * LD, &r, 2.0f);
    uint32_t *p0 = calloc(8 * KD * 32, 4), *p1 = calloc(8 * KD * 32, 4);
    const int hds[] = {72, 73, 16, 15, 1};
    for (int i = 0; i < (int)G3_ARRAY_LEN(hds); i++) {
        const int hd = hds[i], kd = (hd + 1) / 2, hdp = (hd + 7) / 8 * 8;
        for (int w = 8; w <= 32; w += 24)
            for (int n = w - 3; n <= w; n += 3) {  // some rows missing, all rows there
                memset(p0, 0xab, 4 * (size_t)kd * w), memset(p1, 0xcd, 4 * (size_t)kd * w);
                ref->pack_rows(p0, w, x, LD, n, hd);
                vk->pack_rows(p1, w, x, LD, n, hd);
                CHECK(memcmp(p0, p1, 4 * (size_t)kd * w) == 0, "pack_rows w %d n %d hd %d differs from the reference", w, n, hd);
            }
        const int nk = 38;  // keys, the last 3 past nvalid
        const size_t ps = (size_t)nk / 2 * 8;
        memset(p0, 0xab, 4 * ps * (hdp / 8)), memset(p1, 0xcd, 4 * ps * (hdp / 8));
        ref->pack_cols8(p0, ps, x, LD, nk - 3, nk, hd, hdp);
        vk->pack_cols8(p1, ps, x, LD, nk - 3, nk, hd, hdp);
        CHECK(memcmp(p0, p1, 4 * ps * (hdp / 8)) == 0, "pack_cols8 hd %d differs from the reference", hd);
    }
    // tile and scores on packed operands (q: 32 rows of 72, k: 64 keys of 72)
    uint32_t *kp = malloc(4 * (size_t)ROWS * KD), *qp = malloc(4 * (size_t)KD * 32);
    float *kx = malloc(sizeof(float) * ROWS * 74);
    fill(kx, (long)ROWS * 74, &r, 1.5f);
    for (int b = 0; b < ROWS / 8; b++) ref->pack_rows(kp + (size_t)b * 8 * 36, 8, kx + (size_t)b * 8 * 74, 74, 8, 72);
    ref->pack_rows(qp, 32, x, LD, 32, 72);
    float c0[8 * 40], c1[8 * 40], al[32];
    for (int j = 0; j < 32; j++) al[j] = 0.25f + j / 40.0f;
    for (int withalpha = 0; withalpha < 2; withalpha++)
        for (int kd = 1; kd <= 36; kd += 35) {
            for (int i = 0; i < 8 * 40; i++) c0[i] = c1[i] = (float)(i % 7) - 3.0f;
            ref->tile(c0, 40, kp, qp, kd, withalpha ? al : NULL);
            vk->tile(c1, 40, kp, qp, kd, withalpha ? al : NULL);
            CHECK(rel_err(c1, c0, 8 * 40) < 1e-6, "tile kd %d alpha %d: rel err %.3g", kd, withalpha, rel_err(c1, c0, 8 * 40));
        }
    float *s0 = malloc(sizeof(float) * ROWS * 32), *s1 = malloc(sizeof(float) * ROWS * 32), mx0[32], mx1[32];
    for (int valid = ROWS; valid >= ROWS - 5; valid -= 5) {
        ref->scores(s0, kp, qp, 36, ROWS, valid, mx0);
        vk->scores(s1, kp, qp, 36, ROWS, valid, mx1);
        int bad = 0;
        for (int j = 0; j < 32; j++) {
            float m = -INFINITY;
            for (int i = 0; i < valid; i++) m = fmaxf(m, s1[i * 32 + j]);
            bad += m != mx1[j] || fabsf(mx1[j] - mx0[j]) > 1e-5f * fabsf(mx0[j]);
        }
        CHECK(rel_err(s1, s0, ROWS * 32) < 1e-6 && bad == 0, "scores valid %d: rel err %.3g, %d maxima wrong", valid, rel_err(s1, s0, ROWS * 32), bad);
        // the softmax chunk on those scores, from a first chunk (m = -inf) and from a later one
        for (int later = 0; later < 2; later++) {
            float m0[32], m1[32], l0[32], l1[32], a0[32], a1[32];
            for (int j = 0; j < 32; j++) m0[j] = m1[j] = later ? 0.5f * j - 4.0f : -INFINITY, l0[j] = l1[j] = later ? 3.0f : 0.0f;
            uint32_t w0[ROWS / 2 * 32], w1[ROWS / 2 * 32];
            const float cc = 0.17f * 1.4426950408889634f;
            ref->softmax(w0, s0, ROWS, valid, cc, mx0, m0, l0, a0);
            vk->softmax(w1, s0, ROWS, valid, cc, mx0, m1, l1, a1);
            int pbad = 0;
            for (int i = 0; i < ROWS / 2 * 32; i++)
                for (int hi = 0; hi < 2; hi++) pbad += fabsf(bf(w1[i], hi) - bf(w0[i], hi)) > 0x1p-8f * fabsf(bf(w0[i], hi));  // one bf16 step
            CHECK(pbad == 0 && memcmp(m0, m1, sizeof m0) == 0 && rel_err(l1, l0, 32) < 1e-5 && rel_err(a1, a0, 32) < 1e-5,
                  "softmax valid %d later %d: %d probabilities off, m %s, l rel err %.3g, alpha rel err %.3g", valid, later, pbad,
                  memcmp(m0, m1, sizeof m0) ? "differs" : "same", rel_err(l1, l0, 32), rel_err(a1, a0, 32));
        }
    }
    float o0[29 * 80], o1[29 * 80], l[32];
    for (int j = 0; j < 32; j++) l[j] = 0.5f + j;
    ref->unpack(o0, 80, s0, l, 29, 61);
    vk->unpack(o1, 80, s0, l, 29, 61);
    int ubad = 0;
    for (int j = 0; j < 29; j++) ubad += rel_err(o1 + j * 80, o0 + j * 80, 61) > 1e-6;
    CHECK(ubad == 0, "unpack: %d rows differ", ubad);
    free(x), free(p0), free(p1), free(kp), free(qp), free(kx), free(s0), free(s1);
}

// The whole fused pass against the double loop, on either kernel table (the scalar one at
// every level); bf16 operands and probabilities: ~3e-3 on these (1e-2 allowed; the blocked
// attention in bf16 measures the same).
static void test_vflash(void) {
    const struct { int NP, D, NH; } shapes[] = {{300, 48, 3}, {133, 60, 4}};  // 300: 37.5 key panels; 60 / 4: an odd head width
    for (int si = 0; si < (int)G3_ARRAY_LEN(shapes); si++) {
        const int NP = shapes[si].NP, D = shapes[si].D, NH = shapes[si].NH, threads = 2;
        G3Rng r;
        g3_rng_seed(&r, 23 + si);
        float *q = malloc(sizeof(float) * NP * D), *k = malloc(sizeof(float) * NP * D), *v = malloc(sizeof(float) * NP * D);
        float *ref = malloc(sizeof(float) * NP * D), *o0 = malloc(sizeof(float) * NP * D), *o1 = malloc(sizeof(float) * NP * D);
        void *work = g3_malloc_aligned(g3_vflash_bytes(NP, D, NH, threads));
        fill(q, (long)NP * D, &r, 1.5f);
        fill(k, (long)NP * D, &r, 1.5f);
        fill(v, (long)NP * D, &r, 1.0f);
        attention_ref(ref, q, k, v, NP, D, NH);
        const float scale = 1.0f / sqrtf((float)(D / NH));
        g3_vflash_attention(g3_vflash_ref(), o0, q, k, v, NP, D, NH, scale, work, threads);
        double e0 = rel_err(o0, ref, (long)NP * D);
        CHECK(e0 < 1e-2, "vflash (references) NP %d D %d NH %d: rel err %.3g", NP, D, NH, e0);
        printf("vflash NP %d D %d NH %d: references rel err %.3g", NP, D, NH, e0);
        const G3VFlashKernels *vk = g3_vflash_best();
        if (vk) {
            g3_vflash_attention(vk, o1, q, k, v, NP, D, NH, scale, work, threads);
            double e1 = rel_err(o1, ref, (long)NP * D), e01 = rel_err(o1, o0, (long)NP * D);
            CHECK(e1 < 1e-2 && e01 < 1e-3, "vflash (AVX512-BF16) NP %d D %d NH %d: rel err %.3g, %.3g from the references' pass", NP, D,
                  NH, e1, e01);
            printf(", AVX512-BF16 %.3g (%.3g from the references' pass)", e1, e01);
        }
        printf("\n");
        free(q), free(k), free(v), free(ref), free(o0), free(o1);
        g3_free_aligned(work);
    }
}

// A small random bf16 tower: fast mode within bf16's rounding of exact mode.
static void test_tower_fast(void) {
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    vc.hidden = 64, vc.inter = 160, vc.layers = 2, vc.heads = 4, vc.image_size = 140, vc.tokens = 25;  // 10 x 10 patches
    G3Vision v;
    if (g3_vision_random(&v, &vc, G3_BF16, 9, 0.1f)) { CHECK(0, "%s", g3_error()); return; }
    const int S = vc.image_size, NP = g3_vision_patches(&vc);
    G3Rng r;
    g3_rng_seed(&r, 11);
    float *px = malloc(sizeof(float) * 3 * S * S), *a = malloc(sizeof(float) * NP * vc.hidden), *b = malloc(sizeof(float) * NP * vc.hidden);
    fill(px, 3L * S * S, &r, 1.0f);
    CHECK(g3_vision_encode(&v, g3_backend_cpu(), G3_MM_EXACT, px, a, NULL) == 0, "%s", g3_error());
    CHECK(g3_vision_encode(&v, g3_backend_cpu(), G3_MM_FAST, px, b, NULL) == 0, "%s", g3_error());
    double e = rel_err(b, a, (long)NP * vc.hidden);
    CHECK(e < 3e-2 && e > 0, "bf16 tower fast vs exact rel err %.3g", e);
    printf("bf16 tower: fast vs exact rel err %.3g (level %s)\n", e, g3_isa_name(g3_kernels_level()));
    free(px), free(a), free(b);
    g3_vision_free(&v);
}

int main(void) {
    omp_set_num_threads(2);
    const G3Isa top = g3_kernels_init(G3_ISA_AVX512BF16);
    for (int lv = G3_ISA_SCALAR; lv <= (int)top; lv++) {
        if (lv != G3_ISA_SCALAR && lv != (int)top) continue;  // the references and the best level
        g3_kernels_init((G3Isa)lv);
        test_vops();
        test_attention();
        test_vflash();
        test_tower_fast();
    }
    if (g3_vflash_avx512bf16() && top >= G3_ISA_AVX512BF16) test_vflash_kernels(g3_vflash_ref(), g3_vflash_avx512bf16());
    else printf("vflash kernels: skipped, no AVX512-BF16\n");
    return check_done();
}
