// test_perplexity.c: `gemma3 perplexity` and `gemma3 kl` on the tiny fixture with a small
// byte-level tokenizer (a GGUF holding only tokenizer metadata). Perplexity against a direct
// computation of llama-perplexity's definition here (each chunk of ctx tokens from an empty
// cache, <bos> first, the second half scored), the last line exactly `bits per byte: X`; KL
// of a model against itself is 0 with full agreement, against a quantized file small and
// positive (its Q4_0 file: the fixture's logits are too peaked for Q8_0's to show); bad input
// exits 1.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "io/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static char tmp[64];

static void write_tokenizer(const char *path) {
    const char *toks[4 + 256 + 27];
    char bytes[256][8], letters[26][2];
    float scores[4 + 256 + 27] = {0};
    int32_t types[4 + 256 + 27];
    int n = 0;
    const char *spec[] = {"<pad>", "<eos>", "<bos>", "<unk>"};
    for (int i = 0; i < 4; i++) types[n] = i == 3 ? 2 : 3, toks[n++] = spec[i];
    for (int b = 0; b < 256; b++) snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b), types[n] = 6, toks[n++] = bytes[b];
    types[n] = 1, toks[n++] = "\xE2\x96\x81";
    for (int c = 0; c < 26; c++) letters[c][0] = (char)('a' + c), letters[c][1] = 0, types[n] = 1, toks[n++] = letters[c];
    GGUFWriter w;
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "tokenizer.ggml.model", "llama");
    gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, (uint64_t)n);
    gguf_w_arr(&w, "tokenizer.ggml.scores", GGUF_F32, scores, (uint64_t)n);
    gguf_w_arr(&w, "tokenizer.ggml.token_type", GGUF_I32, types, (uint64_t)n);
    CHECK(gguf_w_write(&w, path) == 0, "tokenizer: %s", g3_error());
    gguf_w_free(&w);
}

// The definition, computed directly: nats per token and the count.
static double direct_nats(const char *model, const char *tokpath, const char *text, int ctx, long *count) {
    G3Model m;
    G3Tokenizer *tok = g3_tok_load_ex(tokpath, G3_TOK_LOAD_NO_CACHE);
    if (g3_model_load(&m, model) || !tok) { CHECK(0, "%s", g3_error()); return 0; }
    int32_t *ids;
    int n = g3_tok_encode(tok, text, strlen(text), 0, 0, &ids);
    int V = m.cfg.vocab;
    float *lg = malloc((size_t)ctx * V * sizeof *lg);
    double nll = 0;
    *count = 0;
    for (int c = 0; c < n / ctx; c++) {
        G3State *s = g3_state_new(&m, 1, ctx, ctx, 1, NULL);
        int32_t *chunk = ids + (size_t)c * ctx;
        chunk[0] = g3_tok_bos(tok);
        g3_prefill(s, 0, chunk, ctx, lg);
        for (int j = ctx / 2; j < ctx - 1; j++) {
            const float *r = lg + (size_t)j * V;
            double mx = r[0], sum = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, r[v]);
            for (int v = 0; v < V; v++) sum += exp(r[v] - mx);
            nll += mx + log(sum) - r[chunk[j + 1]];
            (*count)++;
        }
        g3_state_free(s);
    }
    free(lg), free(ids);
    g3_tok_free(tok);
    g3_model_free(&m);
    return nll / (double)*count;
}

// The value after "key: " in the file, or NAN.
static double value_of(const char *file, const char *key) {
    size_t len;
    char *s = g3_read_file(file, &len);
    double v = NAN;
    char *p = s ? strstr(s, key) : NULL;
    if (p) v = strtod(p + strlen(key), NULL);
    free(s);
    return v;
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/g3_ppl_%d", (int)getpid());
    CHECK(sh("mkdir -p %s", tmp) == 0, "mkdir");
    char tok[128], txt[128], out[128];
    snprintf(tok, sizeof tok, "%s/tok.gguf", tmp);
    snprintf(txt, sizeof txt, "%s/text.txt", tmp);
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    write_tokenizer(tok);
    char text[1200];  // about 18 chunks of 64 one-byte tokens
    size_t k = 0;
    const char *words[] = {"the ", "cat ", "sat ", "on ", "a ", "mat ", "and ", "dog ", "ran ", "far "};
    for (int i = 0; k + 8 < sizeof text; i++) {
        const char *wd = words[(i * 7 + i / 3) % 10];
        memcpy(text + k, wd, strlen(wd));
        k += strlen(wd);
    }
    text[k] = 0;
    FILE *f = fopen(txt, "w");
    fputs(text, f);
    fclose(f);
    const char *dir = "tests/fixtures/gemma3-tiny-f32";

    CHECK(sh("./gemma3 perplexity --model %s --tokenizer %s --data %s --ctx 64 > %s", dir, tok, txt, out) == 0, "perplexity runs");
    long count = 0;
    double want = direct_nats(dir, tok, text, 64, &count);
    double got = value_of(out, "nats per token: "), ppl = value_of(out, "perplexity: "), bpb = value_of(out, "bits per byte: ");
    double ntok = value_of(out, "\ntokens: ");
    CHECK(fabs(got - want) <= 1e-4 * want, "nats per token %.6f, direct %.6f", got, want);
    CHECK(ntok == (double)count, "tokens %g, direct %ld", ntok, count);
    CHECK(fabs(ppl - exp(got)) <= 1e-4 * ppl, "perplexity %g = exp(%g)", ppl, got);
    // one byte per token here, except the <bos>... every scored token is one letter or a space
    CHECK(fabs(bpb - got / log(2.0)) <= 1e-4 * bpb, "bits per byte %g with one byte per token", bpb);
    CHECK(sh("tail -n 1 %s | grep -qE '^bits per byte: [0-9.]+$'", out) == 0, "last line is `bits per byte: X`");

    // kl: itself, then its Q8_0 file
    CHECK(sh("./gemma3 kl --base %s --model %s --tokenizer %s --data %s --ctx 64 > %s", dir, dir, tok, txt, out) == 0, "kl runs");
    CHECK(fabs(value_of(out, "mean KL: ")) < 1e-9 && value_of(out, "top-1 agreement: ") == 1.0, "kl of a model with itself");
    // the random fixture's logits are so peaked that its Q8_0 file's KL rounds to 0: Q4_0 shows
    char q4[128];
    snprintf(q4, sizeof q4, "%s/q4.gguf", tmp);
    CHECK(sh("./gemma3 quantize --model %s --out %s --type Q4_0 --quiet 2>/dev/null", dir, q4) == 0, "quantize");
    CHECK(sh("./gemma3 kl --base %s --model %s --tokenizer %s --data %s --ctx 64 > %s", dir, q4, tok, txt, out) == 0, "kl q4 runs");
    double mkl = value_of(out, "mean KL: "), p99 = value_of(out, "p99 KL: "), agree = value_of(out, "top-1 agreement: ");
    CHECK(mkl > 0 && mkl < 0.05 && p99 >= mkl && agree > 0.8, "Q4_0: mean KL %g p99 %g agreement %g", mkl, p99, agree);
    printf("Q4_0 against F32 (tiny random fixture): mean KL %.2e, p99 %.2e, top-1 %.3f\n", mkl, p99, agree);

    CHECK(sh("./gemma3 perplexity --model %s --tokenizer %s --data %s --ctx 100000 2>/dev/null", dir, tok, txt) == 1, "text shorter than a chunk: exit 1");
    CHECK(sh("./gemma3 perplexity --model %s --data %s 2>/dev/null", dir, txt) == 1, "no tokenizer: exit 1");
    CHECK(sh("./gemma3 kl --base %s --data %s 2>/dev/null", dir, txt) == 1, "kl without --model: exit 1");
    if (!getenv("KEEP")) sh("rm -rf %s", tmp);
    return check_done();
}
