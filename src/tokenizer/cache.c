// cache.c: the tokenizer's binary cache: the three arrays every source reduces to (pieces,
// flags, merges), kept under the user's cache folder ($XDG_CACHE_HOME/gemma3, by default
// ~/.cache/gemma3) so that loading takes milliseconds instead of parsing 33 MB of JSON. Never
// beside the source: a 12 MB file appearing next to a tokenizer (in a model folder, a run
// folder, a read-only checkout) is not something a user asked for. One cache per source file
// (by its absolute path); the header records the source's size and mtime, and a cache that
// does not match them, or fails its checksum or any bounds check, is ignored and rebuilt. It is
// read like any untrusted file: every offset and id is checked before use. The file also names
// its source, so that caches of tokenizers that are gone or changed (a deleted run folder, a
// test's temporary copy) are removed whenever a new cache is written (tok_cache_sweep): the
// folder holds about one cache per tokenizer file in use, not one per file ever loaded.
//
// Layout (native little-endian): CacheHeader, off[n_vocab+1] u32, flags[n_vocab] u8 (padded to
// 8), blob[blob_len] (padded to 8), merges[n_merges] (4 x i32 each), the source's absolute
// path[path_len] (padded to 8).
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "tok_internal.h"

#define CACHE_MAGIC "G3TOKv2"

typedef struct {
    char magic[8];
    uint32_t byte_order;  // 0x01020304 as written
    uint32_t n_vocab;
    uint64_t src_size;
    int64_t src_mtime_ns;
    uint64_t blob_len;
    uint32_t n_merges;
    uint32_t path_len;    // the source's absolute path, at the end
    uint64_t checksum;    // of everything after the header
} CacheHeader;

static void real_path(const char *src, char *real, size_t cap) {
    char r[PATH_MAX];
    if (realpath(src, r)) snprintf(real, cap, "%s", r);
    else snprintf(real, cap, "%s", src);
}

int tok_cache_path(char *out, size_t cap, const char *src) {
    char dir[4096];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(dir, sizeof dir, "%s/gemma3", xdg);
    else if (home && *home) snprintf(dir, sizeof dir, "%s/.cache/gemma3", home);
    else return -1;
    // one cache per source file: its absolute path's hash, and its name for the curious
    char real[4096];
    real_path(src, real, sizeof real);
    const char *base = strrchr(real, '/');
    base = base ? base + 1 : real;
    int n = snprintf(out, cap, "%s/%08x-%s.g3tok", dir, tok_hash(real, strlen(real)), base);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

static size_t pad8(size_t n) { return (n + 7) & ~(size_t)7; }

static uint64_t checksum(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// Sizes of the sections for given counts; -1 on overflow or an implausible count.
static int layout(uint64_t n_vocab, uint64_t blob_len, uint64_t n_merges, uint64_t path_len, size_t *total) {
    if (n_vocab > (1u << 30) || blob_len > UINT32_MAX || n_merges > (1u << 30) || path_len >= 4096) return -1;
    *total = sizeof(CacheHeader) + pad8((size_t)(n_vocab + 1) * 4) + pad8((size_t)n_vocab) + pad8((size_t)blob_len) +
             (size_t)n_merges * sizeof(TokMerge) + pad8((size_t)path_len);
    return 0;
}

int tok_cache_write(const G3Tokenizer *t, const char *path, const char *src, uint64_t src_size, int64_t src_mtime_ns) {
    char real[4096];
    real_path(src, real, sizeof real);
    size_t total, plen = strlen(real);
    if (layout((uint64_t)t->n_vocab, t->blob_len, (uint64_t)t->n_merges, plen, &total)) return g3_errorf("tokenizer too large to cache");
    uint8_t *buf = g3_calloc(1, total);
    if (!buf) return -1;
    CacheHeader *h = (CacheHeader *)buf;
    memcpy(h->magic, CACHE_MAGIC, 8);
    h->byte_order = 0x01020304;
    h->n_vocab = (uint32_t)t->n_vocab;
    h->src_size = src_size;
    h->src_mtime_ns = src_mtime_ns;
    h->blob_len = t->blob_len;
    h->n_merges = (uint32_t)t->n_merges;
    h->path_len = (uint32_t)plen;
    uint8_t *p = buf + sizeof *h;
    memcpy(p, t->off, ((size_t)t->n_vocab + 1) * 4);
    p += pad8(((size_t)t->n_vocab + 1) * 4);
    memcpy(p, t->flags, (size_t)t->n_vocab);
    p += pad8((size_t)t->n_vocab);
    memcpy(p, t->blob, t->blob_len);
    p += pad8(t->blob_len);
    memcpy(p, t->merges, (size_t)t->n_merges * sizeof(TokMerge));
    p += (size_t)t->n_merges * sizeof(TokMerge);
    memcpy(p, real, plen);
    h->checksum = checksum(buf + sizeof *h, total - sizeof *h);
    int rc = g3_write_file_atomic(path, buf, total);
    free(buf);
    return rc;
}

int tok_cache_read_mem(G3Tokenizer *t, const uint8_t *data, size_t len, uint64_t src_size, int64_t src_mtime_ns) {
    CacheHeader h;
    if (len < sizeof h) return g3_errorf("cache: truncated header");
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, CACHE_MAGIC, 8) || h.byte_order != 0x01020304) return g3_errorf("cache: not a gemma3.c tokenizer cache of this version");
    if (h.src_size != src_size || h.src_mtime_ns != src_mtime_ns) return g3_errorf("cache: stale (source changed)");
    size_t total;
    if (layout(h.n_vocab, h.blob_len, h.n_merges, h.path_len, &total) || total != len) return g3_errorf("cache: sizes do not match the file");
    if (h.n_vocab == 0 || h.blob_len == 0) return g3_errorf("cache: empty vocabulary");
    if (checksum(data + sizeof h, len - sizeof h) != h.checksum) return g3_errorf("cache: checksum mismatch");

    const uint8_t *p = data + sizeof h;
    uint32_t n = h.n_vocab;
    t->n_vocab = (int32_t)n;
    t->off = g3_malloc(((size_t)n + 1) * 4);
    t->flags = g3_malloc(n);
    t->blob = g3_malloc(h.blob_len);
    t->merges = g3_malloc(h.n_merges ? (size_t)h.n_merges * sizeof(TokMerge) : 1);
    if (!t->off || !t->flags || !t->blob || !t->merges) return -1;
    memcpy(t->off, p, ((size_t)n + 1) * 4);
    p += pad8(((size_t)n + 1) * 4);
    memcpy(t->flags, p, n);
    p += pad8(n);
    memcpy(t->blob, p, h.blob_len);
    p += pad8(h.blob_len);
    memcpy(t->merges, p, (size_t)h.n_merges * sizeof(TokMerge));
    t->blob_len = h.blob_len;
    t->n_merges = (int32_t)h.n_merges;
    if (t->off[0] != 0 || t->off[n] != h.blob_len) return g3_errorf("cache: bad piece offsets");
    for (uint32_t i = 0; i < n; i++) {
        if (t->off[i + 1] <= t->off[i] || t->blob[t->off[i + 1] - 1] != 0) return g3_errorf("cache: bad piece %u", i);
        if (t->flags[i] & ~(TOKF_BYTE | TOKF_ADDED | TOKF_SPECIAL | TOKF_UNUSED)) return g3_errorf("cache: bad flags for piece %u", i);
    }
    return 0;  // merge ids are checked when the merge table is built
}

// Whether the cache file at path still serves a tokenizer: its source exists with the size and
// mtime it was made from.
static int cache_alive(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 1;  // gone already, or not ours to judge
    CacheHeader h;
    char src[4096];
    size_t total;
    struct stat st;
    int alive = fread(&h, sizeof h, 1, f) == 1 && !memcmp(h.magic, CACHE_MAGIC, 8) && h.byte_order == 0x01020304 &&
                !layout(h.n_vocab, h.blob_len, h.n_merges, h.path_len, &total) && h.path_len > 0 &&
                !fseek(f, (long)(total - pad8(h.path_len)), SEEK_SET) && fread(src, 1, h.path_len, f) == h.path_len;
    fclose(f);
    if (!alive) return 0;
    src[h.path_len] = 0;
    return stat(src, &st) == 0 && (uint64_t)st.st_size == h.src_size &&
           (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec == h.src_mtime_ns;
}

void tok_cache_sweep(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char p[4400];
        if (n < 7 || strcmp(e->d_name + n - 6, ".g3tok") || snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p) continue;
        if (!cache_alive(p)) unlink(p);
    }
    closedir(d);
}
