// test_attn_cache.c: the CPU backend's decode attention over a KV cache (backend/cpu/attn_cache.c,
// rows of segments of 1-2 tokens: tasks over blocks of keys, merged by their log-sum-exps)
// against a plain double-precision loop, with one and several blocks, rings of sliding
// layers, the softcap, two query heads per kv head and four, rows of two tokens, several
// sequences in one call. A row's result must not depend on the threads or on the other rows
// of its call (bit for bit), and a row of one block (at most 128 visible keys) must be the
// single softmax's of before the blocks (the same kernels in the same order), bit for bit.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/backend_cpu.h"
#include "check.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"

enum { HD = 40, SLOTS = 3, CTX = 1100 };

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) / 16777216.0 - 0.5);
}

typedef struct {
    G3KVCache kv;
    int cap[1];
    float *k[1], *v[1];
} Cache;

// One layer's cache of nkv heads, a ring of cap positions, random keys and values.
static void cache_init(Cache *c, int nkv, int cap, unsigned seed) {
    c->cap[0] = cap;
    const long n = (long)SLOTS * nkv * cap * HD;
    c->k[0] = malloc(n * sizeof(float));
    c->v[0] = malloc(n * sizeof(float));
    for (long i = 0; i < n; i++) c->k[0][i] = 2 * frand(&seed), c->v[0][i] = frand(&seed);
    c->kv = (G3KVCache){.layers = 1, .slots = SLOTS, .ctx = CTX, .nkv = nkv, .hd = HD, .cap = c->cap, .k = c->k, .v = c->v};
}

// Key or value row of position p (slot seq, kv head kh): the cache before pos0, else the call's row.
static const float *kv_row(const Cache *c, const float *cache, const float *rows, const G3Segment *sg, int r0, int seq, int kh,
                           int p) {
    const int nkv = c->kv.nkv, cap = c->cap[0];
    if (p < sg->pos0) return cache + (((long)seq * nkv + kh) * cap + p % cap) * HD;
    return rows + (long)(r0 + p - sg->pos0) * nkv * HD + (long)kh * HD;
}

// The reference: per row and head, scores in double, softcap, softmax, weighted values.
static void reference(float *out, const Cache *c, const G3Segment *segs, int nseg, const float *q, const float *k, const float *v,
                      int NH, int window, float scale, float softcap) {
    const int nkv = c->kv.nkv, G = NH / nkv;
    static double sc[CTX];
    for (int s = 0, r0 = 0; s < nseg; r0 += segs[s].n, s++)
        for (int i = 0; i < segs[s].n; i++) {
            const int p = segs[s].pos0 + i, lo = window > 0 ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
            for (int h = 0; h < NH; h++) {
                const float *qh = q + (long)(r0 + i) * NH * HD + (long)h * HD;
                double mx = -INFINITY, sum = 0, o[HD] = {0};
                for (int kp = lo; kp <= p; kp++) {
                    const float *kr = kv_row(c, c->k[0], k, &segs[s], r0, segs[s].seq, h / G, kp);
                    double d = 0;
                    for (int e = 0; e < HD; e++) d += (double)qh[e] * kr[e];
                    d *= scale;
                    if (softcap > 0) d = tanh(d / softcap) * softcap;
                    sc[kp - lo] = d;
                    mx = d > mx ? d : mx;
                }
                for (int kp = lo; kp <= p; kp++) sum += sc[kp - lo] = exp(sc[kp - lo] - mx);
                for (int kp = lo; kp <= p; kp++) {
                    const float *vr = kv_row(c, c->v[0], v, &segs[s], r0, segs[s].seq, h / G, kp);
                    for (int e = 0; e < HD; e++) o[e] += sc[kp - lo] / sum * vr[e];
                }
                for (int e = 0; e < HD; e++) out[(long)(r0 + i) * NH * HD + (long)h * HD + e] = (float)o[e];
            }
        }
}

// The single softmax over all of a row's keys, with the kernels the blocks use (the decode
// attention before the blocks): what a row of one block must give bit for bit.
static void single_softmax(float *out, const Cache *c, const G3Segment *sg, int r0, int i, const float *q, const float *k,
                           const float *v, int NH, int window, float scale, float softcap) {
    const int nkv = c->kv.nkv, G = NH / nkv, p = sg->pos0 + i, lo = window > 0 ? (p - window + 1 > 0 ? p - window + 1 : 0) : 0;
    static float sc[CTX];
    for (int h = 0; h < NH; h++) {
        const float *qh = q + (long)(r0 + i) * NH * HD + (long)h * HD;
        for (int kp = lo; kp <= p; kp++) {
            float d = g3_dot(qh, kv_row(c, c->k[0], k, sg, r0, sg->seq, h / G, kp), HD) * scale;
            sc[kp - lo] = softcap > 0 ? tanhf(d / softcap) * softcap : d;
        }
        g3_softmax(sc, p - lo + 1);
        float *o = out + (long)(r0 + i) * NH * HD + (long)h * HD;
        memset(o, 0, HD * sizeof(float));
        for (int kp = lo; kp <= p; kp++) g3_axpy(o, sc[kp - lo], kv_row(c, c->v[0], v, sg, r0, sg->seq, h / G, kp), HD);
    }
}

static void run_case(int nkv, int NH, int cap, int window, float softcap, const G3Segment *segs, int nseg, unsigned seed) {
    Cache c;
    cache_init(&c, nkv, cap, seed);
    int R = 0;
    for (int s = 0; s < nseg; s++) R += segs[s].n;
    float *q = malloc((size_t)R * NH * HD * sizeof(float)), *k = malloc((size_t)R * nkv * HD * sizeof(float));
    float *v = malloc((size_t)R * nkv * HD * sizeof(float)), *out = malloc((size_t)R * NH * HD * sizeof(float));
    float *ref = malloc((size_t)R * NH * HD * sizeof(float)), *one = malloc((size_t)R * NH * HD * sizeof(float));
    for (long i = 0; i < (long)R * NH * HD; i++) q[i] = 2 * frand(&seed);
    for (long i = 0; i < (long)R * nkv * HD; i++) k[i] = 2 * frand(&seed), v[i] = frand(&seed);
    const float scale = 1.0f / sqrtf((float)HD);
    G3Backend *be = g3_backend_cpu();
    const long QD = (long)NH * HD;
    char what[200];
    snprintf(what, sizeof what, "nkv %d, heads %d, cap %d, window %d, softcap %g, %d segments (first at %d)", nkv, NH, cap, window,
             softcap, nseg, segs[0].pos0);
    // every thread count gives the same bits
    for (int th = 1; th <= 3; th++) {
        omp_set_num_threads(th);
        memset(out, 0xff, (size_t)R * QD * sizeof(float));
        CHECK(g3_cpu_attention_cache(be, out, &c.kv, 0, segs, nseg, q, k, v, NH, window, scale, softcap, NULL, G3_MM_FAST) == 0,
              "%s", what);
        if (th == 1) {
            reference(ref, &c, segs, nseg, q, k, v, NH, window, scale, softcap);
            double e = rel_err(out, ref, (long)R * QD);
            CHECK(e < 2e-6, "%s: rel err %.3g against the double loop", what, e);
            memcpy(one, out, (size_t)R * QD * sizeof(float));
        } else {
            CHECK(!memcmp(one, out, (size_t)R * QD * sizeof(float)), "%s: %d threads differ from 1", what, th);
        }
    }
    omp_set_num_threads(2);
    // each row alone in its call gives its bits in the batch; rows of <= 128 keys: the single softmax's
    for (int s = 0, r0 = 0; s < nseg; r0 += segs[s].n, s++) {
        G3Segment alone = segs[s];
        float *o1 = malloc((size_t)alone.n * QD * sizeof(float));
        CHECK(g3_cpu_attention_cache(be, o1, &c.kv, 0, &alone, 1, q + r0 * QD, k + (long)r0 * nkv * HD, v + (long)r0 * nkv * HD, NH,
                                     window, scale, softcap, NULL, G3_MM_FAST) == 0,
              "%s", what);
        CHECK(!memcmp(o1, one + r0 * QD, (size_t)alone.n * QD * sizeof(float)), "%s: segment %d alone differs from the batch", what, s);
        for (int i = 0; i < alone.n; i++) {
            const int p = alone.pos0 + i, S = window > 0 && p + 1 > window ? window : p + 1;
            if (S > 128) continue;
            single_softmax(ref, &c, &segs[s], r0, i, q, k, v, NH, window, scale, softcap);
            CHECK(!memcmp(ref + (long)(r0 + i) * QD, one + (long)(r0 + i) * QD, QD * sizeof(float)),
                  "%s: row at %d (%d keys, one block) differs from the single softmax", what, p, S);
        }
        free(o1);
    }
    free(q), free(k), free(v), free(out), free(ref), free(one), free(c.k[0]), free(c.v[0]);
}

int main(void) {
    g3_kernels_init(G3_ISA_AVX512BF16);
    for (int lvl = 0; lvl < 2; lvl++) {
        if (lvl) g3_kernels_init(G3_ISA_SCALAR);  // the scalar softmax / dot / axpy too
        // one row at many positions: 1 block, exactly 128 keys, 129, several, the 16-block cap
        const int pos[] = {0, 5, 127, 128, 300, 1000, 1099};
        for (unsigned i = 0; i < sizeof pos / sizeof *pos; i++) {
            G3Segment sg = {1, pos[i], 1, NULL};
            run_case(1, 4, CTX, 0, 0, &sg, 1, 10 + i);
            run_case(2, 4, CTX, 0, 50.0f, &sg, 1, 20 + i);
        }
        // sliding layers: a ring of the window's positions, the window wrapped
        for (int w = 0; w < 3; w++) {
            const int W = (int[]){100, 129, 512}[w];
            const int pos2[] = {50, W - 1, W, W + 7, 900};
            for (unsigned i = 0; i < sizeof pos2 / sizeof *pos2; i++) {
                G3Segment sg = {0, pos2[i], 1, NULL};
                run_case(1, 4, W, W, 0, &sg, 1, 30 + i);
            }
        }
        // a batch: rows of 1 and 2 tokens of three sequences at different lengths
        G3Segment b[3] = {{0, 130, 1, NULL}, {2, 7, 2, NULL}, {1, 640, 2, NULL}};
        run_case(2, 6, CTX, 0, 30.0f, b, 3, 99);
        G3Segment bw[2] = {{0, 400, 2, NULL}, {1, 3, 1, NULL}};
        run_case(1, 2, 256, 256, 0, bw, 2, 77);
    }
    return check_done();
}
