// optim.c: AdamW (32-bit and 8-bit block-wise moments), gradient norm and clipping. See optim.h.
// The 8-bit code: bitsandbytes' create_dynamic_map (7 exponent "decades" 1e-6..1, each split
// linearly into 2^i (signed) or 2^(i+1) (unsigned) steps, plus 0 and 1): relative precision
// is roughly constant over six orders of magnitude, which suits v (squares of gradients,
// spanning many decades) far better than a linear code. The parameter update uses the fresh
// f32 moments; only what is stored between steps is quantized, as bitsandbytes does.
#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

G3AdamWConfig g3_adamw_defaults(void) {
    G3AdamWConfig c = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .bits = 32};
    return c;
}

static float qmap_s[256], qmap_u[256];

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
    // run it before any parallel region anyway.
    if (qmap_u[255] == 1.0f) return;
    dynamic_map(qmap_s, 1);
    dynamic_map(qmap_u, 0);
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

// The same answer as g3_quantize_nearest without its unpredictable branches (they cost 8-bit
// AdamW ~8 mispredictions a value, most of its step): lo becomes the largest i in [1, 254]
// with map[i] <= x (0 if none) by fixed strides, each a conditional move.
static inline uint8_t quantize_fast(const float *map, float x) {
    int lo = map[128] <= x ? 128 : 0;  // written out: as a loop it was not unrolled
    lo += map[lo + 64] <= x ? 64 : 0;
    lo += map[lo + 32] <= x ? 32 : 0;
    lo += map[lo + 16] <= x ? 16 : 0;
    lo += map[lo + 8] <= x ? 8 : 0;
    lo += map[lo + 4] <= x ? 4 : 0;
    lo += map[lo + 2] <= x ? 2 : 0;
    lo += lo < 254 && map[lo + 1] <= x;
    return (uint8_t)(fabsf(x - map[lo]) <= fabsf(map[lo + 1] - x) ? lo : lo + 1);
}

uint8_t g3_quantize_nearest_fast(const float *map, float x) { return quantize_fast(map, x); }

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
    if (!o->seg_off || !o->seg_n || !o->seg_blk || !o->seg_decay) goto fail;
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
    int nt = tm->m.nt;
    int64_t *numel = g3_malloc(sizeof(int64_t) * (size_t)nt);
    uint8_t *decay = g3_malloc((size_t)nt);
    if (!numel || !decay) { free(numel); free(decay); return -1; }
    for (int i = 0; i < nt; i++) {
        const G3Tensor *t = &tm->m.t[i];
        numel[i] = t->numel;
        decay[i] = t->kind != G3_KIND_NORM && (i != tm->m.embed_idx || decay_embed);
    }
    int rc = g3_adamw_init(o, c, nt, tm->off, numel, decay);
    free(numel);
    free(decay);
    return rc;
}

void g3_adamw_free(G3AdamW *o) {
    free(o->seg_off); free(o->seg_n); free(o->seg_decay); free(o->seg_blk);
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

void g3_adamw_step(G3AdamW *o, float *params, const float *grads, double lr, float grad_scale) {
    const G3AdamWConfig *c = &o->cfg;
    o->t++;
    double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
    StepK k = {(float)c->beta1, (float)c->beta2, (float)(1 - c->beta1), (float)(1 - c->beta2),
               (float)(lr / bc1), (float)(1 / sqrt(bc2)), (float)c->eps, grad_scale};
    float mul_decay = (float)(1 - lr * c->weight_decay);
    const float *ms = qmap_s, *mu = qmap_u;
#pragma omp parallel
    for (int s = 0; s < o->nseg; s++) {
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
                int64_t i0 = off + b * G3_ADAMW8_BLOCK, len = G3_MIN((int64_t)G3_ADAMW8_BLOCK, n - b * G3_ADAMW8_BLOCK);
                int64_t blk = o->seg_blk[s] + b;
                float mb[G3_ADAMW8_BLOCK], vb[G3_ADAMW8_BLOCK], mmax = 0, vmax = 0;
                float ma = o->mmax[blk], va = o->vmax[blk];
                for (int64_t j = 0; j < len; j++) {
                    mb[j] = ms[o->mq[i0 + j]] * ma;
                    vb[j] = mu[o->vq[i0 + j]] * va;
                    adamw_one(&k, dm, &params[i0 + j], &mb[j], &vb[j], grads[i0 + j]);
                    mmax = fmaxf(mmax, fabsf(mb[j]));
                    vmax = fmaxf(vmax, vb[j]);
                }
                float mi = mmax > 0 ? 1 / mmax : 0, vi = vmax > 0 ? 1 / vmax : 0;
                for (int64_t j = 0; j < len; j++) {
                    o->mq[i0 + j] = quantize_fast(ms, mb[j] * mi);
                    o->vq[i0 + j] = quantize_fast(mu, vb[j] * vi);
                }
                o->mmax[blk] = mmax;
                o->vmax[blk] = vmax;
            }
        }
    }
}

double g3_grad_norm(const float *g, int64_t n) {
    enum { NCHUNK = 256 };
    double part[NCHUNK];
    int64_t chunk = (n + NCHUNK - 1) / NCHUNK;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < NCHUNK; c++) {
        double s = 0;
        int64_t a = (int64_t)c * chunk, b = G3_MIN(n, a + chunk);
        for (int64_t i = a; i < b; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return sqrt(s);
}

float g3_clip_scale(double norm, double max) {
    if (max <= 0 || !(norm > max)) return 1.0f;
    return (float)(max / (norm + 1e-6));
}
