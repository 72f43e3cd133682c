// lora_device.h: LoRA, ReLoRA and packed rows through the device path of the training context
// (train_pass.c: parameters, gradients and AdamW moments in the backend's memory, the frozen
// base uploaded once as stored, every step through backend ops) against the CPU path, for any
// device backend: tests/test_lora_device.c runs it on the CPU's ops behind a device-style
// table (host = 0, its own buffers), tests/test_cuda_lora.c on the GPU.
//   - LoRA r = 4 over the bf16 fixture (all seven modules, dropout 0.1): one micro-batch's loss
//     and adapter gradients, then three resident AdamW steps (dropout masks drawn per step),
//     the adapters after them, and the base bit-identical on the host;
//   - ReLoRA over the f32 fixture: two resident steps (the adapted weights frozen: unchanged),
//     the device's merge (the loss unchanged by it; its f32 sums against the host merge's double
//     ones: 1e-6 from there on the CPU's ops), two more steps;
//   - packed rows (backend.h G3AttnMask with segments and restarting positions): the loss and
//     every gradient of a full model;
//   - DPO's passes: log-probabilities with the adapter off (the reference) and on, and the
//     sequence-weighted backward;
//   - --rank1 svd and random: resident AdamW + rank-1 steps against the host's (f32 sums
//     against double: 1e-5 on the CPU's ops).
// tol: the relative error allowed between the two paths (0 for bit-identical).
#ifndef G3_TEST_LORA_DEVICE_H
#define G3_TEST_LORA_DEVICE_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/base.h"
#include "check.h"
#include "model/adapter.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/rank1.h"
#include "train/relora.h"
#include "train/train.h"

enum { LD_B = 2, LD_T = 12 };

static void ld_batch(int32_t *in, int32_t *tg, int salt) {
    for (int i = 0; i < LD_B * LD_T; i++) {
        in[i] = (i * 97 + 5 + 13 * salt) % 1000 + 3;
        tg[i] = i % 7 == 6 ? -1 : (i * 31 + 7 + 5 * salt) % 1000 + 3;
    }
}

static void ld_lora_model(G3TrainModel *tm, const char *dir, const char *spec) {
    G3Model m;
    G3LoraSpec s;
    if (g3_model_load(&m, dir) || g3_lora_spec_parse(&s, spec) || g3_train_model_lora(tm, &m, &s, 7, dir)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    uint64_t r = 4242;  // nonzero B, so that A gets a gradient from the first step
    for (int j = 1; j < tm->np; j += 2)
        for (int64_t e = 0; e < tm->p[j].numel; e++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            tm->params[tm->p[j].off + e] = 0.05f * ((float)(r >> 40) / (float)(1 << 24) - 0.5f);
        }
}

static double ld_close(double a, double b) { return fabs(a - b) / (fabs(b) > 0 ? fabs(b) : 1); }

// Plain LoRA over a bf16 base: the host path (CPU context) against a context on `dev`.
static void ld_test_lora(G3Backend *dev, const char *name, double tol) {
    const char *dir = "tests/fixtures/gemma3-tiny-bf16", *spec = "r=4,alpha=8,targets=all,dropout=0.1";
    G3TrainModel th, td;
    ld_lora_model(&th, dir, spec);
    ld_lora_model(&td, dir, spec);
    // the base's bytes before training
    size_t base_bytes = 0;
    for (int i = 0; i < td.m.nt; i++) base_bytes += (size_t)td.m.t[i].numel * g3_dtype_size(td.m.t[i].dtype);
    char *base0 = malloc(base_bytes), *bp = base0;
    for (int i = 0; i < td.m.nt; i++) {
        const size_t nb = (size_t)td.m.t[i].numel * g3_dtype_size(td.m.t[i].dtype);
        memcpy(bp, td.m.t[i].data, nb);
        bp += nb;
    }
    int32_t in[LD_B * LD_T], tg[LD_B * LD_T];
    G3TrainCtx *ch = g3_train_ctx_new(&th, LD_B, LD_T, 0, NULL), *cd = g3_train_ctx_new_on(&td, dev, LD_B, LD_T, 0, NULL);
    CHECK(ch && cd, "%s: LoRA contexts: %s", name, g3_error());
    if (!ch || !cd) return;
    // one micro-batch, not resident: loss and adapter gradients come back to the host
    ld_batch(in, tg, 0);
    g3_train_ctx_set_lora_dropout(ch, 0.1f, 99);
    g3_train_ctx_set_lora_dropout(cd, 0.1f, 99);
    g3_train_zero_grads(&th);
    g3_train_zero_grads(&td);
    const double lh = g3_train_forward_backward(&th, ch, in, tg, 1.0f), ld = g3_train_forward_backward(&td, cd, in, tg, 1.0f);
    CHECK(!isnan(ld), "%s: LoRA forward/backward: %s", name, g3_error());
    const double eg = rel_err(td.grads, th.grads, th.n);
    CHECK(ld_close(ld, lh) <= tol && eg <= (tol > 0 ? 100 * tol : 0), "%s: LoRA loss %.9g vs CPU %.9g, adapter gradients %.3g apart",
          name, ld, lh, eg);
    printf("%s: LoRA r=4 (dropout 0.1) over bf16: loss %.7f (CPU %.7f), adapter grads vs CPU %.2e\n", name, ld, lh, eg);
    // three resident AdamW steps against three host steps, a new dropout mask each step
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW oh, od;
    g3_adamw_init_model(&oh, &oc, &th, 0);
    g3_adamw_init_model(&od, &oc, &td, 0);
    CHECK(g3_train_ctx_resident(cd) == 0, "%s", g3_error());
    double worst = 0;
    for (int s = 0; s < 3; s++) {
        ld_batch(in, tg, s + 1);
        g3_train_ctx_set_lora_dropout(ch, 0.1f, 1000 + s);
        g3_train_ctx_set_lora_dropout(cd, 0.1f, 1000 + s);
        double nh, nd;
        CHECK(g3_train_ctx_zero_grads(ch) == 0 && g3_train_ctx_zero_grads(cd) == 0, "%s", g3_error());
        const double a = g3_train_forward_backward(&th, ch, in, tg, 1.0f), b = g3_train_forward_backward(&td, cd, in, tg, 1.0f);
        CHECK(g3_train_ctx_step(ch, &oh, 1e-3, 1.0, &nh) == 0 && g3_train_ctx_step(cd, &od, 1e-3, 1.0, &nd) == 0, "%s: step %d: %s",
              name, s, g3_error());
        worst = G3_MAX(worst, ld_close(b, a));
        CHECK(ld_close(b, a) <= 10 * tol && ld_close(nd, nh) <= (tol > 0 ? 1e3 * tol : 0), "%s: resident step %d: loss %.9g vs %.9g, norm %.9g vs %.9g",
              name, s, b, a, nd, nh);
    }
    float *dev_params = malloc(sizeof(float) * (size_t)td.n);
    memcpy(dev_params, td.params, sizeof(float) * (size_t)td.n);
    CHECK(g3_train_ctx_sync_host(cd, &od) == 0, "%s", g3_error());
    int moved = memcmp(dev_params, td.params, sizeof(float) * (size_t)td.n) != 0;  // host copy was stale until synced
    const double ep = rel_err(td.params, th.params, th.n);
    CHECK(moved && ep <= (tol > 0 ? 1e3 * tol : 0), "%s: adapters after 3 resident steps %.3g from the CPU's (synced: %d)", name, ep, moved);
    bp = base0;
    int same = 1;
    for (int i = 0; i < td.m.nt; i++) {
        const size_t nb = (size_t)td.m.t[i].numel * g3_dtype_size(td.m.t[i].dtype);
        same &= td.m.t[i].dtype == G3_BF16 || td.m.t[i].kind == G3_KIND_NORM;
        same &= !memcmp(bp, td.m.t[i].data, nb);
        bp += nb;
    }
    CHECK(same, "%s: the bf16 base changed (or was widened) by device training", name);
    printf("%s: 3 resident LoRA steps: losses within %.2e of the CPU's, adapters %.2e; base bf16 and bit-identical\n", name, worst, ep);
    g3_adamw_free(&oh), g3_adamw_free(&od);
    g3_train_ctx_free(ch), g3_train_ctx_free(cd);
    g3_train_model_free(&th), g3_train_model_free(&td);
    free(base0), free(dev_params);
}

// DPO's passes (cmd_train.c dpo_eval): per-sequence log-probabilities with the adapter off (the
// reference: the host model's adapter switched off for the call) and on, then the gradient of
// sequence-weighted losses (g3_train_forward_backward_seq).
static void ld_test_dpo(G3Backend *dev, const char *name, double tol) {
    G3TrainModel th, td;
    ld_lora_model(&th, "tests/fixtures/gemma3-tiny-f32", "r=4,alpha=8,targets=q,v,o");
    ld_lora_model(&td, "tests/fixtures/gemma3-tiny-f32", "r=4,alpha=8,targets=q,v,o");
    G3TrainCtx *ch = g3_train_ctx_new(&th, LD_B, LD_T, 0, NULL), *cd = g3_train_ctx_new_on(&td, dev, LD_B, LD_T, 0, NULL);
    CHECK(ch && cd && g3_train_ctx_resident(cd) == 0, "%s: DPO contexts: %s", name, g3_error());
    if (!ch || !cd) return;
    int32_t in[LD_B * LD_T], tg[LD_B * LD_T];
    ld_batch(in, tg, 5);
    double rh[LD_B], rd[LD_B], ph[LD_B], pd[LD_B];
    const struct G3Adapter *kh = th.m.adapter, *kd = td.m.adapter;
    th.m.adapter = NULL, td.m.adapter = NULL;
    CHECK(g3_train_seq_logps(&th, ch, in, tg, rh) == 0 && g3_train_seq_logps(&td, cd, in, tg, rd) == 0, "%s: %s", name, g3_error());
    th.m.adapter = kh, td.m.adapter = kd;
    CHECK(g3_train_seq_logps(&th, ch, in, tg, ph) == 0 && g3_train_seq_logps(&td, cd, in, tg, pd) == 0, "%s: %s", name, g3_error());
    double worst = 0;
    for (int b = 0; b < LD_B; b++) worst = G3_MAX(worst, G3_MAX(ld_close(rd[b], rh[b]), ld_close(pd[b], ph[b])));
    CHECK(worst <= tol && fabs(ph[0] - rh[0]) > 1e-6 * fabs(rh[0]), "%s: DPO log-probabilities %.3g from the CPU's (policy %.9g, reference %.9g)",
          name, worst, pd[0], rd[0]);
    const float w[LD_B] = {0.7f, -0.4f};
    g3_train_zero_grads(&th);
    CHECK(g3_train_ctx_zero_grads(cd) == 0, "%s", g3_error());
    g3_train_forward_backward_seq(&th, ch, in, tg, w);
    CHECK(!isnan(g3_train_forward_backward_seq(&td, cd, in, tg, w)), "%s: DPO backward: %s", name, g3_error());
    G3AdamW od;
    G3AdamWConfig oc = g3_adamw_defaults();
    g3_adamw_init_model(&od, &oc, &td, 0);
    double nd;  // the device's gradients come over through a step's norm: compare it with the host's
    CHECK(g3_train_ctx_step(cd, &od, 0.0, 0.0, &nd) == 0, "%s: %s", name, g3_error());
    const double nh = g3_grad_norm(th.grads, th.n);
    CHECK(ld_close(nd, nh) <= (tol > 0 ? 100 * tol : 0), "%s: DPO gradient norm %.9g vs CPU %.9g", name, nd, nh);
    printf("%s: DPO passes (reference with the adapter off, weighted backward): log-probs within %.2e, gradient norm %.2e of the CPU's\n",
           name, worst, ld_close(nd, nh));
    g3_adamw_free(&od);
    g3_train_ctx_free(ch), g3_train_ctx_free(cd);
    g3_train_model_free(&th), g3_train_model_free(&td);
}

static void ld_hybrid(G3TrainModel *tm) {
    G3Model m;
    G3LoraSpec s;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_lora_spec_parse(&s, "r=2,alpha=4,targets=q,v,down") ||
        g3_train_model_from(tm, &m) || g3_train_model_add_lora(tm, &s, 11)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    g3_model_free(&m);
}

// ReLoRA (hybrid model): steps, a merge between them, steps; frozen weights stay.
static void ld_test_relora(G3Backend *dev, const char *name, double tol) {
    G3TrainModel th, td;
    ld_hybrid(&th);
    ld_hybrid(&td);
    const int qi = td.m.layer_idx[0][W_Q];
    const size_t qn = (size_t)td.m.t[qi].numel;
    float *q0 = malloc(qn * sizeof(float));
    memcpy(q0, td.params + td.off[qi], qn * sizeof(float));
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW oh, od;
    g3_adamw_init_model(&oh, &oc, &th, 0);
    g3_adamw_init_model(&od, &oc, &td, 0);
    G3TrainCtx *ch = g3_train_ctx_new(&th, LD_B, LD_T, 0, NULL), *cd = g3_train_ctx_new_on(&td, dev, LD_B, LD_T, 0, NULL);
    CHECK(ch && cd && g3_train_ctx_resident(cd) == 0, "%s: ReLoRA contexts: %s", name, g3_error());
    if (!ch || !cd) return;
    int32_t in[LD_B * LD_T], tg[LD_B * LD_T];
    double worst = 0, pruned_h = 0, pruned_d = 0;
    for (int s = 0; s < 4; s++) {
        if (s == 2) {  // merge: the device's state to the host, merge there, back
            float *q1 = malloc(qn * sizeof(float));
            CHECK(g3_train_ctx_sync_host(cd, &od) == 0, "%s", g3_error());
            memcpy(q1, td.params + td.off[qi], qn * sizeof(float));
            const double e1 = rel_err(td.params, th.params, th.n);
            CHECK(e1 <= (tol > 0 ? 1e3 * tol : 0), "%s: ReLoRA weights after 2 resident steps %.3g from the CPU's", name, e1);
            CHECK(!memcmp(q1, q0, qn * sizeof(float)), "%s: a frozen adapted weight changed on the device before the merge", name);
            free(q1);
            // the device merges where its weights are (relora.h g3_train_ctx_relora_merge); the
            // loss does not change at the merge (s B A moves into W, then B = 0)
            ld_batch(in, tg, s);
            const double before = g3_train_loss(&td, cd, in, tg);
            CHECK(g3_relora_merge(&th, &oh, 0.9, 11, 1, &pruned_h) == 0 && g3_train_ctx_relora_merge(cd, &od, 0.9, 11, 1, &pruned_d) == 0,
                  "%s: merge: %s", name, g3_error());
            const double after = g3_train_loss(&td, cd, in, tg);
            CHECK(ld_close(after, before) <= 1e-6, "%s: the device merge changed the loss: %.9g -> %.9g", name, before, after);
            tol = tol > 0 ? tol : 1e-6;  // from here: the device's f32 merge against the host's merge summed in double
        }
        ld_batch(in, tg, s);
        double nh, nd;
        CHECK(g3_train_ctx_zero_grads(ch) == 0 && g3_train_ctx_zero_grads(cd) == 0, "%s", g3_error());
        const double a = g3_train_forward_backward(&th, ch, in, tg, 1.0f), b = g3_train_forward_backward(&td, cd, in, tg, 1.0f);
        CHECK(g3_train_ctx_step(ch, &oh, 1e-3, 1.0, &nh) == 0 && g3_train_ctx_step(cd, &od, 1e-3, 1.0, &nd) == 0, "%s: ReLoRA step %d: %s",
              name, s, g3_error());
        worst = G3_MAX(worst, ld_close(b, a));
        CHECK(ld_close(b, a) <= 10 * tol, "%s: ReLoRA step %d: loss %.9g vs CPU %.9g", name, s, b, a);
    }
    CHECK(g3_train_ctx_sync_host(cd, &od) == 0, "%s", g3_error());
    const double ep = rel_err(td.params, th.params, th.n);
    CHECK(ep <= 1e3 * tol && pruned_d == pruned_h, "%s: ReLoRA weights after 4 steps and a merge %.3g from the CPU's", name, ep);
    printf("%s: ReLoRA (q,v,down r=2): 4 resident steps with a merge after 2: losses within %.2e, weights %.2e of the CPU's; frozen "
           "weights unchanged before it\n", name, worst, ep);
    g3_adamw_free(&oh), g3_adamw_free(&od);
    g3_train_ctx_free(ch), g3_train_ctx_free(cd);
    g3_train_model_free(&th), g3_train_model_free(&td);
    free(q0);
}

// --rank1 svd and random (rank1.h): AdamW on the embedding and norms, rank-1 steps on the linear
// weights; resident on the device (g3_rank1_step_ctx: gemms where the weights are, f32 sums)
// against the host's g3_rank1_step (double sums), four steps with a new direction every second.
static void ld_test_rank1(G3Backend *dev, const char *name, const char *spec, double tol) {
    G3Model m;
    G3TrainModel th, td;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_train_model_from(&th, &m) || g3_train_model_from(&td, &m)) {
        CHECK(0, "%s", g3_error());
        return;
    }
    G3Rank1Spec rs;
    G3Rank1 rh, rd;
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW oh, od;
    g3_adamw_init_model(&oh, &oc, &th, 0);
    g3_adamw_init_model(&od, &oc, &td, 0);
    CHECK(g3_rank1_parse(&rs, spec) == 0 && g3_rank1_init(&rh, &rs, &th, &oh, 5) == 0 && g3_rank1_init(&rd, &rs, &td, &od, 5) == 0, "%s", g3_error());
    G3TrainCtx *ch = g3_train_ctx_new(&th, LD_B, LD_T, 0, NULL), *cd = g3_train_ctx_new_on(&td, dev, LD_B, LD_T, 0, NULL);
    CHECK(ch && cd && g3_train_ctx_resident(cd) == 0, "%s: rank-1 contexts: %s", name, g3_error());
    if (!ch || !cd) return;
    int32_t in[LD_B * LD_T], tg[LD_B * LD_T];
    double worst = 0;
    for (int s = 0; s < 4; s++) {
        ld_batch(in, tg, s);
        double nh, nd;
        CHECK(g3_train_ctx_zero_grads(ch) == 0 && g3_train_ctx_zero_grads(cd) == 0, "%s", g3_error());
        const double a = g3_train_forward_backward(&th, ch, in, tg, 1.0f), b = g3_train_forward_backward(&td, cd, in, tg, 1.0f);
        CHECK(g3_train_ctx_step(ch, &oh, 1e-3, 1.0, &nh) == 0 && g3_train_ctx_step(cd, &od, 1e-3, 1.0, &nd) == 0, "%s: %s", name, g3_error());
        CHECK(g3_rank1_step_ctx(&rh, &th, ch, &oh.cfg, s, 1e-3, g3_clip_scale(nh, 1.0)) == 0 &&
                  g3_rank1_step_ctx(&rd, &td, cd, &od.cfg, s, 1e-3, g3_clip_scale(nd, 1.0)) == 0,
              "%s: rank-1 step %d: %s", name, s, g3_error());
        worst = G3_MAX(worst, ld_close(b, a));
        CHECK(ld_close(b, a) <= tol, "%s: %s step %d: loss %.9g vs CPU %.9g", name, spec, s, b, a);
    }
    CHECK(g3_train_ctx_sync_host(cd, &od) == 0, "%s", g3_error());
    const double ep = rel_err(td.params, th.params, th.n);
    double ec = 0;
    for (int k = 0; k < rh.n; k++) ec = G3_MAX(ec, fabs(rd.cos[k] - rh.cos[k]));
    CHECK(ep <= 1e2 * tol && ec <= 1e3 * tol, "%s: %s after 4 steps: weights %.3g, direction cosines %.3g from the CPU's", name, spec, ep, ec);
    printf("%s: --rank1 %s: 4 resident steps: losses within %.2e, weights %.2e, direction cosines %.2e of the CPU's\n", name, spec, worst,
           ep, ec);
    g3_rank1_free(&rh), g3_rank1_free(&rd);
    g3_adamw_free(&oh), g3_adamw_free(&od);
    g3_train_ctx_free(ch), g3_train_ctx_free(cd);
    g3_train_model_free(&th), g3_train_model_free(&td);
    g3_model_free(&m);
}

// Packed rows: three examples in row 0 (lengths 5, 4, 3), two in row 1 (7, 4) and a padded tail.
static void ld_test_pack(G3Backend *dev, const char *name, const char *fixture, double tol) {
    char dir[200];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", fixture);
    G3Model m;
    G3TrainModel tm;
    if (g3_model_load(&m, dir) || g3_train_model_from(&tm, &m)) { CHECK(0, "%s", g3_error()); return; }
    int32_t in[LD_B * LD_T], tg[LD_B * LD_T], pos[LD_B * LD_T], seg[LD_B * LD_T];
    ld_batch(in, tg, 3);
    const int lens[2][4] = {{5, 4, 3, 0}, {7, 4, 0, 0}};
    for (int b = 0; b < LD_B; b++) {
        int t = 0;
        for (int e = 0; lens[b][e]; e++)
            for (int i = 0; i < lens[b][e]; i++, t++) pos[b * LD_T + t] = i, seg[b * LD_T + t] = e;
        for (; t < LD_T; t++) pos[b * LD_T + t] = t, seg[b * LD_T + t] = -1, tg[b * LD_T + t] = -1;
    }
    const G3AttnMask mk = {.pos = pos, .seg = seg, .stride = LD_T};
    G3TrainCtx *ch = g3_train_ctx_new(&tm, LD_B, LD_T, 0, NULL), *cd = g3_train_ctx_new_on(&tm, dev, LD_B, LD_T, 0, NULL);
    CHECK(ch && cd && g3_train_ctx_set_mask(ch, &mk) == 0 && g3_train_ctx_set_mask(cd, &mk) == 0, "%s: packed: %s", name, g3_error());
    if (!ch || !cd) return;
    const size_t nb = sizeof(float) * (size_t)tm.n;
    float *gh = malloc(nb);
    g3_train_zero_grads(&tm);
    const double a = g3_train_forward_backward(&tm, ch, in, tg, 1.0f);
    memcpy(gh, tm.grads, nb);
    g3_train_zero_grads(&tm);
    const double b = g3_train_forward_backward(&tm, cd, in, tg, 1.0f);
    const double eg = rel_err(tm.grads, gh, tm.n);
    CHECK(!isnan(b) && ld_close(b, a) <= tol && eg <= (tol > 0 ? 100 * tol : 0), "%s: packed rows (%s): loss %.9g vs CPU %.9g, grads %.3g: %s",
          name, fixture, b, a, eg, isnan(b) ? g3_error() : "");
    // and the unpacked loss of the same rows is different (the mask matters)
    CHECK(g3_train_ctx_set_mask(cd, NULL) == 0, "%s", g3_error());
    const double c = g3_train_loss(&tm, cd, in, tg);
    CHECK(ld_close(c, b) > 1e-6, "%s: packed rows: the mask changed nothing (%.9g)", name, c);
    printf("%s: packed rows (%s, 5 examples in 2 rows): loss %.7f (CPU %.7f), all grads vs CPU %.2e\n", name, fixture, b, a, eg);
    free(gh);
    g3_train_ctx_free(ch), g3_train_ctx_free(cd);
    g3_train_model_free(&tm);
    g3_model_free(&m);
}

#endif
