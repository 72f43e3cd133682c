// sae.c: loading, saving, encoding and decoding sparse autoencoders (sae.h). Encoding is one
// GEMM (kernels' g3_sgemm) and a row-wise activation; decoding sums only the active
// features' decoder rows, which at Gemma Scope's L0 (tens of a width of thousands) is a
// small fraction of a dense product.
#include "sae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"
#include "../io/npz_read.h"
#include "../io/safetensors.h"
#include "../kernels/kernels.h"
#include "intervene.h"

int g3_sae_alloc(G3Sae *s, int d_model, int d_sae) {
    memset(s, 0, sizeof *s);
    if (d_model < 1 || d_sae < 1) return g3_errorf("SAE of d_model %d x d_sae %d: both must be >= 1", d_model, d_sae);
    s->d_model = d_model;
    s->d_sae = d_sae;
    size_t DS;
    if (g3_mul_size((size_t)d_model, (size_t)d_sae, &DS) || DS > SIZE_MAX / 8) return g3_errorf("SAE too large");
    s->w_enc = g3_calloc(DS, sizeof(float));
    s->w_dec = g3_calloc(DS, sizeof(float));
    s->b_enc = g3_calloc((size_t)d_sae, sizeof(float));
    s->threshold = g3_calloc((size_t)d_sae, sizeof(float));
    s->b_dec = g3_calloc((size_t)d_model, sizeof(float));
    if (!s->w_enc || !s->w_dec || !s->b_enc || !s->threshold || !s->b_dec) {
        g3_sae_free(s);
        return g3_error_prefix("SAE of %d x %d", d_model, d_sae);
    }
    snprintf(s->format, sizeof s->format, "new");
    return 0;
}

void g3_sae_free(G3Sae *s) {
    free(s->w_enc);
    free(s->w_dec);
    free(s->b_enc);
    free(s->threshold);
    free(s->b_dec);
    memset(s, 0, sizeof *s);
}

// ---- loading ----

// The five tensors by role, in both spellings (Gemma Scope 2: w_enc; Gemma Scope 1, SAELens: W_enc).
enum { T_W_ENC, T_B_ENC, T_THRESHOLD, T_W_DEC, T_B_DEC, T_N };
static const char *const NAMES[T_N][3] = {
    {"w_enc", "W_enc", NULL}, {"b_enc", "B_enc", NULL}, {"threshold", "log_threshold", NULL}, {"w_dec", "W_dec", NULL}, {"b_dec", "B_dec", NULL}};

typedef struct {
    int found, ndim, is_log;
    int64_t shape[8];
    const void *data;        // safetensors: in the mapping
    G3DType dtype;
    const G3NpyArray *npy;   // npz
} Found;

// Expected shape of each role; d_model and d_sae are taken from w_enc.
static int check_shapes(const Found *f, const char *file, int *D, int *S) {
    if (f[T_W_ENC].ndim != 2) return g3_errorf("%s: w_enc must be 2-D [d_model, d_sae]", file);
    if (f[T_W_ENC].shape[0] < 1 || f[T_W_ENC].shape[1] < 1 || f[T_W_ENC].shape[0] > (1 << 20) || f[T_W_ENC].shape[1] > (1 << 26))
        return g3_errorf("%s: w_enc has an unusable shape [%lld, %lld]", file, (long long)f[T_W_ENC].shape[0], (long long)f[T_W_ENC].shape[1]);
    *D = (int)f[T_W_ENC].shape[0];
    *S = (int)f[T_W_ENC].shape[1];
    const struct { int role, ndim; int64_t a, b; const char *want; } want[] = {
        {T_B_ENC, 1, *S, 0, "[d_sae]"}, {T_THRESHOLD, 1, *S, 0, "[d_sae]"}, {T_W_DEC, 2, *S, *D, "[d_sae, d_model]"}, {T_B_DEC, 1, *D, 0, "[d_model]"}};
    for (size_t i = 0; i < G3_ARRAY_LEN(want); i++) {
        const Found *t = &f[want[i].role];
        if (!t->found) continue;
        if (t->ndim != want[i].ndim || t->shape[0] != want[i].a || (want[i].ndim == 2 && t->shape[1] != want[i].b)) {
            char got[64];
            int n = snprintf(got, sizeof got, "[");
            for (int d = 0; d < t->ndim && d < 4; d++) n += snprintf(got + n, sizeof got - (size_t)n, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
            snprintf(got + n, sizeof got - (size_t)n, "]");
            return g3_errorf("%s: %s has shape %s but w_enc [%d, %d] needs %s (d_model %d, d_sae %d)", file, NAMES[want[i].role][0], got, *D, *S,
                             want[i].want, *D, *S);
        }
    }
    return 0;
}

// The hook name an SAE config names, if it is one of ours: SAELens' hook_name
// ("blocks.12.hook_resid_post"), or a Hub-style "model.layers.12.output" / "...layers.12"
// (the residual stream after layer 12).
static void config_site(char *out, size_t cap, const char *s) {
    G3HookSite site;
    int layer;
    if (g3_hook_parse(s, &site, &layer) == 0) { snprintf(out, cap, "%s", s); return; }
    g3_error_clear();
    const char *p = strstr(s, "layers.");
    if (!p) return;
    char *end;
    long l = strtol(p + 7, &end, 10);
    if (end == p + 7 || l < 0 || l > 100000) return;
    if (!*end || !strcmp(end, ".output")) snprintf(out, cap, "blocks.%ld.hook_resid_post", l);
}

// config.json / cfg.json: architecture, sizes, site, SAELens' options. Missing file: defaults.
static int read_config(G3Sae *s, const char *path, int *cfg_D, int *cfg_S) {
    *cfg_D = *cfg_S = 0;
    if (!g3_file_exists(path)) return 0;
    Json j;
    if (json_parse_file(&j, path)) return -1;
    const JsonNode *r = json_root(&j);
    int rc = 0;
    if (r->type != JSON_OBJECT) { rc = g3_errorf("%s: not a JSON object", path); goto out; }
    const JsonNode *a = json_get(r, "architecture");
    if (!a) a = json_get(r, "activation_fn");
    if (json_is_string(a)) {
        if (!strcmp(a->str, "jumprelu") || !strcmp(a->str, "jump_relu") || !strcmp(a->str, "JumpReLU")) s->kind = G3_SAE_JUMPRELU;
        else if (!strcmp(a->str, "standard") || !strcmp(a->str, "relu")) s->kind = G3_SAE_RELU;
        else if (!strcmp(a->str, "topk")) s->kind = G3_SAE_TOPK;
        else { rc = g3_errorf("%s: architecture '%s' is not supported (jumprelu, standard/relu, topk are)", path, a->str); goto out; }
    }
    const JsonNode *k = json_get(r, "k");
    const JsonNode *kw = json_get(r, "activation_fn_kwargs");
    if (!k && kw && kw->type == JSON_OBJECT) k = json_get(kw, "k");
    int64_t v;
    if (k && json_int_in(k, 1, 1 << 26, &v) == 0) s->k = (int)v;
    if (s->kind == G3_SAE_TOPK && s->k < 1) { rc = g3_errorf("%s: a topk SAE needs an integer 'k' >= 1", path); goto out; }
    const JsonNode *ab = json_get(r, "apply_b_dec_to_input");
    s->apply_b_dec_to_input = ab && ab->type == JSON_TRUE;
    const char *dkeys[] = {"d_in", "d_model"}, *skeys[] = {"d_sae", "width"};
    for (int i = 0; i < 2; i++) {
        const JsonNode *d = json_get(r, dkeys[i]), *w = json_get(r, skeys[i]);
        if (d && json_int_in(d, 1, INT32_MAX, &v) == 0) *cfg_D = (int)v;
        if (w && json_int_in(w, 1, INT32_MAX, &v) == 0) *cfg_S = (int)v;
    }
    const char *site_keys[] = {"hook_name", "hook_point", "hf_hook_point_in", "hook_point_in"};
    for (size_t i = 0; i < G3_ARRAY_LEN(site_keys) && !s->site[0]; i++) {
        const JsonNode *h = json_get(r, site_keys[i]);
        if (json_is_string(h)) config_site(s->site, sizeof s->site, h->str);
    }
out:
    json_free(&j);
    return rc;
}

static int finite_check(const float *p, size_t n, const char *file, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i])) return g3_errorf("%s: %s[%zu] is %g (every SAE value must be finite)", file, name, i, (double)p[i]);
    return 0;
}

static int load_tensors(G3Sae *s, const char *file, Found *f, const G3NpzFile *npz) {
    if (!f[T_W_ENC].found || !f[T_W_DEC].found || !f[T_B_ENC].found || !f[T_B_DEC].found)
        return g3_errorf("%s: no tensor '%s' (an SAE needs w_enc, b_enc, w_dec, b_dec and, for JumpReLU, threshold)", file,
                         !f[T_W_ENC].found ? "w_enc" : !f[T_W_DEC].found ? "w_dec" : !f[T_B_ENC].found ? "b_enc" : "b_dec");
    if (s->kind == G3_SAE_JUMPRELU && !f[T_THRESHOLD].found)
        return g3_errorf("%s: no tensor 'threshold' (a JumpReLU SAE needs w_enc, b_enc, threshold, w_dec, b_dec; a config.json / cfg.json "
                         "saying architecture 'standard' or 'topk' loads one without)", file);
    int D = 0, S = 0;
    if (check_shapes(f, file, &D, &S)) return -1;
    G3SaeKind kind = s->kind;
    int k = s->k, ab = s->apply_b_dec_to_input;
    char site[96];
    memcpy(site, s->site, sizeof site);
    if (g3_sae_alloc(s, D, S)) return -1;
    s->kind = kind;
    s->k = k;
    s->apply_b_dec_to_input = ab;
    memcpy(s->site, site, sizeof site);
    float *dst[T_N] = {s->w_enc, s->b_enc, s->threshold, s->w_dec, s->b_dec};
    for (int i = 0; i < T_N; i++) {
        if (!f[i].found) continue;
        int64_t numel = 1;
        for (int d = 0; d < f[i].ndim; d++) numel *= f[i].shape[d];
        if (npz) {
            if (g3_npz_read_f32(npz, f[i].npy, dst[i])) return -1;
        } else {
            if (!g3_type(f[i].dtype)->is_float) return g3_errorf("%s: %s is %s, not floating point", file, NAMES[i][0], g3_dtype_name(f[i].dtype));
            g3_to_f32(dst[i], f[i].data, f[i].dtype, (size_t)numel);
        }
        if (finite_check(dst[i], (size_t)numel, file, NAMES[i][f[i].is_log])) return -1;
        if (f[i].is_log)
            for (int64_t j = 0; j < numel; j++) dst[i][j] = expf(dst[i][j]);
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

int g3_sae_load(G3Sae *s, const char *path) {
    memset(s, 0, sizeof *s);
    char file[4200], cfg[4200], dir[4096];
    const char *fmt;
    snprintf(dir, sizeof dir, "%s", path);
    if (ends_with(path, ".npz") || ends_with(path, ".safetensors")) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        snprintf(file, sizeof file, "%s", path);
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        fmt = ends_with(path, ".npz") ? "gemma-scope-1" : !strcmp(base, "sae_weights.safetensors") ? "saelens" : "gemma-scope-2";
    } else {
        static const struct { const char *file, *fmt; } layouts[] = {
            {"params.safetensors", "gemma-scope-2"}, {"params.npz", "gemma-scope-1"}, {"sae_weights.safetensors", "saelens"}};
        fmt = NULL;
        for (size_t i = 0; i < G3_ARRAY_LEN(layouts) && !fmt; i++)
            if (!g3_path_join(file, sizeof file, path, layouts[i].file) && g3_file_exists(file)) fmt = layouts[i].fmt;
        if (!fmt) return g3_errorf("%s: no params.safetensors (Gemma Scope 2), params.npz (Gemma Scope 1) or sae_weights.safetensors (SAELens)", path);
    }
    if (g3_path_join(cfg, sizeof cfg, dir, strcmp(fmt, "saelens") ? "config.json" : "cfg.json")) return g3_errorf("%s: path too long", path);
    G3Sae meta = {0};
    int cD, cS;
    if (read_config(&meta, cfg, &cD, &cS)) return -1;
    Found f[T_N];
    memset(f, 0, sizeof f);
    int rc;
    if (!strcmp(fmt, "gemma-scope-1")) {
        G3NpzFile z;
        if (g3_npz_read_open(&z, file)) return -1;
        for (int i = 0; i < T_N; i++)
            for (int v = 0; v < 2 && !f[i].found; v++) {
                const G3NpyArray *a = g3_npz_find(&z, NAMES[i][v]);
                if (!a) continue;
                f[i] = (Found){1, a->ndim, i == T_THRESHOLD && v == 1, {0}, NULL, a->dtype, a};
                memcpy(f[i].shape, a->shape, sizeof a->shape);
            }
        *s = meta;
        rc = load_tensors(s, file, f, &z);
        g3_npz_read_close(&z);
    } else {
        STSet st;
        if (st_open(&st, file)) return -1;
        for (int i = 0; i < T_N; i++)
            for (int v = 0; v < 2 && !f[i].found; v++) {
                const STTensor *t = st_find(&st, NAMES[i][v]);
                if (!t) continue;
                f[i] = (Found){1, t->ndim, i == T_THRESHOLD && v == 1, {0}, t->data, t->dtype, NULL};
                memcpy(f[i].shape, t->shape, sizeof f[i].shape);
            }
        *s = meta;
        rc = load_tensors(s, file, f, NULL);
        st_close(&st);
    }
    if (rc) { g3_sae_free(s); return -1; }
    snprintf(s->format, sizeof s->format, "%s", fmt);
    if ((cD && cD != s->d_model) || (cS && cS != s->d_sae)) {
        int D = s->d_model, S = s->d_sae;
        g3_sae_free(s);
        return g3_errorf("%s: the config says d_model %d x width %d but the tensors are %d x %d", cfg, cD, cS, D, S);
    }
    if (s->kind == G3_SAE_TOPK && s->k > s->d_sae) {
        int k = s->k, S = s->d_sae;
        g3_sae_free(s);
        return g3_errorf("%s: k %d exceeds the width %d", cfg, k, S);
    }
    return 0;
}

int g3_sae_save(const G3Sae *s, const char *dir, const char *extra) {
    if (g3_mkdir_p(dir)) return -1;
    char p[4200];
    int64_t se[2] = {s->d_model, s->d_sae}, sd[2] = {s->d_sae, s->d_model}, ss[1] = {s->d_sae}, sm[1] = {s->d_model};
    STWriter w = {0};
    int rc = st_writer_add(&w, "w_enc", G3_F32, 2, se, s->w_enc) || st_writer_add(&w, "b_enc", G3_F32, 1, ss, s->b_enc) ||
             st_writer_add(&w, "threshold", G3_F32, 1, ss, s->threshold) || st_writer_add(&w, "w_dec", G3_F32, 2, sd, s->w_dec) ||
             st_writer_add(&w, "b_dec", G3_F32, 1, sm, s->b_dec);
    if (!rc && g3_path_join(p, sizeof p, dir, "params.safetensors")) rc = g3_errorf("%s: path too long", dir);
    if (!rc) rc = st_writer_write(&w, p, NULL);
    st_writer_free(&w);
    if (rc) return -1;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return g3_errorf("out of memory");
    static const char *arch[] = {"jump_relu", "relu", "topk"};
    fprintf(f, "{\n  \"architecture\": \"%s\",\n  \"d_model\": %d,\n  \"width\": %d,\n  \"hook_name\": ", arch[s->kind], s->d_model, s->d_sae);
    json_write_str(f, s->site, strlen(s->site));
    if (s->kind == G3_SAE_TOPK) fprintf(f, ",\n  \"k\": %d", s->k);
    if (extra && *extra) fprintf(f, ",\n  %s", extra);
    fprintf(f, "\n}\n");
    if (fclose(f)) { free(buf); return g3_errorf("out of memory"); }
    rc = g3_path_join(p, sizeof p, dir, "config.json") ? g3_errorf("%s: path too long", dir) : g3_write_file_atomic(p, buf, len);
    free(buf);
    return rc;
}

int g3_sae_check_site(const G3Sae *s, const G3Config *c, const char *name) {
    G3HookSite site;
    int layer;
    if (g3_hook_parse(name, &site, &layer)) return -1;
    if (layer >= c->layers) return g3_errorf("site %s: the model has %d layers (0..%d)", name, c->layers, c->layers - 1);
    int w = g3_site_width(c, site);
    if (w == 0) return g3_errorf("site %s: attention scores and patterns have no fixed width; an SAE reads a row site", name);
    if (w != s->d_model)
        return g3_errorf("the SAE reads %d floats per position (d_model) but site %s has %d for this model: an SAE of the wrong width for the site",
                         s->d_model, name, w);
    return 0;
}

// ---- encoding, decoding ----

// f's rows hold pre on entry; applies the activation in place.
static void activate(const G3Sae *s, float *f, int n) {
    const int S = s->d_sae;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *row = f + (size_t)r * S;
        for (int j = 0; j < S; j++) row[j] += s->b_enc[j];
        if (s->kind == G3_SAE_JUMPRELU)
            for (int j = 0; j < S; j++) row[j] = row[j] > s->threshold[j] ? row[j] : 0.0f;
        else if (s->kind == G3_SAE_RELU)
            for (int j = 0; j < S; j++) row[j] = row[j] > 0 ? row[j] : 0.0f;
        else {
            // TopK: the k-th largest by repeated selection over a small heap would be faster;
            // k is small next to S, so k passes of a running threshold suffice here.
            float cut = INFINITY;
            int kept = 0, idx_cut = -1;
            for (int t = 0; t < s->k; t++) {  // find the next largest below (cut, idx_cut) in (value desc, index asc) order
                int best = -1;
                for (int j = 0; j < S; j++) {
                    int below = row[j] < cut || (row[j] == cut && j > idx_cut);
                    if (below && (best < 0 || row[j] > row[best])) best = j;
                }
                if (best < 0) break;
                cut = row[best];
                idx_cut = best;
                kept++;
            }
            for (int j = 0; j < S; j++) {
                int in = kept && (row[j] > cut || (row[j] == cut && j <= idx_cut));
                row[j] = in && row[j] > 0 ? row[j] : 0.0f;
            }
        }
    }
}

int g3_sae_encode(const G3Sae *s, const float *x, int n, float *f) {
    if (n <= 0) return 0;
    const int D = s->d_model;
    float *xc = NULL;
    if (s->apply_b_dec_to_input) {
        if (!(xc = g3_malloc((size_t)n * D * sizeof *xc))) return -1;
        for (size_t i = 0; i < (size_t)n * D; i++) xc[i] = x[i] - s->b_dec[i % D];
        x = xc;
    }
    g3_sgemm(0, 0, n, s->d_sae, D, x, s->w_enc, f, 0);
    free(xc);
    activate(s, f, n);
    return 0;
}

void g3_sae_decode(const G3Sae *s, const float *f, int n, float *x) {
    const int D = s->d_model, S = s->d_sae;
    if (n > 0 && g3_sae_l0(f, n, S) > S / 16.0) {  // dense features (an untrained SAE): one GEMM
        g3_sgemm(0, 0, n, D, S, f, s->w_dec, x, 0);
        for (int r = 0; r < n; r++)
            for (int d = 0; d < D; d++) x[(size_t)r * D + d] += s->b_dec[d];
        return;
    }
#pragma omp parallel for schedule(static)
    for (int r = 0; r < n; r++) {
        float *out = x + (size_t)r * D;
        memcpy(out, s->b_dec, (size_t)D * sizeof *out);
        const float *fr = f + (size_t)r * S;
        for (int j = 0; j < S; j++) {
            if (fr[j] == 0.0f) continue;
            const float a = fr[j], *w = s->w_dec + (size_t)j * D;
            for (int d = 0; d < D; d++) out[d] += a * w[d];
        }
    }
}

double g3_sae_l0(const float *f, int n, int d_sae) {
    if (n <= 0) return 0;
    int64_t c = 0;
    for (size_t i = 0; i < (size_t)n * d_sae; i++) c += f[i] != 0.0f;
    return (double)c / n;
}
