// source.h: a weight source: the tensors of a checkpoint, by name, whatever the file format.
// The model loader (model/model.c) reads only through this, so a second format (GGUF) is a
// second source, not a second loader. Today's source: safetensors (a single file, a sharded
// set, or a folder holding either; source_safetensors.c).
//
// What a source is not: a model. It knows names, types, shapes and bytes; which tensors a
// model needs, under which name variants, is the loader's business. Tensors are handed out
// in place (memory-mapped) and stay valid until close.
#ifndef G3_SOURCE_H
#define G3_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"

typedef struct {
    const char *name;    // as stored
    G3DType type;
    int ndim;
    int64_t shape[8];
    const void *data;    // in place, valid until the source is closed
    int64_t nbytes;      // g3_type_bytes(type, numel), checked against the file
    const char *file;    // the file that holds it (a shard of a set), for messages
} G3SourceTensor;

typedef struct G3WeightSource G3WeightSource;
struct G3WeightSource {
    const char *kind;                     // "safetensors", "gguf"
    char path[4096];                      // for messages
    int nfiles;                           // files behind the source (shards)
    int (*find)(const G3WeightSource *s, const char *name, G3SourceTensor *out);  // 0 found, 1 absent, -1 error
    int (*count)(const G3WeightSource *s);
    int (*at)(const G3WeightSource *s, int i, G3SourceTensor *out);  // enumerate (for inspect, unmatched-key reports)
    // The hook for formats that carry their own config (GGUF's metadata): NULL, or a function
    // that returns 0 with *text a malloc'd config.json of the Hub's form (the caller frees it;
    // model/config.c parses and validates it as any config.json), 1 when this source has none
    // (then config.json beside the weights is read, as for safetensors), -1 on error.
    int (*config_json)(const G3WeightSource *s, char **text, size_t *len);
    void (*close)(G3WeightSource *s);
    void *impl;
};

// Opens path and picks the format from it: a folder or a .safetensors / .index.json path is
// safetensors (see st_open for which files of a folder it reads). 0, or -1 with a message
// naming the path. A path ending in .gguf is a GGUF file. *out is NULL on failure.
int g3_source_open(G3WeightSource **out, const char *path);
// Closes and frees s (NULL is fine).
void g3_source_close(G3WeightSource *s);

// Each format's opener (g3_source_open picks one).
int g3_source_open_safetensors(G3WeightSource **out, const char *path);
// A GGUF file of architecture gemma3 or gemma2 (source_gguf.c): tensors under the Hub's names
// and shapes, norms as the Hub stores them (w, not the converter's 1 + w), the config from the
// metadata through config_json.
int g3_source_open_gguf(G3WeightSource **out, const char *path);

#endif
