// test_cuda_model.c: the whole model on the CUDA backend against the same model on the CPU
// (which test_forward holds to transformers' float64 outputs), for what the fixtures'
// reference does not cover:
//   - every hook site, recorded on both backends in one prefill (exact mode: 1e-5);
//   - an intervention (a hook that edits a site: zeroing one layer's MLP output, scaling the
//     residual stream) changes the logits the same way on both;
//   - generation through the engine: several prompts of different lengths decoded together,
//     greedy and seeded sampling at temperature > 0, give the CPU's tokens, and the batch
//     gives the tokens of one-at-a-time decoding;
//   - a request for the GPU where there is none, or for more memory than it has, is a clear error;
//   - the default model (5 query heads on one kv head): the intervention and generation checks.
// Skipped with a line saying so in a build without CUDA or on a machine without a GPU.
#include "check.h"
#include "fixtures.h"
#include "gen/engine.h"
#include "model/forward.h"

#ifndef G3_CUDA
int main(void) {
    printf("test_cuda_model: skipped: no GPU (a build without CUDA: make CUDA=1)\n");
    return 0;
}
#else

// ---- hooks: the CPU's recording, then the GPU's compared with it ----

enum { MAXREC = 4096 };
typedef struct {
    int site, layer, head, rows, cols;
    float *d;
} Event;
typedef struct {
    int n, cmp;  // records kept; cmp: compare with rec instead of recording
    Event rec[MAXREC];
    int at;
    double worst;
    int worst_site;
    const char *fixture;
} Rec;

static void on_hook(void *ctx, const G3HookEvent *ev) {
    Rec *r = ctx;
    const long n = (long)ev->rows * ev->cols;
    if (!r->cmp) {
        if (r->n >= MAXREC) return;
        r->rec[r->n].site = ev->site; r->rec[r->n].layer = ev->layer; r->rec[r->n].head = ev->head;
        r->rec[r->n].rows = ev->rows; r->rec[r->n].cols = ev->cols;
        r->rec[r->n].d = malloc((size_t)n * sizeof(float));
        memcpy(r->rec[r->n].d, ev->data, (size_t)n * sizeof(float));
        r->n++;
        return;
    }
    if (r->at >= r->n) { CHECK(0, "%s: the GPU fired more hook events than the CPU", r->fixture); return; }
    const Event *c = &r->rec[r->at++];
    if (c->site != (int)ev->site || c->layer != ev->layer || c->head != ev->head || c->rows != ev->rows || c->cols != ev->cols) {
        CHECK(0, "%s: hook event %d differs: site %d/%d layer %d/%d head %d/%d shape %dx%d/%dx%d", r->fixture, r->at - 1, c->site,
              ev->site, c->layer, ev->layer, c->head, ev->head, c->rows, c->cols, ev->rows, ev->cols);
        return;
    }
    double e = rel_err(ev->data, c->d, n);
    if (e > r->worst) { r->worst = e; r->worst_site = c->site; }
}

static void hooks_match(const char *name, G3Model *m, G3Backend *gpu) {
    STSet exp;
    fixture_open(&exp, name);
    int32_t *ids;
    const int T = fixture_ids(&exp, "input_ids", &ids), V = m->cfg.vocab;
    static Rec r;
    memset(&r, 0, sizeof r);
    r.fixture = name;
    float *lc = malloc((size_t)T * V * sizeof(float)), *lg = malloc((size_t)T * V * sizeof(float));
    for (int dev = 0; dev < 2; dev++) {
        G3State *s = g3_state_new_on(dev ? gpu : g3_backend_cpu(), m, 1, T, T, 0, NULL);
        CHECK(s != NULL, "%s", g3_error());
        if (!s) break;
        r.cmp = dev;
        g3_state_set_hook(s, on_hook, &r, (1u << G3_HOOK_NSITES) - 1, ~0ull);
        CHECK(g3_prefill(s, 0, ids, T, dev ? lg : lc) == 0, "%s", g3_error());
        g3_state_free(s);
    }
    CHECK(r.at == r.n, "%s: the GPU fired %d hook events, the CPU %d", name, r.at, r.n);
    CHECK(r.worst <= 1e-5, "%s: hook site %d differs by %.3g (exact mode)", name, r.worst_site, r.worst);
    double e = rel_err(lg, lc, (long)T * V);
    CHECK(e <= 1e-5, "%s: logits with every hook on: GPU vs CPU %.3g", name, e);
    printf("%-30s hooks: %d events, worst rel err %.2e (site %d); logits %.2e\n", name, r.n, r.worst, r.worst_site, e);
    for (int i = 0; i < r.n; i++) free(r.rec[i].d);
    free(lc); free(lg); free(ids);
    st_close(&exp);
}

// ---- an intervention: zero layer 1's MLP output, scale the residual after layer 0 ----

static void edit(void *ctx, const G3HookEvent *ev) {
    (void)ctx;
    const long n = (long)ev->rows * ev->cols;
    if (ev->site == G3_HOOK_MLP_OUT && ev->layer == 1) memset(ev->data, 0, (size_t)n * sizeof(float));
    if (ev->site == G3_HOOK_RESID_POST && ev->layer == 0)
        for (long i = 0; i < n; i++) ev->data[i] *= 0.5f;
}

static void intervention_matches(const char *name, G3Model *m, G3Backend *gpu) {
    const int32_t ids[] = {2, 17, 30, 41, 5, 99, 7, 12, 64, 3};
    const int T = 10, V = m->cfg.vocab;
    float *l[3];
    for (int k = 0; k < 3; k++) {  // CPU edited, GPU edited, GPU clean
        l[k] = malloc((size_t)T * V * sizeof(float));
        G3State *s = g3_state_new_on(k ? gpu : g3_backend_cpu(), m, 1, T, T, 0, NULL);
        if (!s) { CHECK(0, "%s", g3_error()); return; }
        if (k < 2) g3_state_set_hook(s, edit, NULL, 1u << G3_HOOK_MLP_OUT | 1u << G3_HOOK_RESID_POST, 3);
        CHECK(g3_prefill(s, 0, ids, T, l[k]) == 0, "%s", g3_error());
        g3_state_free(s);
    }
    double e = rel_err(l[1], l[0], (long)T * V), d = rel_err(l[2], l[0], (long)T * V);
    CHECK(e <= 1e-5, "%s: an edited run differs GPU vs CPU by %.3g", name, e);
    CHECK(d > 1e-3, "%s: the edit changed nothing on the GPU (%.3g)", name, d);
    for (int k = 0; k < 3; k++) free(l[k]);
}

// ---- generation through the engine ----

enum { NP = 5, MAXT = 24 };

// Tokens of NP prompts decoded together (batch) or one at a time, greedy or sampled.
static void generate(G3Model *m, G3Backend *be, int batch, float temp, int32_t out[NP][MAXT], int *nout) {
    static const int32_t prompts[NP][12] = {{2, 5, 9}, {2, 100, 3, 7, 12, 18, 40, 41, 42}, {2, 77}, {2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
                                            {2, 60, 61}};
    static const int len[NP] = {3, 9, 2, 12, 3};
    const int slots = batch ? NP : 1;
    G3State *s = g3_state_new_on(be, m, slots, 64, 16, 0, NULL);
    if (!s) { CHECK(0, "%s", g3_error()); return; }
    G3Engine *e = g3_engine_new(s, NULL);
    G3Sampler *smp[NP] = {0};
    int id[NP];
    for (int i = 0; i < NP; i++) {
        G3SamplerConfig sc = g3_sampler_defaults();
        sc.temperature = temp;
        sc.seed = 1234 + (uint64_t)i;
        if (temp > 0) smp[i] = g3_sampler_new(&sc, m->cfg.vocab);
        G3SeqParams p = {.prompt = prompts[i], .nprompt = len[i], .max_tokens = MAXT, .sampler = smp[i]};
        id[i] = g3_engine_add(e, &p);
        CHECK(id[i] >= 0, "%s", g3_error());
        if (!batch) {  // one at a time: run it to the end before the next joins
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
    for (int t = 0; t < 2; t++) {
        const float temp = t ? 0.9f : 0.f;
        int32_t ref[NP][MAXT], got[NP][MAXT];
        int nref[NP], ngot[NP];
        generate(m, g3_backend_cpu(), 1, temp, ref, nref);
        for (int batch = 0; batch < 2; batch++) {
            generate(m, gpu, batch, temp, got, ngot);
            for (int i = 0; i < NP; i++)
                CHECK(nref[i] == ngot[i] && !memcmp(ref[i], got[i], (size_t)nref[i] * sizeof(int32_t)),
                      "%s: prompt %d, %s, %s: GPU tokens differ from the CPU's", name, i, temp > 0 ? "sampled" : "greedy",
                      batch ? "batched" : "one at a time");
        }
    }
}

int main(void) {
    if (g3_backend_cuda_devices() == 0) {
        printf("test_cuda_model: skipped: no GPU (no CUDA device or driver)\n");
        G3Backend *be = g3_backend_open("cuda");
        CHECK(be == NULL && strstr(g3_error(), "no GPU"), "asking for the GPU where there is none: %s", g3_error());
        return check_done();
    }
    for (size_t i = 0; i < G3_ARRAY_LEN(FIXTURES); i++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", FIXTURES[i]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        G3Backend *gpu = g3_backend_open("cuda");
        CHECK(gpu != NULL, "%s", g3_error());
        if (!gpu) { g3_model_free(&m); break; }
        hooks_match(FIXTURES[i], &m, gpu);
        intervention_matches(FIXTURES[i], &m, gpu);
        generation_matches(FIXTURES[i], &m, gpu);
        // a state far larger than any GPU: the message says what was asked and what is free
        G3State *big = g3_state_new_on(gpu, &m, 1 << 16, 8192, 64, 0, NULL);
        CHECK(big == NULL && strstr(g3_error(), "free"), "a state too large for the GPU: %s", big ? "created" : g3_error());
        g3_state_free(big);
        g3_backend_free(gpu);
        g3_model_free(&m);
    }
    // the default model: 5 query heads on one kv head (the decode kernel's group of 5, since
    // 2026-12-07; before, its attention ran on the host), 8 layers, a vocabulary of 8,192
    G3Model dm;
    if (g3_model_load(&dm, "models/default")) {
        CHECK(0, "models/default: %s", g3_error());
    } else {
        G3Backend *gpu = g3_backend_open("cuda");
        CHECK(gpu != NULL, "%s", g3_error());
        if (gpu) {
            intervention_matches("models/default", &dm, gpu);
            generation_matches("models/default", &dm, gpu);
            g3_backend_free(gpu);
        }
        g3_model_free(&dm);
    }
    return check_done();
}
#endif
