// cmd_perplexity.c: `gemma3 perplexity`: a model's perplexity on a text file, by
// llama-perplexity's definition (chunks of the context size, the second half of each scored;
// cli_eval.h), and its bits per byte (the scored tokens' nats over their bytes, in bits).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "cli.h"
#include "cli_eval.h"
#include "cli_gen.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const G3Tokenizer *tok;
    int V;
    double nll;
    long n, bytes;
} Ppl;

static void score(void *ctx, const float *const *lg, int nm, int32_t next) {
    Ppl *p = ctx;
    p->nll += cli_logsumexp(lg[0], p->V) - lg[0][next];
    p->n++;
    char *s = g3_tok_decode(p->tok, &next, 1, 0, NULL);
    if (s) p->bytes += (long)strlen(s), free(s);
}

int cmd_perplexity(int argc, char **argv) {
    const char *dir = NULL, *data = NULL, *tpath = NULL;
    long ctx = 512, chunks = 0;
    int exact = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder or .gguf file" CLI_MODEL_HELP},
        {"--data", OPT_STR, &data, "the text file to score"},
        {"--tokenizer", OPT_STR, &tpath, "tokenizer (default: the model's)"},
        {"--ctx", OPT_INT, &ctx, "chunk size in tokens (default 512)", 4, 1 << 20},
        {"--chunks", OPT_INT, &chunks, "score at most this many chunks (0: all; default 0)", 0, 1 << 30},
        {"--exact", OPT_FLAG, &exact, "f32 activations in every product (default: the fast mode)"},
        CLI_DEVICE_OPT,
    };
    CLI_PARSE("perplexity", "--model DIR|FILE.gguf --data FILE [--ctx 512]", argc, argv, opts);
    if (!data) return cli_fail("perplexity", "--data is required (see --help)");
    if (cli_model_or_default("perplexity", &dir)) return 1;
    G3Model m;
    if (cli_model_load(&m, dir, NULL)) return cli_fail("perplexity", "%s", g3_error());
    G3Tokenizer *tok = cli_load_tokenizer(tpath, dir, &m);
    size_t len;
    char *text = tok ? g3_read_file(data, &len) : NULL;
    int32_t *ids = NULL;
    int n = text ? g3_tok_encode_parallel(tok, text, len, 0, 0, 0, &ids) : -1;
    free(text);
    int rc = 1;
    if (n >= 0) {
        Ppl p = {tok, m.cfg.vocab, 0, 0, 0};
        const G3Model *ms[1] = {&m};
        double t0 = g3_now();
        int nc = cli_eval_chunks(ms, 1, !exact, ids, n, (int)ctx, g3_tok_bos(tok), (int)chunks, score, &p);
        if (nc > 0 && p.n > 0) {
            printf("chunks: %d of %ld tokens (%d tokens in the file), %.1f s\n", nc, ctx, n, g3_now() - t0);
            printf("tokens: %ld\n", p.n);
            printf("nats per token: %.6f\n", p.nll / (double)p.n);
            printf("perplexity: %.6f\n", exp(p.nll / (double)p.n));
            printf("bits per byte: %.6f\n", p.bytes ? p.nll / log(2.0) / (double)p.bytes : 0.0);
            rc = 0;
        }
    }
    if (rc) cli_fail("perplexity", "%s", g3_error());
    free(ids);
    g3_tok_free(tok);
    cli_model_free(&m);
    return rc;
}
