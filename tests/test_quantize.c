// test_quantize.c: `gemma3 quantize` on the tiny Gemma 3 fixture. Each type's file loads and
// gives logits within its tolerance of the safetensors F32 logits, in exact mode (f32
// activations) and fast mode (int8 activations for Q8_0 / Q4_0); the F32 file gives the same
// logits (1e-6); re-quantizing the F32 GGUF gives the same file as quantizing the Hub folder;
// the tokenizer rides along in the metadata; `convert` brings an F32 GGUF back to a Hub folder
// (same logits, tokenizer.model) and refuses a quantized one; bad arguments exit 1.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "io/gguf.h"
#include "model/forward.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

static float *logits_of(const char *path, const int32_t *ids, int T, int fast, int *V) {
    G3Model m;
    if (g3_model_load(&m, path)) { CHECK(0, "%s: %s", path, g3_error()); return NULL; }
    *V = m.cfg.vocab;
    G3State *s = g3_state_new(&m, 1, T, T, fast, NULL);
    float *lg = malloc((size_t)T * *V * sizeof *lg);
    CHECK(s && g3_prefill(s, 0, ids, T, lg) == 0, "%s", g3_error());
    g3_state_free(s);
    g3_model_free(&m);
    return lg;
}

int main(void) {
    const char *fx = "gemma3-tiny-f32", *dir = "tests/fixtures/gemma3-tiny-f32";
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/g3_quantize_%d", (int)getpid());
    CHECK(sh("mkdir -p %s", tmp) == 0, "mkdir");
    STSet exp;
    fixture_open(&exp, fx);
    int32_t *ids;
    int V, T = fixture_ids(&exp, "input_ids", &ids);
    float *ref = logits_of(dir, ids, T, 0, &V);
    // tolerances: a few times each type's relative RMS weight error (test_quant*: Q8_0 3.8e-3,
    // Q6_K 1.5e-2, Q5 3e-2, Q4 6e-2); the tiny random fixture amplifies weight noise about 3x
    const struct { const char *type; double tol; } ty[] = {
        {"F32", 1e-6}, {"F16", 2e-3}, {"BF16", 2e-2}, {"Q8_0", 2e-2}, {"Q6_K", 8e-2}, {"Q5_0", 1.6e-1}, {"Q5_1", 1.6e-1},
        {"Q5_K_M", 1.6e-1}, {"Q4_0", 3.2e-1}, {"Q4_1", 3.2e-1}, {"Q4_K_M", 3.2e-1},
    };
    for (size_t i = 0; i < sizeof ty / sizeof *ty && ref; i++) {
        char out[128];
        snprintf(out, sizeof out, "%s/%s.gguf", tmp, ty[i].type);
        CHECK(sh("./gemma3 quantize --model %s --out %s --type %s --quiet 2>/dev/null", dir, out, ty[i].type) == 0, "quantize %s", ty[i].type);
        for (int fast = 0; fast < 2; fast++) {
            int V2;
            float *lg = logits_of(out, ids, T, fast, &V2);
            if (!lg) continue;
            double e = V2 == V ? rel_err(lg, ref, (long)T * V) : 1e9;
            CHECK(e <= ty[i].tol, "%s (%s mode): logits rel err %.3g over %.3g", ty[i].type, fast ? "fast" : "exact", e, ty[i].tol);
            printf("%-7s %s mode: logits rel err %.2e against safetensors F32\n", ty[i].type, fast ? "fast " : "exact", e);
            free(lg);
        }
    }
    // GGUF in, GGUF out: the same bytes as from the Hub folder
    CHECK(sh("./gemma3 quantize --model %s/F32.gguf --out %s/again.gguf --type Q4_K_M --quiet 2>/dev/null && cmp -s %s/again.gguf %s/Q4_K_M.gguf",
             tmp, tmp, tmp, tmp) == 0,
          "re-quantizing the F32 GGUF gives the file the Hub folder gave");
    // the tokenizer in the metadata
    char tokf[128];
    snprintf(tokf, sizeof tokf, "%s/tok.gguf", tmp);
    CHECK(sh("./gemma3 quantize --model %s --out %s --type Q8_0 --tokenizer tests/data/tokenizer/tokenizer.model --quiet 2>/dev/null", dir,
             tokf) == 0,
          "quantize with a tokenizer");
    // a tokenizer the user named that is not there: an error before any quantizing, no file
    CHECK(sh("./gemma3 quantize --model %s --out %s/notok.gguf --type Q8_0 --tokenizer %s/missing.model --quiet 2>/dev/null", dir, tmp,
             tmp) != 0 &&
              sh("test -e %s/notok.gguf", tmp) != 0,
          "quantize with a missing --tokenizer fails and writes nothing");
    G3Tokenizer *tok = g3_tok_load_ex(tokf, G3_TOK_LOAD_NO_CACHE);
    CHECK(tok && g3_tok_vocab_size(tok) == 262145 && g3_tok_bos(tok) == 2, "tokenizer from the quantized file: %s", tok ? "" : g3_error());
    g3_tok_free(tok);
    // convert: an F32 GGUF back to a Hub folder gives the same logits and the same tokenizer
    CHECK(sh("./gemma3 quantize --model %s --out %s/f32tok.gguf --type F32 --tokenizer tests/data/tokenizer/tokenizer.model --quiet "
             "2>/dev/null && ./gemma3 convert --model %s/f32tok.gguf --out %s/hub 2>/dev/null", dir, tmp, tmp, tmp) == 0, "convert");
    {
        char hub[128];
        snprintf(hub, sizeof hub, "%s/hub", tmp);
        int V2;
        float *lg = logits_of(hub, ids, T, 0, &V2);
        CHECK(lg && V2 == V && rel_err(lg, ref, (long)T * V) <= 1e-6, "converted folder's logits");
        free(lg);
        char tm[160];
        snprintf(tm, sizeof tm, "%s/tokenizer.model", hub);
        G3Tokenizer *t2 = g3_tok_load_ex(tm, G3_TOK_LOAD_NO_CACHE);
        int32_t *ti = NULL;
        int n = t2 ? g3_tok_encode(t2, "Hello world", 11, 1, 1, &ti) : -1;
        CHECK(n == 3 && ti[0] == 2 && ti[1] == 9259 && ti[2] == 1902, "converted tokenizer.model encodes 'Hello world'");
        free(ti);
        g3_tok_free(t2);
    }
    CHECK(sh("./gemma3 convert --model %s/Q8_0.gguf --out %s/hub2 2>/dev/null", tmp, tmp) == 1, "convert refuses a quantized file");

    // --auto: a type per matrix under a budget, by KL on calibration ids; the file's average
    // over the matrices meets the budget, it runs, and a bigger budget gives closer logits
    {
        char idsarg[1024];
        int len = 0;
        for (int i = 0; i < 64; i++) len += snprintf(idsarg + len, sizeof idsarg - (size_t)len, "%s%d", i ? "," : "", (i * 37 + 5) % 1024);
        double e[2] = {1e9, 1e9};
        const char *budget[2] = {"5.5", "7.0"};
        for (int k = 0; k < 2; k++) {
            char out[128];
            snprintf(out, sizeof out, "%s/auto%d.gguf", tmp, k);
            CHECK(sh("./gemma3 quantize --model %s --out %s --auto %s --calibrate-ids %s 2>%s/auto%d.log", dir, out, budget[k], idsarg, tmp, k) == 0,
                  "quantize --auto %s", budget[k]);
            CHECK(sh("grep -q 'quantize --auto: [0-9.]* bits/weight over the matrices (budget %s' %s/auto%d.log", budget[k], tmp, k) == 0,
                  "--auto %s reports its choice", budget[k]);
            int V2;
            float *lg = logits_of(out, ids, T, 1, &V2);
            if (lg && V2 == V) e[k] = rel_err(lg, ref, (long)T * V);
            free(lg);
            printf("--auto %s: logits rel err %.2e against safetensors F32\n", budget[k], e[k]);
        }
        CHECK(e[0] <= 3.2e-1 && e[1] < e[0], "--auto: 5.5 bits rel err %.3g, 7.0 bits %.3g (smaller)", e[0], e[1]);
        CHECK(sh("./gemma3 quantize --model %s --out %s/a.gguf --auto 5 2>/dev/null", dir, tmp) == 1, "--auto without calibration: exit 1");
        CHECK(sh("./gemma3 quantize --model %s --out %s/a.gguf --auto 2 --calibrate-ids 1,2,3 2>/dev/null", dir, tmp) == 1,
              "--auto below the lowest type: exit 1");
        CHECK(sh("./gemma3 quantize --model %s --out %s/a.gguf --auto 5 --calibrate-ids 1,2,99999 2>/dev/null", dir, tmp) == 1,
              "--calibrate-ids outside the vocabulary: exit 1");
    }

    // refusals
    CHECK(sh("./gemma3 quantize --model %s --out %s/x.gguf --type Q3_Z 2>/dev/null", dir, tmp) == 1, "unknown type: exit 1");
    CHECK(sh("./gemma3 quantize --model %s --out %s/Q8_0.gguf --type Q8_0 2>/dev/null", dir, tmp) == 1, "existing output: exit 1");
    CHECK(sh("./gemma3 quantize --model /nonexistent --out %s/y.gguf 2>/dev/null", tmp) == 1, "missing model: exit 1");
    sh("rm -rf %s", tmp);
    free(ref);
    free(ids);
    st_close(&exp);
    return check_done();
}
