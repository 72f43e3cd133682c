// test_api.c: the loader accepts every Hub form:
// a sharded checkpoint with an index, the three tensor-name prefixes, F16 weights, explicit
// layer_types and the newer rope_parameters; a checkpoint written by `init` loads back.
#include "base/base.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/forward.h"
#include "model/init.h"
#include "model/model.h"
#include "check.h"
#include "fixtures.h"

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

// Greedy continuation of the fixture's prompt from a model folder (exact mode).
static void greedy(const char *dir, const int32_t *ids, int T, int N, int32_t *out) {
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); memset(out, 0xff, (size_t)N * 4); return; }
    G3State *s = g3_state_new(&m, 1, T + N, T, 0, NULL);
    g3_prefill(s, 0, ids, T, NULL);
    for (int i = 0; i < N; i++) {
        out[i] = argmax(s->logits, m.cfg.vocab);
        G3Segment sg = {0, T + i, 1};
        g3_forward(s, &out[i], &sg, 1, G3_LOGITS_LAST);
    }
    g3_state_free(s);
    g3_model_free(&m);
}

int main(void) {
    char tmp[] = "/tmp/g3apiXXXXXX", p[512], cmd[1024];
    if (!mkdtemp(tmp)) return 2;
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32");
    int32_t *ids, *ref;
    int T = fixture_ids(&exp, "input_ids", &ids), N = fixture_ids(&exp, "greedy_ids", &ref);
    int32_t got[64];

    // re-write the f32 fixture sharded (small shards), under another prefix, and as F16
    G3Model m;
    CHECK(g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") == 0, "%s", g3_error());
    const char *prefixes[] = {"language_model.model.", "model.language_model."};
    for (int k = 0; k < 2; k++) {
        STWriter w = {0};
        for (int i = 0; i < m.nt; i++) {
            char name[160];
            snprintf(name, sizeof name, "%s%s", prefixes[k], m.t[i].name + 6);
            st_writer_add(&w, name, G3_F32, m.t[i].ndim, m.t[i].shape, m.t[i].data);
        }
        snprintf(p, sizeof p, "%s/sh%d", tmp, k);
        g3_mkdir_p(p);
        CHECK(st_writer_write_sharded(&w, p, 200000) == 0, "%s", g3_error());
        st_writer_free(&w);
        snprintf(cmd, sizeof cmd, "cp tests/fixtures/gemma3-tiny-f32/config.json %s/ && test -f %s/model.safetensors.index.json && test -f %s/model-00002-of-*.safetensors", p, p, p);
        CHECK(system(cmd) == 0, "sharded files were not written");
        greedy(p, ids, T, N, got);
        CHECK(!memcmp(got, ref, (size_t)N * 4), "sharded checkpoint with prefix %s: greedy differs", prefixes[k]);
    }
    STWriter w = {0};
    for (int i = 0; i < m.nt; i++) {
        uint16_t *h = malloc((size_t)m.t[i].numel * 2);
        for (int64_t k = 0; k < m.t[i].numel; k++) h[k] = g3_f32_to_f16(((const float *)m.t[i].data)[k]);
        st_writer_add_owned(&w, m.t[i].name, G3_F16, m.t[i].ndim, m.t[i].shape, h);
    }
    snprintf(p, sizeof p, "%s/f16", tmp);
    g3_mkdir_p(p);
    snprintf(cmd, sizeof cmd, "%s/model.safetensors", p);
    CHECK(st_writer_write(&w, cmd, NULL) == 0, "%s", g3_error());
    st_writer_free(&w);

    // config.json in the newest form: layer_types and rope_parameters instead of the pattern
    G3Config c = m.cfg;
    snprintf(cmd, sizeof cmd, "%s/config.json", p);
    CHECK(g3_config_write(&c, cmd) == 0, "%s", g3_error());
    G3Config back;
    CHECK(g3_config_load(&back, p) == 0, "%s", g3_error());
    CHECK(!memcmp(back.sliding, c.sliding, sizeof c.sliding) && back.hidden == c.hidden && back.rope_local_base == c.rope_local_base,
          "config.json written by us reads back differently");
    greedy(p, ids, T, N, got);
    int same = 0;
    for (int i = 0; i < N; i++) same += got[i] == ref[i];
    CHECK(same >= N - 2, "F16 weights: greedy matches %d of %d", same, N);
    const char *rp = "{\"model_type\":\"gemma3_text\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":3,"
                     "\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":4,\"vocab_size\":16,"
                     "\"layer_types\":[\"sliding_attention\",\"full_attention\",\"sliding_attention\"],"
                     "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":8.0,\"rope_theta\":1000000.0},"
                     "\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}}}";
    CHECK(g3_config_parse(&c, rp, strlen(rp), "rp.json") == 0, "%s", g3_error());
    CHECK(c.sliding[0] && !c.sliding[1] && c.sliding[2] && c.rope_global_scale == 8 && c.rope_global_base == 1e6 && c.rope_local_base == 1e4,
          "rope_parameters / layer_types not read");
    const char *g2 = "{\"model_type\":\"gemma2\",\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":4,"
                     "\"num_attention_heads\":2,\"head_dim\":4,\"vocab_size\":16,\"attn_logit_softcapping\":50.0}";
    CHECK(g3_config_parse(&c, g2, strlen(g2), "g2.json") == 0 && c.sliding[0] && !c.sliding[1] && !c.qk_norm && c.attn_softcap == 50,
          "Gemma 2 defaults");
    g3_model_free(&m);

    // init writes a loadable checkpoint, sharded when asked, deterministic in the seed
    G3Config tiny;
    g3_config_preset(&tiny, "tiny");
    snprintf(p, sizeof p, "%s/init", tmp);
    CHECK(g3_init_checkpoint(&tiny, p, G3_BF16, 7, 0.02f, 100000, 0) == 0, "%s", g3_error());
    G3Model im;
    CHECK(g3_model_load(&im, p) == 0, "init output does not load: %s", g3_error());
    CHECK(im.nparams == 764640 && im.src->nfiles > 1, "init: %lld params in %d files", (long long)im.nparams, im.src->nfiles);
    g3_model_free(&im);

    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd)) return 2;
    free(ids); free(ref);
    st_close(&exp);
    return check_done();
}
