// bench_sampler.c: microseconds per sampled token at Gemma 3's vocabulary (V = 262144), for
// the configurations that matter, against a naive sampler that sorts the whole vocabulary.
// Logits follow a Zipf law (p of the r-th most likely token ~ r^-s) in shuffled order: s = 1.5
// is peaked like a language model mid-sentence (nucleus 0.9 ~ 60 tokens); s = 1.1 is a very
// flat worst case (nucleus 0.9 ~ 25k tokens). The logits stay in cache between repetitions,
// as they do when the sampler runs right after the output projection.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "sampler/sampler.h"

enum { V = 262144 };

static void zipf_logits(float *x, float s, G3Rng *r) {
    for (int i = 0; i < V; i++) x[i] = -s * logf((float)(i + 1));
    for (int i = V - 1; i > 0; i--) {  // Fisher-Yates
        int j = (int)(g3_rng_next(r) % (uint64_t)(i + 1));
        float t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// The sampler a first version would write: every token a candidate, qsort, then the steps.
static int cmp_cand(const void *pa, const void *pb) {
    const G3Candidate *a = pa, *b = pb;
    return a->logit < b->logit ? 1 : a->logit > b->logit ? -1 : a->id - b->id;
}
static int naive_sample(const float *logits, G3Candidates *c, const G3SamplerConfig *cfg, G3Rng *r) {
    for (int i = 0; i < V; i++) c->c[i] = (G3Candidate){i, logits[i] / cfg->temperature, 0};
    c->n = V;
    qsort(c->c, V, sizeof *c->c, cmp_cand);
    c->sorted = 1;
    if (cfg->top_k > 0) c->n = cfg->top_k;
    g3_sample_softmax(c);
    g3_sample_top_p(c, cfg->top_p);
    return g3_sample_pick(c, g3_rng_uniform(r));
}

// Median microseconds per call over reps calls.
static double bench(G3Sampler *s, const float *logits, float *work, int reps, const G3SamplerConfig *naive_cfg) {
    double *t = malloc(sizeof *t * (size_t)reps);
    int32_t hist[64];
    for (int i = 0; i < 64; i++) hist[i] = i * 997 % V;
    G3Candidates c = {malloc(sizeof(G3Candidate) * V), 0, V, 0};
    G3Rng r;
    g3_rng_seed(&r, 7);
    volatile int sink = 0;
    for (int i = 0; i < reps; i++) {
        memcpy(work, logits, sizeof(float) * V);  // penalties write into the logits
        double t0 = g3_now();
        sink += naive_cfg ? naive_sample(work, &c, naive_cfg, &r) : g3_sampler_sample(s, work, hist, 64);
        t[i] = (g3_now() - t0) * 1e6;
    }
    (void)sink;
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    double med = t[reps / 2];
    free(t);
    free(c.c);
    return med;
}

int main(void) {
    float *peaked = malloc(sizeof(float) * V), *flat = malloc(sizeof(float) * V), *work = malloc(sizeof(float) * V);
    G3Rng r;
    g3_rng_seed(&r, 1);
    zipf_logits(peaked, 1.5f, &r);
    zipf_logits(flat, 1.1f, &r);

    struct { const char *name; const float *logits; G3SamplerConfig cfg; int reps; } runs[] = {
        {"gemma defaults (T 1, top_k 64, top_p 0.95)", peaked, g3_sampler_defaults(), 501},
        {"greedy (T 0)", peaked, g3_sampler_defaults(), 501},
        {"top_k 0, top_p 0.9 (peaked)", peaked, g3_sampler_defaults(), 301},
        {"top_k 0, top_p 0.9 (flat, worst case)", flat, g3_sampler_defaults(), 51},
        {"defaults + repeat_penalty 1.1 over 64", peaked, g3_sampler_defaults(), 501},
        {"top_k 0, top_p 1 (whole vocabulary)", peaked, g3_sampler_defaults(), 101},
    };
    runs[1].cfg.temperature = 0;
    runs[2].cfg.top_k = runs[3].cfg.top_k = 0;
    runs[2].cfg.top_p = runs[3].cfg.top_p = 0.9f;
    runs[4].cfg.repeat_penalty = 1.1f;
    runs[5].cfg.top_k = 0;
    runs[5].cfg.top_p = 1.0f;

    printf("sampler, V = %d, median us per token\n", V);
    for (size_t i = 0; i < G3_ARRAY_LEN(runs); i++) {
        G3Sampler *s = g3_sampler_new(&runs[i].cfg, V);
        if (!s) { fprintf(stderr, "%s\n", g3_error()); return 1; }
        printf("  %-44s %9.1f us\n", runs[i].name, bench(s, runs[i].logits, work, runs[i].reps, NULL));
        g3_sampler_free(s);
    }
    G3SamplerConfig d = g3_sampler_defaults();
    printf("  %-44s %9.1f us\n", "naive: full qsort, gemma defaults", bench(NULL, peaked, work, 21, &d));
    d.top_k = 0;
    d.top_p = 0.9f;
    printf("  %-44s %9.1f us\n", "naive: full qsort, top_k 0, top_p 0.9", bench(NULL, peaked, work, 21, &d));
    free(peaked);
    free(flat);
    free(work);
    return 0;
}
