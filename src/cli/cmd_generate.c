// cmd_generate.c: `gemma3 generate`: continue one prompt (token ids or text, streamed as it
// is produced), or run a file of categorized prompts in batches into a results folder.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "cli_gen.h"
#include "gen/batch.h"
#include "gen/generate.h"
#include "gen/prompts.h"
#include "cli_image.h"
#include "gen/sbd.h"
#include "gen/textstream.h"

static volatile int interrupted = 0;
static void on_sigint(int sig) {
    (void)sig;
    if (interrupted) _exit(130);  // a second Ctrl-C means now
    interrupted = 1;
}

typedef struct {
    G3Sampler *sampler;
    const G3Tokenizer *tok;
    G3TextStream ts;
    int stream;  // print text as it comes
    const char *model_dir;
    char err[512];  // why generation failed (non-finite logits), or ""
} One;

// The engine samples with it (on a GPU it selects the candidates there: engine.h).
static G3Sampler *sampler_one(void *ctx, int i) { return ((One *)ctx)->sampler; }

static int on_token_one(void *ctx, int i, int32_t id, G3StopReason *why) {
    One *o = ctx;
    if (o->err[0]) { *why = G3_STOP_ERROR; return 1; }
    if (!o->tok) return 0;
    int st = g3_ts_push(&o->ts, o->tok, id);
    if (o->stream) {
        const char *s;
        size_t n = g3_ts_take(&o->ts, &s);
        fwrite(s, 1, n, stdout);
        fflush(stdout);
    }
    if (st) { *why = st > 0 ? G3_STOP_STRING : G3_STOP_ERROR; return 1; }
    return 0;
}

// --sbd: Set Block Decoding (gen/sbd.h) of one prompt within the Entropy-Bounded sampler,
// greedy, or drawn through `sampling` when it is given (--temperature > 0); the ids (or text)
// as below, the forward passes (NFE) on stderr.
static int generate_sbd(const G3Model *m, const G3Tokenizer *tok, const int32_t *ids, int T, int max_tokens, long block, double gamma,
                        int exact, int print_ids, int quiet, int raw_ids, const G3SamplerConfig *sampling) {
    int mask_id = tok ? g3_tok_id_of(tok, "<mask>") : G3_SBD_MASK_ID;
    if (mask_id < 0) return cli_fail("generate", "--sbd: the tokenizer has no <mask> token");
    int32_t stop_ids[2] = {tok ? g3_tok_eos(tok) : m->cfg.eos, tok ? g3_tok_end_of_turn(tok) : -1};
    G3SbdOptions o = {.block = (int)block, .gamma = gamma, .mask_id = mask_id, .max_tokens = max_tokens, .stop_ids = stop_ids,
                      .nstop = raw_ids && !tok ? 0 : stop_ids[1] >= 0 ? 2 : 1, .fast = !exact, .sampling = sampling};
    G3SbdResult r;
    if (g3_sbd_generate(m, ids, T, &o, &r)) return cli_fail("generate", "--sbd: %s", g3_error());
    if (tok && !print_ids) {
        size_t len;
        char *text = g3_tok_decode(tok, r.ids, r.n, 1, &len);
        if (text) { fwrite(text, 1, len, stdout); printf("\n"); }
        free(text);
    } else {
        for (int i = 0; i < r.n; i++) printf("%s%d", i ? "," : "", r.ids[i]);
        printf("\n");
    }
    fflush(stdout);
    if (!quiet)
        fprintf(stderr, "generate: sbd: %d prompt tokens, %d new in %d forward passes (nfe %d; %.2f tokens per pass), block %ld, gamma %g, %.3f s%s\n",
                T, r.n, r.nfe, r.nfe, r.nfe ? (double)r.n / r.nfe : 0.0, block, gamma, r.seconds, r.stopped ? " (stop token)" : "");
    free(r.ids);
    return 0;
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *ids_s = NULL, *text = NULL, *tok_path = NULL, *system = NULL, *prompts_file = NULL, *out_dir = NULL,
               *sample_out = NULL;
    CliList stop_opt = {{0}}, images = {{0}};
    int pan_scan = 0;
    long max_tokens = 256, threads = 0, ctx = 0, batch = 8;
    int print_ids = 0, exact = 0, chat = 0, resume = 0, quiet = 0, sbd = 0;
    long sbd_block = 16;
    double sbd_gamma = 0.35;
    CliSampling cs = CLI_SAMPLING_INIT;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--prompt", OPT_STR, &text, "prompt text (tokenized with <bos>)"},
        {"--ids", OPT_STR, &ids_s, "prompt as token ids, comma-separated"},
        CLI_IMAGE_OPT(images),
        CLI_PAN_SCAN_OPT(pan_scan),
        {"--chat", OPT_FLAG, &chat, "wrap the prompt(s) in Gemma's chat format"},
        {"--system", OPT_STR, &system, "system message (with --chat)"},
        {"--max-tokens", OPT_INT, &max_tokens, "new tokens at most", 1, 1 << 24},
        {"--stop", OPT_LIST, &stop_opt, CLI_STOP_HELP},
        CLI_SAMPLING_OPTS(cs),
        {"--print-ids", OPT_FLAG, &print_ids, "print the new ids, comma-separated, on the last line"},
        {"--sbd", OPT_FLAG, &sbd, "Set Block Decoding (a model trained with --objective sbd): blocks of --block tokens, greedy (drawn with the sampling options when --temperature > 0 is given), forward passes on stderr (docs/sbd.md)"},
        {"--block", OPT_INT, &sbd_block, "--sbd: tokens a block", 1, 4096},
        {"--gamma", OPT_FLOAT, &sbd_gamma, "--sbd: entropy bound (nats) of the tokens revealed together (0: one a pass)"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        {"--prompts-file", OPT_STR, &prompts_file, "JSON {category: {subcategory: [prompts]}}, a JSON list, or one prompt a line"},
        {"--out-dir", OPT_STR, &out_dir, "results folder for --prompts-file"},
        {"--batch-size", OPT_INT, &batch, "prompts decoded together", 1, 4096},
        {"--resume", OPT_FLAG, &resume, "continue an interrupted --prompts-file run in --out-dir"},
        {"--create-sample-prompts", OPT_STR, &sample_out, "write an example prompts file and exit"},
        {"--context", OPT_INT, &ctx, "context to reserve (0: prompt + max-tokens)", 0, 1 << 30},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere"},
        {"--quiet", OPT_FLAG, &quiet, "no summary or progress on stderr"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("generate", "--model DIR (--prompt TEXT | --ids 2,17,300 | --prompts-file FILE --out-dir DIR) [options]", argc, argv, opts);
    if (sample_out) {
        if (argc != 3) return cli_fail("generate", "--create-sample-prompts FILE writes an example and exits: give it alone");
        if (g3_prompts_write_sample(sample_out)) return cli_fail("generate", "%s", g3_error());
        fprintf(stderr, "generate: wrote an example prompts file to %s\n", sample_out);
        return 0;
    }
    if (cli_model_or_default("generate", &dir)) return 1;
    if (!!ids_s + !!text + !!prompts_file != 1) return cli_fail("generate", "give exactly one of --prompt, --ids and --prompts-file");
    if (prompts_file && !out_dir) return cli_fail("generate", "--prompts-file needs --out-dir");
    if (sbd && prompts_file) return cli_fail("generate", "--sbd decodes one prompt (--prompt or --ids), not a --prompts-file");
    if (sbd && images.n) return cli_fail("generate", "--sbd does not take --image (set block decoding of text only, for now)");
    if (!sbd && (cli_given("--block") || cli_given("--gamma"))) return cli_fail("generate", "--block and --gamma are options of --sbd");
    if (sbd && !(sbd_gamma >= 0 && sbd_gamma < 1e30)) return cli_fail("generate", "--gamma must be a number >= 0, not %g", sbd_gamma);
    if (ids_s && chat) return cli_fail("generate", "--chat needs text (--prompt or --prompts-file), not --ids");
    // options that would be silently ignored
    if (system && !chat) return cli_fail("generate", "--system is the chat format's system message: it needs --chat");
    if (!prompts_file) {
        const char *batch_only[] = {"--resume", "--out-dir", "--batch-size"};
        for (size_t i = 0; i < G3_ARRAY_LEN(batch_only); i++)
            if (cli_given(batch_only[i])) return cli_fail("generate", "%s only applies to a --prompts-file run", batch_only[i]);
    } else if (images.n) {
        return cli_fail("generate", "--image applies to --prompt and --ids, not to a --prompts-file run");
    } else if (print_ids) {
        return cli_fail("generate", "--print-ids applies to --prompt and --ids; a --prompts-file run writes the ids into results.json");
    }
    char *stops[CLI_LIST_MAX];
    if (cli_stops(&stop_opt, stops)) return cli_fail("generate", "%s", g3_error());
    const int nstops = stop_opt.n;
    cli_set_threads(threads);
    if (sbd && !cli_device) cli_device = "cpu";  // set block decoding runs on the CPU backend only (for now)
    G3SamplerConfig sc;
    G3Model m;
    if (cli_sampling_resolve(&cs, dir, &sc) || cli_model_load(&m, dir, adapter_dir)) {
        cli_stops_free(stops, nstops);
        return cli_fail("generate", "%s", g3_error());
    }
    // ids given by hand are the outside checks' form: greedy unless a temperature is given
    if (ids_s && isnan(cs.temperature)) sc.temperature = 0;
    int rc = 1;
    G3Tokenizer *tok = NULL;
    int32_t *ids = NULL;
    int T = 0;
    CliImages ci;
    if (cli_images_load(&ci, &m, &images, exact, pan_scan, NULL)) { cli_fail("generate", "%s", g3_error()); goto out; }
    // with --ids the tokenizer is optional: given (or needed by --stop), the output is text
    if (!ids_s || nstops || tok_path) {
        if (!(tok = cli_load_tokenizer(tok_path, dir, &m))) { cli_fail("generate", "%s", g3_error()); goto out; }
    }
    signal(SIGINT, on_sigint);
    if (prompts_file) {
        G3BatchJob job = {prompts_file, out_dir, dir, (int)batch, chat, system, (int)max_tokens, (int)ctx, sc,
                          (const char *const *)stops, nstops, resume, !exact, !quiet};
        int r = g3_batch_run(&m, tok, &job, &interrupted);
        if (r < 0) { cli_fail("generate", "%s", g3_error()); goto out; }
        if (r == 1) { fprintf(stderr, "generate: interrupted; finished prompts are in %s (add --resume to continue)\n", out_dir); rc = 130; goto out; }
        if (!quiet) fprintf(stderr, "generate: results in %s/results.json, summary in %s/summary.json\n", out_dir, out_dir);
        rc = 0;
        goto out;
    }
    if (ids_s) {
        if ((T = cli_parse_ids(ids_s, &ids)) < 0) { cli_fail("generate", "--ids: %s", g3_error()); goto out; }
    } else if (chat && ci.n) {
        // the chat text with its template's special tokens, cut at the image markers; without
        // markers the images open the user's turn, as Gemma 3's template writes image parts
        // (<start_of_image>) before the text part
        size_t tl = strlen(text), ml = strlen("<start_of_image>");
        char *marked = strstr(text, "<start_of_image>") ? g3_strdup(text) : g3_malloc((size_t)ci.nfiles * ml + tl + 1);
        if (marked && !strstr(text, "<start_of_image>")) {
            for (int i = 0; i < ci.nfiles; i++) memcpy(marked + (size_t)i * ml, "<start_of_image>", ml);
            memcpy(marked + (size_t)ci.nfiles * ml, text, tl + 1);
        }
        G3ChatTurn turn = {"user", marked};
        char *full = marked ? g3_chat_format(&turn, 1, system, 1) : NULL;
        T = full ? cli_images_encode_text(&ci, tok, full, 0, 1, &ids) : -1;
        free(full);
        free(marked);
    } else if (chat) {
        G3ChatTurn turn = {"user", text};
        T = g3_chat_encode(tok, &turn, 1, system, 1, &ids);
    } else if (ci.n) {
        T = cli_images_encode_text(&ci, tok, text, 1, 0, &ids);
    } else {
        T = g3_tok_encode(tok, text, strlen(text), 1, 0, &ids);
    }
    if (T < 0) { cli_fail("generate", "%s", g3_error()); goto out; }
    if (T == 0) { cli_fail("generate", "empty prompt"); goto out; }
    if (sbd) {
        // greedy unless a temperature > 0 is asked for on the command line
        const int draw = !isnan(cs.temperature) && sc.temperature > 0;
        rc = generate_sbd(&m, tok, ids, T, (int)max_tokens, sbd_block, sbd_gamma, exact, print_ids, quiet, ids_s != NULL, draw ? &sc : NULL);
        goto out;
    }
    if (ctx == 0) ctx = G3_MIN((long)m.cfg.max_pos, T + max_tokens);
    if (T >= ctx) { cli_fail("generate", "prompt of %d tokens does not fit the context of %ld (the model's maximum is %d)", T, ctx, m.cfg.max_pos); goto out; }
    G3State *s = g3_state_new(&m, 1, (int)ctx, cli_images_rows(&ci, T, G3_MIN(T, 512)), !exact, NULL);
    if (!s) { cli_fail("generate", "%s", g3_error()); goto out; }
    if (cli_images_attach(&ci, s, ids, T)) { cli_fail("generate", "%s", g3_error()); g3_state_free(s); goto out; }
    if (ci.n && !quiet) fprintf(stderr, "generate: %d image%s through the vision tower in %.3f s\n", ci.n, ci.n == 1 ? "" : "s", ci.seconds);
    One one = {g3_sampler_new(&sc, m.cfg.vocab), tok, {{{0}}}, tok && !print_ids, dir, ""};
    if (!one.sampler || (tok && g3_ts_init(&one.ts, (const char *const *)stops, nstops, 1))) { cli_fail("generate", "%s", g3_error()); g3_state_free(s); goto out; }
    int32_t stop_ids[2] = {tok ? g3_tok_eos(tok) : m.cfg.eos, tok ? g3_tok_end_of_turn(tok) : -1};
    G3GenOptions o = {.max_tokens = (int)max_tokens, .stop_ids = stop_ids, .nstop = stop_ids[1] >= 0 ? 2 : 1, .sampler = sampler_one,
                      .on_token = on_token_one, .ctx = &one, .abort = &interrupted};
    if (ids_s && !tok) o.nstop = 0;  // raw ids: exactly N tokens, as the outside checks expect
    G3GenResult r;
    const int32_t *p = ids;
    int grc = g3_generate(s, &p, &T, 1, &o, &r);
    g3_state_free(s);
    g3_sampler_free(one.sampler);
    if (grc) { cli_fail("generate", "%s", g3_error()); goto out; }
    // the engine checks the logits before choose_one: non-finite ones end the sequence there
    if (r.stop == G3_STOP_ERROR && !one.err[0] && !strncmp(r.error, "non-finite logits", 17))
        snprintf(one.err, sizeof one.err, "%s at step %d: the model in %s produces them (do its weights hold NaN or inf?)", r.error, r.new_tokens + 1, dir);
    if (r.stop == G3_STOP_ERROR || one.err[0]) {
        if (one.stream) printf("\n");
        cli_fail("generate", "%s", one.err[0] ? one.err : r.error);
        if (tok) g3_ts_free(&one.ts);
        free(r.ids);
        goto out;
    }
    if (tok) {
        g3_ts_finish(&one.ts);
        const char *rest;
        size_t n = g3_ts_take(&one.ts, &rest);
        if (one.stream) { fwrite(rest, 1, n, stdout); printf("\n"); }
        g3_ts_free(&one.ts);
    }
    if (print_ids || !tok) {
        for (int i = 0; i < r.new_tokens; i++) printf("%s%d", i ? "," : "", r.ids[i]);
        printf("\n");
    }
    fflush(stdout);
    if (!quiet)
        fprintf(stderr, "generate: %d prompt tokens, %d new (%s); prefill %.1f tok/s, decode %.1f tok/s\n", T, r.new_tokens, g3_stop_name(r.stop),
                T / (r.prefill_s > 0 ? r.prefill_s : 1e-9), r.new_tokens > 1 && r.decode_s > 0 ? (r.new_tokens - 1) / r.decode_s : 0.0);
    free(r.ids);
    rc = interrupted ? 130 : 0;
out:
    cli_images_free(&ci);
    cli_stops_free(stops, nstops);
    free(ids);
    g3_tok_free(tok);
    cli_model_free(&m);
    return rc;
}
