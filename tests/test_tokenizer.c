// test_tokenizer.c: Gemma 3's tokenizer against the Hugging Face `tokenizers` reference ids
// (vectors_public.jsonl), from both tokenizer.json and tokenizer.model, plus round trips,
// plain-text mode, invalid UTF-8, streaming decode, the binary cache and parallel encoding.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/json.h"
#include "check.h"
#include "tok_vectors.h"
#include "tok_testdata.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"

static int same_ids(const int32_t *a, int na, const int32_t *b, int nb) {
    return na == nb && (na == 0 || !memcmp(a, b, (size_t)na * sizeof *a));
}

static void print_diff(const char *what, const Vec *v, const int32_t *got, int n) {
    fprintf(stderr, "%s: text \"%.60s\": got %d ids [", what, v->text, n);
    for (int i = 0; i < n && i < 20; i++) fprintf(stderr, "%s%d", i ? "," : "", got[i]);
    fprintf(stderr, "] want %d [", v->n);
    for (int i = 0; i < v->n && i < 20; i++) fprintf(stderr, "%s%d", i ? "," : "", v->ids[i]);
    fprintf(stderr, "]\n");
}

static void check_vectors(const G3Tokenizer *tok, const char *name, const Vec *v, int nv) {
    int bad = 0;
    for (int i = 0; i < nv; i++) {
        int32_t *ids = NULL;
        int n = g3_tok_encode(tok, v[i].text, v[i].len, v[i].add_bos, 1, &ids);
        if (!same_ids(ids, n, v[i].ids, v[i].n)) {
            if (bad++ < 5) print_diff(name, &v[i], ids, n);
        }
        // Round trip (without <bos>). The reference itself maps a literal `▁` in the text to a
        // space when decoding, so those texts come back with spaces.
        int32_t *nb = NULL;
        int m = g3_tok_encode(tok, v[i].text, v[i].len, 0, 1, &nb);
        size_t dl;
        char *back = g3_tok_decode(tok, nb, m, 0, &dl);
        char *want = malloc(v[i].len + 1);
        size_t wl = 0;
        for (size_t k = 0; k < v[i].len; k++) {
            if (k + 2 < v[i].len && !memcmp(v[i].text + k, "\xE2\x96\x81", 3)) { want[wl++] = ' '; k += 2; }
            else want[wl++] = v[i].text[k];
        }
        CHECK(back && dl == wl && !memcmp(back, want, wl), "%s: round trip of \"%.40s\"", name, v[i].text);
        free(want);
        free(back);
        free(nb);
        free(ids);
    }
    CHECK(bad == 0, "%s: %d of %d vectors differ", name, bad, nv);
}

static int count_id(const int32_t *ids, int n, int id) {
    int c = 0;
    for (int i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

static int valid_utf8(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int l = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!l || i + (size_t)l > n) return 0;
        for (int k = 1; k < l; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return 0;
        i += (size_t)l;
    }
    return 1;
}

static void check_special_and_plain(const G3Tokenizer *tok) {
    CHECK(g3_tok_bos(tok) == 2 && g3_tok_eos(tok) == 1 && g3_tok_pad(tok) == 0, "special ids");
    CHECK(g3_tok_start_of_turn(tok) == 105 && g3_tok_end_of_turn(tok) == 106, "turn ids");
    CHECK(g3_tok_is_stop(tok, 1) && g3_tok_is_stop(tok, 106) && !g3_tok_is_stop(tok, 2), "stop ids");
    CHECK(g3_tok_id_of(tok, "<start_of_image>") == 255999, "<start_of_image>");
    CHECK(g3_tok_piece(tok, 9259) && !strcmp(g3_tok_piece(tok, 9259), "Hello"), "piece 9259 = Hello");

    const char *t = "a<start_of_turn>b\n\n<bos>";
    int32_t *ids;
    int n = g3_tok_encode(tok, t, strlen(t), 0, 1, &ids);
    CHECK(count_id(ids, n, 105) == 1 && count_id(ids, n, 2) == 1, "special text recognised by default");
    free(ids);
    n = g3_tok_encode(tok, t, strlen(t), 0, 0, &ids);
    CHECK(count_id(ids, n, 105) == 0 && count_id(ids, n, 2) == 0, "plain text: no special tokens");
    CHECK(count_id(ids, n, g3_tok_id_of(tok, "\n\n")) == 1, "plain text: newline runs still whole");
    char *back = g3_tok_decode(tok, ids, n, 0, NULL);
    CHECK(back && !strcmp(back, t), "plain text decodes back: %s", back);
    free(back);
    free(ids);
}

static void check_invalid_utf8(const G3Tokenizer *tok) {
    const char bad[] = "ok \xff\xfe \xe2\x96 \xc0\x80 \xed\xa0\x80 end \xf0\x9f\x98";
    int32_t *ids;
    int n = g3_tok_encode(tok, bad, sizeof bad - 1, 1, 1, &ids);
    CHECK(n > 0, "invalid UTF-8 encodes");
    CHECK(count_id(ids, n, g3_tok_id_of(tok, "<0xFF>")) == 1, "0xFF is its byte token");
    size_t dl;
    char *s = g3_tok_decode(tok, ids, n, 1, &dl);
    CHECK(s && valid_utf8(s, dl), "decode of invalid bytes is valid UTF-8");
    CHECK(s && strstr(s, "ok ") == s && strstr(s, " end "), "the valid parts survive: %s", s);
    free(s);
    free(ids);
}

// Streaming: every step's output is whole UTF-8, and the steps add up to the full decode.
static void check_streaming(const G3Tokenizer *tok) {
    // U+2F800, U+10FFFD and U+2FD5 are not pieces: byte fallback.
    const char *t = "caf\xc3\xa9 \xf0\xaf\xa0\x80 \xf4\x8f\xbf\xbd\xe2\xbf\x95 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87";
    int32_t *ids;
    int n = g3_tok_encode(tok, t, strlen(t), 0, 1, &ids);
    int nbytes = 0;
    for (int i = 0; i < n; i++) nbytes += g3_tok_is_special(tok, ids[i]) == 0 && strncmp(g3_tok_piece(tok, ids[i]), "<0x", 3) == 0;
    CHECK(nbytes >= 11, "test text uses byte fallback (%d byte pieces)", nbytes);
    G3TokDecoder d;
    g3_tok_decoder_init(&d, 0);
    char out[G3_TOK_DECODE_MAX], all[1024];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        int k = g3_tok_decode_step(tok, &d, ids[i], out, sizeof out);
        CHECK(k >= 0 && valid_utf8(out, (size_t)k), "step %d gives whole characters", i);
        memcpy(all + at, out, (size_t)k);
        at += (size_t)k;
    }
    at += (size_t)g3_tok_decode_flush(&d, all + at, sizeof all - at);
    CHECK(at == strlen(t) && !memcmp(all, t, at), "streamed text equals the input");
    // a truncated character held at the end comes out as U+FFFD per byte
    g3_tok_decoder_init(&d, 0);
    int k = g3_tok_decode_step(tok, &d, g3_tok_id_of(tok, "<0xE4>"), out, sizeof out);
    CHECK(k == 0, "lead byte held");
    k = g3_tok_decode_step(tok, &d, g3_tok_id_of(tok, "<0xB8>"), out, sizeof out);
    CHECK(k == 0, "second byte held");
    k = g3_tok_decode_step(tok, &d, g3_tok_id_of(tok, "Hello"), out, sizeof out);
    CHECK(k == 6 + 5 && !memcmp(out, "\xEF\xBF\xBD\xEF\xBF\xBDHello", 11), "incomplete char then a piece");
    CHECK(g3_tok_decode_step(tok, &d, 999999, out, sizeof out) < 0, "bad id rejected");
    int32_t sp[] = {2, 9259, 106, 1};
    char *s = g3_tok_decode(tok, sp, 4, 1, NULL);
    CHECK(s && !strcmp(s, "Hello"), "skip_special: %s", s);
    free(s);
    s = g3_tok_decode(tok, sp, 4, 0, NULL);
    CHECK(s && !strcmp(s, "<bos>Hello<end_of_turn><eos>"), "specials printed: %s", s);
    free(s);
    free(ids);
}

static void check_chat(const G3Tokenizer *tok) {
    G3ChatTurn turns[] = {{"user", "  Hi there!\n"}, {"model", "Hello."}, {"user", "Say <end_of_turn> now"}};
    char *s = g3_chat_format(turns, 3, "Be brief.", 1);
    const char *want = "<bos><start_of_turn>user\nBe brief.\n\nHi there!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
                       "<start_of_turn>user\nSay <end_of_turn> now<end_of_turn>\n<start_of_turn>model\n";
    CHECK(s && !strcmp(s, want), "chat format: %s", s);
    int32_t *a, *b;
    int na = g3_chat_encode(tok, turns, 2, "Be brief.", 1, &a);
    char *s2 = g3_chat_format(turns, 2, "Be brief.", 1);
    int nb = g3_tok_encode(tok, s2, strlen(s2), 0, 1, &b);
    CHECK(same_ids(a, na, b, nb), "chat ids equal tokenizing the formatted text");
    CHECK(a[0] == 2 && a[1] == 105 && a[na - 1] != 106, "chat starts <bos><start_of_turn>");
    free(a);
    free(b);
    na = g3_chat_encode(tok, turns, 3, NULL, 1, &a);
    CHECK(count_id(a, na, 106) == 3 && count_id(a, na, 105) == 4, "user text cannot forge <end_of_turn>");
    free(a);
    G3ChatTurn wrong[] = {{"model", "x"}};
    CHECK(g3_chat_format(wrong, 1, NULL, 0) == NULL && g3_chat_encode(tok, wrong, 1, NULL, 0, &a) < 0, "roles checked");
    free(s);
    free(s2);
}

static void check_parallel(const G3Tokenizer *tok, const Vec *v, int nv) {
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    for (int r = 0; len + 4096 < cap; r++) {
        const Vec *x = &v[r % nv];
        if (len + x->len + 2 >= cap) break;
        memcpy(text + len, x->text, x->len);
        len += x->len;
        text[len++] = r % 3 ? ' ' : '\n';
    }
    int32_t *a, *b;
    double t0 = g3_now();
    int na = g3_tok_encode(tok, text, len, 1, 1, &a);
    double t1 = g3_now();
    int nb = g3_tok_encode_parallel(tok, text, len, 1, 1, 4, &b);
    CHECK(na > 0 && same_ids(a, na, b, nb), "parallel encode equals serial (%d vs %d ids)", na, nb);
    printf("encoded %.1f MB in %.3f s\n", len / 1e6, t1 - t0);
    free(a);
    free(b);
    free(text);
}

// The binary cache, on a tiny tokenizer (fast): written under $XDG_CACHE_HOME/gemma3 and never
// beside the tokenizer, read back, equal; a damaged or stale cache is ignored and rebuilt; an
// unwritable cache folder means no cache, not an error. (The full vocabulary's cache is
// exercised by the CLI checks.)
static void check_cache(const G3Tokenizer *big) {
    char dir[512], path[600], cache[700], beside[700], xdg[600];
    const char *build = getenv("BUILD");
    snprintf(dir, sizeof dir, "%s/tokdata", build && *build ? build : "build");
    snprintf(path, sizeof path, "%s/tiny.json", dir);
    snprintf(beside, sizeof beside, "%s.g3tok", path);
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    char *old_xdg = getenv("XDG_CACHE_HOME") ? g3_strdup(getenv("XDG_CACHE_HOME")) : NULL;
    setenv("XDG_CACHE_HOME", xdg, 1);
    size_t len;
    char *src = g3_read_file("fuzz/corpus/fuzz_tok_json/tiny.json", &len);
    CHECK(src && g3_mkdir_p(dir) == 0 && g3_write_file_atomic(path, src, len) == 0, "tiny tokenizer copied");
    free(src);
    CHECK(tok_cache_path(cache, sizeof cache, path) == 0 && !strncmp(cache, xdg, strlen(xdg)), "cache path %s", cache);
    remove(cache);
    remove(beside);
    G3Tokenizer *a = g3_tok_load(path);  // parses and writes the cache
    CHECK(a && g3_file_exists(cache), "cache written to %s", cache);
    CHECK(!g3_file_exists(beside), "cache written beside %s", path);
    G3Tokenizer *b = g3_tok_load(path);  // reads it
    CHECK(b && g3_tok_vocab_size(b) == g3_tok_vocab_size(a), "cached vocabulary");
    const char *t = "Hello  world <b>x</b>\n\n caf\xc3\xa9 \xf0\x9f\x98\x80";
    int32_t *x, *y;
    int nx = g3_tok_encode(a, t, strlen(t), 1, 1, &x), ny = b ? g3_tok_encode(b, t, strlen(t), 1, 1, &y) : -1;
    CHECK(nx > 3 && same_ids(x, nx, y, ny), "cache gives the same ids");
    free(x);
    if (ny >= 0) free(y);
    g3_tok_free(b);
    FILE *f = fopen(cache, "r+b");  // damage it
    if (f) { fseek(f, 200, SEEK_SET); fputc('X', f); fclose(f); }
    b = g3_tok_load(path);
    CHECK(b != NULL, "damaged cache ignored: %s", b ? "" : g3_error());
    g3_tok_free(b);
    g3_tok_free(a);
    // The cache of a tokenizer file that is gone goes at the next cache write (any tokenizer's).
    char copy[700], copy_cache[800];
    snprintf(copy, sizeof copy, "%s/copy.json", dir);
    src = g3_read_file(path, &len);
    CHECK(src && g3_write_file_atomic(copy, src, len) == 0 && tok_cache_path(copy_cache, sizeof copy_cache, copy) == 0, "copy");
    free(src);
    g3_tok_free(g3_tok_load(copy));
    CHECK(g3_file_exists(copy_cache), "the copy's cache %s", copy_cache);
    remove(copy);
    remove(cache);  // a miss: the next load writes a cache, and sweeps
    b = g3_tok_load(path);
    CHECK(b && g3_file_exists(cache) && !g3_file_exists(copy_cache), "the cache of a deleted tokenizer file was kept");
    g3_tok_free(b);
    // A cache folder that cannot be made: the load still works, and writes nothing beside.
    setenv("XDG_CACHE_HOME", "/proc/gemma3-no-such-folder", 1);
    b = g3_tok_load(path);
    CHECK(b && g3_tok_vocab_size(b) > 0 && !g3_file_exists(beside), "load with an unwritable cache folder: %s", b ? "" : g3_error());
    g3_tok_free(b);
    if (old_xdg) setenv("XDG_CACHE_HOME", old_xdg, 1);
    else unsetenv("XDG_CACHE_HOME");
    free(old_xdg);
    (void)big;
}

// The CLI forms outside checks use (skipped when $BIN is not set).
static void check_cli(const char *json) {
    const char *bin = getenv("BIN");
    if (!bin || !g3_file_exists(bin)) return;
    char cmd[2048], out[4096];
    struct { const char *args, *want; } cases[] = {
        {"tokenize --tokenizer %s --text 'Hello, world!'", "2,9259,236764,1902,236888\n"},
        {"tokenize --tokenizer %s --text 'Hello, world!' --no-bos", "9259,236764,1902,236888\n"},
        {"detokenize --tokenizer %s --ids 9259,236764,1902,236888", "Hello, world!"},
        {"tokenize --tokenizer %s --input tests/data/tokenizer/cli_input.jsonl",
         "{\"ids\": [2,9259,236764,1902,236888]}\n{\"ids\": [105,2364,107,2202]}\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[1024];
        snprintf(args, sizeof args, cases[i].args, json);
        snprintf(cmd, sizeof cmd, "%s %s", bin, args);
        FILE *p = popen(cmd, "r");
        size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
        out[n] = 0;
        int rc = p ? pclose(p) : -1;
        CHECK(rc == 0 && !strcmp(out, cases[i].want), "gemma3 %s: got '%s'", args, out);
    }
}

int main(void) {
    const char *json = tok_json_path();
    CHECK(json != NULL, "tokenizer.json available");
    if (!json) return check_done();
    Vec *v = NULL;
    int nv = load_vectors(TOK_DATA "/vectors_public.jsonl", &v);
    CHECK(nv == 237, "237 vectors (got %d)", nv);

    G3Tokenizer *tj = g3_tok_load_ex(json, G3_TOK_LOAD_NO_CACHE);
    CHECK(tj != NULL, "load %s: %s", json, tj ? "" : g3_error());
    G3Tokenizer *ts = g3_tok_load_ex(TOK_DATA "/tokenizer.model", G3_TOK_LOAD_NO_CACHE);
    CHECK(ts != NULL, "load tokenizer.model: %s", ts ? "" : g3_error());
    if (!tj || !ts) return check_done();
    CHECK(g3_tok_vocab_size(tj) == 262145 && g3_tok_vocab_size(ts) == 262145, "vocabulary sizes");

    check_vectors(tj, "tokenizer.json", v, nv);
    check_vectors(ts, "tokenizer.model", v, nv);
    check_special_and_plain(tj);
    check_special_and_plain(ts);
    check_invalid_utf8(tj);
    check_streaming(tj);
    check_chat(tj);
    check_parallel(tj, v, nv);
    check_cache(tj);
    check_cli(json);

    G3Tokenizer *none = g3_tok_load("tests/data/no-such-file.json");
    CHECK(none == NULL && strstr(g3_error(), "no-such-file"), "missing file named: %s", g3_error());
    // one huge id among few pieces (a fuzzer's find): a clear error, not a 4 GB allocation
    G3Tokenizer *sp = NULL;
    FILE *f = fopen("fuzz/corpus/fuzz_tok_json/tiny.json", "rb");
    char *tiny = malloc(1 << 20);
    size_t tn = f ? fread(tiny, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    tiny[tn] = 0;
    char *at = strstr(tiny, "\"</b>\": 10");
    CHECK(at != NULL, "tiny.json has the piece </b> = 10");
    if (at) {
        FILE *o = fopen("build/sparse-tokenizer.json", "wb");
        if (o) {
            fwrite(tiny, 1, (size_t)(at - tiny), o);
            fputs("\"</b>\": 482222222", o);
            fputs(at + strlen("\"</b>\": 10"), o);
            fclose(o);
        }
        sp = g3_tok_load_ex("build/sparse-tokenizer.json", G3_TOK_LOAD_NO_CACHE);
        CHECK(sp == NULL && strstr(g3_error(), "dense"), "sparse ids rejected: %s", sp ? "loaded" : g3_error());
    }
    free(tiny);
    g3_tok_free(sp);
    g3_tok_free(tj);
    g3_tok_free(ts);
    for (int i = 0; i < nv; i++) free(v[i].text), free(v[i].ids);
    free(v);
    return check_done();
}
