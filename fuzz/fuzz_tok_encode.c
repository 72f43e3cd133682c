// fuzz_tok_encode.c: libFuzzer harness for the encoder and decoder with Gemma 3's real
// vocabulary: any bytes (valid UTF-8 or not, with or without special-token text) encode to ids in
// range, decode to valid UTF-8, and valid text without a literal `▁` comes back exactly. Also the
// chat encoder with the input as a user turn. First byte: flags.
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "fuzz_tok_common.h"

static G3Tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *path = getenv("G3_FUZZ_TOKENIZER");
    if (!path) path = "tests/data/tokenizer/tokenizer.model";  // scripts/fuzz.sh runs in the repository root
    tok = g3_tok_load_ex(path, G3_TOK_LOAD_NO_CACHE);
    if (!tok) { fprintf(stderr, "fuzz_tok_encode: %s\n", g3_error()); exit(1); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    fuzz_tok_roundtrip(tok, text, len, data[0] & 1, (data[0] >> 1) & 1);
    if (data[0] & 4) {
        char *z = malloc(len + 1);
        memcpy(z, text, len);
        z[len] = 0;
        G3ChatTurn turn = {"user", z};
        int32_t *ids;
        int n = g3_chat_encode(tok, &turn, 1, (data[0] & 8) ? z : NULL, 1, &ids);
        if (n >= 0) {
            int eot = 0;
            for (int i = 0; i < n; i++) eot += ids[i] == g3_tok_end_of_turn(tok);
            if (eot != 1) abort();  // user text must never produce <end_of_turn>
            free(ids);
        }
        free(z);
    }
    return 0;
}
