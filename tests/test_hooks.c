// test_hooks.c: the hook sites of the forward pass on every fixture (exact mode): the sites
// with a reference tensor against Hugging Face transformers (1e-5), every other site against
// its definition computed here from its neighbours, the same data through prefill-then-
// decode and batched multi-segment calls as through one prefill, and edits that take effect
// (zeroing hook_z ablates the layer's attention; an identity edit changes nothing, bit for bit).
#include "check.h"
#include "fixtures.h"
#include "kernels/kernels.h"
#include "kernels/ops.h"
#include "kernels/train_ops.h"
#include "model/forward.h"
#include "model/record.h"

static const float *arr(const G3Recorder *r, G3HookSite site, int l) {
    G3RecArray *a = g3_rec_find(r, site, l);
    if (!a) { fprintf(stderr, "site %d layer %d not recorded\n", site, l); exit(2); }
    return a->data;
}

// Relative error over entries where the reference is finite; both must be -inf elsewhere.
static double rel_err_masked(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        if (isinf(b[i])) { if (!(isinf(a[i]) && a[i] < 0)) return INFINITY; continue; }
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void test_names(void) {
    char buf[64];
    for (int i = 0; i < G3_HOOK_NSITES; i++) {
        int layer = g3_hook_site_layered((G3HookSite)i) ? 17 : -1;
        g3_hook_name(buf, sizeof buf, (G3HookSite)i, layer);
        G3HookSite s;
        int l;
        CHECK(g3_hook_parse(buf, &s, &l) == 0 && (int)s == i && l == layer, "parse(%s)", buf);
    }
    CHECK(!strcmp(g3_hook_name(buf, sizeof buf, G3_HOOK_PATTERN, 3), "blocks.3.attn.hook_pattern"), "%s", buf);
    CHECK(!strcmp(g3_hook_name(buf, sizeof buf, G3_HOOK_LN1, 0), "blocks.0.ln1.hook_normalized"), "%s", buf);
    CHECK(!strcmp(g3_hook_name(buf, sizeof buf, G3_HOOK_LN_FINAL, -1), "ln_final.hook_normalized"), "%s", buf);
    const char *bad[] = {"hook_foo", "blocks.x.hook_resid_pre", "blocks.1.hook_embed", "blocks.-1.hook_resid_pre",
                         "blocks.2", "hook_resid_pre", "blocks.2.hook_resid_pre.", "logits2", ""};
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        G3HookSite s;
        int l;
        CHECK(g3_hook_parse(bad[i], &s, &l) == -1, "parse accepted '%s'", bad[i]);
    }
    CHECK(g3_hook_match("blocks.*.hook_resid_post", "blocks.3.hook_resid_post"), "glob");
    CHECK(!g3_hook_match("blocks.*.hook_resid_post", "blocks.3.hook_resid_pre"), "glob");
    CHECK(g3_hook_match("*", "logits") && g3_hook_match("*hook_*", "blocks.3.attn.hook_z"), "glob");
    CHECK(g3_hook_match("blocks.1*.hook_z", "blocks.12.attn.hook_z") && !g3_hook_match("blocks.1*.hook_z", "blocks.2.attn.hook_z"), "glob");
    CHECK(g3_hook_match("blocks.*.attn.*", "blocks.0.attn.hook_q") && !g3_hook_match("blocks.*.attn.*", "blocks.0.hook_attn_out"), "glob");
    CHECK(g3_hook_match("a**b", "ab") && !g3_hook_match("a*b", "abc") && g3_hook_match("", "") && !g3_hook_match("", "x"), "glob");
}

// Records the sites matching pats over one prefill of ids[T] into slot 0 (ALL logits).
static int record_prefill(G3Recorder *r, const G3Model *m, const int32_t *ids, int T, const char *const *pats, int npat) {
    if (g3_rec_init(r, &m->cfg, 1, T, pats, npat)) return -1;
    G3State *s = g3_state_new(m, 1, T, T, 0, NULL);
    if (!s) return -1;
    g3_rec_attach(r, s);
    G3Segment sg = {0, 0, T};
    int rc = g3_forward(s, ids, &sg, 1, G3_LOGITS_ALL);
    g3_state_free(s);
    return rc;
}

static void check_reference(const char *name, const G3Recorder *r, const STSet *exp, int T) {
    const G3Config *c = r->cfg;
    const long C = c->hidden, NH = c->heads;
    char key[64];
    double worst = 0;
#define CMP(ptr, refname, n)                                                                 \
    do {                                                                                     \
        double e_ = rel_err(ptr, fixture_get(exp, refname)->data, n);                        \
        CHECK(e_ <= 1e-5, "%s: %s rel err %.3g", name, refname, e_);                         \
        if (e_ > worst) worst = e_;                                                          \
    } while (0)
    CMP(arr(r, G3_HOOK_EMBED, -1), "embed", T * C);
    for (int l = 0; l < c->layers; l++) {
        snprintf(key, sizeof key, "attn.%d", l); CMP(arr(r, G3_HOOK_PATTERN, l), key, NH * T * T);
        snprintf(key, sizeof key, "attn_out.%d", l); CMP(arr(r, G3_HOOK_ATTN_OUT, l), key, T * C);
        snprintf(key, sizeof key, "mlp_out.%d", l); CMP(arr(r, G3_HOOK_MLP_OUT, l), key, T * C);
        snprintf(key, sizeof key, "layer.%d", l); CMP(arr(r, G3_HOOK_RESID_POST, l), key, T * C);
    }
    CMP(arr(r, G3_HOOK_LN_FINAL, -1), "final_norm", T * C);
    CMP(arr(r, G3_HOOK_LOGITS, -1), "logits", T * c->vocab);
#undef CMP
    printf("%-32s reference sites: worst rel err %.2e\n", name, worst);
}

// Every other site against its definition, computed from the recorded neighbours.
static void check_consistency(const char *name, const G3Model *m, const G3Recorder *r, int T) {
    const G3Config *c = &m->cfg;
    const int C = c->hidden, NH = c->heads, NKV = c->kv_heads, HD = c->head_dim, F = c->inter, G = NH / NKV;
    float *tmp = malloc((size_t)T * G3_MAX(C, G3_MAX(F, NH * HD)) * sizeof(float));
    float *tmp2 = malloc((size_t)T * F * sizeof(float));
    float *cs = malloc((size_t)HD / 2 * sizeof(float)), *sn = malloc((size_t)HD / 2 * sizeof(float));
    double worst = 0;
#define NEAR(a, b, n, what)                                                                       \
    do {                                                                                          \
        double e_ = rel_err(a, b, n);                                                             \
        CHECK(e_ <= 1e-5, "%s layer %d: %s rel err %.3g", name, l, what, e_);                     \
        if (e_ > worst) worst = e_;                                                               \
    } while (0)
    for (int l = 0; l < c->layers; l++) {
        const float *pre = arr(r, G3_HOOK_RESID_PRE, l), *mid = arr(r, G3_HOOK_RESID_MID, l), *post = arr(r, G3_HOOK_RESID_POST, l);
        const float *prev = l ? arr(r, G3_HOOK_RESID_POST, l - 1) : arr(r, G3_HOOK_EMBED, -1);
        CHECK(!memcmp(pre, prev, (size_t)T * C * sizeof(float)), "%s: resid_pre.%d != resid_post.%d (or embed)", name, l, l - 1);
        // ln1 = norm(resid_pre); resid_mid = resid_pre + post_attn_norm(attn_out); ln2, resid_post alike
        g3_rmsnorm_forward_ref(tmp, NULL, pre, g3_norm_weight(m, m->layer_idx[l][W_ATTN_NORM]), T, C, c->eps);
        NEAR(arr(r, G3_HOOK_LN1, l), tmp, (long)T * C, "ln1");
        g3_rmsnorm_forward_ref(tmp, NULL, arr(r, G3_HOOK_ATTN_OUT, l), g3_norm_weight(m, m->layer_idx[l][W_POST_ATTN_NORM]), T, C, c->eps);
        NEAR(arr(r, G3_HOOK_LN1_POST, l), tmp, (long)T * C, "ln1_post = post_attn_norm(attn_out)");
        for (long i = 0; i < (long)T * C; i++) tmp[i] += pre[i];
        NEAR(mid, tmp, (long)T * C, "resid_mid");
        g3_rmsnorm_forward_ref(tmp, NULL, mid, g3_norm_weight(m, m->layer_idx[l][W_PRE_FFW_NORM]), T, C, c->eps);
        NEAR(arr(r, G3_HOOK_LN2, l), tmp, (long)T * C, "ln2");
        g3_rmsnorm_forward_ref(tmp, NULL, arr(r, G3_HOOK_MLP_OUT, l), g3_norm_weight(m, m->layer_idx[l][W_POST_FFW_NORM]), T, C, c->eps);
        NEAR(arr(r, G3_HOOK_LN2_POST, l), tmp, (long)T * C, "ln2_post = post_ffw_norm(mlp_out)");
        for (long i = 0; i < (long)T * C; i++) tmp[i] += mid[i];
        NEAR(post, tmp, (long)T * C, "resid_post");
        // mlp_post = gelu(pre) * pre_linear
        memcpy(tmp2, arr(r, G3_HOOK_MLP_PRE, l), (size_t)T * F * sizeof(float));
        g3_geglu_ref(tmp2, arr(r, G3_HOOK_MLP_PRE_LINEAR, l), (long)T * F, c->act == G3_GELU_ERF);
        NEAR(arr(r, G3_HOOK_MLP_POST, l), tmp2, (long)T * F, "mlp_post");
        // rot_q = rope(q), rot_k = rope(k) at each row's position with the layer's base and scale
        const float *q = arr(r, G3_HOOK_Q, l), *k = arr(r, G3_HOOK_K, l), *v = arr(r, G3_HOOK_V, l);
        const float *rq = arr(r, G3_HOOK_ROT_Q, l), *rk = arr(r, G3_HOOK_ROT_K, l);
        float *tk = tmp2;  // [T][NKV][HD]
        for (int t = 0; t < T; t++) {
            int sl = c->sliding[l];
            g3_rope_angles(cs, sn, t, HD, sl ? c->rope_local_base : c->rope_global_base, sl ? c->rope_local_scale : c->rope_global_scale);
            memcpy(tmp + (long)t * NH * HD, q + (long)t * NH * HD, (size_t)NH * HD * sizeof(float));
            memcpy(tk + (long)t * NKV * HD, k + (long)t * NKV * HD, (size_t)NKV * HD * sizeof(float));
            g3_rope(tmp + (long)t * NH * HD, NH, HD, cs, sn);
            g3_rope(tk + (long)t * NKV * HD, NKV, HD, cs, sn);
        }
        NEAR(rq, tmp, (long)T * NH * HD, "rot_q");
        NEAR(rk, tk, (long)T * NKV * HD, "rot_k");
        // scores = rot_q . rot_k * scale (softcapped, masked); pattern = softmax(scores); z = pattern . v
        const float *sc = arr(r, G3_HOOK_ATTN_SCORES, l), *pat = arr(r, G3_HOOK_PATTERN, l), *z = arr(r, G3_HOOK_Z, l);
        float *ws = malloc((size_t)NH * T * T * sizeof(float)), *wp = malloc((size_t)NH * T * T * sizeof(float));
        float *wz = malloc((size_t)T * NH * HD * sizeof(float));
        const double scale = 1.0 / sqrt(c->query_pre_attn_scalar);
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++) {
                float *srow = ws + ((long)h * T + t) * T, *prow = wp + ((long)h * T + t) * T;
                for (int j = 0; j < T; j++) {
                    int vis = j <= t && (!c->sliding[l] || t - j < c->sliding_window);
                    double d = 0;
                    for (int e = 0; e < HD; e++) d += (double)rq[((long)t * NH + h) * HD + e] * rk[((long)j * NKV + h / G) * HD + e];
                    d *= scale;
                    if (c->attn_softcap > 0) d = tanh(d / c->attn_softcap) * c->attn_softcap;
                    srow[j] = vis ? (float)d : -INFINITY;
                }
                memcpy(prow, sc + ((long)h * T + t) * T, (size_t)T * sizeof(float));
                g3_softmax_ref(prow, T);
                for (int e = 0; e < HD; e++) {
                    double acc = 0;
                    for (int j = 0; j < T; j++) acc += (double)pat[((long)h * T + t) * T + j] * v[((long)j * NKV + h / G) * HD + e];
                    wz[((long)t * NH + h) * HD + e] = (float)acc;
                }
            }
        double es = rel_err_masked(sc, ws, (long)NH * T * T);
        CHECK(es <= 1e-5, "%s layer %d: attn_scores rel err %.3g", name, l, es);
        NEAR(pat, wp, (long)NH * T * T, "pattern = softmax(scores)");
        NEAR(z, wz, (long)T * NH * HD, "z = pattern . v");
        free(ws); free(wp); free(wz);
    }
    int l = -1;
    const float *last = arr(r, G3_HOOK_RESID_POST, c->layers - 1);
    g3_rmsnorm_forward_ref(tmp, NULL, last, g3_norm_weight(m, m->final_norm_idx), T, C, c->eps);
    NEAR(arr(r, G3_HOOK_LN_FINAL, -1), tmp, (long)T * C, "ln_final");
#undef NEAR
    printf("%-32s site definitions: worst rel err %.2e\n", name, worst);
    free(tmp); free(tmp2); free(cs); free(sn);
}

// The same recording through batched calls: slot 0 and slot 1 both hold ids, prefilled
// together to different lengths (two segments in one call), then stepped with segments of
// 1, 2 and 3 tokens (decode rows, the short path, a short prefill against the cache).
static void check_decode(const char *name, const G3Model *m, const G3Recorder *ref, const int32_t *ids, int T,
                         const char *const *pats, int npat) {
    G3Recorder r;
    if (g3_rec_init(&r, &m->cfg, 2, T, pats, npat)) { CHECK(0, "%s", g3_error()); return; }
    G3State *s = g3_state_new(m, 2, T, T, 0, NULL);
    g3_rec_attach(&r, s);
    int32_t *tok = malloc((size_t)2 * T * sizeof *tok);
    int done[2] = {T / 2, T / 3};
    G3Segment sg[2] = {{0, 0, done[0]}, {1, 0, done[1]}};
    memcpy(tok, ids, (size_t)done[0] * sizeof *tok);
    memcpy(tok + done[0], ids, (size_t)done[1] * sizeof *tok);
    CHECK(g3_forward(s, tok, sg, 2, G3_LOGITS_ALL) == 0, "%s", g3_error());
    for (int step = 0; done[0] < T || done[1] < T; step++) {
        int nseg = 0, rows = 0;
        for (int b = 0; b < 2; b++) {
            if (done[b] == T) continue;
            int n = b == 0 ? 1 : G3_MIN(1 + step % 3, T - done[b]);
            sg[nseg++] = (G3Segment){b, done[b], n};
            memcpy(tok + rows, ids + done[b], (size_t)n * sizeof *tok);
            rows += n;
            done[b] += n;
        }
        if (g3_forward(s, tok, sg, nseg, G3_LOGITS_ALL)) { CHECK(0, "%s", g3_error()); break; }
    }
    double worst = 0;
    for (int i = 0; i < r.narr; i++) {
        const G3RecArray *a = &r.arr[i], *b = g3_rec_find(ref, a->site, a->layer);
        long n = 1;
        for (int d = 1; d < a->ndim; d++) n *= a->shape[d];
        for (int bi = 0; bi < 2; bi++) {
            double e = rel_err_masked(a->data + bi * n, b->data, n);
            CHECK(e <= 1e-5, "%s: %s (slot %d) by decode differs from one prefill: rel err %.3g", name, a->name, bi, e);
            if (e > worst) worst = e;
        }
    }
    printf("%-32s decode/batched vs prefill (%d sites): worst rel err %.2e\n", name, r.narr, worst);
    g3_state_free(s);
    g3_rec_free(&r);
    free(tok);
}

// Edits: a hook that zeroes one layer's z, one that puts resid_mid back to resid_pre (no
// attention contribution), an identity that copies every site out and back.
typedef struct { int layer; float *saved; long n; G3Recorder *rec; } Edit;

static void zero_z(void *ctx, const G3HookEvent *ev) {
    memset(ev->data, 0, (size_t)ev->rows * ev->cols * sizeof(float));
}
static void skip_attn(void *ctx, const G3HookEvent *ev) {
    Edit *e = ctx;
    if (ev->site == G3_HOOK_RESID_PRE) memcpy(e->saved, ev->data, (size_t)ev->rows * ev->cols * sizeof(float));
    else memcpy(ev->data, e->saved, (size_t)ev->rows * ev->cols * sizeof(float));
}
static void identity(void *ctx, const G3HookEvent *ev) {
    Edit *e = ctx;
    long n = (long)ev->rows * ev->cols;
    memcpy(e->saved, ev->data, (size_t)n * sizeof(float));
    memset(ev->data, 0x7f, (size_t)n * sizeof(float));  // scribble, then put it back
    memcpy(ev->data, e->saved, (size_t)n * sizeof(float));
    g3_rec_hook(e->rec, ev);
}
// The pattern of head 0 set to attend only to <bos>: that head's z must become v[0].
static void bos_only(void *ctx, const G3HookEvent *ev) {
    if (ev->site == G3_HOOK_PATTERN && ev->head == 0)
        for (int i = 0; i < ev->rows; i++)
            for (int j = 0; j < ev->cols; j++) ev->data[(long)i * ev->cols + j] = ev->key0 + j == 0;
    g3_rec_hook(((Edit *)ctx)->rec, ev);
}

static void zero_v_before(void *ctx, const G3HookEvent *ev) {
    for (int i = 0; i < ev->rows; i++)
        if (ev->pos0 + i < *(int *)ctx) memset(ev->data + (long)i * ev->cols, 0, (size_t)ev->cols * sizeof(float));
}

static float *run_logits(const G3Model *m, const int32_t *ids, int T, G3HookFn fn, void *ctx, uint32_t sites, uint64_t layers, int chunk) {
    G3State *s = g3_state_new(m, 1, T, chunk, 0, NULL);
    float *out = malloc((size_t)T * m->cfg.vocab * sizeof(float));
    g3_state_set_hook(s, fn, ctx, sites, layers);
    CHECK(g3_prefill(s, 0, ids, T, out) == 0, "%s", g3_error());
    g3_state_free(s);
    return out;
}

static void check_edits(const char *name, const G3Model *m, const G3Recorder *ref, const int32_t *ids, int T) {
    const G3Config *c = &m->cfg;
    const long V = c->vocab, n = (long)T * V;
    const int l = 1;
    Edit e = {l, malloc((size_t)T * G3_MAX(c->vocab, G3_MAX(c->inter, c->heads * c->head_dim)) * sizeof(float)), 0, NULL};
    float *base = run_logits(m, ids, T, NULL, NULL, 0, 0, T);
    float *a = run_logits(m, ids, T, zero_z, &e, 1u << G3_HOOK_Z, 1ull << l, T);
    float *b = run_logits(m, ids, T, skip_attn, &e, 1u << G3_HOOK_RESID_PRE | 1u << G3_HOOK_RESID_MID, 1ull << l, T);
    CHECK(!memcmp(a, b, (size_t)n * sizeof(float)), "%s: zeroing hook_z of layer %d differs from removing its attention", name, l);
    CHECK(rel_err(a, base, n) > 1e-3, "%s: zeroing hook_z of layer %d changed nothing", name, l);
    // zero z in chunks of 7 and one token at a time (decode rows) equals the same in one prefill
    float *a7 = run_logits(m, ids, T, zero_z, &e, 1u << G3_HOOK_Z, 1ull << l, 7);
    CHECK(rel_err(a7, a, n) <= 1e-5, "%s: zeroing z in chunks differs", name);
    free(a7);
    a7 = run_logits(m, ids, T, zero_z, &e, 1u << G3_HOOK_Z, 1ull << l, 1);
    CHECK(rel_err(a7, a, n) <= 1e-5, "%s: zeroing z one token at a time differs", name);
    // identity edits at every site, and recording every site, change nothing bit for bit
    G3Recorder r;
    const char *all[] = {"*"};
    if (g3_rec_init(&r, c, 1, T, all, 1)) { CHECK(0, "%s", g3_error()); return; }
    e.rec = &r;
    float *idl = run_logits(m, ids, T, identity, &e, r.sites, r.layers, T);
    CHECK(!memcmp(idl, arr(ref, G3_HOOK_LOGITS, -1), (size_t)n * sizeof(float)), "%s: identity edits at every site changed the logits", name);
    for (int i = 0; i < r.narr; i++) {
        const G3RecArray *x = &r.arr[i], *y = g3_rec_find(ref, x->site, x->layer);
        long k = 1;
        for (int d = 0; d < x->ndim; d++) k *= x->shape[d];
        CHECK(!memcmp(x->data, y->data, (size_t)k * sizeof(float)), "%s: identity edits changed %s", name, x->name);
    }
    // without score/pattern hooks the fast attention runs: identity elsewhere is bit-exact to no hook
    uint32_t fast_sites = r.sites & ~(1u << G3_HOOK_ATTN_SCORES | 1u << G3_HOOK_PATTERN);
    float *idf = run_logits(m, ids, T, identity, &e, fast_sites, ~0ull, T);
    CHECK(!memcmp(idf, base, (size_t)n * sizeof(float)), "%s: identity edits (no attention sites) changed the logits", name);
    // an edited pattern is what multiplies V
    g3_rec_free(&r);
    const char *zv[] = {"blocks.1.attn.hook_z", "blocks.1.attn.hook_v"};
    if (g3_rec_init(&r, c, 1, T, zv, 2)) { CHECK(0, "%s", g3_error()); return; }
    e.rec = &r;
    free(run_logits(m, ids, T, bos_only, &e, r.sites | 1u << G3_HOOK_PATTERN, 1ull << l, T));
    const float *z = arr(&r, G3_HOOK_Z, l), *v = arr(&r, G3_HOOK_V, l);
    const int HD = c->head_dim, NH = c->heads, NKV = c->kv_heads;
    double err = 0;
    for (int t = 0; t < T; t++)
        for (int d = 0; d < HD; d++) err = G3_MAX(err, fabs(z[(long)t * NH * HD + d] - v[d]));
    CHECK(err < 1e-6, "%s: a one-hot pattern on <bos> gives z - v[0] up to %.3g", name, err);
    (void)NKV;
    // an edit of v reaches the cache: zeroing layer 1's v for the first T-1 positions in a
    // prefill, then decoding the last token, equals one pass that zeroes those rows only
    g3_rec_free(&r);
    G3State *s = g3_state_new(m, 1, T, T, 0, NULL);
    g3_state_set_hook(s, zero_z, NULL, 1u << G3_HOOK_V, 1ull << l);
    CHECK(g3_prefill(s, 0, ids, T - 1, NULL) == 0, "%s", g3_error());
    g3_state_set_hook(s, NULL, NULL, 0, 0);
    G3Segment sg = {0, T - 1, 1};
    CHECK(g3_forward(s, ids + T - 1, &sg, 1, G3_LOGITS_LAST) == 0, "%s", g3_error());
    const float *dec = s->logits;
    CHECK(rel_err(dec, base + (T - 1) * V, V) > 1e-3, "%s: zeroing cached v changed nothing", name);
    // the same edit inside one pass over all T tokens: v rows before position T-1 zeroed
    int limit = T - 1;
    float *one = run_logits(m, ids, T, zero_v_before, &limit, 1u << G3_HOOK_V, 1ull << l, T);
    double ev = rel_err(dec, one + (T - 1) * V, V);
    CHECK(ev <= 1e-5, "%s: a v edit did not reach the cache (rel err %.3g)", name, ev);
    free(one);
    g3_state_free(s);
    free(base); free(a); free(b); free(a7); free(idl); free(idf); free(e.saved);
}

int main(void) {
    test_names();
    for (size_t fi = 0; fi < G3_ARRAY_LEN(FIXTURES); fi++) {
        const char *name = FIXTURES[fi];
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        STSet exp;
        fixture_open(&exp, name);
        int32_t *ids;
        int T = fixture_ids(&exp, "input_ids", &ids);
        G3Recorder r;
        const char *all[] = {"*"};
        if (record_prefill(&r, &m, ids, T, all, 1)) { CHECK(0, "%s: %s", name, g3_error()); continue; }
        CHECK(r.narr == 3 + 20 * m.cfg.layers, "%s: %d sites recorded", name, r.narr);
        check_reference(name, &r, &exp, T);
        check_consistency(name, &m, &r, T);
        check_decode(name, &m, &r, ids, T, all, 1);
        // everything but scores/pattern: the fast attention paths (note "blocks.*.hook_*" would match those too)
        const char *fast[] = {"hook_embed", "blocks.*.hook_resid_*", "blocks.*.hook_*_out", "blocks.*.ln*", "blocks.*.mlp.*",
                              "blocks.*.attn.hook_q", "blocks.*.attn.hook_k", "blocks.*.attn.hook_v", "blocks.*.attn.hook_z", "blocks.*.attn.hook_rot_*", "ln_final.*", "logits"};
        check_decode(name, &m, &r, ids, T, fast, (int)G3_ARRAY_LEN(fast));
        check_edits(name, &m, &r, ids, T);
        g3_rec_free(&r);
        free(ids);
        st_close(&exp);
        g3_model_free(&m);
    }
    // a pattern that matches nothing is an error naming the valid sites
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") == 0) {
        G3Recorder r;
        const char *bad[] = {"blocks.*.hook_resid_post", "blocks.*.attn.hook_nothing"};
        CHECK(g3_rec_init(&r, &m.cfg, 1, 4, bad, 2) == -1 && strstr(g3_error(), "hook_nothing") && strstr(g3_error(), "blocks.{0..5}.attn.hook_pattern"),
              "unknown pattern: %s", g3_error());
        const char *big[] = {"blocks.99.hook_resid_post"};
        CHECK(g3_rec_init(&r, &m.cfg, 1, 4, big, 1) == -1, "layer 99 accepted");
        g3_model_free(&m);
    }
    return check_done();
}
