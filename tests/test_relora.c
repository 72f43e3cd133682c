// test_relora.c: LoRA over an f32 base and ReLoRA (relora.h), on the tiny f32 fixture:
//   - a merge changes no logits at the moment of merging (W += s B A with random B, then A
//     redrawn and B = 0), changes the base and leaves B zero;
//   - pruning zeroes exactly floor(prune * n) moments of each factor, the smallest, and none
//     of the other tensors' (0 keeps all, 1 resets);
//   - in the low-rank phase AdamW leaves the adapted weights bit-identical and trains the
//     rest; in the full-rank phase the adapted weights move and the factors do not;
//   - the jagged schedule against its closed form;
//   - effective rank: 1 for a rank-1 matrix, n for orthogonal rows, the entropy formula for
//     given singular values;
//   - `train --init tiny --lora ... --relora-every` (with a warm start) resumed at a merge, at
//     the switch and between them equals an uninterrupted run bit for bit; refusals (env BIN).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "model/adapter.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/relora.h"
#include "train/schedule.h"
#include "train/train.h"

enum { B = 2, T = 8 };
static int32_t in[B * T], tg[B * T];

static uint64_t rs = 99;
static float rnd(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(rs >> 40) / (float)(1 << 24) - 0.5f;
}

static void hybrid(G3TrainModel *tm, const char *targets) {
    G3Model m;
    G3LoraSpec s;
    char spec[100];
    snprintf(spec, sizeof spec, "r=3,alpha=6,targets=%s", targets);
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_lora_spec_parse(&s, spec) || g3_train_model_from(tm, &m) ||
        g3_train_model_add_lora(tm, &s, 7)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    g3_model_free(&m);
}

static int is_factor(const G3TrainModel *tm, int j) { return tm->p[j].tensor < 0; }

static void test_merge(void) {
    G3TrainModel tm;
    hybrid(&tm, "all");
    CHECK(tm.hybrid && tm.m.adapter == tm.lora, "the hybrid model has its adapter attached");
    for (int j = 0; j < tm.np; j++)
        if (is_factor(&tm, j))
            for (int64_t e = 0; e < tm.p[j].numel; e++) tm.params[tm.p[j].off + e] = 0.3f * rnd();
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    const int64_t V = tm.m.cfg.vocab;
    float *l0 = g3_malloc(sizeof(float) * B * T * V), *l1 = g3_malloc(sizeof(float) * B * T * V);
    float *wq = g3_malloc(sizeof(float) * (size_t)tm.m.t[tm.m.layer_idx[0][W_Q]].numel);
    memcpy(wq, tm.params + tm.off[tm.m.layer_idx[0][W_Q]], sizeof(float) * (size_t)tm.m.t[tm.m.layer_idx[0][W_Q]].numel);
    CHECK(g3_train_logits(&tm, cx, in, l0) == 0, "%s", g3_error());
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW o;
    CHECK(g3_adamw_init_model(&o, &oc, &tm, 0) == 0, "adamw");
    for (int64_t e = 0; e < o.n; e++) o.m[e] = rnd() + 0.001f, o.v[e] = fabsf(rnd()) + 0.001f;  // no zeros
    double pruned = -1;
    CHECK(g3_relora_merge(&tm, &o, 0.99, 7, 1, &pruned) == 0, "%s", g3_error());
    CHECK(g3_train_logits(&tm, cx, in, l1) == 0, "%s", g3_error());
    double e = rel_err(l1, l0, (long)(B * T * V));
    CHECK(e < 1e-5, "a merge changes no logits: relative %.3g", e);
    printf("merge: logits relative difference %.3g\n", e);
    const G3LoraModule *md = g3_adapter_module(tm.lora, 0, W_Q);
    int bzero = 1;
    for (int64_t k = 0; k < md->B.rows * md->B.cols; k++) bzero &= ((const float *)md->B.data)[k] == 0;
    CHECK(bzero, "B is zero after the merge");
    CHECK(memcmp(wq, tm.params + tm.off[tm.m.layer_idx[0][W_Q]], sizeof(float) * 8) != 0, "the base took the update");
    // pruning: exactly floor(0.99 n) of each factor's m and v, the smallest; nothing elsewhere
    int exact = 1, smallest = 1, others = 1;
    int64_t z = 0, tot = 0;
    for (int j = 0; j < tm.np; j++) {
        const float *mm = o.m + tm.p[j].off, *vv = o.v + tm.p[j].off;
        int64_t n = tm.p[j].numel, zm = 0, zv = 0;
        for (int64_t k = 0; k < n; k++) zm += mm[k] == 0, zv += vv[k] == 0;
        if (!is_factor(&tm, j)) { others &= zm == 0 && zv == 0; continue; }
        exact &= zm == (int64_t)floor(0.99 * (double)n) && zv == zm;
        z += zm + zv;
        tot += 2 * n;
    }
    CHECK(exact, "each factor keeps exactly 1 - floor(0.99 n)/n of its moments");
    CHECK(others, "the moments of the other tensors are untouched");
    CHECK(fabs(pruned - (double)z / (double)tot) < 1e-12 && pruned > 0.98 && pruned <= 0.99, "reported fraction %.6f", pruned);
    // the smallest go: prune a known vector
    float x[10] = {5, -1, 3, 0.5f, -7, 2, -0.25f, 9, 4, -6};
    CHECK(g3_prune_smallest(x, 10, 0.35) == 3, "floor(0.35 * 10) = 3 zeroed");
    smallest = x[1] == 0 && x[3] == 0 && x[6] == 0 && x[0] == 5 && x[5] == 2 && x[4] == -7;
    CHECK(smallest, "the three smallest magnitudes are the ones zeroed");
    float y[4] = {1, 2, 3, 4};
    CHECK(g3_prune_smallest(y, 4, 0) == 0 && y[0] == 1, "prune 0 keeps all");
    CHECK(g3_prune_smallest(y, 4, 1) == 4 && y[3] == 0, "prune 1 resets");
    CHECK(g3_relora_merge(&tm, &o, 1.0, 7, 2, &pruned) == 0 && pruned == 1.0, "prune 1 zeroes every adapter moment");
    free(l0);
    free(l1);
    free(wq);
    g3_adamw_free(&o);
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
}

// AdamW in each phase: which tensors move.
static void test_phases(void) {
    G3TrainModel tm;
    hybrid(&tm, "q,v");
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW o;
    g3_adamw_init_model(&o, &oc, &tm, 0);
    for (int phase = 0; phase < 2; phase++) {
        const int full = phase == 1;
        g3_hybrid_set_full_rank(&tm, &o, full);
        G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
        float *before = g3_malloc(sizeof(float) * (size_t)tm.n);
        memcpy(before, tm.params, sizeof(float) * (size_t)tm.n);
        for (int s = 0; s < 3; s++) {
            g3_train_zero_grads(&tm);
            double l = g3_train_forward_backward(&tm, cx, in, tg, 1.0f);
            CHECK(isfinite(l), "loss");
            g3_adamw_step(&o, tm.params, tm.grads, 1e-2, 1.0f);
        }
        int q_same = 1, k_moved = 0, norm_moved = 0, fac_moved = 0;
        const G3Param *pq = NULL, *pk = NULL, *pn = NULL;
        for (int j = 0; j < tm.np; j++) {
            if (tm.p[j].tensor == tm.m.layer_idx[1][W_Q]) pq = &tm.p[j];
            if (tm.p[j].tensor == tm.m.layer_idx[1][W_K]) pk = &tm.p[j];
            if (tm.p[j].tensor == tm.m.layer_idx[1][W_ATTN_NORM]) pn = &tm.p[j];
            if (is_factor(&tm, j))
                fac_moved |= memcmp(before + tm.p[j].off, tm.params + tm.p[j].off, sizeof(float) * (size_t)tm.p[j].numel) != 0;
        }
        q_same = !memcmp(before + pq->off, tm.params + pq->off, sizeof(float) * (size_t)pq->numel);
        k_moved = memcmp(before + pk->off, tm.params + pk->off, sizeof(float) * (size_t)pk->numel) != 0;
        norm_moved = memcmp(before + pn->off, tm.params + pn->off, sizeof(float) * (size_t)pn->numel) != 0;
        if (!full) {
            CHECK(q_same, "low-rank phase: an adapted weight stays bit-identical");
            CHECK(k_moved && norm_moved, "low-rank phase: weights not adapted (k_proj, a norm) are trained");
            CHECK(fac_moved, "low-rank phase: the factors are trained");
        } else {
            CHECK(!q_same && k_moved && norm_moved, "full-rank phase: every weight is trained");
            CHECK(!fac_moved, "full-rank phase: the factors stay put");
        }
        free(before);
        g3_train_ctx_free(cx);
    }
    g3_adamw_free(&o);
    g3_train_model_free(&tm);
}

static void test_schedule(void) {
    G3Schedule s = {G3_SCHED_COSINE, 1.0, 0.1, 5, 100, 0, 10, 20, 4};  // restarts at 10, 30, 50, 70, 90
    G3Schedule base = s;
    base.restart_every = 0;
    int ok = 1;
    for (int64_t t = 0; t < 100; t++) {
        double want = g3_schedule_lr(&base, t);
        if (t >= 10) {
            int64_t s0 = 10 + (t - 10) / 20 * 20, i = t - s0;
            if (i < 4) want = g3_schedule_lr(&base, s0 + 3) * (double)(i + 1) / 4.0;
        }
        ok &= fabs(g3_schedule_lr(&s, t) - want) < 1e-15;
    }
    CHECK(ok, "jagged schedule: linear re-warm to the envelope at each restart");
    CHECK(g3_schedule_lr(&s, 9) == g3_schedule_lr(&base, 9) && g3_schedule_lr(&s, 10) < 0.3 * g3_schedule_lr(&base, 10),
          "the first restart is at restart_first");
    G3Schedule z = s;
    z.restart_first = 0;
    CHECK(g3_schedule_lr(&z, 0) == g3_schedule_lr(&base, 0) && g3_schedule_lr(&z, 2) == g3_schedule_lr(&base, 2),
          "no restart at step 0: the warmup is the schedule's own");
}

static void test_erank(void) {
    enum { R = 12, C = 7 };
    float d[R * C];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) d[i * C + j] = (float)(i + 1) * (float)(j - 3);  // rank 1
    CHECK(fabs(g3_effective_rank(d, R, C) - 1) < 1e-6, "rank-1: %.9f", g3_effective_rank(d, R, C));
    memset(d, 0, sizeof d);
    for (int j = 0; j < C; j++) d[j * C + j] = 2;  // equal singular values
    CHECK(fabs(g3_effective_rank(d, R, C) - C) < 1e-6, "orthogonal: %.9f", g3_effective_rank(d, R, C));
    // singular values 3, 2, 1 (rotated by a permutation and signs): exp(-sum p log p)
    memset(d, 0, sizeof d);
    d[0 * C + 4] = 3, d[5 * C + 1] = -2, d[9 * C + 6] = 1;
    double want = exp(-(0.5 * log(0.5) + (1 / 3.0) * log(1 / 3.0) + (1 / 6.0) * log(1 / 6.0)));
    CHECK(fabs(g3_effective_rank(d, R, C) - want) < 1e-6, "3,2,1: %.9f vs %.9f", g3_effective_rank(d, R, C), want);
    // a random 40 x 30 matrix against the same measure of its transpose
    float a[40 * 30], at[30 * 40];
    for (int i = 0; i < 40; i++)
        for (int j = 0; j < 30; j++) at[j * 40 + i] = a[i * 30 + j] = rnd();
    double e1 = g3_effective_rank(a, 40, 30), e2 = g3_effective_rank(at, 30, 40);
    CHECK(fabs(e1 - e2) < 1e-6 && e1 > 15 && e1 < 30, "random: %.6f and transposed %.6f", e1, e2);
    double e3 = g3_effective_rank_ex(a, 40, 30, 1);
    CHECK(fabs(e1 - e3) < 1e-6, "the fast path (tridiagonal QL) agrees with Jacobi: %.9f %.9f", e1, e3);
    {  // and on a 200 x 300 matrix of decaying spectrum (the size the experiment measures)
        enum { M = 200, N = 300 };
        float *big = malloc(sizeof(float) * M * N);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) big[i * N + j] = rnd() * expf(-0.02f * (float)i) + (i == j ? 0.3f : 0.0f);
        double f = g3_effective_rank(big, M, N), r = g3_effective_rank_ex(big, M, N, 1);
        CHECK(fabs(f - r) < 1e-6 * r && f > 10, "200 x 300: fast %.9f, Jacobi %.9f", f, r);
        free(big);
    }
    memset(d, 0, sizeof d);
    CHECK(g3_effective_rank(d, R, C) == 0, "zero matrix: 0");
}

static void test_cli(const char *dir) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char data[300];
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 16; i++) {
        fprintf(f, "{\"ids\": [");
        for (int k = 0; k < 17; k++) fprintf(f, "%s%d", k ? ", " : "", (k * 13 + i * 101) % 1000 + 3);
        fprintf(f, "]}\n");
    }
    fclose(f);
    const char *c = "--init tiny --lora r=4 --relora-every 3 --relora-rewarm 2 --relora-warm-start 2 --batch 2 --seq 16 --warmup 2 "
                    "--lr 1e-2 --threads 1 --save-every 0 --eval-every 0 --schedule constant";
    CHECK(sh("%s train %s --data %s --steps 10 --out %s/ra 2>%s/log && grep -q relora_pruned %s/ra/metrics.jsonl && "
             "test -f %s/ra/model.safetensors && test ! -f %s/ra/adapter_config.json && "
             "%s forward --model %s/ra --ids 2,17,300 >/dev/null 2>&1",
             bin, c, data, dir, dir, dir, dir, dir, bin, dir) == 0,
          "train --relora-every: merges logged, a merged Hub model exported");
    const int at[] = {2, 5, 7};
    for (int k = 0; k < 3; k++)
        CHECK(sh("rm -rf %s/rb && %s train %s --data %s --steps %d --out %s/rb 2>>%s/log && %s train %s --data %s --steps 10 --out %s/rb "
                 "2>>%s/log && cmp -s %s/ra/model.safetensors %s/rb/model.safetensors",
                 dir, bin, c, data, at[k], dir, dir, bin, c, data, dir, dir, dir, dir) == 0,
              "ReLoRA resumed after step %d equals the uninterrupted run bit for bit", at[k]);
    CHECK(sh("%s train --init tiny --lora r=4 --data %s --batch 2 --seq 16 --steps 2 --threads 1 --erank 1 --eval-every 1 --out %s/sc "
             "2>>%s/log && grep -q update_erank %s/sc/metrics.jsonl",
             bin, data, dir, dir, dir) == 0,
          "LoRA from scratch (--init --lora) trains, with --erank");
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --relora-every 3 --data %s --out %s/x 2>/dev/null", bin, data, dir) == 1,
          "--relora-every without --lora is refused");
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --lora r=2 --relora-every 3 --optim adamw8bit --data %s --out %s/x 2>/dev/null",
             bin, data, dir) == 1,
          "ReLoRA with 8-bit AdamW is refused");
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --lora r=2 --relora-every 3 --relora-prune 1.5 --data %s --out %s/x 2>/dev/null",
             bin, data, dir) == 1,
          "--relora-prune outside [0, 1] is refused");
}

int main(void) {
    for (int i = 0; i < B * T; i++) {
        in[i] = (i * 97 + 5) % 1000 + 3;
        tg[i] = i % 5 == 4 ? -1 : (i * 31 + 7) % 1000 + 3;
    }
    char dir[] = "/tmp/g3_relora_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    test_schedule();
    test_erank();
    test_merge();
    test_phases();
    test_cli(dir);
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
