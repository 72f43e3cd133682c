// bench_hooks.c: what the hooks cost, on a random-weight Gemma 3 1B (BF16): forward tok/s
// with no hook set, against every site recorded to memory (the recorder of model/record.h,
// scores and patterns included, which sends attention down its materialising path), and
// every site but scores/pattern (the fast attention paths, the copies only). Prefill of one
// prompt, and greedy-length decode steps after it. Medians of several repetitions, with min
// and max (the machine is shared and noisy).
//
// env: G3_BENCH_MODEL (default models/bench-1b-bf16, created with `init` if missing),
//      G3_BENCH_THREADS (default 2), G3_BENCH_REPS (default 3), G3_BENCH_PROMPT (default 64),
//      G3_BENCH_DECODE (default 8).
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/forward.h"
#include "model/init.h"
#include "bench_model.h"
#include "model/record.h"

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int env_int(const char *name, int def) { return getenv(name) ? atoi(getenv(name)) : def; }

// One repetition: prefill P tokens, then D one-token steps; tok/s of each into pf, dc.
static int run(const G3Model *m, const int32_t *ids, int P, int D, const char *const *pats, int npat, double *pf, double *dc) {
    G3State *s = g3_state_new(m, 1, P + D, P, 1, NULL);
    if (!s) return -1;
    G3Recorder r = {0};
    if (npat) {
        if (g3_rec_init(&r, &m->cfg, 1, P + D, pats, npat)) { g3_state_free(s); return -1; }
        g3_rec_attach(&r, s);
    }
    double t0 = g3_now();
    G3Segment sg = {0, 0, P};
    int rc = g3_forward(s, ids, &sg, 1, G3_LOGITS_LAST);
    double t1 = g3_now();
    for (int i = 0; i < D && !rc; i++) {
        sg = (G3Segment){0, P + i, 1};
        rc = g3_forward(s, ids + P + i, &sg, 1, G3_LOGITS_LAST);
    }
    double t2 = g3_now();
    *pf = P / (t1 - t0);
    *dc = D / (t2 - t1);
    g3_rec_free(&r);
    g3_state_free(s);
    return rc;
}

int main(void) {
    const char *dir = getenv("G3_BENCH_MODEL") ? getenv("G3_BENCH_MODEL") : "models/bench-1b-bf16";
    int threads = env_int("G3_BENCH_THREADS", 2), reps = env_int("G3_BENCH_REPS", 3);
    int P = env_int("G3_BENCH_PROMPT", 64), D = env_int("G3_BENCH_DECODE", 8);
    if (reps < 1 || reps > 15) reps = 3;
    omp_set_num_threads(threads);
    G3Model m;
    if (bench_load_1b(&m, dir)) return 1;
    g3_kernels_init(G3_ISA_AVX512BF16);
    int32_t *ids = malloc((size_t)(P + D) * sizeof *ids);
    ids[0] = 2;
    for (int i = 1; i < P + D; i++) ids[i] = (int32_t)((i * 7919) % (m.cfg.vocab - 8) + 4);
    const char *all[] = {"*"};
    const char *no_attn[] = {"hook_embed", "blocks.*.hook_resid_*", "blocks.*.hook_*_out", "blocks.*.ln*", "blocks.*.mlp.*",
                             "blocks.*.attn.hook_q", "blocks.*.attn.hook_k", "blocks.*.attn.hook_v", "blocks.*.attn.hook_z",
                             "blocks.*.attn.hook_rot_*", "ln_final.*", "logits"};
    struct { const char *what; const char *const *pats; int npat; } cases[] = {
        {"no hooks", NULL, 0},
        {"every site recorded", all, 1},
        {"every site but scores/pattern", no_attn, (int)G3_ARRAY_LEN(no_attn)},
    };
    printf("%s, %d threads, fast mode; prefill %d tokens, then %d decode steps; median [min, max] of %d\n", dir, threads, P, D, reps);
    printf("%-32s %24s %24s\n", "hooks", "prefill tok/s", "decode tok/s");
    enum { NC = 3 };
    double pf[NC][16], dc[NC][16], w0, w1;
    if (run(&m, ids, G3_MIN(P, 16), 1, NULL, 0, &w0, &w1)) { fprintf(stderr, "%s\n", g3_error()); return 1; }  // pages the weights in
    // the cases take turns within each repetition, so that the machine's load drifting over
    // the run weighs on all of them alike
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < NC; k++)
            if (run(&m, ids, P, D, cases[k].pats, cases[k].npat, &pf[k][r], &dc[k][r])) { fprintf(stderr, "%s\n", g3_error()); return 1; }
    double base_pf = 0, base_dc = 0;
    for (int k = 0; k < NC; k++) {
        qsort(pf[k], (size_t)reps, sizeof(double), cmp_d);
        qsort(dc[k], (size_t)reps, sizeof(double), cmp_d);
        double mp = pf[k][reps / 2], md = dc[k][reps / 2];
        if (k == 0) { base_pf = mp; base_dc = md; }
        printf("%-32s %7.1f [%6.1f, %6.1f] %7.2f [%5.2f, %5.2f]   (%.0f%% / %.0f%% of no hooks)\n", cases[k].what, mp, pf[k][0], pf[k][reps - 1], md,
               dc[k][0], dc[k][reps - 1], 100 * mp / base_pf, 100 * md / base_dc);
    }
    free(ids);
    g3_model_free(&m);
    return 0;
}
