// test_default_model.c: the shipped default model (models/default, trained by
// scripts/train_default_model.sh; see its README). A regression test, not a reference test:
//   - the folder loads, has the shape its card states, and stays within the 50 MB budget;
//   - logits of a fixed prompt (exact mode) equal the values pinned when the model was
//     committed (summary numbers of the last row and 8 chosen logits), and greedy continues it
//     with the pinned ids, the same with the KV cache as by full recomputation;
//   - greedy generation through the CLI is deterministic (twice, at 1 and 2 threads) and
//     `--model` may be left out (the default model is found beside the program);
//   - its trimmed tokenizer gives every reference-vector text and the books sample back losslessly,
//     holds only Gemma 3's pieces, and every piece on the way to a kept one;
//   - `gemma3 perplexity` without --model prints bits per byte on its last line.
// G3_PRINT_PINS=1 prints the values to pin after the model is replaced.
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "model/forward.h"
#include "model/model.h"
#include "tok_testdata.h"
#include "tokenizer/trim.h"
#include "tokenizer/tokenizer.h"

#define MODEL "models/default"
static const char *PROMPT = "Once upon a time there was a little girl who";

// Pinned when the model was committed (G3_PRINT_PINS=1).
static const int PIN_V = 8192, PIN_HIDDEN = 384, PIN_LAYERS = 10, PIN_HEADS = 6;
static const int PIN_IDS[] = {2, 5229, 2180, 296, 733, 736, 485, 296, 1610, 2495, 754};
static const int PIN_GREEDY[] = {784, 296, 1610, 4048, 1881, 419, 316, 300, 916, 8118, 754, 485};
static const double PIN_LSE = 13.195056, PIN_MAX = 11.950520;
static const int PIN_ARGMAX = 784;
static const int PIN_AT[8] = {784, 1, 2, 100, 500, 1000, 2000, 8191};
static const double PIN_LOGIT[8] = {11.950520, -5.394444, -3.235308, -9.559946, -4.294576, -7.349580, -4.431931, -5.991127};
// greedy: "Once upon a time there was a little girl who was very fond of her, and she was very fond of"

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

int main(void) {
    int print = getenv("G3_PRINT_PINS") != NULL;
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    CHECK(sh("test $(du -k %s/model.safetensors | cut -f1) -le 51200", MODEL) == 0, "model.safetensors within 50 MB");
    G3Model m;
    if (g3_model_load(&m, MODEL)) { CHECK(0, "%s", g3_error()); return check_done(); }
    const G3Config *c = &m.cfg;
    if (print)
        printf("static const int PIN_V = %d, PIN_HIDDEN = %d, PIN_LAYERS = %d, PIN_HEADS = %d;\n", c->vocab, c->hidden, c->layers, c->heads);
    else
        CHECK(c->vocab == PIN_V && c->hidden == PIN_HIDDEN && c->layers == PIN_LAYERS && c->heads == PIN_HEADS && c->kv_heads == 1 && c->qk_norm,
              "shape: vocab %d hidden %d layers %d heads %d/%d", c->vocab, c->hidden, c->layers, c->heads, c->kv_heads);
    int pattern = 1;  // Gemma 3's 5:1: layer i is global iff (i + 1) % 6 == 0
    for (int i = 0; i < c->layers; i++) pattern &= c->sliding[i] == ((i + 1) % 6 != 0);
    CHECK(pattern, "sliding-window layers, every sixth global");

    G3Tokenizer *tok = g3_tok_load_ex(MODEL "/tokenizer.json", G3_TOK_LOAD_NO_CACHE);
    CHECK(tok != NULL, "tokenizer: %s", tok ? "" : g3_error());
    if (!tok) return check_done();
    CHECK(g3_tok_vocab_size(tok) == c->vocab, "tokenizer and embedding agree");
    int32_t *ids;
    int T = g3_tok_encode(tok, PROMPT, strlen(PROMPT), 1, 0, &ids);
    if (print) {
        printf("static const int PIN_IDS[] = {");
        for (int i = 0; i < T; i++) printf("%s%d", i ? ", " : "", ids[i]);
        printf("};\n");
    } else {
        int same = T == (int)(sizeof PIN_IDS / sizeof PIN_IDS[0]);
        for (int i = 0; same && i < T; i++) same = ids[i] == PIN_IDS[i];
        CHECK(same, "the prompt's ids are the pinned ones");
    }

    // logits of the prompt, exact mode
    const int V = c->vocab, N = 12;
    G3State *s = g3_state_new(&m, 1, T + N, T, 0, NULL);
    CHECK(s != NULL, "%s", g3_error());
    if (!s) return check_done();
    float *logits = malloc((size_t)T * V * sizeof *logits);
    CHECK(g3_prefill(s, 0, ids, T, logits) == 0, "%s", g3_error());
    const float *last = logits + (size_t)(T - 1) * V;
    double mx = -1e30, sum = 0;
    for (int i = 0; i < V; i++) mx = last[i] > mx ? last[i] : mx;
    for (int i = 0; i < V; i++) sum += exp(last[i] - mx);
    double lse = mx + log(sum);
    int am = argmax(last, V);
    int at[8] = {am, 1, 2, 100, 500, 1000, 2000, V - 1};
    if (print) {
        printf("static const double PIN_LSE = %.6f, PIN_MAX = %.6f;\nstatic const int PIN_ARGMAX = %d;\n", lse, mx, am);
        printf("static const int PIN_AT[8] = {");
        for (int i = 0; i < 8; i++) printf("%s%d", i ? ", " : "", at[i]);
        printf("};\nstatic const double PIN_LOGIT[8] = {");
        for (int i = 0; i < 8; i++) printf("%s%.6f", i ? ", " : "", last[at[i]]);
        printf("};\n");
    } else {
        CHECK(am == PIN_ARGMAX, "argmax %d, pinned %d", am, PIN_ARGMAX);
        CHECK(fabs(lse - PIN_LSE) < 1e-3 && fabs(mx - PIN_MAX) < 1e-3, "logsumexp %.6f max %.6f, pinned %.6f %.6f", lse, mx, PIN_LSE, PIN_MAX);
        double worst = 0;
        for (int i = 0; i < 8; i++) worst = fmax(worst, fabs(last[PIN_AT[i]] - PIN_LOGIT[i]));
        CHECK(worst < 1e-3, "pinned logits: worst difference %.3g", worst);
    }

    // greedy with the cache, and by full recomputation
    int32_t *seq = malloc((size_t)(T + N) * sizeof *seq);
    memcpy(seq, ids, (size_t)T * sizeof *seq);
    int tk = am, cache_ok = 1;
    for (int i = 0; i < N; i++) {
        seq[T + i] = tk;
        G3Segment sg = {0, T + i, 1};
        if (g3_forward(s, &tk, &sg, 1, G3_LOGITS_LAST)) { CHECK(0, "%s", g3_error()); break; }
        tk = argmax(s->logits, V);
    }
    for (int i = 1; i < N; i++) {
        g3_state_reset(s, 0);
        if (g3_prefill(s, 0, seq, T + i, NULL)) { CHECK(0, "%s", g3_error()); break; }
        cache_ok &= argmax(s->logits, V) == seq[T + i];
    }
    CHECK(cache_ok, "greedy with the KV cache equals greedy by full recomputation");
    if (print) {
        printf("static const int PIN_GREEDY[] = {");
        for (int i = 0; i < N; i++) printf("%s%d", i ? ", " : "", seq[T + i]);
        printf("};\n");
        char *txt = g3_tok_decode(tok, seq, T + N, 1, NULL);
        printf("// %s\n", txt);
        free(txt);
    } else {
        int same = 1;
        for (int i = 0; i < N; i++) same &= seq[T + i] == PIN_GREEDY[i];
        CHECK(same, "greedy continuation equals the pinned ids");
    }
    g3_state_free(s);
    free(seq);
    free(logits);
    free(ids);

    // the tokenizer: lossless on the reference texts and the books sample
    size_t len;
    char *sample = g3_read_file("tests/data/books_sample.txt", &len);
    CHECK(sample != NULL, "books sample");
    if (sample) {
        int32_t *sid;
        int n = g3_tok_encode(tok, sample, len, 0, 0, &sid);
        size_t blen;
        char *back = g3_tok_decode(tok, sid, n, 0, &blen);
        CHECK(back && blen == len && !memcmp(back, sample, len), "books sample round trip");
        CHECK(n > 0 && (double)len / n > 3.0, "books sample: %.2f bytes a token", n > 0 ? (double)len / n : 0.0);
        free(back), free(sid), free(sample);
    }
    char *vec = g3_read_file(TOK_DATA "/vectors_public.jsonl", &len);
    int nvec = 0, bad = 0;
    for (char *line = vec, *nl; vec && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        // the "text" field, unescaped by the JSON reader
        Json j;
        if (nl > line && json_parse(&j, line, (size_t)(nl - line)) == 0) {
            const JsonNode *t = json_get(json_root(&j), "text");
            if (json_is_string(t) && !strstr(t->str, "\xE2\x96\x81")) {  // a literal `▁` decodes as a space (as the reference)
                int32_t *vid;
                int n = g3_tok_encode(tok, t->str, t->str_len, 0, 0, &vid);
                size_t blen;
                char *back = g3_tok_decode(tok, vid, n, 0, &blen);
                bad += !(back && blen == t->str_len && !memcmp(back, t->str, blen));
                nvec++;
                free(back), free(vid);
            }
            json_free(&j);
        }
        if (!*nl) break;
    }
    free(vec);
    CHECK(nvec > 200 && bad == 0, "%d of %d reference texts do not round-trip", bad, nvec);
    // against the full Gemma 3 tokenizer: every piece is Gemma's, and every piece BPE forms on
    // the way to one is kept too (so kept pieces encode as the full tokenizer does)
    const char *fj = tok_json_path();
    G3Tokenizer *full = fj ? g3_tok_load(fj) : NULL;
    CHECK(full != NULL, "the full tokenizer: %s", full ? "" : g3_error());
    if (full) {
        int32_t way[4096];
        int foreign = 0, open_way = 0;
        for (int i = 0; i < g3_tok_vocab_size(tok); i++) {
            int id = g3_tok_id_of(full, g3_tok_piece(tok, i));
            if (id < 0) { foreign++; continue; }
            int n = g3_tok_trim_closure(full, id, way, 4096);
            for (int k = 0; k < n; k++) open_way += g3_tok_id_of(tok, g3_tok_piece(full, way[k])) < 0;
        }
        CHECK(foreign == 0 && open_way == 0, "%d pieces not Gemma's, %d pieces missing on the way to kept ones", foreign, open_way);
        g3_tok_free(full);
    }
    g3_tok_free(tok);
    g3_model_free(&m);

    // the CLI: --model left out, greedy deterministic at 1 and 2 threads
    const char *g = "generate --prompt 'The old king had three sons' --max-tokens 24 --temperature 0 --exact";
    CHECK(sh("%s %s --threads 1 > build/default-gen1.txt 2>/dev/null && %s %s --threads 2 > build/default-gen2.txt 2>/dev/null "
             "&& %s %s --model %s --threads 1 > build/default-gen3.txt 2>/dev/null", bin, g, bin, g, bin, g, MODEL) == 0, "generate");
    CHECK(sh("cmp -s build/default-gen1.txt build/default-gen2.txt && cmp -s build/default-gen1.txt build/default-gen3.txt "
             "&& test $(wc -c < build/default-gen1.txt) -gt 40") == 0, "greedy text is the same at 1 and 2 threads, with and without --model");
    CHECK(sh("GEMMA3_MODEL=build/no-such-model %s inspect > /dev/null 2>&1", bin) == 1, "GEMMA3_MODEL naming no model is refused");
    CHECK(sh("GEMMA3_MODEL=%s %s inspect | grep -q 'vocab'", MODEL, bin) == 0, "GEMMA3_MODEL names the model");
    CHECK(sh("a=$(%s tokenize --text 'Once upon a time' 2>/dev/null) && test -n \"$a\" && test \"$a\" = \"$(%s tokenize --model %s --text 'Once upon a time')\"",
             bin, bin, MODEL) == 0,
          "tokenize without --model: the default model's tokenizer");
    CHECK(sh("head -c 6000 tests/data/books_sample.txt > build/default-ppl.txt && OMP_NUM_THREADS=1 %s perplexity --data build/default-ppl.txt --ctx 256 "
             "2>/dev/null | tail -1 | grep -Eq '^bits per byte: [0-9.]+$'", bin) == 0, "perplexity without --model: bits per byte last");
    return check_done();
}
