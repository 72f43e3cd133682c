// test_sampler.c: each sampling step on hand-made cases; the whole chain against a naive
// reference (softmax in double, full sort) for exact candidate sets on larger vocabularies;
// sampled frequencies against the reference distribution; seeds; generation_config.json; a
// device's part of the chain done by the host's steps, finished by g3_sampler_finish.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "sampler/sampler.h"

// ---- the naive reference: every step in double over a fully sorted vocabulary ----

typedef struct { int id; double logit; } Ref;
static int ref_cmp(const void *pa, const void *pb) {
    const Ref *a = pa, *b = pb;
    return a->logit < b->logit ? 1 : a->logit > b->logit ? -1 : a->id - b->id;
}
// prob: (V) out, the final distribution (0 for dropped tokens).
static void reference(const float *logits, int V, const G3SamplerConfig *c, double *prob) {
    Ref *r = malloc(sizeof *r * (size_t)V);
    for (int i = 0; i < V; i++) r[i] = (Ref){i, (double)logits[i] / c->temperature};
    qsort(r, (size_t)V, sizeof *r, ref_cmp);
    int n = c->top_k > 0 && c->top_k < V ? c->top_k : V;
    double *p = malloc(sizeof *p * (size_t)n), z = 0;
    for (int i = 0; i < n; i++) z += p[i] = exp(r[i].logit - r[0].logit);
    for (int i = 0; i < n; i++) p[i] /= z;
    if (c->top_p < 1) {
        double cum = 0;
        int keep = n;
        for (int i = 0; i < n; i++) {
            if (i > 0 && cum >= c->top_p) { keep = i; break; }
            cum += p[i];
        }
        n = keep;
    }
    memset(prob, 0, sizeof *prob * (size_t)V);
    z = 0;
    for (int i = 0; i < n; i++)
        if (p[i] >= c->min_p * p[0]) z += prob[r[i].id] = p[i];
    for (int i = 0; i < V; i++) prob[i] /= z;
    free(p);
    free(r);
}

static G3Candidates list(G3Candidate *buf, const float *logit, const float *p, int n) {
    for (int i = 0; i < n; i++) buf[i] = (G3Candidate){i, logit ? logit[i] : 0, p ? p[i] : 0};
    return (G3Candidates){buf, n, n, 0};
}

static void test_steps(void) {
    G3Candidate buf[16];

    // penalties: repetition once per distinct token, then presence + frequency * count
    float lg[5] = {2, -2, 1, 0.5f, 3};
    int32_t win[] = {0, 1, 0, 3, 99, -1}, counts[5] = {0};
    g3_sample_penalties(lg, 5, win, 6, 2.0f, 0.5f, 0.25f, counts);
    CHECK(lg[0] == 0.0f && lg[1] == -4.75f && lg[2] == 1.0f && lg[3] == -0.5f && lg[4] == 3.0f,
          "penalties: %g %g %g %g %g", lg[0], lg[1], lg[2], lg[3], lg[4]);
    CHECK(!counts[0] && !counts[1] && !counts[3], "counts left zero");

    // greedy: ties go to the lowest id, also across the 64-logit blocks
    float g[300];
    for (int i = 0; i < 300; i++) g[i] = (float)(i % 7);
    g[130] = g[250] = 9;
    CHECK(g3_argmax(g, 300) == 130, "greedy tie -> %d", g3_argmax(g, 300));
    for (int i = 0; i < 300; i++) g[i] = -INFINITY;
    CHECK(g3_argmax(g, 300) == 0, "all -inf -> 0");

    // selection from a vocabulary agrees with a full sort, ties by id
    enum { N = 1000 };
    static float x[N];
    static G3Candidate sel[N];
    static Ref r[N];
    G3Rng rng;
    g3_rng_seed(&rng, 3);
    for (int i = 0; i < N; i++) r[i] = (Ref){i, x[i] = (float)(g3_rng_next(&rng) % 50)};
    qsort(r, N, sizeof *r, ref_cmp);
    int ks[] = {1, 7, 64, 999, 1000, 5000};
    for (size_t q = 0; q < G3_ARRAY_LEN(ks); q++) {
        G3Candidates c = {sel, 0, N, 0};
        g3_sample_select_top_k(&c, x, N, ks[q]);
        int ok = c.n == G3_MIN(ks[q], N) && c.sorted;
        for (int i = 0; ok && i < c.n; i++) ok = c.c[i].id == r[i].id;
        CHECK(ok, "select top %d", ks[q]);
    }

    // top-k on a list, temperature, softmax
    float l4[4] = {1, 3, 2, 0};
    G3Candidates c = list(buf, l4, NULL, 4);
    g3_sample_top_k(&c, 2);
    CHECK(c.n == 2 && c.c[0].id == 1 && c.c[1].id == 2, "top_k 2");
    g3_sample_temperature(&c, 0.5f);
    CHECK(c.c[0].logit == 6 && c.c[1].logit == 4, "temperature");
    g3_sample_softmax(&c);
    CHECK(fabsf(c.c[0].p - 1 / (1 + expf(-2))) < 1e-6f && fabsf(c.c[0].p + c.c[1].p - 1) < 1e-6f, "softmax");

    // top-p keeps the token that crosses it, and at least one
    float p4[4] = {0.15f, 0.5f, 0.05f, 0.3f};
    float tp[] = {0.8f, 0.81f, 0.0f, 0.5f, 0.99f};
    int want[] = {2, 3, 1, 1, 4};
    for (size_t q = 0; q < G3_ARRAY_LEN(tp); q++) {
        c = list(buf, p4, p4, 4);  // logit = p keeps the order
        CHECK(g3_sample_top_p(&c, tp[q]) == 1 && c.n == want[q], "top_p %g kept %d", tp[q], c.n);
    }
    c = list(buf, p4, p4, 2);  // a slice of mass 0.65
    CHECK(g3_sample_top_p(&c, 0.9f) == 0 && c.n == 2, "top_p reports a short slice");

    // min-p relative to the most likely
    c = list(buf, NULL, p4, 4);
    g3_sample_min_p(&c, 0.2f);  // threshold 0.1
    CHECK(c.n == 3 && c.c[0].id == 0 && c.c[1].id == 1 && c.c[2].id == 3, "min_p");
    c = list(buf, NULL, p4, 4);
    g3_sample_min_p(&c, 1.0f);
    CHECK(c.n == 1 && c.c[0].id == 1, "min_p 1 keeps the best");

    // pick by inverse CDF
    c = list(buf, NULL, p4, 4);
    CHECK(g3_sample_pick(&c, 0.0) == 0 && g3_sample_pick(&c, 0.149) == 0 && g3_sample_pick(&c, 0.151) == 1 &&
              g3_sample_pick(&c, 0.66) == 2 && g3_sample_pick(&c, 0.999999) == 3,
          "pick");
}

// The chain's candidate sets equal the reference on vocabularies large enough to take the
// heap, bound and quickselect paths, for peaked and flat logits.
static void test_exact(void) {
    enum { V = 6000 };
    static float x[V], work[V];
    static double prob[V], got[V];
    G3Rng rng;
    g3_rng_seed(&rng, 11);
    float sigma[] = {0.05f, 1.0f, 6.0f};
    struct { float t; int k; float p, minp; } cf[] = {
        {1, 0, 0.9f, 0}, {0.5f, 0, 0.5f, 0}, {2, 0, 0.99f, 0}, {1, 64, 0.95f, 0}, {1, 200, 1, 0.05f}, {0.7f, 0, 1, 0.01f},
    };
    for (size_t si = 0; si < G3_ARRAY_LEN(sigma); si++)
        for (size_t q = 0; q < G3_ARRAY_LEN(cf); q++) {
            for (int i = 0; i < V; i++) {  // Box-Muller
                double u1 = g3_rng_uniform(&rng) + 1e-12, u2 = g3_rng_uniform(&rng);
                x[i] = (float)(sigma[si] * sqrt(-2 * log(u1)) * cos(6.283185307 * u2));
            }
            G3SamplerConfig c = g3_sampler_defaults();
            c.temperature = cf[q].t, c.top_k = cf[q].k, c.top_p = cf[q].p, c.min_p = cf[q].minp;
            reference(x, V, &c, prob);
            G3Sampler *s = g3_sampler_new(&c, V);
            memcpy(work, x, sizeof x);
            const G3Candidates *d = g3_sampler_distribution(s, work, NULL, 0);
            memset(got, 0, sizeof got);
            for (int i = 0; i < d->n; i++) got[d->c[i].id] = d->c[i].p;
            int bad = 0;
            for (int i = 0; i < V; i++) bad += (prob[i] > 0) != (got[i] > 0) || fabs(prob[i] - got[i]) > 1e-5;
            CHECK(!bad, "sigma %g config %zu: %d tokens differ (n=%d)", sigma[si], q, bad, d->n);
            g3_sampler_free(s);
        }
}

// Sampled frequencies over 200k draws match the reference within 0.005 (about 4.5 standard
// deviations of a frequency near 0.5); tokens outside the distribution never come up.
static void test_frequencies(void) {
    enum { V = 20, DRAWS = 200000 };
    float x[V], work[V];
    for (int i = 0; i < V; i++) x[i] = (float)(3.0 * sin(i * 1.7) + 0.1 * i);
    struct { float t; int k; float p, minp; } cf[] = {
        {0.7f, 0, 1, 0}, {1, 5, 1, 0}, {1.3f, 0, 0.8f, 0}, {1, 10, 0.9f, 0.1f}, {1, 0, 1, 0.05f},
    };
    for (size_t q = 0; q < G3_ARRAY_LEN(cf); q++) {
        G3SamplerConfig c = g3_sampler_defaults();
        c.temperature = cf[q].t, c.top_k = cf[q].k, c.top_p = cf[q].p, c.min_p = cf[q].minp, c.seed = 100 + q;
        double prob[V];
        int hits[V] = {0};
        reference(x, V, &c, prob);
        G3Sampler *s = g3_sampler_new(&c, V);
        for (int d = 0; d < DRAWS; d++) {
            memcpy(work, x, sizeof x);
            hits[g3_sampler_sample(s, work, NULL, 0)]++;
        }
        double worst = 0;
        int stray = 0;
        for (int i = 0; i < V; i++) {
            worst = fmax(worst, fabs((double)hits[i] / DRAWS - prob[i]));
            stray += prob[i] == 0 && hits[i] > 0;
        }
        CHECK(worst < 0.005 && !stray, "config %zu: max deviation %g, %d stray tokens", q, worst, stray);
        g3_sampler_free(s);
    }
}

static void test_seeds_and_chain(void) {
    enum { V = 50, T = 500 };
    float x[V], work[V];
    for (int i = 0; i < V; i++) x[i] = (float)(i % 5);
    int32_t a[T], b[T], d[T];
    G3SamplerConfig c = g3_sampler_defaults();
    c.seed = 42;
    G3Sampler *s1 = g3_sampler_new(&c, V), *s2 = g3_sampler_new(&c, V);
    c.seed = 43;
    G3Sampler *s3 = g3_sampler_new(&c, V);
    for (int t = 0; t < T; t++) {  // interleaved: one sampler's stream ignores the others
        memcpy(work, x, sizeof x), a[t] = g3_sampler_sample(s1, work, NULL, 0);
        memcpy(work, x, sizeof x), d[t] = g3_sampler_sample(s3, work, NULL, 0);
    }
    for (int t = 0; t < T; t++) memcpy(work, x, sizeof x), b[t] = g3_sampler_sample(s2, work, NULL, 0);
    CHECK(!memcmp(a, b, sizeof a), "same seed, same tokens");
    CHECK(memcmp(a, d, sizeof a) != 0, "different seed, different tokens");
    g3_sampler_reseed(s2, 42);
    memcpy(work, x, sizeof x);
    CHECK(g3_sampler_sample(s2, work, NULL, 0) == a[0], "reseed restarts the stream");
    G3Rng r;
    g3_rng_seed(&r, 0);
    double lo = 1, hi = 0;
    for (int i = 0; i < 10000; i++) { double u = g3_rng_uniform(&r); lo = fmin(lo, u); hi = fmax(hi, u); }
    CHECK(lo >= 0 && lo < 0.001 && hi < 1 && hi > 0.999, "uniform range %g %g", lo, hi);
    g3_sampler_free(s1), g3_sampler_free(s2), g3_sampler_free(s3);

    // greedy sees the penalties; history outside the vocabulary is an error
    c = g3_sampler_defaults();
    c.temperature = 0;
    c.repeat_penalty = 2;
    c.repeat_window = 2;
    G3Sampler *g = g3_sampler_new(&c, V);
    int32_t hist[] = {4, 9, 1};  // window: 9, 1
    memcpy(work, x, sizeof x);
    CHECK(g3_sampler_sample(g, work, hist, 0) == 4, "greedy: argmax, lowest id");
    memcpy(work, x, sizeof x);
    CHECK(g3_sampler_sample(g, work, hist + 1, 1) == 4, "window: id 4 not in window");
    memcpy(work, x, sizeof x);
    CHECK(g3_sampler_sample(g, work, hist, 1) == 9, "penalised 4 -> next best 9");
    CHECK(work[4] == 2.0f, "logits penalised in place: %g", work[4]);
    int32_t badh[] = {3, V};
    memcpy(work, x, sizeof x);
    CHECK(g3_sampler_sample(g, work, badh, 2) == -1 && strstr(g3_error(), "outside the vocabulary"), "%s", g3_error());
    g3_sampler_free(g);

    G3SamplerConfig bad = g3_sampler_defaults();
    bad.top_p = 1.5f;
    CHECK(!g3_sampler_new(&bad, V) && strstr(g3_error(), "top_p"), "bad top_p: %s", g3_error());
    bad = g3_sampler_defaults();
    CHECK(!g3_sampler_new(&bad, 0), "vocab 0");
}

static int write(const char *path, const char *text) { return g3_write_file_atomic(path, text, strlen(text)); }

static void test_generation_config(void) {
    char dir[] = "/tmp/g3_sampler_XXXXXX", f[4200];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    G3SamplerConfig c = g3_sampler_defaults(), d = c;
    c.top_k = 5;
    CHECK(g3_sampler_config_from_generation_config(&c, dir) == 0 && c.top_k == 5, "no file: unchanged");
    snprintf(f, sizeof f, "%s/generation_config.json", dir);
    write(f, "{\"bos_token_id\": 2, \"do_sample\": true, \"eos_token_id\": [1, 106], \"top_k\": 64, \"top_p\": 0.95,"
             " \"temperature\": null, \"transformers_version\": \"4.50.0\"}");
    c = d;
    c.top_k = 5;
    CHECK(g3_sampler_config_from_generation_config(&c, dir) == 0 && c.top_k == 64 && c.top_p == 0.95f &&
              c.temperature == 1.0f,
          "gemma 3 file: %s", g3_error());
    write(f, "{\"do_sample\": false, \"temperature\": 0.6, \"min_p\": 0.1, \"repetition_penalty\": 1.3}");
    c = d;
    CHECK(g3_sampler_config_from_generation_config(&c, f) == 0 && c.temperature == 0 && c.min_p == 0.1f &&
              c.repeat_penalty == 1.3f,
          "do_sample false -> greedy (file path given)");
    const char *bad[][2] = {
        {"{\"top_k\": 64,\n \"top_p\": }", "line 2"},
        {"{\"top_k\": \"64\"}", "'top_k'"},
        {"{\"top_k\": 2.5}", "'top_k' must be an integer"},
        {"{\"top_p\": 1.5}", "'top_p' = 1.5 is outside"},
        {"{\"do_sample\": 1}", "'do_sample'"},
        {"[1]", "expected a JSON object"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        write(f, bad[i][0]);
        c = d;
        int rc = g3_sampler_config_from_generation_config(&c, dir);
        CHECK(rc == -1 && strstr(g3_error(), "generation_config.json") && strstr(g3_error(), bad[i][1]) &&
                  c.top_k == d.top_k,
              "malformed #%zu: %s", i, g3_error());
    }
    remove(f);
    remove(dir);
}

// A device's part of the chain (penalties and top-k, backend.h sample_top_k) done here by the
// host's own steps, then g3_sampler_finish: the tokens of g3_sampler_sample, draw after draw,
// for greedy and sampled settings with penalties. (test_cuda_sampler holds the GPU's part to
// the same steps.)
static void test_finish(void) {
    enum { V = 5000, H = 40 };
    static float x[V], cp[V];
    static int32_t counts[V];
    G3Candidates sel = {malloc(V * sizeof(G3Candidate)), 0, V, 0};
    const float temps[] = {0.0f, 0.7f, 1.0f, 3.0f};
    int32_t hist[H];
    for (int i = 0; i < H; i++) hist[i] = (i * 37) % 23;
    for (int t = 0; t < 4; t++)
        for (int k = 1; k <= 256; k *= 4) {
            G3SamplerConfig c = g3_sampler_defaults();
            c.temperature = temps[t];
            c.top_k = k;
            c.top_p = k > 16 ? 0.9f : 1.0f;
            c.min_p = k == 64 ? 0.05f : 0.0f;
            c.repeat_penalty = 1.3f;
            c.presence_penalty = t == 1 ? -0.5f : 0.2f;
            c.frequency_penalty = 0.1f;
            c.repeat_window = 16;
            c.seed = (uint64_t)(t * 10 + k);
            G3Sampler *a = g3_sampler_new(&c, V), *b = g3_sampler_new(&c, V);
            CHECK(g3_sampler_device_k(a, 256) == (c.temperature > 0 ? k : 1), "device k for k %d", k);
            for (int d = 0; d < 20; d++) {
                for (int i = 0; i < V; i++) x[i] = (float)((i * 7919 + d * 104729) % 1000) * 0.004f;  // ties too
                memcpy(cp, x, sizeof x);
                int want = g3_sampler_sample(a, cp, hist, H);
                const int32_t *win;
                int w = g3_sampler_window(b, hist, H, &win);
                CHECK(w == 16 && win == hist + H - 16, "penalty window %d", w);
                memcpy(cp, x, sizeof x);
                g3_sample_penalties(cp, V, win, w, c.repeat_penalty, c.presence_penalty, c.frequency_penalty, counts);
                const int n = g3_sampler_device_k(b, 256);
                g3_sample_select_top_k(&sel, cp, V, n);
                int32_t ids[256];
                float vals[256];
                for (int i = 0; i < n; i++) { ids[i] = sel.c[i].id; vals[i] = sel.c[i].logit; }
                int got = g3_sampler_finish(b, ids, vals, n);
                CHECK(got == want, "temperature %g, top-k %d, draw %d: finish chose %d, sample %d", c.temperature, k, d, got, want);
            }
            CHECK(g3_sampler_finish(b, (int32_t[]){0}, (float[]){0}, 0) < 0, "a candidate count the sampler does not need is refused");
            g3_sampler_free(a);
            g3_sampler_free(b);
        }
    G3SamplerConfig c = g3_sampler_defaults();
    c.top_k = 0;  // top-p alone needs the whole softmax: the host path
    G3Sampler *s = g3_sampler_new(&c, V);
    CHECK(g3_sampler_device_k(s, 256) == 0, "top-p alone is not a device configuration");
    const int32_t *win;
    CHECK(g3_sampler_window(s, hist, H, &win) == 0, "no penalties, no window");
    g3_sampler_free(s);
    free(sel.c);
}

int main(void) {
    test_steps();
    test_exact();
    test_frequencies();
    test_seeds_and_chain();
    test_generation_config();
    test_finish();
    return check_done();
}
