// cmd_serve.c: `gemma3 serve`: loads a model and serves it over HTTP (server/server.h) until
// SIGINT or SIGTERM.
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli_gen.h"
#include "server/server.h"

static volatile sig_atomic_t stop_flag = 0;
static void on_signal(int sig) { (void)sig; stop_flag = 1; }

int cmd_serve(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *tok_path = NULL, *host = "127.0.0.1", *key = NULL, *name = NULL;
    long port = 8080, parallel = 8, ctx = 4096, queue = 64, conns = 256, body_kib = 1024, max_tokens = 2048, threads = 0, rows = 512;
    double timeout = 30;
    int exact = 0, quiet = 0;
    CliSampling cs = CLI_SAMPLING_INIT;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        CLI_ADAPTER_OPT(adapter_dir),
        {"--host", OPT_STR, &host, "address to listen on (0.0.0.0: every interface)"},
        {"--port", OPT_INT, &port, "port (0: any free one, printed)", 0, 65535},
        {"--parallel", OPT_INT, &parallel, "sequences decoded together in one batch (KV cache slots)", 1, 1024},
        {"--ctx", OPT_INT, &ctx, "positions per sequence (at most the model's)", 16, 1 << 30},
        {"--batch-rows", OPT_INT, &rows, "tokens per forward call (prompt chunks and decode rows; at least --parallel)", 1, 1 << 20},
        {"--queue", OPT_INT, &queue, "sequences that may wait for a slot; beyond, 503 with Retry-After", 0, 1 << 20},
        {"--max-conns", OPT_INT, &conns, "open connections at most", 1, 1 << 20},
        {"--max-body", OPT_INT, &body_kib, "request body KiB at most (413 beyond)", 1, 1 << 20},
        {"--timeout", OPT_FLOAT, &timeout, "seconds a request may take to arrive, and a client to take its bytes", 0, 0, 0.1, 86400},
        {"--max-tokens", OPT_INT, &max_tokens, "max_tokens when a request gives none (capped by the context left)", 1, 1 << 30},
        {"--api-key", OPT_STR, &key, "refuse requests without 'Authorization: Bearer KEY' (401); / and /health stay open"},
        {"--name", OPT_STR, &name, "model id in /v1/models and responses (default: the folder's name)"},
        CLI_SAMPLING_OPTS(cs),
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere"},
        {"--quiet", OPT_FLAG, &quiet, "no log line per request"},
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("serve", "--model DIR [--host 127.0.0.1] [--port 8080] [--parallel N] [--ctx N] [--api-key KEY] [options]\n\n"
              "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions (stream: server-sent events),\n"
              "GET /v1/models, /health, POST /tokenize, /detokenize, /apply-template, /v1/activations, and a chat page at /.\n"
              "Sampling options set the defaults of fields a request leaves out. See docs/serve.md.",
              argc, argv, opts);
    if (cli_model_or_default("serve", &dir)) return 1;
    if (key && !key[0]) return cli_fail("serve", "--api-key: an empty key would let everyone in");
    if (rows < parallel) rows = parallel;
    cli_set_threads(threads);
    G3SamplerConfig sc;
    G3Model m;
    if (cli_sampling_resolve(&cs, dir, &sc) || cli_model_load(&m, dir, adapter_dir)) return cli_fail("serve", "%s", g3_error());
    G3Tokenizer *tok = cli_load_tokenizer(tok_path, dir, &m);
    if (!tok) {
        cli_model_free(&m);
        return cli_fail("serve", "%s", g3_error());
    }
    if (ctx > m.cfg.max_pos) ctx = m.cfg.max_pos;
    // the folder's last component names the model unless --name does
    char base[256];
    const char *e = dir + strlen(dir);
    while (e > dir && e[-1] == '/') e--;
    const char *b = e;
    while (b > dir && b[-1] != '/') b--;
    snprintf(base, sizeof base, "%.*s", (int)(e - b), b);
    G3ServeOptions o = {host, (int)port, (int)parallel, (int)ctx, (int)rows, (int)queue, (int)conns, (size_t)body_kib << 10, timeout, key,
                        name ? name : base[0] ? base : "gemma3", !exact, sc, (int)max_tokens, quiet};
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "serve: %s, %ld slots of %ld positions\n", dir, parallel, ctx);
    int rc = g3_serve(&m, tok, &o, &stop_flag);
    if (rc) cli_fail("serve", "%s", g3_error());
    g3_tok_free(tok);
    cli_model_free(&m);
    return rc ? 1 : 0;
}
