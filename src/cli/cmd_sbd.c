// cmd_sbd.c: `gemma3 sbd`: the Set Block Decoding experiment (Gat et al. 2025) on one task of
// experiments/sbd_tasks.h. It writes the task's examples, trains a small Gemma 3 model twice
// with the same data, steps and batch (`gemma3 train`, --objective lm and --objective sbd: the
// SBD steps cost about twice the compute, their rows being doubled), then decodes held-out
// prompts: the NTP model and the SBD model by ordinary next-token decoding (one forward pass a
// token), and the SBD model by set block decoding at each gamma. It reports the next-token
// validation loss of both, exact-match accuracy, forward passes (NFE) per generated token and
// decoding wall time, into DIR/results.json and, with --html, DIR/results.html (accuracy
// against NFE per token). Running it again in the same DIR resumes the training runs.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "experiments/sbd_tasks.h"
#include "gen/generate.h"
#include "gen/sbd.h"
#include "model/forward.h"

#define CMD "sbd"

typedef struct {
    const char *task, *out, *gammas;
    long steps, batch, layers, width, window, train_n, test_n, seed, threads, block, finetune;
    double lr;
    int html;
} Args;

typedef struct {
    const char *name;  // "ntp model", "sbd model, next-token", "sbd model, gamma 0.35"
    double gamma;      // < 0: next-token decoding
    double accuracy, nfe_per_token, seconds, tokens;
} Row;

// The last "val_loss" of a run's metrics.jsonl, or NAN.
static double last_val_loss(const char *run) {
    char path[4200];
    if (g3_path_join(path, sizeof path, run, "metrics.jsonl")) return NAN;
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return NAN;
    double v = NAN;
    for (char *p = text; (p = strstr(p, "\"val_loss\": ")); p++) v = strtod(p + 12, NULL);
    free(text);
    return v;
}

static int write_examples(const char *path, G3SbdTask t, uint64_t seed, long n) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return g3_errorf("out of memory");
    G3Rng r;
    g3_rng_seed(&r, seed);
    int32_t pr[G3_SBD_TASK_SEQ + 1], an[G3_SBD_TASK_SEQ + 1];
    for (long i = 0; i < n; i++) {
        int np, na;
        g3_sbd_task_example(t, &r, pr, &np, an, &na);
        fputs("{\"prompt\": [", f);
        for (int j = 0; j < np; j++) fprintf(f, "%s%d", j ? ", " : "", pr[j]);
        fputs("], \"completion\": [", f);
        for (int j = 0; j < na; j++) fprintf(f, "%s%d", j ? ", " : "", an[j]);
        fputs("]}\n", f);
    }
    fclose(f);
    int rc = g3_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

// One training run through `gemma3 train` (resumes what DIR/run holds): from scratch (from NULL)
// or fine-tuning DIR/from, for nsteps.
static int train(const Args *a, const char *dir, const char *run, const char *objective, const char *from, long nsteps) {
    char cfg[4200], data[4200], val[4200], out[4200], steps[32], batch[32], lr[32], seed[32], threads[32], warm[32];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(data, sizeof data, "%s/train.jsonl", dir);
    snprintf(val, sizeof val, "%s/val.jsonl", dir);
    snprintf(out, sizeof out, "%s/%s", dir, run);
    snprintf(steps, sizeof steps, "%ld", nsteps);
    snprintf(batch, sizeof batch, "%ld", a->batch);
    snprintf(lr, sizeof lr, "%g", a->lr);
    snprintf(seed, sizeof seed, "%ld", a->seed);
    snprintf(threads, sizeof threads, "%ld", a->threads);
    snprintf(warm, sizeof warm, "%ld", G3_MAX(1, nsteps / 20));
    if (from) snprintf(cfg, sizeof cfg, "%s/%s", dir, from);
    char seq[32];
    snprintf(seq, sizeof seq, "%d", G3_SBD_TASK_SEQ);
    char *argv[] = {"train", from ? "--model" : "--init", cfg, "--data", data, "--val", val, "--out", out, "--objective", (char *)objective, "--steps", steps,
                    "--batch", batch, "--seq", seq, "--lr", lr, "--warmup", warm, "--wd", "0.01", "--eval-every", steps,
                    "--eval-batches", "4", "--seed", seed, "--threads", threads, "--save-every", "0", "--log-every", "100", NULL};
    fprintf(stderr, "sbd: training %s (--objective %s)\n", out, objective);
    return cmd_train((int)(sizeof argv / sizeof *argv) - 1, argv) ? g3_errorf("training %s failed (its message is above)", out) : 0;
}

// Decodes the test prompts with m: next-token (gamma < 0) or set block decoding.
static int evaluate(const G3Model *m, const Args *a, G3SbdTask t, double gamma, Row *row) {
    G3Rng r;
    g3_rng_seed(&r, (uint64_t)a->seed * 7919 + 104729);  // the test prompts: a seed of their own
    int32_t pr[G3_SBD_TASK_SEQ + 1], an[G3_SBD_TASK_SEQ + 1];
    const int32_t eos = 1;
    long right = 0;
    double nfe = 0, toks = 0, secs = 0;
    // one state for all prompts (rows enough for set block decoding's clean rows + block)
    G3State *s = g3_state_new(m, 1, G3_SBD_TASK_SEQ + 2, G3_SBD_TASK_SEQ + 2 + (int)a->block, 0, NULL);
    if (!s) return -1;
    for (long i = 0; i < a->test_n; i++) {
        int np, na;
        g3_sbd_task_example(t, &r, pr, &np, an, &na);
        const int maxn = G3_SBD_TASK_MAXANS;
        int32_t *ids = NULL;
        int n = 0, stopped = 0;
        if (gamma < 0) {  // one forward pass a token (the prefill gives the first)
            g3_state_reset(s, 0);
            G3GenOptions o = {.max_tokens = maxn, .stop_ids = &eos, .nstop = 1};
            G3GenResult res;
            const int32_t *p = pr;
            const double t0 = g3_now();
            if (g3_generate(s, &p, &np, 1, &o, &res)) { g3_state_free(s); return -1; }
            secs += g3_now() - t0;
            ids = res.ids;
            n = res.new_tokens;
            stopped = res.stop == G3_STOP_EOS;
            nfe += n + stopped;
        } else {
            G3SbdOptions o = {.block = (int)a->block, .gamma = gamma, .mask_id = 4, .max_tokens = maxn, .stop_ids = &eos, .nstop = 1,
                              .state = s};
            G3SbdResult res;
            if (g3_sbd_generate(m, pr, np, &o, &res)) { g3_state_free(s); return -1; }
            secs += res.seconds;
            ids = res.ids;
            n = res.n;
            stopped = res.stopped;
            nfe += res.nfe;
        }
        toks += n + stopped;
        right += stopped && n == na - 1 && !memcmp(ids, an, sizeof *ids * (size_t)n);
        free(ids);
    }
    g3_state_free(s);
    row->gamma = gamma;
    row->accuracy = (double)right / (double)a->test_n;
    row->nfe_per_token = toks > 0 ? nfe / toks : 0;
    row->seconds = secs;
    row->tokens = toks;
    return 0;
}

static void write_html(FILE *f, const char *task, const Row *rows, int nr, double vl_ntp, double vl_sbd) {
    fprintf(f, "<!doctype html><meta charset=utf-8><title>gemma3 sbd: %s</title>\n<style>body{font:14px sans-serif;margin:2em;max-width:60em}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>\n", task);
    fprintf(f, "<h1>Set Block Decoding: task %s</h1>\n<p>Next-token validation loss: NTP model %.4f, SBD model %.4f (nats/token). "
               "Exact-match accuracy against forward passes per generated token (lower is faster); the paper (Gat et al. 2025) reports "
               "3-5x fewer passes at equal accuracy.</p>\n", task, vl_ntp, vl_sbd);
    const int W = 560, H = 360, X0 = 60, Y0 = 20, PW = W - 80, PH = H - 70;
    double xmax = 1.05;
    for (int i = 0; i < nr; i++) xmax = fmax(xmax, rows[i].nfe_per_token * 1.05);
    fprintf(f, "<svg width=%d height=%d style='border:1px solid #ddd'>\n", W, H);
    for (int k = 0; k <= 4; k++) {
        double y = Y0 + PH - PH * k / 4.0;
        fprintf(f, "<line x1=%d x2=%d y1=%.1f y2=%.1f stroke=#eee /><text x=%d y=%.1f font-size=11 text-anchor=end>%.2f</text>\n", X0, X0 + PW, y, y,
                X0 - 5, y + 4, k / 4.0);
        double x = X0 + PW * k / 4.0;
        fprintf(f, "<text x=%.1f y=%d font-size=11 text-anchor=middle>%.2f</text>\n", x, Y0 + PH + 15, xmax * k / 4.0);
    }
    fprintf(f, "<text x=%d y=%d font-size=12 text-anchor=middle>forward passes per generated token</text>\n", X0 + PW / 2, H - 15);
    fprintf(f, "<text x=15 y=%d font-size=12 transform='rotate(-90 15 %d)' text-anchor=middle>exact-match accuracy</text>\n", Y0 + PH / 2,
            Y0 + PH / 2);
    fprintf(f, "<polyline fill=none stroke=#36c stroke-width=1.5 points='");
    for (int i = 0; i < nr; i++)
        if (rows[i].gamma >= 0) fprintf(f, "%.1f,%.1f ", X0 + PW * rows[i].nfe_per_token / xmax, Y0 + PH - PH * rows[i].accuracy);
    fprintf(f, "'/>\n");
    for (int i = 0; i < nr; i++) {
        const double x = X0 + PW * rows[i].nfe_per_token / xmax, y = Y0 + PH - PH * rows[i].accuracy;
        const char *col = rows[i].gamma >= 0 ? "#36c" : i == 0 ? "#c33" : "#e90";
        fprintf(f, "<circle cx=%.1f cy=%.1f r=4 fill=%s><title>%s: accuracy %.3f, %.3f passes/token</title></circle>\n", x, y, col, rows[i].name,
                rows[i].accuracy, rows[i].nfe_per_token);
        if (rows[i].gamma >= 0) fprintf(f, "<text x=%.1f y=%.1f font-size=10>%g</text>\n", x + 5, y - 5, rows[i].gamma);
    }
    fprintf(f, "</svg>\n<p><span style=color:#c33>&#9679;</span> NTP model &nbsp; <span style=color:#e90>&#9679;</span> SBD model, next-token "
               "decoding &nbsp; <span style=color:#36c>&#9679;</span> SBD model, set block decoding (labels: gamma)</p>\n");
    fprintf(f, "<table><tr><th>decoding<th>accuracy<th>passes / token<th>tokens<th>seconds<th>speed-up (wall)</tr>\n");
    for (int i = 0; i < nr; i++)
        fprintf(f, "<tr><td style=text-align:left>%s<td>%.3f<td>%.3f<td>%.0f<td>%.3f<td>%.2fx</tr>\n", rows[i].name, rows[i].accuracy,
                rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds,
                rows[i].seconds > 0 ? (rows[1].seconds / rows[1].tokens) / (rows[i].seconds / rows[i].tokens) : 0.0);
    fprintf(f, "</table><p>Speed-up: time per token of the SBD model's own next-token decoding over this row's (one thread).</p>\n");
}

int cmd_sbd(int argc, char **argv) {
    Args a = {.task = "copy", .gammas = "0,0.01,0.1,0.2,0.35,0.6,0.8,1.5", .steps = 600, .batch = 32, .layers = 2, .width = 64, .window = 16,
              .train_n = 20000, .test_n = 200, .seed = 1, .threads = 1, .block = 16, .lr = 2e-3};
    CliOpt opts[] = {
        {"--task", OPT_STR, &a.task, "copy, reverse, add or random (experiments/sbd_tasks.h)"},
        {"--out", OPT_STR, &a.out, "folder: data, both training runs (resumed when run again), results.json"},
        {"--steps", OPT_INT, &a.steps, "optimizer steps of each training run", 1, 1L << 30},
        {"--batch", OPT_INT, &a.batch, "examples a step", 1, 1 << 16},
        {"--layers", OPT_INT, &a.layers, "decoder layers of the model", 1, 64},
        {"--width", OPT_INT, &a.width, "hidden size (heads of 16 dims, one KV head, MLP 4x)", 16, 4096},
        {"--window", OPT_INT, &a.window, "sliding window of the local layers (every other layer; the rest are global)", 1, 4096},
        {"--lr", OPT_FLOAT, &a.lr, "peak learning rate (cosine)"},
        {"--train-examples", OPT_INT, &a.train_n, "training examples written", 10, 1L << 30},
        {"--test", OPT_INT, &a.test_n, "held-out prompts decoded", 1, 1 << 24},
        {"--block", OPT_INT, &a.block, "set block decoding's block size", 1, 64},
        {"--gammas", OPT_STR, &a.gammas, "entropy bounds, comma-separated"},
        {"--seed", OPT_INT, &a.seed, "seed of data, initialisation and order"},
        {"--finetune", OPT_INT, &a.finetune, "0: both models from scratch for --steps; N: the paper's protocol: the NTP model (--steps) fine-tuned N more steps once with --objective lm and once with --objective sbd, those two compared", 0, 1L << 30},
        {"--threads", OPT_INT, &a.threads, "threads (1: the machine is shared)", 0, 1024},
        {"--html", OPT_FLAG, &a.html, "also write DIR/results.html (accuracy against passes per token)"},
    };
    CLI_PARSE(CMD, "--task copy|reverse|add|random --out DIR [options]", argc, argv, opts);
    if (!a.out) return cli_fail(CMD, "--out DIR is required (see --help)");
    const int t = g3_sbd_task_parse(a.task);
    if (t < 0) return cli_fail(CMD, "--task must be copy, reverse, add or random, not '%s'", a.task);
    double gam[32];
    int ng = 0;
    for (const char *p = a.gammas; *p && ng < 32;) {
        char *e;
        gam[ng] = strtod(p, &e);
        if (e == p || !(gam[ng] >= 0)) return cli_fail(CMD, "--gammas: '%s' is not a list of numbers >= 0", a.gammas);
        ng++;
        p = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') return cli_fail(CMD, "--gammas: '%s' is not a list of numbers >= 0", a.gammas);
    }
    cli_set_threads(a.threads);
    char path[4200], run[4200];
    if (g3_mkdir_p(a.out)) return cli_fail(CMD, "%s", g3_error());
    // the data and the model's shape, written once (a resumed experiment finds them)
    snprintf(path, sizeof path, "%s/config.json", a.out);
    if (!g3_file_exists(path)) {
        char cfg[1024];
        int n = snprintf(cfg, sizeof cfg,
                         "{\"model_type\": \"gemma3_text\", \"vocab_size\": %d, \"hidden_size\": %ld, \"intermediate_size\": %ld, "
                         "\"num_hidden_layers\": %ld, \"num_attention_heads\": %ld, \"num_key_value_heads\": 1, \"head_dim\": 16, "
                         "\"sliding_window\": %ld, \"sliding_window_pattern\": 2, \"max_position_embeddings\": 128, "
                         "\"query_pre_attn_scalar\": 16, \"bos_token_id\": 2, \"eos_token_id\": 1, \"pad_token_id\": 0}\n",
                         G3_SBD_TASK_VOCAB, a.width, 4 * a.width, a.layers, G3_MAX(1, a.width / 16), a.window);
        if (g3_write_file_atomic(path, cfg, (size_t)n)) return cli_fail(CMD, "%s", g3_error());
        snprintf(path, sizeof path, "%s/train.jsonl", a.out);
        if (write_examples(path, (G3SbdTask)t, (uint64_t)a.seed, a.train_n)) return cli_fail(CMD, "%s", g3_error());
        snprintf(path, sizeof path, "%s/val.jsonl", a.out);
        if (write_examples(path, (G3SbdTask)t, (uint64_t)a.seed + 1000003, 128)) return cli_fail(CMD, "%s", g3_error());
    }
    // the two models compared: from scratch, or both fine-tuned from the NTP model
    const char *ntp = a.finetune ? "ntp-ft" : "ntp", *sbdr = a.finetune ? "sbd-ft" : "sbd";
    if (train(&a, a.out, "ntp", "lm", NULL, a.steps)) return cli_fail(CMD, "%s", g3_error());
    if (a.finetune && (train(&a, a.out, ntp, "lm", "ntp", a.finetune) || train(&a, a.out, sbdr, "sbd", "ntp", a.finetune)))
        return cli_fail(CMD, "%s", g3_error());
    if (!a.finetune && train(&a, a.out, sbdr, "sbd", NULL, a.steps)) return cli_fail(CMD, "%s", g3_error());
    // decoding
    Row rows[34];
    int nr = 0;
    G3Model mn, ms;
    snprintf(run, sizeof run, "%s/%s", a.out, ntp);
    if (g3_model_load(&mn, run)) return cli_fail(CMD, "%s", g3_error());
    snprintf(run, sizeof run, "%s/%s", a.out, sbdr);
    if (g3_model_load(&ms, run)) { g3_model_free(&mn); return cli_fail(CMD, "%s", g3_error()); }
    int rc = 1;
    char names[34][64];
    rows[nr].name = "NTP model, next-token";
    if (evaluate(&mn, &a, (G3SbdTask)t, -1, &rows[nr++])) goto out;
    rows[nr].name = "SBD model, next-token";
    if (evaluate(&ms, &a, (G3SbdTask)t, -1, &rows[nr++])) goto out;
    for (int i = 0; i < ng; i++) {
        snprintf(names[nr], sizeof names[nr], "SBD model, block %ld, gamma %g", a.block, gam[i]);
        rows[nr].name = names[nr];
        if (evaluate(&ms, &a, (G3SbdTask)t, gam[i], &rows[nr++])) goto out;
    }
    for (int i = 0; i < nr; i++)
        fprintf(stderr, "sbd: %-36s accuracy %.3f  passes/token %.3f  %.0f tokens in %.3f s\n", rows[i].name, rows[i].accuracy,
                rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds);
    snprintf(run, sizeof run, "%s/%s", a.out, ntp);
    const double vl_ntp = last_val_loss(run);
    snprintf(run, sizeof run, "%s/%s", a.out, sbdr);
    const double vl_sbd = last_val_loss(run);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) goto out;
    fprintf(f, "{\"task\": \"%s\", \"steps\": %ld, \"batch\": %ld, \"layers\": %ld, \"width\": %ld, \"window\": %ld, \"block\": %ld, \"seed\": %ld, "
               "\"finetune\": %ld, \"test_prompts\": %ld, \"threads\": %ld,\n \"val_loss_ntp\": %.6f, \"val_loss_sbd\": %.6f,\n \"rows\": [",
            a.task, a.steps, a.batch, a.layers, a.width, a.window, a.block, a.seed, a.finetune, a.test_n, a.threads, vl_ntp, vl_sbd);
    for (int i = 0; i < nr; i++) {
        char g[32] = "null";  // next-token decoding
        if (rows[i].gamma >= 0) snprintf(g, sizeof g, "%.6g", rows[i].gamma);
        fprintf(f, "%s\n  {\"decoding\": \"%s\", \"gamma\": %s, \"accuracy\": %.6f, \"nfe_per_token\": %.6f, \"tokens\": %.0f, \"seconds\": %.6f}",
                i ? "," : "", rows[i].name, g, rows[i].accuracy, rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds);
    }
    fputs("\n]}\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/results.json", a.out);
    if (g3_write_file_atomic(path, buf, len)) { free(buf); goto out; }
    free(buf);
    if (a.html) {
        buf = NULL;
        len = 0;
        if (!(f = open_memstream(&buf, &len))) goto out;
        write_html(f, a.task, rows, nr, vl_ntp, vl_sbd);
        fclose(f);
        snprintf(path, sizeof path, "%s/results.html", a.out);
        if (g3_write_file_atomic(path, buf, len)) { free(buf); goto out; }
        free(buf);
    }
    fprintf(stderr, "sbd: next-token validation loss: NTP %.4f, SBD %.4f; results in %s/results.json%s\n", vl_ntp, vl_sbd, a.out,
            a.html ? " and results.html" : "");
    rc = 0;
out:
    if (rc) cli_fail(CMD, "%s", g3_error());
    g3_model_free(&mn);
    g3_model_free(&ms);
    return rc;
}
