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
    return check_done();
}
