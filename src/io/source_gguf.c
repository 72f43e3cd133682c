// source_gguf.c: a GGUF file (as llama.cpp's converter writes Gemma 2 / 3) as a weight source
// (see source.h). The file is mapped and validated by gguf.c; this layer translates:
//   - names: token_embd -> model.embed_tokens, blk.N.attn_q -> model.layers.N.self_attn.q_proj,
//     ... (table below); a name outside the table is listed as it is stored;
//   - shapes: ggml's ne is fastest-first, so ne = {in, out} is presented as [out, in];
//   - norms: the converter (Gemma2Model / Gemma3Model in convert_hf_to_gguf.py) stores every
//     "*norm.weight" of these architectures as 1 + w, always: there is no flag in the file,
//     the architecture is the signal. Gemma's norm applies (1 + w) itself, so each norm tensor
//     is presented as w = stored - 1, in f32 (a copy this source owns), and never shifted twice.
//     For |w| <= 0.5 the subtraction is exact (Sterbenz), so 1 + w gives back the stored bits.
//   - the config: config_json builds the Hub's config.json from the metadata (gguf_config.c).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "gguf_gemma.h"
#include "source.h"

typedef struct {
    char *name;             // Hub name (or the stored one)
    G3SourceTensor t;
} Entry;

typedef struct {
    GGUFFile f;
    char arch[16];
    int n;
    Entry *e;
    int *order;             // entries sorted by name
    float **norms;          // the f32 copies behind norm tensors (n of them, NULL where none)
} GGUFSource;

// blk.N.<gguf> -> model.layers.N.<hub>; norm marks the tensors stored as 1 + w.
static const struct { const char *gguf, *hub; int norm; } layer_names[] = {
    {"attn_q", "self_attn.q_proj", 0},           {"attn_k", "self_attn.k_proj", 0},
    {"attn_v", "self_attn.v_proj", 0},           {"attn_output", "self_attn.o_proj", 0},
    {"attn_q_norm", "self_attn.q_norm", 1},      {"attn_k_norm", "self_attn.k_norm", 1},
    {"attn_norm", "input_layernorm", 1},         {"post_attention_norm", "post_attention_layernorm", 1},
    {"ffn_norm", "pre_feedforward_layernorm", 1}, {"post_ffw_norm", "post_feedforward_layernorm", 1},
    {"ffn_gate", "mlp.gate_proj", 0},            {"ffn_up", "mlp.up_proj", 0},
    {"ffn_down", "mlp.down_proj", 0},
};

// The Hub name of a GGUF name into out; *norm set for a norm. 0 mapped, 1 kept as stored.
static int hub_name(const char *g, char *out, size_t cap, int *norm) {
    *norm = 0;
    if (!strcmp(g, "token_embd.weight")) { snprintf(out, cap, "model.embed_tokens.weight"); return 0; }
    if (!strcmp(g, "output_norm.weight")) { snprintf(out, cap, "model.norm.weight"); *norm = 1; return 0; }
    int layer, used = 0;
    if (sscanf(g, "blk.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0) {
        const char *rest = g + used, *dot = strrchr(rest, '.');
        if (dot && !strcmp(dot, ".weight"))
            for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++)
                if (strlen(layer_names[i].gguf) == (size_t)(dot - rest) && !memcmp(rest, layer_names[i].gguf, (size_t)(dot - rest))) {
                    snprintf(out, cap, "model.layers.%d.%s.weight", layer, layer_names[i].hub);
                    *norm = layer_names[i].norm;
                    return 0;
                }
    }
    snprintf(out, cap, "%s", g);
    return 1;
}

int gguf_gemma_gguf_name(const char *hub, char *out, size_t cap) {
    if (!strcmp(hub, "model.embed_tokens.weight")) { snprintf(out, cap, "token_embd.weight"); return 0; }
    if (!strcmp(hub, "model.norm.weight")) { snprintf(out, cap, "output_norm.weight"); return 0; }
    int layer, used = 0;
    if (sscanf(hub, "model.layers.%d.%n", &layer, &used) == 1 && used > 0 && layer >= 0) {
        const char *rest = hub + used;
        size_t n = strlen(rest);
        if (n > 7 && !strcmp(rest + n - 7, ".weight"))
            for (size_t i = 0; i < sizeof layer_names / sizeof *layer_names; i++)
                if (strlen(layer_names[i].hub) == n - 7 && !memcmp(rest, layer_names[i].hub, n - 7)) {
                    snprintf(out, cap, "blk.%d.%s.weight", layer, layer_names[i].gguf);
                    return 0;
                }
    }
    return 1;
}

static const GGUFSource *sort_src;
static int cmp_entry(const void *a, const void *b) { return strcmp(sort_src->e[*(const int *)a].name, sort_src->e[*(const int *)b].name); }

static int gg_find(const G3WeightSource *s, const char *name, G3SourceTensor *out) {
    const GGUFSource *g = s->impl;
    int lo = 0, hi = g->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(g->e[g->order[mid]].name, name);
        if (c == 0) { *out = g->e[g->order[mid]].t; return 0; }
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return 1;
}
static int gg_count(const G3WeightSource *s) { return ((const GGUFSource *)s->impl)->n; }
static int gg_at(const G3WeightSource *s, int i, G3SourceTensor *out) {
    const GGUFSource *g = s->impl;
    if (i < 0 || i >= g->n) return g3_errorf("%s: no tensor %d (it holds %d)", s->path, i, g->n);
    *out = g->e[i].t;
    return 0;
}

static int gg_config(const G3WeightSource *s, char **text, size_t *len) {
    const GGUFSource *g = s->impl;
    G3SourceTensor emb;
    if (gg_find(s, "model.embed_tokens.weight", &emb) != 0 || emb.ndim != 2)
        return g3_errorf("%s: tensor 'token_embd.weight' is missing or not a matrix (the vocabulary size is its rows)", s->path);
    return gguf_gemma_config_json(&g->f, g->arch, emb.shape[0], emb.type, text, len);
}

static void gg_free(GGUFSource *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) {
        free(g->e[i].name);
        if (g->norms) free(g->norms[i]);
    }
    free(g->e);
    free(g->order);
    free(g->norms);
    gguf_close(&g->f);
    free(g);
}
static void gg_close(G3WeightSource *s) {
    gg_free(s->impl);
    s->impl = NULL;
}

// Fills entry i from GGUF tensor t: Hub name and shape; a norm becomes its f32 w.
static int fill(GGUFSource *g, int i, const GGUFTensor *t) {
    char name[256];
    int norm;
    hub_name(t->name, name, sizeof name, &norm);
    if (!strcmp(t->name, "output.weight"))
        return g3_errorf("%s: tensor 'output.weight': a separate output head is not supported (Gemma ties it to token_embd)", g->f.path);
    Entry *e = &g->e[i];
    if (!(e->name = g3_strdup(name))) return -1;
    e->t.name = e->name;
    e->t.type = t->type;
    e->t.ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) e->t.shape[d] = t->ne[t->ndim - 1 - d];
    e->t.data = t->data;
    e->t.nbytes = t->nbytes;
    e->t.file = g->f.path;
    if (!norm) return 0;
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ndim != 1) return g3_errorf("%s: tensor '%s': a norm must be a vector, not %d-dimensional", g->f.path, t->name, t->ndim);
    float *w = g3_malloc((size_t)(n ? n : 1) * sizeof *w);
    if (!w) return -1;
    g3_to_f32(w, t->data, t->type, (size_t)n);
    for (int64_t k = 0; k < n; k++) w[k] -= 1.0f;  // the converter's 1 + w, undone once
    g->norms[i] = w;
    e->t.type = G3_F32;
    e->t.data = w;
    e->t.nbytes = n * (int64_t)sizeof(float);
    return 0;
}

int g3_source_open_gguf(G3WeightSource **out, const char *path) {
    *out = NULL;
    GGUFSource *g = g3_calloc(1, sizeof *g);
    if (!g) return -1;
    if (gguf_open(&g->f, path)) { free(g); return -1; }
    G3WeightSource *s = NULL;
    if (gguf_gemma_arch(&g->f, g->arch, sizeof g->arch)) goto fail;
    g->n = g->f.ntensors;
    g->e = g3_calloc((size_t)g->n + 1, sizeof *g->e);
    g->order = g3_malloc(((size_t)g->n + 1) * sizeof *g->order);
    g->norms = g3_calloc((size_t)g->n + 1, sizeof *g->norms);
    if (!g->e || !g->order || !g->norms) goto fail;
    for (int i = 0; i < g->n; i++) {
        if (fill(g, i, &g->f.tensors[i])) goto fail;
        g->order[i] = i;
    }
    sort_src = g;
    qsort(g->order, (size_t)g->n, sizeof *g->order, cmp_entry);
    for (int i = 1; i < g->n; i++)  // two GGUF names for one Hub name ("blk.01" and "blk.1")
        if (!strcmp(g->e[g->order[i]].name, g->e[g->order[i - 1]].name)) {
            g3_errorf("%s: two tensors map to '%s'", path, g->e[g->order[i]].name);
            goto fail;
        }
    if (!(s = g3_calloc(1, sizeof *s))) goto fail;
    s->kind = "gguf";
    snprintf(s->path, sizeof s->path, "%s", path);
    s->nfiles = 1;
    s->find = gg_find;
    s->count = gg_count;
    s->at = gg_at;
    s->config_json = gg_config;
    s->close = gg_close;
    s->impl = g;
    *out = s;
    return 0;
fail:
    gg_free(g);
    return -1;
}
