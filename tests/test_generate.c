// test_generate.c: generation for people. Batched decoding gives every prompt exactly the
// tokens it gets alone (greedy and seeded sampling, prompts of different lengths, some
// crossing the sliding window, more prompts than slots, 1 and 2 threads); stop strings cut
// the text even across token boundaries; a batch run from a prompts file writes its results,
// refuses to overwrite them, and --resume finishes an interrupted run (torn last line too);
// batches of one-token prompts; NaN weights end generation and chat with "non-finite logits".
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "gen/generate.h"
#include "gen/textstream.h"
#include "model/init.h"
#include "sampler/sampler.h"

// Overwrites a model's final norm weights (BF16) with NaN, in place.
static int poison_final_norm(const char *path) {
    FILE *f = fopen(path, "r+b");
    uint64_t n = 0;
    char *h = NULL;
    Json j = {0};
    int rc = -1;
    if (!f || fread(&n, 8, 1, f) != 1 || n > (1u << 24) || !(h = malloc(n)) || fread(h, 1, n, f) != n || json_parse(&j, h, n)) goto out;
    const JsonNode *off = json_get(json_get(json_root(&j), "model.norm.weight"), "data_offsets");
    if (!off || off->count != 2) goto out;
    long a = (long)json_at(off, 0)->num, b = (long)json_at(off, 1)->num;
    if (fseek(f, (long)(8 + n) + a, SEEK_SET)) goto out;
    for (long i = a; i < b; i += 2) fwrite("\xc0\x7f", 1, 2, f);  // bf16 quiet NaN
    rc = 0;
out:
    json_free(&j);
    free(h);
    if (f && fclose(f)) rc = -1;
    return rc;
}

typedef struct { G3Sampler **s; } Samp;
static int32_t choose(void *ctx, int i, float *logits, const int32_t *hist, int n) {
    return g3_sampler_sample(((Samp *)ctx)->s[i], logits, hist, n);
}

// Generates for prompts [from, from + n) with `slots` slots; sampled when temp > 0.
static void run(const G3Model *m, int32_t **prompts, int *lens, int n, int slots, float temp, G3GenResult *res) {
    G3State *s = g3_state_new(m, slots, 64, 16, 1, NULL);
    G3SamplerConfig sc = g3_sampler_defaults();
    sc.temperature = temp;
    G3Sampler *smp[16];
    for (int i = 0; i < n; i++) { smp[i] = g3_sampler_new(&sc, m->cfg.vocab); g3_sampler_reseed(smp[i], 100 + (uint64_t)lens[i]); }
    Samp sp = {smp};
    G3GenOptions o = {.max_tokens = 12, .choose = temp > 0 ? choose : NULL, .ctx = &sp};
    CHECK(g3_generate(s, (const int32_t *const *)prompts, lens, n, &o, res) == 0, "%s", g3_error());
    for (int i = 0; i < n; i++) g3_sampler_free(smp[i]);
    g3_state_free(s);
}

static void batched_equals_alone(const char *fixture) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", fixture);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    int lens[5] = {3, 9, 15, 1, 22};  // the window is 8: some prompts cross it before decoding starts
    int32_t *prompts[5];
    for (int i = 0; i < 5; i++) {
        prompts[i] = malloc(32 * sizeof(int32_t));
        prompts[i][0] = 2;
        for (int k = 1; k < lens[i]; k++) prompts[i][k] = (int32_t)((i * 131 + k * 17) % 1000 + 3);
    }
    for (int t = 0; t < 2; t++) {
        float temp = t ? 1.0f : 0.0f;
        G3GenResult alone[5], batch[5], batch2[5];
        for (int i = 0; i < 5; i++) run(&m, &prompts[i], &lens[i], 1, 1, temp, &alone[i]);
        run(&m, prompts, lens, 5, 3, temp, batch);   // 5 prompts through 3 slots: continuous batching
        omp_set_num_threads(1);
        run(&m, prompts, lens, 5, 5, temp, batch2);  // one thread, all at once
        omp_set_num_threads(2);
        for (int i = 0; i < 5; i++) {
            CHECK(batch[i].new_tokens == alone[i].new_tokens && !memcmp(batch[i].ids, alone[i].ids, (size_t)alone[i].new_tokens * 4),
                  "%s %s: prompt %d (length %d) differs in a batch of 3 slots", fixture, t ? "sampled" : "greedy", i, lens[i]);
            CHECK(batch2[i].new_tokens == alone[i].new_tokens && !memcmp(batch2[i].ids, alone[i].ids, (size_t)alone[i].new_tokens * 4),
                  "%s %s: prompt %d differs with one thread and 5 slots", fixture, t ? "sampled" : "greedy", i);
            free(alone[i].ids); free(batch[i].ids); free(batch2[i].ids);
        }
    }
    for (int i = 0; i < 5; i++) free(prompts[i]);
    g3_model_free(&m);
}

int main(void) {
    omp_set_num_threads(2);
    batched_equals_alone("gemma3-tiny-f32");
    batched_equals_alone("gemma2-tiny-f32");

    const char *tokp = "tests/data/tokenizer/tokenizer.model";
    G3Tokenizer *tok = g3_tok_load(tokp);
    CHECK(tok != NULL, "%s", g3_error());
    if (!tok) return check_done();

    // stop strings across token boundaries, and held-back bytes never shown
    const char *text = "Hello world. The END is near";
    int32_t *ids;
    int n = g3_tok_encode(tok, text, strlen(text), 0, 0, &ids);
    const char *stops[] = {"END"};
    G3TextStream ts;
    g3_ts_init(&ts, stops, 1, 1);
    char shown[256] = "";
    int stopped = 0;
    for (int i = 0; i < n && !stopped; i++) {
        stopped = g3_ts_push(&ts, tok, ids[i]);
        const char *s;
        size_t k = g3_ts_take(&ts, &s);
        strncat(shown, s, k);
        CHECK(strstr(shown, "EN") == NULL || stopped, "a stop string's first half was shown: '%s'", shown);
    }
    g3_ts_finish(&ts);
    const char *s;
    size_t k = g3_ts_take(&ts, &s);
    strncat(shown, s, k);
    CHECK(stopped && !strcmp(ts.text, "Hello world. The ") && !strcmp(shown, "Hello world. The "), "stop string: text '%s', shown '%s'", ts.text, shown);
    g3_ts_free(&ts);
    free(ids);

    // a batch run end to end through the CLI, on a tiny model with the real vocabulary
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) == 0) {
        char tmp[] = "/tmp/g3genXXXXXX";
        if (!mkdtemp(tmp)) return 2;
        char md[300], pf[300], out[300], p[400];
        snprintf(md, sizeof md, "%s/model", tmp);
        snprintf(pf, sizeof pf, "%s/prompts.json", tmp);
        snprintf(out, sizeof out, "%s/out", tmp);
        G3Config c;
        g3_config_preset(&c, "tiny");
        c.vocab = 262144;
        c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
        CHECK(g3_init_checkpoint(&c, md, G3_BF16, 1, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
        CHECK(sh("cp %s %s/ && %s generate --create-sample-prompts 2>/dev/null", tokp, md, bin) != 0, "--create-sample-prompts needs a file");
        CHECK(sh("%s generate --create-sample-prompts %s 2>/dev/null", bin, pf) == 0, "sample prompts");
        CHECK(sh("%s generate --model %s --prompts-file %s 2>/dev/null", bin, md, pf) != 0, "missing --out-dir accepted");
        snprintf(p, sizeof p, "%s --out-dir %s --batch-size 4 --max-tokens 6 --seed 5 --quiet", pf, out);
        CHECK(sh("%s generate --model %s --prompts-file %s", bin, md, p) == 0, "batch run failed");
        snprintf(p, sizeof p, "%s/results.json", out);
        CHECK(g3_file_exists(p), "no results.json");
        snprintf(p, sizeof p, "%s/summary.json", out);
        CHECK(g3_file_exists(p), "no summary.json");
        snprintf(p, sizeof p, "%s/prompt_metadata.json", out);
        CHECK(g3_file_exists(p), "no prompt_metadata.json");
        // a second run into the same folder must not overwrite the results
        snprintf(p, sizeof p, "%s --out-dir %s --max-tokens 6 --quiet 2>/dev/null", pf, out);
        CHECK(sh("%s generate --model %s --prompts-file %s", bin, md, p) != 0, "results were overwritten without --resume");
        // simulate an interruption: keep 5 results and half of a sixth line, then resume
        CHECK(sh("cp %s/results.jsonl %s/full.jsonl && head -5 %s/full.jsonl > %s/results.jsonl", out, out, out, out) == 0 &&
              sh("sed -n 6p %s/full.jsonl | head -c 40 >> %s/results.jsonl", out, out) == 0, "journal surgery");
        snprintf(p, sizeof p, "%s --out-dir %s --batch-size 3 --max-tokens 6 --seed 5 --quiet --resume", pf, out);
        CHECK(sh("%s generate --model %s --prompts-file %s", bin, md, p) == 0, "resume failed");
        // same seed per prompt: the resumed results are the same as the uninterrupted ones
        CHECK(sh("sed 's/\"prefill_s.*//' %s/full.jsonl | sort > %s/a && sed 's/\"prefill_s.*//' %s/results.jsonl | sort > %s/b", out, out, out, out) == 0 &&
                  sh("cmp -s %s/a %s/b", out, out) == 0, "resumed results differ from the uninterrupted run");
        // a malformed prompts file: a clear message, exit 1
        snprintf(p, sizeof p, "%s/bad.json", tmp);
        CHECK(sh("printf '{\"a\": [\"x\", 3]}' > %s", p) == 0, "write bad.json");
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "%s generate --model %s --prompts-file %s --out-dir %s/o2 2>&1 | grep -q \"item 2 is not a string\"", bin, md, p, tmp);
        CHECK(system(cmd) == 0, "malformed prompts file: message lacks the item");
        // chat: a piped session with commands, a saved conversation, the context limit said openly
        snprintf(cmd, sizeof cmd, "printf 'Hello there\\nHow are you?\\n/save %s/conv.json\\n/reset\\nAgain\\n' | %s chat --model %s --max-tokens 6 "
                 "--context 40 --temperature 0 > %s/chat.out 2> %s/chat.err", tmp, bin, md, tmp, tmp);
        CHECK(system(cmd) == 0, "chat session failed");
        snprintf(p, sizeof p, "%s/conv.json", tmp);
        Json j;
        CHECK(json_parse_file(&j, p) == 0 && json_get(json_root(&j), "turns")->count == 4, "saved conversation: %s", g3_error());
        json_free(&j);
        snprintf(cmd, sizeof cmd, "grep -q 'saved 2 turns' %s/chat.err && grep -q 'conversation restarted' %s/chat.err", tmp, tmp);
        CHECK(system(cmd) == 0, "chat did not report /save and /reset");
        snprintf(cmd, sizeof cmd, "printf 'one two three four five six seven eight\\nnine ten eleven twelve thirteen\\n' | %s chat --model %s --max-tokens 20 "
                 "--context 40 --temperature 0 2>&1 | grep -q 'context full'", bin, md);
        CHECK(system(cmd) == 0, "a full context was not reported");
        // one-token prompts in batches of 4: a decoding row per slot even when every prompt
        // is shorter than the batch (this once failed: "4 rows exceed this state's 2 rows")
        CHECK(sh("printf 'a\\nb\\nc\\nd\\ne\\n' > %s/short.txt && %s generate --model %s --prompts-file %s/short.txt --out-dir %s/o3 --batch-size 4 "
                 "--max-tokens 3 --quiet", tmp, bin, md, tmp, tmp) == 0, "a batch of one-word prompts failed");
        // NaN weights: non-finite logits stop generation with a message and exit 1, never token 0
        CHECK(sh("cp -r %s %s/nan", md, tmp) == 0, "copy the model");
        snprintf(p, sizeof p, "%s/nan/model.safetensors", tmp);
        CHECK(poison_final_norm(p) == 0, "poisoning %s", p);
        CHECK(sh("%s generate --model %s/nan --prompt hi --max-tokens 3 > %s/nan.out 2>&1", bin, tmp, tmp) == 1 &&
                  sh("grep -q 'gemma3 generate: non-finite logits' %s/nan.out", tmp) == 0, "NaN weights: no exit 1 with 'non-finite logits'");
        CHECK(sh("printf 'hi\\n' | %s chat --model %s/nan --max-tokens 3 2>&1 | grep -q 'non-finite logits'", bin, tmp) == 0, "chat on NaN weights");
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd)) return 2;
    }
    g3_tok_free(tok);
    return check_done();
}
