// test_lora.c: PEFT LoRA adapters (model/adapter.h). On tests/fixtures/gemma3-tiny-f32-lora
// (a real PEFT adapter, r = 4, alpha = 8, on all seven linear layers, stored in F64): the
// forward pass with the adapter applied unmerged matches transformers' logits (exact mode,
// 1e-5) by prefill and by one-token decode; a merged model gives the unmerged logits; the
// CLI's forward --adapter (the outside check's form) and merge agree. Bad adapters (missing
// files, unknown or unlisted targets, wrong shapes, unmatched keys, NaN, half a module,
// unsupported options) give errors naming the file and the tensor or field.
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "model/adapter.h"
#include "model/forward.h"

static const char *BASE = "tests/fixtures/gemma3-tiny-f32", *LORA = "tests/fixtures/gemma3-tiny-f32-lora";
static const char *bin;
static char tmp[64];

// Logits [T, V] of ids through model m (exact or fast mode), by one prefill.
static float *logits_mode(const G3Model *m, const int32_t *ids, int T, int fast) {
    G3State *s = g3_state_new(m, 1, T, T, fast, NULL);
    if (!s) { CHECK(0, "%s", g3_error()); return NULL; }
    float *lg = malloc((size_t)T * m->cfg.vocab * sizeof(float));
    if (g3_prefill(s, 0, ids, T, lg)) { CHECK(0, "%s", g3_error()); free(lg); lg = NULL; }
    g3_state_free(s);
    return lg;
}
static float *logits_of(const G3Model *m, const int32_t *ids, int T) { return logits_mode(m, ids, T, 0); }

static void test_fixture(void) {
    G3Model m;
    if (g3_model_load(&m, BASE)) { CHECK(0, "%s", g3_error()); return; }
    G3Adapter *a = g3_adapter_load(LORA, &m);
    CHECK(a != NULL, "%s", g3_error());
    if (!a) { g3_model_free(&m); return; }
    CHECK(a->r == 4 && a->alpha == 8 && a->scale == 2.0f && !a->rslora, "r %d alpha %g scale %g", a->r, a->alpha, (double)a->scale);
    CHECK(a->nmodules == 7 * m.cfg.layers, "%d modules", a->nmodules);
    CHECK(a->max_out == m.cfg.inter, "max_out %d", a->max_out);
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32-lora");
    int32_t *ids;
    const int T = fixture_ids(&exp, "input_ids", &ids), V = m.cfg.vocab;
    const float *ref = fixture_get(&exp, "logits")->data;

    // the base alone is far from the adapter's logits: the comparison below means something
    float *base = logits_of(&m, ids, T);
    double e0 = base ? rel_err(base, ref, (long)T * V) : 0;
    CHECK(e0 > 1e-2, "the adapter changes the logits by only %.3g", e0);
    m.adapter = a;
    float *lg = logits_of(&m, ids, T);
    double e = lg ? rel_err(lg, ref, (long)T * V) : 1;
    CHECK(e <= 1e-5, "logits with the adapter: rel err %.3g > 1e-5", e);
    printf("adapter logits vs transformers: rel err %.3g (base alone %.3g)\n", e, e0);
    float *fl = logits_mode(&m, ids, T, 1);
    double ef = fl ? rel_err(fl, ref, (long)T * V) : 1;
    CHECK(ef <= 2e-2, "fast mode with the adapter: rel err %.3g", ef);
    free(fl);

    // one-token decode over the KV cache gives the same rows as the prefill
    G3State *s = g3_state_new(&m, 1, T, T, 0, NULL);
    const int P = 30;
    CHECK(s && g3_prefill(s, 0, ids, P, NULL) == 0, "%s", g3_error());
    double ed = 0;
    for (int t = P; s && t < T; t++) {
        G3Segment sg = {0, t, 1};
        if (g3_forward(s, ids + t, &sg, 1, G3_LOGITS_LAST)) { CHECK(0, "%s", g3_error()); break; }
        double et = rel_err(s->logits, ref + (long)t * V, V);
        if (et > ed) ed = et;
    }
    CHECK(ed <= 1e-5, "decode with the adapter: worst row rel err %.3g", ed);
    g3_state_free(s);

    // merged into a copy of the weights: the same logits from the plain model
    char out[128];
    snprintf(out, sizeof out, "%s/merged", tmp);
    CHECK(g3_adapter_merge_save(&m, a, out, 0) == 0, "merge: %s", g3_error());
    CHECK(g3_adapter_merge_save(&m, a, out, 0) == -1 && strstr(g3_error(), "already holds a model") && strstr(g3_error(), "--force"),
          "merge over a model without force: %s", g3_error());
    CHECK(g3_adapter_merge_save(&m, a, out, 1) == 0, "merge with force: %s", g3_error());
    CHECK(g3_adapter_merge_save(&m, a, BASE, 1) == -1 && strstr(g3_error(), "own folder"), "merge into the model's folder: %s", g3_error());
    G3Model mm;
    if (g3_model_load(&mm, out)) CHECK(0, "merged model: %s", g3_error());
    else {
        float *ml = logits_of(&mm, ids, T);
        double em = ml && lg ? rel_err(ml, lg, (long)T * V) : 1;
        CHECK(em <= 1e-5, "merged vs unmerged logits: rel err %.3g", em);
        printf("merged vs unmerged: rel err %.3g\n", em);
        free(ml);
        g3_model_free(&mm);
    }

    // a state made before the adapter was attached has no scratch: an error, not a crash
    m.adapter = NULL;
    s = g3_state_new(&m, 1, T, T, 0, NULL);
    m.adapter = a;
    CHECK(s && g3_prefill(s, 0, ids, T, NULL) == -1 && strstr(g3_error(), "no scratch"), "late adapter: %s", g3_error());
    g3_state_free(s);

    free(base);
    free(lg);
    free(ids);
    st_close(&exp);
    g3_adapter_free(a);
    g3_model_free(&m);
}

// A bf16 base: the merged folder keeps bf16, and its logits are the unmerged ones up to the
// rounding of the merged weights to bf16.
static void test_merge_bf16(void) {
    G3Model m, mm;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-bf16")) { CHECK(0, "%s", g3_error()); return; }
    G3Adapter *a = g3_adapter_load(LORA, &m);
    CHECK(a != NULL, "%s", g3_error());
    char out[128];
    snprintf(out, sizeof out, "%s/merged-bf16", tmp);
    if (a && g3_adapter_merge_save(&m, a, out, 0) == 0 && g3_model_load(&mm, out) == 0) {
        int bf16 = 1;
        for (int i = 0; i < mm.nt; i++) bf16 &= mm.t[i].dtype == m.t[i].dtype;
        CHECK(bf16, "merged tensors keep their stored types");
        const int32_t ids[] = {2, 244, 877, 21, 798, 232, 760, 10, 123, 1001, 701, 919};
        const int T = (int)G3_ARRAY_LEN(ids);
        m.adapter = a;
        float *u = logits_of(&m, ids, T), *g = logits_of(&mm, ids, T);
        double e = u && g ? rel_err(g, u, (long)T * m.cfg.vocab) : 1;
        CHECK(e <= 2e-2 && e > 0, "bf16: merged vs unmerged rel err %.3g", e);
        printf("bf16 base: merged (rounded to bf16) vs unmerged: rel err %.3g\n", e);
        free(u);
        free(g);
        g3_model_free(&mm);
    } else CHECK(0, "bf16 merge: %s", g3_error());
    g3_adapter_free(a);
    g3_model_free(&m);
}

// A multimodal checkpoint (tensors named language_model.model.*, bf16): an adapter saved from
// Gemma3ForConditionalGeneration names its keys ...model.language_model.layers.N...; written
// here with random factors on q, v and down only, it applies, and merges under the stored names.
static void test_multimodal(void) {
    const char *dir = "tests/fixtures/gemma3-tiny-multimodal-layout";
    G3Model m, mm;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    char ad[128], p[256];
    snprintf(ad, sizeof ad, "%s/mm-adapter", tmp);
    sh("mkdir -p %s", ad);
    snprintf(p, sizeof p, "%s/adapter_config.json", ad);
    const char *cfg = "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 3, \"target_modules\": [\"q_proj\", \"v_proj\", \"down_proj\"]}";
    g3_write_file_atomic(p, cfg, strlen(cfg));
    STWriter w = {0};
    const G3LayerRole roles[] = {W_Q, W_V, W_DOWN};
    const char *names[] = {"self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"};
    uint64_t seed = 1;
    for (int l = 0; l < m.cfg.layers; l++)
        for (int k = 0; k < 3; k++) {
            const G3Tensor *t = g3_layer_tensor(&m, l, roles[k]);
            for (int ab = 0; ab < 2; ab++) {
                const int64_t sh2[2] = {ab ? t->shape[0] : 2, ab ? 2 : t->shape[1]};
                float *d = malloc((size_t)(sh2[0] * sh2[1]) * sizeof(float));
                for (int64_t i = 0; i < sh2[0] * sh2[1]; i++) {
                    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                    d[i] = ((float)(seed >> 40) / (float)(1 << 24) - 0.5f) * 0.2f;
                }
                char key[160];
                snprintf(key, sizeof key, "base_model.model.model.language_model.layers.%d.%s.lora_%c.weight", l, names[k], ab ? 'B' : 'A');
                st_writer_add_owned(&w, key, G3_F32, 2, sh2, d);
            }
        }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", ad);
    CHECK(st_writer_write(&w, p, NULL) == 0, "%s", g3_error());
    st_writer_free(&w);
    G3Adapter *a = g3_adapter_load(ad, &m);
    CHECK(a && a->nmodules == 3 * m.cfg.layers && fabsf(a->scale - 1.5f) < 1e-7f, "multimodal adapter: %s", a ? "fields" : g3_error());
    char out[128];
    snprintf(out, sizeof out, "%s/mm-merged", tmp);
    if (a && g3_adapter_merge_save(&m, a, out, 0) == 0 && g3_model_load(&mm, out) == 0) {
        STSet st;
        snprintf(p, sizeof p, "%s/model.safetensors", out);
        CHECK(st_open(&st, p) == 0 && st_find(&st, "language_model.model.layers.0.self_attn.q_proj.weight") && st.ntensors == m.nt,
              "merged multimodal folder keeps the stored names");
        st_close(&st);
        const int32_t ids[] = {2, 10, 200, 31, 7, 99, 140, 3, 64};
        const int T = (int)G3_ARRAY_LEN(ids);
        float *b0 = logits_of(&m, ids, T);
        m.adapter = a;
        float *u = logits_of(&m, ids, T), *g = logits_of(&mm, ids, T);
        double e = u && g ? rel_err(g, u, (long)T * m.cfg.vocab) : 1, e0 = u && b0 ? rel_err(b0, u, (long)T * m.cfg.vocab) : 0;
        CHECK(e <= 2e-2 && e0 > 5 * e, "multimodal: merged vs unmerged %.3g, base vs unmerged %.3g", e, e0);
        printf("multimodal bf16: merged vs unmerged rel err %.3g (base alone %.3g)\n", e, e0);
        free(b0);
        free(u);
        free(g);
        g3_model_free(&mm);
    } else CHECK(0, "multimodal merge: %s", g3_error());
    g3_adapter_free(a);
    g3_model_free(&m);
}

// ---- bad adapters, written from the fixture with one thing changed ----

typedef enum { KEEP, DROP, EXTRA, NAN_VALUE, TRANSPOSE, AS_BF16, AS_I64, NO_WEIGHTS } Change;

// Writes tmp/NAME: the fixture's adapter_config.json with `from` replaced by `to` (NULL: as is;
// to "" with from "*": no config), and its tensors with change applied to tensor `which`.
static void make_adapter(const char *name, const char *from, const char *to, Change change, const char *which) {
    char dir[256], p[320];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    sh("rm -rf %s && mkdir -p %s", dir, dir);
    snprintf(p, sizeof p, "%s/adapter_config.json", LORA);
    size_t len;
    char *cfg = g3_read_file(p, &len);
    if (!(from && !strcmp(from, "*"))) {
        char *hit = from ? strstr(cfg, from) : NULL;
        if (from && !hit) { CHECK(0, "%s: the fixture's config has no %s", name, from); free(cfg); return; }
        snprintf(p, sizeof p, "%s/adapter_config.json", dir);
        FILE *f = fopen(p, "wb");
        if (hit) {
            fwrite(cfg, 1, (size_t)(hit - cfg), f);
            fputs(to, f);
            fputs(hit + strlen(from), f);
        } else fputs(cfg, f);
        fclose(f);
    }
    free(cfg);
    if (change == NO_WEIGHTS) return;
    STSet st;
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", LORA);
    if (st_open(&st, p)) { CHECK(0, "%s", g3_error()); return; }
    STWriter w = {0};
    for (int i = 0; i < st.ntensors; i++) {
        const STTensor *t = &st.tensors[i];
        const int64_t n = st_numel(t);
        int hit = which && strstr(t->name, which);
        if (hit && change == DROP) continue;
        if (change == AS_BF16 || change == AS_I64) {
            void *d = malloc((size_t)n * 8);
            for (int64_t k = 0; k < n; k++) {
                double v = ((const double *)t->data)[k];
                if (change == AS_BF16) ((uint16_t *)d)[k] = g3_f32_to_bf16((float)v);
                else ((int64_t *)d)[k] = (int64_t)v;
            }
            st_writer_add_owned(&w, t->name, change == AS_BF16 ? G3_BF16 : G3_I64, t->ndim, t->shape, d);
        } else if (hit && change == NAN_VALUE) {
            double *d = malloc(t->nbytes);
            memcpy(d, t->data, t->nbytes);
            d[t->shape[1] + 2] = NAN;  // [1, 2]
            st_writer_add_owned(&w, t->name, t->dtype, t->ndim, t->shape, d);
        } else if (hit && change == TRANSPOSE) {
            int64_t sh2[2] = {t->shape[1], t->shape[0]};
            st_writer_add(&w, t->name, t->dtype, 2, sh2, t->data);
        } else st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    static const double extra[4 * 96];
    const int64_t esh[2] = {4, 96};
    if (change == EXTRA) st_writer_add(&w, which, G3_F64, 2, esh, extra);
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    if (st_writer_write(&w, p, NULL)) CHECK(0, "%s", g3_error());
    st_writer_free(&w);
    st_close(&st);
}

// Loads tmp/NAME on the fixture's base: it must fail with a message holding every needle.
static void expect_error(const G3Model *m, const char *name, const char *n1, const char *n2) {
    char dir[256];
    snprintf(dir, sizeof dir, "%s/%s", tmp, name);
    G3Adapter *a = g3_adapter_load(dir, m);
    const char *e = a ? "(loaded)" : g3_error();
    CHECK(!a && strstr(e, n1) && (!n2 || strstr(e, n2)), "%s: %s (wanted '%s'%s%s)", name, e, n1, n2 ? " and " : "", n2 ? n2 : "");
    g3_adapter_free(a);
}

static void test_bad_adapters(void) {
    G3Model m;
    if (g3_model_load(&m, BASE)) { CHECK(0, "%s", g3_error()); return; }
    const char *q0a = "layers.0.self_attn.q_proj.lora_A.weight";
    make_adapter("noconfig", "*", "", KEEP, NULL);
    expect_error(&m, "noconfig", "noconfig: no adapter_config.json", NULL);
    make_adapter("noweights", NULL, NULL, NO_WEIGHTS, NULL);
    expect_error(&m, "noweights", "noweights: no adapter_model.safetensors", NULL);
    make_adapter("badjson", "\"r\": 4,", "\"r\": 4", KEEP, NULL);
    expect_error(&m, "badjson", "adapter_config.json", "line");
    make_adapter("unknown_target", "\"q_proj\"", "\"lm_head\"", KEEP, NULL);
    expect_error(&m, "unknown_target", "adapter_config.json: target_modules lists 'lm_head'", NULL);
    make_adapter("unlisted", "\"k_proj\",", "", KEEP, NULL);
    expect_error(&m, "unlisted", "adapter_model.safetensors: tensor 'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight'",
                 "target_modules does not list");
    make_adapter("shape", NULL, NULL, TRANSPOSE, q0a);
    expect_error(&m, "shape", "tensor 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight' has shape [96, 4]", "need [4, 96]");
    make_adapter("rank", "\"r\": 4", "\"r\": 8", KEEP, NULL);
    expect_error(&m, "rank", "has shape [4, 256] but r = 8", NULL);
    make_adapter("unmatched", NULL, NULL, EXTRA, "base_model.model.lm_head.lora_A.weight");
    expect_error(&m, "unmatched", "adapter_model.safetensors: 1 key matches no LoRA weight", "'base_model.model.lm_head.lora_A.weight'");
    make_adapter("embedding", NULL, NULL, EXTRA, "base_model.model.model.layers.0.self_attn.q_proj.lora_embedding_A");
    expect_error(&m, "embedding", "'base_model.model.model.layers.0.self_attn.q_proj.lora_embedding_A'", NULL);
    make_adapter("vision", NULL, NULL, EXTRA, "base_model.model.model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight");
    expect_error(&m, "vision", "1 key matches no LoRA weight", "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight");
    make_adapter("nan", NULL, NULL, NAN_VALUE, "layers.3.mlp.up_proj.lora_B");
    expect_error(&m, "nan", "tensor 'base_model.model.model.layers.3.mlp.up_proj.lora_B.weight' holds NaN at [1, 2]", NULL);
    make_adapter("half", NULL, NULL, DROP, "layers.2.mlp.down_proj.lora_B");
    expect_error(&m, "half", "layers.2.mlp.down_proj has lora_A but no lora_B", NULL);
    make_adapter("ints", NULL, NULL, AS_I64, NULL);
    expect_error(&m, "ints", "has type I64; LoRA tensors must be F32, BF16, F16 or F64", NULL);
    make_adapter("fifo", "\"fan_in_fan_out\": false", "\"fan_in_fan_out\": true", KEEP, NULL);
    expect_error(&m, "fifo", "adapter_config.json: \"fan_in_fan_out\" is set", NULL);
    make_adapter("mts", "\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]", KEEP, NULL);
    expect_error(&m, "mts", "\"modules_to_save\" is set", NULL);
    make_adapter("dora", "\"use_dora\": false", "\"use_dora\": true", KEEP, NULL);
    expect_error(&m, "dora", "DoRA", NULL);
    make_adapter("ia3", "\"LORA\"", "\"IA3\"", KEEP, NULL);
    expect_error(&m, "ia3", "peft_type is \"IA3\"", NULL);
    G3Model g2;
    if (g3_model_load(&g2, "tests/fixtures/gemma2-tiny-f32")) CHECK(0, "%s", g3_error());
    else {
        make_adapter("copy", NULL, NULL, KEEP, NULL);
        expect_error(&g2, "copy", "the model's model.layers.0.mlp.down_proj.weight", NULL);
        g3_model_free(&g2);
    }

    // what loads: rsLoRA scaling, and tensors stored in bf16 (widened exactly)
    char dir[256];
    make_adapter("rslora", "\"use_rslora\": false", "\"use_rslora\": true", KEEP, NULL);
    snprintf(dir, sizeof dir, "%s/rslora", tmp);
    G3Adapter *a = g3_adapter_load(dir, &m);
    CHECK(a && a->rslora && a->scale == 4.0f, "rsLoRA: %s", a ? "scale" : g3_error());
    g3_adapter_free(a);
    make_adapter("bf16", NULL, NULL, AS_BF16, NULL);
    snprintf(dir, sizeof dir, "%s/bf16", tmp);
    a = g3_adapter_load(dir, &m);
    CHECK(a != NULL, "bf16 adapter: %s", g3_error());
    if (a) {
        const float *A = a->mod[0][W_Q].A.data;
        STSet st;
        char p[320];
        snprintf(p, sizeof p, "%s/adapter_model.safetensors", LORA);
        if (!st_open(&st, p)) {
            const double *ref = st_find(&st, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight")->data;
            int same = 1;
            for (int k = 0; k < 4 * 96; k++) same &= A[k] == g3_bf16_to_f32(g3_f32_to_bf16((float)ref[k]));
            CHECK(same, "bf16 values widened exactly");
            st_close(&st);
        }
    }
    g3_adapter_free(a);
    g3_model_free(&m);
}

// ---- the command line: the outside check's form, merge, and errors ----

// Runs `gemma3 ARGS` with its output into tmp/out.txt; the exit status, the output in *o.
static int run(char **o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **o, const char *fmt, ...) {
    char args[4096], p[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = sh("%s %s > %s/out.txt 2>&1", bin, args, tmp);
    snprintf(p, sizeof p, "%s/out.txt", tmp);
    free(*o);
    size_t len;
    *o = g3_read_file(p, &len);
    if (!*o) *o = g3_strdup("");
    return rc;
}

static double saved_err(const char *path, const float *ref, long n) {
    STSet st;
    if (st_open(&st, path)) { CHECK(0, "%s", g3_error()); return 1; }
    const STTensor *t = st_find(&st, "logits");
    double e = t && st_numel(t) == n ? rel_err(t->data, ref, n) : 1;
    st_close(&st);
    return e;
}

static void test_cli(void) {
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32-lora");
    int32_t *ids;
    const int T = fixture_ids(&exp, "input_ids", &ids);
    const float *ref = fixture_get(&exp, "logits")->data;
    const long n = (long)T * 1024;
    char idl[1024] = "", *o = NULL;
    for (int i = 0; i < T; i++) snprintf(idl + strlen(idl), sizeof idl - strlen(idl), "%s%d", i ? "," : "", ids[i]);
    CHECK(run(&o, "forward --model %s --adapter %s --ids %s --exact --save %s/l.safetensors", BASE, LORA, idl, tmp) == 0, "%s", o);
    char p[256];
    snprintf(p, sizeof p, "%s/l.safetensors", tmp);
    double e = saved_err(p, ref, n);
    CHECK(e <= 1e-5, "forward --adapter --exact: rel err %.3g", e);
    CHECK(run(&o, "merge --model %s --adapter %s --out %s/cm", BASE, LORA, tmp) == 0 && strstr(o, "42 LoRA modules"), "%s", o);
    CHECK(run(&o, "forward --model %s/cm --ids %s --exact --save %s/m.safetensors", tmp, idl, tmp) == 0, "%s", o);
    snprintf(p, sizeof p, "%s/m.safetensors", tmp);
    e = saved_err(p, ref, n);
    CHECK(e <= 1e-5, "forward on the merged model: rel err %.3g", e);
    CHECK(run(&o, "merge --model %s --adapter %s --out %s/cm", BASE, LORA, tmp) == 1 && strstr(o, "gemma3 merge: ") && strstr(o, "--force"),
          "merge over a model: %s", o);
    CHECK(run(&o, "merge --model %s --adapter %s --out %s/cm --force", BASE, LORA, tmp) == 0, "merge --force: %s", o);
    CHECK(run(&o, "merge --model %s --out %s/cm", BASE, tmp) == 1 && strstr(o, "--adapter"), "merge without --adapter: %s", o);
    CHECK(run(&o, "forward --model %s --adapter %s/nan --ids 2,3", BASE, tmp) == 1 &&
              strstr(o, "gemma3 forward: ") && strstr(o, "lora_B.weight' holds NaN"),
          "forward with a bad adapter: %s", o);
    // every command that runs the model takes --adapter
    const char *cmds[] = {"forward", "generate", "chat", "trace", "analyze", "intervene"};
    for (size_t i = 0; i < G3_ARRAY_LEN(cmds); i++)
        CHECK(run(&o, "%s --help", cmds[i]) == 0 && strstr(o, "--adapter"), "%s --help lacks --adapter", cmds[i]);
    // greedy generation with the adapter continues as transformers' greedy_ids do
    int32_t *greedy;
    const int N = fixture_ids(&exp, "greedy_ids", &greedy);
    char gl[512] = "";
    for (int i = 0; i < N; i++) snprintf(gl + strlen(gl), sizeof gl - strlen(gl), "%s%d", i ? "," : "", greedy[i]);
    CHECK(run(&o, "generate --model %s --adapter %s --ids %s --temperature 0 --max-tokens %d --exact", BASE, LORA, idl, N) == 0 &&
              strstr(o, gl),
          "generate --adapter: %s (want %s)", o, gl);
    free(greedy);
    free(o);
    free(ids);
    st_close(&exp);
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    snprintf(tmp, sizeof tmp, "/tmp/g3loraXXXXXX");
    if (!mkdtemp(tmp)) return 2;
    test_fixture();
    test_merge_bf16();
    test_multimodal();
    test_bad_adapters();
    test_cli();
    sh("rm -rf %s", tmp);
    return check_done();
}
