// test_rank1.c: dynamic rank-1 updates (rank1.h) on the tiny f32 fixture's full model:
//   - the spec parser (variants, keys, refusals);
//   - svd: with a gradient of one dominant singular direction, power iterations find it and
//     the first step is exactly W - lr d n^T with n = r / (|r| + eps) (Adam's first step,
//     bias-corrected), a rank-1 update (effective rank 1);
//   - random: unit directions, a pure function of (seed, step / T), changed every T steps,
//     |cos| between successive ones logged; moments reset on a change (t back to 1) or kept;
//   - AdamW skips the linear weights (rank-1 owns them) and still trains the norms;
//   - `train --rank1 svd|random|lora` resumed equals an uninterrupted run bit for bit; refusals.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/rank1.h"
#include "train/relora.h"
#include "train/train.h"

static uint64_t rs = 5;
static float rnd(void) {
    rs = rs * 6364136223846793005ull + 1442695040888963407ull;
    return (float)(rs >> 40) / (float)(1 << 24) - 0.5f;
}

static void full_model(G3TrainModel *tm) {
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_train_model_from(tm, &m)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    g3_model_free(&m);
}

static void test_parse(void) {
    G3Rank1Spec s;
    CHECK(g3_rank1_parse(&s, "svd") == 0 && s.mode == G3_RANK1_SVD && s.every == 1 && s.iters == 2 && !s.keep, "svd defaults");
    CHECK(g3_rank1_parse(&s, "random,every=10,keep") == 0 && s.mode == G3_RANK1_RANDOM && s.every == 10 && s.keep, "random,every,keep");
    CHECK(g3_rank1_parse(&s, "lora,every=5,iters=3") == 0 && s.mode == G3_RANK1_LORA && s.every == 5 && s.iters == 3, "lora");
    CHECK(g3_rank1_parse(&s, "qr") == -1, "unknown variant refused");
    CHECK(g3_rank1_parse(&s, "svd,every=0") == -1, "every=0 refused");
    CHECK(g3_rank1_parse(&s, "svd,foo=2") == -1, "unknown key refused");
    CHECK(g3_rank1_parse(&s, "") == -1, "empty refused");
}

static void test_svd_step(void) {
    G3TrainModel tm;
    full_model(&tm);
    G3AdamWConfig oc = g3_adamw_defaults();
    oc.weight_decay = 0;
    G3AdamW o;
    g3_adamw_init_model(&o, &oc, &tm, 0);
    G3Rank1Spec s = {G3_RANK1_SVD, 1, 30, 0};
    G3Rank1 r;
    CHECK(g3_rank1_init(&r, &s, &tm, &o, 3) == 0, "%s", g3_error());
    CHECK(r.n == 7 * tm.m.cfg.layers, "every linear weight: %d", r.n);
    // layer 1's q_proj [out 128, in 96] (right side: d [in]) and gate [256, 96]: G = 5 a b^T + noise
    memset(tm.grads, 0, sizeof(float) * (size_t)tm.n);
    int k0 = -1;
    for (int k = 0; k < r.n; k++)
        if (r.layer[k] == 1 && tm.p[r.param[k]].tensor == tm.m.layer_idx[1][W_O]) k0 = k;
    const G3Param *p = &tm.p[r.param[k0]];
    const int64_t out = p->shape[0], in = p->shape[1];
    float *a = malloc(sizeof(float) * (size_t)out), *b = malloc(sizeof(float) * (size_t)in);
    for (int64_t i = 0; i < out; i++) a[i] = rnd();
    for (int64_t i = 0; i < in; i++) b[i] = rnd();
    for (int64_t o2 = 0; o2 < out; o2++)
        for (int64_t i = 0; i < in; i++) tm.grads[p->off + o2 * in + i] = 5 * a[o2] * b[i] + 0.01f * rnd();
    float *w0 = malloc(sizeof(float) * (size_t)p->numel);
    memcpy(w0, tm.params + p->off, sizeof(float) * (size_t)p->numel);
    const double lr = 1e-2;
    g3_rank1_step(&r, &tm, &oc, 0, lr, 1.0f);
    // the direction: the unit vector along a (left) or b (right)
    const float *dv = r.left[k0] ? a : b;
    int64_t dim = r.dim[k0];
    double na = 0, c = 0;
    for (int64_t i = 0; i < dim; i++) na += (double)dv[i] * dv[i], c += (double)dv[i] * r.d[k0][i];
    c = fabs(c) / sqrt(na);
    CHECK(c > 0.9999, "svd finds the dominant direction: |cos| %.6f", c);
    // the update: -lr d n^T with n = r / (|r| + eps) after one bias-corrected Adam step
    double worst = 0;
    float *dw = malloc(sizeof(float) * (size_t)p->numel);
    for (int64_t o2 = 0; o2 < out; o2++)
        for (int64_t i = 0; i < in; i++) {
            const float *d = r.d[k0];
            double proj = 0;  // r at this row / column
            if (r.left[k0]) for (int64_t q = 0; q < out; q++) proj += (double)d[q] * tm.grads[p->off + q * in + i];
            else for (int64_t q = 0; q < in; q++) proj += (double)tm.grads[p->off + o2 * in + q] * d[q];
            double n = proj / (fabs(proj) + oc.eps);
            double want = w0[o2 * in + i] - lr * (r.left[k0] ? d[o2] * n : n * d[i]);
            double got = tm.params[p->off + o2 * in + i];
            worst = fmax(worst, fabs(got - want));
            dw[o2 * in + i] = (float)(got - w0[o2 * in + i]);
        }
    CHECK(worst < 1e-6, "first step = W - lr d n^T: worst %.3g", worst);
    CHECK(fabs(g3_effective_rank(dw, out, in) - 1) < 1e-3, "the update has effective rank 1 (%.6f)", g3_effective_rank(dw, out, in));
    CHECK(r.t[k0] == 1 && isnan(r.cos[k0]), "one Adam step, no previous direction");
    // AdamW leaves the linear weights to rank-1 and trains the rest
    for (int64_t e = 0; e < tm.n; e++) tm.grads[e] = 0.1f;
    memcpy(w0, tm.params + p->off, sizeof(float) * (size_t)p->numel);
    const G3Param *pn = NULL;
    for (int j = 0; j < tm.np; j++)
        if (tm.p[j].tensor == tm.m.layer_idx[1][W_ATTN_NORM]) pn = &tm.p[j];
    float nb = tm.params[pn->off];
    g3_adamw_step(&o, tm.params, tm.grads, lr, 1.0f);
    CHECK(!memcmp(w0, tm.params + p->off, sizeof(float) * (size_t)p->numel), "AdamW skips the rank-1 weights");
    CHECK(tm.params[pn->off] != nb, "AdamW still trains the norms");
    g3_rank1_step(&r, &tm, &oc, 1, lr, 1.0f);  // every = 1: a new direction, moments reset
    CHECK(r.t[k0] == 1 && !isnan(r.cos[k0]) && r.cos[k0] <= 1.0 + 1e-9, "a new direction resets the moments; |cos| %.4f logged", r.cos[k0]);
    free(a); free(b); free(w0); free(dw);
    g3_rank1_free(&r);
    g3_adamw_free(&o);
    g3_train_model_free(&tm);
}

static void test_random(void) {
    G3TrainModel tm;
    full_model(&tm);
    G3AdamWConfig oc = g3_adamw_defaults();
    G3Rank1Spec s = {G3_RANK1_RANDOM, 3, 2, 1};  // every 3, keep
    G3Rank1 r, r2;
    g3_rank1_init(&r, &s, &tm, NULL, 11);
    g3_rank1_init(&r2, &s, &tm, NULL, 11);
    for (int64_t e = 0; e < tm.n; e++) tm.grads[e] = rnd();
    float *d0 = malloc(sizeof(float) * (size_t)r.dim[0]);
    g3_rank1_step(&r, &tm, &oc, 0, 1e-3, 1.0f);
    memcpy(d0, r.d[0], sizeof(float) * (size_t)r.dim[0]);
    double nn = 0;
    for (int64_t i = 0; i < r.dim[0]; i++) nn += (double)d0[i] * d0[i];
    CHECK(fabs(nn - 1) < 1e-5, "a unit direction");
    g3_rank1_step(&r, &tm, &oc, 1, 1e-3, 1.0f);
    g3_rank1_step(&r, &tm, &oc, 2, 1e-3, 1.0f);
    CHECK(!memcmp(d0, r.d[0], sizeof(float) * (size_t)r.dim[0]) && r.t[0] == 3, "the direction holds for T = 3 steps");
    g3_rank1_step(&r, &tm, &oc, 3, 1e-3, 1.0f);
    CHECK(memcmp(d0, r.d[0], sizeof(float) * (size_t)r.dim[0]) != 0 && r.cos[0] < 0.5, "step 3: a new direction (|cos| %.3f)", r.cos[0]);
    CHECK(r.t[0] == 4, "keep: the moments and their step count carry on");
    g3_rank1_step(&r2, &tm, &oc, 3, 1e-3, 1.0f);  // the same draw from (seed, step / T) alone
    CHECK(!memcmp(r.d[0], r2.d[0], sizeof(float) * (size_t)r.dim[0]), "the random direction is a function of (seed, step / T)");
    double cl[G3_MAX_LAYERS];
    g3_rank1_layer_cos(&r, tm.m.cfg.layers, cl);
    CHECK(!isnan(cl[0]) && cl[0] >= 0 && cl[0] < 0.5, "per-layer |cos| %.3f", cl[0]);
    CHECK(g3_rank1_state_bytes(&r) > 0 && g3_rank1_state_bytes(&r) < tm.n, "state is small: %lld bytes", (long long)g3_rank1_state_bytes(&r));
    free(d0);
    g3_rank1_free(&r);
    g3_rank1_free(&r2);
    g3_train_model_free(&tm);
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
    const char *v[] = {"svd,every=3", "random,every=2", "lora,every=3"};
    for (int k = 0; k < 3; k++) {
        char c[400];
        snprintf(c, sizeof c, "--init tiny --rank1 %s --batch 2 --seq 16 --warmup 2 --lr 1e-2 --threads 1 --save-every 0 --eval-every 2 "
                              "--schedule constant --data %s", v[k], data);
        CHECK(sh("rm -rf %s/ra %s/rb && %s train %s --steps 8 --out %s/ra 2>%s/log && %s train %s --steps 4 --out %s/rb 2>>%s/log && "
                 "%s train %s --steps 8 --out %s/rb 2>>%s/log && cmp -s %s/ra/model.safetensors %s/rb/model.safetensors",
                 dir, dir, bin, c, dir, dir, bin, c, dir, dir, bin, c, dir, dir, dir, dir) == 0,
              "--rank1 %s: resumed equals uninterrupted bit for bit", v[k]);
    }
    CHECK(sh("grep -q lora_update_norm %s/ra/metrics.jsonl", dir) == 0, "rank1 lora runs a LoRA (r = 1)");
    CHECK(sh("%s train --init tiny --rank1 svd --lora r=2 --data %s --out %s/x 2>/dev/null", bin, data, dir) == 1, "--rank1 with --lora refused");
    CHECK(sh("%s train --init tiny --rank1 svd,every=x --data %s --out %s/x 2>/dev/null", bin, data, dir) == 1, "a bad --rank1 spec refused");
}

int main(void) {
    char dir[] = "/tmp/g3_rank1_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    test_parse();
    test_svd_step();
    test_random();
    test_cli(dir);
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
