// gguf.h: the GGUF reader (ggml's single-file model format, versions 2 and 3) and a small
// writer. The reader maps the file and validates all of it up front, as safetensors.c does:
// magic, version, counts against the room the file has, every string length, every metadata
// value type and array length, tensor dimensions and types, offsets against the data block
// and general.alignment, overlapping tensors. After gguf_parse succeeds every KV and tensor
// handed out lies inside the bytes it was given.
//
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 KV count; the KVs (key
// string, u32 value type, value); the tensor infos (name string, u32 ndim, u64 ne[ndim], u32
// ggml type, u64 offset into the data block); padding to general.alignment (default 32); the
// data block. A string is a u64 length and that many bytes (no NUL). ggml's ne[0] is the
// fastest-moving dimension: a matrix [out, in] is stored with ne = {in, out}.
//
// This layer knows the format, not models: the names (blk.N.attn_q) and conventions of
// llama.cpp's converter are source_gguf.c's business, the config gguf_config.c's.
#ifndef G3_GGUF_H
#define G3_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"

// Metadata value types, as the format numbers them.
typedef enum {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_TYPE_COUNT
} GGUFType;

// ggml's tensor type ids for the types gemma3.c reads (the others are named in messages).
enum {
    GGML_F32 = 0, GGML_F16 = 1, GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8,
    GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_BF16 = 30
};

enum { GGUF_MAX_DIMS = 4, GGUF_MAX_NAME = 64, GGUF_DEFAULT_ALIGNMENT = 32 };

typedef struct {
    char *key;              // NUL-terminated copy
    GGUFType type;          // GGUF_ARRAY: elements of arr_type
    GGUFType arr_type;
    uint64_t n;             // array length; 1 for a scalar
    const uint8_t *value;   // in the file: the scalar, the string's bytes, or the first element
    uint64_t str_len;       // a scalar string's length
} GGUFKV;

typedef struct {
    char *name;             // NUL-terminated copy
    int ggml_type;
    G3DType type;           // the G3DType of ggml_type
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];  // ggml order (ne[0] fastest); unused dims 1
    uint64_t offset;        // into the data block
    int64_t nbytes;         // g3_type_bytes(type, numel)
    const void *data;       // in the file
} GGUFTensor;

typedef struct GGUFFile {
    char path[4096];        // for messages
    const uint8_t *base;    // the file's bytes
    size_t size;
    void *map;              // non-NULL when gguf_open mapped it
    uint32_t version, alignment;
    int nkv, ntensors;
    GGUFKV *kv;
    GGUFTensor *tensors;
    size_t data_start;      // offset of the data block
} GGUFFile;

// Validates the GGUF in data[0, size) (kept, not copied: it must outlive g). 0, or -1 with a
// message naming `name` and the key or tensor at fault; g is left closed on failure.
int gguf_parse(GGUFFile *g, const void *data, size_t size, const char *name);
// Maps path read-only and parses it.
int gguf_open(GGUFFile *g, const char *path);
void gguf_close(GGUFFile *g);

// ggml's name of a type id ("Q4_K"), or NULL if unknown.
const char *gguf_ggml_type_name(int ggml_type);
// The ggml type id of a G3DType, or -1 if GGUF has none.
int gguf_ggml_type_of(G3DType t);

const GGUFKV *gguf_kv(const GGUFFile *g, const char *key);
const GGUFTensor *gguf_tensor(const GGUFFile *g, const char *name);
// Typed getters: 0 with *out set, 1 if the key is absent, -1 (message naming the key) if its
// value has another type. An integer getter takes any integer type whose value fits; a float
// getter takes F32 or F64 (and integers); a string getter points into the file (not NUL-ended).
int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out);
int gguf_get_float(const GGUFFile *g, const char *key, double *out);
int gguf_get_str(const GGUFFile *g, const char *key, const char **s, size_t *len);

// ---- writer (tests today; `gemma3 quantize` later) ----
// Collects metadata and tensors in memory and writes a version-3 file atomically, with the
// given alignment (general.alignment is written when it differs from 32).
typedef struct GGUFWriter {
    uint8_t *kv; size_t kv_len, kv_cap; int nkv;
    struct GGUFWTensor { char *name; int ggml_type; int ndim; int64_t ne[GGUF_MAX_DIMS]; const void *data; int64_t nbytes; } *t;
    int nt;
    uint32_t alignment;
    int failed;             // an allocation failed: gguf_w_write reports it
} GGUFWriter;

void gguf_w_init(GGUFWriter *w, uint32_t alignment);
void gguf_w_u32(GGUFWriter *w, const char *key, uint32_t v);
void gguf_w_f32(GGUFWriter *w, const char *key, float v);
void gguf_w_bool(GGUFWriter *w, const char *key, int v);
void gguf_w_str(GGUFWriter *w, const char *key, const char *v);
// Arrays: n numbers of type elem (u8..f64, 4- or 8-byte ones as laid out in memory), or n
// strings (lens[i] bytes each; lens NULL: NUL-terminated).
void gguf_w_arr(GGUFWriter *w, const char *key, GGUFType elem, const void *v, uint64_t n);
void gguf_w_arr_str(GGUFWriter *w, const char *key, const char *const *s, const uint32_t *lens, uint64_t n);
// A KV of a parsed file, copied as it is.
void gguf_w_kv(GGUFWriter *w, const GGUFKV *kv);
// A tensor of type t with ggml dims ne[0..ndim) (ne[0] fastest); data (nbytes) is not copied
// and must live until gguf_w_write. -1 if t has no GGUF id or nbytes does not match.
int gguf_w_tensor(GGUFWriter *w, const char *name, G3DType t, int ndim, const int64_t *ne, const void *data, int64_t nbytes);
// The whole file in memory (malloc'd, *len bytes): for tests that then damage it.
int gguf_w_bytes(const GGUFWriter *w, uint8_t **out, size_t *len);
int gguf_w_write(const GGUFWriter *w, const char *path);
void gguf_w_free(GGUFWriter *w);

#endif
