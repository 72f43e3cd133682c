// test_forward.c: the forward pass against Hugging Face transformers (float64) on every
// fixture: each layer's activations, attention patterns and logits in exact mode (1e-5) and
// fast mode (2e-2); greedy continuations by full recomputation and by prefill-then-decode
// with the KV cache in chunks that cross the sliding window. All of it on the CPU and, in a
// CUDA build on a machine with a GPU, on the CUDA backend too (hooks there go through the
// host staging and the hooked-attention fallback); without one the GPU half says it is
// skipped.
#include "check.h"
#include "fixtures.h"
#include "kernels/kernels.h"
#include "model/forward.h"

typedef struct {
    const STSet *exp;
    double tol, worst;
    const char *fixture;
    const char *dev;
    int fast;
    char worst_name[64];
} Obs;

// Compares what each hook site shows against the reference tensor of the same meaning.
static void on_hook(void *ctx, const G3HookEvent *ev) {
    Obs *o = ctx;
    static const char *const REF[G3_HOOK_NSITES] = {
        [G3_HOOK_EMBED] = "embed", [G3_HOOK_PATTERN] = "attn", [G3_HOOK_ATTN_OUT] = "attn_out",
        [G3_HOOK_MLP_OUT] = "mlp_out", [G3_HOOK_RESID_POST] = "layer", [G3_HOOK_LN_FINAL] = "final_norm",
    };
    char key[64];
    if (ev->layer >= 0) snprintf(key, sizeof key, "%s.%d", REF[ev->site], ev->layer);
    else snprintf(key, sizeof key, "%s", REF[ev->site]);
    const STTensor *t = st_find(o->exp, key);
    if (!t) { CHECK(0, "%s: reference has no %s", o->fixture, key); return; }
    const float *ref = t->data;
    long n = (long)ev->rows * ev->cols;
    // one prefill from position 0: key0 = 0 and keys = rows, so attn.{l}[head] is the block
    if (ev->head >= 0) ref += (long)ev->head * ev->rows * ev->cols;  // attn.{l} is [NH, T, T]
    double e = rel_err(ev->data, ref, n);
    CHECK(e <= o->tol, "%s (%s, %s): %s head %d rel err %.3g > %.1g", o->fixture, o->dev, o->fast ? "fast" : "exact", key,
          ev->head, e, o->tol);
    if (e > o->worst) { o->worst = e; snprintf(o->worst_name, sizeof o->worst_name, "%s", key); }
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static void run_fixture(const char *name, const char *dev, int fast) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    if (strcmp(dev, "cpu") && !(m.be = g3_backend_open(dev))) { CHECK(0, "%s", g3_error()); g3_model_free(&m); return; }
    STSet exp;
    fixture_open(&exp, name);
    int32_t *ids, *greedy;
    int T = fixture_ids(&exp, "input_ids", &ids), N = fixture_ids(&exp, "greedy_ids", &greedy);
    const int V = m.cfg.vocab;
    Obs o = {&exp, fast ? 2e-2 : 1e-5, 0, name, dev, fast, ""};

    // one prefill over the whole prompt, every activation seen through the hooks
    G3State *s = g3_state_new(&m, 1, T + N, T, fast, NULL);
    CHECK(s != NULL, "%s", g3_error());
    uint32_t sites = 1u << G3_HOOK_EMBED | 1u << G3_HOOK_PATTERN | 1u << G3_HOOK_ATTN_OUT | 1u << G3_HOOK_MLP_OUT |
                     1u << G3_HOOK_RESID_POST | 1u << G3_HOOK_LN_FINAL;
    g3_state_set_hook(s, on_hook, &o, sites, ~0ull);
    float *logits = malloc((size_t)T * V * sizeof(float));
    CHECK(g3_prefill(s, 0, ids, T, logits) == 0, "%s", g3_error());
    double e = rel_err(logits, fixture_get(&exp, "logits")->data, (long)T * V);
    CHECK(e <= o.tol, "%s (%s): logits rel err %.3g", name, dev, e);
    g3_state_set_hook(s, NULL, NULL, 0, 0);

    // greedy by full recomputation (no cache reuse)
    int32_t *seq = malloc((size_t)(T + N) * sizeof *seq);
    memcpy(seq, ids, (size_t)T * sizeof *seq);
    int ok_full = 1;
    for (int i = 0; i < N; i++) {
        g3_state_reset(s, 0);
        if (g3_prefill(s, 0, seq, T + i, NULL)) { CHECK(0, "%s", g3_error()); break; }
        seq[T + i] = argmax(s->logits, V);
        ok_full &= seq[T + i] == greedy[i];
    }
    CHECK(ok_full, "%s (%s, %s): greedy ids by full recomputation differ", name, dev, fast ? "fast" : "exact");
    g3_state_free(s);

    // prefill in odd chunks (crossing the window), then decode with the cache
    int chunks[] = {3, 5, 7};
    for (size_t ci = 0; ci < G3_ARRAY_LEN(chunks); ci++) {
        G3State *cs = g3_state_new(&m, 1, T + N, chunks[ci], fast, NULL);
        if (g3_prefill(cs, 0, ids, T, NULL)) { CHECK(0, "%s", g3_error()); break; }
        int ok = 1, tok = argmax(cs->logits, V);
        for (int i = 0; i < N; i++) {
            ok &= tok == greedy[i];
            G3Segment sg = {0, T + i, 1};
            if (g3_forward(cs, &tok, &sg, 1, G3_LOGITS_LAST)) { CHECK(0, "%s", g3_error()); break; }
            tok = argmax(cs->logits, V);
        }
        CHECK(ok, "%s (%s, %s): greedy ids with KV cache (chunks of %d) differ", name, dev, fast ? "fast" : "exact", chunks[ci]);
        g3_state_free(cs);
    }
    printf("%-32s %-4s %-5s worst activation rel err %.2e (%s), logits %.2e\n", name, dev, fast ? "fast" : "exact", o.worst,
           o.worst_name, e);
    free(seq); free(logits); free(ids); free(greedy);
    st_close(&exp);
    g3_backend_free(m.be);
    g3_model_free(&m);
}

int main(void) {
    const int gpu = g3_backend_cuda_devices() > 0;
    if (!gpu) printf("test_forward: cuda half skipped: no GPU (or a build without CUDA)\n");
    for (size_t i = 0; i < G3_ARRAY_LEN(FIXTURES); i++)
        for (int d = 0; d < 1 + gpu; d++) {
            run_fixture(FIXTURES[i], d ? "cuda" : "cpu", 0);
            run_fixture(FIXTURES[i], d ? "cuda" : "cpu", 1);
        }
    return check_done();
}
