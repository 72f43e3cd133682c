// vmodel.c: the vision tower's and projector's tensors, from the weight source the text model
// was loaded through (model.h G3Model.src), under every name variant in use: the Hub's files
// for 4B+ (vision_tower.vision_model.*), transformers' save_pretrained (model.vision_tower.*,
// with or without vision_model.), and multi_modal_projector.* with or without model.
// Matrices stay in place in their stored type (the backend's linear reads them); vectors, the
// position table and the projection are widened to f32 copies (small; the projection is
// applied as x . W, which the f32 gemm does without a transposed copy).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"

typedef struct {
    float **p;
    int n, cap;
} Owned;

static const char *const TOWER[] = {"vision_tower.vision_model.", "vision_tower.", "model.vision_tower.vision_model.", "model.vision_tower."};
static const char *const PROJ[] = {"multi_modal_projector.", "model.multi_modal_projector."};

typedef struct {
    const G3Model *m;
    G3Vision *v;
    Owned own;
} Loader;

// Looks `rest` up under each prefix; checks the shape (ndim dims of shape). 0 or -1 (named).
static int find(Loader *L, const char *const *pre, int npre, const char *rest, int ndim, const int64_t *shape, G3SourceTensor *st) {
    const G3WeightSource *src = L->m->src;
    char name[256];
    for (int i = 0; i < npre; i++) {
        snprintf(name, sizeof name, "%s%s", pre[i], rest);
        int rc = src->find(src, name, st);
        if (rc < 0) return -1;
        if (rc > 0) continue;
        const char *file = st->file ? st->file : src->path;
        int ok = st->ndim == ndim;
        for (int d = 0; ok && d < ndim; d++) ok = st->shape[d] == shape[d];
        if (!ok) {
            char got[96] = "", want[96] = "";
            for (int d = 0; d < st->ndim; d++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)st->shape[d]);
            for (int d = 0; d < ndim; d++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "", (long long)shape[d]);
            return g3_errorf("%s: tensor '%s' has shape [%s] but config.json's vision_config implies [%s]", file, st->name, got, want);
        }
        const G3TypeTraits *tt = g3_type(st->type);
        if (!tt || !tt->is_float || !(tt->linear_backends & (1u << G3_BACKEND_CPU)) || tt->block != 1)
            return g3_errorf("%s: tensor '%s' has type %s; the vision tower's weights must be F32, BF16 or F16", file, st->name,
                             g3_dtype_name(st->type));
        int64_t numel = 1;
        for (int d = 0; d < ndim; d++) numel *= shape[d];
        L->v->nparams += numel;
        return 0;
    }
    return g3_errorf("%s: tensor '%s%s' is missing (config.json has a vision_config; also looked for it under %s%s)", src->path, pre[0], rest,
                     npre > 1 ? pre[1] : "", npre > 2 ? " and the other prefixes transformers writes" : "");
}

// An f32 copy of a tensor found by find().
static float *widen(Loader *L, const G3SourceTensor *st, int64_t numel) {
    if (L->own.n == L->own.cap) {
        int cap = L->own.cap ? 2 * L->own.cap : 64;
        float **np = g3_realloc(L->own.p, (size_t)cap * sizeof *np);
        if (!np) return NULL;
        L->own.p = np;
        L->own.cap = cap;
    }
    float *f = g3_malloc((size_t)numel * sizeof(float));
    if (!f) return NULL;
    g3_to_f32(f, st->data, st->type, (size_t)numel);
    L->own.p[L->own.n++] = f;
    return f;
}

static int vec(Loader *L, const char *const *pre, int npre, const char *rest, int64_t n, float **out) {
    G3SourceTensor st;
    if (find(L, pre, npre, rest, 1, &n, &st)) return -1;
    return (*out = widen(L, &st, n)) ? 0 : -1;
}

static int mat(Loader *L, const char *rest, int64_t rows, int64_t cols, G3Weight *w) {
    G3SourceTensor st;
    const int64_t shape[2] = {rows, cols};
    if (find(L, TOWER, G3_ARRAY_LEN(TOWER), rest, 2, shape, &st)) return -1;
    *w = (G3Weight){st.type, rows, cols, g3_type_row_bytes(st.type, cols), st.data, G3_MEM_HOST};
    return 0;
}

void g3_vision_free(G3Vision *v) {
    Owned *o = v->owned;
    if (o) {
        for (int i = 0; i < o->n; i++) {
            if (v->aligned) g3_free_aligned(o->p[i]);
            else free(o->p[i]);
        }
        free(o->p);
        free(o);
    }
    free(v->layer);
    memset(v, 0, sizeof *v);
}

int g3_vision_load(G3Vision *v, const G3Model *m) {
    memset(v, 0, sizeof *v);
    if (!m->src) return g3_errorf("the model was built in memory: it has no vision tower"), 1;
    if (strcmp(m->src->kind, "safetensors") != 0)
        return g3_errorf("%s: images need a model folder in the Hub's layout (config.json with vision_config and safetensors weights); "
                         "%s files carry no vision tower here", m->src->path, m->src->kind), 1;
    int rc = g3_vision_config_load(&v->cfg, m->dir);
    if (rc) return rc;
    G3VisionConfig *c = &v->cfg;
    if (c->text_hidden != m->cfg.hidden)
        return g3_errorf("%s: text_config.hidden_size %d differs from the loaded text model's %d", m->dir, c->text_hidden, m->cfg.hidden);
    if (c->image_token >= m->cfg.vocab || c->boi >= m->cfg.vocab || c->eoi >= m->cfg.vocab)
        return g3_errorf("%s: image_token_index %d / boi %d / eoi %d must lie in the vocabulary of %d", m->dir, c->image_token, c->boi,
                         c->eoi, m->cfg.vocab);
    Loader L = {m, v, {0}};
    const int64_t D = c->hidden, FF = c->inter, P = c->patch, NP = g3_vision_patches(c);
    v->layer = g3_calloc((size_t)c->layers, sizeof *v->layer);
    if (!v->layer) goto fail;
    {
        G3SourceTensor st;
        const int64_t ps[4] = {D, 3, P, P};
        if (find(&L, TOWER, G3_ARRAY_LEN(TOWER), "embeddings.patch_embedding.weight", 4, ps, &st)) goto fail;
        v->patch = (G3Weight){st.type, D, 3 * P * P, g3_type_row_bytes(st.type, 3 * P * P), st.data, G3_MEM_HOST};
        const int64_t pe[2] = {NP, D};
        if (find(&L, TOWER, G3_ARRAY_LEN(TOWER), "embeddings.position_embedding.weight", 2, pe, &st) || !(v->pos = widen(&L, &st, NP * D)))
            goto fail;
    }
    if (vec(&L, TOWER, G3_ARRAY_LEN(TOWER), "embeddings.patch_embedding.bias", D, &v->patch_b)) goto fail;
    for (int l = 0; l < c->layers; l++) {
        G3VisionLayer *y = &v->layer[l];
        char n[128];
#define M(field, suffix, r, k) (snprintf(n, sizeof n, "encoder.layers.%d.%s.weight", l, suffix), mat(&L, n, r, k, &y->field))
#define V(field, suffix, what, len) (snprintf(n, sizeof n, "encoder.layers.%d.%s.%s", l, suffix, what), vec(&L, TOWER, G3_ARRAY_LEN(TOWER), n, len, &y->field))
        if (V(ln1w, "layer_norm1", "weight", D) || V(ln1b, "layer_norm1", "bias", D) ||
            M(q, "self_attn.q_proj", D, D) || V(qb, "self_attn.q_proj", "bias", D) ||
            M(k, "self_attn.k_proj", D, D) || V(kb, "self_attn.k_proj", "bias", D) ||
            M(v, "self_attn.v_proj", D, D) || V(vb, "self_attn.v_proj", "bias", D) ||
            M(o, "self_attn.out_proj", D, D) || V(ob, "self_attn.out_proj", "bias", D) ||
            V(ln2w, "layer_norm2", "weight", D) || V(ln2b, "layer_norm2", "bias", D) ||
            M(fc1, "mlp.fc1", FF, D) || V(fc1b, "mlp.fc1", "bias", FF) ||
            M(fc2, "mlp.fc2", D, FF) || V(fc2b, "mlp.fc2", "bias", D))
            goto fail;
#undef M
#undef V
    }
    if (vec(&L, TOWER, G3_ARRAY_LEN(TOWER), "post_layernorm.weight", D, &v->post_w) ||
        vec(&L, TOWER, G3_ARRAY_LEN(TOWER), "post_layernorm.bias", D, &v->post_b) ||
        vec(&L, PROJ, G3_ARRAY_LEN(PROJ), "mm_soft_emb_norm.weight", D, &v->soft_norm))
        goto fail;
    {
        G3SourceTensor st;
        const int64_t ps[2] = {D, c->text_hidden};
        if (find(&L, PROJ, G3_ARRAY_LEN(PROJ), "mm_input_projection_weight", 2, ps, &st) || !(v->proj = widen(&L, &st, D * c->text_hidden)))
            goto fail;
    }
    v->owned = g3_malloc(sizeof(Owned));
    if (!v->owned) goto fail;
    *(Owned *)v->owned = L.own;
    return 0;
fail:
    for (int i = 0; i < L.own.n; i++) free(L.own.p[i]);
    free(L.own.p);
    free(v->layer);
    memset(v, 0, sizeof *v);
    return -1;
}
