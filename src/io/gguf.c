// gguf.c: the GGUF reader (see gguf.h). Every read goes through a bounds-checked cursor, and
// every count is held against the room left in the file before anything is allocated for it,
// so a header that lies fails with a message instead of a huge allocation or a read past the
// end.
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"

// ggml's type ids by name, for messages about the types gemma3.c does not read yet.
static const char *const ggml_names[] = {
    [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1", [8] = "Q8_0", [9] = "Q8_1",
    [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K", [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS",
    [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
    [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M", [30] = "BF16",
    [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4",
};

const char *gguf_ggml_type_name(int t) {
    return t >= 0 && t < (int)(sizeof ggml_names / sizeof *ggml_names) ? ggml_names[t] : NULL;
}

// ggml id -> G3DType for the types with traits here; -1 otherwise.
static int g3_of_ggml(int t) {
    switch (t) {
    case GGML_F32: return G3_F32;
    case GGML_F16: return G3_F16;
    case GGML_BF16: return G3_BF16;
    case GGML_Q8_0: return G3_Q8_0;
    case GGML_Q4_0: return G3_Q4_0;
    case GGML_Q4_1: return G3_Q4_1;
    case GGML_Q5_0: return G3_Q5_0;
    case GGML_Q5_1: return G3_Q5_1;
    case GGML_Q4_K: return G3_Q4_K;
    case GGML_Q5_K: return G3_Q5_K;
    case GGML_Q6_K: return G3_Q6_K;
    default: return -1;
    }
}

int gguf_ggml_type_of(G3DType t) {
    for (int i = 0; i < (int)(sizeof ggml_names / sizeof *ggml_names); i++)
        if (g3_of_ggml(i) == (int)t) return i;
    return -1;
}

static const char *const value_type_names[GGUF_TYPE_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                                               "string", "array", "u64", "i64", "f64"};
// Bytes of a fixed-size value; 0 for string and array.
static size_t value_size(GGUFType t) {
    static const size_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return (unsigned)t < GGUF_TYPE_COUNT ? sz[t] : 0;
}

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name;       // the file, for messages
} Cursor;

static int need(Cursor *c, size_t n, const char *what) {
    if (n > c->size - c->pos)
        return g3_errorf("%s: truncated: %s needs %zu bytes at offset %zu of a %zu-byte file", c->name, what, n, c->pos, c->size);
    return 0;
}
static int rd_u32(Cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    memcpy(v, c->p + c->pos, 4);  // little-endian hosts only (x86-64, arm64), as safetensors.c
    c->pos += 4;
    return 0;
}
static int rd_u64(Cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}
// A string: u64 length, bytes. *s points into the file.
static int rd_str(Cursor *c, const uint8_t **s, uint64_t *len, const char *what) {
    if (rd_u64(c, len, what)) return -1;
    if (*len > c->size - c->pos)
        return g3_errorf("%s: %s: string length %llu runs past the end of the file (offset %zu of %zu)", c->name, what,
                         (unsigned long long)*len, c->pos, c->size);
    *s = c->p + c->pos;
    c->pos += (size_t)*len;
    return 0;
}
// A copy of a key or tensor name, refusing embedded NULs and empty names.
static char *dup_name(Cursor *c, const uint8_t *s, uint64_t len, const char *what) {
    if (len == 0) { g3_errorf("%s: %s is empty", c->name, what); return NULL; }
    if (memchr(s, 0, (size_t)len)) { g3_errorf("%s: %s holds a NUL byte", c->name, what); return NULL; }
    char *d = g3_malloc((size_t)len + 1);
    if (!d) return NULL;
    memcpy(d, s, (size_t)len);
    d[len] = 0;
    return d;
}

// One value of type t (not an array) for key; bools must be 0 or 1.
static int skip_value(Cursor *c, GGUFType t, const char *key) {
    if (t == GGUF_STRING) {
        const uint8_t *s;
        uint64_t len;
        return rd_str(c, &s, &len, key);
    }
    size_t n = value_size(t);
    if (need(c, n, key)) return -1;
    if (t == GGUF_BOOL && c->p[c->pos] > 1) return g3_errorf("%s: metadata '%s': bool value %u is not 0 or 1", c->name, key, c->p[c->pos]);
    c->pos += n;
    return 0;
}

static int read_kv(Cursor *c, GGUFKV *kv, int i) {
    char what[64];
    snprintf(what, sizeof what, "metadata key %d", i);
    const uint8_t *s;
    uint64_t len;
    if (rd_str(c, &s, &len, what)) return -1;
    if (!(kv->key = dup_name(c, s, len, what))) return -1;
    uint32_t t;
    if (rd_u32(c, &t, kv->key)) return -1;
    if (t >= GGUF_TYPE_COUNT) return g3_errorf("%s: metadata '%s': unknown value type %u", c->name, kv->key, t);
    kv->type = (GGUFType)t;
    kv->n = 1;
    if (t == GGUF_ARRAY) {
        uint32_t at;
        if (rd_u32(c, &at, kv->key) || rd_u64(c, &kv->n, kv->key)) return -1;
        if (at >= GGUF_TYPE_COUNT) return g3_errorf("%s: metadata '%s': array of unknown value type %u", c->name, kv->key, at);
        if (at == GGUF_ARRAY) return g3_errorf("%s: metadata '%s': arrays of arrays are not supported", c->name, kv->key);
        kv->arr_type = (GGUFType)at;
        // every element takes at least one byte (a string eight): a length that lies fails here
        size_t min = at == GGUF_STRING ? 8 : value_size((GGUFType)at);
        if (kv->n > (c->size - c->pos) / min)
            return g3_errorf("%s: metadata '%s': array of %llu %s values runs past the end of the file", c->name, kv->key,
                             (unsigned long long)kv->n, value_type_names[at]);
        kv->value = c->p + c->pos;
        for (uint64_t k = 0; k < kv->n; k++)
            if (skip_value(c, (GGUFType)at, kv->key)) return -1;
        return 0;
    }
    if (t == GGUF_STRING) {
        if (rd_str(c, &kv->value, &kv->str_len, kv->key)) return -1;
        return 0;
    }
    kv->value = c->p + c->pos;
    return skip_value(c, (GGUFType)t, kv->key);
}

static int read_tensor_info(Cursor *c, GGUFTensor *t, int i) {
    char what[64];
    snprintf(what, sizeof what, "tensor info %d", i);
    const uint8_t *s;
    uint64_t len;
    if (rd_str(c, &s, &len, what)) return -1;
    if (len >= GGUF_MAX_NAME) return g3_errorf("%s: %s: name of %llu bytes (ggml allows at most %d)", c->name, what, (unsigned long long)len, GGUF_MAX_NAME - 1);
    if (!(t->name = dup_name(c, s, len, what))) return -1;
    uint32_t nd, ty;
    if (rd_u32(c, &nd, t->name)) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS) return g3_errorf("%s: tensor '%s': %u dimensions (1 to %d)", c->name, t->name, nd, GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    int64_t numel = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne, t->name)) return -1;
        if (ne > (uint64_t)INT64_MAX || (ne && numel > INT64_MAX / (int64_t)ne))
            return g3_errorf("%s: tensor '%s': dimension %d (%llu) overflows", c->name, t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        numel *= (int64_t)ne;
    }
    if (rd_u32(c, &ty, t->name) || rd_u64(c, &t->offset, t->name)) return -1;
    t->ggml_type = (int)ty;
    int g3 = g3_of_ggml((int)ty);
    if (g3 < 0) {
        const char *nm = gguf_ggml_type_name((int)ty);
        if (nm) return g3_errorf("%s: tensor '%s': ggml type %s (%u) is not supported", c->name, t->name, nm, ty);
        return g3_errorf("%s: tensor '%s': unknown ggml type %u", c->name, t->name, ty);
    }
    t->type = (G3DType)g3;
    int64_t row = g3_type_row_bytes(t->type, t->ne[0]);
    if (row < 0)
        return g3_errorf("%s: tensor '%s': rows of %lld elements are not whole %s blocks of %d", c->name, t->name,
                         (long long)t->ne[0], g3_dtype_name(t->type), g3_type(t->type)->block);
    int64_t rows = t->ne[0] ? numel / t->ne[0] : 0;
    if (rows && row > INT64_MAX / rows) return g3_errorf("%s: tensor '%s': size overflows", c->name, t->name);
    t->nbytes = row * rows;
    return 0;
}

typedef struct { uint64_t begin, end; int i; } Range;
static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

// Two entries with the same name (keys or tensors): the first duplicate, else NULL.
static const char *duplicate(char **names, int n) {
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 1; i < n; i++)
        if (!strcmp(names[i], names[i - 1])) return names[i];
    return NULL;
}

static int parse_body(GGUFFile *g, Cursor *c) {
    const char *nm = c->name;
    if (c->size < 4 || memcmp(c->p, "GGUF", 4) != 0) return g3_errorf("%s: not a GGUF file (the magic is not \"GGUF\")", nm);
    c->pos = 4;
    uint64_t nt, nkv;
    if (rd_u32(c, &g->version, "the version")) return -1;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version) return g3_errorf("%s: GGUF version %u: a big-endian file (only little-endian is read)", nm, g->version);
        return g3_errorf("%s: GGUF version %u is not supported (2 and 3 are)", nm, g->version);
    }
    if (rd_u64(c, &nt, "the tensor count") || rd_u64(c, &nkv, "the metadata count")) return -1;
    // a KV takes at least 13 bytes (key length, one byte of key, type, one byte of value), a
    // tensor info 25: counts beyond what the file can hold are lies, caught before allocating
    size_t room = c->size - c->pos;
    if (nkv > room / 13) return g3_errorf("%s: the header claims %llu metadata entries, more than the file can hold", nm, (unsigned long long)nkv);
    if (nt > room / 25) return g3_errorf("%s: the header claims %llu tensors, more than the file can hold", nm, (unsigned long long)nt);
    g->kv = g3_calloc((size_t)nkv + 1, sizeof *g->kv);
    if (!g->kv) return -1;
    for (uint64_t i = 0; i < nkv; i++) {
        g->nkv = (int)i + 1;
        if (read_kv(c, &g->kv[i], (int)i)) return -1;
    }
    char **names = g3_malloc(((size_t)(nkv > nt ? nkv : nt) + 1) * sizeof *names);
    if (!names) return -1;
    for (int i = 0; i < g->nkv; i++) names[i] = g->kv[i].key;
    const char *dup = duplicate(names, g->nkv);
    if (dup) { g3_errorf("%s: metadata key '%s' appears twice", nm, dup); free(names); return -1; }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const GGUFKV *al = gguf_kv(g, "general.alignment");
    if (al) {
        uint32_t a;
        if (al->type != GGUF_U32) { free(names); return g3_errorf("%s: metadata 'general.alignment' must be u32, not %s", nm, value_type_names[al->type]); }
        memcpy(&a, al->value, 4);
        if (a == 0 || (a & (a - 1))) { free(names); return g3_errorf("%s: metadata 'general.alignment' is %u, not a power of two", nm, a); }
        g->alignment = a;
    }

    g->tensors = g3_calloc((size_t)nt + 1, sizeof *g->tensors);
    if (!g->tensors) { free(names); return -1; }
    for (uint64_t i = 0; i < nt; i++) {
        g->ntensors = (int)i + 1;
        if (read_tensor_info(c, &g->tensors[i], (int)i)) { free(names); return -1; }
    }
    for (int i = 0; i < g->ntensors; i++) names[i] = g->tensors[i].name;
    dup = duplicate(names, g->ntensors);
    free(names);
    if (dup) return g3_errorf("%s: tensor '%s' appears twice", nm, dup);

    // the data block starts at the next multiple of the alignment
    size_t start = c->pos + (g->alignment - c->pos % g->alignment) % g->alignment;
    if (g->ntensors == 0) { g->data_start = start < c->size ? start : c->size; return 0; }
    if (start > c->size) return g3_errorf("%s: truncated: the data block would start at byte %zu of a %zu-byte file", nm, start, c->size);
    g->data_start = start;
    size_t data_size = c->size - start;
    Range *r = g3_malloc((size_t)g->ntensors * sizeof *r);
    if (!r) return -1;
    for (int i = 0; i < g->ntensors; i++) {
        GGUFTensor *t = &g->tensors[i];
        if (t->offset % g->alignment) {
            free(r);
            return g3_errorf("%s: tensor '%s': offset %llu is not a multiple of general.alignment (%u)", nm, t->name,
                             (unsigned long long)t->offset, g->alignment);
        }
        if (t->offset > data_size || (uint64_t)t->nbytes > data_size - t->offset) {
            free(r);
            return g3_errorf("%s: truncated: tensor '%s' needs bytes %llu to %llu of a %zu-byte data block", nm, t->name,
                             (unsigned long long)t->offset, (unsigned long long)(t->offset + (uint64_t)t->nbytes), data_size);
        }
        t->data = c->p + start + t->offset;
        r[i] = (Range){t->offset, t->offset + (uint64_t)t->nbytes, i};
    }
    qsort(r, (size_t)g->ntensors, sizeof *r, cmp_range);
    for (int i = 1; i < g->ntensors; i++)
        if (r[i].begin < r[i - 1].end) {
            const char *a = g->tensors[r[i - 1].i].name, *b = g->tensors[r[i].i].name;
            free(r);
            return g3_errorf("%s: tensors '%s' and '%s' overlap in the data block", nm, a, b);
        }
    free(r);
    return 0;
}

int gguf_parse(GGUFFile *g, const void *data, size_t size, const char *name) {
    memset(g, 0, sizeof *g);
    snprintf(g->path, sizeof g->path, "%s", name);
    g->base = data;
    g->size = size;
    Cursor c = {data, size, 0, g->path};
    if (parse_body(g, &c)) {
        gguf_close(g);
        return -1;
    }
    return 0;
}

int gguf_open(GGUFFile *g, const char *path) {
    memset(g, 0, sizeof *g);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return g3_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return g3_errorf("%s: cannot stat: %s", path, strerror(errno)); }
    if (!S_ISREG(st.st_mode)) { close(fd); return g3_errorf("%s: not a regular file", path); }
    size_t size = (size_t)st.st_size;
    if (size < 24) { close(fd); return g3_errorf("%s: truncated: %zu bytes, too short for a GGUF header", path, size); }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return g3_errorf("%s: cannot map: %s", path, strerror(errno));
    if (gguf_parse(g, map, size, path)) { munmap(map, size); return -1; }
    g->map = map;
    return 0;
}

void gguf_close(GGUFFile *g) {
    if (g->kv)
        for (int i = 0; i < g->nkv; i++) free(g->kv[i].key);
    if (g->tensors)
        for (int i = 0; i < g->ntensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->map) munmap(g->map, g->size);
    memset(g, 0, sizeof *g);
}

const GGUFKV *gguf_kv(const GGUFFile *g, const char *key) {
    for (int i = 0; i < g->nkv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const GGUFTensor *gguf_tensor(const GGUFFile *g, const char *name) {
    for (int i = 0; i < g->ntensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

int gguf_get_int(const GGUFFile *g, const char *key, int64_t *out) {
    const GGUFKV *kv = gguf_kv(g, key);
    if (!kv) return 1;
    const uint8_t *p = kv->value;
    switch (kv->type) {
    case GGUF_U8: *out = p[0]; return 0;
    case GGUF_I8: *out = (int8_t)p[0]; return 0;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_I64: memcpy(out, p, 8); return 0;
    case GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > (uint64_t)INT64_MAX) return g3_errorf("%s: metadata '%s': %llu is out of range", g->path, key, (unsigned long long)v);
        *out = (int64_t)v;
        return 0;
    }
    default: return g3_errorf("%s: metadata '%s' must be an integer, not %s", g->path, key, value_type_names[kv->type]);
    }
}

int gguf_get_float(const GGUFFile *g, const char *key, double *out) {
    const GGUFKV *kv = gguf_kv(g, key);
    if (!kv) return 1;
    if (kv->type == GGUF_F32) { float v; memcpy(&v, kv->value, 4); *out = v; return 0; }
    if (kv->type == GGUF_F64) { memcpy(out, kv->value, 8); return 0; }
    int64_t i;
    if (kv->type != GGUF_STRING && kv->type != GGUF_ARRAY && kv->type != GGUF_BOOL && gguf_get_int(g, key, &i) == 0) { *out = (double)i; return 0; }
    return g3_errorf("%s: metadata '%s' must be a number, not %s", g->path, key, value_type_names[kv->type]);
}

int gguf_get_str(const GGUFFile *g, const char *key, const char **s, size_t *len) {
    const GGUFKV *kv = gguf_kv(g, key);
    if (!kv) return 1;
    if (kv->type != GGUF_STRING) return g3_errorf("%s: metadata '%s' must be a string, not %s", g->path, key, value_type_names[kv->type]);
    *s = (const char *)kv->value;
    *len = (size_t)kv->str_len;
    return 0;
}
