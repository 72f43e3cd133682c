// vinit.c: a random vision tower and projector of a given shape, in memory (benchmarks,
// tests) or added to a checkpoint being written (`gemma3 init --shape 4b|12b|27b`), and the
// Gemma3ForConditionalGeneration config.json around a text config. Initialisation follows
// transformers' SigLIP: weights uniform with the given standard deviation, biases 0,
// LayerNorm weights 1; the soft-embedding norm's w = 0 (Gemma's 1 + w).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../io/safetensors.h"
#include "vision.h"

void g3_vision_preset(G3VisionConfig *vc, int text_hidden) {
    memset(vc, 0, sizeof *vc);
    // SigLIP So400m/14 at 896 pixels, as every Gemma 3 4B/12B/27B ships it
    vc->hidden = 1152;
    vc->inter = 4304;
    vc->layers = 27;
    vc->heads = 16;
    vc->image_size = 896;
    vc->patch = 14;
    vc->eps = 1e-6f;
    vc->tokens = 256;
    vc->image_token = 262144;
    vc->boi = 255999;
    vc->eoi = 256000;
    vc->text_hidden = text_hidden;
    for (int c = 0; c < 3; c++) vc->mean[c] = vc->std[c] = 0.5f;
    vc->rescale = 1.0 / 255.0;
    vc->pas_min_crop = 256, vc->pas_max_crops = 4, vc->pas_min_ratio = 1.2;
}

typedef struct {
    float **p;
    int n, cap;
} Owned;

static void *own(Owned *o, size_t bytes) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 64;
        float **np = g3_realloc(o->p, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        o->p = np;
        o->cap = cap;
    }
    void *d = g3_malloc_aligned(bytes ? bytes : 1);
    if (d) o->p[o->n++] = d;
    return d;
}

// n values uniform in [-a, a] (standard deviation std) from (seed, stream), or all `fixed`
// when std < 0; in f32, then converted to dt into dst.
static int fill(void *dst, G3DType dt, int64_t n, uint64_t seed, uint64_t stream, float std, float fixed) {
    float *f = dt == G3_F32 ? dst : g3_malloc((size_t)n * sizeof(float));
    if (!f) return -1;
    const float a = std * sqrtf(3.0f);
    const int64_t CH = 1 << 16;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < (n + CH - 1) / CH; ch++) {
        uint64_t x = seed * 0x9e3779b97f4a7c15ULL ^ stream << 32 ^ (uint64_t)ch;
        for (int64_t k = ch * CH; k < G3_MIN(n, (ch + 1) * CH); k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            f[k] = std < 0 ? fixed : a * (float)((double)(x >> 11) * 0x1.0p-53 * 2 - 1);
        }
    }
    if (f != dst) {
        g3_type(dt)->from_f32(dst, f, n);
        free(f);
    }
    return 0;
}

int g3_vision_random(G3Vision *v, const G3VisionConfig *vc, G3DType dt, uint64_t seed, float std) {
    memset(v, 0, sizeof *v);
    v->cfg = *vc;
    Owned o = {0};
    const int64_t D = vc->hidden, FF = vc->inter, P = vc->patch, NP = g3_vision_patches(vc), C = vc->text_hidden;
    uint64_t stream = 1;
    int bad = 0;
#define MAT(w, r, k)                                                                                                            \
    do {                                                                                                                        \
        void *d_ = own(&o, (size_t)g3_type_bytes(dt, (r) * (k)));                                                               \
        (w) = (G3Weight){dt, (r), (k), g3_type_row_bytes(dt, (k)), d_, G3_MEM_HOST};                                             \
        bad |= !d_ || fill(d_, dt, (r) * (k), seed, stream++, std, 0);                                                          \
    } while (0)
#define VEC(p, n, sd, fx)                                                                                                       \
    do {                                                                                                                        \
        (p) = own(&o, (size_t)(n) * sizeof(float));                                                                              \
        bad |= !(p) || fill((p), G3_F32, (n), seed, stream++, (sd), (fx));                                                      \
    } while (0)
    if (!(v->layer = g3_calloc((size_t)vc->layers, sizeof *v->layer))) return -1;
    MAT(v->patch, D, 3 * P * P);
    VEC(v->patch_b, D, -1, 0);
    VEC(v->pos, NP * D, std, 0);
    for (int l = 0; l < vc->layers && !bad; l++) {
        G3VisionLayer *y = &v->layer[l];
        VEC(y->ln1w, D, -1, 1); VEC(y->ln1b, D, -1, 0); VEC(y->ln2w, D, -1, 1); VEC(y->ln2b, D, -1, 0);
        MAT(y->q, D, D); MAT(y->k, D, D); MAT(y->v, D, D); MAT(y->o, D, D);
        VEC(y->qb, D, -1, 0); VEC(y->kb, D, -1, 0); VEC(y->vb, D, -1, 0); VEC(y->ob, D, -1, 0);
        MAT(y->fc1, FF, D); MAT(y->fc2, D, FF);
        VEC(y->fc1b, FF, -1, 0); VEC(y->fc2b, D, -1, 0);
    }
    VEC(v->post_w, D, -1, 1);
    VEC(v->post_b, D, -1, 0);
    VEC(v->soft_norm, D, -1, 0);
    VEC(v->proj, D * C, std, 0);
#undef MAT
#undef VEC
    v->owned = g3_malloc(sizeof(Owned));
    if (bad || !v->owned) {
        for (int i = 0; i < o.n; i++) g3_free_aligned(o.p[i]);
        free(o.p);
        free(v->layer);
        free(v->owned);
        memset(v, 0, sizeof *v);
        return g3_errorf("vision tower: out of memory for random weights");
    }
    *(Owned *)v->owned = o;
    v->aligned = 1;
    v->nparams = D * 3 * P * P + D + NP * D + (int64_t)vc->layers * (4 * D * D + 2 * D * FF + 9 * D + FF) + 3 * D + D * C;
    return 0;
}

int g3_vision_write(const G3Vision *v, STWriter *w) {
    const G3VisionConfig *c = &v->cfg;
    const int64_t D = c->hidden, FF = c->inter, P = c->patch, NP = g3_vision_patches(c);
    char n[160];
    const char *T = "vision_tower.vision_model.";
#define W(shape_nd, sh, wt) (st_writer_add(w, n, (wt).type, shape_nd, sh, (wt).data))
#define F(ptr, len) (st_writer_add(w, n, G3_F32, 1, (int64_t[]){len}, ptr))
    int64_t ps[4] = {D, 3, P, P}, pe[2] = {NP, D}, dd[2] = {D, D}, fd[2] = {FF, D}, df[2] = {D, FF}, pj[2] = {D, c->text_hidden};
    if ((snprintf(n, sizeof n, "%sembeddings.patch_embedding.weight", T), W(4, ps, v->patch)) ||
        (snprintf(n, sizeof n, "%sembeddings.patch_embedding.bias", T), F(v->patch_b, D)) ||
        (snprintf(n, sizeof n, "%sembeddings.position_embedding.weight", T), st_writer_add(w, n, G3_F32, 2, pe, v->pos)))
        return -1;
    for (int l = 0; l < c->layers; l++) {
        const G3VisionLayer *y = &v->layer[l];
        struct { const char *s; const G3Weight *m; const int64_t *sh; const float *b; int64_t bn; } mats[] = {
            {"self_attn.q_proj", &y->q, dd, y->qb, D}, {"self_attn.k_proj", &y->k, dd, y->kb, D}, {"self_attn.v_proj", &y->v, dd, y->vb, D},
            {"self_attn.out_proj", &y->o, dd, y->ob, D}, {"mlp.fc1", &y->fc1, fd, y->fc1b, FF}, {"mlp.fc2", &y->fc2, df, y->fc2b, D}};
        for (size_t i = 0; i < G3_ARRAY_LEN(mats); i++)
            if ((snprintf(n, sizeof n, "%sencoder.layers.%d.%s.weight", T, l, mats[i].s), W(2, mats[i].sh, *mats[i].m)) ||
                (snprintf(n, sizeof n, "%sencoder.layers.%d.%s.bias", T, l, mats[i].s), F(mats[i].b, mats[i].bn)))
                return -1;
        struct { const char *s; const float *p; } vecs[] = {{"layer_norm1.weight", y->ln1w}, {"layer_norm1.bias", y->ln1b},
                                                             {"layer_norm2.weight", y->ln2w}, {"layer_norm2.bias", y->ln2b}};
        for (size_t i = 0; i < G3_ARRAY_LEN(vecs); i++)
            if ((snprintf(n, sizeof n, "%sencoder.layers.%d.%s", T, l, vecs[i].s), F(vecs[i].p, D))) return -1;
    }
    if ((snprintf(n, sizeof n, "%spost_layernorm.weight", T), F(v->post_w, D)) || (snprintf(n, sizeof n, "%spost_layernorm.bias", T), F(v->post_b, D)) ||
        (snprintf(n, sizeof n, "multi_modal_projector.mm_soft_emb_norm.weight"), F(v->soft_norm, D)) ||
        (snprintf(n, sizeof n, "multi_modal_projector.mm_input_projection_weight"), st_writer_add(w, n, G3_F32, 2, pj, v->proj)))
        return -1;
#undef W
#undef F
    return 0;
}

int g3_vision_config_wrap(const char *path, const G3VisionConfig *c) {
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    while (len && (text[len - 1] == '\n' || text[len - 1] == ' ')) len--;
    size_t cap = len + 2048;
    char *out = g3_malloc(cap);
    if (!out) { free(text); return -1; }
    int n = snprintf(out, cap,
                     "{\n  \"architectures\": [\"Gemma3ForConditionalGeneration\"],\n  \"model_type\": \"gemma3\",\n"
                     "  \"boi_token_index\": %d,\n  \"eoi_token_index\": %d,\n  \"image_token_index\": %d,\n  \"mm_tokens_per_image\": %d,\n"
                     "  \"vision_config\": {\"model_type\": \"siglip_vision_model\", \"hidden_size\": %d, \"intermediate_size\": %d, "
                     "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"image_size\": %d, \"patch_size\": %d, "
                     "\"layer_norm_eps\": %.9g, \"hidden_act\": \"%s\", \"vision_use_head\": false},\n  \"text_config\": %.*s\n}\n",
                     c->boi, c->eoi, c->image_token, c->tokens, c->hidden, c->inter, c->layers, c->heads, c->image_size, c->patch,
                     c->eps, c->act_erf ? "gelu" : "gelu_pytorch_tanh", (int)len, text);
    free(text);
    int rc = n < 0 || (size_t)n >= cap ? g3_errorf("%s: config too large", path) : g3_write_file_atomic(path, out, (size_t)n);
    free(out);
    return rc;
}
