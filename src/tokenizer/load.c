// load.c: g3_tok_load: finds the tokenizer file (a file, or a model folder holding
// tokenizer.json or tokenizer.model, or a GGUF model file), tells the formats apart by content, and uses the binary
// cache (cache.c) when it is fresh: under $XDG_CACHE_HOME/gemma3 (or ~/.cache/gemma3), never
// beside the source. A cache that cannot be written is not an error.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/gguf.h"
#include "tok_internal.h"

// A GGUF model file (by its magic): its tokenizer is in the metadata, and the file is mapped,
// never read whole (it holds the weights too).
static int is_gguf(const char *file) {
    FILE *f = fopen(file, "rb");
    if (!f) return 0;
    char magic[4] = {0};
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(magic, "GGUF", 4);
}

static int load_gguf_file(G3Tokenizer *t, const char *file) {
    GGUFFile g;
    if (gguf_open(&g, file)) return -1;
    int rc = tok_load_gguf(t, &g);
    gguf_close(&g);
    return rc;
}

static int try_cache(G3Tokenizer *t, const char *cpath, uint64_t size, int64_t mtime) {
    size_t len;
    if (!g3_file_exists(cpath)) return -1;
    uint8_t *data = (uint8_t *)g3_read_file(cpath, &len);
    if (!data) return -1;
    int rc = tok_cache_read_mem(t, data, len, size, mtime);
    free(data);
    if (rc == 0) rc = tok_index_pieces(t) || tok_index_rest(t) ? -1 : 0;
    if (rc) tok_free_contents(t);
    return rc;
}

// A cache folder that cannot be made or written means no cache, not an error. Writing one is
// also when dead caches go (tok_cache_sweep), so the folder never grows with every copy of a
// tokenizer that was ever loaded.
static void write_cache(const G3Tokenizer *t, const char *cpath, const char *src, uint64_t size, int64_t mtime) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", cpath);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (g3_mkdir_p(dir)) { g3_error_clear(); return; }
    tok_cache_sweep(dir);
    if (tok_cache_write(t, cpath, src, size, mtime)) g3_error_clear();
}

G3Tokenizer *g3_tok_load_ex(const char *path, int flags) {
    struct stat st;
    char file[4096];
    if (stat(path, &st) != 0) { g3_errorf("%s: no such file or folder", path); return NULL; }
    if (S_ISDIR(st.st_mode)) {
        const char *names[] = {"tokenizer.json", "tokenizer.model"};
        int found = 0;
        for (int i = 0; i < 2 && !found; i++)
            if (g3_path_join(file, sizeof file, path, names[i]) == 0 && stat(file, &st) == 0 && S_ISREG(st.st_mode)) found = 1;
        if (!found) { g3_errorf("%s: no tokenizer.json or tokenizer.model in this folder", path); return NULL; }
    } else if (snprintf(file, sizeof file, "%s", path) >= (int)sizeof file) {
        g3_errorf("%s: path too long", path);
        return NULL;
    }
    uint64_t size = (uint64_t)st.st_size;
    int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;

    G3Tokenizer *t = g3_calloc(1, sizeof *t);
    if (!t) return NULL;
    char cpath[4600] = "";
    if (flags & G3_TOK_LOAD_NO_CACHE || tok_cache_path(cpath, sizeof cpath, file)) cpath[0] = 0;
    if (cpath[0] && try_cache(t, cpath, size, mtime) == 0) return t;

    int rc;
    if (is_gguf(file)) {
        rc = load_gguf_file(t, file);
        if (rc == 0) rc = tok_index_rest(t);
        if (rc) {
            tok_free_contents(t);
            free(t);
            return NULL;
        }
        if (cpath[0]) write_cache(t, cpath, file, size, mtime);
        return t;
    }
    size_t len;
    char *data = g3_read_file(file, &len);
    if (!data) { free(t); return NULL; }
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    int is_json = i < len && data[i] == '{';
    rc = is_json ? tok_load_json_mem(t, data, len) : tok_load_spm_mem(t, (const uint8_t *)data, len);
    free(data);
    if (rc == 0) rc = tok_index_rest(t);
    if (rc) {
        g3_error_prefix("%s", file);
        tok_free_contents(t);
        free(t);
        return NULL;
    }
    if (cpath[0]) write_cache(t, cpath, file, size, mtime);
    return t;
}

G3Tokenizer *g3_tok_load(const char *path) { return g3_tok_load_ex(path, 0); }

void g3_tok_free(G3Tokenizer *t) {
    if (!t) return;
    tok_free_contents(t);
    free(t);
}
