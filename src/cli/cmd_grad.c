// cmd_grad.c: `gemma3 grad`: the loss and the gradient of every tensor for one sequence
// (mean next-token cross-entropy of ids[0..T-2] against ids[1..T-1]), written as
// `loss` (F64 [1]) and `grad.<tensor name>` (F32, the tensor's shape) under the names the
// checkpoint itself uses, so the file compares directly with a PyTorch reference.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "backend/backend.h"
#include "train/train.h"

// The tensor's name as found in the checkpoint (model.*, language_model.model.* or
// model.language_model.*), else the canonical one.
static const char *file_name(const G3Model *m, const char *canonical, char *buf, size_t cap) {
    static const char *prefixes[] = {"model.", "language_model.model.", "model.language_model."};
    for (size_t i = 0; i < G3_ARRAY_LEN(prefixes); i++) {
        snprintf(buf, cap, "%s%s", prefixes[i], canonical + strlen("model."));
        if (m->src && m->src->find(m->src, buf, &(G3SourceTensor){0}) == 0) return buf;
    }
    return canonical;
}

int cmd_grad(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *save = NULL;
    long threads = 0;
    int ckpt = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--ids", OPT_STR, &ids_s, "token ids, comma-separated (at least 2; start with 2, <bos>)"},
        {"--save", OPT_STR, &save, "write loss and grad.<name> for every tensor to this .safetensors file"},
        {"--checkpointing", OPT_FLAG, &ckpt, "recompute each layer in backward (less activation memory)"},
        CLI_THREADS_OPT(threads),
        CLI_DEVICE_OPT,
    };
    CLI_PARSE("grad", "--model DIR --ids 2,17,300,... [--save grads.safetensors]", argc, argv, opts);
    if (!ids_s) return cli_fail("grad", "--ids is required (see --help)");
    if (cli_model_or_default("grad", &dir)) return 1;
    cli_set_threads(threads);
    int32_t *ids;
    int n = cli_parse_ids(ids_s, &ids);
    if (n < 0) return cli_fail("grad", "--ids: %s", g3_error());
    if (n < 2) { free(ids); return cli_fail("grad", "--ids: %d id%s given; the loss needs at least 2 (inputs and next-token targets)", n, n == 1 ? "" : "s"); }
    G3Model m;
    if (g3_model_load(&m, dir)) { free(ids); return cli_fail("grad", "%s", g3_error()); }
    int rc = 1, T = n - 1;
    G3TrainModel tm = {0};
    G3TrainCtx *cx = NULL;
    G3Backend *be = NULL;
    STWriter w = {0};
    for (int i = 0; i < n; i++)
        if (ids[i] >= m.cfg.vocab) { cli_fail("grad", "--ids: id %d (position %d) is outside the vocabulary [0, %d)", ids[i], i, m.cfg.vocab); goto out; }
    if (T > m.cfg.max_pos) { cli_fail("grad", "%d ids exceed the model's context of %d positions", n, m.cfg.max_pos); goto out; }
    if (g3_train_model_from(&tm, &m)) { cli_fail("grad", "%s", g3_error()); goto out; }
    int64_t bytes = 0;
    if (cli_train_backend(&be, 0, "grad") || !(cx = g3_train_ctx_new_on(&tm, be, 1, T, ckpt, &bytes))) {
        cli_fail("grad", "%s", g3_error());
        goto out;
    }
    double t0 = g3_now();
    double loss = g3_train_forward_backward(&tm, cx, ids, ids + 1, 1.0f);
    if (loss != loss) { cli_fail("grad", "%s", g3_error()); goto out; }
    double dt = g3_now() - t0;
    double gn = 0;
    for (int64_t i = 0; i < tm.n; i++) gn += (double)tm.grads[i] * tm.grads[i];
    printf("loss %.9f (%d targets), grad norm %.6g\n", loss, T, sqrt(gn));
    fprintf(stderr, "grad: %lld parameters, %.1f MiB of activations%s%s, %.3f s\n", (long long)tm.m.nparams, bytes / 1048576.0,
            be ? " on " : "", be ? be->name : "", dt);
    if (save) {
        int64_t one = 1;
        if (st_writer_add(&w, "loss", G3_F64, 1, &one, &loss)) { cli_fail("grad", "%s", g3_error()); goto out; }
        for (int i = 0; i < tm.m.nt; i++) {
            const G3Tensor *t = &tm.m.t[i];
            char nb[160], key[200];
            snprintf(key, sizeof key, "grad.%s", file_name(&m, t->name, nb, sizeof nb));
            if (st_writer_add(&w, key, G3_F32, t->ndim, t->shape, tm.grads + tm.off[i])) { cli_fail("grad", "%s", g3_error()); goto out; }
        }
        if (st_writer_write(&w, save, NULL)) { cli_fail("grad", "%s", g3_error()); goto out; }
        fprintf(stderr, "grad: wrote loss and %d gradients to %s\n", tm.m.nt, save);
    }
    rc = 0;
out:
    st_writer_free(&w);
    g3_train_ctx_free(cx);
    g3_backend_free(be);
    g3_train_model_free(&tm);
    g3_model_free(&m);
    free(ids);
    return rc;
}
