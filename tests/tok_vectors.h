// tok_vectors.h: the tokenizer reference vectors (tests/data/tokenizer/vectors_public.jsonl:
// one JSON object a line with "text", "ids" and "add_bos"), read for the tests that compare a
// tokenizer with them (test_tokenizer, test_gguf_tok).
#ifndef G3_TOK_VECTORS_H
#define G3_TOK_VECTORS_H

#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"

typedef struct {
    char *text;
    size_t len;
    int32_t *ids;
    int n, add_bos;
} Vec;

static int load_vectors(const char *path, Vec **out) {
    size_t len;
    char *data = g3_read_file(path, &len);
    if (!data) return -1;
    int n = 0, cap = 256;
    Vec *v = malloc((size_t)cap * sizeof *v);
    for (char *line = data, *nl; *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        Json j;
        if (nl > line && json_parse(&j, line, (size_t)(nl - line)) == 0) {
            const JsonNode *r = json_root(&j), *t = json_get(r, "text"), *ids = json_get(r, "ids");
            if (n == cap) v = realloc(v, (size_t)(cap *= 2) * sizeof *v);
            Vec *x = &v[n++];
            x->len = t->str_len;
            x->text = malloc(t->str_len + 1);
            memcpy(x->text, t->str, t->str_len + 1);
            x->n = (int)ids->count;
            x->ids = malloc(((size_t)x->n + 1) * sizeof *x->ids);
            int k = 0;
            JSON_FOREACH(e, ids) x->ids[k++] = (int32_t)e->num;
            x->add_bos = json_get(r, "add_bos")->type == JSON_TRUE;
            json_free(&j);
        }
        if (!*nl) break;
    }
    free(data);
    *out = v;
    return n;
}

#endif
