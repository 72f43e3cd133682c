// test_dpo.c: DPO (train/objective.h) in closed form and through the model.
//   - policy == reference: the loss is exactly log 2, rewards and margins 0;
//   - on random log-probabilities the loss is mean -log sigmoid(z) and its gradient matches
//     central differences;
//   - through a LoRA model on the tiny fixture: with B = 0 the policy's sequence
//     log-probabilities equal the reference's (adapter off) bit for bit, so the loss is log 2;
//     with a random adapter, the gradient that g3_train_forward_backward_seq gives the adapter
//     for the DPO loss matches central differences of the whole DPO loss.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "model/model.h"
#include "train/objective.h"
#include "train/train.h"

static void test_closed_form(void) {
    double pol[8], ref[8], d[8];
    for (int i = 0; i < 8; i++) pol[i] = ref[i] = -10.0 - i * 3.7;
    G3DpoStats st;
    g3_dpo(pol, ref, 4, 0.1, d, &st);
    CHECK(st.loss == log(2.0) && st.chosen == 0 && st.rejected == 0 && st.margin == 0 && st.accuracy == 0,
          "at the reference: loss %.17g (log 2 = %.17g), rewards %g %g", st.loss, log(2.0), st.chosen, st.rejected);
    CHECK(d[0] == -0.1 * 0.5 / 4 && d[1] == 0.1 * 0.5 / 4, "gradient at the reference: -+beta/2/n");
    uint64_t s = 99;
    for (int i = 0; i < 8; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        pol[i] = -50.0 * (double)(s >> 11) / 9007199254740992.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ref[i] = -50.0 * (double)(s >> 11) / 9007199254740992.0;
    }
    const double beta = 0.3;
    g3_dpo(pol, ref, 4, beta, d, &st);
    double want = 0, acc = 0;
    for (int i = 0; i < 4; i++) {
        double z = beta * ((pol[2 * i] - ref[2 * i]) - (pol[2 * i + 1] - ref[2 * i + 1]));
        want += -log(1.0 / (1.0 + exp(-z))) / 4;
        acc += z > 0;
    }
    CHECK(fabs(st.loss - want) < 1e-12 && st.accuracy == acc / 4, "loss %.15g vs -log sigmoid %.15g", st.loss, want);
    double worst = 0;
    for (int i = 0; i < 8; i++) {
        const double h = 1e-5, keep = pol[i];
        G3DpoStats a, b;
        pol[i] = keep + h;
        g3_dpo(pol, ref, 4, beta, NULL, &a);
        pol[i] = keep - h;
        g3_dpo(pol, ref, 4, beta, NULL, &b);
        pol[i] = keep;
        worst = fmax(worst, fabs((a.loss - b.loss) / (2 * h) - d[i]));
    }
    CHECK(worst < 1e-8, "DPO gradient vs central differences: %.3g", worst);
}

enum { NP = 2, B = 2 * NP, T = 10 };
static int32_t in[B * T], tg[B * T];

static double dpo_loss(G3TrainModel *tm, G3TrainCtx *cx, const double *ref, double beta, double *dlogp) {
    double pol[B];
    G3DpoStats st;
    if (g3_train_seq_logps(tm, cx, in, tg, pol)) return NAN;
    g3_dpo(pol, ref, NP, beta, dlogp, &st);
    return st.loss;
}

static void test_model(void) {
    G3Model m;
    G3LoraSpec sp;
    G3TrainModel tm;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_lora_spec_parse(&sp, "r=2,alpha=4,targets=q,v,down") ||
        g3_train_model_lora(&tm, &m, &sp, 3, NULL)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    // pairs: a shared prompt (no loss), then different completions (loss)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            in[b * T + t] = t < 5 ? 3 + t * 11 + (b / 2) * 7 : 100 + t * 13 + b * 29;
            tg[b * T + t] = t < 4 ? -1 : 100 + (t + 1) * 13 + b * 29;
        }
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    double ref[B], pol[B];
    const struct G3Adapter *keep = tm.m.adapter;
    tm.m.adapter = NULL;  // the reference: the base with the adapter off
    CHECK(g3_train_seq_logps(&tm, cx, in, tg, ref) == 0, "%s", g3_error());
    tm.m.adapter = keep;
    CHECK(g3_train_seq_logps(&tm, cx, in, tg, pol) == 0 && !memcmp(pol, ref, sizeof pol), "B = 0: policy == reference bit for bit");
    G3DpoStats st;
    g3_dpo(pol, ref, NP, 0.1, NULL, &st);
    CHECK(st.loss == log(2.0) && st.chosen == 0 && st.margin == 0, "at initialisation the DPO loss is exactly log 2 (%.17g)", st.loss);
    // a random adapter, then the gradient against central differences
    uint64_t s = 5;
    for (int j = 1; j < tm.np; j += 2)
        for (int64_t e = 0; e < tm.p[j].numel; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            tm.params[tm.p[j].off + e] = 0.3f * ((float)(s >> 40) / (float)(1 << 24) - 0.5f);
        }
    const double beta = 0.5;
    double dl[B];
    dpo_loss(&tm, cx, ref, beta, dl);
    float w[B];
    for (int b = 0; b < B; b++) w[b] = (float)-dl[b];  // seq loss = -logp
    g3_train_zero_grads(&tm);
    CHECK(!isnan(g3_train_forward_backward_seq(&tm, cx, in, tg, w)), "%s", g3_error());
    float *g = g3_malloc(sizeof(float) * (size_t)tm.n);
    memcpy(g, tm.grads, sizeof(float) * (size_t)tm.n);
    int bad = 0, n = 0;
    double worst = 0;
    for (int j = 0; j < tm.np; j += 3)
        for (int k = 0; k < 3; k++) {
            int64_t e = tm.p[j].off + (k * 7919) % tm.p[j].numel;
            float kp = tm.params[e];
            const float h = 1e-2f;
            tm.params[e] = kp + h;
            double lp = dpo_loss(&tm, cx, ref, beta, NULL);
            tm.params[e] = kp - h;
            double lm = dpo_loss(&tm, cx, ref, beta, NULL);
            tm.params[e] = kp;
            double fd = (lp - lm) / (2.0 * h), err = fabs(fd - g[e]) / fmax(fabs(fd), 1e-2);  // f32 logits: ~2e-4 of noise in fd
            worst = fmax(worst, err);
            if (err > 5e-2) fprintf(stderr, "param %d entry %lld: fd %.6g grad %.6g\n", j, (long long)e, fd, g[e]);
            bad += err > 5e-2;
            n++;
        }
    CHECK(bad == 0, "DPO adapter gradients: %d of %d off finite differences (worst rel %.3g)", bad, n, worst);
    // Equal weights 1/nvalid reproduce the mean cross-entropy's gradient.
    int nvalid = 0;
    for (int i = 0; i < B * T; i++) nvalid += tg[i] >= 0;
    for (int b = 0; b < B; b++) w[b] = 1.0f / (float)nvalid;
    g3_train_zero_grads(&tm);
    g3_train_forward_backward_seq(&tm, cx, in, tg, w);
    memcpy(g, tm.grads, sizeof(float) * (size_t)tm.n);
    g3_train_zero_grads(&tm);
    g3_train_forward_backward(&tm, cx, in, tg, 1.0f);
    CHECK(rel_err(g, tm.grads, (long)tm.n) < 1e-6, "weights 1/nvalid give the mean loss's gradient (rel %.3g)", rel_err(g, tm.grads, (long)tm.n));
    printf("DPO through the model: %d adapter entries, worst relative difference to finite differences %.3g\n", n, worst);
    free(g);
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
}

// `gemma3 train --objective dpo` on id pairs: step 1 logs loss log 2 and zero rewards; the
// pairs are learned (accuracy 1 at the end); the metrics carry rewards, margin and accuracy.
static void test_cli(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char dir[] = "/tmp/g3_dpo_XXXXXX", p[300];
    if (!mkdtemp(dir)) exit(2);
    snprintf(p, sizeof p, "%s/pref.jsonl", dir);
    FILE *f = fopen(p, "w");
    for (int i = 0; i < 4; i++)
        fprintf(f, "{\"prompt\": [%d, %d, %d], \"chosen\": [%d, %d], \"rejected\": [%d, %d, %d]}\n", 3 + i, 40 + i, 90 + i, 200 + i * 7,
                300 + i, 500 + i * 3, 600 + i, 700 + i);
    fclose(f);
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --lora r=4,alpha=8 --objective dpo --beta 0.1 --data %s --val %s --batch 2 "
             "--seq 8 --steps 8 --warmup 1 --lr 2e-2 --eval-every 4 --threads 1 --out %s/run 2>%s/log",
             bin, p, p, dir, dir) == 0, "train --objective dpo");
    snprintf(p, sizeof p, "%s/run/metrics.jsonl", dir);
    size_t n;
    char *m = g3_read_file(p, &n);
    CHECK(m && strstr(m, "{\"step\": 1, \"loss\": 0.693147,") && strstr(m, "\"rewards_chosen\": 0, \"rewards_rejected\": 0, \"margin\": 0"),
          "step 1: loss log 2, rewards 0");
    char *last = m ? strstr(m, "{\"step\": 8,") : NULL;
    CHECK(last && strstr(last, "\"accuracy\": 1,") && strstr(last, "\"val_accuracy\": 1"), "the pairs are learned: %s", last ? last : "?");
    free(m);
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --objective dpo --data %s/pref.jsonl --out %s/x 2>/dev/null", bin, dir, dir) == 1,
          "dpo without --lora is refused");
    if (!check_failures) sh("rm -rf %s", dir);
}

int main(void) {
    test_closed_form();
    test_model();
    test_cli();
    return check_done();
}
