// model.h: a loaded Gemma model: its config and its one table of tensors. The table (names
// as in the checkpoint without prefix, shapes, roles) is the only list of parameters in the
// project: the loader, `init`, training (gradients, optimizer state), checkpoints and tests
// all walk it. Weights come from a weight source (io/source.h: safetensors today), are
// memory-mapped and used in place in their stored type; only the tiny norm vectors are
// copied, as f32 in their stored convention (the norm op adds Gemma's 1). A tensor whose
// type has no CPU linear kernel (tensor/dtype.h's traits) is refused here, by name, so no
// kernel ever meets one.
#ifndef G3_MODEL_H
#define G3_MODEL_H

#include <stdint.h>

#include "../io/safetensors.h"  // not used here: kept for the writers that include only model.h
#include "../io/source.h"
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
    int64_t row_bytes;   // bytes of one stored row (of shape[1] elements; a norm: of shape[0])
    int64_t nbytes;      // bytes of the whole tensor as stored
    const void *data;    // in the mapping (or owned, for models built in memory)
    float *normf;        // norms stored in another type than F32: their f32 copy (w, without the 1)
    void *packed;        // NULL, or the weight repacked for the CPU kernels (model/repack.c; owned)
    void *copy;          // NULL, or the stored bytes copied into huge pages at load: data points
                         // to it (model/repack.c; owned)
} G3Tensor;

typedef struct {
    G3Config cfg;
    G3Tensor *t;         // the table
    int nt;
    int layer_idx[G3_MAX_LAYERS][W_PER_LAYER];  // index into t, or -1 (e.g. no q_norm in Gemma 2)
    int embed_idx, final_norm_idx;
    G3WeightSource *src; // where the weights come from (NULL for models built in memory)
    // A LoRA adapter the pass applies without merging (model/adapter.h), or NULL (the load
    // leaves it NULL). The caller owns it; set it before creating states, which size their
    // scratch from it.
    const struct G3Adapter *adapter;
    // The backend that states made from this model run on by default (forward.h
    // g3_state_new), or NULL for the CPU: a device backend keeps the weights' device copies,
    // uploaded once and shared by those states. The caller owns it (g3_backend_free after the
    // states and before the model).
    struct G3Backend *be;
    char dir[4096];
    int64_t nparams;
} G3Model;

// Builds the table (names, shapes, roles) for a config; no data. 0 or -1.
int g3_model_table(G3Model *m, const G3Config *c);
// Loads a model folder (config.json + model.safetensors or a sharded set) through a weight
// source. Every tensor of the table must be present (under the name the Hub uses for a text
// model or for the text half of a multimodal one) with the right shape and a weight type that
// has a CPU linear kernel (F32, BF16, F16); extra tensors (vision tower, projector) are
// ignored. Errors name the file and tensor (and the type, for one without a kernel).
int g3_model_load(G3Model *m, const char *dir);
// Points tensor i at data of type dt (for models built in memory: training, tests); sets
// row_bytes and nbytes. -1, naming the tensor and the type, for a type the loader refuses.
int g3_model_set(G3Model *m, int i, G3DType dt, const void *data);
// Finds the table's tensor `canonical` ("model.layers.0...") in m's source under each name
// the Hub uses. 0 found (out->name is the stored name), 1 absent (or no source), -1 error.
int g3_model_source_tensor(const G3Model *m, const char *canonical, G3SourceTensor *out);
void g3_model_free(G3Model *m);
// Repacks the weights that a CPU kernel reads faster in its own layout (Q4_0, Q8_0, Q5_0, Q4_K
// and Q6_K matrices, when the CPU has AVX512-VNNI: kernels/cpu/quant_q4x16.h, quant_q8x16.h,
// quant_q5x16.h, quant_q4kx16.h, quant_q6kx16.h) into t->packed, and copies every other
// matrix of a mapped GGUF into huge pages (t->copy, t->data pointing to it: the same bytes);
// g3_model_load calls it (G3_REPACK=0 in the environment: not). The stored bytes stay (saving,
// exact mode read them); a mapped file's pages of a repacked or copied tensor are released to
// the page cache, so the memory holds one copy. 0, or -1 out of memory (then nothing is
// repacked; the tensors already copied keep their copies).
int g3_model_repack(G3Model *m);

// The weight handle of t: a matrix [out, in] as stored, a vector as one row; host memory.
static inline G3Weight g3_tensor_weight(const G3Tensor *t) {
    G3Weight w;
    w.type = t->dtype;
    w.rows = t->ndim == 2 ? t->shape[0] : 1;
    w.cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    w.row_bytes = t->row_bytes;
    w.data = t->data;
    w.mem = G3_MEM_HOST;
    w.packed = t->packed;
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
