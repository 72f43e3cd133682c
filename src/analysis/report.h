// report.h: an analysis (analyze.h) as JSON (analysis.json) and as one self-contained HTML
// report (inline CSS and JS, the data embedded as JSON, nothing fetched: it works offline).
// Both are written atomically (temporary file + rename). Token text comes from the tokenizer
// when there is one, else the id is shown; text is escaped for JSON inside <script> (every
// '<', '>', '&' as \u00XX), and bytes that are not valid UTF-8 become U+FFFD, so any token is
// safe in either file.
#ifndef G3_REPORT_H
#define G3_REPORT_H

#include <stddef.h>

#include "analyze.h"
#include "io/image.h"
#include "tokenizer/tokenizer.h"

// An image of the first prompt (`analyze --image`): the positions of its soft tokens, a
// side x side grid of the picture in row-major order, and the picture the HTML report lays
// the attention over.
typedef struct {
    const char *file;    // as given
    int start, tokens;   // soft tokens at positions [start, start + tokens)
    const G3Image *pic;  // the square picture the model saw (NULL: the HTML shows the grid alone)
    // Inside the vision tower (analyze --tower), or NULL: per tower layer, [tower_heads][side^2]
    // the attention each patch receives (its pattern column's mean over the query patches).
    const float *const *tower;
    int tower_layers, tower_heads, tower_side;
} G3AnImage;

typedef struct {
    const char *model;        // model folder, as given
    const char *const *text;  // [n] prompt texts, or NULL (prompts given as ids)
    const G3Tokenizer *tok;   // NULL: tokens shown by id
    const G3Config *cfg;
    const G3AnImage *images;  // [nimages]: the first prompt's images, or NULL
    int nimages;
} G3AnMeta;

// A growable string (out of memory sets oom; the writers report it once, at the end).
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} G3Str;
void g3_str_put(G3Str *s, const char *d, size_t n);
void g3_str_puts(G3Str *s, const char *z);
void g3_str_printf(G3Str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// s as a JSON string literal, safe inside an HTML <script> element (see above).
void g3_str_json(G3Str *s, const char *z, size_t n);
void g3_str_free(G3Str *s);

// Display text of one token id into buf (NUL-terminated, cap >= 64): the tokenizer's decoding
// of the id alone; a byte-fallback piece that is not a whole character keeps its piece name
// ("<0xE2>"); without a tokenizer, the id in decimal.
void g3_an_token_text(char *buf, size_t cap, const G3Tokenizer *tok, int id);

// The analyses of n prompts as one JSON document. With images, the first prompt's result has
// "images": per image its file, start, tokens, side, "queries" (the positions after its run,
// the last ones where they would pass ~4M values) and "attn" [L][NH][queries][tokens]: the
// attention of each query to each soft token; in the HTML also "png" (a data: URL); with a
// tower, "tower": {layers, heads, side, "max": [layers][heads], "u8": base64 of
// [layers][heads][side^2] bytes b, the attention received = b / 255 * max}. patterns: also embed every head's
// attention pattern (the HTML report's data; lower triangles, 4 significant digits), for at
// most the first max_pattern_pos positions. 0 or -1.
int g3_an_json(G3Str *out, const G3Analysis *a, int n, const G3AnMeta *meta, int patterns, int max_pattern_pos);
int g3_an_write_json(const char *path, const G3Analysis *a, int n, const G3AnMeta *meta);
// The HTML report (report_html.c). 0 or -1.
int g3_an_write_html(const char *path, const G3Analysis *a, int n, const G3AnMeta *meta);

#endif
