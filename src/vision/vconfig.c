// vconfig.c: the vision part of a Gemma3ForConditionalGeneration config.json (vision_config,
// mm_tokens_per_image, image_token_index, boi/eoi_token_index; the text width from
// text_config) and the image processor's preprocessor_config.json. Defaults are
// transformers' (SiglipVisionConfig, Gemma3Config, Gemma3ImageProcessor) where a field is absent.
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"
#include "vision.h"

// An integer field in [lo, hi]; absent or null: def. The message names the object and field.
static int vint(const JsonNode *o, const char *in, const char *key, int def, int lo, int hi, int *out, const char *name) {
    const JsonNode *n = json_get(o, key);
    if (json_is_null(n)) { *out = def; return 0; }
    int64_t v;
    int rc = json_int_in(n, lo, hi, &v);
    if (rc == -1) return g3_errorf("%s: field \"%s%s\" must be an integer", name, in, key);
    if (rc == -2) return g3_errorf("%s: field \"%s%s\" = %.40s is out of range [%d, %d]", name, in, key, n->str, lo, hi);
    *out = (int)v;
    return 0;
}

static int vnum(const JsonNode *o, const char *in, const char *key, double def, double lo, double hi, double *out, const char *name) {
    const JsonNode *n = json_get(o, key);
    if (json_is_null(n)) { *out = def; return 0; }
    if (!json_is_number(n) || !isfinite(n->num)) return g3_errorf("%s: field \"%s%s\" must be a finite number", name, in, key);
    if (n->num < lo || n->num > hi) return g3_errorf("%s: field \"%s%s\" = %.40s is out of range [%g, %g]", name, in, key, n->str, lo, hi);
    *out = n->num;
    return 0;
}

int g3_vision_config_parse(G3VisionConfig *vc, const char *text, size_t len, const char *name) {
    memset(vc, 0, sizeof *vc);
    Json j;
    if (json_parse(&j, text, len)) return g3_error_prefix("%s", name);
    int rc = -1;
    const JsonNode *root = json_root(&j), *v = json_get(root, "vision_config"), *tc = json_get(root, "text_config");
    if (root->type != JSON_OBJECT) { g3_errorf("%s: not a JSON object", name); goto out; }
    if (json_is_null(v)) {
        g3_errorf("%s: the model has no vision tower (no \"vision_config\"): images need a Gemma 3 4B, 12B or 27B model", name);
        rc = 1;
        goto out;
    }
    if (v->type != JSON_OBJECT) { g3_errorf("%s: \"vision_config\" must be an object", name); goto out; }
    if (!tc || tc->type != JSON_OBJECT) { g3_errorf("%s: a vision model's config needs a \"text_config\" object", name); goto out; }
    double eps;
    const char *in = "vision_config.";
    if (vint(v, in, "hidden_size", 768, 1, 1 << 16, &vc->hidden, name) || vint(v, in, "intermediate_size", 3072, 1, 1 << 20, &vc->inter, name) ||
        vint(v, in, "num_hidden_layers", 12, 1, 1024, &vc->layers, name) || vint(v, in, "num_attention_heads", 12, 1, 1024, &vc->heads, name) ||
        vint(v, in, "image_size", 224, 1, 1 << 14, &vc->image_size, name) || vint(v, in, "patch_size", 16, 1, 1 << 14, &vc->patch, name) ||
        vnum(v, in, "layer_norm_eps", 1e-6, 0, 1, &eps, name))
        goto out;
    int ch;
    if (vint(v, in, "num_channels", 3, 1, 64, &ch, name)) goto out;
    if (ch != 3) { g3_errorf("%s: vision_config.num_channels %d: only RGB (3) images are supported", name, ch); goto out; }
    vc->eps = (float)eps;
    const JsonNode *act = json_get(v, "hidden_act");
    if (json_is_string(act) && !strcmp(act->str, "gelu")) vc->act_erf = 1;
    else if (!json_is_null(act) && !(json_is_string(act) && (!strcmp(act->str, "gelu_pytorch_tanh") || !strcmp(act->str, "gelu_new") || !strcmp(act->str, "gelu_tanh")))) {
        g3_errorf("%s: vision_config.hidden_act must be \"gelu_pytorch_tanh\" or \"gelu\"", name);
        goto out;
    }
    const JsonNode *head = json_get(v, "vision_use_head");
    if (head && head->type == JSON_TRUE) { g3_errorf("%s: vision_config.vision_use_head: SigLIP's pooling head is not used by Gemma 3 and not supported", name); goto out; }
    if (vint(root, "", "mm_tokens_per_image", 256, 1, 1 << 20, &vc->tokens, name) ||
        vint(root, "", "image_token_index", 262144, 0, INT_MAX, &vc->image_token, name) ||
        vint(root, "", "boi_token_index", 255999, 0, INT_MAX, &vc->boi, name) ||
        vint(root, "", "eoi_token_index", 256000, 0, INT_MAX, &vc->eoi, name) ||
        vint(tc, "text_config.", "hidden_size", 0, 1, 1 << 16, &vc->text_hidden, name))
        goto out;
    if (!vc->text_hidden) { g3_errorf("%s: missing \"text_config.hidden_size\"", name); goto out; }
    // transformers' newer name for the placeholder id
    if (json_is_null(json_get(root, "image_token_index")) && vint(root, "", "image_token_id", 262144, 0, INT_MAX, &vc->image_token, name)) goto out;
    if (vc->hidden % vc->heads) { g3_errorf("%s: vision_config.hidden_size %d is not a multiple of num_attention_heads %d", name, vc->hidden, vc->heads); goto out; }
    if (vc->image_size % vc->patch) { g3_errorf("%s: vision_config.image_size %d is not a multiple of patch_size %d", name, vc->image_size, vc->patch); goto out; }
    const int side = vc->image_size / vc->patch, ts = (int)lround(sqrt((double)vc->tokens));
    if (ts * ts != vc->tokens || side % ts) {
        g3_errorf("%s: mm_tokens_per_image %d must be a square whose side divides the %d patches per side", name, vc->tokens, side);
        goto out;
    }
    for (int c = 0; c < 3; c++) vc->mean[c] = vc->std[c] = 0.5f;
    vc->rescale = 1.0 / 255.0;
    vc->pas_min_crop = 256, vc->pas_max_crops = 4, vc->pas_min_ratio = 1.2;
    rc = 0;
out:
    json_free(&j);
    return rc;
}

int g3_vision_config_load(G3VisionConfig *vc, const char *dir) {
    char p[4200];
    const char *file = dir;
    size_t n = strlen(dir);
    if (n < 5 || strcmp(dir + n - 5, ".json") != 0) {
        if (g3_path_join(p, sizeof p, dir, "config.json")) return -1;
        file = p;
    }
    size_t len;
    char *text = g3_read_file(file, &len);
    if (!text) return -1;
    int rc = g3_vision_config_parse(vc, text, len, file);
    free(text);
    if (rc == 0) rc = g3_vision_preproc_load(vc, dir);
    return rc;
}

// A list of three numbers (image_mean / image_std), or one number for all channels.
static int triple(const JsonNode *o, const char *key, float *out, const char *name) {
    const JsonNode *n = json_get(o, key);
    if (json_is_null(n)) return 0;
    if (json_is_number(n) && isfinite(n->num)) { out[0] = out[1] = out[2] = (float)n->num; return 0; }
    if (n->type != JSON_ARRAY || n->count != 3) return g3_errorf("%s: \"%s\" must be a list of 3 numbers", name, key);
    for (int c = 0; c < 3; c++) {
        const JsonNode *x = json_at(n, (size_t)c);
        if (!json_is_number(x) || !isfinite(x->num)) return g3_errorf("%s: \"%s\"[%d] must be a finite number", name, key, c);
        out[c] = (float)x->num;
    }
    return 0;
}

int g3_vision_preproc_load(G3VisionConfig *vc, const char *dir) {
    char p[4200];
    size_t n = strlen(dir);
    if (n >= 5 && !strcmp(dir + n - 5, ".json")) return 0;  // a config file alone: defaults
    if (g3_path_join(p, sizeof p, dir, "preprocessor_config.json")) return -1;
    if (!g3_file_exists(p)) return 0;
    Json j;
    if (json_parse_file(&j, p)) return g3_error_prefix("%s", p);
    int rc = -1;
    const JsonNode *root = json_root(&j), *size = json_get(root, "size");
    if (root->type != JSON_OBJECT) { g3_errorf("%s: not a JSON object", p); goto out; }
    if (triple(root, "image_mean", vc->mean, p) || triple(root, "image_std", vc->std, p) ||
        vnum(root, "", "rescale_factor", vc->rescale, 0, 1, &vc->rescale, p))
        goto out;
    for (int c = 0; c < 3; c++)
        if (!(vc->std[c] != 0)) { g3_errorf("%s: image_std[%d] must not be 0", p, c); goto out; }
    const JsonNode *pas = json_get(root, "do_pan_and_scan");
    if (!json_is_null(pas) && !json_is_bool(pas)) { g3_errorf("%s: \"do_pan_and_scan\" must be true, false or null", p); goto out; }
    if (json_is_bool(pas)) vc->pas_on = pas->type == JSON_TRUE;
    if (vint(root, "", "pan_and_scan_min_crop_size", vc->pas_min_crop, 1, 1 << 16, &vc->pas_min_crop, p) ||
        vint(root, "", "pan_and_scan_max_num_crops", vc->pas_max_crops, 1, 64, &vc->pas_max_crops, p) ||
        vnum(root, "", "pan_and_scan_min_ratio_to_activate", vc->pas_min_ratio, 1, 1e6, &vc->pas_min_ratio, p))
        goto out;
    if (size && size->type == JSON_OBJECT) {
        int h, w;
        if (vint(size, "size.", "height", vc->image_size, 1, 1 << 14, &h, p) || vint(size, "size.", "width", vc->image_size, 1, 1 << 14, &w, p)) goto out;
        if (h != vc->image_size || w != vc->image_size) {
            g3_errorf("%s: size %dx%d differs from the vision tower's image_size %d", p, w, h, vc->image_size);
            goto out;
        }
    }
    rc = 0;
out:
    json_free(&j);
    return rc;
}
