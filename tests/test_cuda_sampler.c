// test_cuda_sampler.c: the sampler with its heavy part on the GPU (backend.h sample_top_k, then
// sampler.h g3_sampler_finish on the host) against the CPU sampler (g3_sampler_sample) alone:
//   - the op's candidates: the k best after the penalties, ids and values equal to
//     g3_sample_penalties + g3_sample_select_top_k on the host, over random logits with many
//     ties (bf16-rounded), -0 beside +0, masked (-inf) tokens, at 1B's vocabulary and small ones;
//   - the tokens: many seeds and settings (temperature, top-k, top-p, min-p, the three
//     penalties, greedy), several rows of different settings in one call, several draws per
//     sampler (the random streams stay in step);
//   - the finite check: NaN, +inf, all -inf are flagged; one -inf is not;
//   - generation on the fixtures with penalties and min-p: the engine's device sampler against
//     its host path (G3_HOST_SAMPLER=1) over the same GPU logits, batched and one at a time, and
//     `gemma3 generate --temperature 0.8 --top-k/--top-p/--min-p --seed` likewise: equal; the
//     CPU's tokens compared and the count printed (the logits differ in their last bits).
// Skipped with a line saying so in a build without CUDA or on a machine without a GPU.
#include "check.h"
#include "fixtures.h"
#include "gen/engine.h"
#include "model/forward.h"
#include "sampler/sampler.h"

#ifndef G3_CUDA
int main(void) {
    printf("test_cuda_sampler: skipped: no GPU (a build without CUDA: make CUDA=1)\n");
    return 0;
}
#else

static uint64_t rs = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) {
    rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17;
    return (uint32_t)(rs >> 16);
}
static float frnd(void) { return (float)rnd() / 4294967296.0f; }  // [0, 1)

static float bf16_round(float x) {
    union { float f; uint32_t u; } b = {.f = x};
    b.u = (b.u + 0x7fffu + ((b.u >> 16) & 1u)) & 0xffff0000u;
    return b.f;
}

// Logits of one of several shapes: peaked or flat, bf16-rounded (many exact ties), a few -inf,
// signed zeros.
static void make_logits(float *x, int V, int shape) {
    const float scale = shape % 3 == 0 ? 8.0f : shape % 3 == 1 ? 2.0f : 0.25f;
    for (int i = 0; i < V; i++) {
        float v = (frnd() * 2 - 1) * scale;
        x[i] = shape & 1 ? bf16_round(v) : v;
    }
    for (int j = 0; V > 100 && j < 8; j++) x[rnd() % V] = -INFINITY;
    for (int j = 0; j < 4; j++) x[rnd() % V] = j & 1 ? 0.0f : -0.0f;
    if (shape % 4 == 3)  // a handful of clear favourites
        for (int j = 0; j < 5; j++) x[rnd() % V] = 12.0f + (float)j;
}

typedef struct {
    float temperature, top_p, min_p, repeat, presence, frequency;
    int top_k, window;
} Setting;

static const Setting SETTINGS[] = {
    {1.0f, 0.95f, 0.0f, 1.0f, 0.0f, 0.0f, 64, 64},   // Gemma's defaults
    {0.8f, 0.95f, 0.0f, 1.0f, 0.0f, 0.0f, 64, 64},
    {0.8f, 1.0f, 0.05f, 1.0f, 0.0f, 0.0f, 40, 64},
    {1.5f, 0.5f, 0.1f, 1.3f, 0.0f, 0.0f, 100, 32},
    {0.7f, 0.9f, 0.0f, 1.1f, 0.4f, 0.2f, 256, 0},    // penalties over the whole history
    {1.0f, 1.0f, 0.0f, 0.8f, -0.3f, 0.0f, 2, 16},    // a penalty that raises logits
    {1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 1, 64},
    {0.0f, 1.0f, 0.0f, 1.2f, 0.5f, 0.1f, 64, 64},    // greedy with penalties
    {0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 64, 64},    // greedy
    {2.0f, 0.99f, 0.02f, 1.0f, 0.0f, 0.3f, 200, 128},
};
enum { NSET = sizeof SETTINGS / sizeof SETTINGS[0], ROWS = 4, HIST = 300, DRAWS = 3 };

static G3SamplerConfig config_of(const Setting *st, uint64_t seed) {
    G3SamplerConfig c = g3_sampler_defaults();
    c.temperature = st->temperature;
    c.top_k = st->top_k;
    c.top_p = st->top_p;
    c.min_p = st->min_p;
    c.repeat_penalty = st->repeat;
    c.presence_penalty = st->presence;
    c.frequency_penalty = st->frequency;
    c.repeat_window = st->window;
    c.seed = seed;
    return c;
}

// ROWS rows of V logits, each with its own setting, seed and history, through the device op
// and g3_sampler_finish, against g3_sampler_sample and the host's own selection.
static void rows_match(G3Backend *gpu, int V, int round, int *cases) {
    float *x = malloc((size_t)ROWS * V * sizeof(float)), *cp = malloc((size_t)V * sizeof(float));
    int32_t *hist = malloc((size_t)ROWS * HIST * sizeof(int32_t)), *counts = calloc((size_t)V, sizeof(int32_t));
    int nh[ROWS];
    G3Sampler *dev[ROWS], *host[ROWS];
    G3SampleRow rows[ROWS];
    int32_t win[ROWS * HIST], ids[ROWS * G3_SAMPLE_TOP_K_MAX], bad[ROWS];
    float vals[ROWS * G3_SAMPLE_TOP_K_MAX];
    G3Candidates ref = {malloc((size_t)V * sizeof(G3Candidate)), 0, V, 0};
    int nwin = 0, kmax = 1;
    for (int r = 0; r < ROWS; r++) {
        make_logits(x + (long)r * V, V, round + r);
        const Setting *st = &SETTINGS[(round * ROWS + r) % NSET];
        G3SamplerConfig c = config_of(st, (uint64_t)round * 1000 + r);
        if (c.top_k >= V) c.top_k = V - 1;
        dev[r] = g3_sampler_new(&c, V);
        host[r] = g3_sampler_new(&c, V);
        // a history with repeats (small id range) and some of the favourites' ids
        nh[r] = 1 + (int)(rnd() % HIST);
        for (int i = 0; i < nh[r]; i++) hist[r * HIST + i] = (int32_t)(rnd() % (i % 3 ? G3_MIN(50, V) : V));
        const int32_t *w;
        const int n = g3_sampler_window(dev[r], hist + r * HIST, nh[r], &w);
        CHECK(n >= 0, "%s", g3_error());
        const int k = g3_sampler_device_k(dev[r], G3_SAMPLE_TOP_K_MAX);
        CHECK(k > 0, "setting %d: not a device configuration", (round * ROWS + r) % NSET);
        rows[r] = (G3SampleRow){k, nwin, n, c.repeat_penalty, c.presence_penalty, c.frequency_penalty};
        memcpy(win + nwin, w, (size_t)G3_MAX(n, 0) * sizeof *w);
        nwin += G3_MAX(n, 0);
        kmax = G3_MAX(kmax, k);
    }
    float *xd = gpu->alloc(gpu, (size_t)ROWS * V * sizeof(float));
    CHECK(xd && gpu->to_device(gpu, xd, x, (size_t)ROWS * V * sizeof(float)) == 0, "%s", g3_error());
    int rc = gpu->sample_top_k(gpu, xd, ROWS, V, rows, win, nwin, kmax, ids, vals, bad);
    CHECK(rc == 0, "V %d round %d: %s", V, round, g3_error());
    for (int r = 0; rc == 0 && r < ROWS; r++) {
        CHECK(bad[r] == 0, "V %d round %d row %d: finite logits flagged", V, round, r);
        // the candidates: the host's penalties and selection
        memcpy(cp, x + (long)r * V, (size_t)V * sizeof(float));
        if (rows[r].nw) g3_sample_penalties(cp, V, win + rows[r].w0, rows[r].nw, rows[r].repeat, rows[r].presence, rows[r].frequency, counts);
        g3_sample_select_top_k(&ref, cp, V, rows[r].k);
        int same = ref.n == rows[r].k;
        for (int i = 0; same && i < ref.n; i++) same = ref.c[i].id == ids[r * kmax + i] && ref.c[i].logit == vals[r * kmax + i];
        CHECK(same, "V %d round %d row %d (k %d, window %d): device candidates differ from the host's", V, round, r, rows[r].k, rows[r].nw);
        // the tokens, several draws on the same logits
        for (int d = 0; d < DRAWS; d++) {
            memcpy(cp, x + (long)r * V, (size_t)V * sizeof(float));
            int want = g3_sampler_sample(host[r], cp, hist + r * HIST, nh[r]);
            int got = g3_sampler_finish(dev[r], ids + r * kmax, vals + r * kmax, rows[r].k);
            CHECK(want >= 0 && got == want, "V %d round %d row %d draw %d: device sampler chose %d, host %d", V, round, r, d, got, want);
            (*cases)++;
        }
    }
    gpu->free(gpu, xd);
    for (int r = 0; r < ROWS; r++) { g3_sampler_free(dev[r]); g3_sampler_free(host[r]); }
    free(x); free(cp); free(hist); free(counts); free(ref.c);
}

// NaN, +inf, all -inf: flagged; a single -inf and a huge finite value: not.
static void finite_check(G3Backend *gpu) {
    enum { V = 5000 };
    static float x[5 * V];
    for (int i = 0; i < 5 * V; i++) x[i] = (float)(i % 97) * 0.01f;
    x[0 * V + 1234] = NAN;
    x[1 * V + 4999] = INFINITY;
    for (int i = 0; i < V; i++) x[2 * V + i] = -INFINITY;
    x[3 * V + 7] = -INFINITY;
    x[4 * V + 9] = 3e38f;
    G3SampleRow rows[5];
    for (int r = 0; r < 5; r++) rows[r] = (G3SampleRow){8, 0, 0, 1.0f, 0.0f, 0.0f};
    int32_t ids[5 * 8], bad[5];
    float vals[5 * 8];
    float *xd = gpu->alloc(gpu, sizeof x);
    CHECK(xd && gpu->to_device(gpu, xd, x, sizeof x) == 0, "%s", g3_error());
    CHECK(gpu->sample_top_k(gpu, xd, 5, V, rows, NULL, 0, 8, ids, vals, bad) == 0, "%s", g3_error());
    const int want[5] = {1, 1, 1, 0, 0};
    for (int r = 0; r < 5; r++) CHECK(bad[r] == want[r], "finite check, row %d: flag %d, expected %d", r, bad[r], want[r]);
    CHECK(ids[4 * 8] == 9 && vals[4 * 8] == 3e38f, "row 4's best is the huge value (got id %d)", ids[4 * 8]);
    // k out of range: an error, not a wrong answer
    rows[0].k = G3_SAMPLE_TOP_K_MAX + 1;
    CHECK(gpu->sample_top_k(gpu, xd, 1, V, rows, NULL, 0, G3_SAMPLE_TOP_K_MAX, ids, vals, bad) != 0, "k beyond the maximum accepted");
    gpu->free(gpu, xd);
}

// ---- generation through the engine on the fixtures ----

enum { NP = 4, MAXT = 20 };

static void generate(G3Model *m, G3Backend *be, int batch, const Setting *st, int32_t out[NP][MAXT], int *nout) {
    static const int32_t prompts[NP][9] = {{2, 5, 9, 5, 9}, {2, 100, 3, 7, 12, 18, 40, 41, 42}, {2, 77}, {2, 60, 61, 60}};
    static const int len[NP] = {5, 9, 2, 4};
    G3State *s = g3_state_new_on(be, m, batch ? NP : 1, 64, 16, 0, NULL);
    if (!s) { CHECK(0, "%s", g3_error()); return; }
    G3Engine *e = g3_engine_new(s, NULL);
    G3Sampler *smp[NP];
    int id[NP];
    for (int i = 0; i < NP; i++) {
        G3SamplerConfig sc = config_of(st, 77 + (uint64_t)i);
        smp[i] = g3_sampler_new(&sc, m->cfg.vocab);
        G3SeqParams p = {.prompt = prompts[i], .nprompt = len[i], .max_tokens = MAXT, .sampler = smp[i]};
        id[i] = g3_engine_add(e, &p);
        CHECK(id[i] >= 0, "%s", g3_error());
        if (!batch) {
            int rc;
            while ((rc = g3_engine_step(e)) > 0) {}
            CHECK(rc == 0, "%s", g3_error());
        }
    }
    int rc;
    while ((rc = g3_engine_step(e)) > 0) {}
    CHECK(rc == 0, "%s", g3_error());
    for (int i = 0; i < NP; i++) {
        G3SeqInfo info;
        g3_engine_read(e, id[i], &info);
        nout[i] = info.n;
        memcpy(out[i], info.ids, (size_t)info.n * sizeof(int32_t));
        g3_sampler_free(smp[i]);
    }
    g3_engine_free(e);
    g3_state_free(s);
}

static void generation_matches(const char *name, G3Model *m, G3Backend *gpu) {
    static const Setting gen[] = {
        // (the fixtures' random weights repeat the last token with near certainty: a strong
        // presence penalty or a high temperature makes the draws matter)
        {0.8f, 0.95f, 0.0f, 1.0f, 30.0f, 0.0f, 64, 64},
        {8.0f, 0.9f, 0.05f, 1.3f, 0.2f, 0.1f, 40, 16},
        {20.0f, 1.0f, 0.1f, 1.0f, 0.0f, 5.0f, 200, 0},
        {0.0f, 1.0f, 0.0f, 1.5f, 10.0f, 0.0f, 64, 8},
    };
    // The sampler's exactness: the device sampler against the host path over the same GPU
    // logits (the same calls, so the same bits), one at a time and batched: equal whatever the
    // seed. Against the CPU, and batched against one at a time, the logits themselves differ in
    // the last bits (exact mode, ~1e-6), which these settings can turn into another draw (strong
    // penalties leave near-ties among the fixtures' background tokens: on the first GPU run,
    // gemma3-tiny-multimodal-layout's CPU and GPU host-path tokens differed): counted, printed,
    // not failed; test_cuda_model holds the logits and greedy tokens to the CPU's.
    int agree = 0, total = 0, agree_b = 0;
    for (size_t g = 0; g < G3_ARRAY_LEN(gen); g++) {
        int32_t out[5][NP][MAXT];  // CPU; GPU host path, device sampler (one at a time); the same batched
        int nout[5][NP];
        generate(m, g3_backend_cpu(), 0, &gen[g], out[0], nout[0]);
        for (int batch = 0; batch < 2; batch++) {
            setenv("G3_HOST_SAMPLER", "1", 1);
            generate(m, gpu, batch, &gen[g], out[1 + 2 * batch], nout[1 + 2 * batch]);
            unsetenv("G3_HOST_SAMPLER");
            generate(m, gpu, batch, &gen[g], out[2 + 2 * batch], nout[2 + 2 * batch]);
        }
        for (int i = 0; i < NP; i++) {
#define SAME(a, b) (nout[a][i] == nout[b][i] && !memcmp(out[a][i], out[b][i], (size_t)nout[a][i] * sizeof(int32_t)))
            CHECK(SAME(1, 2), "%s: setting %zu, prompt %d: the device sampler's tokens differ from the host path's (one at a time)", name,
                  g, i);
            CHECK(SAME(3, 4), "%s: setting %zu, prompt %d: the device sampler's tokens differ from the host path's (batched)", name, g, i);
            agree += SAME(0, 1);
            agree_b += SAME(2, 4);
            total++;
#undef SAME
        }
    }
    printf("test_cuda_sampler: %s: GPU tokens equal to the CPU's for %d of %d sequences, batched equal to one at a time for %d\n", name,
           agree, total, agree_b);
}

// The command line: the same ids on the GPU with the host path and with the device sampler, for
// a few seeds and settings; the CPU's are compared and a difference printed (the logits, above).
static void cli_matches(const char *name) {
    static const char *opts[] = {"--temperature 0.8 --top-k 64 --top-p 0.9 --presence-penalty 30", "--temperature 8 --top-k 40",
                                 "--temperature 20 --top-k 100 --min-p 0.05 --repeat-penalty 1.2"};
    static const char *dev[3] = {"--device cpu", "--device cuda", "--device cuda"};
    char out[3][4096];
    for (size_t o = 0; o < G3_ARRAY_LEN(opts); o++)
        for (int seed = 0; seed < 2; seed++) {
            for (int d = 0; d < 3; d++) {
                char cmd[1024];
                snprintf(cmd, sizeof cmd, "%s%s generate --model tests/fixtures/%s --ids 2,5,9,13 --max-tokens 24 %s --seed %d %s --exact --quiet",
                         d == 1 ? "G3_HOST_SAMPLER=1 " : "", getenv("BIN") ? getenv("BIN") : "./gemma3", name, opts[o], seed, dev[d]);
                FILE *f = popen(cmd, "r");
                size_t n = f ? fread(out[d], 1, sizeof out[d] - 1, f) : 0;
                int rc = f ? pclose(f) : -1;
                out[d][n] = 0;
                CHECK(rc == 0 && n > 0, "%s: exit %d", cmd, rc);
            }
            CHECK(!strcmp(out[1], out[2]), "%s: generate %s --seed %d: the device sampler printed %s, the host sampler %s", name, opts[o],
                  seed, out[2], out[1]);
            if (strcmp(out[0], out[1])) printf("test_cuda_sampler: %s: generate %s --seed %d: cuda and cpu differ (the logits' last bits)\n", name, opts[o], seed);
        }
}

int main(void) {
    if (g3_backend_cuda_devices() == 0) {
        printf("test_cuda_sampler: skipped: no GPU (no CUDA device or driver)\n");
        return 0;
    }
    G3Backend *gpu = g3_backend_open("cuda");
    if (!gpu) { CHECK(0, "%s", g3_error()); return check_done(); }
    CHECK(gpu->sample_top_k != NULL, "the CUDA backend has no sample_top_k");
    if (!gpu->sample_top_k) return check_done();
    int cases = 0;
    static const int vocabs[] = {262144, 1024, 50000, 3};
    for (size_t v = 0; v < G3_ARRAY_LEN(vocabs); v++)
        for (int round = 0; round < (vocabs[v] > 100000 ? 12 : 20); round++) rows_match(gpu, vocabs[v], round, &cases);
    finite_check(gpu);
    printf("test_cuda_sampler: %d draws equal to the host sampler's\n", cases);
    for (size_t i = 0; i < G3_ARRAY_LEN(FIXTURES); i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", FIXTURES[i]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        generation_matches(FIXTURES[i], &m, gpu);
        g3_model_free(&m);
        if (i < 2) cli_matches(FIXTURES[i]);
    }
    g3_backend_free(gpu);
    return check_done();
}
#endif
