// safetensors.h: reading (memory-mapped, validated) and writing the safetensors format,
// single files and sharded sets (model.safetensors.index.json).
// Reading never trusts the file: the header length, every dtype, shape and offset range is
// checked against the file size before any tensor is handed out, and tensors may not overlap.
#ifndef G3_SAFETENSORS_H
#define G3_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    G3DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const void *data;  // into the mapping
    int file;          // which file of the set
} STTensor;

typedef struct {
    int nfiles;
    char **paths;
    void **maps;
    size_t *map_sizes;
    STTensor *tensors;
    int ntensors;
    int *order;  // tensor indices sorted by name, for lookup
} STSet;

// Opens path, which is a .safetensors file, a model.safetensors.index.json, or a folder
// holding either; a folder holding both opens model.safetensors, in transformers' order
// (from_pretrained looks for model.safetensors first, then the index). Returns -1 with a
// message naming the file and the problem.
int st_open(STSet *s, const char *path);
void st_close(STSet *s);
const STTensor *st_find(const STSet *s, const char *name);
int64_t st_numel(const STTensor *t);

// Writing: collect tensors (pointers are borrowed until st_write), then write the file
// atomically. Data is copied as given (dtype already converted by the caller).
typedef struct {
    const char *name;
    G3DType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    // Optional: when data is NULL the writer calls fill(ctx, t, buf) for a buffer of the
    // tensor's size just before writing it, so huge checkpoints never sit in memory whole.
    int (*fill)(void *ctx, const void *out, void *buf);
    void *ctx;
} STOut;

typedef struct {
    STOut *t;
    int n, cap;
    char **owned;  // names / buffers owned by the writer (freed by st_writer_free)
    int nowned, capowned;
} STWriter;

int st_writer_add(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape, const void *data);
// As st_writer_add, but the writer takes ownership of data (freed in st_writer_free).
int st_writer_add_owned(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape, void *data);
// As st_writer_add, with data produced on demand by fill (see STOut).
int st_writer_add_fill(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape,
                       int (*fill)(void *ctx, const void *out, void *buf), void *ctx);
// Writes all tensors to one file; metadata (may be NULL) is a JSON object body's string pairs.
int st_writer_write(STWriter *w, const char *path, const char *metadata_format);
// Writes shards of at most max_shard_bytes each plus model.safetensors.index.json into dir
// (a single model.safetensors if everything fits in one shard), replacing the other layout:
// the new one is written whole first (each file atomically), then what the old one leaves
// behind is removed (a single write: the old index, then its shards; a sharded write: the
// old model.safetensors, then old shards it did not overwrite), then the folder is fsynced.
// A crash at any point leaves a folder that loads one complete model, the old or the new
// (st_open's order), except that a sharded write over an old index with the same shard
// names replaces those shards one by one. Shards to remove are taken only from the old
// index's weight_map, and only as plain file names inside dir.
int st_writer_write_sharded(STWriter *w, const char *dir, size_t max_shard_bytes);
void st_writer_free(STWriter *w);

#endif
