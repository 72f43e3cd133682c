// gguf_write.c: a small GGUF writer (see gguf.h): metadata and tensors collected in memory,
// the file written in one go, atomically. Version 3, little-endian, tensors in the order given,
// each at the next multiple of the alignment.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "gguf.h"

void gguf_w_init(GGUFWriter *w, uint32_t alignment) {
    memset(w, 0, sizeof *w);
    w->alignment = alignment ? alignment : GGUF_DEFAULT_ALIGNMENT;
}

static void put(GGUFWriter *w, const void *p, size_t n) {
    if (w->failed || n == 0) return;
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = (w->kv_cap + n) * 2;
        uint8_t *b = g3_realloc(w->kv, cap);
        if (!b) { w->failed = 1; return; }
        w->kv = b;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
}
static void put_u32(GGUFWriter *w, uint32_t v) { put(w, &v, 4); }
static void put_str(GGUFWriter *w, const char *s) {
    uint64_t n = strlen(s);
    put(w, &n, 8);
    put(w, s, (size_t)n);
}

void gguf_w_u32(GGUFWriter *w, const char *key, uint32_t v) { put_str(w, key); put_u32(w, GGUF_U32); put_u32(w, v); w->nkv++; }
void gguf_w_f32(GGUFWriter *w, const char *key, float v) { put_str(w, key); put_u32(w, GGUF_F32); put(w, &v, 4); w->nkv++; }
void gguf_w_bool(GGUFWriter *w, const char *key, int v) { uint8_t b = v != 0; put_str(w, key); put_u32(w, GGUF_BOOL); put(w, &b, 1); w->nkv++; }
void gguf_w_str(GGUFWriter *w, const char *key, const char *v) { put_str(w, key); put_u32(w, GGUF_STRING); put_str(w, v); w->nkv++; }

static size_t elem_size(GGUFType t) {
    static const size_t sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_TYPE_COUNT ? sz[t] : 0;
}

void gguf_w_arr(GGUFWriter *w, const char *key, GGUFType elem, const void *v, uint64_t n) {
    if (!elem_size(elem)) { w->failed = 1; return; }
    put_str(w, key);
    put_u32(w, GGUF_ARRAY);
    put_u32(w, elem);
    put(w, &n, 8);
    put(w, v, (size_t)(n * elem_size(elem)));
    w->nkv++;
}

void gguf_w_arr_str(GGUFWriter *w, const char *key, const char *const *s, const uint32_t *lens, uint64_t n) {
    put_str(w, key);
    put_u32(w, GGUF_ARRAY);
    put_u32(w, GGUF_STRING);
    put(w, &n, 8);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = lens ? lens[i] : strlen(s[i]);
        put(w, &len, 8);
        put(w, s[i], (size_t)len);
    }
    w->nkv++;
}

// Bytes of n values of type t starting at p (a parsed file's: strings are in bounds).
static size_t values_bytes(GGUFType t, const uint8_t *p, uint64_t n) {
    if (t != GGUF_STRING) return (size_t)n * elem_size(t);
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, p + off, 8);
        off += 8 + (size_t)len;
    }
    return off;
}

void gguf_w_kv(GGUFWriter *w, const GGUFKV *kv) {
    put_str(w, kv->key);
    put_u32(w, kv->type);
    if (kv->type == GGUF_ARRAY) {
        put_u32(w, kv->arr_type);
        put(w, &kv->n, 8);
        put(w, kv->value, values_bytes(kv->arr_type, kv->value, kv->n));
    } else if (kv->type == GGUF_STRING) {
        put(w, &kv->str_len, 8);
        put(w, kv->value, (size_t)kv->str_len);
    } else {
        put(w, kv->value, elem_size(kv->type));
    }
    w->nkv++;
}

int gguf_w_tensor(GGUFWriter *w, const char *name, G3DType t, int ndim, const int64_t *ne, const void *data, int64_t nbytes) {
    int id = gguf_ggml_type_of(t);
    if (id < 0) return g3_errorf("tensor '%s': type %s has no GGUF id", name, g3_dtype_name(t));
    if (ndim < 1 || ndim > GGUF_MAX_DIMS) return g3_errorf("tensor '%s': %d dimensions", name, ndim);
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= ne[d];
    if (g3_type_bytes(t, numel) != nbytes) return g3_errorf("tensor '%s': %lld bytes for %lld elements of %s", name, (long long)nbytes, (long long)numel, g3_dtype_name(t));
    struct GGUFWTensor *nt = g3_realloc(w->t, (size_t)(w->nt + 1) * sizeof *nt);
    if (!nt) return -1;
    w->t = nt;
    struct GGUFWTensor *x = &w->t[w->nt];
    memset(x, 0, sizeof *x);
    if (!(x->name = g3_strdup(name))) return -1;
    x->ggml_type = id;
    x->ndim = ndim;
    for (int d = 0; d < ndim; d++) x->ne[d] = ne[d];
    x->data = data;
    x->nbytes = nbytes;
    w->nt++;
    return 0;
}

static size_t pad_to(size_t n, uint32_t a) { return n + (a - n % a) % a; }

int gguf_w_bytes(const GGUFWriter *w, uint8_t **out, size_t *len) {
    *out = NULL;
    if (w->failed) return g3_errorf("GGUF writer: out of memory");
    // header + KVs + tensor infos, built with a second writer's buffer
    GGUFWriter h;
    gguf_w_init(&h, w->alignment);
    put(&h, "GGUF", 4);
    put_u32(&h, 3);
    uint64_t nt = (uint64_t)w->nt, nkv = (uint64_t)w->nkv + (w->alignment != GGUF_DEFAULT_ALIGNMENT);
    put(&h, &nt, 8);
    put(&h, &nkv, 8);
    put(&h, w->kv, w->kv_len);
    if (w->alignment != GGUF_DEFAULT_ALIGNMENT) { put_str(&h, "general.alignment"); put_u32(&h, GGUF_U32); put_u32(&h, w->alignment); }
    uint64_t off = 0;
    for (int i = 0; i < w->nt; i++) {
        put_str(&h, w->t[i].name);
        put_u32(&h, (uint32_t)w->t[i].ndim);
        for (int d = 0; d < w->t[i].ndim; d++) put(&h, &w->t[i].ne[d], 8);
        put_u32(&h, (uint32_t)w->t[i].ggml_type);
        put(&h, &off, 8);
        off = pad_to((size_t)(off + (uint64_t)w->t[i].nbytes), w->alignment);
    }
    if (h.failed) { free(h.kv); return g3_errorf("GGUF writer: out of memory"); }
    size_t start = pad_to(h.kv_len, w->alignment), total = start + (size_t)off;
    uint8_t *b = g3_calloc(total ? total : 1, 1);
    if (!b) { free(h.kv); return -1; }
    memcpy(b, h.kv, h.kv_len);
    free(h.kv);
    size_t pos = start;
    for (int i = 0; i < w->nt; i++) {
        if (w->t[i].nbytes) memcpy(b + pos, w->t[i].data, (size_t)w->t[i].nbytes);
        pos = pad_to(pos + (size_t)w->t[i].nbytes, w->alignment);
    }
    *out = b;
    *len = total;
    return 0;
}

int gguf_w_write(const GGUFWriter *w, const char *path) {
    uint8_t *b;
    size_t n;
    if (gguf_w_bytes(w, &b, &n)) return g3_error_prefix("%s", path);
    int rc = g3_write_file_atomic(path, b, n);
    free(b);
    return rc;
}

void gguf_w_free(GGUFWriter *w) {
    for (int i = 0; i < w->nt; i++) free(w->t[i].name);
    free(w->t);
    free(w->kv);
    memset(w, 0, sizeof *w);
}
