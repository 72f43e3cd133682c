// textstream.h: the text of one generated sequence as it grows, token by token: decoded
// without ever splitting a UTF-8 character, checked against stop strings, and released for
// display only once it can no longer turn out to be the start of a stop string (so a
// streamed answer never shows a stop string's first half).
#ifndef G3_TEXTSTREAM_H
#define G3_TEXTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "../tokenizer/tokenizer.h"

typedef struct {
    G3TokDecoder dec;
    char *text;          // everything decoded so far (NUL-terminated), cut at a stop string
    size_t len, cap;
    size_t shown;        // bytes already handed out by g3_ts_take
    const char *const *stops;
    int nstops;
    size_t hold;         // longest stop string - 1: bytes held back while a stop may be forming
    int stopped;         // a stop string was found
} G3TextStream;

int g3_ts_init(G3TextStream *ts, const char *const *stops, int nstops, int skip_special);
void g3_ts_free(G3TextStream *ts);
// Adds one token. Returns 1 if the text now contains a stop string (the text is cut before
// it), 0 otherwise, -1 on error.
int g3_ts_push(G3TextStream *ts, const G3Tokenizer *tok, int32_t id);
// Ends the sequence: held bytes become showable.
int g3_ts_finish(G3TextStream *ts);
// The bytes ready to show since the last call: *out points into ts->text. Returns the count.
size_t g3_ts_take(G3TextStream *ts, const char **out);

#endif
