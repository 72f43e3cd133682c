// data.c: token files, text-to-token preparation and batch sampling. See data.h.
#include "data.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"
#include "rng.h"

enum { HDR = 64, VERSION = 1 };
static const char MAGIC[8] = {'G', '3', 'T', 'O', 'K', 'E', 'N', 'S'};

typedef struct {
    char magic[8];
    uint32_t version, vocab;
    int32_t bos, eos;
    uint64_t ntok;
    uint32_t nsrc, data_offset;
    uint8_t reserved[24];
} Header;
_Static_assert(sizeof(Header) == HDR, "token file header is 64 bytes");

int g3_tokfile_is(const char *path) {
    char m[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = fread(m, 1, 8, f) == 8 && !memcmp(m, MAGIC, 8);
    fclose(f);
    return ok;
}

int g3_tokfile_write(const char *path, const uint32_t *ids, int64_t n, int vocab, int bos, int eos,
                     const G3DataSource *src, int nsrc) {
    size_t meta = 0;
    for (int i = 0; i < nsrc; i++) meta += 20 + strlen(src[i].path);
    Header h = {.version = VERSION, .vocab = (uint32_t)vocab, .bos = bos, .eos = eos, .ntok = (uint64_t)n,
                .nsrc = (uint32_t)nsrc, .data_offset = (uint32_t)((HDR + meta + 63) / 64 * 64)};
    memcpy(h.magic, MAGIC, 8);
    char *head = g3_calloc(1, h.data_offset);
    if (!head) return -1;
    memcpy(head, &h, HDR);
    char *p = head + HDR;
    for (int i = 0; i < nsrc; i++) {
        uint32_t len = (uint32_t)strlen(src[i].path);
        memcpy(p, &src[i].size, 8);
        memcpy(p + 8, &src[i].mtime_ns, 8);
        memcpy(p + 16, &len, 4);
        memcpy(p + 20, src[i].path, len);
        p += 20 + len;
    }
    G3AtomicFile f;
    int rc = g3_atomic_open(&f, path);
    if (!rc) rc = g3_atomic_write(&f, head, h.data_offset);
    if (!rc) rc = g3_atomic_write(&f, ids, sizeof(uint32_t) * (size_t)n);
    if (!rc) rc = g3_atomic_commit(&f);
    else g3_atomic_abort(&f);
    free(head);
    return rc;
}

// Maps path and checks its header; *h and the source records stay in the mapping.
static int map_file(const char *path, void **map, size_t *size, const Header **h) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return g3_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size < HDR) { close(fd); return g3_errorf("%s: not a token file (too short)", path); }
    *size = (size_t)st.st_size;
    *map = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (*map == MAP_FAILED) return g3_errorf("%s: mmap failed: %s", path, strerror(errno));
    *h = *map;
    const Header *hd = *h;
    const char *why = NULL;
    if (memcmp(hd->magic, MAGIC, 8)) why = "bad magic (not a gemma3 token file)";
    else if (hd->version != VERSION) why = "unsupported version";
    else if (hd->vocab == 0 || hd->vocab > (1u << 30)) why = "bad vocabulary size";  // ids must fit an int
    else if (hd->data_offset < HDR || hd->data_offset % 64 || hd->data_offset > *size) why = "bad data offset";
    else if (hd->ntok != (*size - hd->data_offset) / 4 || (*size - hd->data_offset) % 4) why = "size does not match the token count";
    if (why) {
        munmap(*map, *size);
        return g3_errorf("%s: %s", path, why);
    }
    return 0;
}

int g3_tokfile_open(G3TokenFile *f, const char *path) {
    memset(f, 0, sizeof *f);
    const Header *h;
    if (map_file(path, &f->map, &f->map_size, &h)) return -1;
    f->tok = (const uint32_t *)((const char *)f->map + h->data_offset);
    f->ntok = (int64_t)h->ntok;
    f->vocab = (int)h->vocab;
    f->bos = h->bos;
    f->eos = h->eos;
    int64_t bad = -1;
    uint32_t mx = 0;
    for (int64_t i = 0; i < f->ntok && bad < 0; i++) {
        if (f->tok[i] >= (uint32_t)f->vocab) bad = i;
        if (f->tok[i] > mx) mx = f->tok[i];
    }
    f->max_id = (int)mx;
    if (bad >= 0) {
        uint32_t v = f->tok[bad];
        int vocab = f->vocab;  // h dies with the mapping
        g3_tokfile_close(f);
        return g3_errorf("%s: token %lld is %u, outside the vocabulary of %d", path, (long long)bad, v, vocab);
    }
    return 0;
}

void g3_tokfile_close(G3TokenFile *f) {
    if (f->map) munmap(f->map, f->map_size);
    memset(f, 0, sizeof *f);
}

int g3_tokfile_fresh(const char *path, const G3DataSource *src, int nsrc) {
    if (!g3_file_exists(path)) return 0;
    void *map;
    size_t size;
    const Header *h;
    if (map_file(path, &map, &size, &h)) { g3_error_clear(); return 0; }
    int ok = h->nsrc == (uint32_t)nsrc;
    const char *p = (const char *)map + HDR, *end = (const char *)map + h->data_offset;
    for (int i = 0; ok && i < nsrc; i++) {
        uint64_t sz;
        int64_t mt;
        uint32_t len;
        if (p + 20 > end) { ok = 0; break; }
        memcpy(&sz, p, 8);
        memcpy(&mt, p + 8, 8);
        memcpy(&len, p + 16, 4);
        ok = p + 20 + len <= end && sz == src[i].size && mt == src[i].mtime_ns && len == strlen(src[i].path) &&
             !memcmp(p + 20, src[i].path, len);
        p += 20 + len;
    }
    munmap(map, size);
    return ok;
}

static int source_of(G3DataSource *s, const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return g3_errorf("%s: %s", path, strerror(errno));
    if (!realpath(path, s->path)) snprintf(s->path, sizeof s->path, "%s", path);
    s->size = (uint64_t)st.st_size;
    s->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return 0;
}

static int cmp_src(const void *a, const void *b) { return strcmp(((const G3DataSource *)a)->path, ((const G3DataSource *)b)->path); }

int g3_data_sources(const char *data_path, const char *tok_path, G3DataSource **out) {
    struct stat st;
    if (stat(data_path, &st) != 0) return g3_errorf("%s: %s", data_path, strerror(errno));
    int n = 0, cap = 16;
    G3DataSource *s = g3_malloc(sizeof *s * (size_t)cap);
    if (!s) return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(data_path);
        if (!d) { free(s); return g3_errorf("%s: cannot list: %s", data_path, strerror(errno)); }
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t len = strlen(e->d_name);
            if (e->d_name[0] == '.' || len < 5 || strcmp(e->d_name + len - 4, ".txt")) continue;
            if (n + 2 > cap) {
                G3DataSource *ns = g3_realloc(s, sizeof *s * (size_t)(cap *= 2));
                if (!ns) { closedir(d); free(s); return -1; }
                s = ns;
            }
            char p[4096];
            if (g3_path_join(p, sizeof p, data_path, e->d_name) || source_of(&s[n], p)) { closedir(d); free(s); return -1; }
            n++;
        }
        closedir(d);
        if (!n) { free(s); return g3_errorf("%s: no *.txt files in this folder", data_path); }
        qsort(s, (size_t)n, sizeof *s, cmp_src);
    } else if (source_of(&s[n++], data_path)) { free(s); return -1; }
    // The tokenizer: its file (a folder's tokenizer.json or tokenizer.model, as g3_tok_load picks).
    char tp[4096];
    snprintf(tp, sizeof tp, "%s", tok_path);
    if (stat(tok_path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (g3_path_join(tp, sizeof tp, tok_path, "tokenizer.json")) { free(s); return -1; }
        if (!g3_file_exists(tp) && g3_path_join(tp, sizeof tp, tok_path, "tokenizer.model")) { free(s); return -1; }
    }
    if (source_of(&s[n++], tp)) { free(s); return g3_error_prefix("tokenizer"); }
    *out = s;
    return n;
}

typedef struct { const char *p; size_t n; } Doc;

static int is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Appends the documents of text[len] (split at `<|endoftext|>` lines) to *docs.
static int split_docs(const char *text, size_t len, Doc **docs, int64_t *n, int64_t *cap) {
    static const char SEP[] = "<|endoftext|>";
    const size_t seplen = sizeof SEP - 1;
    size_t start = 0, i = 0;
    for (;;) {
        // i is at a line start; find the line end.
        size_t e = i;
        while (e < len && text[e] != '\n') e++;
        size_t le = e;
        if (le > i && text[le - 1] == '\r') le--;
        int sep = le - i == seplen && !memcmp(text + i, SEP, seplen);
        if (sep || e >= len) {
            size_t a = start, b = sep ? i : len;
            while (a < b && is_space(text[a])) a++;
            while (b > a && is_space(text[b - 1])) b--;
            if (b > a) {
                if (*n == *cap) {
                    Doc *nd = g3_realloc(*docs, sizeof **docs * (size_t)(*cap = *cap * 2 + 1024));
                    if (!nd) return -1;
                    *docs = nd;
                }
                (*docs)[(*n)++] = (Doc){text + a, b - a};
            }
            start = e + 1;
        }
        if (e >= len) break;
        i = e + 1;
    }
    return 0;
}

// The offset of the first byte of text[len] that is not UTF-8 text (a NUL, a byte that starts
// no character, a truncated, overlong or surrogate sequence, or one past U+10FFFF), or -1.
static int64_t not_text_at(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        if (c == 0) return (int64_t)i;
        if (c < 0x80) { i++; continue; }
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;  // the range of the second byte
        if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return (int64_t)i;
        if (i + k >= n || s[i + 1] < lo || s[i + 1] > hi) return (int64_t)i;
        for (size_t j = 2; j <= k; j++)
            if ((s[i + j] & 0xC0) != 0x80) return (int64_t)i;
        i += k + 1;
    }
    return -1;
}

int g3_data_prepare(const char *data_path, const char *tok_path, const char *out_path, int verbose) {
    G3DataSource *src = NULL;
    int nsrc = g3_data_sources(data_path, tok_path, &src);
    if (nsrc < 0) return -1;
    if (g3_tokfile_fresh(out_path, src, nsrc)) { free(src); return 0; }
    double t0 = g3_now();
    G3Tokenizer *tok = g3_tok_load(tok_path);
    if (!tok) { free(src); return -1; }
    int rc = -1, nfiles = nsrc - 1;
    char **texts = g3_calloc((size_t)nfiles, sizeof *texts);
    Doc *docs = NULL;
    int64_t ndocs = 0, cap = 0, total = 0;
    int32_t **ids = NULL;
    int *nids = NULL;
    uint32_t *all = NULL;
    if (!texts) goto done;
    size_t bytes = 0;
    for (int i = 0; i < nfiles; i++) {
        size_t len;
        if (!(texts[i] = g3_read_file(src[i].path, &len))) goto done;
        // Binary data tokenized as text would train the model on noise without a word said.
        int64_t bad = not_text_at((const unsigned char *)texts[i], len);
        if (bad >= 0) {
            g3_errorf("%s: byte %lld (0x%02x) is %s: not UTF-8 text (a binary file?); --data takes UTF-8 text or a token file",
                      src[i].path, (long long)bad, (unsigned char)texts[i][bad], texts[i][bad] ? "not valid UTF-8" : "a NUL");
            goto done;
        }
        if (split_docs(texts[i], len, &docs, &ndocs, &cap)) goto done;
        bytes += len;
    }
    ids = g3_calloc((size_t)(ndocs ? ndocs : 1), sizeof *ids);
    nids = g3_calloc((size_t)(ndocs ? ndocs : 1), sizeof *nids);
    if (!ids || !nids) goto done;
    int failed = 0, bos = g3_tok_bos(tok), eos = g3_tok_eos(tok);
#pragma omp parallel
    {
        G3TokEncoder *enc = g3_tok_encoder_new(tok);
        if (!enc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t d = 0; d < ndocs; d++) {
            if (!enc) continue;
            const int32_t *out;
            // Plain text: "<eos>" written in a story is spelled out, never a control token.
            int k = g3_tok_encoder_run(enc, docs[d].p, docs[d].n, 0, 0, &out);
            int32_t *v = k >= 0 ? malloc(sizeof(int32_t) * (size_t)(k + 2)) : NULL;
            if (!v) {
#pragma omp atomic write
                failed = 1;
                continue;
            }
            v[0] = bos;
            memcpy(v + 1, out, sizeof(int32_t) * (size_t)k);
            v[k + 1] = eos;
            ids[d] = v;
            nids[d] = k + 2;
        }
        if (enc) g3_tok_encoder_free(enc);
    }
    if (failed) { g3_errorf("%s: tokenizing failed (out of memory)", data_path); goto done; }
    for (int64_t d = 0; d < ndocs; d++) total += nids[d];
    if (!(all = g3_malloc(sizeof(uint32_t) * (size_t)(total ? total : 1)))) goto done;
    int64_t at = 0;
    for (int64_t d = 0; d < ndocs; d++) {
        memcpy(all + at, ids[d], sizeof(uint32_t) * (size_t)nids[d]);
        at += nids[d];
    }
    rc = g3_tokfile_write(out_path, all, total, g3_tok_vocab_size(tok), bos, eos, src, nsrc);
    if (!rc && verbose)
        fprintf(stderr, "data: %s: %d file(s), %.1f MB, %lld documents -> %lld tokens in %.1f s (%s)\n", data_path, nfiles,
                bytes / 1e6, (long long)ndocs, (long long)total, g3_now() - t0, out_path);
done:
    if (texts) for (int i = 0; i < nfiles; i++) free(texts[i]);
    if (ids) for (int64_t d = 0; d < ndocs; d++) free(ids[d]);
    free(texts); free(docs); free(ids); free(nids); free(all); free(src);
    g3_tok_free(tok);
    return rc;
}

void g3_data_batch(const uint32_t *tok, int64_t n, int B, int T, uint64_t seed, int64_t step, int micro,
                   int32_t *inputs, int32_t *targets) {
    G3Rng r;
    g3_rng_seed3(&r, seed, (uint64_t)step, (uint64_t)micro);
    uint64_t starts = (uint64_t)(n - T);  // window [s, s + T] needs s + T < n
    for (int b = 0; b < B; b++) {
        int64_t s = (int64_t)g3_rng_below(&r, starts);
        for (int t = 0; t < T; t++) {
            inputs[b * T + t] = (int32_t)tok[s + t];
            targets[b * T + t] = (int32_t)tok[s + t + 1];
        }
    }
}

void g3_data_val_batch(const uint32_t *tok, int64_t n, int B, int T, int64_t k, int32_t *inputs, int32_t *targets) {
    int64_t nwin = (n - 1) / T;
    for (int b = 0; b < B; b++) {
        int64_t s = ((k * B + b) % nwin) * T;
        for (int t = 0; t < T; t++) {
            inputs[b * T + t] = (int32_t)tok[s + t];
            targets[b * T + t] = (int32_t)tok[s + t + 1];
        }
    }
}

int64_t g3_data_split(const G3TokenFile *f, double frac) {
    int64_t at = (int64_t)((1 - frac) * (double)f->ntok);
    if (at < 0) at = 0;
    for (int64_t i = at; i < f->ntok; i++)
        if ((int)f->tok[i] == f->bos) return i;
    return at;
}
