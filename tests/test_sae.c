// test_sae.c: sparse autoencoders (analysis/sae.h) and the .npz reader (io/npz_read.h).
// Known answers: an identity-like SAE (W_enc = [I, -I], W_dec = [I; -I], no thresholds)
// reconstructs every row exactly, so `gemma3 sae` splices it in with no change in loss; the
// trainers, JumpReLU and TopK, recover the directions of synthetic activations built from
// known sparse features (best decoder-row cosine > 0.9 for every feature). Round trips: save
// in Gemma Scope 2's layout and load back; .npz written by npz.h (stored, deflated, zip64)
// read back; TopK against a direct selection. Bad input: wrong width for the site, missing
// tensors, NaN thresholds, shape mismatches, broken .npz archives, each with a clear
// message. (encode/decode against a numpy reference in both formats: tests/python/.)
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analysis/sae.h"
#include "base/base.h"
#include "base/rng.h"
#include "base/json.h"
#include "check.h"
#include "io/npz.h"
#include "io/npz_read.h"
#include "io/safetensors.h"
#include "model/model.h"

static float nrm(G3Rng *r) {
    double u = g3_rng_uniform(r), v = g3_rng_uniform(r);
    return (float)(sqrt(-2 * log(u > 0 ? u : 1e-300)) * cos(6.283185307179586 * v));
}

// W_enc = [I, -I] (D x 2D), W_dec = [I; -I]: f = (relu(x), relu(-x)), x^ = relu(x) - relu(-x) = x.
static void identity_sae(G3Sae *s, int D) {
    g3_sae_alloc(s, D, 2 * D);
    for (int d = 0; d < D; d++) {
        s->w_enc[(size_t)d * 2 * D + d] = 1;
        s->w_enc[(size_t)d * 2 * D + D + d] = -1;
        s->w_dec[(size_t)d * D + d] = 1;
        s->w_dec[(size_t)(D + d) * D + d] = -1;
    }
}

static void test_identity(const char *tmp) {
    const int D = 96, N = 7;
    G3Sae s;
    identity_sae(&s, D);
    G3Rng r;
    g3_rng_seed(&r, 1);
    float x[N * D], f[N * 2 * D], y[N * D];
    for (int i = 0; i < N * D; i++) x[i] = nrm(&r) * 3;
    CHECK(g3_sae_encode(&s, x, N, f) == 0, "%s", g3_error());
    g3_sae_decode(&s, f, N, y);
    CHECK(memcmp(x, y, sizeof x) == 0, "the identity-like SAE does not reconstruct exactly");
    CHECK(fabs(g3_sae_l0(f, N, 2 * D) - D) < 1.0, "L0 %g, want about %d (one of each pair)", g3_sae_l0(f, N, 2 * D), D);
    // saved in Gemma Scope 2's layout, loaded back: the same SAE
    char dir[512];
    snprintf(dir, sizeof dir, "%s/identity", tmp);
    snprintf(s.site, sizeof s.site, "blocks.2.hook_resid_post");
    CHECK(g3_sae_save(&s, dir, "\"note\": \"test\"") == 0, "%s", g3_error());
    G3Sae t;
    CHECK(g3_sae_load(&t, dir) == 0, "%s", g3_error());
    CHECK(t.d_model == D && t.d_sae == 2 * D && !strcmp(t.site, "blocks.2.hook_resid_post") && !strcmp(t.format, "gemma-scope-2"),
          "loaded %d x %d site '%s' format %s", t.d_model, t.d_sae, t.site, t.format);
    CHECK(t.w_enc && !memcmp(t.w_enc, s.w_enc, sizeof(float) * D * 2 * D) && !memcmp(t.w_dec, s.w_dec, sizeof(float) * D * 2 * D),
          "weights changed in the round trip");
    g3_sae_free(&t);
    g3_sae_free(&s);
}

// TopK keeps the k largest positive pre-activations, ties to the lower index.
static void test_topk(void) {
    G3Sae s;
    const int D = 4, S = 10;
    g3_sae_alloc(&s, D, S);
    s.kind = G3_SAE_TOPK;
    s.k = 3;
    for (int j = 0; j < S; j++) s.w_enc[j] = 1;  // pre_j = x[0] * 1 + b_enc[j]
    float b[10] = {0.5f, 3, -1, 2, 2, 7, 0.1f, 2, -5, 0};
    memcpy(s.b_enc, b, sizeof b);
    float x[4] = {0}, f[10];
    g3_sae_encode(&s, x, 1, f);
    float want[10] = {0, 3, 0, 2, 0, 7, 0, 0, 0, 0};
    CHECK(!memcmp(f, want, sizeof f), "TopK kept the wrong features: %g %g %g %g %g %g", f[0], f[1], f[3], f[4], f[5], f[7]);
    g3_sae_free(&s);
}

// Synthetic activations: K unit directions, each active with probability 3/K at a magnitude
// in [0.5, 1.5]; the SAE must find every direction among its decoder rows.
static void test_train(G3SaeKind kind) {
    const int D = 32, K = 24, S = 32, N = 256;
    G3Rng r;
    g3_rng_seed(&r, 7);
    float *truth = malloc(sizeof(float) * K * D), *x = malloc(sizeof(float) * N * D);
    for (int k = 0; k < K; k++) {
        double n = 0;
        for (int d = 0; d < D; d++) { truth[k * D + d] = nrm(&r); n += truth[k * D + d] * truth[k * D + d]; }
        for (int d = 0; d < D; d++) truth[k * D + d] /= (float)sqrt(n);
    }
    G3SaeTrainConfig c = g3_sae_train_defaults();
    c.kind = kind;
    c.d_model = D;
    c.d_sae = S;
    c.seed = 3;
    c.lr = 1e-2;
    if (kind == G3_SAE_TOPK) c.k = 3;
    else { c.l0_target = 3; c.lambda = 0.3; c.bandwidth = 0.05; c.init_threshold = 0.1; }
    G3SaeTrainer *t = g3_sae_trainer_new(&c);
    CHECK(t != NULL, "%s", g3_error());
    if (!t) return;
    G3SaeStepStats st = {0};
    int steps = kind == G3_SAE_TOPK ? 400 : 1000;
    for (int s = 0; s < steps; s++) {
        memset(x, 0, sizeof(float) * N * D);
        for (int b = 0; b < N; b++)
            for (int k = 0; k < K; k++)
                if (g3_rng_uniform(&r) < 3.0 / K) {
                    float a = 0.5f + (float)g3_rng_uniform(&r);
                    for (int d = 0; d < D; d++) x[b * D + d] += a * truth[k * D + d];
                }
        if (g3_sae_train_step(t, x, N, &st)) { CHECK(0, "%s", g3_error()); break; }
    }
    G3Sae sae;
    CHECK(g3_sae_trainer_export(t, &sae) == 0, "%s", g3_error());
    double worst = 1;
    for (int k = 0; k < K; k++) {
        double best = -1;
        for (int j = 0; j < S; j++) {
            double dot = 0;
            for (int d = 0; d < D; d++) dot += truth[k * D + d] * sae.w_dec[j * D + d];
            best = fmax(best, dot);
        }
        worst = fmin(worst, best);
    }
    const char *name = kind == G3_SAE_TOPK ? "TopK" : "JumpReLU";
    CHECK(worst > 0.9, "%s: a true feature's best decoder cosine is %.3f (want > 0.9)", name, worst);
    // TopK with k = 3 cannot rebuild the rows that hold more than 3 features (L0 is binomial)
    const double fvu_max = kind == G3_SAE_TOPK ? 0.25 : 0.1;
    CHECK(st.fvu < fvu_max && st.l0 > 2 && st.l0 < 4.5, "%s: last step fvu %.3f L0 %.2f", name, st.fvu, st.l0);
    // the exported SAE works in the input's units: it reconstructs the last batch as well
    float *f = malloc(sizeof(float) * N * S), *y = malloc(sizeof(float) * N * D);
    g3_sae_encode(&sae, x, N, f);
    g3_sae_decode(&sae, f, N, y);
    double e = 0, v = 0;
    for (int i = 0; i < N * D; i++) { e += (x[i] - y[i]) * (double)(x[i] - y[i]); v += (double)x[i] * x[i]; }
    CHECK(e / v < fvu_max, "%s: the exported SAE's relative error is %.3f", name, e / v);
    int64_t rows;
    const int64_t *fired = g3_sae_trainer_fired(t, &rows);
    CHECK(rows == (int64_t)N * steps && fired[0] >= 0, "%s: rows %lld", name, (long long)rows);
    printf("%s: worst feature cosine %.4f, fvu %.4f, L0 %.2f\n", name, worst, st.fvu, st.l0);
    free(f); free(y);
    g3_sae_free(&sae);
    g3_sae_trainer_free(t);
    free(truth);
    free(x);
}

static void test_npz(const char *tmp) {
    char p[512];
    float a[12], big[3000];
    for (int i = 0; i < 12; i++) a[i] = i * 0.25f - 1;
    for (int i = 0; i < 3000; i++) big[i] = (float)(i % 97);
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/rt%d.npz", tmp, k);
        G3Npz z;
        int64_t sa[2] = {3, 4}, sb[1] = {3000};
        int32_t ids[2] = {5, -7};
        int64_t si[1] = {2};
        CHECK(g3_npz_open(&z, p, k == 1) == 0, "%s", g3_error());
        z.force_zip64 = k == 2;
        CHECK(g3_npz_add(&z, "W_enc", G3_NPZ_F32, 2, sa, a) == 0 && g3_npz_add(&z, "big", G3_NPZ_F32, 1, sb, big) == 0 &&
              g3_npz_add(&z, "ids", G3_NPZ_I32, 1, si, ids) == 0 && g3_npz_close(&z) == 0, "%s", g3_error());
        G3NpzFile r;
        CHECK(g3_npz_read_open(&r, p) == 0, "case %d: %s", k, g3_error());
        const G3NpyArray *x = g3_npz_find(&r, "W_enc"), *y = g3_npz_find(&r, "big"), *i = g3_npz_find(&r, "ids");
        CHECK(r.n == 3 && x && y && i && x->ndim == 2 && x->shape[0] == 3 && x->shape[1] == 4 && i->dtype == G3_I32, "case %d: directory", k);
        float back[3000];
        CHECK(x && g3_npz_read_f32(&r, x, back) == 0 && !memcmp(back, a, sizeof a), "case %d: W_enc differs", k);
        CHECK(y && g3_npz_read_f32(&r, y, back) == 0 && !memcmp(back, big, sizeof big), "case %d: big differs", k);
        CHECK(i && g3_npz_read_f32(&r, i, back) == -1 && strstr(g3_error(), "not floating point"), "case %d: int read as float", k);
        g3_npz_read_close(&r);
    }
    // damaged archives fail with a message, never crash: every truncation and a flipped byte
    // in each region of the deflated one
    snprintf(p, sizeof p, "%s/rt1.npz", tmp);
    size_t len;
    char *bytes = g3_read_file(p, &len);
    int refused = 0, cuts = 0;
    for (size_t cut = 0; bytes && cut < len; cut += 7, cuts++) {
        G3NpzFile r;
        if (g3_npz_read_mem(&r, bytes, cut, "cut.npz") == 0) g3_npz_read_close(&r);
        else refused++;
    }
    CHECK(refused == cuts, "%d of %d truncated archives opened", cuts - refused, cuts);
    int bad = 0;
    for (size_t at = 0; bytes && at < len; at += 13) {
        bytes[at] ^= 0x5a;
        G3NpzFile r;
        if (g3_npz_read_mem(&r, bytes, len, "flip.npz") == 0) {
            const G3NpyArray *y = g3_npz_find(&r, "big");
            float back[3000];
            if (y && y->numel == 3000 && g3_npz_read_f32(&r, y, back) == 0 && memcmp(back, big, sizeof big)) bad++;
            g3_npz_read_close(&r);
        }
        bytes[at] ^= 0x5a;
    }
    CHECK(bad == 0, "%d flipped bytes gave wrong data without an error (the CRC must catch them)", bad);
    free(bytes);
}

// An SAE folder with the given tensors (NULL data: left out) in Gemma Scope 2's layout.
static void write_gs2(const char *dir, int D, int S, int drop, float th_value) {
    g3_mkdir_p(dir);
    float *we = calloc((size_t)D * S, 4), *wd = calloc((size_t)D * S, 4), *be = calloc(S, 4), *th = calloc(S, 4), *bd = calloc(D, 4);
    for (int j = 0; j < S; j++) th[j] = th_value;
    STWriter w = {0};
    int64_t se[2] = {D, S}, sd[2] = {S, D}, ss[1] = {S}, sm[1] = {D};
    if (drop != 0) st_writer_add(&w, "w_enc", G3_F32, 2, se, we);
    if (drop != 1) st_writer_add(&w, "b_enc", G3_F32, 1, ss, be);
    if (drop != 2) st_writer_add(&w, "threshold", G3_F32, 1, ss, th);
    if (drop != 3) st_writer_add(&w, "w_dec", G3_F32, 2, sd, wd);
    if (drop != 4) st_writer_add(&w, "b_dec", G3_F32, 1, sm, bd);
    char p[600];
    snprintf(p, sizeof p, "%s/params.safetensors", dir);
    st_writer_write(&w, p, NULL);
    st_writer_free(&w);
    free(we); free(wd); free(be); free(th); free(bd);
}

static void test_bad(const char *tmp) {
    char dir[512];
    G3Sae s;
    const char *names[] = {"w_enc", "b_enc", "threshold", "w_dec", "b_dec"};
    for (int drop = 0; drop < 5; drop++) {
        snprintf(dir, sizeof dir, "%s/drop%d", tmp, drop);
        write_gs2(dir, 8, 16, drop, 0.5f);
        CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), names[drop]) && strstr(g3_error(), "params.safetensors"),
              "missing %s: %s", names[drop], g3_error());
    }
    snprintf(dir, sizeof dir, "%s/nan", tmp);
    write_gs2(dir, 8, 16, -1, NAN);
    CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), "threshold[0]") && strstr(g3_error(), "finite"), "NaN threshold: %s", g3_error());
    snprintf(dir, sizeof dir, "%s/inf", tmp);
    write_gs2(dir, 8, 16, -1, INFINITY);
    CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), "threshold"), "inf threshold: %s", g3_error());
    CHECK(g3_sae_load(&s, tmp) == -1 && strstr(g3_error(), "params.npz"), "empty folder: %s", g3_error());
    // a config that disagrees with the tensors, and one with an unknown architecture
    snprintf(dir, sizeof dir, "%s/cfg", tmp);
    write_gs2(dir, 8, 16, -1, 0.5f);
    char p[600];
    snprintf(p, sizeof p, "%s/config.json", dir);
    g3_write_file_atomic(p, "{\"width\": 32}", 13);
    CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), "width 32"), "config width: %s", g3_error());
    g3_write_file_atomic(p, "{\"architecture\": \"gated\"}", 25);
    CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), "gated"), "architecture: %s", g3_error());
    g3_write_file_atomic(p, "{\"architecture\": \"jumprelu\", \"hook_name\": \"blocks.3.hook_resid_post\"}", 69);
    CHECK(g3_sae_load(&s, dir) == 0 && !strcmp(s.site, "blocks.3.hook_resid_post"), "site from the config: %s", g3_error());
    // width for the site: the tiny model's hidden size is 96, this SAE reads 8
    G3Model m;
    CHECK(g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32") == 0, "%s", g3_error());
    CHECK(g3_sae_check_site(&s, &m.cfg, "blocks.3.hook_resid_post") == -1 && strstr(g3_error(), "wrong width") && strstr(g3_error(), "96"),
          "wrong width: %s", g3_error());
    CHECK(g3_sae_check_site(&s, &m.cfg, "blocks.9.hook_resid_post") == -1 && strstr(g3_error(), "6 layers"), "layer: %s", g3_error());
    CHECK(g3_sae_check_site(&s, &m.cfg, "blocks.1.attn.hook_pattern") == -1, "a pattern site accepted");
    g3_model_free(&m);
    g3_sae_free(&s);
    // shapes that disagree: w_dec [S, D] written as [D, S]
    snprintf(dir, sizeof dir, "%s/shape", tmp);
    g3_mkdir_p(dir);
    float z[8 * 16] = {0};
    STWriter w = {0};
    int64_t se[2] = {8, 16}, ss[1] = {16}, sm[1] = {8};
    st_writer_add(&w, "w_enc", G3_F32, 2, se, z);
    st_writer_add(&w, "b_enc", G3_F32, 1, ss, z);
    st_writer_add(&w, "threshold", G3_F32, 1, ss, z);
    st_writer_add(&w, "w_dec", G3_F32, 2, se, z);
    st_writer_add(&w, "b_dec", G3_F32, 1, sm, z);
    snprintf(p, sizeof p, "%s/params.safetensors", dir);
    st_writer_write(&w, p, NULL);
    st_writer_free(&w);
    CHECK(g3_sae_load(&s, dir) == -1 && strstr(g3_error(), "w_dec has shape [8, 16]"), "shape: %s", g3_error());
}

// `gemma3 sae` with the identity-like SAE on the tiny model: reconstruction exact, no change in
// loss, --save writes both arrays; wrong width and bad --steer are refused.
static void test_cli(const char *tmp) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    G3Sae s;
    identity_sae(&s, 96);
    char dir[512], out[600], log[600];
    snprintf(dir, sizeof dir, "%s/cli", tmp);
    CHECK(g3_sae_save(&s, dir, NULL) == 0, "%s", g3_error());
    g3_sae_free(&s);
    snprintf(out, sizeof out, "%s/feat.safetensors", tmp);
    snprintf(log, sizeof log, "%s/sae.log", tmp);
    const char *fx = "tests/fixtures/gemma3-tiny-f32", *ids = "2,17,300,45,9,800,3";
    char html[600];
    snprintf(html, sizeof html, "%s/sae.html", tmp);
    CHECK(sh("%s sae --model %s --sae %s --site blocks.2.hook_resid_post --ids %s --exact --save %s --top 3 --html %s > %s 2>&1", bin, fx, dir, ids, out,
             html, log) == 0,
          "gemma3 sae failed (%s)", log);
    size_t n;
    char *txt = g3_read_file(log, &n);
    CHECK(txt && strstr(txt, "MSE 0,") && strstr(txt, "change +0.00000"), "identity SAE: %s", txt ? txt : "(no output)");
    free(txt);
    STSet st;
    CHECK(st_open(&st, out) == 0, "%s", g3_error());
    const STTensor *f = st_find(&st, "features"), *r = st_find(&st, "reconstruction");
    CHECK(f && r && f->dtype == G3_F32 && f->shape[0] == 7 && f->shape[1] == 192 && r->shape[0] == 7 && r->shape[1] == 96, "saved shapes");
    if (f && r) {
        const float *F = f->data, *R = r->data;
        int ok = 1;
        for (int t = 0; t < 7; t++)
            for (int d = 0; d < 96; d++) ok &= R[t * 96 + d] == F[t * 192 + d] - F[t * 192 + 96 + d];
        CHECK(ok, "reconstruction is not relu(x) - relu(-x) of the features");
    }
    // the page: its data is the run's (every token's top features, each listed feature's
    // activation at every token equal to the saved features)
    size_t hn;
    char *page = g3_read_file(html, &hn);
    const char *a = page ? strstr(page, "id=\"g3data\">") : NULL, *b = a ? strstr(a, "</script>") : NULL;
    CHECK(a && b, "--html: no data in %s", html);
    if (a && b && f) {
        a += strlen("id=\"g3data\">");
        Json j;
        CHECK(json_parse(&j, a, (size_t)(b - a)) == 0, "--html data: %s", g3_error());
        const JsonNode *root = json_root(&j), *toks = json_get(root, "tokens"), *feats = json_get(root, "features");
        CHECK(json_int(json_get(root, "T")) == 7 && toks && toks->count == 7 && feats, "--html: T and tokens");
        const float *F = f->data;
        int ok = 1, nf = 0;
        for (int t = 0; toks && t < 7; t++) {
            const JsonNode *top = json_get(json_at(toks, t), "top");
            ok &= top && top->count >= 1 && top->count <= 10;  // at least 10 listed when --top is smaller
            for (size_t k = 0; top && k < top->count; k++) {
                const JsonNode *pr = json_at(top, k);
                int fi = (int)json_int(json_at(pr, 0));
                char key[16];
                snprintf(key, sizeof key, "%d", fi);
                const JsonNode *acts = json_get(feats, key);
                ok &= acts && acts->count == 7 && fabs(json_at(acts, t)->num - F[t * 192 + fi]) <= 1e-4 * (1 + fabs(F[t * 192 + fi]));
                nf++;
            }
        }
        CHECK(ok && nf > 7, "--html: per-token features disagree with --save's (%d listed)", nf);
        json_free(&j);
    }
    free(page);
    st_close(&st);
    CHECK(sh("%s sae --model %s --sae %s --site blocks.2.mlp.hook_post --ids %s > /dev/null 2> %s", bin, fx, dir, ids, log) == 1, "wrong width accepted");
    txt = g3_read_file(log, &n);
    CHECK(txt && strstr(txt, "wrong width"), "message: %s", txt ? txt : "");
    free(txt);
    CHECK(sh("%s sae --model %s --sae %s --site blocks.2.hook_resid_post --ids %s --steer 500:1 > /dev/null 2>&1", bin, fx, dir, ids) == 1, "feature 500 of 192 accepted");
    CHECK(sh("%s sae --model %s --sae %s --site blocks.2.hook_resid_post --ids %s --steer 5:2 --generate 3 > %s 2>&1", bin, fx, dir, ids, log) == 0, "steering failed");
    // sae train on the tiny model streams activations and saves a loadable SAE
    snprintf(out, sizeof out, "%s/trained", tmp);
    CHECK(sh("%s sae train --model %s --site blocks.1.hook_resid_post --random --width 64 --l0 8 --steps 6 --batch 64 --seq 16 --log-every 3 --out %s 2> %s",
             bin, fx, out, log) == 0, "sae train failed (%s)", log);
    G3Sae t;
    CHECK(g3_sae_load(&t, out) == 0 && t.d_model == 96 && t.d_sae == 64 && !strcmp(t.site, "blocks.1.hook_resid_post"), "trained SAE: %s", g3_error());
    g3_sae_free(&t);
    txt = g3_read_file(log, &n);
    CHECK(txt && strstr(txt, "never fired"), "dead-feature statistics missing: %s", txt ? txt : "");
    free(txt);
}

int main(void) {
    char tmp[] = "/tmp/g3saeXXXXXX";
    if (!mkdtemp(tmp)) return 2;
    test_identity(tmp);
    test_topk();
    test_npz(tmp);
    test_bad(tmp);
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);  // tiny products: threads only add overhead
    test_train(G3_SAE_TOPK);
    test_train(G3_SAE_JUMPRELU);
    omp_set_num_threads(nt);
    test_cli(tmp);
    sh("rm -rf %s", tmp);
    return check_done();
}
