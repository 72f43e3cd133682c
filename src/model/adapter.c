// adapter.c: loading a PEFT LoRA adapter (adapter.h): its config, then its tensors matched by
// name suffix to the model's linear layers, checked and converted to f32.
#include "adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"
#include "../io/safetensors.h"

// The seven linear layers LoRA may adapt: PEFT's module name, the block it sits in, its role.
static const struct {
    const char *name, *block;
    G3LayerRole role;
} TARGETS[] = {
    {"q_proj", "self_attn", W_Q},   {"k_proj", "self_attn", W_K}, {"v_proj", "self_attn", W_V},
    {"o_proj", "self_attn", W_O},   {"gate_proj", "mlp", W_GATE}, {"up_proj", "mlp", W_UP},
    {"down_proj", "mlp", W_DOWN},
};
enum { NTARGETS = (int)(sizeof TARGETS / sizeof TARGETS[0]) };

static int target_index(const char *s, size_t n) {
    for (int i = 0; i < NTARGETS; i++)
        if (strlen(TARGETS[i].name) == n && !memcmp(TARGETS[i].name, s, n)) return i;
    return -1;
}

// ---- adapter_config.json ----

// A member that must be false, null or absent for us to apply the adapter as PEFT would.
static int refuse_if_set(const char *path, const JsonNode *root, const char *key, const char *why) {
    const JsonNode *n = json_get(root, key);
    if (!n || n->type == JSON_NULL || n->type == JSON_FALSE) return 0;
    if ((n->type == JSON_ARRAY || n->type == JSON_OBJECT) && n->count == 0) return 0;
    return g3_errorf("%s: \"%s\" is set: %s", path, key, why);
}

// Reads r, lora_alpha, use_rslora and checks everything else the adapter asks of us; fills
// want[t] = 1 for each target the config lists (all 1 when target_modules is a pattern).
static int parse_config(G3Adapter *a, const char *path, int want[NTARGETS]) {
    Json j;
    if (json_parse_file(&j, path)) return -1;
    const JsonNode *root = json_root(&j), *n;
    int rc = -1;
    if (root->type != JSON_OBJECT) { g3_errorf("%s: not a JSON object", path); goto out; }
    if ((n = json_get(root, "peft_type")) && !json_is_null(n) && (!json_is_string(n) || strcmp(n->str, "LORA"))) {
        g3_errorf("%s: peft_type is %s%s%s, not \"LORA\": only LoRA adapters are supported", path, json_is_string(n) ? "\"" : "",
                  json_is_string(n) ? n->str : "not a string", json_is_string(n) ? "\"" : "");
        goto out;
    }
    // PEFT's LoraConfig defaults (r = 8, lora_alpha = 8) for members an old writer left out
    a->r = 8;
    a->alpha = 8;
    if ((n = json_get(root, "r")) && (!json_is_int(n) || n->num < 1 || n->num > 65536)) {
        g3_errorf("%s: \"r\" must be an integer in [1, 65536]", path);
        goto out;
    }
    if (n) a->r = (int)n->num;
    if ((n = json_get(root, "lora_alpha")) && (!json_is_number(n) || !isfinite(n->num))) {
        g3_errorf("%s: \"lora_alpha\" must be a finite number", path);
        goto out;
    }
    if (n) a->alpha = n->num;
    if ((n = json_get(root, "use_rslora")) && !json_is_null(n) && !json_is_bool(n)) {
        g3_errorf("%s: \"use_rslora\" must be true or false", path);
        goto out;
    }
    a->rslora = n && n->type == JSON_TRUE;
    a->scale = (float)(a->rslora ? a->alpha / sqrt((double)a->r) : a->alpha / a->r);
    // fan_in_fan_out stores A and B transposed (GPT-2's Conv1D layers); Gemma's are nn.Linear
    if (refuse_if_set(path, root, "fan_in_fan_out", "Gemma's linear layers are never stored transposed (it must be false)") ||
        refuse_if_set(path, root, "modules_to_save", "fully trained copies of modules are not supported") ||
        refuse_if_set(path, root, "use_dora", "DoRA adapters are not supported") ||
        refuse_if_set(path, root, "lora_bias", "LoRA biases are not supported") ||
        refuse_if_set(path, root, "rank_pattern", "per-module ranks are not supported") ||
        refuse_if_set(path, root, "alpha_pattern", "per-module alphas are not supported") ||
        refuse_if_set(path, root, "trainable_token_indices", "trainable token embeddings are not supported"))
        goto out;
    if ((n = json_get(root, "bias")) && !json_is_null(n) && (!json_is_string(n) || strcmp(n->str, "none"))) {
        g3_errorf("%s: \"bias\" must be \"none\": trained biases are not supported (Gemma's linear layers have none)", path);
        goto out;
    }
    n = json_get(root, "target_modules");
    if (!n || json_is_string(n)) {
        // a regular expression or "all-linear": the tensors present say which modules are adapted
        for (int t = 0; t < NTARGETS; t++) want[t] = 1;
    } else if (n->type == JSON_ARRAY) {
        for (int t = 0; t < NTARGETS; t++) want[t] = 0;
        JSON_FOREACH(it, n) {
            int t = json_is_string(it) ? target_index(it->str, it->str_len) : -1;
            if (t < 0) {
                g3_errorf("%s: target_modules lists %s%s%s, which is not a linear layer of a Gemma decoder layer (q_proj, k_proj, "
                          "v_proj, o_proj, gate_proj, up_proj, down_proj)",
                          path, json_is_string(it) ? "'" : "", json_is_string(it) ? it->str : "a non-string", json_is_string(it) ? "'" : "");
                goto out;
            }
            want[t] = 1;
        }
    } else {
        g3_errorf("%s: \"target_modules\" must be a list of module names or a string", path);
        goto out;
    }
    rc = 0;
out:
    json_free(&j);
    return rc;
}

// ---- tensor names ----

// Matches "layers.{i}.{block}.{module}.lora_{A,B}.weight" at the end of name, after a prefix
// that is empty or ends in "model." (PEFT's "base_model.model.model.", a multimodal model's
// "...language_model." or "...language_model.model."): a vision tower's layers
// ("...vision_model.encoder.layers.0.self_attn.q_proj...") are not the decoder's and stay
// unmatched. Sets layer, target and which (0 A, 1 B). 1 on a match.
static int parse_key(const char *name, int *layer, int *target, int *which) {
    for (const char *p = strstr(name, "layers."); p; p = strstr(p + 1, "layers.")) {
        if (p != name && (p - name < 6 || memcmp(p - 6, "model.", 6))) continue;
        const char *s = p + strlen("layers.");
        if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9')) continue;
        long l = 0;
        while (*s >= '0' && *s <= '9' && l < 1000000) l = l * 10 + (*s++ - '0');
        if (*s++ != '.') continue;
        const char *blk = s, *dot = strchr(blk, '.');
        if (!dot) continue;
        const char *mod = dot + 1, *dot2 = strchr(mod, '.');
        if (!dot2) continue;
        int t = target_index(mod, (size_t)(dot2 - mod));
        if (t < 0 || strlen(TARGETS[t].block) != (size_t)(dot - blk) || memcmp(TARGETS[t].block, blk, (size_t)(dot - blk))) continue;
        if (!strcmp(dot2, ".lora_A.weight")) *which = 0;
        else if (!strcmp(dot2, ".lora_B.weight")) *which = 1;
        else continue;
        *layer = (int)l;
        *target = t;
        return 1;
    }
    return 0;
}

// "[4, 96]"
static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape) {
    out[0] = 0;
    for (int d = 0; d < ndim; d++) snprintf(out + strlen(out), cap - strlen(out), "%s%lld", d ? ", " : "", (long long)shape[d]);
}

// Converts one matched tensor to f32 into its module, after checking type, shape and values.
static int take_tensor(G3Adapter *a, const G3Model *m, const char *file, const STTensor *st, int l, int t, int which) {
    const G3LayerRole role = TARGETS[t].role;
    const G3Tensor *w = g3_layer_tensor(m, l, role);
    const int64_t out = w->shape[0], in = w->shape[1];
    const int64_t want[2] = {which ? out : a->r, which ? a->r : in};
    G3Weight *dst = which ? &a->mod[l][role].B : &a->mod[l][role].A;
    if (dst->data) return g3_errorf("%s: tensor '%s' adapts the same weight as another key (two prefixes?)", file, st->name);
    const G3TypeTraits *tt = g3_type(st->dtype);
    if (!tt || !tt->to_f32 || !(st->dtype == G3_F32 || st->dtype == G3_BF16 || st->dtype == G3_F16 || st->dtype == G3_F64))
        return g3_errorf("%s: tensor '%s' has type %s; LoRA tensors must be F32, BF16, F16 or F64", file, st->name, g3_dtype_name(st->dtype));
    if (st->ndim != 2 || st->shape[0] != want[0] || st->shape[1] != want[1]) {
        char got[96], exp[64];
        shape_str(got, sizeof got, st->ndim, st->shape);
        shape_str(exp, sizeof exp, 2, want);
        return g3_errorf("%s: tensor '%s' has shape [%s] but r = %d and the model's %s [%lld, %lld] need [%s]", file, st->name, got,
                         a->r, w->name, (long long)out, (long long)in, exp);
    }
    const int64_t n = want[0] * want[1];
    float *f = g3_malloc_aligned((size_t)n * sizeof(float));
    if (!f) return -1;
    g3_to_f32(f, st->data, st->dtype, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(f[i])) {
            const char *what = isnan(f[i]) ? "NaN" : "an infinity";
            g3_free_aligned(f);
            return g3_errorf("%s: tensor '%s' holds %s at [%lld, %lld]", file, st->name, what, (long long)(i / want[1]),
                             (long long)(i % want[1]));
        }
    *dst = (G3Weight){.type = G3_F32, .rows = want[0], .cols = want[1], .row_bytes = want[1] * (int64_t)sizeof(float), .data = f,
                      .mem = G3_MEM_HOST};
    return 0;
}

// Reads adapter_model.safetensors into a->mod: every key matched, every module whole.
static int load_tensors(G3Adapter *a, const G3Model *m, const char *file, const int want[NTARGETS]) {
    STSet st;
    if (st_open(&st, file)) return -1;
    int rc = -1, unmatched = 0;
    char list[512] = "";
    for (int i = 0; i < st.ntensors; i++) {
        const STTensor *t = &st.tensors[i];
        int l, tg, which;
        if (!parse_key(t->name, &l, &tg, &which)) {
            // gather them all: one message naming every key we would otherwise ignore
            if (unmatched++ < 4) snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", unmatched > 1 ? ", " : "", t->name);
            continue;
        }
        if (l >= m->cfg.layers) {
            g3_errorf("%s: tensor '%s' adapts layer %d but the model has %d layers", file, t->name, l, m->cfg.layers);
            goto out;
        }
        if (!want[tg]) {
            g3_errorf("%s: tensor '%s' adapts %s, which adapter_config.json's target_modules does not list", file, t->name,
                      TARGETS[tg].name);
            goto out;
        }
        if (take_tensor(a, m, file, t, l, tg, which)) goto out;
    }
    if (unmatched) {
        g3_errorf("%s: %d key%s match%s no LoRA weight of a decoder layer (layers.N.self_attn|mlp.X_proj.lora_A|B.weight): %s%s", file,
                  unmatched, unmatched > 1 ? "s" : "", unmatched > 1 ? "" : "es", list, unmatched > 4 ? ", ..." : "");
        goto out;
    }
    // A without B (or B without A) is half an adapter: refuse it rather than skip it
    for (int l = 0; l < m->cfg.layers; l++)
        for (int t = 0; t < NTARGETS; t++) {
            const G3LoraModule *md = &a->mod[l][TARGETS[t].role];
            if (!md->A.data != !md->B.data) {
                g3_errorf("%s: layers.%d.%s.%s has lora_%s but no lora_%s", file, l, TARGETS[t].block, TARGETS[t].name,
                          md->A.data ? "A" : "B", md->A.data ? "B" : "A");
                goto out;
            }
            if (md->A.data) {
                a->nmodules++;
                if (md->B.rows > a->max_out) a->max_out = (int)md->B.rows;
            }
        }
    if (!a->nmodules) { g3_errorf("%s: holds no LoRA tensors", file); goto out; }
    rc = 0;
out:
    st_close(&st);
    return rc;
}

G3Adapter *g3_adapter_load(const char *dir, const G3Model *m) {
    char cfg[4200], file[4200];
    if (g3_path_join(cfg, sizeof cfg, dir, "adapter_config.json") || g3_path_join(file, sizeof file, dir, "adapter_model.safetensors")) return NULL;
    if (!g3_file_exists(cfg)) {
        g3_errorf("%s: no adapter_config.json (a PEFT adapter folder holds adapter_config.json and adapter_model.safetensors)", dir);
        return NULL;
    }
    if (!g3_file_exists(file)) {
        char bin[4200];
        int has_bin = !g3_path_join(bin, sizeof bin, dir, "adapter_model.bin") && g3_file_exists(bin);
        g3_errorf("%s: no adapter_model.safetensors%s", dir, has_bin ? " (adapter_model.bin, a pickle, is not read: save with safe_serialization=True)" : "");
        return NULL;
    }
    G3Adapter *a = g3_calloc(1, sizeof *a);
    if (!a) return NULL;
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    a->layers = m->cfg.layers;
    int want[NTARGETS];
    if (parse_config(a, cfg, want) || load_tensors(a, m, file, want)) {
        g3_adapter_free(a);
        return NULL;
    }
    return a;
}

void g3_adapter_free(G3Adapter *a) {
    if (!a) return;
    for (int l = 0; l < a->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            g3_free_aligned((void *)a->mod[l][r].A.data);
            g3_free_aligned((void *)a->mod[l][r].B.data);
        }
    free(a);
}

void g3_lora_merge_f32(float *w, const G3LoraModule *mod, float scale) {
    const int64_t out = mod->B.rows, in = mod->A.cols, r = mod->A.rows;
    const float *A = mod->A.data, *B = mod->B.data;
#pragma omp parallel for schedule(static) if (out * in > 65536)
    for (int64_t o = 0; o < out; o++)
        for (int64_t i = 0; i < in; i++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)B[o * r + k] * A[k * in + i];
            w[o * in + i] += (float)(scale * s);
        }
}

// ---- saving (PEFT's format) ----

int g3_adapter_save(const G3Adapter *a, const char *dir, const char *base_model, double dropout) {
    if (g3_mkdir_p(dir)) return -1;
    STWriter w = {0};
    char path[4200], name[256], targets[256] = "";
    int rc = -1, have[NTARGETS] = {0};
    for (int l = 0; l < a->layers; l++)
        for (int t = 0; t < NTARGETS; t++) {
            const G3LoraModule *md = g3_adapter_module(a, l, TARGETS[t].role);
            if (!md) continue;
            have[t] = 1;
            const G3Weight *f[2] = {&md->A, &md->B};
            for (int k = 0; k < 2; k++) {
                int64_t shape[2] = {f[k]->rows, f[k]->cols};
                snprintf(name, sizeof name, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l, TARGETS[t].block,
                         TARGETS[t].name, k ? 'B' : 'A');
                if (st_writer_add(&w, name, G3_F32, 2, shape, f[k]->data)) goto out;
            }
        }
    for (int t = 0, first = 1; t < NTARGETS; t++)
        if (have[t]) {
            snprintf(targets + strlen(targets), sizeof targets - strlen(targets), "%s\"%s\"", first ? "" : ", ", TARGETS[t].name);
            first = 0;
        }
    if (g3_path_join(path, sizeof path, dir, "adapter_model.safetensors") || st_writer_write(&w, path, NULL)) goto out;
    // the config last: a folder with adapter_config.json holds a complete adapter
    char *js = NULL;
    size_t jn = 0;
    FILE *f = open_memstream(&js, &jn);
    if (!f) { g3_errorf("out of memory"); goto out; }
    fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": ");
    json_write_str(f, base_model ? base_model : "", base_model ? strlen(base_model) : 0);
    fprintf(f, ",\n  \"r\": %d,\n  \"lora_alpha\": %.17g,\n  \"lora_dropout\": %.17g,\n  \"use_rslora\": %s,\n  \"target_modules\": [%s],\n"
               "  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
               "  \"modules_to_save\": null,\n  \"use_dora\": false,\n  \"layers_to_transform\": null,\n  \"layers_pattern\": null\n}\n",
            a->r, a->alpha, dropout, a->rslora ? "true" : "false", targets);
    fclose(f);
    rc = g3_path_join(path, sizeof path, dir, "adapter_config.json") || g3_write_file_atomic(path, js, jn) ? -1 : 0;
    free(js);
out:
    if (rc) g3_error_prefix("saving the adapter to %s", dir);
    st_writer_free(&w);
    return rc;
}
