// gguf_gemma.h: what llama.cpp's converter makes of a Gemma 2 / 3 checkpoint, read back: the
// config from the metadata (gguf_config.c) and the tensor names and conventions
// (source_gguf.c). The format itself is gguf.h's.
#ifndef G3_GGUF_GEMMA_H
#define G3_GGUF_GEMMA_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

// general.architecture: "gemma3" or "gemma2" into arch (cap bytes); -1 with a message naming
// the key for anything else (or none).
int gguf_gemma_arch(const GGUFFile *g, char *arch, size_t cap);

// A config.json of the Hub's form (malloc'd, *len bytes) from the metadata of g, whose
// architecture is arch, and vocab (token_embd's rows: the converter trims the embedding to
// the tokenizer's size, so the tensor, not any key, is the truth). Keys the converter leaves
// out take llama.cpp's defaults for the architecture (see gguf_config.c). -1 with a message
// naming the missing or malformed key.
int gguf_gemma_config_json(const GGUFFile *g, const char *arch, int64_t vocab, G3DType dtype, char **text, size_t *len);

// The GGUF name of a Hub tensor name (model.layers.3.mlp.up_proj.weight -> blk.3.ffn_up.weight):
// 0, or 1 if it has none. The reverse of what the source presents; for writers.
int gguf_gemma_gguf_name(const char *hub, char *out, size_t cap);

#endif
