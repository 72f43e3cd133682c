// test_pass.c: one model pass for inference and training. On every fixture, the inference
// forward (a KV-cache state, prefill in chunks and one-token decode) and the training forward
// (B x T batches from position 0, the activations kept for backward) run the same code of
// model/pass.c over the backend's ops, so in exact mode their logits must agree to float
// rounding (1e-6 relative), and the training loss must equal the cross-entropy of the
// inference logits. Also: a batch of two sequences gives each its own logits; a state made
// before the OpenMP thread count grows still decodes within its scratch (run under ASan).
#include <math.h>
#include <omp.h>

#include "check.h"
#include "fixtures.h"
#include "model/forward.h"
#include "train/train.h"

// Mean next-token cross-entropy of logits[T, V] against ids shifted by one, in double.
static double ce(const float *logits, const int32_t *ids, int T, int V) {
    double s = 0;
    for (int t = 0; t + 1 < T; t++) {
        const float *z = logits + (long)t * V;
        double mx = z[0], sum = 0;
        for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
        for (int i = 0; i < V; i++) sum += exp((double)z[i] - mx);
        s += log(sum) + mx - z[ids[t + 1]];
    }
    return s / (T - 1);
}

static void run(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    STSet exp;
    fixture_open(&exp, name);
    int32_t *ids;
    const int T = fixture_ids(&exp, "input_ids", &ids), V = m.cfg.vocab;
    float *inf = malloc((size_t)T * V * sizeof(float)), *dec = malloc((size_t)T * V * sizeof(float));
    float *trn = malloc((size_t)2 * T * V * sizeof(float));
    // inference: prefill in chunks of 7 rows (the sliding window is 8: chunks cross it)
    G3State *s = g3_state_new(&m, 1, T, 7, 0, NULL);
    CHECK(s && g3_prefill(s, 0, ids, T, inf) == 0, "%s: prefill: %s", name, g3_error());
    g3_state_free(s);
    // inference: one token at a time through the cache
    s = g3_state_new(&m, 1, T, 1, 0, NULL);
    for (int t = 0; s && t < T; t++) {
        G3Segment sg = {0, t, 1};
        CHECK(g3_forward(s, ids + t, &sg, 1, G3_LOGITS_LAST) == 0, "%s: decode: %s", name, g3_error());
        memcpy(dec + (long)t * V, s->logits, (size_t)V * sizeof(float));
    }
    g3_state_free(s);
    // training: the same sequence twice as a batch of two
    G3TrainModel tm;
    CHECK(g3_train_model_from(&tm, &m) == 0, "%s: %s", name, g3_error());
    G3TrainCtx *cx = g3_train_ctx_new(&tm, 2, T, 0, NULL);
    int32_t *in2 = malloc((size_t)2 * T * sizeof *in2), *tg2 = malloc((size_t)2 * T * sizeof *tg2);
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < T; t++) {
            in2[b * T + t] = ids[t];
            tg2[b * T + t] = t + 1 < T ? ids[t + 1] : -1;
        }
    CHECK(cx && g3_train_logits(&tm, cx, in2, trn) == 0, "%s: train logits: %s", name, g3_error());
    double e_trn = rel_err(trn, inf, (long)T * V), e_trn2 = rel_err(trn + (long)T * V, inf, (long)T * V);
    double e_dec = rel_err(dec, inf, (long)T * V);
    CHECK(e_trn <= 1e-6 && e_trn2 <= 1e-6, "%s: training vs inference logits rel err %.3g / %.3g", name, e_trn, e_trn2);
    CHECK(e_dec <= 1e-6, "%s: decode vs prefill logits rel err %.3g", name, e_dec);
    double loss = g3_train_loss(&tm, cx, in2, tg2), ref = ce(inf, ids, T, V);
    CHECK(fabs(loss - ref) <= 1e-6 * fabs(ref), "%s: training loss %.9g vs inference cross-entropy %.9g", name, loss, ref);
    printf("%-32s training vs inference logits %.2e (batch row 2: %.2e), decode vs prefill %.2e, loss %.3e\n", name, e_trn,
           e_trn2, e_dec, fabs(loss - ref) / fabs(ref));
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
    free(in2); free(tg2); free(inf); free(dec); free(trn); free(ids);
    st_close(&exp);
    g3_model_free(&m);
}

// A state sized with one thread, then decode with more: the per-thread scratch of attention
// is sized at each call (it was sized once, and decode wrote past it under ASan).
static void more_threads(void) {
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32")) { CHECK(0, "%s", g3_error()); return; }
    int before = omp_get_max_threads();
    omp_set_num_threads(1);
    G3State *s = g3_state_new(&m, 4, 64, 8, 0, NULL);
    omp_set_num_threads(16);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 37 + 5) % m.cfg.vocab;
    for (int q = 0; s && q < 4; q++) CHECK(g3_prefill(s, q, ids, 40, NULL) == 0, "prefill: %s", g3_error());
    for (int step = 0; s && step < 8; step++) {
        G3Segment segs[4];
        int32_t tok[4];
        for (int q = 0; q < 4; q++) { segs[q] = (G3Segment){q, s->len[q], 1}; tok[q] = ids[(step + q) % 40]; }
        CHECK(g3_forward(s, tok, segs, 4, G3_LOGITS_LAST) == 0, "decode with 16 threads: %s", g3_error());
    }
    g3_state_free(s);
    omp_set_num_threads(before);
    g3_model_free(&m);
}

int main(void) {
    for (size_t i = 0; i < G3_ARRAY_LEN(FIXTURES); i++) run(FIXTURES[i]);
    more_threads();
    return check_done();
}
