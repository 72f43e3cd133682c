// test_examples.c: JSONL examples (train/examples.h): every line kind with its loss weights
// (the chat template's model turns only), bad lines named by file and line, the seeded
// per-epoch order, padded batches; and `gemma3 train` on them (env BIN, default ./gemma3):
// one {"ids"} example of exactly T+1 tokens with --batch 1 --seq T trains on exactly it
// (the first logged loss is the base model's loss on it), the export keeps Hub names, and a
// resumed run over several epochs equals the uninterrupted one bit for bit.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "train/examples.h"
#include "train/train.h"

static const char *TOKP = "tests/data/tokenizer/tokenizer.model";
enum { VOCAB = 262144 };

static int parse(G3Examples *e, const char *text, const G3Tokenizer *tok, int T) {
    return g3_examples_parse(e, text, strlen(text), "x.jsonl", tok, T, VOCAB);
}

// Parses text expecting failure with an error that contains want.
static void bad(const char *text, const G3Tokenizer *tok, int T, const char *want) {
    G3Examples e;
    g3_error_clear();
    int rc = parse(&e, text, tok, T);
    CHECK(rc != 0 && strstr(g3_error(), want), "'%s': rc %d, error '%s' (wanted '%s')", text, rc, g3_error(), want);
    if (!rc) g3_examples_free(&e);
}

static void test_kinds(const G3Tokenizer *tok) {
    int bos = g3_tok_bos(tok), eos = g3_tok_eos(tok), sot = g3_tok_start_of_turn(tok), eot = g3_tok_end_of_turn(tok);
    G3Examples e;
    // ids: as given; loss on all but the first.
    CHECK(parse(&e, "{\"ids\": [5, 6, 7, 8]}\n\n{\"ids\": [9, 10]}\n", NULL, 3) == 0, "ids: %s", g3_error());
    CHECK(e.n == 2 && e.kind == G3_EX_LM && e.off[1] == 4 && e.off[2] == 6 && e.tok[3] == 8 && e.max_len == 4, "ids layout");
    CHECK(e.w[0] == 0 && e.w[1] && e.w[3] && e.w[4] == 0 && e.w[5], "ids weights");
    int32_t in[2 * 3], tg[2 * 3];
    int64_t seq[2] = {0, 1};
    g3_examples_fill(&e, seq, 2, 3, in, tg);
    CHECK(in[0] == 5 && in[1] == 6 && in[2] == 7 && tg[0] == 6 && tg[1] == 7 && tg[2] == 8, "T+1 tokens fill the row");
    CHECK(in[3] == 9 && tg[3] == 10 && in[4] == 0 && tg[4] == -1 && tg[5] == -1, "padding: <pad> inputs, ignored targets");
    g3_examples_free(&e);

    // prompt/completion: loss on the completion and <eos> only.
    CHECK(parse(&e, "{\"prompt\": \"Hello\", \"completion\": \" world\"}", tok, 64) == 0, "p/c: %s", g3_error());
    int64_t L = e.off[1];
    int32_t *pids;
    int np = g3_tok_encode(tok, "Hello", 5, 0, 0, &pids);
    CHECK(e.tok[0] == bos && e.tok[L - 1] == eos && e.w[L - 1] == 1, "p/c bos/eos");
    int nw = 0;
    for (int64_t i = 0; i < L; i++) nw += e.w[i];
    CHECK(nw == L - 1 - np, "p/c: %d weighted of %lld (prompt %d)", nw, (long long)L, np);
    for (int i = 0; i <= np; i++) CHECK(e.w[i] == 0, "prompt token %d weighted", i);
    free(pids);
    g3_examples_free(&e);

    // text: <bos> text <eos>, loss on all but <bos>.
    CHECK(parse(&e, "{\"text\": \"Once upon a time\"}", tok, 64) == 0, "text: %s", g3_error());
    CHECK(e.tok[0] == bos && e.tok[e.off[1] - 1] == eos && e.w[0] == 0 && e.w[1] == 1, "text layout");
    g3_examples_free(&e);

    // messages: the chat template's ids; weights exactly on model text + <end_of_turn>.
    const char *chat = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"Hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Hello!\"}, {\"role\": \"user\", \"content\": \"Bye\"}, "
                       "{\"role\": \"model\", \"content\": \"Goodbye.\"}]}";
    CHECK(parse(&e, chat, tok, 256) == 0, "messages: %s", g3_error());
    G3ChatTurn t[4] = {{"user", "Hi"}, {"model", "Hello!"}, {"user", "Bye"}, {"model", "Goodbye."}};
    int32_t *ref;
    int nr = g3_chat_encode(tok, t, 4, "Be brief.", 0, &ref);
    CHECK(nr == e.off[1] && !memcmp(ref, e.tok, sizeof *ref * (size_t)nr), "messages = g3_chat_encode's ids (%d vs %lld)", nr, (long long)e.off[1]);
    // Weighted runs: each starts right after "<start_of_turn>model\n" and ends at <end_of_turn>.
    int runs = 0;
    for (int i = 1; i < nr; i++) {
        if (e.w[i] && !e.w[i - 1]) {
            runs++;
            CHECK(i >= 3 && ref[i - 3] == sot, "a weighted run starts after the model header (%d)", i);
        }
        if (e.w[i] && (i + 1 == nr || !e.w[i + 1])) CHECK(ref[i] == eot, "a weighted run ends at <end_of_turn> (%d)", i);
    }
    CHECK(runs == 2, "two model turns weighted, got %d", runs);
    free(ref);
    g3_examples_free(&e);

    // preference: two sequences; classification: a label.
    CHECK(parse(&e, "{\"prompt\": \"Q\", \"chosen\": \"yes\", \"rejected\": \"no\"}\n{\"prompt\": \"R\", \"chosen\": \"a\", \"rejected\": \"b\"}", tok, 64) == 0,
          "pref: %s", g3_error());
    CHECK(e.kind == G3_EX_PREF && e.n == 4 && g3_examples_count(&e) == 2, "pref: two pairs, four sequences");
    g3_examples_free(&e);
    CHECK(parse(&e, "{\"text\": \"good\", \"label\": 1}\n{\"text\": \"bad\", \"label\": 0}", tok, 64) == 0, "classify: %s", g3_error());
    CHECK(e.kind == G3_EX_CLASS && e.n == 2 && e.label[0] == 1 && e.label[1] == 0 && e.nlabels == 2, "classify labels");
    g3_examples_free(&e);
    CHECK(parse(&e, "{\"ids\": [7, 8, 9], \"label\": 4}", NULL, 3) == 0 && e.kind == G3_EX_CLASS && e.nlabels == 5, "ids + label: %s", g3_error());
    int32_t ci[3], last, lab;
    int64_t s0 = 0;
    g3_examples_fill_cls(&e, &s0, 1, 3, ci, &last, &lab);
    CHECK(ci[0] == 7 && ci[2] == 9 && last == 2 && lab == 4, "classification rows: every token an input, the last position, the label");
    g3_examples_free(&e);
    CHECK(parse(&e, "{\"prompt\": [5, 6], \"chosen\": [7], \"rejected\": [8, 9]}", NULL, 8) == 0 && e.n == 2 && e.off[1] == 3 &&
              e.off[2] == 7 && e.w[1] == 0 && e.w[2] == 1 && e.w[5] == 1,
          "preference pairs of ids: %s", g3_error());
    g3_examples_free(&e);
}

static void test_bad(const G3Tokenizer *tok) {
    bad("{\"ids\": [1, 2]}\n{\"ids\": [1, 2\n", NULL, 8, "x.jsonl:2: not valid JSON");
    bad("{\"ids\": [1, 2]}\n\n{\"prompt\": \"a\"}", tok, 8, "x.jsonl:3: missing field completion");
    bad("{\"ids\": [1, 2, 3, 4, 5]}", NULL, 3, "x.jsonl:1: example of 5 tokens, longer than --seq 3");
    bad("{\"prompt\": \"a\", \"completion\": \"  \"}", tok, 8, "x.jsonl:1: empty field: completion");
    bad("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]}", tok, 64,
        "x.jsonl:1: message 1 has role 'robot'");
    bad("{\"ids\": [1, -2]}", NULL, 8, "x.jsonl:1: \"ids\" must hold integers");
    bad("{\"ids\": [1, 300000]}", NULL, 8, "x.jsonl:1: token id 300000");
    bad("{\"ids\": [1]}", NULL, 8, "x.jsonl:1: an example needs at least 2 tokens");
    bad("{\"text\": \"a\"}", NULL, 8, "x.jsonl:1: text needs a tokenizer");
    bad("[1, 2]", NULL, 8, "x.jsonl:1: a line must be a JSON object");
    bad("{\"foo\": 1}", NULL, 8, "x.jsonl:1: no known fields");
    bad("{\"ids\": [1, 2]}\n{\"text\": \"a\", \"label\": 3}", tok, 8, "x.jsonl:2: a classification");
    bad("{\"text\": \"a\", \"label\": \"x\"}", tok, 8, "x.jsonl:1: \"label\" must be an integer");
    bad("\n\n", NULL, 8, "x.jsonl: no examples");
    bad("{\"ids\": [1, 2, 3, 4, 5], \"label\": 0}", NULL, 4, "x.jsonl:1: classification example of 5 tokens, longer than --seq 4");
    bad("{\"prompt\": [1, 2], \"completion\": \"x\"}", tok, 8, "x.jsonl:1: prompt and completion must both be text or both be ids");
}

static void test_order(void) {
    G3Examples e;
    char text[4096] = "";
    for (int i = 0; i < 7; i++) snprintf(text + strlen(text), sizeof text - strlen(text), "{\"ids\": [%d, %d]}\n", 10 + i, 20 + i);
    CHECK(parse(&e, text, NULL, 4) == 0, "order data: %s", g3_error());
    int64_t first[7], again[7];
    for (int ep = 0; ep < 3; ep++) {
        int seen[7] = {0};
        for (int i = 0; i < 7; i++) {
            int64_t k = g3_examples_at(&e, 42, ep * 7 + i);
            CHECK(k >= 0 && k < 7 && !seen[k], "epoch %d: a permutation", ep);
            if (k >= 0 && k < 7) seen[k] = 1;
            if (ep == 0) first[i] = k;
            if (ep == 1) again[i] = k;
        }
    }
    CHECK(memcmp(first, again, sizeof first), "each epoch draws its own order");
    // A pure function of (seed, slot): asking out of order gives the same answers.
    CHECK(g3_examples_at(&e, 42, 3) == first[3] && g3_examples_at(&e, 42, 9) == again[2] && g3_examples_at(&e, 42, 0) == first[0],
          "order does not depend on what was asked before");
    G3Examples v;
    CHECK(g3_examples_split(&e, 0.2, &v) == 0 && e.n == 5 && v.n == 2 && v.tok[0] == 15 && v.off[2] == 4, "split keeps the last 2");
    g3_examples_free(&v);
    g3_examples_free(&e);
}

static const char *bin;

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = g3_read_file(a, &na), *y = g3_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void test_cli(const char *dir) {
    const char *M = "tests/fixtures/gemma3-tiny-f32";
    enum { T = 12 };
    int32_t ids[T + 1];
    char one[300], many[300], out[300], p[400], q[400];
    snprintf(one, sizeof one, "%s/one.jsonl", dir);
    FILE *f = fopen(one, "w");
    fprintf(f, "{\"ids\": [");
    for (int i = 0; i <= T; i++) fprintf(f, "%s%d", i ? ", " : "", ids[i] = (int32_t)((i * 37 + 11) % 1000 + 3));
    fprintf(f, "]}\n");
    fclose(f);
    // One example of T+1 ids, --batch 1 --seq T: every step trains on exactly it.
    snprintf(out, sizeof out, "%s/run1", dir);
    CHECK(sh("%s train --model %s --data %s --val %s --batch 1 --seq %d --steps 6 --warmup 2 --lr 1e-2 --threads 1 --out %s 2>%s/log1",
             bin, M, one, one, T, out, dir) == 0, "train on one example");
    G3Model m;
    G3TrainModel tm;
    CHECK(g3_model_load(&m, M) == 0 && g3_train_model_from(&tm, &m) == 0, "load: %s", g3_error());
    G3TrainCtx *ctx = g3_train_ctx_new(&tm, 1, T, 0, NULL);
    double l0 = g3_train_loss(&tm, ctx, ids, ids + 1);
    g3_train_ctx_free(ctx);
    g3_train_model_free(&tm);
    g3_model_free(&m);
    snprintf(p, sizeof p, "%s/metrics.jsonl", out);
    size_t len;
    char *mt = g3_read_file(p, &len);
    double first = NAN, last = NAN, val = NAN;
    for (char *s = mt; s && (s = strstr(s, "\"loss\": ")); s++) {
        double v = atof(s + 8);
        if (isnan(first)) first = v;
        last = v;
    }
    char *vs = mt ? strstr(mt, "\"val_loss\": ") : NULL;
    if (vs) val = atof(vs + 12);
    free(mt);
    CHECK(fabs(first - l0) < 1e-5, "step 1 loss %.6f is the base model's loss on the example %.6f", first, l0);
    CHECK(last < first && fabs(val - last) < 0.5, "six steps on one example lower its loss (%.4f -> %.4f, val %.4f)", first, last, val);
    STSet st;
    snprintf(p, sizeof p, "%s/model.safetensors", out);
    CHECK(st_open(&st, p) == 0, "export: %s", g3_error());
    CHECK(st_find(&st, "model.layers.0.self_attn.q_proj.weight") && st_find(&st, "model.embed_tokens.weight") && st_find(&st, "model.norm.weight"),
          "the export keeps the Hub tensor names");
    st_close(&st);

    // Several examples over several epochs: an interrupted run (3 steps, then resumed to 9)
    // equals an uninterrupted one bit for bit.
    snprintf(many, sizeof many, "%s/many.jsonl", dir);
    f = fopen(many, "w");
    for (int i = 0; i < 5; i++) {
        fprintf(f, "{\"ids\": [");
        for (int k = 0; k < 4 + 2 * i; k++) fprintf(f, "%s%d", k ? ", " : "", (k * 13 + i * 101) % 1000 + 3);
        fprintf(f, "]}\n");
    }
    fclose(f);
    const char *common = "--batch 2 --seq 12 --schedule constant --warmup 2 --lr 1e-2 --threads 1 --save-every 0 --eval-every 3 --val-frac 0.2";
    CHECK(sh("%s train --model %s --data %s %s --epochs 4 --out %s/a 2>%s/loga", bin, M, many, common, dir, dir) == 0, "uninterrupted");
    CHECK(sh("%s train --model %s --data %s %s --steps 3 --out %s/b 2>%s/logb", bin, M, many, common, dir, dir) == 0, "first part");
    CHECK(sh("%s train --model %s --data %s %s --epochs 4 --out %s/b 2>>%s/logb", bin, M, many, common, dir, dir) == 0, "resumed");
    snprintf(p, sizeof p, "%s/a/model.safetensors", dir);
    snprintf(q, sizeof q, "%s/b/model.safetensors", dir);
    CHECK(same_file(p, q), "resumed run == uninterrupted run (weights)");
    snprintf(p, sizeof p, "%s/a/metrics.jsonl", dir);
    mt = g3_read_file(p, &len);
    CHECK(mt && strstr(mt, "{\"step\": 8,") && !strstr(mt, "{\"step\": 9,"), "--epochs 4 over 4 examples, batch 2: 8 steps");
    free(mt);
    // Bad data through the command: the error names the file and line.
    snprintf(p, sizeof p, "%s/bad.jsonl", dir);
    f = fopen(p, "w");
    fprintf(f, "{\"ids\": [1, 2, 3]}\n{\"ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]}\n");
    fclose(f);
    CHECK(sh("%s train --model %s --data %s --val %s --batch 1 --seq 12 --steps 1 --out %s/c 2>%s/logc; test $? = 1 && grep -q 'bad.jsonl:2: example of 14 tokens' %s/logc",
             bin, M, p, one, dir, dir, dir) == 0, "bad data: file:line in the error, exit 1");
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    G3Tokenizer *tok = g3_tok_load(TOKP);
    if (!tok) { fprintf(stderr, "%s\n", g3_error()); return 2; }
    test_kinds(tok);
    test_bad(tok);
    g3_tok_free(tok);
    test_order();
    char dir[] = "/tmp/g3_examples_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    test_cli(dir);
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
