// adapter.h: LoRA adapters in Hugging Face PEFT's format, loaded for a model and applied by
// the model pass without merging (pass.c: after each adapted linear y = x . W^T the pass adds
// scale * (x . A^T) . B^T, PEFT's own order), or merged into a copy of the weights (merge.c).
//
// A PEFT adapter folder holds adapter_config.json (r, lora_alpha, target_modules, use_rslora,
// ...) and adapter_model.safetensors with tensors named, whatever their prefix,
//     ...layers.{i}.self_attn.{q,k,v,o}_proj.lora_{A,B}.weight
//     ...layers.{i}.mlp.{gate,up,down}_proj.lora_{A,B}.weight
// of shapes A [r, in] and B [out, r]. Every key must be one of these: a key left unmatched is
// an error naming it (an adapter we would apply only in part gives wrong logits silently).
// Values of any float type are converted to f32 once, at load, and must be finite.
//
// Training an adapter: train/lora.c builds one whose factors are trainable; g3_adapter_save
// writes it back in PEFT's format. What this is not: DoRA, per-module
// ranks (rank_pattern / alpha_pattern), LoRA on the embedding or head, modules_to_save: all
// refused at load by name.
#ifndef G3_ADAPTER_H
#define G3_ADAPTER_H

#include "../tensor/weight.h"
#include "model.h"

// One adapted linear layer: its two f32 factors as weight handles (host memory, owned by the
// adapter), so the backend's `linear` runs them like any weight.
typedef struct G3LoraModule {
    G3Weight A;  // F32 [r, in]
    G3Weight B;  // F32 [out, r]
} G3LoraModule;

typedef struct G3Adapter {
    char dir[4096];
    int r;          // rank (adapter_config.json "r"; every module has it)
    double alpha;   // lora_alpha
    int rslora;     // use_rslora: scale alpha / sqrt(r) instead of alpha / r
    float scale;    // what the low-rank term is multiplied by
    int layers;     // the model's layer count when loaded (the table below is valid up to it)
    int nmodules;   // adapted linear layers
    int max_out;    // widest B (rows): the pass's scratch for (x . A^T) . B^T is [R, max_out]
    // per layer and role (model.h G3LayerRole): A.data NULL where the layer is not adapted
    G3LoraModule mod[G3_MAX_LAYERS][W_PER_LAYER];
} G3Adapter;

// Loads the PEFT adapter in folder dir for model m (shapes are checked against m's tensors).
// NULL with a message naming the file, the field or the tensor.
G3Adapter *g3_adapter_load(const char *dir, const G3Model *m);
void g3_adapter_free(G3Adapter *a);
// Writes a as PEFT saves an adapter into dir: adapter_model.safetensors (F32 factors named
// base_model.model.model.layers.{i}.{self_attn|mlp}.{module}.lora_{A,B}.weight, shapes [r, in]
// and [out, r]) and then adapter_config.json (r, lora_alpha, use_rslora, the target modules
// present, lora_dropout, base_model_name_or_path = base_model), each file atomically.
int g3_adapter_save(const G3Adapter *a, const char *dir, const char *base_model, double dropout);

// The module adapting layer l's weight of role r, or NULL.
static inline const G3LoraModule *g3_adapter_module(const G3Adapter *a, int l, int r) {
    return a && l >= 0 && l < a->layers && r >= 0 && r < W_PER_LAYER && a->mod[l][r].A.data ? &a->mod[l][r] : NULL;
}

// w[out, in] += scale * B . A for one module, in f32 (sums in double): the merged weight.
void g3_lora_merge_f32(float *w, const G3LoraModule *mod, float scale);

// Writes model m with adapter a merged (W + scale * B . A, rounded to each weight's stored
// type) as a Hub folder: config.json (copied) and model.safetensors (sharded at 5 GB, every
// tensor of m's checkpoint under its stored name, those outside the text model copied as they
// are), each file atomic, weights first. Refuses a folder that already holds a model unless
// force, and the model's own folder always (its weights are mapped while we write).
int g3_adapter_merge_save(const G3Model *m, const G3Adapter *a, const char *out_dir, int force);

#endif
