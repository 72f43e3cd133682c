// cli_image.c: see cli_image.h.
#include "cli_image.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

// Encodes one picture into a new ci->soft entry.
static int encode_one(CliImages *ci, const G3Model *m, const G3Image *im, int exact, const G3VisionHooks *hooks) {
    const G3VisionConfig *c = &ci->v.cfg;
    float **ns = g3_realloc(ci->soft, (size_t)(ci->n + 1) * sizeof *ns);
    if (!ns) return -1;
    ci->soft = ns;
    if (!(ci->soft[ci->n] = g3_malloc((size_t)c->tokens * c->text_hidden * sizeof(float)))) return -1;
    ci->n++;
    return g3_vision_embed_image(&ci->v, m->be ? m->be : g3_backend_cpu(), exact ? G3_MM_EXACT : G3_MM_FAST, im, ci->soft[ci->n - 1], hooks);
}

// Bytes the recorder would keep per image for the sites its patterns name (exactly, by name).
static double rec_bytes(const CliVisRec *r, const G3VisionConfig *c) {
    const double NP = g3_vision_patches(c), D = c->hidden;
    double b = 0;
    char name[96];
    for (int s = 0; s < G3_VH_NSITES; s++) {
        const int layered = g3_vision_site_layered((G3VisionSite)s);
        const double attn = r->received ? c->heads * NP : c->heads * NP * NP;
        const double one = s == G3_VH_ATTN_SCORES || s == G3_VH_PATTERN ? attn
                           : s == G3_VH_MLP_PRE || s == G3_VH_MLP_POST ? NP * c->inter
                           : s == G3_VH_SOFT_TOKENS ? (double)c->tokens * c->text_hidden : NP * D;
        for (int l = layered ? 0 : -1; l < (layered ? c->layers : 0); l++) {
            g3_vision_hook_name(name, sizeof name, (G3VisionSite)s, l);
            for (int p = 0; p < r->npat; p++)
                if (g3_hook_match(r->pats[p], name)) {
                    b += 4 * one;
                    break;
                }
        }
    }
    return b;
}

int cli_images_load(CliImages *ci, const G3Model *m, const CliList *files, int exact, int pan_scan, CliVisRec *rec) {
    memset(ci, 0, sizeof *ci);
    if (!files->n) {
        // no image: a vision model's config still says what a placeholder is, so that a
        // prompt holding runs without images is refused rather than read as plain tokens
        if (m->cfg.multimodal && m->src && !strcmp(m->src->kind, "safetensors")) {
            // a vision config this tower could not run does not stop text-only use
            ci->has_cfg = g3_vision_config_load(&ci->v.cfg, m->dir) == 0;
            if (!ci->has_cfg) g3_error_clear();
        }
        return 0;
    }
    int rc = g3_vision_load(&ci->v, m);
    if (rc) {
        if (rc > 0) g3_error_prefix("--image %s", files->v[0]);
        return -1;
    }
    ci->loaded = ci->has_cfg = 1;
    const G3VisionConfig *c = &ci->v.cfg;
    if (!(ci->ncrops = g3_calloc((size_t)files->n, sizeof *ci->ncrops))) return -1;
    G3VisionHooks hooks = {cli_vision_record, rec, 0, 0}, *hk = NULL;
    for (int p = 0; rec && p < rec->npat; p++) {  // a pattern for the tower that names none of its sites is a mistake
        uint32_t s;
        uint64_t l;
        if (cli_vision_pattern(rec->pats[p]) && !g3_vision_hook_select(&rec->pats[p], 1, c->layers, &s, &l))
            return g3_errorf("--hooks %s: no site of the vision tower (%d layers) has that name; sites: vision.hook_embed, "
                             "vision.blocks.<i>.{hook_resid_pre, ln1.hook_normalized, attn.hook_{q,k,v,attn_scores,pattern,z}, "
                             "hook_attn_out, hook_resid_mid, ln2.hook_normalized, mlp.hook_{pre,post}, hook_mlp_out, hook_resid_post}, "
                             "vision.hook_post_norm, vision.hook_soft_tokens",
                             rec->pats[p], c->layers);
    }
    if (rec && rec_bytes(rec, c) > 16.0 * (1 << 30))
        return g3_errorf("--hooks: the vision tower's sites chosen would record %.1f GiB per image (a layer's attn.hook_pattern alone is %.2f GiB); "
                         "choose fewer layers or sites",
                         rec_bytes(rec, c) / 1073741824.0, 4.0 * c->heads * g3_vision_patches(c) * g3_vision_patches(c) / 1073741824.0);
    if (rec && g3_vision_hook_select(rec->pats, rec->npat, c->layers, &hooks.sites, &hooks.layers)) {
        rec->heads = c->heads;
        hk = &hooks;
    }
    const double t0 = g3_now();
    for (int i = 0; i < files->n; i++) {
        G3Image im, crops[64];
        if (g3_image_load(&im, files->v[i])) return -1;
        ci->nfiles = i + 1;
        int nc = pan_scan || c->pas_on ? g3_vision_pan_and_scan(c, &im, crops) : 0, e = nc < 0 || encode_one(ci, m, &im, exact, hk);
        for (int k = 0; k < nc; k++) {
            e = e || encode_one(ci, m, &crops[k], exact, hk);
            g3_image_free(&crops[k]);
        }
        ci->ncrops[i] = G3_MAX(nc, 0);
        g3_image_free(&im);
        if (e) return g3_error_prefix("%s", files->v[i]);
    }
    ci->seconds = g3_now() - t0;
    return 0;
}

int cli_images_add(CliImages *ci, const G3Model *m, const char *file, int exact) {
    if (!ci->loaded) {
        int rc = g3_vision_load(&ci->v, m);
        if (rc) {
            if (rc > 0) g3_error_prefix("%s", file);
            return -1;
        }
        ci->loaded = ci->has_cfg = 1;
    }
    const G3VisionConfig *c = &ci->v.cfg;
    G3Image im;
    if (g3_image_load(&im, file)) return -1;
    float **ns = g3_realloc(ci->soft, (size_t)(ci->n + 1) * sizeof *ns), *soft = NULL;
    if (ns) ci->soft = ns;
    const double t0 = g3_now();
    int e = !ns || !(soft = g3_malloc((size_t)c->tokens * c->text_hidden * sizeof(float))) ||
            g3_vision_embed_image(&ci->v, m->be ? m->be : g3_backend_cpu(), exact ? G3_MM_EXACT : G3_MM_FAST, &im, soft, NULL);
    g3_image_free(&im);
    if (e) {
        free(soft);
        return g3_error_prefix("%s", file);
    }
    ci->soft[ci->n++] = soft;
    ci->nfiles++;  // (chat's images have no crops: ncrops stays NULL, n == nfiles)
    ci->seconds += g3_now() - t0;
    return 0;
}

int cli_images_attach(CliImages *ci, G3State *s, const int32_t *ids, int n) {
    if (!ci->has_cfg) return 0;
    return g3_vision_attach(&ci->v.cfg, s, 0, 0, ids, n, ci->soft, ci->n);
}

int cli_images_rows(const CliImages *ci, int n, int def) { return ci->n ? n : def; }

int cli_images_encode_text(const CliImages *ci, const G3Tokenizer *tok, const char *text, int add_bos, int parse_special, int32_t **out) {
    if (ci->n == ci->nfiles) return g3_vision_encode_text(&ci->v.cfg, tok, text, ci->n, add_bos, parse_special, out);
    char *t = g3_vision_pan_and_scan_text(text, ci->ncrops, ci->nfiles);  // crops: the processor's text around them
    int n = t ? g3_vision_encode_text(&ci->v.cfg, tok, t, ci->n, add_bos, parse_special, out) : -1;
    free(t);
    return n;
}

void cli_images_free(CliImages *ci) {
    for (int i = 0; i < ci->n; i++) free(ci->soft[i]);
    free(ci->soft);
    free(ci->ncrops);
    if (ci->loaded) g3_vision_free(&ci->v);
    memset(ci, 0, sizeof *ci);
}

int cli_vision_pattern(const char *pattern) { return !strncmp(pattern, "vision.", 7); }

void cli_vision_record(void *ctx, const G3VisionHookEvent *ev) {
    CliVisRec *r = ctx;
    char name[96];
    g3_vision_hook_name(name, sizeof name, ev->site, ev->layer);
    int hit = 0;
    for (int p = 0; p < r->npat && !hit; p++) hit = g3_hook_match(r->pats[p], name);
    if (!hit || r->failed) return;
    const int attn = ev->site == G3_VH_ATTN_SCORES || ev->site == G3_VH_PATTERN;
    CliVisArr *a = NULL;
    for (int i = 0; i < r->narr; i++)
        if (!strcmp(r->arr[i].name, name)) a = &r->arr[i];
    if (!a) {
        CliVisArr *na = g3_realloc(r->arr, (size_t)(r->narr + 1) * sizeof *na);
        if (!na) { r->failed = 1; return; }
        r->arr = na;
        a = &r->arr[r->narr++];
        memset(a, 0, sizeof *a);
        snprintf(a->name, sizeof a->name, "%s", name);
        if (attn && r->received) a->ndim = 3, a->shape[1] = G3_MAX(r->heads, 1), a->shape[2] = ev->cols;
        else if (attn) a->ndim = 4, a->shape[1] = G3_MAX(r->heads, 1), a->shape[2] = ev->rows, a->shape[3] = ev->cols;
        else if (ev->heads) a->ndim = 4, a->shape[1] = ev->rows, a->shape[2] = ev->heads, a->shape[3] = ev->head_dim;
        else a->ndim = 3, a->shape[1] = ev->rows, a->shape[2] = ev->cols;
        a->one = (size_t)a->shape[1] * a->shape[2] * (a->ndim == 4 ? (size_t)a->shape[3] : 1);
    }
    const int recv = attn && r->received;
    const size_t n = recv ? (size_t)ev->cols : (size_t)ev->rows * ev->cols;
    if (!attn || ev->head == 0) {  // a new image (a layer's heads come in order, head 0 first)
        float *nd = g3_realloc(a->data, (a->shape[0] + 1) * a->one * sizeof(float));
        if (!nd) { r->failed = 1; return; }
        a->data = nd;
        memset(a->data + a->shape[0] * a->one, 0, a->one * sizeof(float));
        a->shape[0]++;
    }
    if (attn && (ev->head < 0 || ev->head >= a->shape[1] || n * a->shape[1] != a->one)) { r->failed = 1; return; }
    float *dst = a->data + (a->shape[0] - 1) * a->one + (attn ? (size_t)ev->head * n : 0);
    if (!recv) {
        memcpy(dst, ev->data, n * sizeof(float));
        return;
    }
    for (int i = 0; i < ev->rows; i++)  // column sums in row order, then the mean
        for (int j = 0; j < ev->cols; j++) dst[j] += ev->data[(size_t)i * ev->cols + j];
    for (int j = 0; j < ev->cols; j++) dst[j] /= (float)ev->rows;
}

void cli_vision_rec_free(CliVisRec *r) {
    for (int i = 0; i < r->narr; i++) free(r->arr[i].data);
    free(r->arr);
    memset(r, 0, sizeof *r);
}
