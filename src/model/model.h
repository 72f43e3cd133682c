// model.h: a loaded Gemma model: its config and its one table of tensors. The table (names
// as in the checkpoint without prefix, shapes, roles) is the only list of parameters in the
// project: the loader, `init`, training (gradients, optimizer state), checkpoints and tests
// all walk it. Weights are memory-mapped and used in place; only the tiny norm vectors are
// copied, as f32 in their stored convention (the norm op adds Gemma's 1).
#ifndef G3_MODEL_H
#define G3_MODEL_H

#include <stdint.h>

#include "../io/safetensors.h"
#include "../tensor/weight.h"
#include "config.h"

// Per-layer tensor roles, in checkpoint order.
typedef enum {
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_Q_NORM, W_K_NORM, W_POST_ATTN_NORM,
    W_PRE_FFW_NORM, W_GATE, W_UP, W_DOWN, W_POST_FFW_NORM, W_PER_LAYER
} G3LayerRole;

typedef enum { G3_KIND_EMBED, G3_KIND_ATTN, G3_KIND_MLP, G3_KIND_NORM } G3Kind;

typedef struct {
    char name[96];       // e.g. "model.layers.3.self_attn.q_proj.weight" (canonical prefix "model.")
    int layer;           // -1 for embed and final norm
    int role;            // G3LayerRole, or -1 (embed) / -2 (final norm)
    G3Kind kind;
    int ndim;
    int64_t shape[2];    // [out, in] for matrices, [n] for norms
    int64_t numel;
    // set by the loader
    G3DType dtype;
    const void *data;    // in the mapping (or owned, for models built in memory)
    int64_t row_bytes, nbytes;  // bytes of one row (of shape[1] values; a vector: all) and in all
    float *normf;        // norms stored in another type than F32: their f32 copy (w, without the 1)
} G3Tensor;

typedef struct {
    G3Config cfg;
    G3Tensor *t;         // the table
    int nt;
    int layer_idx[G3_MAX_LAYERS][W_PER_LAYER];  // index into t, or -1 (e.g. no q_norm in Gemma 2)
    int embed_idx, final_norm_idx;
    STSet st;            // the mapped checkpoint (empty for models built in memory)
    char dir[4096];
    int64_t nparams;
} G3Model;

// Builds the table (names, shapes, roles) for a config; no data. 0 or -1.
int g3_model_table(G3Model *m, const G3Config *c);
// Loads a model folder (config.json + model.safetensors or a sharded set). Every tensor of
// the table must be present with the right shape and a float dtype; extra tensors (vision
// tower, projector) are ignored. Errors name the file and tensor.
int g3_model_load(G3Model *m, const char *dir);
// Points tensor i at data of type dt (for models built in memory: training, tests).
int g3_model_set(G3Model *m, int i, G3DType dt, const void *data);
void g3_model_free(G3Model *m);

static inline G3Weight g3_tensor_weight(const G3Tensor *t) {
    G3Weight w = {t->dtype, t->ndim == 2 ? t->shape[0] : 1, t->ndim == 2 ? t->shape[1] : t->shape[0], t->row_bytes, t->data, G3_MEM_HOST};
    return w;
}

static inline const G3Tensor *g3_layer_tensor(const G3Model *m, int l, G3LayerRole r) {
    int i = m->layer_idx[l][r];
    return i >= 0 ? &m->t[i] : NULL;
}

// Bytes of the weights as stored, and the KV cache bytes for one sequence of ctx tokens
// (elem_bytes per value), windowed (sliding layers keep W positions) or not.
int64_t g3_model_weight_bytes(const G3Model *m);
int64_t g3_kv_bytes(const G3Config *c, int ctx, int elem_bytes, int windowed);

#endif
