// load_gguf.c: the tokenizer from a GGUF file's metadata, so that a .gguf alone is enough for
// generate, chat and trace. llama.cpp's converter writes Gemma's SentencePiece model as
//   tokenizer.ggml.model      "llama"
//   tokenizer.ggml.tokens     [string]  the pieces, `▁` for space, <0xNN> byte pieces
//   tokenizer.ggml.scores     [f32]     SentencePiece scores (they rank the merges)
//   tokenizer.ggml.token_type [i32]     SentencePiece's piece types (1 normal ... 6 byte)
// so these become the same pieces tokenizer.model gives (load_spm.c), merges derived from the
// scores. A file that also has tokenizer.ggml.merges ("left right" strings in rank order, as
// our writer and the BPE-style converters store them) gets exactly those merges instead.
// Only Gemma's kind is accepted: a "gpt2" (byte-level BPE) or other model is refused by name.
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "io/gguf.h"
#include "tok_internal.h"

static void rd_u64le(const uint8_t *p, uint64_t *v) { memcpy(v, p, 8); }

// The array key, checked for its element type and (if n_want >= 0) its length.
static const GGUFKV *array_kv(const GGUFFile *g, const char *key, GGUFType elem, int64_t n_want) {
    const GGUFKV *kv = gguf_kv(g, key);
    if (!kv) { g3_errorf("metadata '%s' is missing", key); return NULL; }
    if (kv->type != GGUF_ARRAY || kv->arr_type != elem) { g3_errorf("metadata '%s' has the wrong type", key); return NULL; }
    if (n_want >= 0 && kv->n != (uint64_t)n_want) {
        g3_errorf("metadata '%s' has %llu entries, tokenizer.ggml.tokens %lld", key, (unsigned long long)kv->n, (long long)n_want);
        return NULL;
    }
    return kv;
}

// Replaces the derived merges with the file's list ("left right"; the split is the space at
// which both halves are pieces).
static int use_file_merges(G3Tokenizer *t, const GGUFKV *kv) {
    if (kv->n > (uint64_t)INT32_MAX) return g3_errorf("tokenizer.ggml.merges: too many entries");
    TokMerge *m = g3_malloc((kv->n ? kv->n : 1) * sizeof *m);
    if (!m) return -1;
    const uint8_t *p = kv->value;
    char *buf = NULL;
    size_t bufcap = 0;
    for (uint64_t k = 0; k < kv->n; k++) {
        uint64_t len;
        rd_u64le(p, &len);
        const char *s = (const char *)p + 8;
        p += 8 + len;
        if (len + 1 > bufcap) {
            char *nb = g3_realloc(buf, len + 1);
            if (!nb) goto fail;
            buf = nb;
            bufcap = len + 1;
        }
        memcpy(buf, s, len);
        buf[len] = 0;
        int found = 0;
        for (size_t cut = 1; cut + 1 < len && !found; cut++) {
            if (buf[cut] != ' ') continue;
            int32_t l = tok_lookup(t, buf, cut), r = tok_lookup(t, buf + cut + 1, len - cut - 1);
            if (l < 0 || r < 0) continue;
            // the merged piece: left bytes then right bytes
            memmove(buf + cut, buf + cut + 1, len - cut - 1);
            int32_t res = tok_lookup(t, buf, len - 1);
            if (res < 0) break;
            m[k] = (TokMerge){l, r, res, (int32_t)k};
            found = 1;
        }
        if (!found) {
            g3_errorf("tokenizer.ggml.merges[%llu]: \"%.*s\" is not two pieces whose join is a piece", (unsigned long long)k,
                      (int)G3_MIN(len, 60), s);
            goto fail;
        }
    }
    free(buf);
    free(t->merges);
    t->merges = m;
    t->n_merges = (int32_t)kv->n;
    return 0;
fail:
    free(buf);
    free(m);
    return -1;
}

int tok_load_gguf(G3Tokenizer *t, const GGUFFile *g) {
    const char *model;
    size_t model_len;
    int r = gguf_get_str(g, "tokenizer.ggml.model", &model, &model_len);
    if (r > 0) return g3_errorf("%s: no tokenizer in this GGUF (metadata 'tokenizer.ggml.model' is missing); give --tokenizer FILE or ids", g->path);
    if (r < 0) return -1;
    if (!(model_len == 5 && !memcmp(model, "llama", 5)))
        return g3_errorf("%s: tokenizer.ggml.model '%.*s' is not supported (Gemma's is 'llama', a SentencePiece BPE)", g->path,
                         (int)G3_MIN(model_len, 40), model);
    const GGUFKV *tokens = array_kv(g, "tokenizer.ggml.tokens", GGUF_STRING, -1);
    if (!tokens) return g3_error_prefix("%s", g->path);
    if (tokens->n == 0 || tokens->n >= (1u << 30)) return g3_errorf("%s: tokenizer.ggml.tokens has %llu entries", g->path, (unsigned long long)tokens->n);
    int64_t n = (int64_t)tokens->n;
    const GGUFKV *scores = array_kv(g, "tokenizer.ggml.scores", GGUF_F32, n);
    if (!scores) return g3_error_prefix("%s", g->path);
    const GGUFKV *types = array_kv(g, "tokenizer.ggml.token_type", GGUF_I32, n);
    if (!types) return g3_error_prefix("%s", g->path);
    const GGUFKV *merges = gguf_kv(g, "tokenizer.ggml.merges");
    if (merges && !array_kv(g, "tokenizer.ggml.merges", GGUF_STRING, -1)) return g3_error_prefix("%s", g->path);

    TokSpmPiece *pc = g3_malloc((size_t)n * sizeof *pc);
    if (!pc) return -1;
    const uint8_t *p = tokens->value;
    for (int64_t i = 0; i < n; i++) {
        uint64_t len;
        rd_u64le(p, &len);
        if (len > UINT32_MAX) { free(pc); return g3_errorf("%s: tokenizer.ggml.tokens[%lld] is too long", g->path, (long long)i); }
        int32_t ty;
        memcpy(&ty, types->value + 4 * i, 4);
        float sc;
        memcpy(&sc, scores->value + 4 * i, 4);
        pc[i] = (TokSpmPiece){p + 8, (uint32_t)len, sc, ty};
        p += 8 + len;
    }
    int rc = tok_from_spm_pieces(t, pc, (int32_t)n);
    free(pc);
    if (rc == 0 && merges) rc = use_file_merges(t, merges);
    if (rc) return g3_error_prefix("%s", g->path);
    return 0;
}
