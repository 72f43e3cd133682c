// example.c: gemma3.c from C through the public API alone (include/gemma3.h).
//   make && gcc -Iinclude docs/example.c build/rel/libgemma3.a -fopenmp -lm -lpthread -lz -o example
//   ./example tests/fixtures/gemma3-tiny-f32
// Loads a model, runs a prompt with a hook that reads the residual stream of every layer,
// generates a greedy continuation, and takes one training step on the same ids.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gemma3.h"

static void die(const char *what) {
    fprintf(stderr, "%s: %s\n", what, gemma3_last_error());
    exit(1);
}

// The hook: the norm of the last position's residual stream after each layer.
static void on_resid(void *ctx, const gemma3_activation *a) {
    (void)ctx;
    const float *row = a->data + (long)(a->rows - 1) * a->cols;
    double ss = 0;
    for (int i = 0; i < a->cols; i++) ss += (double)row[i] * row[i];
    printf("  %-28s position %d: norm %.3f\n", a->name, a->pos0 + a->rows - 1, sqrt(ss));
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "tests/fixtures/gemma3-tiny-f32";
    gemma3_model *m = gemma3_model_open(path);
    if (!m) die("open");
    gemma3_model_info info;
    gemma3_model_get_info(m, &info);
    printf("%s (%s): %d layers, hidden %d, vocab %d, %.2fM parameters\n", path, gemma3_version(), info.layers, info.hidden,
           info.vocab, info.parameters / 1e6);

    int32_t ids[8] = {2, 17, 300, 45, 99, 12, 7, 8};
    const int n = 8;

    // a forward pass with a hook on every layer's residual output
    gemma3_state *s = gemma3_state_new(m, 1, 64, 64, 1);
    if (!s) die("state");
    const char *sites[] = {"blocks.*.hook_resid_post"};
    if (gemma3_state_set_hook(s, sites, 1, on_resid, NULL)) die("hook");
    float *logits = malloc((size_t)info.vocab * sizeof(float));
    if (gemma3_forward(s, 0, ids, n, logits, 1)) die("forward");
    int best = 0;
    for (int i = 1; i < info.vocab; i++) if (logits[i] > logits[best]) best = i;
    printf("next token after the prompt: %d (logit %.3f)\n", best, logits[best]);
    gemma3_state_free(s);

    // greedy generation through the step-based generator
    gemma3_generator *g = gemma3_generator_new(m, 2, 64, 1);
    if (!g) die("generator");
    gemma3_sampling greedy = gemma3_sampling_defaults();
    greedy.temperature = 0;
    int id = gemma3_generator_add(g, ids, n, 6, NULL, 0, &greedy);
    if (id < 0) die("add");
    int live;
    while ((live = gemma3_generator_step(g)) > 0) {}
    if (live < 0) die("step");
    const int32_t *out;
    int nout, done;
    gemma3_generator_read(g, id, &out, &nout, &done);
    printf("greedy continuation:");
    for (int i = 0; i < nout; i++) printf(" %d", out[i]);
    printf("\n");
    gemma3_generator_free(g);

    // one training step on the prompt (next-token targets)
    gemma3_train_options o = gemma3_train_defaults();
    o.batch = 1;
    o.seq = n - 1;
    o.lr = 1e-3;
    gemma3_trainer *t = gemma3_trainer_new(m, &o);
    if (!t) die("trainer");
    double before = gemma3_trainer_grad(t, ids, ids + 1);
    if (isnan(before) || gemma3_trainer_step(t) < 0) die("train");
    double after = gemma3_trainer_loss(t, ids, ids + 1);
    printf("loss %.4f -> %.4f after one AdamW step\n", before, after);
    gemma3_trainer_free(t);

    free(logits);
    gemma3_model_close(m);
    return 0;
}
