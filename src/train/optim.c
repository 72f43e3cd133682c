// optim.c: AdamW (32-bit and 8-bit block-wise moments), gradient norm and clipping. See optim.h.
// The element and 8-bit block steps, the code tables and the quantizer are kernels
// (kernels/adamw8.c), shared with the backends' adamw8 op; this file holds the state and
// walks the segments.
#include "optim.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/adamw8.h"
#include "../kernels/ops.h"

G3AdamWConfig g3_adamw_defaults(void) {
    G3AdamWConfig c = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .bits = 32};
    return c;
}

int g3_adamw_init(G3AdamW *o, const G3AdamWConfig *c, int nseg, const int64_t *off, const int64_t *numel,
                  const uint8_t *decay) {
    memset(o, 0, sizeof *o);
    if (c->bits != 32 && c->bits != 8) return g3_errorf("AdamW: bits must be 32 or 8, not %d", c->bits);
    if (!(c->beta1 >= 0 && c->beta1 < 1 && c->beta2 >= 0 && c->beta2 < 1 && c->eps > 0 && c->weight_decay >= 0))
        return g3_errorf("AdamW: betas must be in [0, 1), eps > 0, weight decay >= 0");
    const float *qs = g3_qmap_signed(), *qu = g3_qmap_unsigned();  // built here, before any step's parallel region
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
        memset(o->mq, g3_quantize_nearest(qs, 0), n);
        memset(o->vq, g3_quantize_nearest(qu, 0), n);
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

void g3_adamw_step(G3AdamW *o, float *params, const float *grads, double lr, float grad_scale) {
    const G3AdamWConfig *c = &o->cfg;
    o->t++;
    double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
    G3AdamWK k = {(float)c->beta1, (float)c->beta2, (float)(1 - c->beta1), (float)(1 - c->beta2),
               (float)(lr / bc1), (float)(1 / sqrt(bc2)), (float)c->eps, grad_scale};
    float mul_decay = (float)(1 - lr * c->weight_decay);
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
            for (int64_t i = 0; i < n; i++) g3_adamw_one(&k, dm, &p[i], &m[i], &v[i], g[i]);
        } else {  // the segment's blocks, shared out among this region's threads (an orphaned omp for)
            const int64_t b0 = o->seg_blk[s];
            g3_adamw8_blocks(&k, dm, params + off, grads + off, o->mq + off, o->vq + off, o->mmax + b0, o->vmax + b0, n);
        }
    }
}

#define TGT __attribute__((target("avx2,fma")))

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
