// cmd_forward.c: `gemma3 forward`: one forward pass over token ids; saves the logits and,
// with --stats, prints what each layer does to the residual stream and how its heads attend.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "cli_image.h"
#include "model/forward.h"

typedef struct {
    int T, layers;
    double *resid;    // [L] mean L2 norm of the residual rows after the layer
    double *attn;     // [L] mean attention entropy (nats) over heads and rows
    double *attn_n;   // [L] count
    double embed;
} Stats;

static double mean_row_norm(const float *d, int rows, int cols) {
    double sum = 0;
    for (int r = 0; r < rows; r++) {
        double s = 0;
        for (int i = 0; i < cols; i++) s += (double)d[(long)r * cols + i] * d[(long)r * cols + i];
        sum += sqrt(s);
    }
    return sum / rows;
}

static void on_hook(void *ctx, const G3HookEvent *ev) {
    Stats *st = ctx;
    const float *d = ev->data;
    if (ev->site == G3_HOOK_EMBED) st->embed += mean_row_norm(d, ev->rows, ev->cols) * ev->rows / st->T;
    else if (ev->site == G3_HOOK_RESID_POST) st->resid[ev->layer] += mean_row_norm(d, ev->rows, ev->cols) * ev->rows / st->T;
    else if (ev->site == G3_HOOK_PATTERN) {
        for (int r = 0; r < ev->rows; r++) {
            double h = 0;
            for (int j = 0; j < ev->cols; j++) {
                double p = d[(long)r * ev->cols + j];
                if (p > 0) h -= p * log(p);
            }
            st->attn[ev->layer] += h;
            st->attn_n[ev->layer] += 1;
        }
    }
}

int cmd_forward(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *ids_s = NULL, *save = NULL;
    long threads = 0;
    int exact = 0, stats = 0;
    CliList images = {{0}};
    int pan_scan = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder, or a .gguf file" CLI_MODEL_HELP},
        {"--ids", OPT_STR, &ids_s, "token ids, comma-separated (start with 2, <bos>)"},
        CLI_IMAGE_OPT(images),
        CLI_PAN_SCAN_OPT(pan_scan),
        {"--save", OPT_STR, &save, "write logits [T, V] F32 to this .safetensors file"},
        {"--stats", OPT_FLAG, &stats, "print per-layer residual norms and attention entropy"},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("forward", "--model DIR [--adapter PEFT_DIR] --ids 2,17,300 [--image FILE] [--save out.safetensors] [--stats]", argc, argv, opts);
    if (!ids_s) return cli_fail("forward", "--ids is required (see --help)");
    if (cli_model_or_default("forward", &dir)) return 1;
    cli_set_threads(threads);
    int32_t *ids;
    int T = cli_parse_ids(ids_s, &ids);
    if (T < 0) return cli_fail("forward", "--ids: %s", g3_error());
    if (T == 0) return cli_fail("forward", "--ids: no ids given");
    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) { free(ids); return cli_fail("forward", "%s", g3_error()); }
    int rc = 1;
    CliImages ci;
    if (cli_images_load(&ci, &m, &images, exact, pan_scan, NULL)) { cli_fail("forward", "%s", g3_error()); cli_images_free(&ci); free(ids); cli_model_free(&m); return 1; }
    const int V = m.cfg.vocab, L = m.cfg.layers;
    float *logits = NULL;
    Stats st = {T, L, calloc((size_t)L, sizeof(double)), calloc((size_t)L, sizeof(double)), calloc((size_t)L, sizeof(double)), 0};
    if (T > m.cfg.max_pos) { cli_fail("forward", "%d ids exceed the model's context of %d positions", T, m.cfg.max_pos); goto out; }
    G3State *s = g3_state_new(&m, 1, T, cli_images_rows(&ci, T, G3_MIN(T, 512)), !exact, NULL);
    if (!s) { cli_fail("forward", "%s", g3_error()); goto out; }
    if (cli_images_attach(&ci, s, ids, T)) { cli_fail("forward", "%s", g3_error()); g3_state_free(s); goto out; }
    if (ci.n) fprintf(stderr, "forward: %d image%s through the vision tower in %.3f s\n", ci.n, ci.n == 1 ? "" : "s", ci.seconds);
    if (stats) g3_state_set_hook(s, on_hook, &st, 1u << G3_HOOK_EMBED | 1u << G3_HOOK_RESID_POST | 1u << G3_HOOK_PATTERN, ~0ull);
    logits = g3_malloc((size_t)T * V * sizeof(float));
    double t0 = g3_now();
    if (!logits || g3_prefill(s, 0, ids, T, logits)) { cli_fail("forward", "%s", g3_error()); g3_state_free(s); goto out; }
    double dt = g3_now() - t0;
    g3_state_free(s);
    if (stats) {
        printf("layer  kind     resid norm  attn entropy (nats, mean over heads and positions)\n");
        printf("embed           %10.3f\n", st.embed);
        for (int l = 0; l < L; l++)
            printf("%5d  %-7s  %10.3f  %8.3f\n", l, m.cfg.sliding[l] ? "sliding" : "global", st.resid[l], st.attn_n[l] ? st.attn[l] / st.attn_n[l] : 0);
    }
    fflush(stdout);
    int best = 0;
    for (int i = 1; i < V; i++) if (logits[(long)(T - 1) * V + i] > logits[(long)(T - 1) * V + best]) best = i;
    fprintf(stderr, "forward: %d tokens in %.3f s (%.1f tok/s); top next token %d (logit %.3f)\n", T, dt, T / dt, best, logits[(long)(T - 1) * V + best]);
    if (save) {
        STWriter w = {0};
        int64_t shape[2] = {T, V};
        if (st_writer_add(&w, "logits", G3_F32, 2, shape, logits) || st_writer_write(&w, save, NULL)) {
            st_writer_free(&w);
            cli_fail("forward", "%s", g3_error());
            goto out;
        }
        st_writer_free(&w);
        fprintf(stderr, "forward: wrote logits [%d, %d] to %s\n", T, V, save);
    }
    rc = 0;
out:
    free(ids); free(logits); free(st.resid); free(st.attn); free(st.attn_n);
    cli_images_free(&ci);
    cli_model_free(&m);
    return rc;
}
