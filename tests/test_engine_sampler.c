// test_engine_sampler.c: the engine's device-sampler path (engine.h: G3_LOGITS_KEEP, then the
// backend's sample_top_k, then g3_sampler_finish) without a GPU: the CPU backend posing as a
// device (host = 0: the logits "stay there", copies are memmove) with a sample_top_k made of
// the sampler's own steps (g3_sample_penalties, g3_sample_select_top_k). On the fixtures, the
// tokens equal the host path's (the plain CPU backend) for greedy, top-k, top-p, min-p and
// penalties, one at a time and batched, with a sequence that needs the host path (top-k 0)
// or a plain greedy one in the same batch; G3_HOST_SAMPLER=1 turns the device path off; a row
// the device flags as non-finite ends its sequence with the host's message.
// test_cuda_sampler holds the real GPU op to the same steps.
#include "check.h"
#include "fixtures.h"
#include "gen/engine.h"
#include "model/forward.h"
#include "sampler/sampler.h"

static int calls, force_bad;

static int ref_sample_top_k(G3Backend *be, const float *x, int R, int n, const G3SampleRow *rows, const int32_t *win, int nwin,
                            int kmax, int32_t *ids, float *vals, int32_t *bad) {
    (void)be;
    calls++;
    float *cp = malloc((size_t)n * sizeof *cp);
    int32_t *counts = calloc((size_t)n, sizeof *counts);
    G3Candidates c = {malloc((size_t)n * sizeof(G3Candidate)), 0, n, 0};
    for (int r = 0; r < R; r++) {
        const float *xr = x + (long)r * n;
        int ok = 1;
        float mx = -INFINITY;
        for (int i = 0; i < n; i++) { ok &= xr[i] < INFINITY; mx = xr[i] > mx ? xr[i] : mx; }
        bad[r] = !(ok && mx > -INFINITY) || (force_bad && r == 0);
        memcpy(cp, xr, (size_t)n * sizeof *cp);
        if (rows[r].nw) {
            if (rows[r].w0 + rows[r].nw > nwin) return g3_errorf("window outside the list");
            g3_sample_penalties(cp, n, win + rows[r].w0, rows[r].nw, rows[r].repeat, rows[r].presence, rows[r].frequency, counts);
        }
        g3_sample_select_top_k(&c, cp, n, rows[r].k);
        for (int i = 0; i < rows[r].k; i++) { ids[r * kmax + i] = c.c[i].id; vals[r * kmax + i] = c.c[i].logit; }
    }
    free(cp); free(counts); free(c.c);
    return 0;
}

typedef struct {
    float temperature, top_p, min_p, repeat, presence, frequency;
    int top_k, window;
} Setting;

enum { NP = 4, MAXT = 16 };

// Tokens of NP prompts; sequence i samples with setting sel[i] (NULL: no sampler, greedy).
static void generate(G3Model *m, G3Backend *be, int batch, const Setting *const sel[NP], int32_t out[NP][MAXT], int *nout,
                     G3StopReason *why) {
    static const int32_t prompts[NP][9] = {{2, 5, 9, 5, 9}, {2, 100, 3, 7, 12, 18, 40, 41, 42}, {2, 77}, {2, 60, 61, 60}};
    static const int len[NP] = {5, 9, 2, 4};
    G3State *s = g3_state_new_on(be, m, batch ? NP : 1, 64, 16, 0, NULL);
    if (!s) { CHECK(0, "%s", g3_error()); return; }
    G3Engine *e = g3_engine_new(s, NULL);
    G3Sampler *smp[NP] = {0};
    int id[NP];
    for (int i = 0; i < NP; i++) {
        static const Setting none = {0};
        const Setting *t = sel[i] ? sel[i] : &none;
        G3SamplerConfig c = g3_sampler_defaults();
        c.temperature = t->temperature;
        c.top_k = t->top_k;
        c.top_p = t->top_p;
        c.min_p = t->min_p;
        c.repeat_penalty = t->repeat;
        c.presence_penalty = t->presence;
        c.frequency_penalty = t->frequency;
        c.repeat_window = t->window;
        c.seed = 500 + (uint64_t)i;
        if (sel[i]) smp[i] = g3_sampler_new(&c, m->cfg.vocab);
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
        why[i] = info.stop;
        if (info.stop == G3_STOP_ERROR) CHECK(!strcmp(info.error, "non-finite logits (NaN or inf)"), "error: %s", info.error);
        memcpy(out[i], info.ids, (size_t)info.n * sizeof(int32_t));
        g3_sampler_free(smp[i]);
    }
    g3_engine_free(e);
    g3_state_free(s);
}

static int same(int32_t a[NP][MAXT], const int *na, int32_t b[NP][MAXT], const int *nb) {
    for (int i = 0; i < NP; i++)
        if (na[i] != nb[i] || memcmp(a[i], b[i], (size_t)na[i] * sizeof(int32_t))) return 0;
    return 1;
}

int main(void) {
    static G3Backend fake;
    fake = *g3_backend_cpu();
    fake.name = "cpu posing as a device";
    fake.host = 0;
    fake.sample_top_k = ref_sample_top_k;
    // (the fixtures' random weights repeat the last token with near certainty: strong
    // penalties or high temperatures make the draws matter)
    static const Setting sets[] = {
        {0.8f, 0.95f, 0.0f, 1.0f, 30.0f, 0.0f, 64, 64},
        {8.0f, 0.9f, 0.05f, 1.3f, 0.2f, 0.1f, 40, 16},
        {20.0f, 1.0f, 0.1f, 1.0f, 0.0f, 5.0f, 200, 0},
        {0.0f, 1.0f, 0.0f, 1.5f, 10.0f, 0.0f, 64, 8},  // greedy with penalties
        {0.0f, 1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 64, 64},  // plain greedy: the argmax path
        {8.0f, 0.9f, 0.0f, 1.0f, 0.0f, 0.0f, 0, 64},   // top-p alone: the host path
    };
    const char *fx[] = {"gemma3-tiny-f32", "gemma2-tiny-f32"};
    for (size_t f = 0; f < G3_ARRAY_LEN(fx); f++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fx[f]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        int32_t ref[NP][MAXT], got[NP][MAXT];
        int nref[NP], ngot[NP];
        G3StopReason why[NP];
        // every sequence with one setting, then mixed batches: one that needs the host path
        // (top-p alone) and a plain greedy one beside device samplers; no sampler at all
        const int NS = (int)G3_ARRAY_LEN(sets);
        for (int k = 0; k < NS + 2; k++) {
            const Setting *sel[NP];
            for (int i = 0; i < NP; i++) sel[i] = &sets[k < NS ? k : 0];
            if (k == NS) { sel[1] = &sets[5]; sel[2] = &sets[1]; sel[3] = &sets[4]; }
            if (k == NS + 1) { sel[1] = NULL; sel[2] = &sets[3]; sel[3] = &sets[2]; }
            generate(&m, g3_backend_cpu(), 0, sel, ref, nref, why);
            int distinct = 0;
            for (int i = 0; i < NP; i++)
                for (int j = 1; j < nref[i]; j++) distinct |= ref[i][j] != ref[i][0];
            if (k < 3) CHECK(distinct, "%s setting %d: the draws never mattered (a weak test)", fx[f], k);
            for (int run = 0; run < 3; run++) {  // one at a time, batched, G3_HOST_SAMPLER=1
                calls = 0;
                if (run == 2) setenv("G3_HOST_SAMPLER", "1", 1);
                generate(&m, &fake, run == 1, sel, got, ngot, why);
                unsetenv("G3_HOST_SAMPLER");
                CHECK(same(ref, nref, got, ngot), "%s, setting %d, %s: tokens differ from the host path's", fx[f], k,
                      run == 0 ? "device path" : run == 1 ? "device path, batched" : "G3_HOST_SAMPLER=1");
                if (k >= NS) continue;  // (mixed: whether a call goes to the device depends on who chooses in it)
                const int want_calls = run < 2 && k != 4 && k != 5;  // plain greedy: the argmax; top-p alone: the host
                CHECK(want_calls ? calls > 0 : calls == 0, "%s, setting %d, run %d: sample_top_k called %d times", fx[f], k, run, calls);
            }
        }
        // a row the device flags: that sequence ends with the host's message, the others go on
        force_bad = 1;
        const Setting *all0[NP] = {&sets[0], &sets[0], &sets[0], &sets[0]};
        generate(&m, &fake, 1, all0, got, ngot, why);
        force_bad = 0;
        int errors = 0;
        for (int i = 0; i < NP; i++) errors += why[i] == G3_STOP_ERROR;
        CHECK(errors >= 1, "%s: a flagged row did not end its sequence", fx[f]);
        g3_model_free(&m);
    }
    return check_done();
}
