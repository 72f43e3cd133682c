// cmd_tokenizer.c: `gemma3 tokenizer trim`: a smaller vocabulary for one corpus, cut out of a
// tokenizer.json (src/tokenizer/trim.h says what is kept). Writes DIR/tokenizer.json and a
// minimal DIR/tokenizer_config.json, then checks its own output: the trimmed tokenizer loads and
// gives the corpus back byte for byte, and the counts of tokens of both tokenizers are printed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "cli.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trim.h"

static int write_config(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    static const char cfg[] =
        "{\n  \"tokenizer_class\": \"GemmaTokenizerFast\",\n  \"bos_token\": \"<bos>\",\n  \"eos_token\": \"<eos>\",\n"
        "  \"pad_token\": \"<pad>\",\n  \"unk_token\": \"<unk>\",\n  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n"
        "  \"clean_up_tokenization_spaces\": false,\n  \"spaces_between_special_tokens\": false,\n"
        "  \"model_max_length\": 32768\n}\n";
    return g3_write_file_atomic(path, cfg, sizeof cfg - 1);
}

static int trim(int argc, char **argv) {
    const char *tpath = NULL, *data = NULL, *out = NULL;
    long vocab = 8192, threads = 0;
    CliOpt opts[] = {
        {"--tokenizer", OPT_STR, &tpath, "the tokenizer.json to trim (Gemma 3's)"},
        {"--data", OPT_STR, &data, "corpus (a UTF-8 text file) whose most used pieces are kept"},
        {"--vocab", OPT_INT, &vocab, "pieces in the trimmed vocabulary in all (control, chat and 256 byte pieces included)", 263, 1 << 30},
        {"--out", OPT_STR, &out, "folder to write tokenizer.json and tokenizer_config.json into"},
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("tokenizer trim", "--tokenizer tokenizer.json --data CORPUS --vocab N --out DIR", argc, argv, opts);
    if (!tpath || !data || !out) return cli_fail("tokenizer trim", "--tokenizer, --data and --out are required");
    size_t n = strlen(tpath);
    if (n < 5 || strcmp(tpath + n - 5, ".json"))
        return cli_fail("tokenizer trim", "--tokenizer must be a tokenizer.json (its pipeline is copied): %s", tpath);
    G3Tokenizer *tok = g3_tok_load(tpath);
    if (!tok) return cli_fail("tokenizer trim", "%s", g3_error());
    size_t len = 0;
    char *text = g3_read_file(data, &len);
    if (!text) { g3_tok_free(tok); return cli_fail("tokenizer trim", "%s", g3_error()); }
    int V = g3_tok_vocab_size(tok), rc = 1;
    int64_t *counts = g3_calloc((size_t)V, sizeof *counts);
    uint8_t *keep = g3_malloc((size_t)V);
    G3Tokenizer *small = NULL;
    int32_t *ids = NULL;
    char *back = NULL;
    char path[4200];
    if (!counts || !keep) goto out;
    if (g3_tok_trim_count(tok, text, len, (int)threads, counts)) goto fail;
    int64_t ntok_full = 0;
    for (int i = 0; i < V; i++) ntok_full += counts[i];
    int kept = g3_tok_trim_select(tok, counts, (int)vocab, keep);
    if (kept < 0) goto fail;
    struct stat st;
    if (mkdir(out, 0777) && (stat(out, &st) || !S_ISDIR(st.st_mode))) { g3_errorf("cannot create %s", out); goto fail; }
    snprintf(path, sizeof path, "%s/tokenizer.json", out);
    if (g3_tok_trim_write_json(tpath, tok, keep, path) || write_config(out)) goto fail;

    // Check the output: it loads, and the corpus comes back byte for byte.
    small = g3_tok_load_ex(path, G3_TOK_LOAD_NO_CACHE);
    if (!small) { g3_error_prefix("the trimmed %s does not load", path); goto fail; }
    int nt = g3_tok_encode_parallel(small, text, len, 0, 0, (int)threads, &ids);
    if (nt < 0) goto fail;
    size_t blen = 0;
    back = g3_tok_decode(small, ids, nt, 0, &blen);
    if (!back) goto fail;
    if (blen != len || memcmp(back, text, len)) {
        g3_errorf("the trimmed tokenizer does not give %s back losslessly (a bug; please report it)", data);
        goto fail;
    }
    printf("kept %d of %d pieces (%s)\n", kept, V, path);
    printf("corpus: %zu bytes; %lld tokens with the full tokenizer (%.3f bytes/token), %d trimmed (%.3f bytes/token)\n",
           len, (long long)ntok_full, ntok_full ? (double)len / (double)ntok_full : 0.0, nt, nt ? (double)len / nt : 0.0);
    printf("round trip: lossless\n");
    rc = 0;
    goto out;
fail:
    rc = cli_fail("tokenizer trim", "%s", g3_error());
out:
    free(back);
    free(ids);
    g3_tok_free(small);
    free(keep);
    free(counts);
    free(text);
    g3_tok_free(tok);
    return rc;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "trim")) return trim(argc - 1, argv + 1);
    if (argc < 2 || cli_wants_help(argc, argv)) {
        printf("usage: gemma3 tokenizer trim --tokenizer tokenizer.json --data CORPUS --vocab N --out DIR\n\n"
               "  trim    keep the control/chat tokens, the 256 byte pieces and the pieces CORPUS uses most\n"
               "          (with every piece their merges pass through): a smaller tokenizer.json that\n"
               "          encodes any text losslessly ('gemma3 tokenizer trim --help' for options)\n");
        return argc < 2;
    }
    return cli_fail("tokenizer", "unknown subcommand '%s' (try: trim)", argv[1]);
}
