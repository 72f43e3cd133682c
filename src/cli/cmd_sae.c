// cmd_sae.c: `gemma3 sae`: a sparse autoencoder on one hook site of a prompt: the top features
// of every token, the reconstruction's MSE and L0, the change in loss when the reconstruction
// replaces the activation (the "spliced-in" evaluation), --save of the features and the
// reconstruction, and --steer FEATURE:SCALE (the feature's decoder row added at the site)
// during greedy generation. `gemma3 sae train`: trains one on activations streamed from the
// model (analysis/sae_train.c) and saves it in Gemma Scope 2's layout.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/intervene.h"
#include "analysis/sae.h"
#include "analysis/sae_report.h"
#include "base/base.h"
#include "base/rng.h"
#include "cli_gen.h"
#include "io/safetensors.h"
#include "model/forward.h"

#define CMD "sae"

// The hook of both commands: copies the site's rows out by position (CAPTURE), or writes the
// given rows over them (SPLICE).
typedef struct {
    G3HookSite site;
    int layer, D, T;  // rows of x: positions 0..T-1 (train: appended in arrival order)
    enum { CAPTURE, SPLICE, APPEND } mode;
    float *x;         // [T][D]
    int n;            // APPEND: rows stored so far (at most T)
    int skip0;        // APPEND: leave out position 0 (<bos>: an outlier every sequence shares)
} SiteHook;

static void site_hook(void *ctx, const G3HookEvent *ev) {
    SiteHook *h = ctx;
    if (ev->site != h->site || ev->layer != h->layer) return;
    for (int i = 0; i < ev->rows; i++) {
        int p = ev->pos0 + i;
        float *row = ev->data + (size_t)i * ev->cols;
        if (h->mode == APPEND) {
            if ((h->skip0 && p == 0) || h->n >= h->T) continue;
            memcpy(h->x + (size_t)h->n++ * h->D, row, (size_t)h->D * sizeof(float));
            continue;
        }
        if (p < 0 || p >= h->T) continue;
        if (h->mode == CAPTURE) memcpy(h->x + (size_t)p * h->D, row, (size_t)h->D * sizeof(float));
        else memcpy(row, h->x + (size_t)p * h->D, (size_t)h->D * sizeof(float));
    }
}

static void attach(G3State *s, SiteHook *h) {
    g3_state_set_hook(s, site_hook, h, 1u << h->site, h->layer < 0 ? 1 : h->layer < 64 ? 1ull << h->layer : ~0ull);
}

// Runs ids through a fresh state with the hook; logits [T][V] (may be NULL).
static int run_pass(const G3Model *m, const int32_t *ids, int T, int fast, SiteHook *h, float *logits) {
    G3State *s = g3_state_new(m, 1, T, G3_MIN(T, 512), fast, NULL);
    if (!s) return -1;
    if (h) attach(s, h);
    int rc = g3_prefill(s, 0, ids, T, logits);
    g3_state_free(s);
    return rc;
}

static void print_token(const G3Tokenizer *tok, int id) {
    const char *p = tok ? g3_tok_piece(tok, id) : NULL;
    if (!p) { printf("%6d", id); return; }
    printf("%6d \"", id);
    for (const char *c = p; *c; c++) {
        if (*c == '\n') printf("\\n");
        else if (*c == '"') printf("\\\"");
        else putchar(*c);
    }
    printf("\"");
}

static int steer_parse(const char *s, int S, int *feat, double *scale) {
    char *end;
    long f = strtol(s, &end, 10);
    if (end == s || *end != ':' || f < 0 || f >= S) return g3_errorf("--steer '%s': expected FEATURE:SCALE with FEATURE in [0, %d)", s, S);
    const char *v = end + 1;
    double x = strtod(v, &end);
    if (end == v || *end || !isfinite(x)) return g3_errorf("--steer '%s': SCALE is not a finite number", s);
    *feat = (int)f;
    *scale = x;
    return 0;
}

static int write_save(const char *path, const float *F, const float *R, int T, int S, int D) {
    STWriter w = {0};
    int64_t sf[2] = {T, S}, sr[2] = {T, D};
    int rc = st_writer_add(&w, "features", G3_F32, 2, sf, F) || st_writer_add(&w, "reconstruction", G3_F32, 2, sr, R) ||
             st_writer_write(&w, path, NULL);
    st_writer_free(&w);
    return rc ? -1 : 0;
}

static int cmd_sae_train(int argc, char **argv);

int cmd_sae(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "train")) return cmd_sae_train(argc - 1, argv + 1);
    const char *dir = NULL, *sae_dir = NULL, *site_name = NULL, *text = NULL, *ids_s = NULL, *save = NULL, *tok_path = NULL, *adapter_dir = NULL;
    const char *html = NULL;
    long top = 5, gen = -1, threads = 0;
    int exact = 0;
    CliList steer = {0};
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder (or .gguf)" CLI_MODEL_HELP},
        {"--sae", OPT_STR, &sae_dir, "SAE folder: params.safetensors + config.json (Gemma Scope 2), params.npz (Gemma Scope 1) or sae_weights.safetensors + cfg.json (SAELens)"},
        {"--site", OPT_STR, &site_name, "hook site the SAE reads (default: the one its config names), e.g. blocks.12.hook_resid_post"},
        {"--prompt", OPT_STR, &text, "prompt text (tokenized with <bos>)"},
        {"--ids", OPT_STR, &ids_s, "prompt as token ids, comma-separated"},
        {"--save", OPT_STR, &save, "write features [T, d_sae] and reconstruction [T, d_model] (F32) to this .safetensors"},
        {"--top", OPT_INT, &top, "features shown per token", 0, 1000},
        {"--html", OPT_STR, &html, "also write an offline page: the tokens coloured by a chosen feature, each token's top features (at least 10), the reconstruction figures"},
        {"--steer", OPT_LIST, &steer, "FEATURE:SCALE: add SCALE x the feature's decoder row at the site while generating (repeatable)"},
        {"--generate", OPT_INT, &gen, "greedy tokens to generate, clean and steered (default 20 with --steer, else 0)", 0, 1 << 20},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE(CMD, "--model DIR --sae SAE_DIR --site SITE (--prompt TEXT | --ids 2,17,...) [--save out.safetensors] [--steer F:S]\n"
                   "       gemma3 sae train --model DIR --site SITE (--data FILE | --ids ... | --random) --width 4096 --l0 32 --out DIR  (see sae train --help)",
              argc, argv, opts);
    if (!sae_dir) return cli_fail(CMD, "--sae is required (see --help)");
    if (cli_model_or_default(CMD, &dir)) return 1;
    if (!!text + !!ids_s != 1) return cli_fail(CMD, "give exactly one of --prompt and --ids");
    cli_set_threads(threads);
    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) return cli_fail(CMD, "%s", g3_error());
    const G3Config *c = &m.cfg;
    int rc = 1, T = 0;
    G3Sae sae = {0};
    G3Tokenizer *tok = NULL;
    int32_t *ids = NULL, *gen_clean = NULL, *gen_steer = NULL;
    float *X = NULL, *F = NULL, *R = NULL, *logits = NULL;
    G3Intervention iv;
    g3_iv_init(&iv, &m);
    if (g3_sae_load(&sae, sae_dir)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    if (!site_name) {
        if (!sae.site[0]) { cli_fail(CMD, "--site is required: the SAE's config names no site"); goto out; }
        site_name = sae.site;
    } else if (sae.site[0] && strcmp(sae.site, site_name))
        fprintf(stderr, "gemma3 sae: note: the SAE's config names site %s; reading %s as asked\n", sae.site, site_name);
    if (g3_sae_check_site(&sae, c, site_name)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    G3HookSite site;
    int layer;
    g3_hook_parse(site_name, &site, &layer);
    // the prompt
    tok = cli_load_tokenizer(tok_path, dir, &m);
    if (!tok && (text || tok_path)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    g3_error_clear();
    T = ids_s ? cli_parse_ids(ids_s, &ids) : g3_tok_encode(tok, text, strlen(text), 1, 0, &ids);
    if (T < 0) { cli_fail(CMD, "%s", g3_error()); goto out; }
    if (T == 0) { cli_fail(CMD, "the prompt has no tokens"); goto out; }
    if (T > c->max_pos) { cli_fail(CMD, "%d tokens exceed the model's context of %d", T, c->max_pos); goto out; }
    for (int i = 0; i < T; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab) { cli_fail(CMD, "token id %d is outside the vocabulary [0, %d)", ids[i], c->vocab); goto out; }
    const int D = sae.d_model, S = sae.d_sae, V = c->vocab;
    // --steer is checked before any pass runs
    if (gen < 0) gen = steer.n ? 20 : 0;
    if (steer.n && gen == 0) { cli_fail(CMD, "--steer acts during generation: give --generate N > 0"); goto out; }
    if (T + gen > c->max_pos) { cli_fail(CMD, "%d + %ld tokens exceed the model's context of %d", T, gen, c->max_pos); goto out; }
    for (int i = 0; i < steer.n; i++) {
        int f = 0;
        double scale = 0;
        if (steer_parse(steer.v[i], S, &f, &scale) || g3_iv_add(&iv, site, layer, sae.w_dec + (size_t)f * D, D, (float)scale)) {
            cli_fail(CMD, "%s", g3_error());
            goto out;
        }
    }
    X = g3_malloc((size_t)T * D * sizeof *X);
    R = g3_malloc((size_t)T * D * sizeof *R);
    F = g3_malloc((size_t)T * S * sizeof *F);
    logits = g3_malloc((size_t)T * V * sizeof *logits);
    if (!X || !R || !F || !logits) { cli_fail(CMD, "%s", g3_error()); goto out; }
    // clean pass: the site's rows and the loss
    SiteHook h = {site, layer, D, T, CAPTURE, X, 0, 0};
    if (run_pass(&m, ids, T, !exact, &h, logits)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    double loss_clean = g3_loss_logits(logits, ids, T, V);
    if (g3_sae_encode(&sae, X, T, F)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    g3_sae_decode(&sae, F, T, R);
    double se = 0, var = 0, l0 = g3_sae_l0(F, T, S);
    for (int d = 0; d < D; d++) {
        double mean = 0;
        for (int t = 0; t < T; t++) mean += X[(size_t)t * D + d] / T;
        for (int t = 0; t < T; t++) {
            double e = (double)X[(size_t)t * D + d] - R[(size_t)t * D + d], u = X[(size_t)t * D + d] - mean;
            se += e * e;
            var += u * u;
        }
    }
    // spliced pass: the reconstruction in place of the activation
    SiteHook hs = {site, layer, D, T, SPLICE, R, 0, 0};
    if (run_pass(&m, ids, T, !exact, &hs, logits)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    double loss_spliced = g3_loss_logits(logits, ids, T, V);
    // report
    printf("sae %s (%s, %s, d_model %d, width %d) on %s, %d tokens\n", sae_dir, sae.format,
           sae.kind == G3_SAE_JUMPRELU ? "JumpReLU" : sae.kind == G3_SAE_TOPK ? "TopK" : "ReLU", D, S, site_name, T);
    if (top > 0) {
        int32_t *best = g3_malloc((size_t)top * sizeof *best);
        if (!best) { cli_fail(CMD, "%s", g3_error()); goto out; }
        for (int t = 0; t < T; t++) {
            printf("%4d ", t);
            print_token(tok, ids[t]);
            const float *fr = F + (size_t)t * S;
            int nb = 0;
            for (int j = 0; j < S; j++) {  // insertion into the top list: value desc, index asc
                if (fr[j] <= 0) continue;
                int k = nb < top ? nb++ : (int)top;
                if (k == top && fr[j] <= fr[best[top - 1]]) continue;
                if (k == top) k = (int)top - 1;
                while (k > 0 && fr[best[k - 1]] < fr[j]) { best[k] = best[k - 1]; k--; }
                best[k] = j;
            }
            printf("  L0 %4.0f:", g3_sae_l0(fr, 1, S));
            for (int k = 0; k < nb; k++) printf(" %d=%.3g", best[k], fr[best[k]]);
            printf("\n");
        }
        free(best);
    }
    printf("reconstruction: MSE %.6g, relative MSE (FVU) %.4g, L0 %.2f\n", se / ((double)T * D), var > 0 ? se / var : 0.0, l0);
    if (T > 1) printf("loss: clean %.5f, spliced-in %.5f, change %+.5f nats\n", loss_clean, loss_spliced, loss_spliced - loss_clean);
    else printf("loss: needs at least 2 tokens\n");
    if (save && write_save(save, F, R, T, S, D)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    if (html) {
        const G3SaeReport rep = {dir, sae_dir, site_name, sae.format,
                                 sae.kind == G3_SAE_JUMPRELU ? "JumpReLU" : sae.kind == G3_SAE_TOPK ? "TopK" : "ReLU", D, S, T, ids, tok, F,
                                 top > 10 ? (int)top : 10, se / ((double)T * D), var > 0 ? se / var : 0.0, l0,
                                 T > 1 ? loss_clean : NAN, T > 1 ? loss_spliced : NAN};
        if (g3_sae_write_html(html, &rep)) { cli_fail(CMD, "%s", g3_error()); goto out; }
        fprintf(stderr, "gemma3 sae: wrote the report to %s\n", html);
    }
    if (save) fprintf(stderr, "gemma3 sae: wrote features [%d, %d] and reconstruction [%d, %d] to %s\n", T, S, T, D, save);
    // steering
    if (gen > 0) {
        gen_clean = g3_malloc((size_t)gen * sizeof *gen_clean);
        gen_steer = g3_malloc((size_t)gen * sizeof *gen_steer);
        if (!gen_clean || !gen_steer || g3_iv_generate(gen_clean, &m, NULL, ids, T, (int)gen, !exact) ||
            (steer.n && g3_iv_generate(gen_steer, &m, &iv, ids, T, (int)gen, !exact))) {
            cli_fail(CMD, "%s", g3_error());
            goto out;
        }
        for (int k = 0; k < (steer.n ? 2 : 1); k++) {
            const int32_t *g = k ? gen_steer : gen_clean;
            printf("%s:", k ? "steered" : "clean  ");
            for (int i = 0; i < gen; i++) printf(" %d", g[i]);
            if (tok) {
                char *s = g3_tok_decode(tok, g, (int)gen, 1, NULL);
                if (s) printf("  \"%s\"", s);
                free(s);
            }
            printf("\n");
        }
    }
    rc = 0;
out:
    g3_iv_free(&iv);
    g3_sae_free(&sae);
    g3_tok_free(tok);
    free(ids); free(gen_clean); free(gen_steer);
    free(X); free(F); free(R); free(logits);
    cli_model_free(&m);
    return rc;
}

// ---- training ----

static int cmd_sae_train(int argc, char **argv) {
    const char *dir = NULL, *site_name = NULL, *data = NULL, *ids_s = NULL, *out_dir = NULL, *tok_path = NULL, *adapter_dir = NULL;
    long width = 4096, steps = 1000, batch = 1024, seq = 128, topk = 0, log_every = 100, seed = 1, threads = 0;
    double l0 = 32, lr = 5e-4, lambda = 1.0, bandwidth = 0.001, init_th = 0;
    int exact = 0, random_ids = 0;
    G3SaeTrainConfig dc = g3_sae_train_defaults();
    lr = dc.lr; lambda = dc.lambda; bandwidth = dc.bandwidth; init_th = dc.init_threshold;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder (or .gguf)" CLI_MODEL_HELP},
        {"--site", OPT_STR, &site_name, "hook site to train on, e.g. blocks.12.hook_resid_post"},
        {"--data", OPT_STR, &data, "text file to stream (tokenized, cut into --seq windows)"},
        {"--ids", OPT_STR, &ids_s, "token ids to stream instead (comma-separated, cycled)"},
        {"--random", OPT_FLAG, &random_ids, "stream uniformly random token ids (for random models and benchmarks)"},
        {"--out", OPT_STR, &out_dir, "folder to write params.safetensors + config.json (Gemma Scope 2's layout)"},
        {"--width", OPT_INT, &width, "features (d_sae)", 1, 1 << 24},
        {"--l0", OPT_FLOAT, &l0, "JumpReLU: target L0 of the quadratic penalty (0: plain L0 penalty)", 0, 0, 0, 1e6},
        {"--topk", OPT_INT, &topk, "train a TopK SAE keeping this many features instead of JumpReLU (0: JumpReLU)", 0, 1 << 24},
        {"--steps", OPT_INT, &steps, "optimizer steps", 1, 1L << 40},
        {"--batch", OPT_INT, &batch, "activation rows per step", 1, 1 << 24},
        {"--seq", OPT_INT, &seq, "tokens per forward window (position 0, <bos>, is left out)", 2, 1 << 20},
        {"--lr", OPT_FLOAT, &lr, "Adam learning rate", 0, 0, 1e-12, 10},
        {"--lambda", OPT_FLOAT, &lambda, "sparsity coefficient", 0, 0, 0, 1e9},
        {"--bandwidth", OPT_FLOAT, &bandwidth, "straight-through estimator's kernel width (normalized units)", 0, 0, 1e-9, 10},
        {"--init-threshold", OPT_FLOAT, &init_th, "initial JumpReLU threshold in normalized units (0: each feature's quantile on the first batch that fires it on l0/width of the rows; Gemma Scope uses 0.001)", 0, 0, 0, 100},
        {"--seed", OPT_INT, &seed, "initialization and --random seed"},
        {"--log-every", OPT_INT, &log_every, "print statistics every N steps", 1, 1L << 40},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("sae train", "--model DIR --site SITE (--data FILE | --ids 2,17,... | --random) --width 4096 --l0 32 [--topk K] --out DIR", argc, argv, opts);
    if (!site_name || !out_dir) return cli_fail("sae train", "--site and --out are required (see --help)");
    if (cli_model_or_default("sae train", &dir)) return 1;
    if (!!data + !!ids_s + random_ids != 1) return cli_fail("sae train", "give exactly one of --data, --ids and --random");
    if (topk > width) return cli_fail("sae train", "--topk %ld exceeds --width %ld", topk, width);
    cli_set_threads(threads);
    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) return cli_fail("sae train", "%s", g3_error());
    const G3Config *c = &m.cfg;
    int rc = 1, nstream = 0;
    int32_t *stream = NULL, *win = NULL;
    float *X = NULL;
    G3SaeTrainer *tr = NULL;
    G3Tokenizer *tok = NULL;
    G3State *s = NULL;
    int64_t *fired_prev = NULL;
    G3Sae sae = {0};
    G3HookSite site;
    int layer;
    if (g3_hook_parse(site_name, &site, &layer)) { cli_fail("sae train", "%s", g3_error()); goto out; }
    if (layer >= c->layers) { cli_fail("sae train", "site %s: the model has %d layers", site_name, c->layers); goto out; }
    const int D = g3_site_width(c, site);
    if (D == 0) { cli_fail("sae train", "site %s has no fixed width (attention scores/patterns)", site_name); goto out; }
    if (seq > c->max_pos) seq = c->max_pos;
    if (data) {
        if (!(tok = cli_load_tokenizer(tok_path, dir, &m))) { cli_fail("sae train", "%s", g3_error()); goto out; }
        size_t len;
        char *txt = g3_read_file(data, &len);
        if (!txt) { cli_fail("sae train", "%s", g3_error()); goto out; }
        nstream = g3_tok_encode(tok, txt, len, 0, 0, &stream);
        free(txt);
        if (nstream < 0) { cli_fail("sae train", "%s: %s", data, g3_error()); goto out; }
    } else if (ids_s) {
        if ((nstream = cli_parse_ids(ids_s, &stream)) < 0) { cli_fail("sae train", "--ids: %s", g3_error()); goto out; }
    }
    if (!random_ids && nstream < 1) { cli_fail("sae train", "no tokens to stream"); goto out; }
    for (int i = 0; i < nstream; i++)
        if (stream[i] < 0 || stream[i] >= c->vocab) { cli_fail("sae train", "token id %d is outside the vocabulary [0, %d)", stream[i], c->vocab); goto out; }
    G3SaeTrainConfig tc = dc;
    tc.kind = topk ? G3_SAE_TOPK : G3_SAE_JUMPRELU;
    tc.k = topk ? (int)topk : 0;
    tc.d_model = D;
    tc.d_sae = (int)width;
    tc.l0_target = l0;
    tc.lambda = lambda;
    tc.lr = lr;
    tc.bandwidth = bandwidth;
    tc.init_threshold = init_th;
    tc.seed = (uint64_t)seed;
    if (!(tr = g3_sae_trainer_new(&tc))) { cli_fail("sae train", "%s", g3_error()); goto out; }
    if (m.be && !m.be->host) {  // the model is on a GPU: the SAE trains there too (JumpReLU)
        if (g3_sae_trainer_use(tr, m.be)) fprintf(stderr, "sae train: %s; training on the CPU\n", g3_error());
        else fprintf(stderr, "sae train: training the SAE on %s\n", g3_backend_cuda_device(m.be));
    }
    X = g3_malloc((size_t)batch * D * sizeof *X);
    win = g3_malloc((size_t)seq * sizeof *win);
    fired_prev = g3_calloc((size_t)width, sizeof *fired_prev);
    if (!X || !win || !fired_prev || !(s = g3_state_new(&m, 1, (int)seq, (int)G3_MIN(seq, 512), !exact, NULL))) {
        cli_fail("sae train", "%s", g3_error());
        goto out;
    }
    SiteHook h = {site, layer, D, (int)batch, APPEND, X, 0, 1};
    attach(s, &h);
    G3Rng rng;
    g3_rng_seed(&rng, (uint64_t)seed ^ 0x5ae5ae);
    long cursor = 0;
    int64_t tokens = 0;
    int bos = tok && g3_tok_bos(tok) >= 0 ? g3_tok_bos(tok) : 2;
    double t0 = g3_now(), tlog = t0;
    fprintf(stderr, "sae train: %s on %s (width %ld, %s), %ld steps of %ld rows from %s windows of %ld tokens\n", dir, site_name, width,
            topk ? "TopK" : "JumpReLU", steps, batch, data ? "text" : ids_s ? "id" : "random", seq);
    for (long step = 1; step <= steps; step++) {
        h.n = 0;
        while (h.n < batch) {  // stream windows until the batch is full: <bos>, then seq - 1 tokens
            win[0] = bos;
            for (long i = 1; i < seq; i++) {
                if (random_ids) win[i] = (int32_t)g3_rng_below(&rng, (uint64_t)c->vocab);
                else { win[i] = stream[cursor]; cursor = (cursor + 1) % nstream; }
            }
            g3_state_reset(s, 0);
            if (g3_prefill(s, 0, win, (int)seq, NULL)) { cli_fail("sae train", "%s", g3_error()); goto out; }
            tokens += seq;
        }
        G3SaeStepStats st;
        if (g3_sae_train_step(tr, X, (int)batch, &st)) { cli_fail("sae train", "step %ld: %s", step, g3_error()); goto out; }
        if (step % log_every == 0 || step == steps) {
            int64_t rows;
            const int64_t *fired = g3_sae_trainer_fired(tr, &rows);
            if (!fired) { cli_fail("sae train", "%s", g3_error()); goto out; }
            int dead = 0, quiet = 0;
            for (long j = 0; j < width; j++) {
                dead += fired[j] == 0;
                quiet += fired[j] == fired_prev[j];
                fired_prev[j] = fired[j];
            }
            double now = g3_now();
            fprintf(stderr, "step %6ld  mse %.4g  fvu %.4f  L0 %7.2f  dead %d (%.1f%%)  silent since last log %d  %.0f tok/s\n", step, st.mse, st.fvu,
                    st.l0, dead, 100.0 * dead / width, quiet, (double)(step % log_every ? step % log_every : log_every) * batch / (now - tlog));
            tlog = now;
        }
    }
    int64_t rows;
    const int64_t *fired = g3_sae_trainer_fired(tr, &rows);
    if (!fired) { cli_fail("sae train", "%s", g3_error()); goto out; }
    int dead = 0;
    for (long j = 0; j < width; j++) dead += fired[j] == 0;
    if (g3_sae_trainer_export(tr, &sae)) { cli_fail("sae train", "%s", g3_error()); goto out; }
    snprintf(sae.site, sizeof sae.site, "%s", site_name);
    char extra[512];
    snprintf(extra, sizeof extra, "\"l0_target\": %g,\n  \"trained_rows\": %lld,\n  \"dead_features\": %d,\n  \"trainer\": \"gemma3 sae train\"",
             topk ? (double)topk : l0, (long long)rows, dead);
    if (g3_sae_save(&sae, out_dir, extra)) { cli_fail("sae train", "%s", g3_error()); goto out; }
    fprintf(stderr, "sae train: %lld rows (%lld tokens) in %.1f s; %d of %ld features never fired (%.1f%%); saved to %s\n", (long long)rows,
            (long long)tokens, g3_now() - t0, dead, width, 100.0 * dead / width, out_dir);
    rc = 0;
out:
    g3_state_free(s);
    g3_sae_trainer_free(tr);
    g3_sae_free(&sae);
    g3_tok_free(tok);
    free(stream); free(win); free(X); free(fired_prev);
    cli_model_free(&m);
    return rc;
}
