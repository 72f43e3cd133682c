// test_json.c: the JSON reader on valid documents, escapes, and malformed input.
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
    return check_done();
}
