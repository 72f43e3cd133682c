// config.c: config.json <-> G3Config. Field names follow Hugging Face transformers.
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"

// Reads an integer field into *out, which must lie in [lo, hi]; missing or null => def (REQ:
// the field is required). A default computed from other fields is checked like a given value.
enum { REQ = INT_MIN };
static int get_int(const JsonNode *o, const char *key, int def, int lo, int hi, int *out, const char *name) {
    const JsonNode *n = json_get(o, key);
    if (json_is_null(n)) {
        if (def == REQ) return g3_errorf("%s: missing required field \"%s\"", name, key);
        if (def < lo || def > hi)
            return g3_errorf("%s: field \"%s\" is absent and its default %d is out of range [%d, %d]", name, key, def, lo, hi);
        *out = def;
        return 0;
    }
    int64_t v;
    int rc = json_int_in(n, lo, hi, &v);
    if (rc == -1) return g3_errorf("%s: field \"%s\" must be an integer (got %.40s)", name, key, n->type == JSON_NUMBER ? n->str : "a non-number");
    if (rc == -2) return g3_errorf("%s: field \"%s\" = %.40s is out of range [%d, %d]", name, key, n->str, lo, hi);
    *out = (int)v;
    return 0;
}

// Reads a number field into *out, which must be finite and lie in [lo, hi] (JSON has no NaN or
// infinity, but 1e999 reads as infinity); missing or null => def. `in` names the enclosing
// object in messages ("" at the top, else "rope_scaling." and the like).
static int get_num(const JsonNode *o, const char *in, const char *key, double def, double lo, double hi, double *out,
                   const char *name) {
    const JsonNode *n = json_get(o, key);
    if (json_is_null(n)) { *out = def; return 0; }
    if (!json_is_number(n)) return g3_errorf("%s: field \"%s%s\" must be a number", name, in, key);
    if (!isfinite(n->num)) return g3_errorf("%s: field \"%s%s\" = %.40s is not a finite number", name, in, key, n->str);
    if (n->num < lo || n->num > hi)
        return g3_errorf("%s: field \"%s%s\" = %.40s is out of range [%g, %g]", name, in, key, n->str, lo, hi);
    *out = n->num;
    return 0;
}

// A float field: a number that float holds (a double beyond FLT_MAX would become infinity).
static int get_float(const JsonNode *o, const char *key, double def, float *out, const char *name) {
    double v;
    if (get_num(o, "", key, def, -FLT_MAX, FLT_MAX, &v, name)) return -1;
    *out = (float)v;
    return 0;
}

// eos_token_id: an id, or a list of ids (instruction-tuned configs list <eos> and <end_of_turn>);
// the first is the model's end of sequence. Every id must lie in the vocabulary.
static int get_eos(const JsonNode *tc, int vocab, int *eos, const char *name) {
    const JsonNode *n = json_get(tc, "eos_token_id");
    *eos = 1;
    if (json_is_null(n)) return vocab > 1 ? 0 : g3_errorf("%s: the default eos_token_id 1 is outside the vocabulary of %d", name, vocab);
    if (n->type != JSON_ARRAY) return get_int(tc, "eos_token_id", 1, 0, vocab - 1, eos, name);
    if (n->count == 0) return g3_errorf("%s: field \"eos_token_id\" is an empty list", name);
    int i = 0;
    JSON_FOREACH(x, n) {
        int64_t v;
        int rc = json_int_in(x, 0, vocab - 1, &v);
        if (rc) return g3_errorf("%s: field \"eos_token_id\"[%d] %s [0, %d]", name, i,
                                 rc == -1 ? "must be an integer id in" : "is outside the vocabulary", vocab - 1);
        if (i++ == 0) *eos = (int)v;
    }
    return 0;
}

// Linear RoPE scaling from a rope_scaling-like object; other types are refused rather than
// silently ignored, since they change every position's rotation.
static int read_rope_scaling(const JsonNode *rs, double *scale, const char *name, const char *field) {
    *scale = 1.0;
    if (json_is_null(rs)) return 0;
    if (rs->type != JSON_OBJECT) return g3_errorf("%s: \"%s\" must be an object or null", name, field);
    const JsonNode *t = json_get(rs, "rope_type");
    if (!t) t = json_get(rs, "type");
    if (json_is_string(t) && strcmp(t->str, "default") == 0) return 0;
    if (!json_is_string(t) || strcmp(t->str, "linear") != 0)
        return g3_errorf("%s: \"%s\": only linear RoPE scaling is supported (got %s)", name, field, json_is_string(t) ? t->str : "no rope_type");
    char in[64];
    snprintf(in, sizeof in, "%s.", field);
    if (get_num(rs, in, "factor", 1.0, 0, DBL_MAX, scale, name)) return -1;
    if (*scale <= 0) return g3_errorf("%s: \"%s.factor\" must be positive", name, field);
    return 0;
}

int g3_config_parse(G3Config *c, const char *text, size_t len, const char *name) {
    memset(c, 0, sizeof *c);
    Json j;
    if (json_parse(&j, text, len)) return g3_error_prefix("%s", name);
    int rc = -1;
    const JsonNode *root = json_root(&j), *tc = root;
    if (root->type != JSON_OBJECT) { g3_errorf("%s: not a JSON object", name); goto out; }
    const JsonNode *archs = json_get(root, "architectures");
    const JsonNode *a0 = archs && archs->type == JSON_ARRAY ? json_at(archs, 0) : NULL;
    if (json_is_string(a0)) snprintf(c->arch, sizeof c->arch, "%s", a0->str);
    const JsonNode *sub = json_get(root, "text_config");
    if (sub && sub->type == JSON_OBJECT) { tc = sub; c->multimodal = 1; }
    const JsonNode *mt = json_get(tc, "model_type");
    if (!json_is_string(mt)) mt = json_get(root, "model_type");
    if (!json_is_string(mt)) { g3_errorf("%s: missing \"model_type\"", name); goto out; }
    if (!strncmp(mt->str, "gemma3", 6)) c->family = G3_GEMMA3;
    else if (!strcmp(mt->str, "gemma2")) c->family = G3_GEMMA2;
    else { g3_errorf("%s: model_type \"%s\" is not a Gemma 2 or Gemma 3 text model", name, mt->str); goto out; }

    if (get_int(tc, "vocab_size", c->family == G3_GEMMA3 ? 262208 : 256000, 1, 1 << 24, &c->vocab, name) ||
        get_int(tc, "hidden_size", REQ, 1, 1 << 16, &c->hidden, name) ||
        get_int(tc, "intermediate_size", REQ, 1, 1 << 20, &c->inter, name) ||
        get_int(tc, "num_hidden_layers", REQ, 1, G3_MAX_LAYERS, &c->layers, name) ||
        get_int(tc, "num_attention_heads", REQ, 1, 1024, &c->heads, name) ||
        get_int(tc, "num_key_value_heads", c->heads, 1, 1024, &c->kv_heads, name) ||
        get_int(tc, "head_dim", c->hidden / c->heads, 2, 4096, &c->head_dim, name) ||
        get_int(tc, "sliding_window", 4096, 1, 1 << 30, &c->sliding_window, name) ||
        get_int(tc, "max_position_embeddings", 8192, 1, 1 << 30, &c->max_pos, name) ||
        get_int(tc, "bos_token_id", 2, 0, c->vocab - 1, &c->bos, name) ||
        get_int(tc, "pad_token_id", 0, 0, c->vocab - 1, &c->pad, name) ||
        get_eos(tc, c->vocab, &c->eos, name))
        goto out;

    if (get_float(tc, "query_pre_attn_scalar", c->head_dim, &c->query_pre_attn_scalar, name) ||
        get_float(tc, "rms_norm_eps", 1e-6, &c->eps, name) ||
        get_float(tc, "attn_logit_softcapping", 0, &c->attn_softcap, name) ||
        get_float(tc, "final_logit_softcapping", 0, &c->final_softcap, name))
        goto out;

    // RoPE: Gemma 2 uses rope_theta everywhere; Gemma 3 uses rope_local_base_freq on sliding
    // layers, and rope_scaling (linear) on global layers only.
    if (get_num(tc, "", "rope_theta", c->family == G3_GEMMA3 ? 1e6 : 1e4, -DBL_MAX, DBL_MAX, &c->rope_global_base, name)) goto out;
    if (get_num(tc, "", "rope_local_base_freq", c->family == G3_GEMMA3 ? 1e4 : c->rope_global_base, -DBL_MAX, DBL_MAX, &c->rope_local_base, name)) goto out;
    c->rope_local_scale = 1.0;
    if (read_rope_scaling(json_get(tc, "rope_scaling"), &c->rope_global_scale, name, "rope_scaling")) goto out;
    const JsonNode *rp = json_get(tc, "rope_parameters");  // newer transformers: per layer kind
    if (rp && rp->type == JSON_OBJECT) {
        const JsonNode *full = json_get(rp, "full_attention"), *slide = json_get(rp, "sliding_attention");
        if (full && full->type == JSON_OBJECT) {
            if (get_num(full, "rope_parameters.full_attention.", "rope_theta", c->rope_global_base, -DBL_MAX, DBL_MAX, &c->rope_global_base, name)) goto out;
            if (read_rope_scaling(full, &c->rope_global_scale, name, "rope_parameters.full_attention")) goto out;
        }
        if (slide && slide->type == JSON_OBJECT) {
            if (get_num(slide, "rope_parameters.sliding_attention.", "rope_theta", c->rope_local_base, -DBL_MAX, DBL_MAX, &c->rope_local_base, name)) goto out;
            if (read_rope_scaling(slide, &c->rope_local_scale, name, "rope_parameters.sliding_attention")) goto out;
        }
        if (!full && !slide && get_num(rp, "rope_parameters.", "rope_theta", c->rope_global_base, -DBL_MAX, DBL_MAX, &c->rope_global_base, name)) goto out;
    }
    if (c->family == G3_GEMMA2) c->rope_local_base = c->rope_global_base;

    const JsonNode *act = json_get(tc, "hidden_activation");
    if (!json_is_string(act)) act = json_get(tc, "hidden_act");
    c->act = G3_GELU_TANH;
    if (json_is_string(act)) {
        if (!strcmp(act->str, "gelu_pytorch_tanh") || !strcmp(act->str, "gelu_tanh") || !strcmp(act->str, "gelu_new")) c->act = G3_GELU_TANH;
        else if (!strcmp(act->str, "gelu")) c->act = G3_GELU_ERF;
        else { g3_errorf("%s: hidden_activation \"%s\" is not supported (Gemma uses gelu_pytorch_tanh)", name, act->str); goto out; }
    }
    const JsonNode *tie = json_get(tc, "tie_word_embeddings");
    if (!tie) tie = json_get(root, "tie_word_embeddings");
    if (tie && tie->type == JSON_FALSE) { g3_errorf("%s: untied output embeddings (lm_head) are not supported: Gemma ties them", name); goto out; }

    c->qk_norm = c->family == G3_GEMMA3;
    const JsonNode *dt = json_get(tc, "torch_dtype");
    if (!json_is_string(dt)) dt = json_get(root, "torch_dtype");
    if (!json_is_string(dt)) dt = json_get(root, "dtype");
    c->dtype = G3_F32;
    if (json_is_string(dt) && !strcmp(dt->str, "bfloat16")) c->dtype = G3_BF16;
    if (json_is_string(dt) && !strcmp(dt->str, "float16")) c->dtype = G3_F16;

    // Layer kinds: an explicit list wins; else Gemma 3's pattern; else Gemma 2's alternation.
    const JsonNode *lt = json_get(tc, "layer_types");
    if (lt && lt->type == JSON_ARRAY) {
        if ((int)lt->count != c->layers) { g3_errorf("%s: layer_types has %u entries but num_hidden_layers is %d", name, lt->count, c->layers); goto out; }
        int i = 0;
        JSON_FOREACH(x, lt) {
            if (json_is_string(x) && !strcmp(x->str, "sliding_attention")) c->sliding[i] = 1;
            else if (json_is_string(x) && !strcmp(x->str, "full_attention")) c->sliding[i] = 0;
            else { g3_errorf("%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", name, i); goto out; }
            i++;
        }
    } else if (c->family == G3_GEMMA3) {
        int pattern;
        if (get_int(tc, "sliding_window_pattern", 6, 1, 1 << 20, &pattern, name)) goto out;
        for (int i = 0; i < c->layers; i++) c->sliding[i] = (i + 1) % pattern != 0;
    } else {
        for (int i = 0; i < c->layers; i++) c->sliding[i] = i % 2 == 0;
    }
    rc = g3_config_validate(c, name);
out:
    json_free(&j);
    return rc;
}

int g3_config_validate(const G3Config *c, const char *name) {
    if (c->heads % c->kv_heads) return g3_errorf("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", name, c->heads, c->kv_heads);
    if (c->head_dim % 2) return g3_errorf("%s: head_dim %d must be even for RoPE", name, c->head_dim);
    if (c->query_pre_attn_scalar <= 0) return g3_errorf("%s: query_pre_attn_scalar must be positive", name);
    if (c->eps <= 0) return g3_errorf("%s: rms_norm_eps must be positive", name);
    if (c->attn_softcap < 0 || c->final_softcap < 0) return g3_errorf("%s: softcaps must be >= 0", name);
    if (c->rope_global_base <= 1 || c->rope_local_base <= 1) return g3_errorf("%s: RoPE bases must be > 1", name);
    if (c->bos < 0 || c->bos >= c->vocab || c->eos < 0 || c->eos >= c->vocab || c->pad < 0 || c->pad >= c->vocab)
        return g3_errorf("%s: bos/eos/pad ids %d/%d/%d outside the vocabulary of %d", name, c->bos, c->eos, c->pad, c->vocab);
    return 0;
}

int g3_config_load(G3Config *c, const char *path) {
    char p[4200];
    const char *file = path;
    size_t n = strlen(path);
    if (n < 5 || strcmp(path + n - 5, ".json") != 0) {
        if (g3_path_join(p, sizeof p, path, "config.json")) return -1;
        file = p;
    }
    size_t len;
    char *text = g3_read_file(file, &len);
    if (!text) return -1;
    int rc = g3_config_parse(c, text, len, file);
    free(text);
    return rc;
}

static void preset(G3Config *c, int V, int C, int F, int L, int NH, int NKV, int HD, int qpas, int W, int maxpos, double gscale) {
    memset(c, 0, sizeof *c);
    c->family = G3_GEMMA3;
    snprintf(c->arch, sizeof c->arch, "Gemma3ForCausalLM");
    c->vocab = V; c->hidden = C; c->inter = F; c->layers = L; c->heads = NH; c->kv_heads = NKV;
    c->head_dim = HD; c->query_pre_attn_scalar = (float)qpas; c->sliding_window = W; c->max_pos = maxpos;
    c->rope_global_base = 1e6; c->rope_local_base = 1e4; c->rope_global_scale = gscale; c->rope_local_scale = 1;
    c->eps = 1e-6f; c->qk_norm = 1; c->act = G3_GELU_TANH; c->bos = 2; c->eos = 1; c->pad = 0; c->dtype = G3_BF16;
    for (int i = 0; i < L; i++) c->sliding[i] = (i + 1) % 6 != 0;
}

int g3_config_preset(G3Config *c, const char *name) {
    if (!strcmp(name, "270m")) preset(c, 262144, 640, 2048, 18, 4, 1, 256, 256, 512, 32768, 1);
    else if (!strcmp(name, "1b")) preset(c, 262144, 1152, 6912, 26, 4, 1, 256, 256, 512, 32768, 1);
    else if (!strcmp(name, "4b")) preset(c, 262208, 2560, 10240, 34, 8, 4, 256, 256, 1024, 131072, 8);
    else if (!strcmp(name, "12b")) preset(c, 262208, 3840, 15360, 48, 16, 8, 256, 256, 1024, 131072, 8);
    else if (!strcmp(name, "27b")) preset(c, 262208, 5376, 21504, 62, 32, 16, 128, 168, 1024, 131072, 8);
    else if (!strcmp(name, "tiny")) preset(c, 1024, 96, 256, 6, 4, 2, 32, 32, 8, 32768, 1);
    else if (!strcmp(name, "stories")) {
        // From-scratch TinyStories on a CPU: the real 262,144-token vocabulary (the tokenizer is
        // not remapped) with a narrow, shallow body. The tied embedding is 33.6M of ~34.5M
        // parameters and the output projection dominates the FLOPs (2*V*C per token each way).
        preset(c, 262144, 128, 512, 4, 2, 1, 64, 64, 128, 2048, 1);
        for (int i = 0; i < c->layers; i++) c->sliding[i] = (i + 1) % 4 != 0;
        c->dtype = G3_F32;
    } else return g3_errorf("unknown shape '%s' (270m, 1b, 4b, 12b, 27b, tiny, stories, or a config.json)", name);
    return 0;
}

int g3_config_write(const G3Config *c, const char *path) {
    char buf[16384];
    int n = 0;
#define P(...) n += snprintf(buf + n, sizeof buf - (size_t)n, __VA_ARGS__)
    int g2 = c->family == G3_GEMMA2;
    P("{\n  \"architectures\": [\"%s\"],\n", g2 ? "Gemma2ForCausalLM" : "Gemma3ForCausalLM");
    P("  \"model_type\": \"%s\",\n", g2 ? "gemma2" : "gemma3_text");
    P("  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", c->vocab, c->hidden, c->inter);
    P("  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n", c->layers, c->heads, c->kv_heads);
    P("  \"head_dim\": %d,\n  \"query_pre_attn_scalar\": %.9g,\n  \"sliding_window\": %d,\n", c->head_dim, c->query_pre_attn_scalar, c->sliding_window);
    P("  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": %.9g,\n", c->max_pos, c->eps);
    P("  \"rope_theta\": %.17g,\n", c->rope_global_base);
    if (!g2) P("  \"rope_local_base_freq\": %.17g,\n", c->rope_local_base);
    if (c->rope_global_scale != 1) P("  \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %.17g},\n", c->rope_global_scale);
    else P("  \"rope_scaling\": null,\n");
    if (c->attn_softcap > 0) P("  \"attn_logit_softcapping\": %.9g,\n", c->attn_softcap); else P("  \"attn_logit_softcapping\": null,\n");
    if (c->final_softcap > 0) P("  \"final_logit_softcapping\": %.9g,\n", c->final_softcap); else P("  \"final_logit_softcapping\": null,\n");
    P("  \"layer_types\": [");
    for (int i = 0; i < c->layers; i++) P("%s\"%s\"", i ? ", " : "", c->sliding[i] ? "sliding_attention" : "full_attention");
    P("],\n");
    P("  \"hidden_activation\": \"%s\",\n", c->act == G3_GELU_ERF ? "gelu" : "gelu_pytorch_tanh");
    P("  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"pad_token_id\": %d,\n", c->bos, c->eos, c->pad);
    P("  \"tie_word_embeddings\": true,\n  \"attention_bias\": false,\n");
    P("  \"torch_dtype\": \"%s\"\n}\n", c->dtype == G3_BF16 ? "bfloat16" : c->dtype == G3_F16 ? "float16" : "float32");
#undef P
    if (n >= (int)sizeof buf) return g3_errorf("%s: config too large", path);
    return g3_write_file_atomic(path, buf, (size_t)n);
}
