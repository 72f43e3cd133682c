// test_lora_train.c: training LoRA adapters (train.h g3_train_model_lora, pass.c's adapter
// backward). On the tiny f32 fixture with every module adapted:
//   - gradients of A and B against central finite differences of the loss (in double over
//     the f32 pass), and against the full model's weight gradient G = dL/dW' of the merged
//     weights W' = W + s B A: dA = s B^T G, dB = s G A^T (an independent route through the
//     already-checked full backward);
//   - at initialisation (B = 0) the logits are the base's exactly;
//   - AdamW steps change the adapter and leave the frozen base bit-identical;
//   - the saved adapter (PEFT names and shapes) loads back bit-exact and gives the trained
//     model's logits through inference;
//   - a bf16 base trains, stays bf16 and bit-identical, and its gradients match finite
//     differences too;
//   - `gemma3 train --lora` writes adapter_config.json + adapter_model.safetensors (env BIN).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "io/safetensors.h"
#include "model/adapter.h"
#include "model/forward.h"
#include "model/model.h"
#include "train/optim.h"
#include "train/train.h"

enum { B = 2, T = 8 };
static int32_t in[B * T], tg[B * T];

static void batch(void) {
    for (int i = 0; i < B * T; i++) {
        in[i] = (i * 97 + 5) % 1000 + 3;
        tg[i] = i % 5 == 4 ? -1 : (i * 31 + 7) % 1000 + 3;
    }
}

// Random B factors (PEFT's zero B gives A no gradient, which would test nothing).
static void randomize_b(G3TrainModel *tm, float amp) {
    uint64_t s = 12345;
    for (int j = 1; j < tm->np; j += 2)
        for (int64_t e = 0; e < tm->p[j].numel; e++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            tm->params[tm->p[j].off + e] = amp * ((float)(s >> 40) / (float)(1 << 24) - 0.5f);
        }
}

static int load_lora(G3TrainModel *tm, const char *dir, const char *targets) {
    G3Model m;
    G3LoraSpec s;
    char spec[100];
    snprintf(spec, sizeof spec, "r=3,alpha=6,targets=%s", targets);
    if (g3_model_load(&m, dir) || g3_lora_spec_parse(&s, spec) || g3_train_model_lora(tm, &m, &s, 7, dir)) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    return 0;
}

// Central differences on a few entries of each of several parameters.
static void fd_check(G3TrainModel *tm, G3TrainCtx *cx, double tol, const char *what) {
    g3_train_zero_grads(tm);
    g3_train_forward_backward(tm, cx, in, tg, 1.0f);
    float *g = g3_malloc(sizeof(float) * (size_t)tm->n);
    memcpy(g, tm->grads, sizeof(float) * (size_t)tm->n);
    int nchk = 0, bad = 0;
    double worst = 0;
    for (int j = 0; j < tm->np; j += 5) {  // a spread of A's and B's over layers and modules
        for (int k = 0; k < 3; k++) {
            int64_t e = tm->p[j].off + (k * 7919) % tm->p[j].numel;
            float keep = tm->params[e];
            const float h = 1e-2f;
            tm->params[e] = keep + h;
            double lp = g3_train_loss(tm, cx, in, tg);
            tm->params[e] = keep - h;
            double lm = g3_train_loss(tm, cx, in, tg);
            tm->params[e] = keep;
            double fd = (lp - lm) / (2.0 * h), err = fabs(fd - g[e]) / fmax(fabs(fd), 1e-2);
            if (err > worst) worst = err;
            bad += err > tol;
            nchk++;
        }
    }
    CHECK(bad == 0, "%s: %d of %d gradients off finite differences (worst rel %.3g)", what, bad, nchk, worst);
    printf("%s: %d entries, worst relative difference to finite differences %.3g\n", what, nchk, worst);
    free(g);
}

// dA = s B^T G and dB = s G A^T with G the full gradient at W + s B A.
static void full_grad_check(G3TrainModel *tm, G3TrainCtx *cx) {
    g3_train_zero_grads(tm);
    g3_train_forward_backward(tm, cx, in, tg, 1.0f);
    G3TrainModel full;
    CHECK(g3_train_model_from(&full, &tm->m) == 0, "full copy: %s", g3_error());
    const G3Adapter *a = tm->lora;
    const float sc = a->scale;
    for (int l = 0; l < full.m.cfg.layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r);
            if (md) g3_lora_merge_f32(full.params + full.off[full.m.layer_idx[l][r]], md, sc);
        }
    G3TrainCtx *fc = g3_train_ctx_new(&full, B, T, 0, NULL);
    g3_train_zero_grads(&full);
    double lf = g3_train_forward_backward(&full, fc, in, tg, 1.0f), ll = g3_train_loss(tm, cx, in, tg);
    CHECK(fabs(lf - ll) < 1e-4 * fabs(ll), "merged loss %.7f vs adapter loss %.7f", lf, ll);
    double worst = 0;
    for (int l = 0; l < full.m.cfg.layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r), *gm = g3_adapter_module(tm->lora_grad, l, r);
            if (!md) continue;
            const float *G = full.grads + full.off[full.m.layer_idx[l][r]], *A = md->A.data, *Bm = md->B.data;
            const int rk = (int)md->A.rows, n_in = (int)md->A.cols, n_out = (int)md->B.rows;
            double num = 0, den = 0;
            for (int i = 0; i < rk; i++)
                for (int c = 0; c < n_in; c++) {  // dA[i, c] = s sum_o B[o, i] G[o, c]
                    double v = 0;
                    for (int o = 0; o < n_out; o++) v += (double)Bm[o * rk + i] * G[(int64_t)o * n_in + c];
                    v *= sc;
                    double d = v - ((const float *)gm->A.data)[i * n_in + c];
                    num += d * d;
                    den += v * v;
                }
            for (int o = 0; o < n_out; o++)
                for (int i = 0; i < rk; i++) {  // dB[o, i] = s sum_c G[o, c] A[i, c]
                    double v = 0;
                    for (int c = 0; c < n_in; c++) v += (double)G[(int64_t)o * n_in + c] * A[i * n_in + c];
                    v *= sc;
                    double d = v - ((const float *)gm->B.data)[o * rk + i];
                    num += d * d;
                    den += v * v;
                }
            double rel = sqrt(num / fmax(den, 1e-30));
            if (rel > worst) worst = rel;
        }
    CHECK(worst < 1e-4, "adapter gradients vs s B^T G / s G A^T of the full gradient: worst rel %.3g", worst);
    printf("adapter gradients vs the full model's weight gradient: worst relative %.3g\n", worst);
    g3_train_ctx_free(fc);
    g3_train_model_free(&full);
}

// Snapshot of every base tensor's bytes.
static char *snapshot(const G3Model *m, size_t *n) {
    size_t tot = 0;
    for (int i = 0; i < m->nt; i++) tot += (size_t)m->t[i].nbytes;
    char *s = g3_malloc(tot), *p = s;
    for (int i = 0; i < m->nt; i++) {
        memcpy(p, m->t[i].data, (size_t)m->t[i].nbytes);
        p += m->t[i].nbytes;
    }
    *n = tot;
    return s;
}

static void train_steps(G3TrainModel *tm, G3TrainCtx *cx, int steps) {
    G3AdamW opt;
    G3AdamWConfig oc = {.beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .bits = 32};
    CHECK(g3_adamw_init_model(&opt, &oc, tm, 0) == 0, "optimizer: %s", g3_error());
    CHECK(opt.n == tm->n, "optimizer state covers the adapter only (%lld of %lld)", (long long)opt.n, (long long)tm->n);
    double first = 0, last = 0;
    for (int s = 0; s < steps; s++) {
        g3_train_zero_grads(tm);
        last = g3_train_forward_backward(tm, cx, in, tg, 1.0f);
        if (!s) first = last;
        g3_adamw_step(&opt, tm->params, tm->grads, 1e-2, 1.0f);
    }
    CHECK(last < first, "training the adapter lowers the loss (%.4f -> %.4f)", first, last);
    g3_adamw_free(&opt);
}

static void test_f32(const char *dir) {
    G3TrainModel tm;
    load_lora(&tm, "tests/fixtures/gemma3-tiny-f32", "all");
    CHECK(tm.np == 2 * 7 * tm.m.cfg.layers, "two factors per module: %d", tm.np);
    CHECK(!strcmp(tm.p[0].name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") && tm.p[0].shape[0] == 3 &&
              tm.p[0].shape[1] == tm.m.cfg.hidden && tm.p[1].shape[1] == 3,
          "PEFT names and shapes: %s", tm.p[0].name);
    // PEFT's init: A within +-1/sqrt(in), B zero.
    double bound = 1.0 / sqrt((double)tm.m.cfg.hidden), amax = 0;
    int bzero = 1;
    for (int64_t e = 0; e < tm.p[0].numel; e++) amax = fmax(amax, fabs(tm.params[tm.p[0].off + e]));
    for (int64_t e = 0; e < tm.p[1].numel; e++) bzero &= tm.params[tm.p[1].off + e] == 0.0f;
    CHECK(amax <= bound && amax > 0.8 * bound && bzero, "kaiming-uniform A (max %.4f, bound %.4f), zero B", amax, bound);
    batch();
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    // B = 0: the logits are the base's exactly.
    int64_t V = tm.m.cfg.vocab;
    float *la = g3_malloc(sizeof(float) * B * T * V), *lb = g3_malloc(sizeof(float) * B * T * V);
    CHECK(g3_train_logits(&tm, cx, in, la) == 0, "logits");
    const G3Adapter *keep = tm.m.adapter;
    tm.m.adapter = NULL;
    G3TrainCtx *c0 = g3_train_ctx_new(&tm, B, T, 0, NULL);
    CHECK(g3_train_logits(&tm, c0, in, lb) == 0 && !memcmp(la, lb, sizeof(float) * B * T * V), "B = 0 gives the base's logits bit for bit");
    g3_train_ctx_free(c0);
    tm.m.adapter = keep;
    randomize_b(&tm, 0.2f);
    fd_check(&tm, cx, 5e-2, "f32 base");
    {  // ||s B A||_F through Gram matrices against the explicit product
        const G3LoraModule *md = g3_adapter_module(tm.lora, 1, W_DOWN);
        int64_t out = md->B.rows, inn = md->A.cols;
        float *w = g3_calloc((size_t)(out * inn), sizeof(float));
        g3_lora_merge_f32(w, md, tm.lora->scale);
        double s2 = 0;
        for (int64_t e = 0; e < out * inn; e++) s2 += (double)w[e] * w[e];
        double got = g3_lora_update_norm(md, tm.lora->scale);
        CHECK(fabs(got - sqrt(s2)) < 1e-5 * sqrt(s2), "update norm %.9g vs explicit %.9g", got, sqrt(s2));
        free(w);
    }
    full_grad_check(&tm, cx);
    // Training moves only the adapter.
    size_t nb;
    char *before = snapshot(&tm.m, &nb), *after;
    train_steps(&tm, cx, 5);
    after = snapshot(&tm.m, &nb);
    CHECK(!memcmp(before, after, nb), "the frozen base is bit-identical after training");
    free(before);
    free(after);
    // Save, load back bit-exact, and inference with it gives the training pass's logits.
    char ad[300];
    snprintf(ad, sizeof ad, "%s/adapter", dir);
    CHECK(g3_train_model_save(&tm, ad, G3_F32) == 0, "save: %s", g3_error());
    G3Adapter *back = g3_adapter_load(ad, &tm.m);
    CHECK(back != NULL, "load back: %s", g3_error());
    if (back) {
        int same = back->r == 3 && back->scale == tm.lora->scale && back->nmodules == tm.lora->nmodules;
        for (int l = 0; l < tm.m.cfg.layers; l++)
            for (int r = 0; r < W_PER_LAYER; r++) {
                const G3LoraModule *x = g3_adapter_module(back, l, r), *y = g3_adapter_module(tm.lora, l, r);
                if (!x != !y) { same = 0; continue; }
                if (x) same &= !memcmp(x->A.data, y->A.data, (size_t)(x->A.rows * x->A.cols) * 4) &&
                               !memcmp(x->B.data, y->B.data, (size_t)(x->B.rows * x->B.cols) * 4);
            }
        CHECK(same, "the saved adapter loads back bit-exact");
        g3_adapter_free(back);
    }
    STSet st;
    char p[400];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    CHECK(st_open(&st, p) == 0, "%s", g3_error());
    const STTensor *t = st_find(&st, "base_model.model.model.layers.1.mlp.down_proj.lora_B.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == tm.m.cfg.hidden && t->shape[1] == 3, "lora_B of down_proj is [out, r]");
    st_close(&st);
    g3_train_ctx_free(cx);
    free(la);
    free(lb);
    g3_train_model_free(&tm);
}

static void test_bf16(void) {
    G3TrainModel tm;
    load_lora(&tm, "tests/fixtures/gemma3-tiny-bf16", "q,v,down");
    CHECK(tm.m.t[tm.m.layer_idx[0][W_Q]].dtype == G3_BF16, "the base stays bf16");
    CHECK(tm.np == 2 * 3 * tm.m.cfg.layers, "q, v, down adapted: %d factors", tm.np);
    batch();
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    randomize_b(&tm, 0.2f);
    fd_check(&tm, cx, 5e-2, "bf16 base");
    size_t nb;
    char *before = snapshot(&tm.m, &nb), *after;
    train_steps(&tm, cx, 5);
    after = snapshot(&tm.m, &nb);
    CHECK(!memcmp(before, after, nb), "the frozen bf16 base is bit-identical after training");
    free(before);
    free(after);
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
}

// LoRA dropout: a deterministic function of the seed (forward and backward share the mask), so
// the adapter's gradients still match central differences of the dropped-out loss; another seed
// gives another loss; p = 0 gives the loss without dropout bit for bit.
static void test_dropout(void) {
    G3TrainModel tm;
    load_lora(&tm, "tests/fixtures/gemma3-tiny-f32", "all");
    randomize_b(&tm, 0.4f);
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    double l0 = g3_train_loss(&tm, cx, in, tg);
    g3_train_ctx_set_lora_dropout(cx, 0.3f, 1234);
    double la = g3_train_loss(&tm, cx, in, tg), lb = g3_train_loss(&tm, cx, in, tg);
    g3_train_ctx_set_lora_dropout(cx, 0.3f, 999);
    double lc = g3_train_loss(&tm, cx, in, tg);
    CHECK(la == lb && la != l0 && lc != la, "dropout: same seed same loss (%.7f), other seed %.7f, none %.7f", la, lc, l0);
    g3_train_ctx_set_lora_dropout(cx, 0.3f, 1234);
    fd_check(&tm, cx, 5e-2, "dropout 0.3: adapter gradients");
    g3_train_ctx_set_lora_dropout(cx, 0, 0);
    CHECK(g3_train_loss(&tm, cx, in, tg) == l0, "dropout off: the loss without dropout exactly");
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
}

static void test_cli(const char *dir) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char data[300];
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 4; i++) {
        fprintf(f, "{\"ids\": [");
        for (int k = 0; k < 9; k++) fprintf(f, "%s%d", k ? ", " : "", (k * 13 + i * 101) % 1000 + 3);
        fprintf(f, "]}\n");
    }
    fclose(f);
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-bf16 --lora r=4,alpha=8,targets=q,v --data %s --val %s --batch 2 --seq 8 "
             "--steps 4 --warmup 1 --lr 1e-2 --threads 1 --out %s/run 2>%s/log && test -f %s/run/adapter_config.json && "
             "test -f %s/run/adapter_model.safetensors && test ! -f %s/run/model.safetensors && "
             "grep -q '\"target_modules\": \\[\"q_proj\", \"v_proj\"\\]' %s/run/adapter_config.json",
             bin, data, data, dir, dir, dir, dir, dir, dir) == 0,
          "train --lora writes a PEFT adapter");
    CHECK(sh("%s forward --model tests/fixtures/gemma3-tiny-bf16 --adapter %s/run --ids 2,17,300 >/dev/null 2>&1", bin, dir) == 0,
          "the trained adapter applies with --adapter");
    // Resume: 2 steps, then on to 5, equals 5 at once (adapter and its optimizer state in the checkpoint).
    const char *c = "--lora r=4,alpha=8 --batch 2 --seq 8 --schedule constant --warmup 1 --lr 1e-2 --threads 1 --save-every 0";
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 5 --out %s/ra 2>>%s/log && "
             "%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 2 --out %s/rb 2>>%s/log && "
             "%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 5 --out %s/rb 2>>%s/log && "
             "cmp %s/ra/adapter_model.safetensors %s/rb/adapter_model.safetensors",
             bin, c, data, data, dir, dir, bin, c, data, data, dir, dir, bin, c, data, data, dir, dir, dir, dir) == 0,
          "a resumed LoRA run equals an uninterrupted one bit for bit");
    const char *cd = "--lora r=4,alpha=8,dropout=0.1 --batch 2 --seq 8 --schedule constant --warmup 1 --lr 1e-2 --threads 1 --save-every 0";
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 5 --out %s/da 2>>%s/log && "
             "%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 2 --out %s/db 2>>%s/log && "
             "%s train --model tests/fixtures/gemma3-tiny-f32 %s --data %s --val %s --steps 5 --out %s/db 2>>%s/log && "
             "cmp %s/da/adapter_model.safetensors %s/db/adapter_model.safetensors && grep -q '\"lora_dropout\": 0.1' %s/da/adapter_config.json",
             bin, cd, data, data, dir, dir, bin, cd, data, data, dir, dir, bin, cd, data, data, dir, dir, dir, dir, dir) == 0,
          "LoRA dropout trains, resumes bit for bit and is recorded in adapter_config.json");
    CHECK(sh("%s train --init tiny --lora r=4 --objective dpo --data %s --out %s/x 2>/dev/null", bin, data, dir) == 1,
          "LoRA from scratch (--init) trains next-token loss only");
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --lora r=4,targets=q,zz --data %s --out %s/x 2>/dev/null", bin, data, dir) == 1,
          "an unknown target is refused");
    G3LoraSpec s;
    CHECK(g3_lora_spec_parse(&s, "r=8,targets=q,v,alpha=4,rslora") == 0 && s.r == 8 && s.alpha == 4 && s.rslora &&
              s.targets == (1u << W_Q | 1u << W_V),
          "spec parse: %s", g3_error());
    CHECK(g3_lora_spec_parse(&s, "r=0") != 0 && g3_lora_spec_parse(&s, "dropout=1.5") != 0 && g3_lora_spec_parse(&s, "foo=1") != 0,
          "bad specs refused");
}

// Classification: the head's and the adapter's gradients against central differences, and
// `train --objective classify` learns a separable toy task and saves the head beside the adapter.
static void test_classify(const char *dir) {
    G3Model m;
    G3LoraSpec sp;
    G3TrainModel tm;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") || g3_lora_spec_parse(&sp, "r=2,alpha=4,targets=v,o") ||
        (sp.classes = 3, g3_train_model_lora(&tm, &m, &sp, 11, NULL))) {
        fprintf(stderr, "%s\n", g3_error());
        exit(2);
    }
    CHECK(tm.np == 2 * 2 * tm.m.cfg.layers + 1 && !strcmp(tm.p[tm.np - 1].name, "score.weight"), "the head is the table's last entry");
    int32_t last[B] = {7, 3}, lab[B] = {2, 0};
    batch();
    G3TrainCtx *cx = g3_train_ctx_new(&tm, B, T, 0, NULL);
    randomize_b(&tm, 0.2f);
    float *head = tm.params + tm.head_off;
    g3_train_zero_grads(&tm);
    double l0 = g3_train_classify(&tm, cx, in, last, lab, 3, head, tm.grads + tm.head_off, 1.0f, 1, NULL);
    CHECK(fabs(l0 - log(3.0)) < 0.05, "a small random head starts near log 3 (%.4f)", l0);
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
            double lp = g3_train_classify(&tm, cx, in, last, lab, 3, head, NULL, 1.0f, 0, NULL);
            tm.params[e] = kp - h;
            double lm = g3_train_classify(&tm, cx, in, last, lab, 3, head, NULL, 1.0f, 0, NULL);
            tm.params[e] = kp;
            double fd = (lp - lm) / (2.0 * h), err = fabs(fd - g[e]) / fmax(fabs(fd), 1e-3);
            worst = fmax(worst, err);
            bad += err > 5e-2;
            n++;
        }
    CHECK(bad == 0, "classification gradients: %d of %d off finite differences (worst rel %.3g)", bad, n, worst);
    printf("classify: %d head and adapter entries, worst relative difference to finite differences %.3g\n", n, worst);
    free(g);
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);

    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char data[300];
    snprintf(data, sizeof data, "%s/cls.jsonl", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 8; i++) fprintf(f, "{\"ids\": [%d, %d, %d], \"label\": %d}\n", 5 + i * 17, 300 + i, 10 + i % 2, i % 2);
    fclose(f);
    CHECK(sh("%s train --model tests/fixtures/gemma3-tiny-f32 --lora r=4,alpha=8,targets=q,v --objective classify --data %s --val %s "
             "--batch 4 --seq 4 --steps 12 --warmup 1 --lr 2e-2 --eval-every 12 --eval-batches 2 --threads 1 --out %s/cls 2>%s/logc && "
             "test -f %s/cls/classify_head.safetensors && grep -q '\"step\": 12,.*\"val_accuracy\": 1' %s/cls/metrics.jsonl",
             bin, data, data, dir, dir, dir, dir) == 0,
          "train --objective classify learns the toy task and saves its head");
}

int main(void) {
    char dir[] = "/tmp/g3_lora_train_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    test_f32(dir);
    test_bf16();
    test_dropout();
    test_cli(dir);
    test_classify(dir);
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
