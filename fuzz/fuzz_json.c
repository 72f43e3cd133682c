// fuzz_json.c: libFuzzer harness for the JSON reader: parse, then walk every node.
#include <stdint.h>
#include <stdlib.h>

#include "base/json.h"

static size_t walk(const JsonNode *n) {
    size_t k = 1;
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
