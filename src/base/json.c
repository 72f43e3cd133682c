// json.c: recursive-descent JSON reader into a flat node array (see json.h).
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"

enum { MAX_DEPTH = 256 };

typedef struct {
    const char *p, *start, *end;
    Json *j;
    char *sout;  // write cursor into j->strings
    int depth;
} Parser;

static int perr(Parser *ps, const char *what) {
    int line = 1, col = 1;
    for (const char *q = ps->start; q < ps->p && q < ps->end; q++) {
        if (*q == '\n') { line++; col = 1; } else col++;
    }
    return g3_errorf("line %d, column %d: %s", line, col, what);
}

static void skip_ws(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static long new_node(Parser *ps, JsonType t) {
    Json *j = ps->j;
    if (j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 256;
        JsonNode *nn = g3_realloc(j->nodes, cap * sizeof *nn);
        if (!nn) return -1;
        j->nodes = nn;
        j->cap = cap;
    }
    JsonNode *n = &j->nodes[j->n];
    memset(n, 0, sizeof *n);
    n->type = (uint8_t)t;
    n->skip = 1;
    return (long)j->n++;
}

static int hex4(const char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    else { *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63)); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    return o;
}

// Parses a string literal at ps->p (which is '"'); decoded bytes go to ps->sout.
static int parse_string(Parser *ps, const char **out, uint32_t *out_len) {
    ps->p++;
    char *o = ps->sout, *begin = o;
    for (;;) {
        // fast path: copy a run of plain bytes
        const char *q = ps->p;
        while (q < ps->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
        memcpy(o, ps->p, (size_t)(q - ps->p));
        o += q - ps->p;
        ps->p = q;
        if (ps->p >= ps->end) return perr(ps, "unterminated string");
        char c = *ps->p;
        if (c == '"') { ps->p++; break; }
        if ((unsigned char)c < 0x20) return perr(ps, "control character in string");
        // escape
        if (ps->p + 1 >= ps->end) return perr(ps, "unterminated escape");
        char e = ps->p[1];
        ps->p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (ps->end - ps->p < 4 || hex4(ps->p, &cp)) return perr(ps, "bad \\u escape");
            ps->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                unsigned lo;
                if (ps->end - ps->p >= 6 && ps->p[0] == '\\' && ps->p[1] == 'u' && !hex4(ps->p + 2, &lo) &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    ps->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    cp = 0xFFFD;  // lone high surrogate: replacement character, as most readers do
                }
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                cp = 0xFFFD;
            }
            o = put_utf8(o, cp);
            break;
        }
        default: return perr(ps, "bad escape in string");
        }
    }
    *o++ = 0;
    *out = begin;
    *out_len = (uint32_t)(o - begin - 1);
    ps->sout = o;
    return 0;
}

static int parse_value(Parser *ps);

static int parse_number(Parser *ps, long idx) {
    const char *s = ps->p;
    const char *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end) return perr(ps, "bad number");
    if (*q == '0') q++;
    else if (*q >= '1' && *q <= '9') while (q < ps->end && *q >= '0' && *q <= '9') q++;
    else return perr(ps, "bad number");
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') return perr(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') return perr(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    // copy the literal into the string buffer so strtod sees a terminated string
    char *o = ps->sout;
    memcpy(o, s, (size_t)(q - s));
    o[q - s] = 0;
    JsonNode *n = &ps->j->nodes[idx];
    n->num = strtod(o, NULL);
    n->str = o;
    n->str_len = (uint32_t)(q - s);
    ps->sout = o + (q - s) + 1;
    ps->p = q;
    return 0;
}

static int parse_container(Parser *ps, long idx, int is_obj) {
    if (++ps->depth > MAX_DEPTH) return perr(ps, "nesting too deep");
    ps->p++;
    skip_ws(ps);
    char close = is_obj ? '}' : ']';
    uint32_t count = 0;
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            skip_ws(ps);
            const char *key = NULL;
            uint32_t key_len = 0;
            if (is_obj) {
                if (ps->p >= ps->end || *ps->p != '"') return perr(ps, "expected a string key");
                if (parse_string(ps, &key, &key_len)) return -1;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return perr(ps, "expected ':'");
                ps->p++;
                skip_ws(ps);
            }
            size_t child = ps->j->n;
            if (parse_value(ps)) return -1;
            ps->j->nodes[child].key = key;
            ps->j->nodes[child].key_len = key_len;
            count++;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
            if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
            return perr(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    JsonNode *n = &ps->j->nodes[idx];
    n->count = count;
    n->skip = (uint32_t)(ps->j->n - (size_t)idx);
    ps->depth--;
    return 0;
}

static int parse_value(Parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) return perr(ps, "unexpected end of input");
    char c = *ps->p;
    long idx;
    switch (c) {
    case '{':
    case '[':
        if ((idx = new_node(ps, c == '{' ? JSON_OBJECT : JSON_ARRAY)) < 0) return -1;
        return parse_container(ps, idx, c == '{');
    case '"': {
        if ((idx = new_node(ps, JSON_STRING)) < 0) return -1;
        const char *s;
        uint32_t len;
        if (parse_string(ps, &s, &len)) return -1;
        ps->j->nodes[idx].str = s;
        ps->j->nodes[idx].str_len = len;
        return 0;
    }
    case 't':
    case 'f':
    case 'n': {
        const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        if ((size_t)(ps->end - ps->p) < wl || memcmp(ps->p, word, wl) != 0) return perr(ps, "unexpected word");
        if (new_node(ps, c == 't' ? JSON_TRUE : c == 'f' ? JSON_FALSE : JSON_NULL) < 0) return -1;
        ps->p += wl;
        return 0;
    }
    default:
        if (c == '-' || (c >= '0' && c <= '9')) {
            if ((idx = new_node(ps, JSON_NUMBER)) < 0) return -1;
            return parse_number(ps, idx);
        }
        return perr(ps, "unexpected character");
    }
}

int json_parse(Json *j, const char *text, size_t len) {
    memset(j, 0, sizeof *j);
    // node counts, string lengths and offsets are 32-bit
    if (len > (size_t)UINT32_MAX - 2) return g3_errorf("JSON text of %zu bytes is over 4 GiB", len);
    // Decoded strings and number literals never exceed the source length (plus a NUL each,
    // and each needs at least 2 source bytes), so one buffer of len+2 suffices.
    j->strings = g3_malloc(len + 2);
    if (!j->strings) return -1;
    Parser ps = {text, text, text + len, j, j->strings, 0};
    if (parse_value(&ps)) { json_free(j); return -1; }
    skip_ws(&ps);
    if (ps.p != ps.end) { perr(&ps, "trailing characters after the JSON value"); json_free(j); return -1; }
    return 0;
}

int json_parse_file(Json *j, const char *path) {
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    int rc = json_parse(j, text, len);
    free(text);
    if (rc) return g3_error_prefix("%s", path);
    return 0;
}

void json_free(Json *j) {
    free(j->nodes);
    free(j->strings);
    memset(j, 0, sizeof *j);
}

const JsonNode *json_next(const JsonNode *parent, const JsonNode *child) {
    const JsonNode *n = child + child->skip;
    return n < parent + parent->skip ? n : NULL;
}

// The last member wins, as in Python's json and JavaScript, so a config.json with a repeated key
// means here what it means to transformers.
const JsonNode *json_get(const JsonNode *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    size_t kl = strlen(key);
    const JsonNode *found = NULL;
    JSON_FOREACH(c, obj) if (c->key_len == kl && memcmp(c->key, key, kl) == 0) found = c;
    return found;
}

const JsonNode *json_at(const JsonNode *arr, size_t i) {
    if (!arr || arr->type != JSON_ARRAY || i >= arr->count) return NULL;
    const JsonNode *c = json_first(arr);
    while (i--) c = json_next(arr, c);
    return c;
}

// Integers are read from the literal, not from the double, so that every int64 is exact (a
// double holds integers exactly only up to 2^53). 1: an int64; 2: an integer literal beyond int64.
static int int_literal(const JsonNode *n, int64_t *v) {
    if (!n || n->type != JSON_NUMBER) return 0;
    for (uint32_t i = 0; i < n->str_len; i++)
        if (n->str[i] == '.' || n->str[i] == 'e' || n->str[i] == 'E') return 0;
    errno = 0;
    *v = (int64_t)strtoll(n->str, NULL, 10);
    return errno ? 2 : 1;
}

int json_is_int(const JsonNode *n) {
    int64_t v;
    return int_literal(n, &v) == 1;
}

int64_t json_int(const JsonNode *n) {
    int64_t v;
    return int_literal(n, &v) == 1 ? v : 0;
}

int json_int_in(const JsonNode *n, int64_t lo, int64_t hi, int64_t *out) {
    int64_t v;
    int k = int_literal(n, &v);
    if (k == 0) return -1;
    if (k == 2 || v < lo || v > hi) return -2;
    *out = v;
    return 0;
}

// ---- the writer side ----

int json_utf8_len(const char *str, size_t n) {
    const unsigned char *z = (const unsigned char *)str;
    if (n == 0) return 0;
    unsigned c = z[0];
    if (c < 0x80) return 1;
    int len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || (size_t)len > n) return 0;
    for (int i = 1; i < len; i++)
        if ((z[i] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && z[1] < 0xA0) return 0;  // overlong
    if (c == 0xED && z[1] > 0x9F) return 0;  // UTF-16 surrogates
    if (c == 0xF0 && z[1] < 0x90) return 0;  // overlong
    if (c == 0xF4 && z[1] > 0x8F) return 0;  // above U+10FFFF
    return len;
}

size_t json_write_str(FILE *f, const char *s, size_t len) {
    size_t bad = 0;
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            // JSON text is UTF-8 (RFC 8259 section 8.1): a byte that starts no valid character
            // (model output cut mid-character, Latin-1 prompts) becomes U+FFFD, counted
            int k = json_utf8_len(s + i, len - i);
            if (k) fwrite(s + i, 1, (size_t)k, f);
            else { fputs("\\ufffd", f); bad++; }
            i += k ? (size_t)k : 1;
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (c < 0x20 || c == 0x7F) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
        i++;
    }
    fputc('"', f);
    return bad;
}

char *json_utf8_clean(const char *s, size_t len, size_t *out_len, size_t *nbad) {
    char *out = g3_malloc(3 * len + 1), *o = out;  // each bad byte grows to 3 (EF BF BD)
    size_t bad = 0;
    if (!out) return NULL;
    for (size_t i = 0; i < len;) {
        int k = json_utf8_len(s + i, len - i);
        if (k) { memcpy(o, s + i, (size_t)k); o += k; i += (size_t)k; continue; }
        memcpy(o, "\xEF\xBF\xBD", 3);
        o += 3;
        i++;
        bad++;
    }
    *o = 0;
    if (out_len) *out_len = (size_t)(o - out);
    if (nbad) *nbad = bad;
    return out;
}
