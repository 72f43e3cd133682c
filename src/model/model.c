// model.c: the tensor table, and loading a checkpoint into it.
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../base/base.h"

static const struct {
    const char *suffix;
    G3Kind kind;
} roles[W_PER_LAYER] = {
    [W_ATTN_NORM] = {"input_layernorm.weight", G3_KIND_NORM},
    [W_Q] = {"self_attn.q_proj.weight", G3_KIND_ATTN},
    [W_K] = {"self_attn.k_proj.weight", G3_KIND_ATTN},
    [W_V] = {"self_attn.v_proj.weight", G3_KIND_ATTN},
    [W_O] = {"self_attn.o_proj.weight", G3_KIND_ATTN},
    [W_Q_NORM] = {"self_attn.q_norm.weight", G3_KIND_NORM},
    [W_K_NORM] = {"self_attn.k_norm.weight", G3_KIND_NORM},
    [W_POST_ATTN_NORM] = {"post_attention_layernorm.weight", G3_KIND_NORM},
    [W_PRE_FFW_NORM] = {"pre_feedforward_layernorm.weight", G3_KIND_NORM},
    [W_GATE] = {"mlp.gate_proj.weight", G3_KIND_MLP},
    [W_UP] = {"mlp.up_proj.weight", G3_KIND_MLP},
    [W_DOWN] = {"mlp.down_proj.weight", G3_KIND_MLP},
    [W_POST_FFW_NORM] = {"post_feedforward_layernorm.weight", G3_KIND_NORM},
};

static G3Tensor *add(G3Model *m, const char *name, int layer, int role, G3Kind kind, int64_t d0, int64_t d1) {
    G3Tensor *t = &m->t[m->nt++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->layer = layer;
    t->role = role;
    t->kind = kind;
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = d1 ? d0 * d1 : d0;
    m->nparams += t->numel;
    return t;
}

int g3_model_table(G3Model *m, const G3Config *c) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->t = g3_calloc((size_t)(2 + c->layers * W_PER_LAYER), sizeof *m->t);
    if (!m->t) return -1;
    const int64_t C = c->hidden, F = c->inter, HD = c->head_dim, NH = c->heads, NKV = c->kv_heads;
    m->embed_idx = m->nt;
    add(m, "model.embed_tokens.weight", -1, -1, G3_KIND_EMBED, c->vocab, C);
    for (int l = 0; l < c->layers; l++) {
        for (int r = 0; r < W_PER_LAYER; r++) {
            m->layer_idx[l][r] = -1;
            if ((r == W_Q_NORM || r == W_K_NORM) && !c->qk_norm) continue;
            int64_t d0, d1 = 0;
            switch (r) {
            case W_Q: d0 = NH * HD; d1 = C; break;
            case W_K: case W_V: d0 = NKV * HD; d1 = C; break;
            case W_O: d0 = C; d1 = NH * HD; break;
            case W_Q_NORM: case W_K_NORM: d0 = HD; break;
            case W_GATE: case W_UP: d0 = F; d1 = C; break;
            case W_DOWN: d0 = C; d1 = F; break;
            default: d0 = C; break;
            }
            char name[96];
            snprintf(name, sizeof name, "model.layers.%d.%s", l, roles[r].suffix);
            m->layer_idx[l][r] = m->nt;
            add(m, name, l, r, roles[r].kind, d0, d1);
        }
    }
    m->final_norm_idx = m->nt;
    add(m, "model.norm.weight", -1, -2, G3_KIND_NORM, C, 0);
    return 0;
}

// Hub checkpoints name the text model's tensors under one of three prefixes: "model." (text
// models), "language_model.model." and "model.language_model." (multimodal ones, by
// transformers version).
int g3_model_source_tensor(const G3Model *m, const char *canonical, G3SourceTensor *out) {
    static const char *prefixes[] = {"model.", "language_model.model.", "model.language_model."};
    if (!m->src) return 1;
    const char *rest = canonical + strlen("model.");
    char name[160];
    for (size_t i = 0; i < G3_ARRAY_LEN(prefixes); i++) {
        snprintf(name, sizeof name, "%s%s", prefixes[i], rest);
        int rc = m->src->find(m->src, name, out);
        if (rc <= 0) return rc;
    }
    return 1;
}

// The types a weight may have on the CPU: those with real values and a CPU linear kernel
// (every tensor qualifies alike, so a norm stored in a strange type is caught here too).
static int cpu_weight_type(G3DType dt) {
    const G3TypeTraits *tt = g3_type(dt);
    return tt && tt->is_float && (tt->linear_backends & (1u << G3_BACKEND_CPU));
}

// "tensor 'x' has type I32, which is not a weight type; weights must be F32, BF16, F16, Q8_0, Q4_0, ... or Q6_K"
// (the list from the traits table). where: the file, or NULL for a model built in memory.
static int type_error(const char *where, const char *name, G3DType dt) {
    char list[256] = "";
    int n = 0, k = 0;
    for (int t = 0; t < G3_DTYPE_COUNT; t++) n += cpu_weight_type((G3DType)t);
    for (int t = 0; t < G3_DTYPE_COUNT; t++) {
        if (!cpu_weight_type((G3DType)t)) continue;
        k++;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k == 1 ? "" : k == n ? " or " : ", ", g3_dtype_name((G3DType)t));
    }
    const G3TypeTraits *tt = g3_type(dt);
    const char *why = !tt ? "which is unknown" : !tt->is_float ? "which is not a weight type" : "which has no CPU linear kernel";
    return g3_errorf("%s%stensor '%s' has type %s, %s; weights must be %s", where ? where : "", where ? ": " : "", name,
                     g3_dtype_name(dt), why, list);
}

// Sets dtype, data and the byte sizes; refuses a type no CPU kernel reads. where as above.
static int set_tensor(G3Model *m, int i, G3DType dt, const void *data, const char *where) {
    G3Tensor *t = &m->t[i];
    if (!cpu_weight_type(dt)) return type_error(where, t->name, dt);
    int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    int64_t rb = g3_type_row_bytes(dt, cols);
    if (rb < 0 || (rows && rb > INT64_MAX / rows))
        return g3_errorf("%s%stensor '%s': rows of %lld elements do not fit type %s (blocks of %d)", where ? where : "", where ? ": " : "",
                         t->name, (long long)cols, g3_dtype_name(dt), g3_type(dt)->block);
    t->dtype = dt;
    t->data = data;
    t->row_bytes = rb;
    t->nbytes = rows * rb;
    free(t->normf);
    t->normf = NULL;
    g3_free_aligned(t->packed);  // a repacked copy of the old data is stale now
    t->packed = NULL;
    if (t->kind != G3_KIND_NORM || dt == G3_F32) return 0;  // f32 norms are used where they lie
    t->normf = g3_malloc((size_t)t->numel * sizeof(float));
    if (!t->normf) return -1;
    g3_to_f32(t->normf, data, dt, (size_t)t->numel);
    return 0;
}

int g3_model_set(G3Model *m, int i, G3DType dt, const void *data) { return set_tensor(m, i, dt, data, NULL); }

// The config: the source's own if its format carries one (GGUF), else config.json in dir.
static int load_config(G3Config *c, const G3WeightSource *src, const char *dir) {
    char *text = NULL;
    size_t len = 0;
    int rc = src->config_json ? src->config_json(src, &text, &len) : 1;
    if (rc < 0) return -1;
    if (rc > 0) return g3_config_load(c, dir);
    rc = g3_config_parse(c, text, len, src->path);
    free(text);
    return rc;
}

// Fails with the message set by the caller, freeing what the load built so far.
static int load_fail(G3Model *m, G3WeightSource *src) {
    if (m->t) g3_model_free(m);
    else g3_source_close(src);
    return -1;
}

// Maps the pages of a mapped tensor now (as llama.cpp's loader does with MAP_POPULATE), so that
// the first forward pass, a prefill, does not take a page fault every few kilobytes of weights.
// Best effort: kernels before 5.14 (no MADV_POPULATE_READ) leave it to the faults.
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
static void prefault(const void *data, int64_t n) {
    const uintptr_t pg = 4096, a = (uintptr_t)data & ~(pg - 1);
    if (data && n > 0) (void)madvise((void *)a, (size_t)((uintptr_t)data + (uintptr_t)n - a), MADV_POPULATE_READ);
}

int g3_model_load(G3Model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    G3WeightSource *src;
    if (g3_source_open(&src, dir)) return -1;
    G3Config c;
    if (load_config(&c, src, dir) || g3_model_table(m, &c)) return load_fail(m, src);
    m->src = src;
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    for (int i = 0; i < m->nt; i++) {
        G3Tensor *t = &m->t[i];
        G3SourceTensor s;
        int rc = g3_model_source_tensor(m, t->name, &s);
        if (rc < 0) return load_fail(m, src);
        if (rc > 0) {
            g3_errorf("%s: tensor '%s' is missing (config.json asks for %d layers%s)", src->path, t->name, c.layers,
                      t->role == W_Q_NORM || t->role == W_K_NORM ? " with QK-norm" : "");
            return load_fail(m, src);
        }
        const char *file = s.file ? s.file : src->path;
        if (!cpu_weight_type(s.type)) {
            type_error(file, s.name, s.type);
            return load_fail(m, src);
        }
        int ok = s.ndim == t->ndim && s.shape[0] == t->shape[0] && (t->ndim == 1 || s.shape[1] == t->shape[1]);
        if (!ok) {
            char got[64] = "", want[64];
            for (int d = 0; d < s.ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)s.shape[d]);
            if (t->ndim == 1) snprintf(want, sizeof want, "%lld", (long long)t->shape[0]);
            else snprintf(want, sizeof want, "%lld, %lld", (long long)t->shape[0], (long long)t->shape[1]);
            g3_errorf("%s: tensor '%s' has shape [%s] but config.json implies [%s]", file, s.name, got, want);
            return load_fail(m, src);
        }
        if (set_tensor(m, i, s.type, s.data, file)) return load_fail(m, src);
        if (t->nbytes != s.nbytes) {  // a source's own check should have caught this: never read past a tensor
            g3_errorf("%s: tensor '%s' holds %lld bytes but its shape in %s needs %lld", file, s.name, (long long)s.nbytes,
                      g3_dtype_name(s.type), (long long)t->nbytes);
            return load_fail(m, src);
        }
        prefault(t->data, t->nbytes);
    }
    const char *rp = getenv("G3_REPACK");
    if (!(rp && !strcmp(rp, "0")) && g3_model_repack(m)) return load_fail(m, src);
    return 0;
}

void g3_model_free(G3Model *m) {
    if (m->t)
        for (int i = 0; i < m->nt; i++) free(m->t[i].normf), g3_free_aligned(m->t[i].packed), g3_free_aligned(m->t[i].copy);
    free(m->t);
    g3_source_close(m->src);
    memset(m, 0, sizeof *m);
}

int64_t g3_model_weight_bytes(const G3Model *m) {
    int64_t b = 0;
    for (int i = 0; i < m->nt; i++) b += m->t[i].nbytes;
    return b;
}

int64_t g3_kv_bytes(const G3Config *c, int ctx, int elem_bytes, int windowed) {
    int64_t per_pos = 2LL * c->kv_heads * c->head_dim * elem_bytes, total = 0;
    for (int l = 0; l < c->layers; l++) {
        int64_t n = windowed && c->sliding[l] ? G3_MIN(ctx, c->sliding_window) : ctx;
        total += n * per_pos;
    }
    return total;
}
