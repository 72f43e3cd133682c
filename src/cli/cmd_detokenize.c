// cmd_detokenize.c: `gemma3 detokenize`: token ids to text, through the streaming decoder (the
// same path generation prints with). Prints exactly the text; a newline is added only when the
// output is a terminal, so that piped output is byte-exact.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"
#include "cli.h"
#include "tokenizer/tokenizer.h"

int cmd_detokenize(int argc, char **argv) {
    const char *tpath = NULL, *model = NULL, *ids_s = NULL;
    int skip = 0;
    CliOpt opts[] = {
        {"--tokenizer", OPT_STR, &tpath, "tokenizer.json, tokenizer.model or a .gguf model file"},
        {"--model", OPT_STR, &model, "model folder holding the tokenizer (instead of --tokenizer)" CLI_MODEL_HELP},
        {"--ids", OPT_STR, &ids_s, "token ids, comma-separated (2,9259,236764)"},
        {"--skip-special", OPT_FLAG, &skip, "leave out control tokens (<bos>, <eos>, <end_of_turn>, ...)"},
    };
    CLI_PARSE("detokenize", "(--tokenizer FILE | --model DIR) --ids 2,9259,... [--skip-special]", argc, argv, opts);
    const char *src = tpath ? tpath : model;
    if (tpath && model) return cli_fail("detokenize", "give one of --tokenizer FILE and --model DIR");
    if (!tpath && cli_model_or_default("detokenize", &model)) return 1;
    if (!ids_s) return cli_fail("detokenize", "--ids is required");
    int32_t *ids;
    int n = cli_parse_ids(ids_s, &ids);
    if (n < 0) return cli_fail("detokenize", "%s", g3_error());
    G3Tokenizer *tok = g3_tok_load(src);
    if (!tok) { free(ids); return cli_fail("detokenize", "%s", g3_error()); }
    int rc = 0;
    G3TokDecoder d;
    g3_tok_decoder_init(&d, skip);
    char out[G3_TOK_DECODE_MAX];
    for (int i = 0; i <= n && !rc; i++) {
        int k = i < n ? g3_tok_decode_step(tok, &d, ids[i], out, sizeof out) : g3_tok_decode_flush(&d, out, sizeof out);
        if (k < 0) rc = cli_fail("detokenize", "%s (position %d)", g3_error(), i);
        else fwrite(out, 1, (size_t)k, stdout);
    }
    if (!rc && isatty(STDOUT_FILENO)) fputc('\n', stdout);
    if (fflush(stdout) != 0) rc = cli_fail("detokenize", "cannot write the output");
    g3_tok_free(tok);
    free(ids);
    return rc;
}
