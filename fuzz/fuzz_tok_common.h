// fuzz_tok_common.h: what the tokenizer fuzzers share: exercising a loaded tokenizer (encode
// with every flag, decode every id, streaming decode) and aborting on anything impossible.
#ifndef G3_FUZZ_TOK_COMMON_H
#define G3_FUZZ_TOK_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static int fuzz_valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int l = tok_utf8_len((const uint8_t *)s + i, n - i);
        if (!l) return 0;
        i += (size_t)l;
    }
    return 1;
}

// Encodes text both ways, checks ids and the decoded text; returns 0 or aborts.
static void fuzz_tok_roundtrip(const G3Tokenizer *tok, const char *text, size_t len, int add_bos, int parse_special) {
    int32_t *ids;
    int n = g3_tok_encode(tok, text, len, add_bos, parse_special, &ids);
    if (n < 0) return;  // only out of memory may fail
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= g3_tok_vocab_size(tok)) abort();
    size_t dl;
    int skip = add_bos && n > 0 && ids[0] == tok->bos_id;  // decode without the <bos>
    char *back = g3_tok_decode(tok, ids + skip, n - skip, 0, &dl);
    if (back) {
        if (!fuzz_valid_utf8(back, dl)) abort();
        // valid text without a literal `▁` (which decodes to a space) comes back exactly, if the
        // vocabulary can spell every byte
        int bytes = 1;
        for (int b = 0; b < 256; b++) bytes &= tok->byte_id[b] >= 0;
        if (bytes && fuzz_valid_utf8(text, len) && !memmem(text, len, "\xE2\x96\x81", 3) && tok->space_id >= 0 &&
            (dl != len || memcmp(back, text, len)))
            abort();
        free(back);
    }
    free(ids);
}

static void fuzz_tok_exercise(const G3Tokenizer *tok, const char *text, size_t len) {
    fuzz_tok_roundtrip(tok, text, len, 1, 1);
    fuzz_tok_roundtrip(tok, text, len, 0, 0);
    // every id decodes, streaming, into whole characters
    G3TokDecoder d;
    g3_tok_decoder_init(&d, 0);
    char out[G3_TOK_DECODE_MAX];
    int nv = g3_tok_vocab_size(tok);
    for (int id = 0; id < nv && id < 4096; id++) {
        int k = g3_tok_decode_step(tok, &d, id, out, sizeof out);
        if (k > 0 && !fuzz_valid_utf8(out, (size_t)k)) abort();
    }
    int k = g3_tok_decode_flush(&d, out, sizeof out);
    if (k < 0 || !fuzz_valid_utf8(out, (size_t)k)) abort();
}

#endif
