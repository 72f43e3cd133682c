// config.h: a Gemma 2 / Gemma 3 text model's architecture, read from the Hub's config.json
// in all its forms (Gemma3ForCausalLM, Gemma3ForConditionalGeneration with text_config,
// Gemma2ForCausalLM; layer kinds from sliding_window_pattern or layer_types; RoPE from
// rope_theta/rope_local_base_freq/rope_scaling or the newer rope_parameters).
#ifndef G3_CONFIG_H
#define G3_CONFIG_H

#include <stdint.h>

#include "../tensor/dtype.h"

enum { G3_MAX_LAYERS = 256 };

typedef enum { G3_GEMMA2 = 2, G3_GEMMA3 = 3 } G3Family;
typedef enum { G3_GELU_TANH = 0, G3_GELU_ERF } G3Act;

typedef struct {
    G3Family family;
    char arch[64];         // "Gemma3ForCausalLM", ...
    int multimodal;        // config has text_config (the 4B+ layout)
    int vocab;             // V: embedding rows
    int hidden;            // C
    int inter;             // F: MLP width
    int layers;            // L
    int heads;             // NH: query heads
    int kv_heads;          // NKV: key/value heads (NH % NKV == 0)
    int head_dim;          // HD
    float query_pre_attn_scalar;  // scores scale = query_pre_attn_scalar^-0.5
    int sliding_window;    // W: query i sees key j iff 0 <= i - j < W on sliding layers
    double rope_global_base, rope_local_base;
    double rope_global_scale;     // linear position scaling on global layers (1 = none)
    double rope_local_scale;
    float attn_softcap, final_softcap;  // 0 = none
    float eps;
    int max_pos;
    int qk_norm;           // Gemma 3: per-head RMSNorm of q and k
    G3Act act;
    int bos, eos, pad;
    G3DType dtype;         // torch_dtype as declared (informative; tensors carry their own)
    uint8_t sliding[G3_MAX_LAYERS];  // 1 if layer i uses the sliding window
} G3Config;

// Reads config.json (path to the file or to a model folder). Errors name the file and field.
int g3_config_load(G3Config *c, const char *path);
// Parses config.json text (for tests and fuzzing); `name` is used in messages.
int g3_config_parse(G3Config *c, const char *text, size_t len, const char *name);
// Checks the numbers are consistent and in range (called by the loaders).
int g3_config_validate(const G3Config *c, const char *name);
// The built-in shapes of `gemma3 init` and `train --init`: "270m", "1b", "4b", "12b", "27b",
// "tiny" (the fixtures' shape) and "stories" (from-scratch TinyStories on a CPU). -1 if unknown.
int g3_config_preset(G3Config *c, const char *name);
// Writes a config.json the Hub's loaders accept for c.
int g3_config_write(const G3Config *c, const char *path);

#endif
