// bench_tokenizer.c: tokenizer load time (cold from tokenizer.json / tokenizer.model, and from
// the binary cache) and encode throughput on 5 MB of TinyStories (1 and 2 threads), plus two
// long unbroken inputs that defeat word splitting and caching. bench/tokenizer_peers.sh runs
// Hugging Face tokenizers and SentencePiece on the same text and compares.
//
// usage: bench_tokenizer [TEXT_FILE [LONG_FILE]]
//   TEXT_FILE default: TinyStories train+valid alternated up to 5,000,000 bytes
//   LONG_FILE default: the first MiB of TEXT_FILE without spaces and newlines
// Last line: "RESULT key=value ..." for scripts.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tests/tok_testdata.h"
#include "base/base.h"
#include "tokenizer/tokenizer.h"

#define TS_DIR "../shared/data/tinystories"
enum { TEXT_BYTES = 5000000 };

static char *tinystories(size_t *len) {
    const char *dir = getenv("G3_TINYSTORIES");
    if (!dir) dir = TS_DIR;
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/train.txt", dir);
    snprintf(p2, sizeof p2, "%s/valid.txt", dir);
    size_t n1, n2;
    char *a = g3_read_file(p1, &n1), *b = g3_read_file(p2, &n2);
    if (!a || !b) { free(a); free(b); return NULL; }
    char *t = malloc(TEXT_BYTES + 1);
    size_t at = 0;
    for (int i = 0; at < TEXT_BYTES; i++) {
        const char *src = i % 2 ? b : a;
        size_t n = G3_MIN(i % 2 ? n2 : n1, (size_t)TEXT_BYTES - at);
        memcpy(t + at, src, n);
        at += n;
    }
    t[at] = 0;
    free(a);
    free(b);
    *len = at;
    return t;
}

// Best of `reps` runs, in MB/s.
static double encode_mbps(const G3Tokenizer *tok, const char *text, size_t len, int threads, int reps, int *ntok) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        int32_t *ids;
        double t0 = g3_now();
        int n = threads == 1 ? g3_tok_encode(tok, text, len, 1, 1, &ids) : g3_tok_encode_parallel(tok, text, len, 1, 1, threads, &ids);
        double dt = g3_now() - t0;
        if (n < 0) { fprintf(stderr, "encode: %s\n", g3_error()); exit(1); }
        free(ids);
        *ntok = n;
        if (dt < best) best = dt;
    }
    return len / 1e6 / best;
}

static double load_s(const char *path, int flags) {
    double t0 = g3_now();
    G3Tokenizer *t = g3_tok_load_ex(path, flags);
    double dt = g3_now() - t0;
    if (!t) { fprintf(stderr, "load %s: %s\n", path, g3_error()); exit(1); }
    g3_tok_free(t);
    return dt;
}

int main(int argc, char **argv) {
    const char *json = tok_json_path(), *spm = TOK_DATA "/tokenizer.model";
    if (!json) return 1;
    size_t len;
    char *text = argc > 1 ? g3_read_file(argv[1], &len) : tinystories(&len);
    if (!text) { fprintf(stderr, "no text: %s (set G3_TINYSTORIES or pass a file)\n", g3_error()); return 1; }

    double lj = load_s(json, G3_TOK_LOAD_NO_CACHE), ls = load_s(spm, G3_TOK_LOAD_NO_CACHE);
    load_s(json, 0);  // make sure the cache exists
    double lc = load_s(json, 0);
    printf("load   tokenizer.json %.3f s, tokenizer.model %.3f s, binary cache %.3f s\n", lj, ls, lc);

    G3Tokenizer *tok = g3_tok_load(json);
    int ntok;
    double m1 = encode_mbps(tok, text, len, 1, 3, &ntok);
    double m2 = encode_mbps(tok, text, len, 2, 3, &ntok);
    printf("encode %.1f MB TinyStories (%d tokens): 1 thread %.1f MB/s, 2 threads %.1f MB/s\n", len / 1e6, ntok, m1, m2);

    // Long unbroken inputs: the same text without spaces or newlines (one 1 MB "word": no
    // splitting, no cache), and 1 MB of one letter repeated.
    size_t ln = G3_MIN(len, (size_t)1 << 20), k = 0;
    char *nospace = malloc(len + 1);
    for (size_t i = 0; i < len && k < ln; i++)
        if (text[i] != ' ' && text[i] != '\n') nospace[k++] = text[i];
    if (argc > 2) {
        free(nospace);
        if (!(nospace = g3_read_file(argv[2], &k))) { fprintf(stderr, "%s\n", g3_error()); return 1; }
        ln = k;
    }
    double mn = encode_mbps(tok, nospace, k, 1, 2, &ntok);
    printf("long   %.1f MB without spaces as one word: %.1f MB/s (%d tokens)\n", k / 1e6, mn, ntok);
    memset(nospace, 'a', ln);
    double ma = encode_mbps(tok, nospace, ln, 1, 2, &ntok);
    printf("long   %.1f MB of 'a': %.1f MB/s (%d tokens)\n", ln / 1e6, ma, ntok);

    // Decoding throughput, through the streaming decoder.
    int32_t *ids;
    int n = g3_tok_encode(tok, text, len, 0, 1, &ids);
    double t0 = g3_now();
    char *back = g3_tok_decode(tok, ids, n, 0, NULL);
    double dd = g3_now() - t0;
    printf("decode %.1f MB/s (round trip %s)\n", len / 1e6 / dd, back && !strcmp(back, text) ? "exact" : "DIFFERS");
    printf("RESULT load_json=%.3f load_model=%.3f load_cache=%.3f enc1=%.2f enc2=%.2f long_nospace=%.2f long_a=%.2f\n", lj, ls,
           lc, m1, m2, mn, ma);
    free(back);
    free(ids);
    free(nospace);
    free(text);
    g3_tok_free(tok);
    return 0;
}
