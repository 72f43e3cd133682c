// textstream.c: see textstream.h.
#include "textstream.h"

#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

int g3_ts_init(G3TextStream *ts, const char *const *stops, int nstops, int skip_special) {
    memset(ts, 0, sizeof *ts);
    g3_tok_decoder_init(&ts->dec, skip_special);
    ts->stops = stops;
    ts->nstops = nstops;
    for (int i = 0; i < nstops; i++) {
        size_t n = strlen(stops[i]);
        if (n > 0 && n - 1 > ts->hold) ts->hold = n - 1;
    }
    ts->cap = 256;
    ts->text = g3_malloc(ts->cap);
    if (!ts->text) return -1;
    ts->text[0] = 0;
    return 0;
}

void g3_ts_free(G3TextStream *ts) {
    free(ts->text);
    ts->text = NULL;
}

static int append(G3TextStream *ts, const char *s, size_t n) {
    if (ts->len + n + 1 > ts->cap) {
        size_t cap = (ts->len + n + 1) * 2;
        char *nt = g3_realloc(ts->text, cap);
        if (!nt) return -1;
        ts->text = nt;
        ts->cap = cap;
    }
    memcpy(ts->text + ts->len, s, n);
    ts->len += n;
    ts->text[ts->len] = 0;
    return 0;
}

// Looks for a stop string that ends in the newly added bytes (from `from` on).
static int check_stops(G3TextStream *ts, size_t from) {
    for (int i = 0; i < ts->nstops; i++) {
        size_t n = strlen(ts->stops[i]);
        if (n == 0) continue;
        size_t start = from >= n - 1 ? from - (n - 1) : 0;
        char *hit = memmem(ts->text + start, ts->len - start, ts->stops[i], n);
        if (hit) {
            ts->len = (size_t)(hit - ts->text);
            ts->text[ts->len] = 0;
            if (ts->shown > ts->len) ts->shown = ts->len;
            ts->stopped = 1;
            ts->hold = 0;
            return 1;
        }
    }
    return 0;
}

int g3_ts_push(G3TextStream *ts, const G3Tokenizer *tok, int32_t id) {
    if (ts->stopped) return 1;
    char buf[G3_TOK_DECODE_MAX];
    int n = g3_tok_decode_step(tok, &ts->dec, id, buf, sizeof buf);
    if (n < 0) return -1;
    size_t from = ts->len;
    if (append(ts, buf, (size_t)n)) return -1;
    return check_stops(ts, from);
}

int g3_ts_finish(G3TextStream *ts) {
    if (!ts->stopped) {
        char buf[G3_TOK_DECODE_MAX];
        int n = g3_tok_decode_flush(&ts->dec, buf, sizeof buf);
        if (n < 0) return -1;
        size_t from = ts->len;
        if (append(ts, buf, (size_t)n)) return -1;
        check_stops(ts, from);
    }
    ts->hold = 0;
    return 0;
}

size_t g3_ts_take(G3TextStream *ts, const char **out) {
    size_t ready = ts->len > ts->hold ? ts->len - ts->hold : 0;
    // never release part of a UTF-8 character that the hold cut through
    while (ready > ts->shown && ready < ts->len && ((unsigned char)ts->text[ready] & 0xC0) == 0x80) ready--;
    if (ready <= ts->shown) { *out = ts->text + ts->len; return 0; }
    *out = ts->text + ts->shown;
    size_t n = ready - ts->shown;
    ts->shown = ready;
    return n;
}
