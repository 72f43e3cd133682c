// gguf_meta.c: g3_tok_write_gguf_meta (tok_gguf.h): a tokenizer into GGUF metadata, as
// llama.cpp's converter writes Gemma's, so the files `gemma3 quantize` writes carry their
// tokenizer (and llama.cpp can run them).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "io/gguf.h"
#include "tok_gguf.h"
#include "tok_internal.h"

// The tokenizer.model to take scores from: path itself (by content: not JSON, not GGUF) or a
// folder's tokenizer.model when the folder has one. 0 with file set, 1 if none.
static int find_spm(const char *path, char *file, size_t cap) {
    struct stat st;
    if (stat(path, &st) != 0) return 1;
    if (S_ISDIR(st.st_mode)) {
        if (g3_path_join(file, cap, path, "tokenizer.model")) return 1;
        return g3_file_exists(file) ? 0 : 1;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return 1;
    char head[4] = {0};
    size_t n = fread(head, 1, 4, f);
    fclose(f);
    // a SentencePiece model starts with field 1 (a piece), wire type 2: byte 0x0A
    if (n < 1 || head[0] != 0x0A) return 1;
    snprintf(file, cap, "%s", path);
    return 0;
}

static void write_ids(GGUFWriter *w, const G3Tokenizer *t) {
    if (t->bos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos_id);
    if (t->eos_id >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos_id);
    if (t->unk_id >= 0) gguf_w_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk_id);
    if (t->pad_id >= 0) gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad_id);
    // As the converter writes Gemma's: <bos> first, no <eos>, and no space put before the text
    // (llama.cpp's SentencePiece path adds one unless told not to: Gemma's tokenizer does not).
    gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
    gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
    gguf_w_bool(w, "tokenizer.ggml.add_space_prefix", 0);
}

// Tokens n..rows-1, when the model's embedding has more rows than the tokenizer has pieces
// (Gemma 3 4B and larger: 262208 rows, 262144 pieces): "[PADi]" (i from 1), score -1000, type
// unused, as llama.cpp's converter pads a vocabulary to the config's size. llama.cpp takes the
// vocabulary's size from the token list and refuses an embedding of another row count.
// The names go in one buffer the caller frees. 0, or -1 out of memory.
static int pad_tokens(const char **s, uint32_t *lens, float *scores, int32_t *types, int32_t n, int32_t rows, char **buf) {
    *buf = NULL;
    if (rows <= n) return 0;
    char *b = g3_malloc((size_t)(rows - n) * 16);
    if (!b) return -1;
    for (int32_t i = n; i < rows; i++) {
        char *p = b + (size_t)(i - n) * 16;
        lens[i] = (uint32_t)snprintf(p, 16, "[PAD%d]", (int)(i - n + 1));
        s[i] = p, scores[i] = -1000.0f, types[i] = SPM_UNUSED;
    }
    *buf = b;
    return 0;
}

static int write_spm(GGUFWriter *w, const char *file, const G3Tokenizer *t, int32_t rows) {
    size_t len;
    uint8_t *data = (uint8_t *)g3_read_file(file, &len);
    if (!data) return -1;
    TokSpmPiece *pc;
    int32_t n;
    if (tok_spm_pieces(data, len, &pc, &n)) { free(data); return g3_error_prefix("%s", file); }
    const int32_t nt = G3_MAX(n, rows);
    const char **s = g3_malloc((size_t)nt * sizeof *s);
    uint32_t *lens = g3_malloc((size_t)nt * sizeof *lens);
    float *scores = g3_malloc((size_t)nt * sizeof *scores);
    int32_t *types = g3_malloc((size_t)nt * sizeof *types);
    char *pad = NULL;
    int rc = -1;
    if (s && lens && scores && types && !pad_tokens(s, lens, scores, types, G3_MAX(n, G3_MIN(rows, t->n_vocab)), rows, &pad)) {
        for (int32_t i = 0; i < n; i++) {
            s[i] = (const char *)pc[i].s;
            lens[i] = pc[i].n;
            scores[i] = pc[i].score;
            types[i] = pc[i].type;
        }
        for (int32_t i = n; i < G3_MIN(rows, t->n_vocab); i++) {  // what the loader adds (Gemma 3's <image_soft_token>)
            s[i] = tok_piece_ptr(t, i), lens[i] = tok_piece_len(t, i), scores[i] = 0;
            types[i] = t->flags[i] & TOKF_SPECIAL ? SPM_CONTROL : SPM_USER_DEFINED;
        }
        gguf_w_str(w, "tokenizer.ggml.model", "llama");
        gguf_w_arr_str(w, "tokenizer.ggml.tokens", s, lens, (uint64_t)nt);
        gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)nt);
        gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)nt);
        write_ids(w, t);
        rc = 0;
    }
    free(s), free(lens), free(scores), free(types), free(pad), free(pc), free(data);
    return rc;
}

// From the loaded arrays (tokenizer.json, or a GGUF's): pieces, types from the flags, the
// merges as "left right", and scores -(rank + 1) on merged pieces (0 elsewhere) so that even a
// reader that ignores the merges ranks them in the same order.
static int write_arrays(GGUFWriter *w, const G3Tokenizer *t, int32_t rows) {
    const int32_t n = t->n_vocab, nt = G3_MAX(n, rows);
    const char **s = g3_malloc((size_t)nt * sizeof *s);
    uint32_t *lens = g3_malloc((size_t)nt * sizeof *lens);
    float *scores = g3_calloc((size_t)nt, sizeof *scores);
    int32_t *types = g3_malloc((size_t)nt * sizeof *types);
    char **ms = g3_calloc((size_t)t->n_merges + 1, sizeof *ms);
    char *pad = NULL;
    int rc = -1;
    if (!s || !lens || !scores || !types || !ms || pad_tokens(s, lens, scores, types, n, rows, &pad)) goto out;
    for (int32_t i = 0; i < n; i++) {
        s[i] = tok_piece_ptr(t, i);
        lens[i] = tok_piece_len(t, i);
        uint8_t f = t->flags[i];
        types[i] = f & TOKF_UNUSED ? SPM_UNUSED : f & TOKF_SPECIAL ? SPM_CONTROL : f & TOKF_ADDED ? SPM_USER_DEFINED
                 : f & TOKF_BYTE ? SPM_BYTE : SPM_NORMAL;
    }
    for (int32_t k = 0; k < t->n_merges; k++) {
        const TokMerge *m = &t->merges[k];
        uint32_t ln = tok_piece_len(t, m->left), rn = tok_piece_len(t, m->right);
        if (!(ms[k] = g3_malloc((size_t)ln + rn + 2))) goto out;
        memcpy(ms[k], tok_piece_ptr(t, m->left), ln);
        ms[k][ln] = ' ';
        memcpy(ms[k] + ln + 1, tok_piece_ptr(t, m->right), rn);
        ms[k][ln + 1 + rn] = 0;
        float sc = -(float)(m->rank + 1);
        if (scores[m->result] == 0 || sc > scores[m->result]) scores[m->result] = sc;
    }
    gguf_w_str(w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(w, "tokenizer.ggml.tokens", s, lens, (uint64_t)nt);
    gguf_w_arr(w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)nt);
    gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)nt);
    gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, (uint64_t)t->n_merges);
    write_ids(w, t);
    rc = 0;
out:
    if (ms)
        for (int32_t k = 0; k < t->n_merges; k++) free(ms[k]);
    free(ms), free(s), free(lens), free(scores), free(types), free(pad);
    return rc;
}

static int is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char head[4] = {0};
    size_t n = fread(head, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(head, "GGUF", 4);
}

// A GGUF's tokenizer: its tokenizer.* keys as they are (checked by loading them first).
static int copy_gguf(GGUFWriter *w, const char *path) {
    G3Tokenizer *t = g3_tok_load(path);
    if (!t) return -1;
    g3_tok_free(t);
    GGUFFile g;
    if (gguf_open(&g, path)) return -1;
    for (int i = 0; i < g.nkv; i++)
        if (!strncmp(g.kv[i].key, "tokenizer.", 10)) gguf_w_kv(w, &g.kv[i]);
    gguf_close(&g);
    return 0;
}

int g3_tok_write_gguf_meta(GGUFWriter *w, const char *path, int32_t rows) {
    if (is_gguf(path)) return copy_gguf(w, path);  // as it is: its rows were its model's
    G3Tokenizer *t = g3_tok_load(path);
    if (!t) return -1;
    char file[4096];
    int rc = find_spm(path, file, sizeof file) == 0 ? write_spm(w, file, t, rows) : write_arrays(w, t, rows);
    g3_tok_free(t);
    return rc;
}

// ---- GGUF -> tokenizer.model ----

static void pb_put(TokBlob *b, const void *p, size_t n, int *fail) {
    uint32_t off;
    if (!*fail && n && tok_blob_add(b, p, n, &off)) *fail = 1;
    if (!*fail && n) b->len--;  // tok_blob_add ends each piece with a NUL: not wanted here
}
static void pb_varint(TokBlob *b, uint64_t v, int *fail) {
    uint8_t buf[10];
    int n = 0;
    do { buf[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0)); v >>= 7; } while (v);
    pb_put(b, buf, (size_t)n, fail);
}
static void pb_key(TokBlob *b, int field, int wire, int *fail) { pb_varint(b, (uint64_t)(field << 3 | wire), fail); }
static void pb_bytes(TokBlob *b, int field, const void *p, size_t n, int *fail) {
    pb_key(b, field, 2, fail);
    pb_varint(b, n, fail);
    pb_put(b, p, n, fail);
}

int g3_tok_gguf_to_spm(const char *gguf, const char *out) {
    GGUFFile g;
    if (gguf_open(&g, gguf)) return -1;
    G3Tokenizer t;
    memset(&t, 0, sizeof t);
    if (tok_load_gguf(&t, &g)) { gguf_close(&g); return -1; }  // validates the arrays read below
    tok_free_contents(&t);
    const GGUFKV *tokens = gguf_kv(&g, "tokenizer.ggml.tokens"), *scores = gguf_kv(&g, "tokenizer.ggml.scores"),
                 *types = gguf_kv(&g, "tokenizer.ggml.token_type");
    if (gguf_kv(&g, "tokenizer.ggml.merges")) {
        gguf_close(&g);
        return g3_errorf("%s: the tokenizer has a merge list, which tokenizer.model cannot hold", gguf);
    }
    TokBlob b = {0}, piece = {0};
    int fail = 0;
    const uint8_t *p = tokens->value;
    for (uint64_t i = 0; i < tokens->n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        float sc;
        int32_t ty;
        memcpy(&sc, scores->value + 4 * i, 4);
        memcpy(&ty, types->value + 4 * i, 4);
        piece.len = 0;
        pb_bytes(&piece, 1, p + 8, (size_t)len, &fail);
        pb_key(&piece, 2, 5, &fail);
        pb_put(&piece, &sc, 4, &fail);
        pb_key(&piece, 3, 0, &fail);
        pb_varint(&piece, (uint64_t)ty, &fail);
        pb_bytes(&b, 1, piece.blob, piece.len, &fail);
        p += 8 + len;
    }
    // trainer_spec: BPE (model_type 2) with byte fallback; normalizer_spec: identity, no dummy
    // prefix, whitespace kept and escaped as U+2581 (what load_spm.c accepts: Gemma's settings)
    TokBlob sub = {0};
    pb_key(&sub, 3, 0, &fail), pb_varint(&sub, 2, &fail);
    pb_key(&sub, 35, 0, &fail), pb_varint(&sub, 1, &fail);
    pb_bytes(&b, 2, sub.blob, sub.len, &fail);
    sub.len = 0;
    pb_bytes(&sub, 1, "identity", 8, &fail);
    pb_key(&sub, 3, 0, &fail), pb_varint(&sub, 0, &fail);
    pb_key(&sub, 4, 0, &fail), pb_varint(&sub, 0, &fail);
    pb_key(&sub, 5, 0, &fail), pb_varint(&sub, 1, &fail);
    pb_bytes(&b, 3, sub.blob, sub.len, &fail);
    int rc = fail ? g3_errorf("out of memory") : g3_write_file_atomic(out, b.blob, b.len);
    free(b.blob), free(piece.blob), free(sub.blob);
    gguf_close(&g);
    return rc;
}
