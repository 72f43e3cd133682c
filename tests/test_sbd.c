// test_sbd.c: Set Block Decoding (train/sbd.h, gen/sbd.h, the masked attention ops).
// - the masked attention's fast kernels equal their scalar references, the references equal a
//   direct double-precision computation of the mask's definition (forward) and finite
//   differences (backward); an all-clean mask is causal attention;
// - the doubled layout: positions, blocks, masks only where eligible, targets, odd lengths;
// - on the tiny fixtures (sliding window 8; Gemma 2's softcaps), the training layout and the
//   inference layout (KV cache + block rows) give the same block logits (exact mode);
// - generation with the KV cache equals generation by full recomputation; gamma = 0 reveals
//   one token a pass and equals a greedy decoding of the block path written here over the
//   training pass; the command forms run.
#include <math.h>
#include <string.h>

#include "check.h"
#include "tok_testdata.h"
#include "base/base.h"
#include "experiments/sbd_tasks.h"
#include "gen/sbd.h"
#include "kernels/train_ops.h"
#include "model/forward.h"
#include "train/sbd.h"
#include "train/train.h"

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

// out[B*T, NH*HD] in double by the mask's definition.
static void naive(double *out, const float *q, const float *k, const float *v, const G3AttnMask *mk, int B, int T, int NH, int NKV,
                  int HD, int window, float scale, float cap) {
    const int G = NH / NKV;
    double *p = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < T; j++) {
                    p[j] = -INFINITY;
                    if (!g3_attn_mask_sees(mk, t, j, window)) continue;
                    double z = 0;
                    for (int d = 0; d < HD; d++)
                        z += (double)q[((long)b * T + t) * NH * HD + h * HD + d] * k[((long)b * T + j) * NKV * HD + (h / G) * HD + d];
                    z *= scale;
                    if (cap > 0) z = tanh(z / cap) * cap;
                    p[j] = z;
                    mx = z > mx ? z : mx;
                }
                for (int j = 0; j < T; j++) sum += p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx);
                for (int d = 0; d < HD; d++) {
                    double o = 0;
                    for (int j = 0; j < T; j++) o += p[j] / sum * v[((long)b * T + j) * NKV * HD + (h / G) * HD + d];
                    out[((long)b * T + t) * NH * HD + h * HD + d] = o;
                }
            }
    free(p);
}

static void test_kernels(void) {
    const int B = 2, L = 7, T = 2 * L, NH = 4, NKV = 2, HD = 8, QD = NH * HD, KD = NKV * HD;
    G3Sbd sbd;
    CHECK(g3_sbd_init(&sbd, L, 3, 3, 4) == 0, "%s", g3_error());
    uint64_t seed = 7;
    const long nq = (long)B * T * QD, nk = (long)B * T * KD;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk);
    float *o1 = malloc(sizeof(float) * nq), *o2 = malloc(sizeof(float) * nq), *dout = malloc(sizeof(float) * nq);
    float *lse1 = malloc(sizeof(float) * B * NH * T), *lse2 = malloc(sizeof(float) * B * NH * T);
    float *dq1 = malloc(sizeof(float) * nq), *dk1 = malloc(sizeof(float) * nk), *dv1 = malloc(sizeof(float) * nk);
    float *dq2 = malloc(sizeof(float) * nq), *dk2 = malloc(sizeof(float) * nk), *dv2 = malloc(sizeof(float) * nk);
    float *dkh = malloc(sizeof(float) * nq), *dvh = malloc(sizeof(float) * nq);
    float *scr = malloc(sizeof(float) * (g3_attention_masked_scratch(T) + 3 * T + g3_attention_scratch(T, HD)));
    double *ref = malloc(sizeof(double) * nq), *rp = malloc(sizeof(double) * nq), *rm = malloc(sizeof(double) * nq);
    for (long i = 0; i < nq; i++) q[i] = frand(&seed), dout[i] = frand(&seed);
    for (long i = 0; i < nk; i++) k[i] = frand(&seed), v[i] = frand(&seed);
    for (int c = 0; c < 4; c++) {
        const int window = c & 1 ? 4 : 0;
        const float cap = c & 2 ? 2.0f : 0.0f, scale = 0.9f;
        g3_attention_masked_forward_ref(o1, lse1, q, k, v, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap, scr, 1);
        g3_attention_masked_forward(o2, lse2, q, k, v, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap, scr, 1);
        naive(ref, q, k, v, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap);
        double e = 0;
        for (long i = 0; i < nq; i++) e = fmax(e, fabs(o1[i] - ref[i]));
        CHECK(e < 1e-6, "case %d: reference forward vs double: %g", c, e);
        CHECK(rel_err(o2, o1, nq) < 1e-6 && rel_err(lse2, lse1, B * NH * T) < 1e-6, "case %d: fast forward vs reference", c);
        g3_attention_masked_backward_ref(dq1, dk1, dv1, dkh, dvh, dout, q, k, v, lse1, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap, scr, 1);
        g3_attention_masked_backward(dq2, dk2, dv2, dkh, dvh, dout, q, k, v, lse2, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap, scr, 1);
        CHECK(rel_err(dq2, dq1, nq) < 1e-5 && rel_err(dk2, dk1, nk) < 1e-5 && rel_err(dv2, dv1, nk) < 1e-5, "case %d: fast backward: %g %g %g", c,
              rel_err(dq2, dq1, nq), rel_err(dk2, dk1, nk), rel_err(dv2, dv1, nk));
        // finite differences of sum(out . dout) in double, at a few entries of q, k and v
        float *ts[3] = {q, k, v}, *gs[3] = {dq1, dk1, dv1};
        const long ns[3] = {nq, nk, nk};
        for (int w = 0; w < 3; w++)
            for (long i = 3; i < ns[w]; i += ns[w] / 5) {
                const float keep = ts[w][i], h = 1e-3f;
                ts[w][i] = keep + h;
                naive(rp, q, k, v, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap);
                ts[w][i] = keep - h;
                naive(rm, q, k, v, &sbd.mask, B, T, NH, NKV, HD, window, scale, cap);
                ts[w][i] = keep;
                double fd = 0;
                for (long j = 0; j < nq; j++) fd += (rp[j] - rm[j]) * dout[j];
                fd /= 2.0 * ((double)(keep + h) - keep);
                CHECK(fabs(fd - gs[w][i]) < 2e-3 * (1 + fabs(fd)), "case %d tensor %d entry %ld: backward %g vs finite differences %g", c, w, i,
                      gs[w][i], fd);
            }
    }
    // all rows clean at positions 0..T-1: causal attention
    G3Sbd c1;
    CHECK(g3_sbd_init(&c1, T, 1, 1, 4) == 0, "init");
    for (int t = 0; t < T; t++) c1.noisy[t] = 0, c1.pos[t] = t;
    G3AttnMask cm = {c1.pos, c1.blk, c1.noisy};
    g3_attention_masked_forward(o1, lse1, q, k, v, &cm, B, T, NH, NKV, HD, 5, 0.7f, 0, scr, 1);
    g3_attention_forward(o2, lse2, q, k, v, B, T, NH, NKV, HD, 5, 0.7f, 0, scr, 1);
    CHECK(rel_err(o1, o2, nq) < 1e-6, "an all-clean mask is causal attention: %g", rel_err(o1, o2, nq));
    g3_sbd_free(&c1);
    g3_sbd_free(&sbd);
    free(q); free(k); free(v); free(o1); free(o2); free(dout); free(lse1); free(lse2);
    free(dq1); free(dk1); free(dv1); free(dq2); free(dk2); free(dv2); free(dkh); free(dvh); free(scr); free(ref); free(rp); free(rm);
}

static void test_layout(void) {
    const int L = 11, B = 3;  // odd: the last block is short
    G3Sbd s;
    CHECK(g3_sbd_init(&s, L, 2, 5, 4) == 0, "%s", g3_error());
    CHECK(g3_sbd_init(&(G3Sbd){0}, L, 3, 2, 4) != 0, "block sizes [3, 2] refused");
    int32_t in[B * L], tg[B * L], in2[2 * B * L], tg2[2 * B * L];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < L; i++) {
            in[b * L + i] = 10 + b * L + i;
            // sequence 1 is an example: prompt of 4 (targets -1 for positions 0..2), its <eos> the
            // target at 8 (position 9, input padding), padding after
            tg[b * L + i] = b == 1 && (i < 3 || i >= 9) ? -1 : b == 1 && i == 8 ? 1 : 11 + b * L + i;
            if (b == 1 && i >= 9) in[b * L + i] = 0;
        }
    int seen[6] = {0};
    for (int step = 0; step < 40; step++) {
        g3_sbd_batch(&s, 5, step, 0, in, tg, B, -1.0, in2, tg2);
        CHECK(s.block >= 2 && s.block <= 5, "block %d in [2, 5]", s.block);
        seen[s.block] = 1;
        int64_t masked = 0;
        for (int b = 0; b < B; b++) {
            CHECK(!memcmp(in2 + b * 2 * L, in + b * L, sizeof(int32_t) * L) && !memcmp(tg2 + b * 2 * L, tg + b * L, sizeof(int32_t) * L),
                  "clean half as given");
            for (int i = 0; i < L; i++) {
                const int32_t x = in2[b * 2 * L + L + i], y = tg2[b * 2 * L + L + i];
                // sequence 1's last target is at 8: positions from 10 are its padding
                const int eligible = i >= 1 && (tg[b * L + i - 1] >= 0 || (b == 1 && i >= 10));
                const int32_t tok = i >= 1 && tg[b * L + i - 1] >= 0 ? tg[b * L + i - 1] : in[b * L + i];
                if (x == 4) {
                    masked++;
                    CHECK(eligible && y == tok, "step %d seq %d pos %d: masked only where eligible, target the hidden token", step, b, i);
                } else {
                    CHECK(x == tok && y == -1, "step %d seq %d pos %d: unmasked noisy token kept, no target", step, b, i);
                }
            }
        }
        CHECK(masked == s.masked, "masked count");
        for (int r = 0; r < 2 * L; r++) {
            CHECK(s.pos[r] == r % L && s.noisy[r] == (r >= L) && s.blk[r] == (r % L) / s.block, "row %d: position, half, block", r);
        }
    }
    CHECK(seen[2] && seen[5], "both ends of the block range drawn");
    // eta 0: nothing masked; eta 1: every eligible position
    g3_sbd_batch(&s, 5, 0, 0, in, tg, B, 0.0, in2, tg2);
    CHECK(s.masked == 0, "eta 0 masks nothing");
    g3_sbd_batch(&s, 5, 0, 0, in, tg, B, 1.0, in2, tg2);
    CHECK(s.masked == (L - 1) + 7 + (L - 1), "eta 1 masks every eligible position: %lld", (long long)s.masked);
    // reproducible from (seed, step, micro)
    int32_t again[2 * B * L];
    g3_sbd_batch(&s, 5, 17, 1, in, tg, B, -1.0, in2, tg2);
    g3_sbd_batch(&s, 5, 17, 1, in, tg, B, -1.0, again, tg2);
    CHECK(!memcmp(in2, again, sizeof again), "same draws for the same (seed, step, micro)");
    g3_sbd_free(&s);
}

// Training layout vs inference layout on a fixture: same block logits.
static void test_layouts_agree(const char *name, int L, int k) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    G3TrainModel tm;
    CHECK(g3_train_model_from(&tm, &m) == 0, "%s", g3_error());
    g3_model_free(&m);
    const int V = tm.m.cfg.vocab;
    G3Sbd s;
    CHECK(g3_sbd_init(&s, L, k, k, 4) == 0, "init");
    int32_t *in = malloc(sizeof(int32_t) * L), *tg = malloc(sizeof(int32_t) * L), *in2 = malloc(sizeof(int32_t) * 2 * L), *tg2 = malloc(sizeof(int32_t) * 2 * L);
    uint64_t seed = 3;
    for (int i = 0; i < L; i++) in[i] = 5 + (int)((frand(&seed) + 1) * 400);
    for (int i = 0; i < L; i++) tg[i] = i + 1 < L ? in[i + 1] : -1;
    g3_sbd_batch(&s, 9, 0, 0, in, tg, 1, 0.5, in2, tg2);
    CHECK(s.masked > 0 && s.masked < L - 1, "%s: some masked (%lld)", name, (long long)s.masked);
    G3TrainCtx *cx = g3_train_ctx_new(&tm, 1, 2 * L, 0, NULL);
    float *lt = malloc(sizeof(float) * 2 * L * V), *li = malloc(sizeof(float) * k * V);
    CHECK(cx && g3_train_ctx_set_mask(cx, &s.mask) == 0 && g3_train_logits(&tm, cx, in2, lt) == 0, "%s: training logits: %s", name, g3_error());
    G3State *st = g3_state_new(&tm.m, 1, L, L + k, 0, NULL);
    double worst = 0, rel = 0;
    for (int p0 = 0; st && p0 < L; p0 += k) {  // block j: the previous block's clean tokens, then this one's noisy tokens
        const int n = p0 + k <= L ? k : L - p0, prev = p0 >= k ? k : p0;
        CHECK(g3_sbd_forward(st, in + p0 - prev, prev, in2 + L + p0, n, li) == 0, "%s: block at %d: %s", name, p0, g3_error());
        for (long i = 0; i < (long)n * V; i++) {
            const double a = li[i], b = lt[(long)(L + p0) * V + i];
            worst = fmax(worst, fabs(a - b) / (1 + fabs(b)));
        }
        rel = fmax(rel, rel_err(li, lt + (long)(L + p0) * V, (long)n * V));
    }
    // as test_pass.c compares the causal passes: relative error of each block's logits
    CHECK(rel < 1e-6 && worst < 1e-5, "%s (L %d, k %d): training vs inference block logits differ by %g (largest entry %g)", name, L, k, rel, worst);
    printf("%s L=%d k=%d: training vs inference block logits: relative error %.2g, largest entry %.2g\n", name, L, k, rel, worst);
    // the clean half is unaffected by the noisy rows: its logits are the causal model's
    G3TrainCtx *c0 = g3_train_ctx_new(&tm, 1, L, 0, NULL);
    float *lc = malloc(sizeof(float) * L * V);
    CHECK(c0 && g3_train_logits(&tm, c0, in, lc) == 0 && rel_err(lt, lc, (long)L * V) < 1e-6, "%s: clean half = causal logits", name);
    free(lc);
    g3_train_ctx_free(c0);
    g3_state_free(st);
    g3_train_ctx_free(cx);
    free(lt); free(li); free(in); free(tg); free(in2); free(tg2);
    g3_sbd_free(&s);
    g3_train_model_free(&tm);
}

// Entropy / argmax as the sampler computes them.
static double ent(const float *z, int V, int *best) {
    int bi = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > z[bi]) bi = v;
    double sum = 0, ez = 0;
    for (int v = 0; v < V; v++) {
        double d = (double)z[v] - z[bi], e = exp(d);
        sum += e;
        ez += e * d;
    }
    *best = bi;
    return log(sum) - ez / sum;
}

static void test_generate(void) {
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32")) { CHECK(0, "%s", g3_error()); return; }
    const int np = 5, N = 13, K = 4, V = m.cfg.vocab;  // 13 = 3 blocks of 4 and one of 1
    const int32_t prompt[5] = {2, 17, 300, 41, 9};
    G3SbdOptions o = {.block = K, .gamma = 0.35, .mask_id = 4, .max_tokens = N};
    G3SbdResult a, b;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &a) == 0, "sbd: %s", g3_error());
    o.recompute = 1;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &b) == 0, "sbd recompute: %s", g3_error());
    CHECK(a.n == N && b.n == N && !memcmp(a.ids, b.ids, sizeof(int32_t) * N) && a.nfe == b.nfe, "KV cache = full recomputation (nfe %d, %d)",
          a.nfe, b.nfe);
    CHECK(a.nfe >= 4 && a.nfe <= N, "nfe %d between the blocks (4) and the tokens (%d)", a.nfe, N);
    free(b.ids);
    // gamma = 0: one token a pass, and the tokens of a greedy decoding of the block path
    o.recompute = 0;
    o.gamma = 0;
    G3SbdResult g;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &g) == 0, "sbd gamma 0: %s", g3_error());
    CHECK(g.n == N && g.nfe == N, "gamma 0: %d passes for %d tokens", g.nfe, N);
    // the reference over the training pass: rows [clean prompt + tokens ; noisy], blocks from np
    const int Lt = np + N;
    G3TrainModel tm;
    CHECK(g3_train_model_from(&tm, &m) == 0, "%s", g3_error());
    G3TrainCtx *cx = g3_train_ctx_new(&tm, 1, 2 * Lt, 0, NULL);
    int32_t pos[2 * 18], blk[2 * 18], ids[2 * 18], out[13];
    uint8_t noisy[2 * 18], rev[18] = {0};
    for (int r = 0; r < 2 * Lt; r++) {
        const int p = r % Lt;
        pos[r] = p;
        noisy[r] = r >= Lt;
        blk[r] = p < np ? -1 : (p - np) / K;
        ids[r] = p < np ? prompt[p] : 4;
    }
    G3AttnMask mk = {pos, blk, noisy};
    float *lg = malloc(sizeof(float) * 2 * Lt * V);
    CHECK(cx && g3_train_ctx_set_mask(cx, &mk) == 0, "%s", g3_error());
    for (int b0 = np; b0 < Lt; b0 += K) {
        const int n = G3_MIN(K, Lt - b0);
        for (int left = n; left > 0; left--) {
            if (g3_train_logits(&tm, cx, ids, lg)) { CHECK(0, "%s", g3_error()); break; }
            int pick = -1, pb = 0;
            double hbest = INFINITY;
            for (int i = 0; i < n; i++) {
                if (rev[b0 + i]) continue;
                int bi;
                double h = ent(lg + (long)(Lt + b0 + i) * V, V, &bi);
                if (h < hbest) hbest = h, pick = i, pb = bi;
            }
            if (pick < 0) break;
            ids[Lt + b0 + pick] = pb;
            ids[b0 + pick] = pb;  // the clean copy: seen by later blocks only
            rev[b0 + pick] = 1;
        }
        for (int i = 0; i < n; i++) out[b0 - np + i] = ids[b0 + i];
    }
    CHECK(!memcmp(out, g.ids, sizeof out), "gamma 0 = the block path's greedy decoding (first ids %d %d %d vs %d %d %d)", g.ids[0], g.ids[1],
          g.ids[2], out[0], out[1], out[2]);
    free(lg);
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
    // a stop id ends it after its block, the stop id left out
    o.gamma = 0.35;
    int32_t stop = a.ids[6];
    o.stop_ids = &stop;
    o.nstop = 1;
    G3SbdResult c;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &c) == 0 && c.stopped, "stop: %s", g3_error());
    int first = 0;
    while (a.ids[first] != stop) first++;
    CHECK(c.n == first && !memcmp(c.ids, a.ids, sizeof(int32_t) * first), "stop id %d: %d tokens (expected %d)", stop, c.n, first);
    free(c.ids);
    free(a.ids);
    free(g.ids);
    // sampling (temperature > 0): the KV cache still equals recomputation with the same seed
    o.stop_ids = NULL;
    o.nstop = 0;
    G3SamplerConfig sc = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.0f, .seed = 7};
    o.sampling = &sc;
    G3SbdResult d, e;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &d) == 0, "sampled: %s", g3_error());
    o.recompute = 1;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &e) == 0, "sampled, recomputed: %s", g3_error());
    o.recompute = 0;
    CHECK(d.n == N && e.n == N && !memcmp(d.ids, e.ids, sizeof(int32_t) * N) && d.nfe == e.nfe, "sampled: KV cache = recomputation");
    free(e.ids);
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &e) == 0 && e.n == N && !memcmp(d.ids, e.ids, sizeof(int32_t) * N), "sampled: same seed, same ids");
    free(d.ids);
    free(e.ids);
    // the draws follow softmax(z / T): one masked position, many seeds; the share of draws of
    // the most likely token against its probability, at the first temperature of 1, 2, 4, ...
    // where that probability is between 0.2 and 0.8 (the tiny fixture's logits are peaked)
    const int S = 400;
    G3State *st = g3_state_new(&m, 1, np + 1, np + 2, 1, NULL);
    float *z = malloc(sizeof(float) * V);
    const int32_t msk = 4;
    CHECK(st && z && g3_sbd_forward(st, prompt, np, &msk, 1, z) == 0, "forward %s", g3_error());
    const int top = z ? g3_argmax(z, V) : 0;
    double p1 = 1;
    float temp = 1;
    for (; z && temp <= 1024; temp *= 2) {
        double zs = 0;
        for (int v = 0; v < V; v++) zs += exp((z[v] - z[top]) / temp);
        p1 = 1 / zs;
        if (p1 <= 0.8) break;
    }
    CHECK(p1 >= 0.2 && p1 <= 0.8, "a temperature (%g) where the top token has probability %.3f", temp, p1);
    sc.temperature = temp;
    o.block = 1;
    o.gamma = 0;
    o.max_tokens = 1;
    o.state = st;
    int hits = 0;
    for (int k = 0; k < S; k++) {
        sc.seed = 1000 + (uint64_t)k;
        G3SbdResult f;
        if (g3_sbd_generate(&m, prompt, np, &o, &f)) { CHECK(0, "%s", g3_error()); break; }
        hits += f.ids[0] == top;
        free(f.ids);
    }
    const double fr = (double)hits / S, sd = sqrt(p1 * (1 - p1) / S);
    CHECK(fabs(fr - p1) <= 4 * sd, "draws of the most likely token at temperature %g: %.3f, probability %.3f (sd %.3f)", temp, fr, p1, sd);
    free(z);
    g3_state_free(st);
    o = (G3SbdOptions){.block = K, .gamma = 0.35, .mask_id = 4, .max_tokens = N};
    // refusals
    o.mask_id = V;
    CHECK(g3_sbd_generate(&m, prompt, np, &o, &c) != 0, "a mask id outside the vocabulary is refused");
    g3_model_free(&m);
}

// The command forms: train --objective sbd on id examples, then generate --sbd.
static void test_commands(void) {
    const char *d = "build/test_sbd_tmp";
    sh("rm -rf %s && mkdir -p %s", d, d);
    FILE *f = fopen("build/test_sbd_tmp/data.jsonl", "w");
    if (!f) { CHECK(0, "cannot write data"); return; }
    for (int i = 0; i < 40; i++) fprintf(f, "{\"prompt\": [2, %d, %d, 7], \"completion\": [%d, %d, 1]}\n", 10 + i % 9, 20 + i % 7, 10 + i % 9, 20 + i % 7);
    fclose(f);
    f = fopen("build/test_sbd_tmp/cfg.json", "w");
    fprintf(f, "{\"model_type\": \"gemma3_text\", \"vocab_size\": 64, \"hidden_size\": 32, \"intermediate_size\": 64, \"num_hidden_layers\": 2, "
               "\"num_attention_heads\": 2, \"num_key_value_heads\": 1, \"head_dim\": 16, \"sliding_window\": 4, \"sliding_window_pattern\": 2, "
               "\"max_position_embeddings\": 64, \"query_pre_attn_scalar\": 16}\n");
    fclose(f);
    CHECK(sh("./gemma3 train --init %s/cfg.json --data %s/data.jsonl --out %s/run --objective sbd --sbd-block-min 2 --sbd-block-max 3 "
             "--steps 6 --batch 4 --seq 8 --warmup 1 --eval-every 3 --eval-batches 1 --threads 1 2>%s/train.log", d, d, d, d) == 0,
          "train --objective sbd");
    CHECK(sh("grep -q 'set block decoding: <mask> id 4' %s/train.log && grep -q val_loss %s/run/metrics.jsonl", d, d) == 0, "train log and metrics");
    CHECK(sh("./gemma3 generate --model %s/run --sbd --block 3 --gamma 0.35 --ids 2,12,22,7 --max-tokens 5 --print-ids --exact >%s/ids.txt "
             "2>%s/gen.log", d, d, d) == 0, "generate --sbd");
    CHECK(sh("grep -Eq '^[0-9]+(,[0-9]+){4}$' %s/ids.txt && grep -q 'forward passes (nfe' %s/gen.log", d, d) == 0, "five ids on stdout, nfe on stderr");
    // --temperature > 0: drawn, the same ids for the same --seed; without it, greedy as above
    CHECK(sh("for s in 1 2; do ./gemma3 generate --model %s/run --sbd --block 3 --ids 2,12,22,7 --max-tokens 5 --print-ids --exact "
             "--temperature 2 --top-k 0 --top-p 1 --seed 5 >%s/t$s.txt 2>/dev/null || exit 1; done; cmp -s %s/t1.txt %s/t2.txt && "
             "grep -Eq '^[0-9]+(,[0-9]+){4}$' %s/t1.txt", d, d, d, d, d) == 0, "generate --sbd --temperature: same seed, same ids");
    CHECK(sh("./gemma3 generate --model %s/run --sbd --block 3 --gamma 0.35 --ids 2,12,22,7 --max-tokens 5 --print-ids --exact --temperature 0 "
             ">%s/t0.txt 2>/dev/null && cmp -s %s/t0.txt %s/ids.txt", d, d, d, d) == 0, "generate --sbd --temperature 0: greedy");
    CHECK(sh("./gemma3 generate --model %s/run --ids 2,12,22,7 --max-tokens 5 --print-ids >/dev/null 2>&1", d) == 0, "ordinary generation on an SBD model");
    CHECK(sh("./gemma3 generate --model %s/run --ids 2,12 --block 3 >/dev/null 2>&1", d) != 0, "--block without --sbd refused");
    CHECK(sh("./gemma3 train --init %s/cfg.json --data %s/data.jsonl --out %s/run2 --objective sbd --sbd-block-min 5 --sbd-block-max 3 "
             "--steps 1 >/dev/null 2>&1", d, d, d) != 0, "block range refused");
    CHECK(sh("./gemma3 train --init %s/cfg.json --data %s/data.jsonl --out %s/run3 --sbd-block-max 3 --steps 1 >/dev/null 2>&1", d, d, d) != 0,
          "--sbd-block-max without --objective sbd refused");
    sh("rm -rf %s", d);
}

// The addition task: both operands and the sum least significant digit first, zero-padded to
// fixed widths (7, 7 and 8 digits), and the sum right.
static void test_add_task(void) {
    G3Rng r;
    g3_rng_seed(&r, 5);
    const int D = G3_SBD_ADD_DIGITS;
    int bad_len = 0, bad_layout = 0, bad_sum = 0;
    for (int k = 0; k < 200; k++) {
        int32_t pr[G3_SBD_TASK_SEQ + 1], an[G3_SBD_TASK_SEQ + 1];
        int np, na;
        g3_sbd_task_example(G3_TASK_ADD, &r, pr, &np, an, &na);
        if (np != 2 * D + 4 || na != D + 2) { bad_len++; continue; }
        long a = 0, b = 0, s = 0, p = 1;
        int digits = 1;
        for (int i = 0; i < D; i++, p *= 10) {
            digits &= pr[2 + i] >= 5 && pr[2 + i] <= 14 && pr[3 + D + i] >= 5 && pr[3 + D + i] <= 14;
            a += (pr[2 + i] - 5) * p, b += (pr[3 + D + i] - 5) * p;
        }
        p = 1;
        for (int i = 0; i <= D; i++, p *= 10) digits &= an[i] >= 5 && an[i] <= 14, s += (an[i] - 5) * p;
        bad_layout += !(digits && pr[0] == 2 && pr[2 + D] == 16 && pr[3 + 2 * D] == 15 && an[D + 1] == 1);
        bad_sum += !(s == a + b && a >= 100 && b >= 100);
    }
    CHECK(bad_len == 0, "add: %d examples of another length (prompt %d, answer %d tokens expected)", bad_len, 2 * D + 4, D + 2);
    CHECK(bad_layout == 0, "add: %d examples not laid out as <bos> A a + b = / sum <eos>", bad_layout);
    CHECK(bad_sum == 0, "add: %d wrong sums (or operands under 3 digits)", bad_sum);
}

// gemma3 sbd --task text: two tiny trainings on a tiny corpus, then every decoding of its
// documents' starts; results.json has every row, the SBD model's own greedy decoding agrees
// with itself, and the text options are refused for a task.
static void test_text_command(void) {
    const char *d = "build/test_sbd_text_tmp";
    sh("rm -rf %s && mkdir -p %s", d, d);
    FILE *f = fopen("build/test_sbd_text_tmp/corpus.txt", "w");
    if (!f) { CHECK(0, "cannot write the corpus"); return; }
    for (int i = 0; i < 30; i++) fprintf(f, "The cat sat on the mat %d times.\nIt was happy.\n<|endoftext|>\n", i);
    fclose(f);
    if (!(f = fopen("build/test_sbd_text_tmp/valid.txt", "w"))) { CHECK(0, "cannot write the validation text"); return; }
    for (int i = 0; i < 4; i++) fprintf(f, "The mat sat on the cat %d times.\n<|endoftext|>\n", 40 + i);
    fclose(f);
    // Gemma 3's tokenizer trimmed to 300 pieces (<mask> stays id 4): a tiny output layer
    const char *json = tok_json_path();
    CHECK(json && sh("./gemma3 tokenizer trim --tokenizer %s --data %s/corpus.txt --vocab 300 --out %s/tok --threads 1 >/dev/null 2>&1", json, d, d) == 0,
          "trim the tokenizer");
    CHECK(sh("./gemma3 sbd --task text --data %s/corpus.txt --val %s/valid.txt --tokenizer %s/tok/tokenizer.json --layers 1 --width 32 --window 8 --seq 16 "
             "--steps 3 --batch 2 --test 3 --prompt-len 4 --max-new 6 --block 4 --gammas 0,0.5 --html --out %s/exp 2>%s/log", d, d, d, d, d) == 0,
          "sbd --task text");
    CHECK(sh("grep -q 'same as SBD greedy' %s/log && grep -q '\"agreement\"' %s/exp/results.json && grep -q 'agreement with SBD greedy' "
             "%s/exp/results.html", d, d, d) == 0, "text results: agreement with the SBD model's greedy decoding");
    CHECK(sh("grep -q '\"decoding\": \"SBD model, next-token\", \"gamma\": null, \"accuracy\": 1.000000, \"agreement\": 1.000000' "
             "%s/exp/results.json", d) == 0, "the reference agrees with itself");
    CHECK(sh("test $(grep -c '\"decoding\"' %s/exp/results.json) = 4", d) == 0, "four rows: two next-token, two gammas");
    CHECK(sh("./gemma3 sbd --task copy --tokenizer %s/tok/tokenizer.json --out %s/bad 2>/dev/null", d, d) != 0, "--tokenizer refused for a task");
    CHECK(sh("./gemma3 sbd --task text --out %s/bad 2>/dev/null", d) != 0, "--task text without --data refused");
    CHECK(sh("./gemma3 sbd --task text --data %s/corpus.txt --tokenizer %s/tok/tokenizer.json --out %s/bad 2>/dev/null", d, d, d) != 0,
          "--task text without --val refused");
    if (!check_failures) sh("rm -rf %s", d);
}

int main(void) {
    test_add_task();
    test_text_command();
    test_kernels();
    test_layout();
    test_layouts_agree("gemma3-tiny-f32", 21, 4);  // sliding window 8: blocks cross it; 21: a short last block
    test_layouts_agree("gemma3-tiny-f32", 16, 16);
    test_layouts_agree("gemma2-tiny-f32", 13, 3);  // softcaps
    test_generate();
    test_commands();
    return check_done();
}
