// decode.c: ids -> text, streaming. Each piece's `▁` becomes a space; a byte-fallback piece
// (<0xNN>) contributes one byte, held until it completes a UTF-8 character so that a caller
// printing step by step never splits one. Bytes that cannot become a valid character come out
// as U+FFFD, one per byte (Hugging Face's ByteFallback does this for a whole run of bytes when
// any of it is invalid; here the valid characters of such a run are kept — the only difference,
// and it needs ids that encoding never produces).
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok_internal.h"

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

void g3_tok_decoder_init(G3TokDecoder *d, int skip_special) {
    memset(d, 0, sizeof *d);
    d->skip_special = skip_special;
}

int g3_tok_decode_flush(G3TokDecoder *d, char *out, size_t cap) {
    if (cap < G3_TOK_DECODE_MAX) return g3_errorf("decode: output buffer under G3_TOK_DECODE_MAX bytes");
    int n = 0;
    for (int i = 0; i < d->npending; i++, n += 3) memcpy(out + n, REPLACEMENT, 3);
    d->npending = d->need = 0;
    return n;
}

// Bytes a UTF-8 sequence starting with b has in all, or 0 if b cannot start one.
static int seq_len(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

// Whether the held bytes plus b are still a prefix of a valid character.
static int continues(const G3TokDecoder *d, uint8_t b) {
    if ((b & 0xC0) != 0x80) return 0;
    if (d->npending == 1) {
        uint8_t c = d->pending[0];
        if (c == 0xE0 && b < 0xA0) return 0;  // overlong
        if (c == 0xED && b > 0x9F) return 0;  // surrogate
        if (c == 0xF0 && b < 0x90) return 0;  // overlong
        if (c == 0xF4 && b > 0x8F) return 0;  // past U+10FFFF
    }
    return 1;
}

static int put_byte(G3TokDecoder *d, uint8_t b, char *out) {
    int n = 0;
    if (d->npending) {
        if (continues(d, b)) {
            d->pending[d->npending++] = b;
            if (d->npending < d->need) return 0;
            memcpy(out, d->pending, (size_t)d->need);
            n = d->need;
            d->npending = d->need = 0;
            return n;
        }
        for (int i = 0; i < d->npending; i++, n += 3) memcpy(out + n, REPLACEMENT, 3);
        d->npending = d->need = 0;
    }
    int len = seq_len(b);
    if (len == 1) out[n++] = (char)b;
    else if (len == 0) { memcpy(out + n, REPLACEMENT, 3); n += 3; }
    else { d->pending[0] = b; d->npending = 1; d->need = len; }
    return n;
}

int g3_tok_decode_step(const G3Tokenizer *t, G3TokDecoder *d, int id, char *out, size_t cap) {
    if (cap < G3_TOK_DECODE_MAX) return g3_errorf("decode: output buffer under G3_TOK_DECODE_MAX bytes");
    if (id < 0 || id >= t->n_vocab || (t->flags[id] & TOKF_UNUSED)) return g3_errorf("decode: no token with id %d", id);
    uint8_t f = t->flags[id];
    const char *p = tok_piece_ptr(t, id);
    if (f & TOKF_BYTE) {
        unsigned v = 0;
        for (int i = 3; i < 5; i++) v = v * 16 + (unsigned)(p[i] <= '9' ? p[i] - '0' : p[i] - 'A' + 10);
        return put_byte(d, (uint8_t)v, out);
    }
    int n = 0;
    if (d->npending) n = g3_tok_decode_flush(d, out, cap);
    if (d->skip_special && (f & TOKF_SPECIAL)) return n;
    uint32_t len = tok_piece_len(t, id);
    if ((size_t)n + (size_t)len > cap) return g3_errorf("decode: piece %d longer than the output buffer", id);
    for (uint32_t i = 0; i < len; i++) {
        if ((uint8_t)p[i] == 0xE2 && i + 2 < len && (uint8_t)p[i + 1] == 0x96 && (uint8_t)p[i + 2] == 0x81) {
            out[n++] = ' ';
            i += 2;
        } else {
            out[n++] = p[i];
        }
    }
    return n;
}

char *g3_tok_decode(const G3Tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *len_out) {
    G3TokDecoder d;
    g3_tok_decoder_init(&d, skip_special);
    size_t len = 0, cap = 256;
    char *s = g3_malloc(cap);
    if (!s) return NULL;
    for (int i = 0; i <= n; i++) {
        if (len + G3_TOK_DECODE_MAX + 1 > cap) {
            while (len + G3_TOK_DECODE_MAX + 1 > cap) cap *= 2;
            char *ns = g3_realloc(s, cap);
            if (!ns) { free(s); return NULL; }
            s = ns;
        }
        int k = i < n ? g3_tok_decode_step(t, &d, ids[i], s + len, G3_TOK_DECODE_MAX)
                      : g3_tok_decode_flush(&d, s + len, G3_TOK_DECODE_MAX);
        if (k < 0) { free(s); return NULL; }
        len += (size_t)k;
    }
    s[len] = 0;
    if (len_out) *len_out = len;
    return s;
}
