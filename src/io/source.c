// source.c: opening a weight source by its path (see source.h).
#include "source.h"

#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int g3_source_open(G3WeightSource **out, const char *path) {
    *out = NULL;
    if (ends_with(path, ".gguf")) return g3_source_open_gguf(out, path);
    return g3_source_open_safetensors(out, path);
}

void g3_source_close(G3WeightSource *s) {
    if (!s) return;
    if (s->close) s->close(s);
    free(s);
}
