// json.h: a small, strict JSON reader (RFC 8259) for config.json, safetensors headers,
// tokenizer.json and prompt files. The whole document becomes one flat array of nodes in
// document order (a container's children follow it), so walking is pointer arithmetic and
// freeing is two free() calls. Strings are decoded (escapes, \u surrogate pairs) into one
// buffer, each NUL-terminated and also carrying its length (JSON strings may hold \u0000).
// Not a writer: output JSON is printed directly where it is produced, with every string
// through json_write_str, which guarantees valid UTF-8 (so valid JSON) whatever the bytes.
#ifndef G3_JSON_H
#define G3_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonNode {
    uint8_t type;      // JsonType
    uint32_t skip;     // nodes in this subtree including itself: next sibling = this + skip
    uint32_t count;    // children (array items or object members)
    uint32_t key_len;  // for object members: the member's key
    uint32_t str_len;  // for strings
    const char *key;   // NULL unless this node is an object member
    const char *str;   // decoded string (NUL-terminated), or the number's source text
    double num;
} JsonNode;

typedef struct {
    JsonNode *nodes;  // nodes[0] is the root
    size_t n, cap;
    char *strings;    // decoded strings live here
} Json;

// Parses text[0..len). On error returns -1 with a message "line L, column C: what".
int json_parse(Json *j, const char *text, size_t len);
// Reads and parses a file; errors name the file.
int json_parse_file(Json *j, const char *path);
void json_free(Json *j);

static inline const JsonNode *json_root(const Json *j) { return j->nodes; }
static inline const JsonNode *json_first(const JsonNode *n) { return n->count ? n + 1 : NULL; }
// Next sibling inside parent (pass the parent to know where it ends).
const JsonNode *json_next(const JsonNode *parent, const JsonNode *child);
// Object member by key (linear scan), or NULL. A key given twice means its last value, as in
// Python's json.
const JsonNode *json_get(const JsonNode *obj, const char *key);
// Array item by index (linear), or NULL.
const JsonNode *json_at(const JsonNode *arr, size_t i);

#define JSON_FOREACH(child, parent) \
    for (const JsonNode *child = json_first(parent); child; child = json_next(parent, child))

static inline int json_is_number(const JsonNode *n) { return n && n->type == JSON_NUMBER; }
static inline int json_is_string(const JsonNode *n) { return n && n->type == JSON_STRING; }
static inline int json_is_null(const JsonNode *n) { return !n || n->type == JSON_NULL; }
static inline int json_is_bool(const JsonNode *n) { return n && (n->type == JSON_TRUE || n->type == JSON_FALSE); }
// Whether a number node holds an integer literal (no fraction, no exponent) that fits in int64.
int json_is_int(const JsonNode *n);
// The exact value of an integer node (0 if !json_is_int).
int64_t json_int(const JsonNode *n);
// An integer node's value into *out if it lies in [lo, hi]: 0; not an integer literal: -1;
// outside [lo, hi] (or int64): -2.
int json_int_in(const JsonNode *n, int64_t lo, int64_t hi, int64_t *out);

// Writes s (len bytes) as a JSON string literal: quotes, backslashes and control characters
// escaped, and each byte that belongs to no valid UTF-8 character written as U+FFFD
// ("\ufffd"), so the output is valid JSON whatever s holds. Returns how many bytes were
// replaced, for the caller to record (a JSON field) or say.
size_t json_write_str(FILE *f, const char *s, size_t len);
// Length (1-4) of the valid UTF-8 character at s[0..n) (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0.
int json_utf8_len(const char *s, size_t n);
// s with every invalid byte replaced by U+FFFD, as json_write_str writes it, malloc'd and
// NUL-terminated (*out_len, *nbad may be NULL): to compare text with what a JSON file holds.
char *json_utf8_clean(const char *s, size_t len, size_t *out_len, size_t *nbad);

#endif
