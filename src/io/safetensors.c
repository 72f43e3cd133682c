// safetensors.c: the safetensors reader and writer (see safetensors.h).
// Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data block; offsets are
// relative to the data block.
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/json.h"

enum { MAX_HEADER = 100 << 20 };  // the reference implementation's own limit

static const STSet *sort_set;
static int cmp_name(const void *a, const void *b) {
    return strcmp(sort_set->tensors[*(const int *)a].name, sort_set->tensors[*(const int *)b].name);
}

typedef struct { size_t begin, end; } Range;
static int cmp_range(const void *a, const void *b) {
    const Range *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// Maps a file read-only at a 2 MiB-aligned address and asks for huge pages. Decode reads every
// weight once per token, so TLB misses on 4 KiB pages cost real bandwidth; on kernels whose
// page cache holds large folios (ext4 since 6.16 when read through such a mapping) the weights
// then sit behind 2 MiB page-table entries. Elsewhere the advice is a harmless no-op.
static void *map_file(int fd, size_t size) {
    const size_t A = (size_t)2 << 20;
    if (size < A) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    char *r = mmap(NULL, size + A, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    char *al = (char *)(((uintptr_t)r + A - 1) & ~(uintptr_t)(A - 1));
    void *p = mmap(al, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) { munmap(r, size + A); return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0); }
    // give back the reservation's unused head and tail
    if (al > r) munmap(r, (size_t)(al - r));
    size_t tail = (size_t)((r + size + A) - (al + size));
    size_t mapped_end = (size + 4095) & ~(size_t)4095;
    if (tail > mapped_end - size) munmap(al + mapped_end, (size_t)((r + size + A) - (al + mapped_end)));
    madvise(p, size, MADV_HUGEPAGE);
    return p;
}

// Maps one file and appends its tensors to s.
static int open_one(STSet *s, const char *path) {
    int fi = s->nfiles;
    char **np = g3_realloc(s->paths, (fi + 1) * sizeof *np);
    if (!np) return -1;
    s->paths = np;
    void **nm = g3_realloc(s->maps, (fi + 1) * sizeof *nm);
    if (!nm) return -1;
    s->maps = nm;
    size_t *ns = g3_realloc(s->map_sizes, (fi + 1) * sizeof *ns);
    if (!ns) return -1;
    s->map_sizes = ns;
    s->paths[fi] = g3_strdup(path);
    s->maps[fi] = NULL;
    s->map_sizes[fi] = 0;
    s->nfiles++;
    if (!s->paths[fi]) return -1;

    int fd = open(path, O_RDONLY);
    if (fd < 0) return g3_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return g3_errorf("%s: cannot stat: %s", path, strerror(errno)); }
    size_t size = (size_t)st.st_size;
    if (size < 8) { close(fd); return g3_errorf("%s: truncated: %zu bytes, too short for a safetensors header", path, size); }
    void *map = map_file(fd, size);
    close(fd);
    if (map == MAP_FAILED) return g3_errorf("%s: cannot map: %s", path, strerror(errno));
    s->maps[fi] = map;
    s->map_sizes[fi] = size;

    uint64_t hlen;
    memcpy(&hlen, map, 8);  // little-endian hosts only (x86-64, arm64)
    if (hlen > MAX_HEADER) return g3_errorf("%s: header length %llu is implausible (over 100 MB)", path, (unsigned long long)hlen);
    if (hlen > size - 8) return g3_errorf("%s: truncated: header length %llu exceeds the file size %zu", path, (unsigned long long)hlen, size);
    const char *data = (const char *)map + 8 + hlen;
    size_t data_size = size - 8 - hlen;

    Json j;
    if (json_parse(&j, (const char *)map + 8, hlen)) return g3_error_prefix("%s: header", path);
    const JsonNode *root = json_root(&j);
    int rc = -1;
    Range *ranges = NULL;
    if (root->type != JSON_OBJECT) { g3_errorf("%s: header is not a JSON object", path); goto out; }
    STTensor *nt = g3_realloc(s->tensors, (s->ntensors + root->count) * sizeof *nt);
    if (!nt) goto out;
    s->tensors = nt;
    ranges = g3_malloc((root->count + 1) * sizeof *ranges);
    if (!ranges) goto out;
    int nr = 0;
    JSON_FOREACH(m, root) {
        if (strcmp(m->key, "__metadata__") == 0) continue;
        const char *name = m->key;
        if (m->type != JSON_OBJECT) { g3_errorf("%s: tensor '%s': entry is not an object", path, name); goto out; }
        const JsonNode *dt = json_get(m, "dtype"), *sh = json_get(m, "shape"), *off = json_get(m, "data_offsets");
        if (!json_is_string(dt) || !sh || sh->type != JSON_ARRAY || !off || off->type != JSON_ARRAY || off->count != 2) {
            g3_errorf("%s: tensor '%s': needs dtype, shape and data_offsets [begin, end]", path, name);
            goto out;
        }
        int dtype = g3_dtype_from_name(dt->str, dt->str_len);
        if (dtype < 0) { g3_errorf("%s: tensor '%s': unsupported dtype '%s'", path, name, dt->str); goto out; }
        if (g3_type((G3DType)dtype)->block != 1) {  // ggml's blocks (Q8_0, ...) are GGUF's, not a safetensors standard
            g3_errorf("%s: tensor '%s': dtype '%s' is a GGUF block type, not a safetensors dtype", path, name, dt->str);
            goto out;
        }
        if (sh->count > ST_MAX_DIMS) { g3_errorf("%s: tensor '%s': %u dimensions (at most %d)", path, name, sh->count, ST_MAX_DIMS); goto out; }
        STTensor *t = &s->tensors[s->ntensors];
        memset(t, 0, sizeof *t);
        t->dtype = (G3DType)dtype;
        t->ndim = (int)sh->count;
        t->file = fi;
        size_t numel = 1;
        int d = 0;
        JSON_FOREACH(x, sh) {
            int64_t dim;
            if (json_int_in(x, 0, INT64_MAX, &dim)) { g3_errorf("%s: tensor '%s': bad shape", path, name); goto out; }
            t->shape[d++] = dim;
            if (g3_mul_size(numel, (size_t)dim, &numel)) { g3_errorf("%s: tensor '%s': shape overflows", path, name); goto out; }
        }
        const JsonNode *b = json_at(off, 0), *e = json_at(off, 1);
        int64_t ob, oe;
        if (json_int_in(b, 0, INT64_MAX, &ob) || json_int_in(e, ob, INT64_MAX, &oe)) {
            g3_errorf("%s: tensor '%s': bad data_offsets", path, name);
            goto out;
        }
        size_t begin = (size_t)ob, end = (size_t)oe;
        int64_t need = numel <= (size_t)INT64_MAX ? g3_type_bytes(t->dtype, (int64_t)numel) : -1;
        if (need < 0) { g3_errorf("%s: tensor '%s': %zu elements are too many, or not whole blocks, for dtype %s", path, name, numel, dt->str); goto out; }
        size_t nbytes = (size_t)need;
        if (end - begin != nbytes) {
            g3_errorf("%s: tensor '%s': data_offsets span %zu bytes but shape and dtype need %zu", path, name, end - begin, nbytes);
            goto out;
        }
        if (end > data_size) {
            g3_errorf("%s: truncated: tensor '%s' ends at byte %zu of a %zu-byte data block", path, name, end, data_size);
            goto out;
        }
        t->nbytes = nbytes;
        t->data = data + begin;
        t->name = g3_strdup(name);
        if (!t->name) goto out;
        s->ntensors++;
        ranges[nr++] = (Range){begin, end};
    }
    qsort(ranges, (size_t)nr, sizeof *ranges, cmp_range);
    for (int i = 1; i < nr; i++)
        if (ranges[i].begin < ranges[i - 1].end) { g3_errorf("%s: tensors overlap in the data block", path); goto out; }
    rc = 0;
out:
    free(ranges);
    json_free(&j);
    return rc;
}

static int open_index(STSet *s, const char *index_path) {
    Json j;
    if (json_parse_file(&j, index_path)) return -1;
    int rc = -1;
    const JsonNode *wm = json_get(json_root(&j), "weight_map");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", index_path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    if (!wm || wm->type != JSON_OBJECT) { g3_errorf("%s: no \"weight_map\" object", index_path); goto out; }
    // open each distinct shard once, in order of first mention
    JSON_FOREACH(m, wm) {
        if (!json_is_string(m)) { g3_errorf("%s: weight_map['%s'] is not a file name", index_path, m->key); goto out; }
        if (strchr(m->str, '/')) { g3_errorf("%s: shard name '%s' must be a plain file name", index_path, m->str); goto out; }
        char p[4200];
        if (g3_path_join(p, sizeof p, dir, m->str)) goto out;
        int seen = 0;
        for (int i = 0; i < s->nfiles; i++) seen |= strcmp(s->paths[i], p) == 0;
        if (!seen && open_one(s, p)) goto out;
    }
    // every mapped name must be present in its shard
    JSON_FOREACH(m, wm) {
        int found = 0;
        for (int i = 0; i < s->ntensors && !found; i++) found = strcmp(s->tensors[i].name, m->key) == 0;
        if (!found) { g3_errorf("%s: tensor '%s' is listed but missing from shard %s", index_path, m->key, m->str); goto out; }
    }
    rc = 0;
out:
    json_free(&j);
    return rc;
}

int st_open(STSet *s, const char *path) {
    memset(s, 0, sizeof *s);
    struct stat st;
    if (stat(path, &st) != 0) return g3_errorf("%s: %s", path, strerror(errno));
    int rc;
    if (S_ISDIR(st.st_mode)) {
        // transformers' order: model.safetensors first, then the index (a folder holding both
        // loads the single file, as from_pretrained does)
        char p[4200], q[4200];
        if (g3_path_join(p, sizeof p, path, "model.safetensors") || g3_path_join(q, sizeof q, path, "model.safetensors.index.json"))
            return -1;
        if (g3_file_exists(p)) rc = open_one(s, p);
        else if (g3_file_exists(q)) rc = open_index(s, q);
        else return g3_errorf("%s: no model.safetensors or model.safetensors.index.json in this folder", path);
    } else {
        size_t n = strlen(path);
        rc = n > 5 && strcmp(path + n - 5, ".json") == 0 ? open_index(s, path) : open_one(s, path);
    }
    if (rc == 0) {
        s->order = g3_malloc((size_t)(s->ntensors + 1) * sizeof *s->order);
        if (!s->order) rc = -1;
        else {
            for (int i = 0; i < s->ntensors; i++) s->order[i] = i;
            sort_set = s;
            qsort(s->order, (size_t)s->ntensors, sizeof *s->order, cmp_name);
            for (int i = 1; i < s->ntensors; i++)
                if (strcmp(s->tensors[s->order[i]].name, s->tensors[s->order[i - 1]].name) == 0) {
                    rc = g3_errorf("%s: tensor '%s' appears twice", path, s->tensors[s->order[i]].name);
                    break;
                }
        }
    }
    if (rc) {
        char saved[1024];
        snprintf(saved, sizeof saved, "%s", g3_error());
        st_close(s);
        g3_errorf("%s", saved);
    }
    return rc;
}

void st_close(STSet *s) {
    for (int i = 0; i < s->ntensors; i++) free(s->tensors[i].name);
    for (int i = 0; i < s->nfiles; i++) {
        if (s->maps && s->maps[i]) munmap(s->maps[i], s->map_sizes[i]);
        if (s->paths) free(s->paths[i]);
    }
    free(s->tensors);
    free(s->paths);
    free(s->maps);
    free(s->map_sizes);
    free(s->order);
    memset(s, 0, sizeof *s);
}

const STTensor *st_find(const STSet *s, const char *name) {
    int lo = 0, hi = s->ntensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        int c = strcmp(s->tensors[s->order[mid]].name, name);
        if (c == 0) return &s->tensors[s->order[mid]];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

int64_t st_numel(const STTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

// ---- writing ----

static int writer_own(STWriter *w, void *p) {
    if (w->nowned == w->capowned) {
        int cap = w->capowned ? w->capowned * 2 : 64;
        char **no = g3_realloc(w->owned, (size_t)cap * sizeof *no);
        if (!no) return -1;
        w->owned = no;
        w->capowned = cap;
    }
    w->owned[w->nowned++] = p;
    return 0;
}

int st_writer_add(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape, const void *data) {
    if (ndim > ST_MAX_DIMS) return g3_errorf("tensor '%s': too many dimensions", name);
    if (w->n == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        STOut *nt = g3_realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt) return -1;
        w->t = nt;
        w->cap = cap;
    }
    char *nm = g3_strdup(name);
    if (!nm || writer_own(w, nm)) { free(nm); return -1; }
    STOut *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = nm;
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    return 0;
}

int st_writer_add_fill(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape,
                       int (*fill)(void *ctx, const void *out, void *buf), void *ctx) {
    if (st_writer_add(w, name, dtype, ndim, shape, NULL)) return -1;
    w->t[w->n - 1].fill = fill;
    w->t[w->n - 1].ctx = ctx;
    return 0;
}

int st_writer_add_owned(STWriter *w, const char *name, G3DType dtype, int ndim, const int64_t *shape, void *data) {
    if (writer_own(w, data)) { free(data); return -1; }
    return st_writer_add(w, name, dtype, ndim, shape, data);
}

static size_t out_bytes(const STOut *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return (size_t)g3_type_bytes(t->dtype, n);
}

// Appends to a growing string buffer.
typedef struct { char *s; size_t n, cap; } Buf;
static int buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static int buf_printf(Buf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) return -1;
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return 0; }
        size_t cap = (b->cap + (size_t)k + 1) * 2;
        char *ns = g3_realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
}

// Writes tensors [from, to) of w into path.
static int write_range(STWriter *w, int from, int to, const char *path, const char *metadata) {
    Buf h = {0};
    size_t off = 0;
    int rc = -1;
    if (buf_printf(&h, "{")) goto out;
    if (metadata && buf_printf(&h, "\"__metadata__\":{%s},", metadata)) goto out;
    for (int i = from; i < to; i++) {
        const STOut *t = &w->t[i];
        size_t nb = out_bytes(t);
        if (buf_printf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i > from ? "," : "", t->name, g3_dtype_name(t->dtype))) goto out;
        for (int d = 0; d < t->ndim; d++)
            if (buf_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d])) goto out;
        if (buf_printf(&h, "],\"data_offsets\":[%zu,%zu]}", off, off + nb)) goto out;
        off += nb;
    }
    if (buf_printf(&h, "}")) goto out;
    // The reference pads the header to 8 bytes; we pad so that the data block (8 + header)
    // starts on a 64-byte boundary: with 2-byte weights and row lengths that are multiples
    // of 32, every row then starts on a cache line, and the SIMD loads never split one.
    while ((8 + h.n) % 64) if (buf_printf(&h, " ")) goto out;
    G3AtomicFile f;
    if (g3_atomic_open(&f, path)) goto out;
    uint64_t hl = h.n;
    if (g3_atomic_write(&f, &hl, 8) || g3_atomic_write(&f, h.s, h.n)) { g3_atomic_abort(&f); goto out; }
    for (int i = from; i < to; i++) {
        const STOut *t = &w->t[i];
        size_t nb = out_bytes(t);
        if (t->data) {
            if (g3_atomic_write(&f, t->data, nb)) { g3_atomic_abort(&f); goto out; }
            continue;
        }
        void *buf = g3_malloc(nb);
        int bad = !buf || t->fill(t->ctx, t, buf) || g3_atomic_write(&f, buf, nb);
        free(buf);
        if (bad) { g3_atomic_abort(&f); goto out; }
    }
    rc = g3_atomic_commit(&f);
out:
    free(h.s);
    return rc;
}

int st_writer_write(STWriter *w, const char *path, const char *metadata) {
    return write_range(w, 0, w->n, path, metadata);
}

// The shard file names (plain names only: nothing outside dir is ever touched) that dir's
// model.safetensors.index.json lists, distinct, into *names (malloc'd, owned by the caller).
// An absent or unreadable index lists none.
static int index_shards(const char *dir, char ***names) {
    char p[4200];
    *names = NULL;
    Json j;
    if (g3_path_join(p, sizeof p, dir, "model.safetensors.index.json") || !g3_file_exists(p) || json_parse_file(&j, p)) {
        g3_error_clear();
        return 0;
    }
    int n = 0;
    const JsonNode *wm = json_get(json_root(&j), "weight_map");
    if (wm && wm->type == JSON_OBJECT) {
        char **v = g3_calloc(wm->count + 1, sizeof *v);
        if (!v) { json_free(&j); return -1; }
        JSON_FOREACH(m, wm) {
            if (!json_is_string(m) || !m->str[0] || strchr(m->str, '/') || !strcmp(m->str, "..")) continue;
            int seen = 0;
            for (int i = 0; i < n && !seen; i++) seen = !strcmp(v[i], m->str);
            if (!seen && !(v[n++] = g3_strdup(m->str))) { json_free(&j); *names = v; return -1; }
        }
        *names = v;
    }
    json_free(&j);
    return n;
}

static void unlink_in(const char *dir, const char *name) {
    char p[4200];
    if (!g3_path_join(p, sizeof p, dir, name)) unlink(p);
}

int st_writer_write_sharded(STWriter *w, const char *dir, size_t max_shard) {
    // plan shards greedily in tensor order
    int nshards = 0;
    size_t acc = 0, total = 0;
    int *shard_of = g3_malloc((size_t)(w->n + 1) * sizeof *shard_of);
    if (!shard_of) return -1;
    for (int i = 0; i < w->n; i++) {
        size_t nb = out_bytes(&w->t[i]);
        if (nshards == 0 || (acc > 0 && acc + nb > max_shard)) { nshards++; acc = 0; }
        acc += nb;
        total += nb;
        shard_of[i] = nshards - 1;
    }
    char path[4200];
    int rc = -1;
    char **old = NULL;
    int nold = index_shards(dir, &old);  // the layout this write replaces, read before it changes
    Buf idx = {0};
    if (nold < 0) goto out;
    if (nshards <= 1) {
        if (g3_path_join(path, sizeof path, dir, "model.safetensors")) goto out;
        if (st_writer_write(w, path, "\"format\":\"pt\"")) goto out;
        // model.safetensors is in place, and loads first (st_open): the old index and shards
        // are dead weight now; the index goes first so no reader ever finds it without shards.
        unlink_in(dir, "model.safetensors.index.json");
        for (int i = 0; i < nold; i++) unlink_in(dir, old[i]);
        rc = 0;
        goto out;
    }
    if (buf_printf(&idx, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", total)) goto out;
    for (int s = 0, i = 0; s < nshards; s++) {
        int from = i;
        while (i < w->n && shard_of[i] == s) i++;
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nshards);
        if (g3_path_join(path, sizeof path, dir, name)) goto out;
        if (write_range(w, from, i, path, "\"format\":\"pt\"")) goto out;
        for (int k = from; k < i; k++)
            if (buf_printf(&idx, "    \"%s\": \"%s\"%s\n", w->t[k].name, name, k + 1 < w->n ? "," : "")) goto out;
        // an old shard of the same name was just replaced, not left behind
        for (int k = 0; k < nold; k++)
            if (old[k] && !strcmp(old[k], name)) { free(old[k]); old[k] = NULL; }
    }
    if (buf_printf(&idx, "  }\n}\n")) goto out;
    if (g3_path_join(path, sizeof path, dir, "model.safetensors.index.json")) goto out;
    if (g3_write_file_atomic(path, idx.s, idx.n)) goto out;
    // The new shards and index are whole; an old single file would still load first (st_open,
    // as transformers): removing it is what makes the new weights the folder's.
    unlink_in(dir, "model.safetensors");
    for (int i = 0; i < nold; i++)
        if (old[i]) unlink_in(dir, old[i]);
    rc = 0;
out:
    if (rc == 0 && g3_fsync_dir(dir)) g3_error_clear();  // best effort, as after any atomic write
    free(idx.s);
    for (int i = 0; i < nold; i++) free(old[i]);
    free(old);
    free(shard_of);
    return rc;
}

void st_writer_free(STWriter *w) {
    for (int i = 0; i < w->nowned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->t);
    memset(w, 0, sizeof *w);
}
