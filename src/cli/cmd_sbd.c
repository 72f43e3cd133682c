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
#include "tokenizer/tokenizer.h"

#define CMD "sbd"

typedef struct {
    const char *task, *out, *gammas, *data, *val, *tok, *config;
    long steps, batch, layers, width, window, train_n, test_n, seed, threads, block, finetune, seq, prompt_len, max_new;
    double lr;
    int html;
} Args;

typedef struct {
    const char *name;  // "ntp model", "sbd model, next-token", "sbd model, gamma 0.35"
    double gamma;      // < 0: next-token decoding
    double accuracy, nfe_per_token, seconds, tokens;
    double agreement;  // text: mean share of the reference continuation reproduced before the first difference
} Row;

// The prompts decoded and what each should produce: for a task, the answer and its <eos>; for
// text, the SBD model's own next-token greedy continuation (filled in by its first evaluation),
// with the stop token when one ended it.
typedef struct {
    int32_t *prompt, *want;
    int np, nwant;  // nwant < 0: not known yet
} Case;


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
    snprintf(data, sizeof data, "%s", a->data ? a->data : "");
    snprintf(val, sizeof val, "%s", a->val ? a->val : "");
    if (!a->data) snprintf(data, sizeof data, "%s/train.jsonl", dir), snprintf(val, sizeof val, "%s/val.jsonl", dir);
    snprintf(out, sizeof out, "%s/%s", dir, run);
    snprintf(steps, sizeof steps, "%ld", nsteps);
    snprintf(batch, sizeof batch, "%ld", a->batch);
    snprintf(lr, sizeof lr, "%g", a->lr);
    snprintf(seed, sizeof seed, "%ld", a->seed);
    snprintf(threads, sizeof threads, "%ld", a->threads);
    snprintf(warm, sizeof warm, "%ld", G3_MAX(1, nsteps / 20));
    if (from) snprintf(cfg, sizeof cfg, "%s/%s", dir, from);
    char seq[32];
    snprintf(seq, sizeof seq, "%ld", a->seq);
    char *argv[48] = {"train", from ? "--model" : "--init", cfg, "--data", data, "--out", out, "--objective", (char *)objective, "--steps", steps,
                      "--batch", batch, "--seq", seq, "--lr", lr, "--warmup", warm, "--wd", "0.01", "--eval-every", steps,
                      "--eval-batches", a->tok ? "16" : "4", "--seed", seed, "--threads", threads, "--save-every", "0", "--log-every", "100"};
    int argc = 0;
    while (argv[argc]) argc++;
    if (val[0]) argv[argc++] = "--val", argv[argc++] = val;
    if (a->tok && !from) argv[argc++] = "--tokenizer", argv[argc++] = (char *)a->tok;
    fprintf(stderr, "sbd: training %s (--objective %s)\n", out, objective);
    return cmd_train(argc, argv) ? g3_errorf("training %s failed (its message is above)", out) : 0;
}

// Decodes every case's prompt with m: next-token (gamma < 0) or set block decoding, at most
// maxn new tokens, stopping at eos. A case whose reference is not known yet takes this
// decoding's output as its reference (text: the SBD model's own greedy continuation).
static int evaluate(const G3Model *m, const Args *a, Case *cs, long nc, int maxn, int32_t eos, double gamma, Row *row) {
    long right = 0;
    double nfe = 0, toks = 0, secs = 0, agree = 0;
    int maxp = 0;
    for (long i = 0; i < nc; i++) maxp = G3_MAX(maxp, cs[i].np);
    // one state for all prompts (rows enough for set block decoding's clean rows + block)
    G3State *s = g3_state_new(m, 1, maxp + maxn + 2, maxp + maxn + 2 + (int)a->block, 0, NULL);
    if (!s) return -1;
    for (long i = 0; i < nc; i++) {
        Case *c = &cs[i];
        int32_t *ids = NULL;
        int n = 0, stopped = 0;
        if (gamma < 0) {  // one forward pass a token (the prefill gives the first)
            g3_state_reset(s, 0);
            G3GenOptions o = {.max_tokens = maxn, .stop_ids = &eos, .nstop = 1};
            G3GenResult res;
            const int32_t *p = c->prompt;
            const double t0 = g3_now();
            if (g3_generate(s, &p, &c->np, 1, &o, &res)) { g3_state_free(s); return -1; }
            secs += g3_now() - t0;
            ids = res.ids;
            n = res.new_tokens;
            stopped = res.stop == G3_STOP_EOS;
            nfe += n + stopped;
        } else {
            G3SbdOptions o = {.block = (int)a->block, .gamma = gamma, .mask_id = 4, .max_tokens = maxn, .stop_ids = &eos, .nstop = 1,
                              .state = s};
            G3SbdResult res;
            if (g3_sbd_generate(m, c->prompt, c->np, &o, &res)) { g3_state_free(s); return -1; }
            secs += res.seconds;
            ids = res.ids;
            n = res.n;
            stopped = res.stopped;
            nfe += res.nfe;
        }
        toks += n + stopped;
        // the output as a sequence: its tokens, and the stop token when one ended it
        const int len = n + stopped;
        if (c->nwant < 0) {
            c->want = g3_malloc((size_t)(len + 1) * sizeof *c->want);
            if (!c->want) { free(ids); g3_state_free(s); return -1; }
            if (n) memcpy(c->want, ids, (size_t)n * sizeof *ids);
            if (stopped) c->want[n] = eos;
            c->nwant = len;
        }
        int same = 0;  // common prefix with the reference
        while (same < len && same < c->nwant && (same < n ? ids[same] : eos) == c->want[same]) same++;
        right += same == len && same == c->nwant;
        agree += c->nwant ? (double)same / c->nwant : 1.0;
        free(ids);
    }
    g3_state_free(s);
    row->gamma = gamma;
    row->accuracy = (double)right / (double)nc;
    row->agreement = agree / (double)nc;
    row->nfe_per_token = toks > 0 ? nfe / toks : 0;
    row->seconds = secs;
    row->tokens = toks;
    return 0;
}

// The task's held-out cases: prompts and answers from a seed of their own.
static Case *task_cases(const Args *a, G3SbdTask t) {
    G3Rng r;
    g3_rng_seed(&r, (uint64_t)a->seed * 7919 + 104729);
    Case *cs = g3_calloc((size_t)a->test_n, sizeof *cs);
    if (!cs) return NULL;
    for (long i = 0; i < a->test_n; i++) {
        cs[i].prompt = g3_malloc((G3_SBD_TASK_SEQ + 1) * sizeof(int32_t));
        cs[i].want = g3_malloc((G3_SBD_TASK_SEQ + 1) * sizeof(int32_t));
        if (!cs[i].prompt || !cs[i].want) return NULL;  // (the caller frees what was made)
        g3_sbd_task_example(t, &r, cs[i].prompt, &cs[i].np, cs[i].want, &cs[i].nwant);
    }
    return cs;
}

// Text: the first --prompt-len tokens (after <bos>) of the first --test documents of the
// validation text (--val) (documents end at a line "<|endoftext|>") that are longer than that.
static Case *text_cases(const Args *a, const G3Tokenizer *tok, long *nc) {
    size_t len;
    char *text = g3_read_file(a->val, &len);
    if (!text) return NULL;
    Case *cs = g3_calloc((size_t)a->test_n, sizeof *cs);
    if (!cs) { free(text); return NULL; }
    long n = 0;
    for (char *doc = text; *doc && n < a->test_n;) {
        char *end = strstr(doc, "<|endoftext|>"), *stop = end ? end : doc + strlen(doc);
        while (doc < stop && *doc == '\n') doc++;
        int32_t *ids;
        const int k = g3_tok_encode(tok, doc, (size_t)(stop - doc), 1, 0, &ids);
        if (k < 0) { free(text); *nc = n; return cs; }
        if (k > a->prompt_len + 1) {
            cs[n] = (Case){.prompt = ids, .np = 1 + (int)a->prompt_len, .nwant = -1};
            n++;
        } else free(ids);
        if (!end) break;
        doc = end + strlen("<|endoftext|>");
    }
    free(text);
    *nc = n;
    if (!n) g3_errorf("sbd: no document of %s is longer than %ld tokens", a->val, a->prompt_len);
    return cs;
}

static void free_cases(Case *cs, long n) {
    for (long i = 0; cs && i < n; i++) free(cs[i].prompt), free(cs[i].want);
    free(cs);
}

// The y value of a row on the chart: exact-match accuracy for a task; for text, the share of the
// SBD model's own greedy continuation reproduced before the first difference.
static double chart_y(const Row *r, int text) { return text ? r->agreement : r->accuracy; }

static void write_html(FILE *f, const char *task, const Row *rows, int nr, double vl_ntp, double vl_sbd, int text) {
    fprintf(f, "<!doctype html><meta charset=utf-8><title>gemma3 sbd: %s</title>\n<style>body{font:14px sans-serif;margin:2em;max-width:60em}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>\n", task);
    fprintf(f, "<h1>Set Block Decoding: task %s</h1>\n<p>Next-token validation loss: NTP model %.4f, SBD model %.4f (nats/token). "
               "Exact-match accuracy against forward passes per generated token (lower is faster); the paper (Gat et al. 2025) reports "
               "3-5x fewer passes at equal accuracy.%s</p>\n", task, vl_ntp, vl_sbd,
            text ? " Text has no single right answer: the y axis is the share of the SBD model's own next-token greedy continuation that "
                   "each decoding reproduces before its first different token (1: identical); 'exact' is the share of prompts "
                   "continued identically." : "");
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
    fprintf(f, "<text x=15 y=%d font-size=12 transform='rotate(-90 15 %d)' text-anchor=middle>%s</text>\n", Y0 + PH / 2, Y0 + PH / 2,
            text ? "agreement with SBD greedy" : "exact-match accuracy");
    fprintf(f, "<polyline fill=none stroke=#36c stroke-width=1.5 points='");
    for (int i = 0; i < nr; i++)
        if (rows[i].gamma >= 0) fprintf(f, "%.1f,%.1f ", X0 + PW * rows[i].nfe_per_token / xmax, Y0 + PH - PH * chart_y(&rows[i], text));
    fprintf(f, "'/>\n");
    for (int i = 0; i < nr; i++) {
        const double x = X0 + PW * rows[i].nfe_per_token / xmax, y = Y0 + PH - PH * chart_y(&rows[i], text);
        const char *col = rows[i].gamma >= 0 ? "#36c" : i == 0 ? "#c33" : "#e90";
        fprintf(f, "<circle cx=%.1f cy=%.1f r=4 fill=%s><title>%s: accuracy %.3f, %.3f passes/token</title></circle>\n", x, y, col, rows[i].name,
                rows[i].accuracy, rows[i].nfe_per_token);
        if (rows[i].gamma >= 0) fprintf(f, "<text x=%.1f y=%.1f font-size=10>%g</text>\n", x + 5, y - 5, rows[i].gamma);
    }
    fprintf(f, "</svg>\n<p><span style=color:#c33>&#9679;</span> NTP model &nbsp; <span style=color:#e90>&#9679;</span> SBD model, next-token "
               "decoding &nbsp; <span style=color:#36c>&#9679;</span> SBD model, set block decoding (labels: gamma)</p>\n");
    fprintf(f, "<table><tr><th>decoding<th>%s<th>passes / token<th>tokens<th>seconds<th>speed-up (wall)</tr>\n",
            text ? "exact<th>agreement" : "accuracy");
    for (int i = 0; i < nr; i++) {
        fprintf(f, "<tr><td style=text-align:left>%s<td>%.3f", rows[i].name, rows[i].accuracy);
        if (text) fprintf(f, "<td>%.3f", rows[i].agreement);
        fprintf(f, "<td>%.3f<td>%.0f<td>%.3f<td>%.2fx</tr>\n", rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds,
                rows[i].seconds > 0 ? (rows[1].seconds / rows[1].tokens) / (rows[i].seconds / rows[i].tokens) : 0.0);
    }
    fprintf(f, "</table><p>Speed-up: time per token of the SBD model's own next-token decoding over this row's (one thread).</p>\n");
}

int cmd_sbd(int argc, char **argv) {
    Args a = {.task = "copy", .gammas = "0,0.01,0.1,0.2,0.35,0.6,0.8,1.5", .steps = 600, .batch = 32, .layers = 2, .width = 64, .window = 16,
              .train_n = 20000, .test_n = 200, .seed = 1, .threads = 1, .block = 16, .lr = 2e-3, .seq = 0, .prompt_len = 16, .max_new = 48};
    CliOpt opts[] = {
        {"--task", OPT_STR, &a.task, "copy, reverse, add, random (experiments/sbd_tasks.h), or text (--data, --tokenizer)"},
        {"--out", OPT_STR, &a.out, "folder: data, both training runs (resumed when run again), results.json"},
        {"--steps", OPT_INT, &a.steps, "optimizer steps of each training run", 1, 1L << 30},
        {"--batch", OPT_INT, &a.batch, "examples a step", 1, 1 << 16},
        {"--layers", OPT_INT, &a.layers, "decoder layers of the model", 1, 64},
        {"--width", OPT_INT, &a.width, "hidden size (heads of 16 dims, one KV head, MLP 4x)", 16, 4096},
        {"--window", OPT_INT, &a.window, "sliding window of the local layers (every other layer; the rest are global)", 1, 4096},
        {"--config", OPT_STR, &a.config, "the model's config.json instead of --layers/--width/--window's (text: vocab_size must hold the tokenizer's)"},
        {"--lr", OPT_FLOAT, &a.lr, "peak learning rate (cosine)"},
        {"--train-examples", OPT_INT, &a.train_n, "training examples written", 10, 1L << 30},
        {"--test", OPT_INT, &a.test_n, "held-out prompts decoded", 1, 1 << 24},
        {"--data", OPT_STR, &a.data, "text: training text (documents end at a line <|endoftext|>)"},
        {"--val", OPT_STR, &a.val, "text: validation text: the validation loss and the test prompts' documents (required: prompts from --data would be trained on)"},
        {"--tokenizer", OPT_STR, &a.tok, "text: tokenizer.json (with <mask> at id 4, as Gemma 3's; `gemma3 tokenizer trim` keeps it)"},
        {"--seq", OPT_INT, &a.seq, "training sequence length (0: 40 for a task, 128 for text)", 0, 1 << 20},
        {"--prompt-len", OPT_INT, &a.prompt_len, "text: prompt tokens after <bos> (a document's start)", 1, 1 << 20},
        {"--max-new", OPT_INT, &a.max_new, "text: tokens generated a prompt", 1, 1 << 20},
        {"--block", OPT_INT, &a.block, "set block decoding's block size", 1, 64},
        {"--gammas", OPT_STR, &a.gammas, "entropy bounds, comma-separated"},
        {"--seed", OPT_INT, &a.seed, "seed of data, initialisation and order"},
        {"--finetune", OPT_INT, &a.finetune, "0: both models from scratch for --steps; N: the paper's protocol: the NTP model (--steps) fine-tuned N more steps once with --objective lm and once with --objective sbd, those two compared", 0, 1L << 30},
        {"--threads", OPT_INT, &a.threads, "threads (1: the machine is shared)", 0, 1024},
        {"--html", OPT_FLAG, &a.html, "also write DIR/results.html (accuracy against passes per token)"},
    };
    CLI_PARSE(CMD, "--task copy|reverse|add|random|text --out DIR [options]", argc, argv, opts);
    if (!a.out) return cli_fail(CMD, "--out DIR is required (see --help)");
    const int text = !strcmp(a.task, "text");
    const int t = text ? G3_TASK_COUNT : g3_sbd_task_parse(a.task);
    if (t < 0) return cli_fail(CMD, "--task must be copy, reverse, add, random or text, not '%s'", a.task);
    if (text && (!a.data || !a.val || !a.tok)) return cli_fail(CMD, "--task text needs --data FILE, --val FILE and --tokenizer tokenizer.json");
    if (!text && (a.data || a.val || a.tok)) return cli_fail(CMD, "--data, --val and --tokenizer are for --task text");
    if (!a.seq) a.seq = text ? 128 : G3_SBD_TASK_SEQ;
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
    G3Tokenizer *tok = NULL;
    if (text) {
        if (!(tok = g3_tok_load(a.tok))) return cli_fail(CMD, "%s", g3_error());
        if (g3_tok_id_of(tok, "<mask>") != 4) { g3_tok_free(tok); return cli_fail(CMD, "%s: <mask> is not id 4 (Gemma 3's)", a.tok); }
    }
    char path[4200], run[4200];
    if (g3_mkdir_p(a.out)) { g3_tok_free(tok); return cli_fail(CMD, "%s", g3_error()); }
    // the data and the model's shape, written once (a resumed experiment finds them)
    snprintf(path, sizeof path, "%s/config.json", a.out);
    if (!g3_file_exists(path)) {
        char cfg[1024], *given = NULL;
        size_t clen = 0;
        int n = snprintf(cfg, sizeof cfg,
                         "{\"model_type\": \"gemma3_text\", \"vocab_size\": %d, \"hidden_size\": %ld, \"intermediate_size\": %ld, "
                         "\"num_hidden_layers\": %ld, \"num_attention_heads\": %ld, \"num_key_value_heads\": 1, \"head_dim\": 16, "
                         "\"sliding_window\": %ld, \"sliding_window_pattern\": 2, \"max_position_embeddings\": %ld, "
                         "\"query_pre_attn_scalar\": 16, \"bos_token_id\": 2, \"eos_token_id\": 1, \"pad_token_id\": 0}\n",
                         text ? g3_tok_vocab_size(tok) : G3_SBD_TASK_VOCAB, a.width, 4 * a.width, a.layers, G3_MAX(1, a.width / 16), a.window,
                         G3_MAX(128L, 4 * a.seq));
        if (a.config && !(given = g3_read_file(a.config, &clen))) { g3_tok_free(tok); return cli_fail(CMD, "%s", g3_error()); }
        const int wrc = given ? g3_write_file_atomic(path, given, clen) : g3_write_file_atomic(path, cfg, (size_t)n);
        free(given);
        if (wrc) { g3_tok_free(tok); return cli_fail(CMD, "%s", g3_error()); }
        if (!text) {
            snprintf(path, sizeof path, "%s/train.jsonl", a.out);
            if (write_examples(path, (G3SbdTask)t, (uint64_t)a.seed, a.train_n)) return cli_fail(CMD, "%s", g3_error());
            snprintf(path, sizeof path, "%s/val.jsonl", a.out);
            if (write_examples(path, (G3SbdTask)t, (uint64_t)a.seed + 1000003, 128)) return cli_fail(CMD, "%s", g3_error());
        }
    }
    // the two models compared: from scratch, or both fine-tuned from the NTP model
    const char *ntp = a.finetune ? "ntp-ft" : "ntp", *sbdr = a.finetune ? "sbd-ft" : "sbd";
    int rc = 1;
    G3Model mn = {0}, ms = {0};
    int loaded = 0;
    Case *cs = NULL;
    long nc = 0;
    if (train(&a, a.out, "ntp", "lm", NULL, a.steps)) goto out;
    if (a.finetune && (train(&a, a.out, ntp, "lm", "ntp", a.finetune) || train(&a, a.out, sbdr, "sbd", "ntp", a.finetune))) goto out;
    if (!a.finetune && train(&a, a.out, sbdr, "sbd", NULL, a.steps)) goto out;
    // decoding
    Row rows[34] = {0};
    int nr = 0;
    snprintf(run, sizeof run, "%s/%s", a.out, ntp);
    if (g3_model_load(&mn, run)) goto out;
    snprintf(run, sizeof run, "%s/%s", a.out, sbdr);
    if (g3_model_load(&ms, run)) { g3_model_free(&mn); goto out; }
    loaded = 1;
    if (text ? !(cs = text_cases(&a, tok, &nc)) || !nc : (nc = a.test_n, !(cs = task_cases(&a, (G3SbdTask)t)))) goto out;
    const int maxn = text ? (int)a.max_new : G3_SBD_TASK_MAXANS;
    const int32_t eos = 1;
    char names[34][64];
    // text: the SBD model's own greedy continuation is every row's reference, so it runs first
    Row *rn = &rows[0], *rs = &rows[1];
    rn->name = "NTP model, next-token";
    rs->name = "SBD model, next-token";
    nr = 2;
    if (evaluate(&ms, &a, cs, nc, maxn, eos, -1, rs) || evaluate(&mn, &a, cs, nc, maxn, eos, -1, rn)) goto out;
    for (int i = 0; i < ng; i++) {
        snprintf(names[nr], sizeof names[nr], "SBD model, block %ld, gamma %g", a.block, gam[i]);
        rows[nr].name = names[nr];
        if (evaluate(&ms, &a, cs, nc, maxn, eos, gam[i], &rows[nr++])) goto out;
    }
    for (int i = 0; i < nr; i++)
        fprintf(stderr, "sbd: %-36s %s %.3f  passes/token %.3f  %.0f tokens in %.3f s\n", rows[i].name, text ? "same as SBD greedy" : "accuracy",
                rows[i].accuracy, rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds);
    snprintf(run, sizeof run, "%s/%s", a.out, ntp);
    const double vl_ntp = last_val_loss(run);
    snprintf(run, sizeof run, "%s/%s", a.out, sbdr);
    const double vl_sbd = last_val_loss(run);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) goto out;
    fprintf(f, "{\"task\": \"%s\", \"steps\": %ld, \"batch\": %ld, \"seq\": %ld, \"layers\": %ld, \"width\": %ld, \"window\": %ld, \"block\": %ld, \"seed\": %ld, "
               "\"finetune\": %ld, \"test_prompts\": %ld, \"threads\": %ld,\n \"val_loss_ntp\": %.6f, \"val_loss_sbd\": %.6f,\n",
            a.task, a.steps, a.batch, a.seq, a.layers, a.width, a.window, a.block, a.seed, a.finetune, nc, a.threads, vl_ntp, vl_sbd);
    if (text)
        fprintf(f, " \"accuracy_means\": \"the continuation equals the SBD model's own next-token greedy continuation\", \"prompt_len\": %ld, "
                   "\"max_new\": %ld,\n", a.prompt_len, a.max_new);
    fputs(" \"rows\": [", f);
    for (int i = 0; i < nr; i++) {
        char g[32] = "null";  // next-token decoding
        if (rows[i].gamma >= 0 && i >= 2) snprintf(g, sizeof g, "%.6g", rows[i].gamma);
        fprintf(f, "%s\n  {\"decoding\": \"%s\", \"gamma\": %s, \"accuracy\": %.6f, \"agreement\": %.6f, \"nfe_per_token\": %.6f, \"tokens\": %.0f, \"seconds\": %.6f}",
                i ? "," : "", rows[i].name, g, rows[i].accuracy, rows[i].agreement, rows[i].nfe_per_token, rows[i].tokens, rows[i].seconds);
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
        write_html(f, a.task, rows, nr, vl_ntp, vl_sbd, text);
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
    if (loaded) g3_model_free(&mn), g3_model_free(&ms);
    free_cases(cs, text ? nc : a.test_n);
    g3_tok_free(tok);
    return rc;
}
