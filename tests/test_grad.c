// test_grad.c: the training pass against Hugging Face transformers (float64): the loss and
// the gradient of every tensor on the training fixtures (Gemma 3 with QK-norm and a sliding
// window shorter than the sequence; Gemma 2 with attention and final softcaps). The same
// with activation checkpointing, with a batch of two copies, with gradient accumulation, with
// bf16 products (to bf16's precision), and `gemma3 grad` end to end.
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "train/train.h"

static const char *TRAIN_FIXTURES[] = {"gemma3-tiny-f32", "gemma2-tiny-f32"};

// Compares tm->grads with grad.<name> of exp, each within tol; returns the worst relative error.
static double compare_grads(const G3TrainModel *tm, const STSet *exp, const char *what, double tol, char *worst_name, size_t cap) {
    double worst = 0;
    for (int i = 0; i < tm->m.nt; i++) {
        char key[160];
        snprintf(key, sizeof key, "grad.%s", tm->m.t[i].name);
        const STTensor *t = st_find(exp, key);
        if (!t) { CHECK(0, "%s: reference has no %s", what, key); continue; }
        CHECK(st_numel(t) == tm->m.t[i].numel, "%s: %s size", what, key);
        double e = rel_err(tm->grads + tm->off[i], t->data, tm->m.t[i].numel);
        CHECK(e <= tol, "%s: %s rel err %.3g > %g", what, key, e, tol);
        if (e > worst) { worst = e; snprintf(worst_name, cap, "%s", tm->m.t[i].name); }
    }
    return worst;
}

// Same gradients as a reference run (a and b of the same model layout).
static double grads_diff(const G3TrainModel *a, const float *ref) { return rel_err(a->grads, ref, a->n); }

static void run_fixture(const char *name) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    STSet exp;
    fixture_open(&exp, name);
    int32_t *ids;
    int N = fixture_ids(&exp, "input_ids", &ids), T = N - 1;
    double ref_loss = *(const double *)fixture_get(&exp, "loss")->data;
    G3TrainModel tm;
    if (g3_train_model_from(&tm, &m)) { CHECK(0, "%s", g3_error()); return; }

    // B = 1, stored activations
    int64_t bytes_full = 0, bytes_ckpt = 0;
    G3TrainCtx *cx = g3_train_ctx_new(&tm, 1, T, 0, &bytes_full);
    CHECK(cx != NULL, "%s", g3_error());
    double t0 = g3_now();
    double loss = g3_train_forward_backward(&tm, cx, ids, ids + 1, 1.0f);
    double dt = g3_now() - t0;
    double le = fabs(loss - ref_loss) / fabs(ref_loss);
    CHECK(le <= 1e-6, "%s: loss %.9g vs %.9g (rel err %.3g)", name, loss, ref_loss, le);
    char worst_name[160] = "";
    double worst = compare_grads(&tm, &exp, name, 1e-4, worst_name, sizeof worst_name);
    printf("%-18s loss rel err %.2e, worst grad rel err %.2e (%s), %.1f ms\n", name, le, worst, worst_name, dt * 1e3);
    float *ref = malloc((size_t)tm.n * sizeof(float));
    memcpy(ref, tm.grads, (size_t)tm.n * sizeof(float));
    // bf16 products (mixed precision): the loss and every gradient to bf16's precision
    // (operands rounded to 8 significant bits: ~0.3% a product, less in sums)
    g3_train_ctx_set_bf16(cx, 1);
    memset(tm.grads, 0, (size_t)tm.n * sizeof(float));
    double lbf = g3_train_forward_backward(&tm, cx, ids, ids + 1, 1.0f), lebf = fabs(lbf - ref_loss) / fabs(ref_loss);
    CHECK(lebf <= 1e-2, "%s (bf16): loss %.9g vs %.9g (rel err %.3g)", name, lbf, ref_loss, lebf);
    char worst_bf_name[160] = "";
    double worst_bf = compare_grads(&tm, &exp, "bf16", 5e-2, worst_bf_name, sizeof worst_bf_name);
    double ebf = grads_diff(&tm, ref);
    CHECK(ebf > 1e-4 && ebf <= 2e-2, "%s (bf16): all gradients rel err %.3g from f32's (not rounded, or too far)", name, ebf);
    printf("%-18s bf16 products: loss rel err %.2e, all gradients %.2e, worst tensor %.2e (%s)\n", name, lebf, ebf, worst_bf,
           worst_bf_name);
    g3_train_ctx_set_bf16(cx, 0);
    memcpy(tm.grads, ref, (size_t)tm.n * sizeof(float));
    // the loss alone agrees
    double l2 = g3_train_loss(&tm, cx, ids, ids + 1);
    CHECK(fabs(l2 - loss) <= 1e-12 * fabs(loss), "%s: g3_train_loss %.12g vs %.12g", name, l2, loss);
    g3_train_ctx_free(cx);

    // activation checkpointing: the same numbers
    cx = g3_train_ctx_new(&tm, 1, T, 1, &bytes_ckpt);
    memset(tm.grads, 0, (size_t)tm.n * sizeof(float));
    double lc = g3_train_forward_backward(&tm, cx, ids, ids + 1, 1.0f);
    CHECK(fabs(lc - loss) <= 1e-12 * fabs(loss), "%s (recompute): loss %.12g vs %.12g", name, lc, loss);
    double e = grads_diff(&tm, ref);
    CHECK(e <= 1e-6, "%s (recompute): grads differ by %.3g", name, e);
    CHECK(bytes_ckpt < bytes_full, "%s: checkpointing saves nothing (%lld vs %lld)", name, (long long)bytes_ckpt, (long long)bytes_full);
    CHECK(g3_train_ctx_bytes(&tm, 1, T, 0) == bytes_full && g3_train_ctx_bytes(&tm, 1, T, 1) == bytes_ckpt,
          "%s: g3_train_ctx_bytes disagrees with g3_train_ctx_new", name);
    printf("%-18s recompute: grads rel diff %.1e, activations %lld -> %lld bytes\n", name, e, (long long)bytes_full, (long long)bytes_ckpt);
    // gradient accumulation: two calls with grad_scale 0.5 add up to the same gradient
    memset(tm.grads, 0, (size_t)tm.n * sizeof(float));
    g3_train_forward_backward(&tm, cx, ids, ids + 1, 0.5f);
    g3_train_forward_backward(&tm, cx, ids, ids + 1, 0.5f);
    e = grads_diff(&tm, ref);
    CHECK(e <= 1e-6, "%s (accumulate 2 x 0.5): grads differ by %.3g", name, e);
    g3_train_ctx_free(cx);

    // B = 2: the same sequence twice (the mean is unchanged, so grad_scale 1 gives the same
    // gradients and grad_scale 0.5 half of them), and the second row masked out by target -1
    int32_t *in2 = malloc(2 * (size_t)T * sizeof *in2), *tg2 = malloc(2 * (size_t)T * sizeof *tg2);
    for (int b = 0; b < 2; b++) {
        memcpy(in2 + (size_t)b * T, ids, (size_t)T * sizeof *in2);
        memcpy(tg2 + (size_t)b * T, ids + 1, (size_t)T * sizeof *tg2);
    }
    cx = g3_train_ctx_new(&tm, 2, T, 0, NULL);
    memset(tm.grads, 0, (size_t)tm.n * sizeof(float));
    double lb = g3_train_forward_backward(&tm, cx, in2, tg2, 0.5f);
    CHECK(fabs(lb - loss) <= 1e-6 * fabs(loss), "%s (B=2): loss %.9g vs %.9g", name, lb, loss);
    for (int64_t i = 0; i < tm.n; i++) tm.grads[i] *= 2.0f;
    e = grads_diff(&tm, ref);
    CHECK(e <= 1e-5, "%s (B=2, grad_scale 0.5): 2 x grads differ by %.3g", name, e);
    for (int t = 0; t < T; t++) tg2[T + t] = -1;
    memset(tm.grads, 0, (size_t)tm.n * sizeof(float));
    lb = g3_train_forward_backward(&tm, cx, in2, tg2, 1.0f);
    CHECK(fabs(lb - loss) <= 1e-6 * fabs(loss), "%s (B=2, masked): loss %.9g vs %.9g", name, lb, loss);
    e = grads_diff(&tm, ref);
    CHECK(e <= 1e-5, "%s (B=2, second row masked): grads differ by %.3g", name, e);
    // bad ids are refused
    in2[3] = m.cfg.vocab;
    CHECK(isnan(g3_train_forward_backward(&tm, cx, in2, tg2, 1.0f)), "%s: id outside the vocabulary accepted", name);
    g3_train_ctx_free(cx);
    free(in2); free(tg2); free(ref); free(ids);
    g3_train_model_free(&tm);
    st_close(&exp);
    g3_model_free(&m);
}

// `gemma3 grad` end to end on one fixture: the file it writes carries the reference's loss
// and gradients under the checkpoint's own names.
static void run_cli(void) {
    const char *bin = getenv("BIN");
    if (!bin || !*bin) bin = "./gemma3";
    if (access(bin, X_OK)) { printf("gemma3 grad: %s missing, CLI check skipped\n", bin); return; }
    const char *name = "gemma3-tiny-f32";
    STSet exp;
    fixture_open(&exp, name);
    int32_t *ids;
    int N = fixture_ids(&exp, "input_ids", &ids);
    char out[256], cmd[8192];
    snprintf(out, sizeof out, "/tmp/g3_test_grad_%d.safetensors", (int)getpid());
    int k = snprintf(cmd, sizeof cmd, "%s grad --model tests/fixtures/%s --save %s --ids ", bin, name, out);
    for (int i = 0; i < N; i++) k += snprintf(cmd + k, sizeof cmd - k, "%s%d", i ? "," : "", ids[i]);
    snprintf(cmd + k, sizeof cmd - k, " > /dev/null");
    CHECK(system(cmd) == 0, "%s failed", cmd);
    STSet got;
    if (st_open(&got, out)) { CHECK(0, "%s", g3_error()); }
    else {
        const STTensor *l = st_find(&got, "loss");
        double ref_loss = *(const double *)fixture_get(&exp, "loss")->data;
        CHECK(l && l->dtype == G3_F64 && st_numel(l) == 1, "grad CLI: loss missing or not F64 [1]");
        if (l) CHECK(fabs(*(const double *)l->data - ref_loss) <= 1e-6 * fabs(ref_loss), "grad CLI: loss %.9g", *(const double *)l->data);
        int ngrad = 0;
        double worst = 0;
        for (int i = 0; i < exp.ntensors; i++) {
            const STTensor *r = &exp.tensors[i];
            if (strncmp(r->name, "grad.", 5)) continue;
            ngrad++;
            const STTensor *g = st_find(&got, r->name);
            if (!g) { CHECK(0, "grad CLI: %s missing", r->name); continue; }
            CHECK(g->dtype == G3_F32 && g->ndim == r->ndim && st_numel(g) == st_numel(r), "grad CLI: %s dtype/shape", r->name);
            double e = rel_err(g->data, r->data, st_numel(r));
            CHECK(e <= 1e-4, "grad CLI: %s rel err %.3g", r->name, e);
            worst = e > worst ? e : worst;
        }
        CHECK(got.ntensors == ngrad + 1, "grad CLI: %d tensors written, expected %d", got.ntensors, ngrad + 1);
        printf("gemma3 grad CLI: %d gradients, worst rel err %.2e\n", ngrad, worst);
        st_close(&got);
    }
    unlink(out);
    // errors: an id outside the vocabulary, a single id, a missing model
    snprintf(cmd, sizeof cmd, "%s grad --model tests/fixtures/%s --ids 2,5000 --save %s 2>/dev/null", bin, name, out);
    CHECK(system(cmd) != 0, "grad CLI accepted an id outside the vocabulary");
    snprintf(cmd, sizeof cmd, "%s grad --model tests/fixtures/%s --ids 2 --save %s 2>/dev/null", bin, name, out);
    CHECK(system(cmd) != 0, "grad CLI accepted a single id");
    snprintf(cmd, sizeof cmd, "%s grad --model /nonexistent --ids 2,3 --save %s 2>/dev/null", bin, out);
    CHECK(system(cmd) != 0, "grad CLI accepted a missing model");
    CHECK(access(out, F_OK) != 0, "grad CLI wrote %s despite an error", out);
    free(ids);
    st_close(&exp);
}

// g3_train_model_save: F32 reloads bit-exact, BF16 within bf16 rounding, through the loader.
static void run_save(void) {
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32")) { CHECK(0, "%s", g3_error()); return; }
    G3TrainModel tm;
    if (g3_train_model_from(&tm, &m)) { CHECK(0, "%s", g3_error()); g3_model_free(&m); return; }
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/g3_test_grad_save_%d", (int)getpid());
    G3DType dts[2] = {G3_F32, G3_BF16};
    for (int k = 0; k < 2; k++) {
        if (g3_train_model_save(&tm, dir, dts[k])) { CHECK(0, "%s", g3_error()); continue; }
        G3Model r;
        if (g3_model_load(&r, dir)) { CHECK(0, "reloading the saved model: %s", g3_error()); continue; }
        double worst = 0;
        for (int i = 0; i < r.nt; i++) {
            float *f = malloc((size_t)r.t[i].numel * sizeof *f);
            CHECK(r.t[i].dtype == dts[k], "saved %s has dtype %s", r.t[i].name, g3_dtype_name(r.t[i].dtype));
            g3_to_f32(f, r.t[i].data, r.t[i].dtype, (size_t)r.t[i].numel);
            double e = rel_err(f, tm.params + tm.off[i], r.t[i].numel);
            worst = e > worst ? e : worst;
            free(f);
        }
        CHECK(dts[k] == G3_F32 ? worst == 0 : worst < 4e-3, "save %s: reloaded weights differ by %.3g", g3_dtype_name(dts[k]), worst);
        g3_model_free(&r);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    g3_train_model_free(&tm);
    g3_model_free(&m);
}

int main(void) {
    (void)FIXTURES;
    for (size_t i = 0; i < G3_ARRAY_LEN(TRAIN_FIXTURES); i++) run_fixture(TRAIN_FIXTURES[i]);
    run_cli();
    run_save();
    return check_done();
}
