// source_safetensors.c: safetensors as a weight source (see source.h): a thin view of an
// STSet (safetensors.c does the mapping and every check on the file).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "safetensors.h"
#include "source.h"

static void fill_out(const STSet *st, const STTensor *t, G3SourceTensor *out) {
    memset(out, 0, sizeof *out);
    out->name = t->name;
    out->type = t->dtype;
    out->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) out->shape[d] = t->shape[d];
    out->data = t->data;
    out->nbytes = (int64_t)t->nbytes;
    out->file = st->paths[t->file];
}

static int st_src_find(const G3WeightSource *s, const char *name, G3SourceTensor *out) {
    const STSet *st = s->impl;
    const STTensor *t = st_find(st, name);
    if (!t) return 1;
    fill_out(st, t, out);
    return 0;
}

static int st_src_count(const G3WeightSource *s) { return ((const STSet *)s->impl)->ntensors; }

// In file order (shards in the order the index first names them), as inspect lists them.
static int st_src_at(const G3WeightSource *s, int i, G3SourceTensor *out) {
    const STSet *st = s->impl;
    if (i < 0 || i >= st->ntensors) return g3_errorf("%s: no tensor %d (it holds %d)", s->path, i, st->ntensors);
    fill_out(st, &st->tensors[i], out);
    return 0;
}

static void st_src_close(G3WeightSource *s) {
    if (s->impl) st_close(s->impl);
    free(s->impl);
    s->impl = NULL;
}

int g3_source_open_safetensors(G3WeightSource **out, const char *path) {
    *out = NULL;
    G3WeightSource *s = g3_calloc(1, sizeof *s);
    STSet *st = g3_calloc(1, sizeof *st);
    if (!s || !st) { free(s); free(st); return -1; }
    if (st_open(st, path)) { free(s); free(st); return -1; }
    s->kind = "safetensors";
    snprintf(s->path, sizeof s->path, "%s", st->nfiles == 1 ? st->paths[0] : path);
    s->nfiles = st->nfiles;
    s->find = st_src_find;
    s->count = st_src_count;
    s->at = st_src_at;
    s->config_json = NULL;  // config.json lies beside the weights
    s->close = st_src_close;
    s->impl = st;
    *out = s;
    return 0;
}
