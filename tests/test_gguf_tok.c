// test_gguf_tok.c: the tokenizer from a GGUF file's metadata. Gemma 3's tokenizer written into
// GGUF metadata the way llama.cpp's converter writes it (from tokenizer.model: tokens, scores,
// token types) and the way our writer does from tokenizer.json (plus the merges) loads back
// to the Hugging Face reference ids (vectors_public.jsonl, made with tokenizer.json); a GGUF
// without a tokenizer, a lying array, an unsupported model kind are clear errors; `gemma3
// tokenize --tokenizer FILE.gguf` works from the file alone.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "check.h"
#include "tok_vectors.h"
#include "io/gguf.h"
#include "tok_testdata.h"
#include "tokenizer/tok_gguf.h"
#include "tokenizer/tokenizer.h"

static void check_vectors(const char *gguf, const char *name, const Vec *v, int nv) {
    G3Tokenizer *tok = g3_tok_load_ex(gguf, G3_TOK_LOAD_NO_CACHE);
    CHECK(tok != NULL, "%s: load: %s", name, g3_error());
    if (!tok) return;
    CHECK(g3_tok_bos(tok) == 2 && g3_tok_eos(tok) == 1 && g3_tok_pad(tok) == 0, "%s: special ids", name);
    CHECK(g3_tok_start_of_turn(tok) == 105 && g3_tok_end_of_turn(tok) == 106, "%s: turn ids", name);
    int bad = 0;
    for (int i = 0; i < nv; i++) {
        int32_t *ids = NULL;
        int n = g3_tok_encode(tok, v[i].text, v[i].len, v[i].add_bos, 1, &ids);
        int same = n == v[i].n && (n == 0 || !memcmp(ids, v[i].ids, (size_t)n * sizeof *ids));
        if (!same && bad++ < 3) fprintf(stderr, "%s: \"%.60s\" differs (%d ids, want %d)\n", name, v[i].text, n, v[i].n);
        free(ids);
    }
    CHECK(bad == 0, "%s: %d of %d vectors differ from tokenizer.json's", name, bad, nv);
    g3_tok_free(tok);
}

// A GGUF holding only the tokenizer metadata of src (and an architecture key), padded to rows.
static int write_tok_gguf_rows(const char *src, const char *out, int32_t rows) {
    GGUFWriter w;
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "general.architecture", "gemma3");
    int rc = g3_tok_write_gguf_meta(&w, src, rows);
    if (rc == 0) rc = gguf_w_write(&w, out);
    gguf_w_free(&w);
    return rc;
}
static int write_tok_gguf(const char *src, const char *out) { return write_tok_gguf_rows(src, out, 0); }

// Loading this GGUF fails with a message that holds want.
static void check_refused(const GGUFWriter *w, const char *path, const char *want, const char *what) {
    CHECK(gguf_w_write(w, path) == 0, "%s: write", what);
    G3Tokenizer *tok = g3_tok_load_ex(path, G3_TOK_LOAD_NO_CACHE);
    CHECK(tok == NULL, "%s: loaded", what);
    CHECK(tok != NULL || strstr(g3_error(), want), "%s: message '%s' lacks '%s'", what, g3_error(), want);
    g3_tok_free(tok);
}

int main(void) {
    Vec *v = NULL;
    int nv = load_vectors(TOK_DATA "/vectors_public.jsonl", &v);
    CHECK(nv > 50, "vectors: %d", nv);
    const char *json = tok_json_path();
    CHECK(json != NULL, "tokenizer.json");
    char spm_gguf[64], json_gguf[64], bad[64];
    snprintf(spm_gguf, sizeof spm_gguf, "/tmp/g3_toksp_%d.gguf", (int)getpid());
    snprintf(json_gguf, sizeof json_gguf, "/tmp/g3_tokjs_%d.gguf", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/g3_tokbad_%d.gguf", (int)getpid());

    // as llama.cpp's converter writes it: from tokenizer.model
    CHECK(write_tok_gguf(TOK_DATA "/tokenizer.model", spm_gguf) == 0, "write from tokenizer.model: %s", g3_error());
    check_vectors(spm_gguf, "gguf from tokenizer.model", v, nv);
    {   // the flags llama.cpp reads: no space before the text (its SentencePiece default adds
        // one, and then every file we write tokenizes differently there), <bos>, no <eos>
        GGUFFile g;
        CHECK(gguf_open(&g, spm_gguf) == 0, "reopen: %s", g3_error());
        const char *keys[3] = {"tokenizer.ggml.add_space_prefix", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"};
        const int want[3] = {0, 1, 0};
        for (int i = 0; i < 3; i++) {
            const GGUFKV *kv = gguf_kv(&g, keys[i]);
            CHECK(kv && kv->type == GGUF_BOOL && kv->value[0] == want[i], "%s: missing or not %d", keys[i], want[i]);
        }
        gguf_close(&g);
    }
    // from tokenizer.json: merges carried
    if (json) {
        CHECK(write_tok_gguf(json, json_gguf) == 0, "write from tokenizer.json: %s", g3_error());
        check_vectors(json_gguf, "gguf from tokenizer.json", v, nv);
    }
    // padded to an embedding of more rows (Gemma 3 4B: 262208 rows, 262144 pieces): unused
    // "[PADi]" tokens after the pieces, as llama.cpp's converter pads; the same encodings
    {
        char padded[64];
        snprintf(padded, sizeof padded, "/tmp/g3_tokpad_%d.gguf", (int)getpid());
        for (int from_json = 0; from_json <= (json != NULL); from_json++) {
            const char *src = from_json ? json : TOK_DATA "/tokenizer.model";
            G3Tokenizer *t0 = g3_tok_load_ex(src, G3_TOK_LOAD_NO_CACHE);
            const int n = t0 ? g3_tok_vocab_size(t0) : 0;
            g3_tok_free(t0);
            CHECK(n > 0 && write_tok_gguf_rows(src, padded, n + 64) == 0, "write padded: %s", g3_error());
            GGUFFile g;
            CHECK(gguf_open(&g, padded) == 0, "reopen padded: %s", g3_error());
            const GGUFKV *kv = gguf_kv(&g, "tokenizer.ggml.tokens"), *ty = gguf_kv(&g, "tokenizer.ggml.token_type");
            CHECK(kv && kv->n == (uint64_t)n + 64 && ty && ty->n == (uint64_t)n + 64, "%s: padded lists of %d + 64", src, n);
            if (ty && ty->n == (uint64_t)n + 64) {
                int32_t last;
                memcpy(&last, ty->value + 4 * (size_t)(n + 63), 4);
                CHECK(last == 5, "%s: a padding token's type %d, not unused (5)", src, (int)last);
            }
            gguf_close(&g);
            G3Tokenizer *t1 = g3_tok_load_ex(padded, G3_TOK_LOAD_NO_CACHE);
            CHECK(t1 && g3_tok_vocab_size(t1) == n + 64, "%s: padded tokenizer loads with %d pieces", src, n + 64);
            g3_tok_free(t1);
            check_vectors(padded, from_json ? "padded gguf from tokenizer.json" : "padded gguf from tokenizer.model", v, nv);
        }
        unlink(padded);
    }
    // a GGUF's tokenizer copies into another GGUF
    char copy[64];
    snprintf(copy, sizeof copy, "/tmp/g3_tokcp_%d.gguf", (int)getpid());
    CHECK(write_tok_gguf(spm_gguf, copy) == 0, "write from a gguf: %s", g3_error());
    check_vectors(copy, "gguf copied from gguf", v, nv);

    // the command line, from the file alone
    CHECK(sh("./gemma3 tokenize --tokenizer %s --text 'Hello world' > /tmp/g3_tokout_%d.txt", spm_gguf, (int)getpid()) == 0,
          "gemma3 tokenize --tokenizer FILE.gguf");
    char outp[64];
    snprintf(outp, sizeof outp, "/tmp/g3_tokout_%d.txt", (int)getpid());
    size_t ol;
    char *out = g3_read_file(outp, &ol);
    CHECK(out && !strncmp(out, "2,9259,1902", 11), "ids of 'Hello world': %s", out ? out : "(none)");
    free(out);
    unlink(outp);

    // no tokenizer; unsupported kind; arrays that disagree; a merge that is no pair of pieces
    GGUFWriter w;
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "general.architecture", "gemma3");
    check_refused(&w, bad, "tokenizer.ggml.model", "no tokenizer");
    gguf_w_str(&w, "tokenizer.ggml.model", "gpt2");
    check_refused(&w, bad, "gpt2", "gpt2 model");
    gguf_w_free(&w);

    const char *toks[] = {"<pad>", "<eos>", "<bos>", "<unk>", "a", "b", "ab"};
    float scores[] = {0, 0, 0, 0, 0, 0, -1};
    int32_t types[] = {3, 3, 3, 2, 1, 1, 1};
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 7);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, 6);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_I32, types, 7);
    check_refused(&w, bad, "tokenizer.ggml.scores", "short scores");
    gguf_w_free(&w);

    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 7);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, 7);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_F32, scores, 7);
    check_refused(&w, bad, "tokenizer.ggml.token_type", "types of the wrong type");
    gguf_w_free(&w);

    int32_t badtypes[] = {3, 3, 3, 2, 1, 1, 9};
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 7);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, 7);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_I32, badtypes, 7);
    check_refused(&w, bad, "type 9", "unknown token type");
    gguf_w_free(&w);

    const char *merges[] = {"a b", "b c"};
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 7);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, 7);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_I32, types, 7);
    gguf_w_arr_str(&w, "tokenizer.ggml.merges", merges, NULL, 2);
    check_refused(&w, bad, "tokenizer.ggml.merges[1]", "bad merge");
    gguf_w_free(&w);

    // the small one without the bad merge works and merges a + b
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 7);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, 7);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_I32, types, 7);
    CHECK(gguf_w_write(&w, bad) == 0, "write small");
    G3Tokenizer *tok = g3_tok_load_ex(bad, G3_TOK_LOAD_NO_CACHE);
    CHECK(tok != NULL, "small: %s", g3_error());
    if (tok) {
        int32_t *ids = NULL;
        int n = g3_tok_encode(tok, "aab", 3, 0, 1, &ids);
        CHECK(n == 2 && ids[0] == 4 && ids[1] == 6, "small: 'aab' -> a ab (n=%d)", n);
        free(ids);
        g3_tok_free(tok);
    }
    gguf_w_free(&w);

    unlink(spm_gguf), unlink(json_gguf), unlink(copy), unlink(bad);
    for (int i = 0; i < nv; i++) free(v[i].text), free(v[i].ids);
    free(v);
    return check_done();
}
