// test_json.c: the JSON reader on valid documents, escapes, and malformed input.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"

static int parses(const char *s) {
    Json j;
    int rc = json_parse(&j, s, strlen(s));
    if (rc == 0) json_free(&j);
    return rc == 0;
}

int main(void) {
    Json j;
    const char *doc = "{\"a\": [1, 2.5, -3e2, {\"b\": null}], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\", \"t\": true, \"e\": {}}";
    CHECK(json_parse(&j, doc, strlen(doc)) == 0, "%s", g3_error());
    const JsonNode *r = json_root(&j);
    CHECK(r->type == JSON_OBJECT && r->count == 4, "root");
    const JsonNode *a = json_get(r, "a");
    CHECK(a && a->type == JSON_ARRAY && a->count == 4, "array");
    CHECK(json_at(a, 1)->num == 2.5 && json_at(a, 2)->num == -300, "numbers");
    CHECK(json_is_int(json_at(a, 0)) && !json_is_int(json_at(a, 1)), "int detection");
    CHECK(json_is_null(json_get(json_at(a, 3), "b")), "nested null");
    const JsonNode *s = json_get(r, "s");
    CHECK(s && s->str_len == 8 && !memcmp(s->str, "x\xc3\xa9\xf0\x9f\x98\x80\n", 8), "escapes decoded");
    CHECK(json_get(r, "t")->type == JSON_TRUE, "true");
    CHECK(json_get(r, "e")->count == 0 && json_next(r, json_get(r, "e")) == NULL, "last member");
    CHECK(json_get(r, "missing") == NULL, "missing key");
    json_free(&j);

    const char *bad[] = {"", "{", "[1,]", "{\"a\" 1}", "\"abc", "tru", "01", "1.", "-", "[1] x", "{\"a\":1,}",
                         "\"\\x\"", "\"\x01\"", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["};
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) CHECK(!parses(bad[i]), "accepted malformed input #%zu", i);
    CHECK(json_parse(&j, "{\n  \"a\": tru }", 14) != 0 && strstr(g3_error(), "line 2"), "error names the line: %s", g3_error());
    CHECK(parses(" [ ] ") && parses("0") && parses("-0.5e-3") && parses("\"\""), "edge cases");
    // the writer: always valid UTF-8, invalid bytes as U+FFFD and counted
    struct { const char *in; size_t n; const char *out; size_t bad; } w[] = {
        {"a\xff" "b\xc3", 4, "\"a\\ufffdb\\ufffd\"", 2},
        {"\xf0\x9f\x98\x80\xc3\xa9", 6, "\"\xf0\x9f\x98\x80\xc3\xa9\"", 0},   // valid 4- and 2-byte characters kept
        {"\xc0\x80", 2, "\"\\ufffd\\ufffd\"", 2},                           // overlong NUL
        {"\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"", 3},                  // a UTF-16 surrogate
        {"q\"\\\n\x01\x7f", 6, "\"q\\\"\\\\\\n\\u0001\\u007f\"", 0},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(w); i++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        size_t bad = json_write_str(f, w[i].in, w[i].n);
        fclose(f);
        CHECK(bad == w[i].bad && !strcmp(buf, w[i].out), "writer case %zu: '%s' (%zu replaced)", i, buf, bad);
        CHECK(json_parse(&j, buf, len) == 0, "writer case %zu does not parse back: %s", i, g3_error());
        if (w[i].bad == 0 && json_root(&j)) CHECK(json_root(&j)->str_len == w[i].n && !memcmp(json_root(&j)->str, w[i].in, w[i].n), "round trip %zu", i);
        json_free(&j);
        free(buf);
    }
    size_t cl, nb;
    char *c = json_utf8_clean("caf\xe9", 4, &cl, &nb);
    CHECK(c && cl == 6 && nb == 1 && !strcmp(c, "caf\xef\xbf\xbd"), "json_utf8_clean");
    free(c);

    // a key given twice means its last value, as in Python's json (config.json must mean here
    // what it means to transformers)
    const char *dup = "{\"a\": 1, \"b\": {\"c\": 2, \"c\": 3}, \"a\": [4], \"a\": 5}";
    CHECK(json_parse(&j, dup, strlen(dup)) == 0, "%s", g3_error());
    CHECK(json_get(json_root(&j), "a") && json_get(json_root(&j), "a")->num == 5, "duplicate key: the last wins");
    CHECK(json_get(json_get(json_root(&j), "b"), "c")->num == 3, "nested duplicate key: the last wins");
    json_free(&j);

    // integers are exact to int64 (not rounded through a double) and nothing beyond is an int
    const char *ints = "[9007199254740993, -9223372036854775808, 9223372036854775807, 9223372036854775808, "
                       "-9223372036854775809, 1e3, 1.0, -0, 10000000000]";
    CHECK(json_parse(&j, ints, strlen(ints)) == 0, "%s", g3_error());
    const JsonNode *in = json_root(&j);
    CHECK(json_int(json_at(in, 0)) == 9007199254740993LL, "2^53 + 1 exact: %lld", (long long)json_int(json_at(in, 0)));
    CHECK(json_is_int(json_at(in, 1)) && json_int(json_at(in, 1)) == INT64_MIN, "INT64_MIN");
    CHECK(json_is_int(json_at(in, 2)) && json_int(json_at(in, 2)) == INT64_MAX, "INT64_MAX");
    CHECK(!json_is_int(json_at(in, 3)) && !json_is_int(json_at(in, 4)), "beyond int64 is not an int");
    CHECK(!json_is_int(json_at(in, 5)) && !json_is_int(json_at(in, 6)), "1e3 and 1.0 are not integer literals");
    CHECK(json_is_int(json_at(in, 7)) && json_int(json_at(in, 7)) == 0, "-0");
    int64_t v = -7;
    CHECK(json_int_in(json_at(in, 8), 0, INT32_MAX, &v) == -2 && v == -7, "10^10 is outside int32, *out untouched");
    CHECK(json_int_in(json_at(in, 3), INT64_MIN, INT64_MAX, &v) == -2, "beyond int64: out of range");
    CHECK(json_int_in(json_at(in, 5), INT64_MIN, INT64_MAX, &v) == -1, "1e3: not an integer");
    CHECK(json_int_in(json_at(in, 8), 0, INT64_MAX, &v) == 0 && v == 10000000000LL, "10^10 in int64");
    CHECK(json_int_in(json_get(in, "x"), 0, 1, &v) == -1, "no node: not an integer");
    json_free(&j);
    return check_done();
}
