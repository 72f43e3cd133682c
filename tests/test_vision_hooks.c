// test_vision_hooks.c: the vision tower's hook sites (vision.h, vhooks.c) on
// tests/fixtures/gemma3-tiny-vision, against a recomputation here in double, written from
// transformers' SiglipVisionTransformer (not from encoder.c), whose output is itself held to
// the fixture's vision_tower_out (transformers, float64):
//   - names: every site's name parses back; unknown names are refused; globs select sites;
//   - every site (embed, q/k/v, each head's scores and pattern, z, the MLP's, the residuals,
//     post_norm; soft_tokens through embed_image) equals the recomputation in exact mode;
//   - hooks that only look change nothing (the hooked attention against the blocked one);
//   - edits: a head's pattern made uniform and a layer's residual scaled change the output
//     exactly as the same edits in the recomputation do;
//   - transformers' own hidden_states and attentions when tests/fixtures/gemma3-tiny-vision-hooks
//     exists (tests/ref/gen_vision_hooks_ref.py writes it);
//   - `gemma3 trace --image --hooks 'vision.blocks.1.attn.hook_pattern,...'`: the arrays'
//     shapes ([images, NH, NP, NP], [images, NP, NH, HD]) and values; a vision pattern naming
//     no site is refused.
#include "check.h"
#include "fixtures.h"
#include <unistd.h>

#include "io/npz_read.h"
#include "model/model.h"
#include "vision/vision.h"

static const char *FX = "tests/fixtures/gemma3-tiny-vision";
static const char *IDS = "2,17,45,1000,1002,1002,1002,1002,1001,300,301,302,77,5,9,400,401";

enum { ML = 4, MH = 4 };  // layers, heads kept (the fixture's tower has 2 and 2)

// What a run saw at each site: [site][layer + 1][head + 1], malloc'd copies.
typedef struct {
    float *d[G3_VH_NSITES][ML + 1][MH + 1];
    long n[G3_VH_NSITES][ML + 1][MH + 1];
    int events;
} Rec;

// Edits applied at the sites (both in the hook and in the recomputation): the pattern of
// (pat_layer, pat_head) made uniform; the residual leaving resid_layer scaled.
typedef struct {
    int pat_layer, pat_head;
    int resid_layer;
    float resid_scale;
} Edit;

typedef struct {
    Rec *rec;
    const Edit *ed;
} Ctx;

static void rec_put(Rec *r, int site, int layer, int head, const float *x, long n) {
    if (layer >= ML || head >= MH) return;
    float **slot = &r->d[site][layer + 1][head + 1];
    free(*slot);
    *slot = malloc((size_t)n * sizeof(float));
    memcpy(*slot, x, (size_t)n * sizeof(float));
    r->n[site][layer + 1][head + 1] = n;
    r->events++;
}
static void rec_free(Rec *r) {
    for (int s = 0; s < G3_VH_NSITES; s++)
        for (int l = 0; l <= ML; l++)
            for (int h = 0; h <= MH; h++) free(r->d[s][l][h]);
    memset(r, 0, sizeof *r);
}

static void apply_edit(const Edit *ed, int site, int layer, int head, float *x, int rows, int cols) {
    if (!ed) return;
    if (site == G3_VH_PATTERN && layer == ed->pat_layer && head == ed->pat_head)
        for (long i = 0; i < (long)rows * cols; i++) x[i] = 1.0f / cols;
    if (site == G3_VH_RESID_POST && layer == ed->resid_layer)
        for (long i = 0; i < (long)rows * cols; i++) x[i] *= ed->resid_scale;
}

static void on_hook(void *vctx, const G3VisionHookEvent *ev) {
    Ctx *c = vctx;
    rec_put(c->rec, ev->site, ev->layer, ev->head, ev->data, (long)ev->rows * ev->cols);
    apply_edit(c->ed, ev->site, ev->layer, ev->head, ev->data, ev->rows, ev->cols);
}

// ---- the recomputation, in double ----

static const float *wf32(const G3Weight *w) {
    CHECK(w->type == G3_F32, "the fixture's tower is F32");
    return (const float *)w->data;
}
// y[R, N] = x[R, K] . W^T + b
static void lin(double *y, const double *x, int R, const G3Weight *w, const float *b) {
    const float *W = wf32(w);
    const int N = (int)w->rows, K = (int)w->cols;
    for (int r = 0; r < R; r++)
        for (int n = 0; n < N; n++) {
            double s = b ? b[n] : 0;
            for (int k = 0; k < K; k++) s += x[(long)r * K + k] * W[(long)n * K + k];
            y[(long)r * N + n] = s;
        }
}
static void layernorm(double *y, const double *x, int R, int n, const float *w, const float *b, double eps) {
    for (int r = 0; r < R; r++) {
        const double *xr = x + (long)r * n;
        double m = 0, v = 0;
        for (int i = 0; i < n; i++) m += xr[i];
        m /= n;
        for (int i = 0; i < n; i++) v += (xr[i] - m) * (xr[i] - m);
        v /= n;
        for (int i = 0; i < n; i++) y[(long)r * n + i] = (xr[i] - m) / sqrt(v + eps) * w[i] + b[i];
    }
}
static double gelu_tanh(double t) { return 0.5 * t * (1 + tanh(sqrt(2 / M_PI) * (t + 0.044715 * t * t * t))); }

// Stores a site's values (as float) in r, then applies the edit to the double values.
static void ref_site(Rec *r, const Edit *ed, int site, int layer, int head, double *x, int rows, int cols) {
    const long n = (long)rows * cols;
    float *f = malloc((size_t)n * sizeof(float));
    for (long i = 0; i < n; i++) f[i] = (float)x[i];
    rec_put(r, site, layer, head, f, n);
    free(f);
    if (!ed) return;
    if (site == G3_VH_PATTERN && layer == ed->pat_layer && head == ed->pat_head)
        for (long i = 0; i < n; i++) x[i] = 1.0 / cols;
    if (site == G3_VH_RESID_POST && layer == ed->resid_layer)
        for (long i = 0; i < n; i++) x[i] *= ed->resid_scale;
}

// SiglipVisionTransformer (no pooling head) on px [3, S, S]; out [NP, D].
static void ref_tower(const G3Vision *v, const float *px, const Edit *ed, Rec *r, float *out) {
    const G3VisionConfig *c = &v->cfg;
    const int D = c->hidden, FF = c->inter, P = c->patch, S = c->image_size, side = S / P, NP = side * side, NH = c->heads, HD = D / NH;
    const int K = 3 * P * P;
    double *pt = malloc(sizeof(double) * NP * K), *x = malloc(sizeof(double) * NP * D), *xn = malloc(sizeof(double) * NP * D);
    double *q = malloc(sizeof(double) * NP * D), *k = malloc(sizeof(double) * NP * D), *vv = malloc(sizeof(double) * NP * D);
    double *z = malloc(sizeof(double) * NP * D), *t = malloc(sizeof(double) * NP * D), *h = malloc(sizeof(double) * NP * FF);
    double *sc = malloc(sizeof(double) * NP * NP);
    // Conv2d(3, D, P, stride P): patch n at (n / side, n % side), weights [D, 3, P, P]
    for (int n = 0; n < NP; n++)
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < P; y++)
                for (int xx = 0; xx < P; xx++)
                    pt[(long)n * K + (ch * P + y) * P + xx] = px[((long)ch * S + (n / side) * P + y) * S + (n % side) * P + xx];
    lin(x, pt, NP, &v->patch, v->patch_b);
    for (long i = 0; i < (long)NP * D; i++) x[i] += v->pos[i];
    ref_site(r, ed, G3_VH_EMBED, -1, -1, x, NP, D);
    for (int l = 0; l < c->layers; l++) {
        const G3VisionLayer *L = &v->layer[l];
        ref_site(r, ed, G3_VH_RESID_PRE, l, -1, x, NP, D);
        layernorm(xn, x, NP, D, L->ln1w, L->ln1b, c->eps);
        ref_site(r, ed, G3_VH_LN1, l, -1, xn, NP, D);
        lin(q, xn, NP, &L->q, L->qb);
        lin(k, xn, NP, &L->k, L->kb);
        lin(vv, xn, NP, &L->v, L->vb);
        ref_site(r, ed, G3_VH_Q, l, -1, q, NP, D);
        ref_site(r, ed, G3_VH_K, l, -1, k, NP, D);
        ref_site(r, ed, G3_VH_V, l, -1, vv, NP, D);
        for (int hh = 0; hh < NH; hh++) {
            for (int i = 0; i < NP; i++)
                for (int j = 0; j < NP; j++) {
                    double s = 0;
                    for (int d = 0; d < HD; d++) s += q[(long)i * D + hh * HD + d] * k[(long)j * D + hh * HD + d];
                    sc[(long)i * NP + j] = s / sqrt((double)HD);
                }
            ref_site(r, ed, G3_VH_ATTN_SCORES, l, hh, sc, NP, NP);
            for (int i = 0; i < NP; i++) {
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < NP; j++) mx = fmax(mx, sc[(long)i * NP + j]);
                for (int j = 0; j < NP; j++) sum += sc[(long)i * NP + j] = exp(sc[(long)i * NP + j] - mx);
                for (int j = 0; j < NP; j++) sc[(long)i * NP + j] /= sum;
            }
            ref_site(r, ed, G3_VH_PATTERN, l, hh, sc, NP, NP);
            for (int i = 0; i < NP; i++)
                for (int d = 0; d < HD; d++) {
                    double s = 0;
                    for (int j = 0; j < NP; j++) s += sc[(long)i * NP + j] * vv[(long)j * D + hh * HD + d];
                    z[(long)i * D + hh * HD + d] = s;
                }
        }
        ref_site(r, ed, G3_VH_Z, l, -1, z, NP, D);
        lin(t, z, NP, &L->o, L->ob);
        ref_site(r, ed, G3_VH_ATTN_OUT, l, -1, t, NP, D);
        for (long i = 0; i < (long)NP * D; i++) x[i] += t[i];
        ref_site(r, ed, G3_VH_RESID_MID, l, -1, x, NP, D);
        layernorm(xn, x, NP, D, L->ln2w, L->ln2b, c->eps);
        ref_site(r, ed, G3_VH_LN2, l, -1, xn, NP, D);
        lin(h, xn, NP, &L->fc1, L->fc1b);
        ref_site(r, ed, G3_VH_MLP_PRE, l, -1, h, NP, FF);
        for (long i = 0; i < (long)NP * FF; i++) h[i] = gelu_tanh(h[i]);
        ref_site(r, ed, G3_VH_MLP_POST, l, -1, h, NP, FF);
        lin(t, h, NP, &L->fc2, L->fc2b);
        ref_site(r, ed, G3_VH_MLP_OUT, l, -1, t, NP, D);
        for (long i = 0; i < (long)NP * D; i++) x[i] += t[i];
        ref_site(r, ed, G3_VH_RESID_POST, l, -1, x, NP, D);
    }
    layernorm(xn, x, NP, D, v->post_w, v->post_b, c->eps);
    ref_site(r, ed, G3_VH_POST_NORM, -1, -1, xn, NP, D);
    for (long i = 0; i < (long)NP * D; i++) out[i] = (float)xn[i];
    free(pt), free(x), free(xn), free(q), free(k), free(vv), free(z), free(t), free(h), free(sc);
}

// ---- the tests ----

static void test_names(void) {
    char name[96];
    for (int s = 0; s < G3_VH_NSITES; s++) {
        const int layer = g3_vision_site_layered((G3VisionSite)s) ? 7 : -1;
        g3_vision_hook_name(name, sizeof name, (G3VisionSite)s, layer);
        G3VisionSite back;
        int bl;
        CHECK(g3_vision_hook_parse(name, &back, &bl) == 0 && back == (G3VisionSite)s && bl == layer, "%s parses back", name);
    }
    G3VisionSite s;
    int l;
    CHECK(!strcmp(g3_vision_hook_name(name, sizeof name, G3_VH_PATTERN, 3), "vision.blocks.3.attn.hook_pattern"), "%s", name);
    CHECK(g3_vision_hook_parse("vision.blocks.0.attn.hook_nothing", &s, &l) < 0 && strstr(g3_error(), "hook_nothing"), "unknown site refused");
    CHECK(g3_vision_hook_parse("vision.hook_resid_post", &s, &l) < 0, "a layered site without its layer refused");
    CHECK(g3_vision_hook_parse("blocks.0.hook_resid_post", &s, &l) < 0, "a text site refused");
    uint32_t sites;
    uint64_t layers;
    const char *p1[] = {"vision.blocks.1.attn.hook_pattern"};
    CHECK(g3_vision_hook_select(p1, 1, 2, &sites, &layers) == 1 && sites == 1u << G3_VH_PATTERN && layers == 2, "select one");
    const char *p2[] = {"vision.*"};
    CHECK(g3_vision_hook_select(p2, 1, 2, &sites, &layers) == 3 + 15 * 2 && sites == (1u << G3_VH_NSITES) - 1 && layers == 3, "select all");
    const char *p3[] = {"vision.blocks.*.hook_resid_post", "vision.hook_post_norm"};
    CHECK(g3_vision_hook_select(p3, 2, 27, &sites, &layers) == 28 && sites == (1u << G3_VH_RESID_POST | 1u << G3_VH_POST_NORM) &&
              layers == (1ull << 27) - 1,
          "select by glob");
    const char *p4[] = {"vision.blocks.9.hook_embed"};
    CHECK(g3_vision_hook_select(p4, 1, 2, &sites, &layers) == 0 && sites == 0, "select none");
}

static int compare(const Rec *a, const Rec *b, const char *what, double tol) {
    int sites = 0;
    double worst = 0;
    char name[96];
    for (int s = 0; s < G3_VH_NSITES; s++)
        for (int l = 0; l <= ML; l++)
            for (int h = 0; h <= MH; h++) {
                if (!b->d[s][l][h]) continue;
                g3_vision_hook_name(name, sizeof name, (G3VisionSite)s, l - 1);
                if (!a->d[s][l][h] || a->n[s][l][h] != b->n[s][l][h]) {
                    CHECK(0, "%s: %s head %d: not fired, or of another size", what, name, h - 1);
                    continue;
                }
                const double e = rel_err(a->d[s][l][h], b->d[s][l][h], a->n[s][l][h]);
                CHECK(e <= tol, "%s: %s head %d: rel err %.3g", what, name, h - 1, e);
                worst = fmax(worst, e);
                sites++;
            }
    printf("%s: %d sites, worst rel err %.3g\n", what, sites, worst);
    return sites;
}

static void test_sites(void) {
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-vision");
    G3Model m;
    if (g3_model_load(&m, FX)) { CHECK(0, "%s", g3_error()); return; }
    G3Vision v;
    if (g3_vision_load(&v, &m)) { CHECK(0, "%s", g3_error()); g3_model_free(&m); return; }
    const G3VisionConfig *c = &v.cfg;
    const int NP = g3_vision_patches(c), D = c->hidden;
    const float *px = fixture_get(&exp, "pixel_values")->data;
    float *ref = malloc(sizeof(float) * NP * D), *plain = malloc(sizeof(float) * NP * D), *hooked = malloc(sizeof(float) * NP * D);
    Rec rr = {0}, lr = {0};
    ref_tower(&v, px, NULL, &rr, ref);
    double e = rel_err(ref, fixture_get(&exp, "vision_tower_out")->data, (long)NP * D);
    CHECK(e <= 1e-6, "the recomputation against transformers' vision_tower_out: rel err %.3g", e);

    // every site, looking only
    G3Backend *be = g3_backend_cpu();
    Ctx cx = {&lr, NULL};
    G3VisionHooks all = {on_hook, &cx, (1u << G3_VH_NSITES) - 1, ~0ull};
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, px, hooked, &all) == 0, "%s", g3_error());
    CHECK(compare(&lr, &rr, "every site vs the recomputation", 1e-5) == 2 + c->layers * (13 + 2 * c->heads), "sites compared");
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, px, plain, NULL) == 0, "%s", g3_error());
    e = rel_err(hooked, plain, (long)NP * D);
    CHECK(e <= 1e-6, "looking changes nothing: hooked vs plain rel err %.3g", e);
    e = rel_err(plain, ref, (long)NP * D);
    CHECK(e <= 1e-5, "plain vs the recomputation rel err %.3g", e);
    // a subset: only the selected layer's site fires
    rec_free(&lr);
    G3VisionHooks one = {on_hook, &cx, 1u << G3_VH_RESID_POST, 1ull << 1};
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, px, hooked, &one) == 0 && lr.events == 1 && lr.d[G3_VH_RESID_POST][2][0],
          "one site, one layer: %d events", lr.events);

    // soft tokens through embed_image, against the fixture
    G3Image im;
    char p[512];
    snprintf(p, sizeof p, "%s/image.png", FX);
    float *soft = malloc(sizeof(float) * c->tokens * c->text_hidden);
    rec_free(&lr);
    G3VisionHooks st = {on_hook, &cx, 1u << G3_VH_SOFT_TOKENS, ~0ull};
    if (g3_image_load(&im, p) == 0) {
        CHECK(g3_vision_embed_image(&v, be, G3_MM_EXACT, &im, soft, &st) == 0, "%s", g3_error());
        const float *s0 = lr.d[G3_VH_SOFT_TOKENS][0][0];
        e = s0 ? rel_err(s0, fixture_get(&exp, "soft_tokens")->data, (long)c->tokens * c->text_hidden) : 1;
        CHECK(e <= 1e-5, "hook_soft_tokens vs the fixture's soft_tokens rel err %.3g", e);
        g3_image_free(&im);
    } else {
        CHECK(0, "%s", g3_error());
    }

    // edits: the same in the recomputation
    Edit ed = {1, 1, 0, 0.5f};
    Rec re = {0};
    rec_free(&lr);
    cx.ed = &ed;
    ref_tower(&v, px, &ed, &re, ref);
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, px, hooked, &all) == 0, "%s", g3_error());
    e = rel_err(hooked, ref, (long)NP * D);
    CHECK(e <= 1e-5, "edited tower vs the edited recomputation rel err %.3g", e);
    const double moved = rel_err(hooked, plain, (long)NP * D);
    CHECK(moved > 1e-2, "the edits change the output (rel %.3g)", moved);
    compare(&lr, &re, "edited: every site", 1e-5);
    printf("edited output vs the edited recomputation rel err %.3g (moved %.3g from the plain output)\n", e, moved);
    rec_free(&re);
    rec_free(&lr);
    rec_free(&rr);

    // transformers' own per-layer values, when generated (tests/ref/gen_vision_hooks_ref.py)
    if (access("tests/fixtures/gemma3-tiny-vision-hooks/expected.safetensors", R_OK) == 0) {
        STSet hx;
        fixture_open(&hx, "gemma3-tiny-vision-hooks");
        cx.ed = NULL;
        CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, px, hooked, &all) == 0, "%s", g3_error());
        char name[64];
        double worst = 0;
        for (int l = 0; l <= c->layers; l++) {
            snprintf(name, sizeof name, "hidden_states.%d", l);
            const float *got = l ? lr.d[G3_VH_RESID_POST][l][0] : lr.d[G3_VH_EMBED][0][0];
            e = got ? rel_err(got, fixture_get(&hx, name)->data, (long)NP * D) : 1;
            CHECK(e <= 1e-5, "%s rel err %.3g", name, e);
            worst = fmax(worst, e);
        }
        for (int l = 0; l < c->layers; l++)
            for (int h = 0; h < c->heads; h++) {
                snprintf(name, sizeof name, "attentions.%d", l);
                const float *got = lr.d[G3_VH_PATTERN][l + 1][h + 1];
                e = got ? rel_err(got, (const float *)fixture_get(&hx, name)->data + (long)h * NP * NP, (long)NP * NP) : 1;
                CHECK(e <= 1e-5, "%s head %d rel err %.3g", name, h, e);
                worst = fmax(worst, e);
            }
        printf("transformers' hidden_states and attentions: worst rel err %.3g\n", worst);
        st_close(&hx);
    } else {
        printf("tests/fixtures/gemma3-tiny-vision-hooks absent: transformers' per-layer values not compared (tests/ref/gen_vision_hooks_ref.py)\n");
    }
    rec_free(&lr);

    // trace --image: shapes and values
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char tmp[128], out[256];
    snprintf(tmp, sizeof tmp, "/tmp/g3_vision_hooks_%d", (int)getpid());
    sh("mkdir -p %s", tmp);
    snprintf(out, sizeof out, "%s/a.npz", tmp);
    CHECK(sh("%s trace --model %s --ids %s --image %s/image.png --exact --hooks 'vision.blocks.1.attn.hook_pattern,vision.blocks.0.attn.hook_q,"
             "vision.blocks.0.mlp.hook_post' --out %s 2>/dev/null",
             bin, FX, IDS, FX, out) == 0,
          "trace --image with the tower's attention sites");
    cx.ed = NULL;
    float *px2 = malloc(sizeof(float) * 3 * c->image_size * c->image_size);
    if (g3_image_load(&im, p) == 0) {  // trace's pixels are image.png's
        CHECK(g3_vision_pixels(c, px2, &im) == 0 && g3_vision_encode(&v, be, G3_MM_EXACT, px2, hooked, &all) == 0, "%s", g3_error());
        g3_image_free(&im);
    }
    free(px2);
    G3NpzFile z;
    if (g3_npz_read_open(&z, out) == 0) {
        const G3NpyArray *a = g3_npz_find(&z, "vision.blocks.1.attn.hook_pattern"), *b = g3_npz_find(&z, "vision.blocks.0.attn.hook_q");
        const G3NpyArray *f = g3_npz_find(&z, "vision.blocks.0.mlp.hook_post");
        CHECK(a && a->ndim == 4 && a->shape[0] == 1 && a->shape[1] == c->heads && a->shape[2] == NP && a->shape[3] == NP,
              "pattern shape [1, NH, NP, NP]");
        CHECK(b && b->ndim == 4 && b->shape[0] == 1 && b->shape[1] == NP && b->shape[2] == c->heads && b->shape[3] == D / c->heads,
              "q shape [1, NP, NH, HD]");
        CHECK(f && f->ndim == 3 && f->shape[0] == 1 && f->shape[1] == NP && f->shape[2] == c->inter, "mlp.hook_post shape [1, NP, FF]");
        CHECK(g3_npz_find(&z, "vision.blocks.0.attn.hook_pattern") == NULL, "layer 0's pattern not recorded");
        if (a && a->numel == (long)c->heads * NP * NP) {
            float *buf = malloc(sizeof(float) * a->numel);
            if (g3_npz_read_f32(&z, a, buf) == 0)
                for (int h = 0; h < c->heads; h++) {
                    e = rel_err(buf + (long)h * NP * NP, lr.d[G3_VH_PATTERN][2][h + 1], (long)NP * NP);
                    CHECK(e <= 1e-6, "trace's pattern head %d vs the library's rel err %.3g", h, e);
                }
            free(buf);
        }
        g3_npz_read_close(&z);
    } else {
        CHECK(0, "%s", g3_error());
    }
    char side[300];
    snprintf(side, sizeof side, "%s/a.json", tmp);
    size_t n;
    char *js = g3_read_file(side, &n);
    CHECK(js && strstr(js, "\"site\": \"vision.attn.hook_pattern\", \"layer\": 1"), "sidecar names the site and layer");
    free(js);
    snprintf(side, sizeof side, "%s/err.txt", tmp);
    CHECK(sh("%s trace --model %s --ids %s --image %s/image.png --hooks 'vision.blocks.0.attn.hook_nothing' --out %s 2>%s", bin, FX, IDS, FX, out,
             side) == 1,
          "a vision pattern naming no site: exit 1");
    js = g3_read_file(side, &n);
    CHECK(js && strstr(js, "vision.blocks.0.attn.hook_nothing"), "the message names the pattern: %s", js ? js : "");
    free(js);
    sh("rm -rf %s", tmp);
    rec_free(&lr);
    free(soft), free(ref), free(plain), free(hooked);
    g3_vision_free(&v);
    g3_model_free(&m);
    st_close(&exp);
}

int main(void) {
    test_names();
    test_sites();
    return check_done();
}
