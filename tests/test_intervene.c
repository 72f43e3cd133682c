// test_intervene.c: interventions (analysis/intervene.h) checked by construction on the
// fixtures, in exact mode: doing nothing, or patching every site from the same prompt, changes
// nothing; patching the last residual from prompt B gives B's logits; zeroing every head of a
// layer is removing its attention; steering adds exactly s x v; the prompt-set steering vector
// and the mean ablation are the means computed directly; loss and KL against the fixtures and
// their definitions; generation with an intervention equals recomputation; bad input gets a
// clear message (library and CLI) and no crash.
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analysis/intervene.h"
#include "check.h"
#include "fixtures.h"
#include "model/record.h"

static char tmpdir[256];

static float *logits_of(const G3Model *m, G3Intervention *iv, const int32_t *ids, int T) {
    float *l = malloc((size_t)T * m->cfg.vocab * sizeof(float));
    if (g3_iv_logits(l, m, iv, ids, T, 0)) { CHECK(0, "%s", g3_error()); memset(l, 0, (size_t)T * m->cfg.vocab * sizeof(float)); }
    return l;
}

static int same(const float *a, const float *b, long n) { return !memcmp(a, b, (size_t)n * sizeof(float)); }

// Nothing, an empty spec, and a record-only hook all leave the logits bit for bit.
static void test_nothing(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const long n = (long)T * m->cfg.vocab;
    G3Intervention iv;
    g3_iv_init(&iv, m);
    G3IvResult r;
    CHECK(g3_iv_compare(&r, &iv, ids, T, 0) == 0, "%s", g3_error());
    CHECK(same(r.clean, r.edited, n), "%s: no intervention changed the logits", name);
    CHECK(r.kl == 0 && r.kl_mean == 0, "%s: KL of identical distributions is %g / %g", name, r.kl, r.kl_mean);
    CHECK(r.loss_clean == r.loss_edited, "%s: loss changed with no intervention", name);
    CHECK(r.p_top_clean == r.p_top_edited, "%s: p(top) changed", name);
    float *clean = logits_of(m, NULL, ids, T);
    CHECK(same(clean, r.clean, n), "%s: two clean runs differ", name);
    CHECK(g3_iv_ablate(&iv, "", "", G3_ABLATE_ZERO, NULL, NULL, 0, 0) == 0 && iv.nedit == 0, "%s: empty ablation spec", name);
    CHECK(g3_iv_record(&iv, G3_HOOK_RESID_POST, 1, T) >= 0, "%s", g3_error());
    float *rec = logits_of(m, &iv, ids, T);
    CHECK(same(clean, rec, n), "%s: recording changed the logits", name);
    free(rec); free(clean);
    g3_iv_result_free(&r);
    g3_iv_free(&iv);
}

// Patching every site from the same prompt: bit for bit against a clean run on the same code
// path (score/pattern hooks switch attention to its materialised form), ~1e-7 against no hook.
static void test_patch_self(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const long n = (long)T * m->cfg.vocab;
    G3Intervention iv, rec;
    g3_iv_init(&iv, m);
    g3_iv_init(&rec, m);
    int ns = g3_iv_patch(&iv, "*", ids, T, 0, 0);
    CHECK(ns == 3 + 20 * m->cfg.layers, "%s: '*' matched %d sites", name, ns);
    for (int s = 0; s < G3_HOOK_NSITES; s++)
        for (int l = g3_hook_site_layered(s) ? 0 : -1; l < (g3_hook_site_layered(s) ? m->cfg.layers : 0); l++) g3_iv_record(&rec, s, l, T);
    float *a = logits_of(m, &iv, ids, T), *b = logits_of(m, &rec, ids, T), *c = logits_of(m, NULL, ids, T);
    CHECK(same(a, b, n), "%s: patching every site from the same prompt changed the logits", name);
    CHECK(rel_err(a, c, n) < 1e-6, "%s: patched-by-itself vs clean rel err %.3g", name, rel_err(a, c, n));
    // the same with the last position only
    G3Intervention iv2;
    g3_iv_init(&iv2, m);
    CHECK(g3_iv_patch(&iv2, "blocks.*.hook_resid_mid,blocks.*.attn.hook_pattern", ids, T, 1, 0) == 2 * m->cfg.layers, "%s", g3_error());
    float *d = logits_of(m, &iv2, ids, T);
    CHECK(rel_err(d, c, n) < 1e-6, "%s: last-position self patch rel err %.3g", name, rel_err(d, c, n));
    free(a); free(b); free(c); free(d);
    g3_iv_free(&iv); g3_iv_free(&rec); g3_iv_free(&iv2);
}

// Patching the residual after the last layer from B: every row of the logits is B's.
static void test_patch_last_layer(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const int V = m->cfg.vocab, L = m->cfg.layers;
    int32_t *b = malloc((size_t)T * sizeof *b);
    for (int i = 0; i < T; i++) b[i] = i == 0 ? ids[0] : (ids[i] * 7 + 13) % V;
    G3Intervention iv;
    g3_iv_init(&iv, m);
    char site[64];
    snprintf(site, sizeof site, "blocks.%d.hook_resid_post", L - 1);
    CHECK(g3_iv_patch(&iv, site, b, T, 0, 0) == 1, "%s", g3_error());
    float *got = logits_of(m, &iv, ids, T), *want = logits_of(m, NULL, b, T);
    double e = rel_err(got, want, (long)T * V);
    CHECK(e < 1e-6, "%s: patched last residual gives logits %.3g from B's", name, e);
    // last position only, from a shorter source: the last row is the source's last, the others clean
    G3Intervention lv;
    g3_iv_init(&lv, m);
    CHECK(g3_iv_patch(&lv, site, b, T - 3, 1, 0) == 1, "%s", g3_error());
    float *gl = logits_of(m, &lv, ids, T), *short_b = logits_of(m, NULL, b, T - 3), *clean = logits_of(m, NULL, ids, T);
    e = rel_err(gl + (long)(T - 1) * V, short_b + (long)(T - 4) * V, V);
    CHECK(e < 1e-6, "%s: --patch-pos last: last row %.3g from the source's last", name, e);
    CHECK(same(gl, clean, (long)(T - 1) * V), "%s: --patch-pos last touched earlier rows", name);
    // aligned from a shorter source: rows 0..Ts-1 are the source's, the rest differ from clean
    G3Intervention av;
    g3_iv_init(&av, m);
    CHECK(g3_iv_patch(&av, site, b, T - 3, 0, 0) == 1, "%s", g3_error());
    float *ga = logits_of(m, &av, ids, T);
    e = rel_err(ga, short_b, (long)(T - 3) * V);
    CHECK(e < 1e-6, "%s: aligned patch from a shorter source: rows 0..%d %.3g from the source's", name, T - 4, e);
    CHECK(same(ga + (long)(T - 3) * V, clean + (long)(T - 3) * V, 3L * V), "%s: rows past the source changed (the last layer's residual is per-row)", name);
    free(got); free(want); free(gl); free(short_b); free(clean); free(ga); free(b);
    g3_iv_free(&iv); g3_iv_free(&lv); g3_iv_free(&av);
}

// Zeroing every head of a layer = zeroing its attention output = the residual passes unchanged.
static void test_ablate_layer(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const int C = m->cfg.hidden, l = 2;
    const long n = (long)T * m->cfg.vocab;
    G3Intervention heads, out;
    g3_iv_init(&heads, m);
    g3_iv_init(&out, m);
    CHECK(g3_iv_ablate(&heads, "2.*", NULL, G3_ABLATE_ZERO, NULL, NULL, 0, 0) == 0 && heads.nedit == m->cfg.heads, "%s", g3_error());
    CHECK(g3_iv_zero(&out, G3_HOOK_ATTN_OUT, l, -1) == 0, "%s", g3_error());
    int pre = g3_iv_record(&heads, G3_HOOK_RESID_PRE, l, T), mid = g3_iv_record(&heads, G3_HOOK_RESID_MID, l, T);
    float *a = logits_of(m, &heads, ids, T), *b = logits_of(m, &out, ids, T), *c = logits_of(m, NULL, ids, T);
    CHECK(same(a, b, n), "%s: zero heads 2.* differs from zero blocks.2.hook_attn_out", name);
    CHECK(same(heads.rec[pre].data, heads.rec[mid].data, (long)T * C), "%s: with every head zeroed resid_mid != resid_pre", name);
    CHECK(rel_err(a, c, n) > 1e-3, "%s: ablating a whole layer's attention changed nothing", name);
    // one head by name, and an MLP layer: the recorded site holds zeros there
    G3Intervention one;
    g3_iv_init(&one, m);
    const int ml = m->cfg.layers - 1;
    char mls[16];
    snprintf(mls, sizeof mls, "%d", ml);
    CHECK(g3_iv_ablate(&one, "1.3", mls, G3_ABLATE_ZERO, NULL, NULL, 0, 0) == 0 && one.nedit == 2, "%s", g3_error());
    int z = g3_iv_record(&one, G3_HOOK_Z, 1, T), mo = g3_iv_record(&one, G3_HOOK_MLP_OUT, ml, T);
    free(logits_of(m, &one, ids, T));
    const int HD = m->cfg.head_dim, NH = m->cfg.heads;
    int zero_ok = 1, other_nz = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < NH; h++)
            for (int d = 0; d < HD; d++) {
                float v = one.rec[z].data[((long)t * NH + h) * HD + d];
                if (h == 3) zero_ok &= v == 0;
                else other_nz |= v != 0;
            }
    CHECK(zero_ok && other_nz, "%s: head 1.3 of hook_z was not (only) zeroed", name);
    int mz = 1;
    for (long i = 0; i < (long)T * C; i++) mz &= one.rec[mo].data[i] == 0;
    CHECK(mz, "%s: blocks.%d.hook_mlp_out was not zeroed", name, ml);
    free(a); free(b); free(c);
    g3_iv_free(&heads); g3_iv_free(&out); g3_iv_free(&one);
}

// Mean ablation writes the mean over the prompt's positions, computed here from a recording.
static void test_mean_ablation(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const int HD = m->cfg.head_dim, NH = m->cfg.heads, C = m->cfg.hidden;
    G3Intervention rec, iv;
    g3_iv_init(&rec, m);
    g3_iv_init(&iv, m);
    int z = g3_iv_record(&rec, G3_HOOK_Z, 3, T), mo = g3_iv_record(&rec, G3_HOOK_MLP_OUT, 0, T);
    free(logits_of(m, &rec, ids, T));
    const int32_t *p[1] = {ids};
    CHECK(g3_iv_ablate(&iv, "3.1", "0", G3_ABLATE_MEAN, p, &T, 1, 0) == 0 && iv.nedit == 2, "%s", g3_error());
    double ez = 0, em = 0;
    for (int d = 0; d < HD; d++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += rec.rec[z].data[((long)t * NH + 1) * HD + d];
        ez = fmax(ez, fabs(iv.edit[0].vec[d] - s / T));
    }
    for (int d = 0; d < C; d++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += rec.rec[mo].data[(long)t * C + d];
        em = fmax(em, fabs(iv.edit[1].vec[d] - s / T) / (fabs(s / T) + 1e-3));
    }
    CHECK(ez < 1e-5 && em < 1e-5, "%s: mean ablation vectors off by %.3g / %.3g", name, ez, em);
    int zr = g3_iv_record(&iv, G3_HOOK_Z, 3, T);
    free(logits_of(m, &iv, ids, T));
    int ok = 1;
    for (int t = 0; t < T; t++) ok &= same(iv.rec[zr].data + ((long)t * NH + 1) * HD, iv.edit[0].vec, HD);
    CHECK(ok, "%s: head 3.1 does not hold its mean at every position", name);
    g3_iv_free(&rec); g3_iv_free(&iv);
}

// Steering: scale 0 changes nothing; scale s adds s x v to resid_post, as the next layer sees it.
static void test_steer(const char *name, const G3Model *m, const int32_t *ids, int T) {
    const int C = m->cfg.hidden, l = 1;
    const long n = (long)T * m->cfg.vocab;
    float *v = malloc((size_t)C * sizeof *v);
    for (int i = 0; i < C; i++) v[i] = (float)((i * 37 % 11) - 5) * 0.25f;
    G3Intervention zero, iv, clean;
    g3_iv_init(&zero, m);
    g3_iv_init(&iv, m);
    g3_iv_init(&clean, m);
    CHECK(g3_iv_steer(&zero, l, v, C, 0) == 0, "%s", g3_error());
    float *a = logits_of(m, &zero, ids, T), *c = logits_of(m, NULL, ids, T);
    CHECK(same(a, c, n), "%s: steering with scale 0 changed the logits", name);
    const float s = 3.5f;
    CHECK(g3_iv_steer(&iv, l, v, C, s) == 0, "%s", g3_error());
    int after = g3_iv_record(&iv, G3_HOOK_RESID_PRE, l + 1, T), base = g3_iv_record(&clean, G3_HOOK_RESID_PRE, l + 1, T);
    float *b = logits_of(m, &iv, ids, T);
    free(logits_of(m, &clean, ids, T));
    int exact = 1;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) {
            float x = clean.rec[base].data[(long)t * C + i], want = x + s * v[i];
            exact &= iv.rec[after].data[(long)t * C + i] == want;
        }
    CHECK(exact, "%s: resid_pre.%d after steering is not resid_post.%d + s v", name, l + 1, l);
    CHECK(rel_err(b, c, n) > 1e-4, "%s: steering changed nothing", name);
    free(a); free(b); free(c); free(v);
    g3_iv_free(&zero); g3_iv_free(&iv); g3_iv_free(&clean);
}

// The steering vector from two prompt sets against means taken from model/record.h's recorder
// (not this module's recording).
static void direct_mean(double *out, const G3Model *m, int layer, const int32_t *const *p, const int *lens, int np) {
    const int C = m->cfg.hidden;
    long n = 0;
    char pat[64];
    snprintf(pat, sizeof pat, "blocks.%d.hook_resid_post", layer);
    const char *pats[1] = {pat};
    for (int i = 0; i < C; i++) out[i] = 0;
    for (int k = 0; k < np; k++) {
        G3Recorder r;
        G3State *s = g3_state_new(m, 1, lens[k], lens[k], 0, NULL);
        if (!s || g3_rec_init(&r, &m->cfg, 1, lens[k], pats, 1)) { CHECK(0, "%s", g3_error()); return; }
        g3_rec_attach(&r, s);
        g3_prefill(s, 0, p[k], lens[k], NULL);
        const float *d = g3_rec_find(&r, G3_HOOK_RESID_POST, layer)->data;  // [1][T][C]
        for (int t = 0; t < lens[k]; t++) {
            if (p[k][t] == 2) continue;  // <bos>
            for (int i = 0; i < C; i++) out[i] += d[(long)t * C + i];
            n++;
        }
        g3_rec_free(&r);
        g3_state_free(s);
    }
    for (int i = 0; i < C; i++) out[i] /= n;
}

static void test_steer_from_sets(const char *name, const G3Model *m, const char *dir) {
    const int C = m->cfg.hidden, l = 3;
    int32_t p1[] = {2, 17, 300, 45, 99}, p2[] = {2, 5, 6, 7}, n1[] = {2, 100, 200, 300, 400, 500}, n2[] = {2, 9}, n3[] = {2, 11, 12, 13};
    const int32_t *pos[] = {p1, p2}, *neg[] = {n1, n2, n3};
    int pl[] = {5, 4}, nl[] = {6, 2, 4};
    float *v = malloc((size_t)C * sizeof *v);
    double *mp = malloc((size_t)C * sizeof *mp), *mn = malloc((size_t)C * sizeof *mn);
    CHECK(g3_steer_from_sets(v, m, l, pos, pl, 2, neg, nl, 3, 0) == 0, "%s", g3_error());
    direct_mean(mp, m, l, pos, pl, 2);
    direct_mean(mn, m, l, neg, nl, 3);
    double worst = 0, norm = 0;
    for (int i = 0; i < C; i++) { worst = fmax(worst, fabs(v[i] - (mp[i] - mn[i]))); norm = fmax(norm, fabs(mp[i] - mn[i])); }
    CHECK(worst <= 1e-5 * norm, "%s: steering vector off the difference of means by %.3g (max %.3g)", name, worst, norm);
    // the CLI computes and saves the same vector (prompt files in the ids: form)
    const char *bin = getenv("BIN");
    if (bin && access(bin, X_OK) == 0) {
        char pf[300], nf[300], out[300], cmd[2048];
        snprintf(pf, sizeof pf, "%s/pos.txt", tmpdir);
        snprintf(nf, sizeof nf, "%s/neg.txt", tmpdir);
        snprintf(out, sizeof out, "%s/v.npy", tmpdir);
        FILE *f = fopen(pf, "w");
        fprintf(f, "ids: 2,17,300,45,99\nids: 2,5,6,7\n");
        fclose(f);
        f = fopen(nf, "w");
        fprintf(f, "ids: 2,100,200,300,400,500\n\nids: 2,9\nids: 2,11,12,13\n");
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s intervene --model %s --ids 2,17,300 --exact --steer-from %s,%s --layer %d --save-vector %s > /dev/null 2>&1", bin, dir, pf, nf, l, out);
        CHECK(system(cmd) == 0, "%s failed", cmd);
        float *sv = NULL;
        int k = g3_vec_load(out, &sv);
        CHECK(k == C && same(sv, v, C), "%s: the CLI's saved vector (%d values) differs from the library's", name, k);
        free(sv);
    }
    free(v); free(mp); free(mn);
}

// Loss against the fixtures' F64 loss, KL against its definition, top-k ordering.
static void test_numbers(const char *name, const G3Model *m, const STSet *exp, const int32_t *ids, int T) {
    const int V = m->cfg.vocab;
    float *c = logits_of(m, NULL, ids, T);
    const STTensor *lt = st_find(exp, "loss");
    CHECK(lt || !strstr(name, "-f32"), "%s: the training fixture has no loss", name);
    if (lt) {
        double want = ((const double *)lt->data)[0], got = g3_loss_logits(c, ids, T, V);
        CHECK(fabs(got - want) <= 1e-6 * fabs(want), "%s: loss %.9g, fixture %.9g", name, got, want);
    }
    float p[4] = {1, 2, 3, 0.5f}, q[4] = {0.5f, 2, 1, 3};
    double pp[4], qq[4], kl = 0;
    g3_softmax_d(pp, p, 4);
    g3_softmax_d(qq, q, 4);
    for (int i = 0; i < 4; i++) kl += pp[i] * log(pp[i] / qq[i]);
    CHECK(fabs(g3_kl_logits(p, q, 4) - kl) < 1e-12 && g3_kl_logits(p, p, 4) == 0, "%s: KL %.15g vs %.15g", name, g3_kl_logits(p, q, 4), kl);
    int32_t top[5];
    double tp[5];
    int k = g3_topk(top, tp, c + (long)(T - 1) * V, V, 5);
    int ok = k == 5;
    for (int i = 1; i < k; i++) ok &= tp[i] <= tp[i - 1];
    for (int i = 0; i < V; i++) ok &= c[(long)(T - 1) * V + i] <= c[(long)(T - 1) * V + top[0]];
    CHECK(ok, "%s: top-k not sorted or not the argmax", name);
    free(c);
}

// Greedy generation: clean equals the fixture's greedy_ids; steered equals recomputing the
// steered logits from scratch at every step (decode steps are steered like the prompt).
static void test_generate(const char *name, const G3Model *m, const STSet *exp, const int32_t *ids, int T) {
    const int V = m->cfg.vocab, N = 6;
    int32_t *greedy, got[6], seq[512];
    int NG = fixture_ids(exp, "greedy_ids", &greedy);
    CHECK(g3_iv_generate(got, m, NULL, ids, T, G3_MIN(N, NG), 0) == 0, "%s", g3_error());
    CHECK(!memcmp(got, greedy, (size_t)G3_MIN(N, NG) * sizeof *got), "%s: clean greedy ids differ from the fixture", name);
    float *v = malloc((size_t)m->cfg.hidden * sizeof *v);
    for (int i = 0; i < m->cfg.hidden; i++) v[i] = (float)sin(i * 0.7) * 4;
    G3Intervention iv;
    g3_iv_init(&iv, m);
    g3_iv_steer(&iv, m->cfg.layers - 2, v, m->cfg.hidden, 2);
    g3_iv_ablate(&iv, "0.1", NULL, G3_ABLATE_ZERO, NULL, NULL, 0, 0);
    CHECK(g3_iv_generate(got, m, &iv, ids, T, N, 0) == 0, "%s", g3_error());
    memcpy(seq, ids, (size_t)T * sizeof *seq);
    int ok = 1;
    for (int i = 0; i < N; i++) {
        float *l = logits_of(m, &iv, seq, T + i);
        const float *row = l + (long)(T + i - 1) * V;
        int b = 0;
        for (int j = 1; j < V; j++) if (row[j] > row[b]) b = j;
        ok &= b == got[i];
        seq[T + i] = got[i];
        free(l);
    }
    CHECK(ok, "%s: intervened generation differs from recomputation", name);
    free(v); free(greedy);
    g3_iv_free(&iv);
}

// Library errors: clear, naming what is wrong.
static void expect_err(int rc, const char *needle, const char *what) {
    CHECK(rc < 0, "%s: accepted", what);
    CHECK(rc >= 0 || strstr(g3_error(), needle), "%s: message '%s' lacks '%s'", what, g3_error(), needle);
}

static void test_bad_input(const G3Model *m, const char *dir) {
    G3Intervention iv;
    g3_iv_init(&iv, m);
    int32_t ids[] = {2, 17, 300, 45};
    float v[3] = {1, 2, 3};
    expect_err(g3_iv_patch(&iv, "blocks.0.hook_nothing", ids, 4, 0, 0), "no hook site matches 'blocks.0.hook_nothing'", "unknown site");
    expect_err(g3_iv_patch(&iv, "blocks.9.hook_resid_post", ids, 4, 0, 0), "layer 9 is out of range", "site layer out of range");
    expect_err(g3_iv_patch(&iv, "hook_embed,,logits", ids, 4, 0, 0), "bad site list", "empty site in a list");
    expect_err(g3_iv_ablate(&iv, "9.0", NULL, G3_ABLATE_ZERO, NULL, NULL, 0, 0), "layer 9 is out of range", "head layer out of range");
    expect_err(g3_iv_ablate(&iv, "1.4", NULL, G3_ABLATE_ZERO, NULL, NULL, 0, 0), "head 4 is out of range", "head out of range");
    expect_err(g3_iv_ablate(&iv, "1", NULL, G3_ABLATE_ZERO, NULL, NULL, 0, 0), "want LAYER.HEAD", "head without a dot");
    expect_err(g3_iv_ablate(&iv, NULL, "6", G3_ABLATE_ZERO, NULL, NULL, 0, 0), "layer 6 is out of range", "MLP layer out of range");
    expect_err(g3_iv_ablate(&iv, NULL, "x", G3_ABLATE_ZERO, NULL, NULL, 0, 0), "bad item 'x'", "MLP layer not a number");
    expect_err(g3_iv_steer(&iv, 1, v, 3, 1), "has 3 values but the model's hidden size is 96", "steering vector size");
    expect_err(g3_iv_steer(&iv, 6, v, 3, 1), "out of range", "steering layer");
    expect_err(g3_iv_set(&iv, G3_HOOK_PATTERN, 1, -1, v, 3), "attention scores or patterns", "set on a pattern");
    expect_err(g3_iv_zero(&iv, G3_HOOK_RESID_POST, 1, 0), "has no heads", "head on a row site");
    expect_err(g3_iv_zero(&iv, G3_HOOK_EMBED, 2, -1), "belongs to no layer", "layer on hook_embed");
    CHECK(iv.nedit == 0, "failed calls left %d edits", iv.nedit);
    // last-position attention patches need equal lengths
    CHECK(g3_iv_patch(&iv, "blocks.1.attn.hook_pattern", ids, 3, 1, 0) == 1, "%s", g3_error());
    float *l = malloc(4L * m->cfg.vocab * sizeof *l);
    expect_err(g3_iv_logits(l, m, &iv, ids, 4, 0), "needs prompts of equal length", "last-position pattern patch");
    free(l);
    g3_iv_free(&iv);
    // vector files
    char p[400];
    float *out = NULL;
    snprintf(p, sizeof p, "%s/bad.txt", tmpdir);
    FILE *f = fopen(p, "w");
    fprintf(f, "1.0, 2.0\n3.0 oops\n");
    fclose(f);
    expect_err(g3_vec_load(p, &out), "bad.txt: line 2: 'oops", "text vector with a word");
    snprintf(p, sizeof p, "%s/bad.npy", tmpdir);
    f = fopen(p, "wb");
    fwrite("\x93NUMPY\x01\x00\x20\x00{'descr': '<i4', 'shape': (3,)}  \n", 1, 42, f);
    fclose(f);
    expect_err(g3_vec_load(p, &out), "float32 or float64", "npy of ints");
    expect_err(g3_vec_load("/nonexistent/v.npy", &out), "/nonexistent/v.npy", "missing file");
    // .npy round trip
    float w[5] = {1.5f, -2, 3e-8f, 4, 1e9f};
    snprintf(p, sizeof p, "%s/w.npy", tmpdir);
    CHECK(g3_vec_save_npy(p, w, 5) == 0, "%s", g3_error());
    int n = g3_vec_load(p, &out);
    CHECK(n == 5 && same(out, w, 5), ".npy round trip gave %d values", n);
    free(out);
    // the CLI: exit 1 (not a signal) with the message
    const char *bin = getenv("BIN");
    if (!bin || access(bin, X_OK)) return;
    char vf[300];
    snprintf(vf, sizeof vf, "%s/v10.txt", tmpdir);
    f = fopen(vf, "w");
    for (int i = 0; i < 10; i++) fprintf(f, "%d ", i);
    fclose(f);
    struct { const char *args, *needle; } cases[] = {
        {"--steer %s --layer 1", "v10.txt: the steering vector has 10 values but the model's hidden size is 96"},
        {"--steer %s --layer 7", "--layer 7 is out of range"},
        {"--patch blocks.0.hook_nope --source-ids 2,5", "no hook site matches 'blocks.0.hook_nope'"},
        {"--patch blocks.0.hook_z --source-ids 2,5", "no hook site matches"},
        {"--ablate-head 3.9", "head 9 is out of range"},
        {"--ablate-mlp 12", "layer 12 is out of range"},
        {"--patch hook_embed", "--patch needs exactly one of --source-prompt and --source-ids"},
        {"--ablation half", "neither zero nor mean"},
        {"--ablation mean", "needs --ablate-head or --ablate-mlp"},
        {"--scale 2", "needs --steer or --steer-from"},
        {"--steer-from %s --layer 1", "--steer-from wants POS_FILE,NEG_FILE"},
        {"--steer /nonexistent.npy --layer 1", "/nonexistent.npy"},
        {"--patch hook_embed --source-ids 2,5000", "outside the vocabulary"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(cases); i++) {
        char args[600], cmd[2048], outf[300];
        snprintf(args, sizeof args, cases[i].args, vf);
        snprintf(outf, sizeof outf, "%s/cli.txt", tmpdir);
        snprintf(cmd, sizeof cmd, "%s intervene --model %s --ids 2,17,300 --exact %s > %s 2>&1", bin, dir, args, outf);
        int st = system(cmd);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "'%s': exit status %d (want 1, no signal)", args, st);
        size_t len;
        char *txt = g3_read_file(outf, &len);
        CHECK(txt && strstr(txt, cases[i].needle), "'%s': output '%s' lacks '%s'", args, txt ? txt : "", cases[i].needle);
        free(txt);
    }
    // and a good run writes its JSON
    char cmd[2048], js[300];
    snprintf(js, sizeof js, "%s/out.json", tmpdir);
    snprintf(cmd, sizeof cmd, "%s intervene --model %s --ids 2,17,300,45 --exact --ablate-head 1.1 --ablate-mlp 2 --ablation mean "
                              "--patch 'blocks.3.*' --source-ids 2,9,9 --generate 3 --json %s > /dev/null 2>&1", bin, dir, js);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    size_t len;
    char *txt = g3_read_file(js, &len);
    CHECK(txt && strstr(txt, "\"kl\"") && strstr(txt, "\"loss\"") && strstr(txt, "\"generate\""), "JSON report incomplete: %s", txt ? txt : "");
    free(txt);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/g3_test_intervene_%d", (int)getpid());
    g3_mkdir_p(tmpdir);
    const char *names[] = {"gemma3-tiny-f32", "gemma2-tiny-f32", "gemma3-tiny-multimodal-layout"};
    for (size_t k = 0; k < G3_ARRAY_LEN(names); k++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", names[k]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        STSet exp;
        fixture_open(&exp, names[k]);
        int32_t *ids;
        int T = fixture_ids(&exp, "input_ids", &ids);
        test_nothing(names[k], &m, ids, T);
        test_patch_self(names[k], &m, ids, T);
        test_patch_last_layer(names[k], &m, ids, T);
        test_ablate_layer(names[k], &m, ids, T);
        test_mean_ablation(names[k], &m, ids, T);
        test_steer(names[k], &m, ids, T);
        test_numbers(names[k], &m, &exp, ids, T);
        test_generate(names[k], &m, &exp, ids, T);
        if (k == 0) {
            test_steer_from_sets(names[k], &m, dir);
            test_bad_input(&m, dir);
        }
        free(ids);
        st_close(&exp);
        g3_model_free(&m);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return check_done();
}
