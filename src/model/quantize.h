// quantize.h: a model written as a GGUF file in a chosen type, as llama.cpp's converter and
// llama-quantize lay it out (ggml names, the converter's metadata keys, norms f32 stored as
// 1 + w, the tokenizer in the metadata), so that our reader and llama.cpp both load it.
//
// Types per tensor: norms stay F32; every matrix gets the file type, with llama.cpp's rules
// for the _M mixes (Q4_K_M / Q5_K_M: attn_v and ffn_down of the first and last eighth of the
// layers and every third layer between get Q6_K, and so does the embedding, which is also the
// output layer); a K-quant needs rows of a multiple of 256 elements and falls back as
// llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0) where they are not.
#ifndef G3_QUANTIZE_H
#define G3_QUANTIZE_H

#include "model.h"

typedef struct {
    G3DType type;       // the file's type for matrices
    int mix_m;          // 1: the _M mixing rules
    int embed_type;     // -1: by the rules; else the embedding's type (e.g. G3_BF16: keep it)
    const G3DType *types;  // NULL, or each tensor's type (quantize_auto.h's choice): overrides the rest
    float *const *importance;  // NULL, or per tensor NULL or [shape[1]] column importances
                               // (quantize_imatrix.h): that matrix's rounding weighted by them
    int tok_required;   // 1: a tokenizer at tok_path that does not load is an error (one the
                        // user named), not a file written without it
} G3QuantOpts;

// Parses "Q4_K_M", "Q8_0", "BF16", ... into o (the rest of o untouched). 0, or -1 naming it.
int g3_quant_opts_parse(G3QuantOpts *o, const char *name);
// The type tensor i of m gets under o.
G3DType g3_quant_tensor_type(const G3Model *m, int i, const G3QuantOpts *o);
// Writes m to path (atomically), with the tokenizer at tok_path (file, folder or GGUF; NULL
// or not found: none, unless o->tok_required). Reports each tensor's type on stderr when verbose. 0 or -1.
int g3_quantize_model(const G3Model *m, const char *tok_path, const G3QuantOpts *o, const char *path, int verbose);

#endif
