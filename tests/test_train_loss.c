// test_train_loss.c: training works end to end through the library: a tiny Gemma 3 (hidden
// 48, 2 layers, vocabulary 256) trained with AdamW, clipping, accumulation and the cosine
// schedule on synthetic but learnable tokens (a fixed successor rule with 10% noise; the
// best possible loss is ~0.75 nats) must drive the validation loss well below half its
// starting value (ln 256 = 5.5) in 150 steps. Then the same with 8-bit AdamW and activation
// checkpointing (which must give the same loss as without, bit for bit), and with bf16
// products (which must end within 5% of f32's loss).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#include "check.h"
#include "base/base.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/train.h"

enum { V = 256, N = 60000, B = 8, T = 32, STEPS = 150, ACCUM = 2 };
static uint32_t tok[N];

static double train(int bits, int recompute, int bf16, int steps, double *first_val, double *curve) {
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = V; c.hidden = 48; c.inter = 96; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 24;
    c.query_pre_attn_scalar = 24; c.sliding_window = 16; c.sliding[0] = 1; c.sliding[1] = 0;
    G3TrainModel tm;
    if (g3_train_model_new(&tm, &c)) { fprintf(stderr, "%s\n", g3_error()); exit(1); }
    g3_train_model_init_random(&tm, 1, 0.02f);
    G3AdamWConfig oc = g3_adamw_defaults();
    oc.bits = bits;
    G3AdamW o;
    CHECK(g3_adamw_init_model(&o, &oc, &tm, 0) == 0, "%s", g3_error());
    G3TrainCtx *ctx = g3_train_ctx_new(&tm, B, T, recompute, NULL);
    CHECK(ctx != NULL, "%s", g3_error());
    g3_train_ctx_set_bf16(ctx, bf16);
    G3Schedule s = {G3_SCHED_COSINE, 1e-2, 0.1, 20, steps, 0};
    int32_t in[B * T], tg[B * T];
    int64_t ntrain = N - 4000;
    double val = 0;
    for (int step = 0; step <= steps; step++) {
        if (step % 25 == 0 || step == steps) {
            val = 0;
            for (int k = 0; k < 4; k++) {
                g3_data_val_batch(tok + ntrain, N - ntrain, B, T, k, in, tg);
                val += g3_train_loss(&tm, ctx, in, tg) / 4;
            }
            if (step == 0) *first_val = val;
            if (curve) curve[step / 25] = val;
        }
        if (step == steps) break;
        memset(tm.grads, 0, sizeof(float) * (size_t)tm.n);
        for (int m = 0; m < ACCUM; m++) {
            g3_data_batch(tok, ntrain, B, T, 7, step, m, in, tg);
            g3_train_forward_backward(&tm, ctx, in, tg, 1.0f / ACCUM);
        }
        double norm = g3_grad_norm(tm.grads, tm.n);
        g3_adamw_step(&o, tm.params, tm.grads, g3_schedule_lr(&s, step), g3_clip_scale(norm, 1.0));
    }
    g3_train_ctx_free(ctx);
    g3_adamw_free(&o);
    g3_train_model_free(&tm);
    return val;
}

int main(void) {
    uint64_t x = 99;
    tok[0] = 2;
    for (int i = 1; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (x >> 59) < 3 ? (uint32_t)(x >> 40) % V : (tok[i - 1] * 37 + 11) % V;
    }
    // Tiny matrices: threads would only add synchronisation.
    omp_set_num_threads(1);
    double t0 = g3_now(), first, curve[7];
    double last = train(32, 0, 0, STEPS, &first, curve);
    printf("AdamW: val loss");
    for (int i = 0; i < 7; i++) printf(" %.3f", curve[i]);
    printf(" (steps 0..150 by 25) in %.1f s\n", g3_now() - t0);
    CHECK(first > 5.0 && last < 0.5 * first, "loss %g -> %g: not learning", first, last);
    double first8, first_r;
    double last8 = train(8, 1, 0, STEPS, &first8, NULL);
    printf("8-bit AdamW + activation checkpointing: %.3f -> %.3f\n", first8, last8);
    CHECK(last8 < 0.5 * first8, "8-bit loss %g -> %g", first8, last8);
    double a = train(8, 1, 0, 20, &first_r, NULL), last_r = train(8, 0, 0, 20, &first_r, NULL);
    CHECK(last_r == a, "activation checkpointing changed the result: %.9g vs %.9g", last_r, a);
    // bf16 products learn as f32 does: the same curve to within a few percent
    double firstb, lastb = train(32, 0, 1, STEPS, &firstb, NULL);
    printf("bf16 products: %.3f -> %.3f (f32 %.3f)\n", firstb, lastb, last);
    CHECK(lastb < 0.5 * firstb && fabs(lastb - last) < 0.05 * last, "bf16 loss %g -> %g (f32 %g)", firstb, lastb, last);
    printf("total %.1f s\n", g3_now() - t0);
    return check_done();
}
