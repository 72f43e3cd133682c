// quantize.c: a model into a GGUF file of a chosen type (see quantize.h).
#include "quantize.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../io/gguf.h"
#include "../io/gguf_gemma.h"
#include "../tensor/quant.h"
#include "../tokenizer/tok_gguf.h"

int g3_quant_opts_parse(G3QuantOpts *o, const char *name) {
    static const struct { const char *name; G3DType t; int mix; } names[] = {
        {"F32", G3_F32, 0},   {"F16", G3_F16, 0},   {"BF16", G3_BF16, 0}, {"Q8_0", G3_Q8_0, 0}, {"Q4_0", G3_Q4_0, 0},
        {"Q4_1", G3_Q4_1, 0}, {"Q5_0", G3_Q5_0, 0}, {"Q5_1", G3_Q5_1, 0}, {"Q4_K", G3_Q4_K, 0}, {"Q4_K_S", G3_Q4_K, 0},
        {"Q4_K_M", G3_Q4_K, 1}, {"Q5_K", G3_Q5_K, 0}, {"Q5_K_S", G3_Q5_K, 0}, {"Q5_K_M", G3_Q5_K, 1}, {"Q6_K", G3_Q6_K, 0},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(names); i++)
        if (!strcasecmp(name, names[i].name)) {
            o->type = names[i].t;
            o->mix_m = names[i].mix;
            return 0;
        }
    return g3_errorf("unknown type '%s' (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K)", name);
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between.
static int more_bits(int layer, int n) { return layer < n / 8 || layer >= 7 * n / 8 || (layer - n / 8) % 3 == 2; }

// A K-quant on rows that are not whole super-blocks: llama.cpp's fallback.
static G3DType fit(G3DType t, int64_t cols) {
    const G3TypeTraits *tt = g3_type(t);
    if (cols % tt->block == 0) return t;
    switch (t) {
    case G3_Q4_K: return cols % 32 == 0 ? G3_Q5_0 : G3_F16;
    case G3_Q5_K: return cols % 32 == 0 ? G3_Q5_1 : G3_F16;
    case G3_Q6_K: return cols % 32 == 0 ? G3_Q8_0 : G3_F16;
    default: return G3_F16;
    }
}

G3DType g3_quant_tensor_type(const G3Model *m, int i, const G3QuantOpts *o) {
    const G3Tensor *t = &m->t[i];
    if (t->kind == G3_KIND_NORM || t->ndim != 2) return G3_F32;
    if (o->types) return o->types[i];
    G3DType ty = o->type;
    if (t->kind == G3_KIND_EMBED) {
        if (o->embed_type >= 0) ty = (G3DType)o->embed_type;
        else if (o->mix_m) ty = G3_Q6_K;
    } else if (o->mix_m && (t->role == W_V || t->role == W_DOWN) && more_bits(t->layer, m->cfg.layers)) {
        ty = G3_Q6_K;
    }
    return fit(ty, t->shape[1]);
}

// general.file_type: llama.cpp's llama_ftype (not the ggml type id): what llama-bench and
// llama-cli print as the file's type ("Q4_K - Medium", ...). --auto files: "guessed".
static uint32_t llama_ftype(const G3QuantOpts *o) {
    if (o->types) return 1024;  // LLAMA_FTYPE_GUESSED: a mix of our own choosing
    switch (o->type) {
    case G3_F32: return 0;
    case G3_F16: return 1;
    case G3_Q4_0: return 2;
    case G3_Q4_1: return 3;
    case G3_Q8_0: return 7;
    case G3_Q5_0: return 8;
    case G3_Q5_1: return 9;
    case G3_Q4_K: return o->mix_m ? 15 : 14;
    case G3_Q5_K: return o->mix_m ? 17 : 16;
    case G3_Q6_K: return 18;
    case G3_BF16: return 32;
    default: return 0;
    }
}

static void write_meta(GGUFWriter *w, const G3Config *c) {
    const char *arch = c->family == G3_GEMMA3 ? "gemma3" : "gemma2";
    char key[128];
#define KEY(name) (snprintf(key, sizeof key, "%s.%s", arch, name), key)
    gguf_w_str(w, "general.architecture", arch);
    gguf_w_u32(w, KEY("context_length"), (uint32_t)c->max_pos);
    gguf_w_u32(w, KEY("embedding_length"), (uint32_t)c->hidden);
    gguf_w_u32(w, KEY("block_count"), (uint32_t)c->layers);
    gguf_w_u32(w, KEY("feed_forward_length"), (uint32_t)c->inter);
    gguf_w_u32(w, KEY("attention.head_count"), (uint32_t)c->heads);
    gguf_w_u32(w, KEY("attention.head_count_kv"), (uint32_t)c->kv_heads);
    gguf_w_u32(w, KEY("attention.key_length"), (uint32_t)c->head_dim);
    gguf_w_u32(w, KEY("attention.value_length"), (uint32_t)c->head_dim);
    gguf_w_f32(w, KEY("attention.layer_norm_rms_epsilon"), (float)c->eps);
    gguf_w_u32(w, KEY("attention.sliding_window"), (uint32_t)c->sliding_window);
    if (c->family == G3_GEMMA3) {
        gguf_w_f32(w, KEY("rope.freq_base"), (float)c->rope_global_base);
        if (c->rope_global_scale != 1.0) {
            gguf_w_str(w, KEY("rope.scaling.type"), "linear");
            gguf_w_f32(w, KEY("rope.scaling.factor"), (float)c->rope_global_scale);
        }
        if (c->query_pre_attn_scalar != (float)c->head_dim) gguf_w_f32(w, KEY("attention.scale"), (float)(1.0 / sqrt(c->query_pre_attn_scalar)));
    } else {
        gguf_w_f32(w, KEY("attn_logit_softcapping"), (float)c->attn_softcap);
        gguf_w_f32(w, KEY("final_logit_softcapping"), (float)c->final_softcap);
    }
#undef KEY
}

int g3_quantize_model(const G3Model *m, const char *tok_path, const G3QuantOpts *o, const char *path, int verbose) {
    GGUFWriter w;
    gguf_w_init(&w, 32);
    write_meta(&w, &m->cfg);
    gguf_w_str(&w, "general.name", "gemma3.c quantize");
    gguf_w_u32(&w, "general.file_type", llama_ftype(o));
    if (tok_path && g3_tok_write_gguf_meta(&w, tok_path, m->cfg.vocab)) {
        if (o->tok_required) {  // checked first: before the minutes of quantizing, and nothing written
            char why[512];
            snprintf(why, sizeof why, "%s", g3_error());  // g3_errorf may not read its own buffer
            gguf_w_free(&w);
            return g3_errorf("the tokenizer to carry: %s", why);
        }
        if (verbose) fprintf(stderr, "quantize: no tokenizer written (%s)\n", g3_error());
        g3_error_clear();
    }
    void **bufs = g3_calloc((size_t)m->nt, sizeof *bufs);
    if (!bufs) { gguf_w_free(&w); return -1; }
    int rc = 0;
    int64_t total = 0, params = 0;
    for (int i = 0; i < m->nt && !rc; i++) {
        const G3Tensor *t = &m->t[i];
        char name[128];
        if (gguf_gemma_gguf_name(t->name, name, sizeof name)) { rc = g3_errorf("no GGUF name for %s", t->name); break; }
        G3DType ty = g3_quant_tensor_type(m, i, o);
        int64_t nb = g3_type_bytes(ty, t->numel);
        void *d = nb > 0 ? g3_malloc((size_t)nb) : NULL;
        if (!d) { rc = -1; break; }
        const int64_t rows = t->ndim == 2 ? t->shape[0] : 1, cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        const int64_t rb = g3_type_row_bytes(ty, cols), srb = t->row_bytes;
        const G3TypeTraits *tt = g3_type(ty);
        const float *imp = o->importance && t->kind != G3_KIND_NORM ? o->importance[i] : NULL;
        int fail = 0;
        // row by row, so a 262144-row embedding never exists whole in f32
#pragma omp parallel
        {
            float *f = g3_malloc((size_t)cols * sizeof *f);
            if (!f) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(dynamic, 64)
            for (int64_t r = 0; r < rows; r++) {
                if (!f) continue;
                if (t->kind == G3_KIND_NORM) {
                    if (t->normf) memcpy(f, t->normf, (size_t)cols * sizeof *f);
                    else g3_to_f32(f, t->data, t->dtype, (size_t)cols);
                    for (int64_t k = 0; k < cols; k++) f[k] += 1.0f;  // the converter's 1 + w
                } else {
                    g3_to_f32(f, (const char *)t->data + r * srb, t->dtype, (size_t)cols);
                }
                if (imp) g3_quant_weighted(ty, (char *)d + r * rb, f, imp, cols);
                else tt->from_f32((char *)d + r * rb, f, cols);
            }
            free(f);
        }
        if (fail) { free(d); rc = -1; break; }
        bufs[i] = d;
        int64_t ne[2] = {cols, rows};
        rc = gguf_w_tensor(&w, name, ty, t->ndim, ne, d, nb);
        total += nb, params += t->numel;
        if (verbose)
            fprintf(stderr, "  %-28s %-5s [%lld x %lld]  %.3f bits/weight%s\n", name, tt->name, (long long)rows, (long long)cols,
                    8.0 * (double)nb / (double)t->numel, imp && g3_quant_weighted_has(ty) ? "  (weighted)" : "");
    }
    if (!rc) rc = gguf_w_write(&w, path);
    if (!rc && verbose)
        fprintf(stderr, "quantize: %s: %.1f MB, %.3f bits/weight over %lld parameters\n", path, total / 1e6, 8.0 * total / (double)params,
                (long long)params);
    for (int i = 0; i < m->nt; i++) free(bufs[i]);
    free(bufs);
    gguf_w_free(&w);
    return rc;
}
