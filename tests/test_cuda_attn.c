// test_cuda_attn.c: attention over the KV cache on the GPU against a scalar reference in
// double that reads every key from the full history: decode rows of several sequences at
// different lengths (one launch), split-K over long contexts, sliding-window rings that have
// wrapped, segments whose own keys come from the call's rows, the softcap, grouped-query
// heads 1 to 8 per kv head, the prefill kernel on segments longer than the window, and the
// cache append afterwards. Cache slots nothing has written hold NaN, so a read of one fails.
#ifndef G3_CUDA
#include <stdio.h>
int main(void) {
    puts("test_cuda_attn: skipped: built without CUDA (make CUDA=1)");
    return 0;
}
#else
#include "cuda/cuda_test.h"

typedef struct {
    int seq, pos0, n;
} Seg;

typedef struct {
    int nh, nkv, hd, window, ctx;
    float softcap;
} Shape;

static void attn_ref(float *out, const float *q, const float *Kh, const float *Vh, const Shape *s, int seq, int p) {
    const int G = s->nh / s->nkv, lo = s->window ? (p - s->window + 1 > 0 ? p - s->window + 1 : 0) : 0, S = p + 1 - lo;
    double *sc = malloc(sizeof(double) * S);
    for (int h = 0; h < s->nh; h++) {
        const int kh = h / G;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < S; j++) {
            const float *kr = Kh + (((long)seq * s->ctx + lo + j) * s->nkv + kh) * s->hd;
            double d = 0;
            for (int e = 0; e < s->hd; e++) d += (double)q[h * s->hd + e] * kr[e];
            d /= sqrt((double)s->hd);
            if (s->softcap > 0) d = tanh(d / s->softcap) * s->softcap;
            sc[j] = d;
            if (d > mx) mx = d;
        }
        for (int j = 0; j < S; j++) sum += (sc[j] = exp(sc[j] - mx));
        for (int e = 0; e < s->hd; e++) {
            double o = 0;
            for (int j = 0; j < S; j++) o += sc[j] * Vh[(((long)seq * s->ctx + lo + j) * s->nkv + kh) * s->hd + e];
            out[h * s->hd + e] = (float)(o / sum);
        }
    }
    free(sc);
}

static void run_case(G3Cuda *cu, const char *name, const Shape *s, const Seg *segs, int nseg) {
    const int hd = s->hd, cap = s->window && s->window < s->ctx ? s->window : s->ctx;
    int slots = 0, rows = 0, max_keys = 0;
    for (int i = 0; i < nseg; i++) {
        if (segs[i].seq + 1 > slots) slots = segs[i].seq + 1;
        rows += segs[i].n;
    }
    const long hist = (long)slots * s->ctx * s->nkv * hd, cache = (long)slots * s->nkv * cap * hd;
    float *Kh = malloc(sizeof(float) * hist), *Vh = malloc(sizeof(float) * hist);
    fill(Kh, hist, 1.0f);
    fill(Vh, hist, 1.0f);
    float *kc = malloc(sizeof(float) * cache), *vc = malloc(sizeof(float) * cache);
    memset(kc, 0xff, sizeof(float) * cache);  // NaN: never written
    memset(vc, 0xff, sizeof(float) * cache);
    float *q = malloc(sizeof(float) * rows * s->nh * hd), *k = malloc(sizeof(float) * rows * s->nkv * hd),
          *v = malloc(sizeof(float) * rows * s->nkv * hd), *ref = malloc(sizeof(float) * rows * s->nh * hd),
          *got = malloc(sizeof(float) * rows * s->nh * hd);
    G3CuRow *meta = malloc(sizeof(G3CuRow) * rows);
    fill(q, (long)rows * s->nh * hd, 3.0f);
    for (int i = 0, r = 0; i < nseg; i++) {
        const Seg *g = &segs[i];
        for (int p = 0; p < g->pos0; p++)  // the cache as earlier calls left it
            for (int kh = 0; kh < s->nkv; kh++) {
                long dst = (((long)g->seq * s->nkv + kh) * cap + p % cap) * hd, src = (((long)g->seq * s->ctx + p) * s->nkv + kh) * hd;
                memcpy(kc + dst, Kh + src, sizeof(float) * hd);
                memcpy(vc + dst, Vh + src, sizeof(float) * hd);
            }
        for (int j = 0; j < g->n; j++, r++) {
            const int p = g->pos0 + j;
            memcpy(k + (long)r * s->nkv * hd, Kh + ((long)g->seq * s->ctx + p) * s->nkv * hd, sizeof(float) * s->nkv * hd);
            memcpy(v + (long)r * s->nkv * hd, Vh + ((long)g->seq * s->ctx + p) * s->nkv * hd, sizeof(float) * s->nkv * hd);
            meta[r] = (G3CuRow){g->seq, p, r - j, g->n};
            attn_ref(ref + (long)r * s->nh * hd, q + (long)r * s->nh * hd, Kh, Vh, s, g->seq, p);
            int keys = s->window && p + 1 > s->window ? s->window : p + 1;
            if (keys > max_keys) max_keys = keys;
        }
    }
    const G3CuAttn a = {s->nh, s->nkv, hd, cap, s->window, 1.0f / sqrtf((float)hd), s->softcap};
    float *dq = dev_from(cu, q, sizeof(float) * rows * s->nh * hd), *dk = dev_from(cu, k, sizeof(float) * rows * s->nkv * hd),
          *dv = dev_from(cu, v, sizeof(float) * rows * s->nkv * hd), *dkc = dev_from(cu, kc, sizeof(float) * cache),
          *dvc = dev_from(cu, vc, sizeof(float) * cache), *dout = dev_from(cu, NULL, sizeof(float) * rows * s->nh * hd);
    G3CuRow *dmeta = dev_from(cu, meta, sizeof(G3CuRow) * rows);
    const long no = (long)rows * s->nh * hd;
    // decode kernel over every row at once, at the tight key bound and at a loose one (more splits)
    for (int loose = 0; loose < 2; loose++) {
        poison(cu, dout, sizeof(float) * no);
        CHECK(g3cu_attn_decode(cu, dout, dq, dk, dv, dkc, dvc, dmeta, rows, loose ? 8 * max_keys : max_keys, &a) == 0, "%s", g3_error());
        to_host(cu, got, dout, sizeof(float) * no);
        double e = rel_err(got, ref, no);
        CHECK(all_finite(got, no) && e < 1e-5, "%s: decode kernel (keys bound x%d): rel err %.3g", name, loose ? 8 : 1, e);
    }
    // prefill kernel, one launch per segment
    poison(cu, dout, sizeof(float) * no);
    for (int i = 0, r = 0; i < nseg; r += segs[i].n, i++)
        CHECK(g3cu_attn_prefill(cu, dout, dq, dk, dv, dkc, dvc, r, segs[i].n, segs[i].seq, segs[i].pos0, &a) == 0, "%s", g3_error());
    to_host(cu, got, dout, sizeof(float) * no);
    double e = rel_err(got, ref, no);
    CHECK(all_finite(got, no) && e < 1e-5, "%s: prefill kernel: rel err %.3g", name, e);
    // the fast mode's tensor-core prefill: q, k, v and the probabilities rounded to bf16
    if (g3cu_attn_mma_supported(hd)) {
        poison(cu, dout, sizeof(float) * no);
        for (int i = 0, r = 0; i < nseg; r += segs[i].n, i++)
            CHECK(g3cu_attn_prefill_mma(cu, dout, NULL, dq, dk, dv, dkc, dvc, r, segs[i].n, segs[i].seq, segs[i].pos0, &a) == 0,
                  "%s", g3_error());
        to_host(cu, got, dout, sizeof(float) * no);
        e = rel_err(got, ref, no);
        CHECK(all_finite(got, no) && e < 1e-2, "%s: tensor-core prefill kernel: rel err %.3g", name, e);
    }
    // append, then the cache must hold what the CPU's ring would
    CHECK(g3cu_kv_append(cu, dkc, dvc, dk, dv, dmeta, rows, &a) == 0, "%s", g3_error());
    for (int i = 0; i < nseg; i++)
        for (int p = segs[i].pos0; p < segs[i].pos0 + segs[i].n; p++)
            for (int kh = 0; kh < s->nkv; kh++) {
                long dst = (((long)segs[i].seq * s->nkv + kh) * cap + p % cap) * hd, src = (((long)segs[i].seq * s->ctx + p) * s->nkv + kh) * hd;
                memcpy(kc + dst, Kh + src, sizeof(float) * hd);
                memcpy(vc + dst, Vh + src, sizeof(float) * hd);
            }
    float *gk = malloc(sizeof(float) * cache), *gv = malloc(sizeof(float) * cache);
    to_host(cu, gk, dkc, sizeof(float) * cache);
    to_host(cu, gv, dvc, sizeof(float) * cache);
    CHECK(!memcmp(gk, kc, sizeof(float) * cache) && !memcmp(gv, vc, sizeof(float) * cache), "%s: cache after append", name);
    g3cu_free(cu, dq); g3cu_free(cu, dk); g3cu_free(cu, dv); g3cu_free(cu, dkc); g3cu_free(cu, dvc); g3cu_free(cu, dout);
    g3cu_free(cu, dmeta);
    free(Kh); free(Vh); free(kc); free(vc); free(q); free(k); free(v); free(ref); free(got); free(meta); free(gk); free(gv);
}

int main(void) {
    G3Cuda *cu = cuda_test_start("test_cuda_attn");
    if (!cu) return 0;
    // Gemma 3 1B's attention (4 heads on 1 kv head, 256 wide), global layer: a batch of
    // sequences at different lengths, one of them a 3-row segment
    Shape g1 = {4, 1, 256, 0, 320, 0};
    Seg s1[] = {{0, 0, 1}, {1, 150, 1}, {2, 318, 1}, {3, 40, 3}};
    run_case(cu, "1B global, batch", &g1, s1, 4);
    // its sliding layer with a ring of 16 that has wrapped, 2 heads per kv head, softcap
    Shape l1 = {4, 2, 64, 16, 200, 50.0f};
    Seg s2[] = {{0, 5, 1}, {1, 16, 1}, {2, 100, 1}, {3, 30, 3}, {4, 0, 2}};
    run_case(cu, "sliding ring, softcap", &l1, s2, 5);
    // one long row (split-K over many ranges), one query head per kv head, narrow heads
    Shape g2 = {8, 8, 32, 0, 3000, 0};
    Seg s3[] = {{0, 2999, 1}};
    run_case(cu, "long context", &g2, s3, 1);
    // 8 heads per kv head
    Shape g3 = {8, 1, 128, 0, 600, 0};
    Seg s4[] = {{0, 513, 1}, {1, 77, 1}};
    run_case(cu, "8 heads per kv head", &g3, s4, 2);
    // the group sizes of small models: the default model's 5 heads on one kv head (head dim 64,
    // a sliding ring), GemmaZero's 3 (6 on 2, 128 wide), and 6 and 7; decode rows and prefill
    // segments in one batch
    Shape g5h = {5, 1, 64, 32, 300, 0};
    Seg s5h[] = {{0, 5, 1}, {1, 100, 1}, {2, 200, 70}, {3, 0, 40}};
    run_case(cu, "5 heads per kv head (the default model), ring", &g5h, s5h, 4);
    Shape g3h = {6, 2, 128, 0, 700, 0};
    Seg s3h[] = {{0, 600, 1}, {1, 31, 3}, {2, 10, 300}};
    run_case(cu, "3 heads per kv head (GemmaZero)", &g3h, s3h, 3);
    Shape g6h = {12, 2, 64, 0, 200, 30.0f};
    Seg s6h[] = {{0, 150, 1}, {1, 0, 2}};
    run_case(cu, "6 heads per kv head, softcap", &g6h, s6h, 2);
    Shape g7h = {7, 1, 32, 0, 2500, 0};
    Seg s7h[] = {{0, 2400, 1}};
    run_case(cu, "7 heads per kv head, long context", &g7h, s7h, 1);
    // prefill: segments longer than the window on a wrapped ring, and a long global one
    Shape l2 = {4, 2, 64, 16, 200, 0};
    Seg s5[] = {{0, 20, 45}, {1, 0, 37}};
    run_case(cu, "prefill sliding", &l2, s5, 2);
    Shape g4 = {4, 1, 256, 0, 120, 30.0f};
    Seg s6[] = {{0, 10, 70}};
    run_case(cu, "prefill global, softcap", &g4, s6, 1);
    // long segments: several query blocks and key tiles of the tensor-core kernel, a window
    // inside the segment, a segment after a wrapped ring, GQA
    Shape g5 = {4, 1, 256, 0, 1100, 0};
    Seg s7[] = {{0, 0, 1024}, {1, 37, 301}};
    run_case(cu, "long prefill, 1B global", &g5, s7, 2);
    Shape l3 = {4, 1, 256, 512, 1400, 0};
    Seg s8[] = {{0, 0, 1000}, {1, 700, 333}};
    run_case(cu, "long prefill, 1B sliding 512", &l3, s8, 2);
    Shape g6 = {8, 2, 128, 100, 400, 50.0f};
    Seg s9[] = {{0, 130, 190}};
    run_case(cu, "long prefill, GQA 4, window 100, softcap", &g6, s9, 1);
    // shapes the kernels do not take are refused by name
    G3CuAttn bad = {4, 3, 64, 16, 0, 1, 0};
    CHECK(g3cu_attn_decode(cu, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 1, 1, &bad) == -1 && strstr(g3_error(), "kv heads"), "%s",
          g3_error());
    CHECK(g3cu_sync(cu) == 0, "%s", g3_error());
    g3cu_delete(cu);
    return check_done();
}
#endif
