// fuzz_json.c: libFuzzer harness for the JSON reader: parse, then walk every node. Also what the
// parsers built on it rely on: an object lookup finds the last member of that key (as Python's
// json does), and an integer node's exact value agrees with its double.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

static void check_number(const JsonNode *n) {
    if (!json_is_int(n)) return;
    int64_t v = json_int(n), w;
    if ((double)v != n->num) abort();  // both the correctly rounded value of the literal
    if (json_int_in(n, v, v, &w) != 0 || w != v) abort();
    if (v > INT64_MIN && json_int_in(n, INT64_MIN, v - 1, &w) != -2) abort();
}

// Every member whose key has no NUL is what json_get returns for it, unless a later one shares it.
static void check_object(const JsonNode *o) {
    if (o->count > 64) return;  // quadratic
    JSON_FOREACH(c, o) {
        if (strlen(c->key) != c->key_len) continue;
        const JsonNode *last = c;
        for (const JsonNode *d = json_next(o, c); d; d = json_next(o, d))
            if (d->key_len == c->key_len && !memcmp(d->key, c->key, c->key_len)) last = d;
        if (json_get(o, c->key) != last) abort();
    }
}

static size_t walk(const JsonNode *n) {
    size_t k = 1;
    if (n->type == JSON_NUMBER) check_number(n);
    if (n->type == JSON_OBJECT) check_object(n);
    if (n->type == JSON_ARRAY || n->type == JSON_OBJECT) JSON_FOREACH(c, n) k += walk(c);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Json j;
    if (json_parse(&j, (const char *)data, size) == 0) {
        if (walk(json_root(&j)) != j.n) abort();
        json_free(&j);
    }
    return 0;
}
