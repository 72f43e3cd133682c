// cmd_kl.c: `gemma3 kl`: how far a model's next-token distributions are from a base model's
// on a text (llama-perplexity's KL-divergence mode, on its chunks; cli_eval.h): mean and
// 99th-percentile KL(base || model), top-1 agreement, and both perplexities.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "cli.h"
#include "cli_eval.h"
#include "cli_gen.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    int V;
    double *kl;
    long n, cap, same;
    double nll[2];
    int fail;
} Kl;

static void score(void *ctx, const float *const *lg, int nm, int32_t next) {
    Kl *k = ctx;
    double lse0 = cli_logsumexp(lg[0], k->V), lse1 = cli_logsumexp(lg[1], k->V), d = 0;
    int a0 = 0, a1 = 0;
    for (int i = 0; i < k->V; i++) {
        double lp = lg[0][i] - lse0, lq = lg[1][i] - lse1;
        d += exp(lp) * (lp - lq);
        if (lg[0][i] > lg[0][a0]) a0 = i;
        if (lg[1][i] > lg[1][a1]) a1 = i;
    }
    if (k->n == k->cap) {
        long cap = k->cap ? 2 * k->cap : 4096;
        double *nk = realloc(k->kl, (size_t)cap * sizeof *nk);
        if (!nk) { k->fail = 1; return; }
        k->kl = nk, k->cap = cap;
    }
    k->kl[k->n++] = d > 0 ? d : 0;
    k->same += a0 == a1;
    k->nll[0] += lse0 - lg[0][next];
    k->nll[1] += lse1 - lg[1][next];
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int cmd_kl(int argc, char **argv) {
    const char *base = NULL, *dir = NULL, *data = NULL, *tpath = NULL;
    long ctx = 512, chunks = 0;
    int exact = 0;
    CliOpt opts[] = {
        {"--base", OPT_STR, &base, "the reference model (folder or .gguf), e.g. the BF16 one"},
        {"--model", OPT_STR, &dir, "the model to compare (folder or .gguf), e.g. a quantized one"},
        {"--data", OPT_STR, &data, "the text file"},
        {"--tokenizer", OPT_STR, &tpath, "tokenizer (default: the base model's)"},
        {"--ctx", OPT_INT, &ctx, "chunk size in tokens (default 512)", 4, 1 << 20},
        {"--chunks", OPT_INT, &chunks, "at most this many chunks (0: all; default 0)", 0, 1 << 30},
        {"--exact", OPT_FLAG, &exact, "f32 activations in every product (default: the fast mode)"},
        CLI_DEVICE_OPT,
    };
    CLI_PARSE("kl", "--base A --model B --data FILE [--ctx 512]", argc, argv, opts);
    if (!base || !dir || !data) return cli_fail("kl", "--base, --model and --data are required (see --help)");
    G3Model a, b;
    if (cli_model_load(&a, base, NULL)) return cli_fail("kl", "%s", g3_error());
    if (cli_model_load(&b, dir, NULL)) { cli_model_free(&a); return cli_fail("kl", "%s", g3_error()); }
    int rc = 1;
    G3Tokenizer *tok = NULL;
    int32_t *ids = NULL;
    Kl k = {a.cfg.vocab, NULL, 0, 0, 0, {0, 0}, 0};
    if (a.cfg.vocab != b.cfg.vocab) { g3_errorf("the models' vocabularies differ (%d and %d rows)", a.cfg.vocab, b.cfg.vocab); goto out; }
    if (!(tok = cli_load_tokenizer(tpath, base, &a))) goto out;
    size_t len;
    char *text = g3_read_file(data, &len);
    if (!text) goto out;
    int n = g3_tok_encode_parallel(tok, text, len, 0, 0, 0, &ids);
    free(text);
    if (n < 0) goto out;
    const G3Model *ms[2] = {&a, &b};
    int nc = cli_eval_chunks(ms, 2, !exact, ids, n, (int)ctx, g3_tok_bos(tok), (int)chunks, score, &k);
    if (nc <= 0 || k.fail || k.n == 0) { if (k.fail) g3_errorf("out of memory"); goto out; }
    double sum = 0;
    for (long i = 0; i < k.n; i++) sum += k.kl[i];
    qsort(k.kl, (size_t)k.n, sizeof *k.kl, cmp_d);
    long i99 = (long)ceil(0.99 * (double)k.n) - 1;
    printf("chunks: %d of %ld tokens\n", nc, ctx);
    printf("tokens: %ld\n", k.n);
    printf("perplexity base: %.6f\n", exp(k.nll[0] / (double)k.n));
    printf("perplexity model: %.6f\n", exp(k.nll[1] / (double)k.n));
    printf("mean KL: %.6f\n", sum / (double)k.n);
    printf("p99 KL: %.6f\n", k.kl[i99 < 0 ? 0 : i99]);
    printf("top-1 agreement: %.4f\n", (double)k.same / (double)k.n);
    rc = 0;
out:
    if (rc) cli_fail("kl", "%s", g3_error());
    free(k.kl);
    free(ids);
    g3_tok_free(tok);
    cli_model_free(&b);
    cli_model_free(&a);
    return rc;
}
