// fuzz_examples.c: libFuzzer harness for the JSONL example reader (train/examples.h) with Gemma
// 3's real tokenizer: any bytes either fail with an error or give examples whose offsets,
// lengths (<= T+1), ids (< vocab), loss weights and labels are consistent, and whose padded
// batches and per-epoch order stay in range. First byte: T (1..64).
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "train/examples.h"

static G3Tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("G3_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizer/tokenizer.model";  // scripts/fuzz.sh runs in the repository root
    tok = g3_tok_load_ex(path, G3_TOK_LOAD_NO_CACHE);
    if (!tok) { fprintf(stderr, "fuzz_examples: %s\n", g3_error()); exit(1); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    int T = 1 + data[0] % 64, vocab = g3_tok_vocab_size(tok);
    G3Examples e;
    if (g3_examples_parse(&e, (const char *)data + 1, size - 1, "fuzz.jsonl", tok, T, vocab)) return 0;
    if (e.n < 1 || e.off[0] != 0 || (e.kind == G3_EX_PREF && e.n % 2)) abort();
    for (int64_t i = 0; i < e.n; i++) {
        int64_t L = e.off[i + 1] - e.off[i];
        if (L < 1 || L > T + 1 || L > e.max_len || e.w[e.off[i]]) abort();
        for (int64_t k = e.off[i]; k < e.off[i + 1]; k++)
            if (e.tok[k] < 0 || e.tok[k] >= vocab || e.tok[k] > e.max_id || e.w[k] > 1) abort();
        if (e.kind == G3_EX_CLASS && (e.label[i] < 0 || e.label[i] >= e.nlabels)) abort();
    }
    int32_t *in = malloc(sizeof *in * 2 * (size_t)T), *tg = malloc(sizeof *tg * 2 * (size_t)T);
    if (in && tg && e.kind == G3_EX_LM) {
        for (int64_t s = 0; s < 3 * e.n; s += 2) {
            if (g3_examples_batch(&e, 2, T, 7, s, in, tg)) abort();
            for (int r = 0; r < 2 * T; r++)
                if (in[r] < 0 || in[r] >= vocab || tg[r] < -1 || tg[r] >= vocab) abort();
        }
        g3_examples_val_batch(&e, 2, T, 1, in, tg);
    }
    free(in);
    free(tg);
    g3_examples_free(&e);
    return 0;
}
