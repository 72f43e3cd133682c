// test_public_api.c: include/gemma3.h on its own: this file includes nothing else of the
// library. The handles work together (model, tokenizer, state with hooks, generator, trainer),
// errors come back as messages, and docs/example.c builds with the command its header gives
// and runs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemma3.h"
#include "check.h"

typedef struct {
    int calls, rows;
    float first;
} HookSeen;

static void on_act(void *ctx, const gemma3_activation *a) {
    HookSeen *h = ctx;
    h->calls++;
    h->rows += a->rows;
    if (h->calls == 1) h->first = a->data[0];
}

static void zero_mlp(void *ctx, const gemma3_activation *a) {
    (void)ctx;
    memset(a->data, 0, (size_t)a->rows * a->cols * sizeof(float));
}

int main(void) {
    CHECK(gemma3_model_open("/nonexistent/model") == NULL, "opening a missing folder fails");
    CHECK(strstr(gemma3_last_error(), "/nonexistent/model") != NULL, "the message names the path: %s", gemma3_last_error());
    CHECK(strncmp(gemma3_version(), "gemma3.c ", 9) == 0, "version %s", gemma3_version());

    gemma3_model *m = gemma3_model_open("tests/fixtures/gemma3-tiny-f32");
    CHECK(m != NULL, "open: %s", gemma3_last_error());
    if (!m) return check_done();
    gemma3_model_info info;
    CHECK(gemma3_model_get_info(m, &info) == 0 && info.layers == 6 && info.vocab > 0, "info");
    CHECK(gemma3_model_layer_sliding(m, 0) == 1 && gemma3_model_layer_sliding(m, 5) == 0 && gemma3_model_layer_sliding(m, 6) == -1,
          "layer kinds");
    char *names = gemma3_site_names(m);
    CHECK(names && strstr(names, "blocks.5.ln2_post.hook_normalized\n") && strstr(names, "hook_embed\n"), "site names");
    free(names);

    const int V = info.vocab, T = 12;
    int32_t ids[12] = {2, 17, 300, 45, 99, 12, 7, 8, 9, 10, 11, 5};
    float *all = malloc((size_t)T * V * sizeof(float)), *last = malloc((size_t)V * sizeof(float));

    // a forward pass with a hook: every layer's resid_post, one call per layer
    gemma3_state *s = gemma3_state_new(m, 2, 32, 16, 1);
    CHECK(s != NULL, "state: %s", gemma3_last_error());
    const char *bad[] = {"blocks.*.no_such_site"};
    CHECK(gemma3_state_set_hook(s, bad, 1, on_act, NULL) == -1 && strstr(gemma3_last_error(), "no_such_site"), "bad pattern refused");
    HookSeen seen = {0};
    const char *pats[] = {"blocks.*.hook_resid_post"};
    CHECK(gemma3_state_set_hook(s, pats, 1, on_act, &seen) == 0, "hook: %s", gemma3_last_error());
    CHECK(gemma3_forward(s, 0, ids, T, all, 0) == 0, "forward: %s", gemma3_last_error());
    CHECK(seen.calls == info.layers && seen.rows == info.layers * T, "hook calls %d rows %d", seen.calls, seen.rows);
    CHECK(gemma3_state_length(s, 0) == T, "length");
    // the same prompt in slot 1, one token at a time: the last logits agree
    gemma3_state_set_hook(s, NULL, 0, NULL, NULL);
    for (int t = 0; t < T; t++) CHECK(gemma3_forward(s, 1, ids + t, 1, last, 1) == 0, "decode: %s", gemma3_last_error());
    double d = 0, nrm = 0;
    for (int i = 0; i < V; i++) { d += fabs(last[i] - all[(long)(T - 1) * V + i]); nrm += fabs(last[i]); }
    CHECK(d <= 1e-5 * nrm, "decode vs prefill %.3g", d / nrm);
    // an edit through the hook changes the output: zero every MLP
    const char *mlp[] = {"blocks.*.hook_mlp_out"};
    CHECK(gemma3_state_reset(s, 0) == 0 && gemma3_state_set_hook(s, mlp, 1, zero_mlp, NULL) == 0, "mlp hook");
    CHECK(gemma3_forward(s, 0, ids, T, last, 1) == 0, "ablated forward");
    d = 0;
    for (int i = 0; i < V; i++) d += fabs(last[i] - all[(long)(T - 1) * V + i]);
    CHECK(d > 1e-3 * nrm, "zeroing the MLPs changed the logits");
    gemma3_state_free(s);

    // greedy generation equals argmax decoding
    gemma3_generator *g = gemma3_generator_new(m, 2, 32, 1);
    CHECK(g != NULL, "generator: %s", gemma3_last_error());
    gemma3_sampling gs = gemma3_sampling_defaults();
    gs.temperature = 0;
    int a = gemma3_generator_add(g, ids, T, 5, NULL, 0, &gs), b = gemma3_generator_add(g, ids, 4, 5, NULL, 0, &gs);
    CHECK(a >= 0 && b >= 0, "add: %s", gemma3_last_error());
    int live, steps = 0;
    while ((live = gemma3_generator_step(g)) > 0 && steps < 100) steps++;
    CHECK(live == 0, "generation ended: %s", gemma3_last_error());
    const int32_t *out;
    int n, done;
    CHECK(gemma3_generator_read(g, a, &out, &n, &done) == 0 && done && n == 5, "read a");
    int best = 0;
    for (int i = 1; i < V; i++) if (all[(long)(T - 1) * V + i] > all[(long)(T - 1) * V + best]) best = i;
    CHECK(n > 0 && out[0] == best, "first greedy token %d == argmax %d", n > 0 ? out[0] : -1, best);
    CHECK(gemma3_generator_read(g, 99, &out, &n, &done) == -1, "unknown id refused");
    gemma3_generator_free(g);

    // training: gradients and a step that lowers the loss
    gemma3_train_options o = gemma3_train_defaults();
    o.batch = 1;
    o.seq = T - 1;
    o.lr = 1e-2;
    gemma3_trainer *t = gemma3_trainer_new(m, &o);
    CHECK(t != NULL, "trainer: %s", gemma3_last_error());
    double l0 = gemma3_trainer_grad(t, ids, ids + 1);
    int64_t numel = 0;
    const float *ge = gemma3_trainer_tensor_grad(t, "model.embed_tokens.weight", &numel);
    CHECK(ge && numel == (int64_t)V * info.hidden, "embedding gradient");
    CHECK(gemma3_trainer_tensor_grad(t, "nope", NULL) == NULL, "unknown tensor refused");
    CHECK(gemma3_trainer_step(t) > 0, "step: %s", gemma3_last_error());
    CHECK(gemma3_trainer_step(t) < 0, "a second step without a gradient is refused");
    double l1 = gemma3_trainer_loss(t, ids, ids + 1);
    CHECK(isfinite(l0) && l1 < l0, "loss %.4f -> %.4f", l0, l1);
    gemma3_trainer_free(t);
    gemma3_model_close(m);
    free(all);
    free(last);

    // the example program: only the public header, the documented command
    const char *bin = getenv("BUILD") ? getenv("BUILD") : "build/rel";
    const char *san = strstr(bin, "san") ? " -fsanitize=address,undefined" : "";  // the library's own build flags
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "gcc -Iinclude docs/example.c %s/libgemma3.a -fopenmp -lm -lpthread -lz%s -o %s/example_api 2>&1 && "
             "%s/example_api tests/fixtures/gemma3-tiny-f32 > %s/example_api.out 2>&1 && grep -q 'greedy continuation' %s/example_api.out",
             bin, san, bin, bin, bin, bin);
    CHECK(system(cmd) == 0, "docs/example.c builds with the public header alone and runs");
    return check_done();
}
