// test_quant_weighted.c: importance-weighted rounding (quant_weighted.c) and the importance
// it is weighted by (quantize_imatrix.c).
// - each type with a scale choice, on random rows with random importances: the weighted error
//   sum w (x - x')^2 of every row never above the reference quantizer's, and clearly below it
//   in total (the search does something); the result decodes as the type (the type's own
//   to_f32 is what the error is measured on);
// - no weights, or all weights equal: exactly the reference quantizer's bytes;
// - the importance of each matrix of the tiny fixture equals the mean x^2 of the activations a
//   hook records at its input site (ln1 / attn.hook_z / ln2 / mlp.hook_post) over the tokens,
//   the tied embedding's 1 + ln_final's mean x^2 over its mean; in one chunk and in three
//   (1100 tokens: chunks of 512 from position 0, bos first);
// - `gemma3 quantize --calibrate`: a missing or empty calibration file exits 1 naming it; a
//   weighted Q4_0 file of the fixture loads and gives logits within Q4_0's tolerance, and
//   differs from the unweighted one.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "fixtures.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/quantize_imatrix.h"
#include "tensor/quant.h"

static double werr(const float *x, const float *y, const float *w, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static void rounding(void) {
    const G3DType types[] = {G3_Q8_0, G3_Q4_0, G3_Q4_1, G3_Q5_0, G3_Q5_1, G3_Q4_K, G3_Q5_K, G3_Q6_K};
    enum { N = 512, ROWS = 64 };
    float *x = malloc(N * sizeof *x), *w = malloc(N * sizeof *w), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z);
    uint8_t *a = malloc(N * 2), *b = malloc(N * 2);
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3TypeTraits *tt = g3_type(types[ti]);
        double ew = 0, er = 0;
        int worse = 0, same_null = 1, same_equal = 1;
        const int64_t rb = g3_type_row_bytes(types[ti], N);
        for (int r = 0; r < ROWS; r++) {
            const double sc = exp(nrand());
            for (int i = 0; i < N; i++) {
                x[i] = (float)(sc * nrand() * (urand() < 0.02 ? 4 : 1));  // some outliers, as in trained weights
                w[i] = (float)exp(2 * nrand());                              // importances over orders of magnitude
            }
            tt->from_f32(a, x, N);
            g3_quant_weighted(types[ti], b, x, w, N);
            tt->to_f32(y, a, N);
            tt->to_f32(z, b, N);
            const double e0 = werr(x, y, w, N), e1 = werr(x, z, w, N);
            worse += e1 > e0;
            er += e0, ew += e1;
            g3_quant_weighted(types[ti], b, x, NULL, N);
            same_null &= !memcmp(a, b, (size_t)rb);
            for (int i = 0; i < N; i++) w[i] = 0.25f;
            g3_quant_weighted(types[ti], b, x, w, N);
            same_equal &= !memcmp(a, b, (size_t)rb);
        }
        printf("%-5s weighted error / reference's: %.3f\n", tt->name, ew / er);
        CHECK(worse == 0, "%s: %d rows with a weighted error above the reference's", tt->name, worse);
        CHECK(ew < 0.9 * er, "%s: weighted error %.4g not clearly below the reference's %.4g", tt->name, ew, er);
        CHECK(same_null, "%s: no weights: not the reference's bytes", tt->name);
        CHECK(same_equal, "%s: equal weights: not the reference's bytes", tt->name);
    }
    free(x), free(w), free(y), free(z), free(a), free(b);
}

typedef struct {
    const G3Model *m;
    double *sum[64][4], *fin;
    int cols[64][4], fin_rows;
} Rec;

static void rec_hook(void *ctx, const G3HookEvent *ev) {
    Rec *r = ctx;
    if (ev->site == G3_HOOK_LN_FINAL) {
        if (!r->fin) r->fin = calloc((size_t)ev->cols, sizeof(double));
        for (int i = 0; i < ev->rows; i++)
            for (int k = 0; k < ev->cols; k++) r->fin[k] += (double)ev->data[(size_t)i * ev->cols + k] * ev->data[(size_t)i * ev->cols + k];
        r->fin_rows += ev->rows;
        return;
    }
    const int sl = ev->site == G3_HOOK_LN1 ? 0 : ev->site == G3_HOOK_Z ? 1 : ev->site == G3_HOOK_LN2 ? 2 : 3;
    if (!r->sum[ev->layer][sl]) r->sum[ev->layer][sl] = calloc((size_t)ev->cols, sizeof(double)), r->cols[ev->layer][sl] = ev->cols;
    for (int i = 0; i < ev->rows; i++)
        for (int k = 0; k < ev->cols; k++) r->sum[ev->layer][sl][k] += (double)ev->data[(size_t)i * ev->cols + k] * ev->data[(size_t)i * ev->cols + k];
}

// The importance of m on ids[n] (chunks of 512 from position 0, bos first) against the same
// activations recorded by a hook directly; returns the matrices checked.
static int importance_on(G3Model *m, const int32_t *ids, int n, int bos) {
    Rec r = {m, {{0}}, NULL, {{0}}, 0};
    const int ctx = n < 512 ? n : 512;
    G3State *s = g3_state_new(m, 1, ctx, ctx, 0, NULL);
    g3_state_set_hook(s, rec_hook, &r, 1u << G3_HOOK_LN1 | 1u << G3_HOOK_Z | 1u << G3_HOOK_LN2 | 1u << G3_HOOK_MLP_POST | 1u << G3_HOOK_LN_FINAL, ~0ull);
    int32_t *chunk = malloc((size_t)ctx * sizeof *chunk);
    for (int c0 = 0; s && c0 < n; c0 += ctx) {
        const int len = n - c0 < ctx ? n - c0 : ctx;
        memcpy(chunk, ids + c0, (size_t)len * sizeof *chunk);
        if (bos >= 0) chunk[0] = bos;
        g3_state_reset(s, 0);
        G3Segment seg = {0, 0, len};
        CHECK(g3_forward(s, chunk, &seg, 1, G3_LOGITS_ALL) == 0, "forward: %s", g3_error());
    }
    CHECK(s != NULL, "state: %s", g3_error());
    g3_state_free(s);
    free(chunk);
    float **imp = calloc((size_t)m->nt, sizeof *imp);
    CHECK(g3_quant_importance(m, ids, n, bos, imp, 0) == 0, "importance: %s", g3_error());
    int matrices = 0, emb = 0;
    double worst = 0;
    for (int i = 0; i < m->nt; i++) {
        const G3Tensor *t = &m->t[i];
        const int sl = t->role == W_Q || t->role == W_K || t->role == W_V ? 0 : t->role == W_O ? 1
                     : t->role == W_GATE || t->role == W_UP ? 2 : t->role == W_DOWN ? 3 : -1;
        if (t->kind == G3_KIND_EMBED && r.fin && r.fin_rows == n) {
            // the tied embedding: 1 (its input role) + ln_final's mean x^2 over its mean
            double mean = 0;
            for (int k = 0; k < m->cfg.hidden; k++) mean += r.fin[k] / n;
            mean /= m->cfg.hidden;
            for (int k = 0; imp[i] && k < m->cfg.hidden; k++) {
                const double want = 1 + r.fin[k] / n / mean, d = fabs(imp[i][k] - want) / want;
                if (d > worst) worst = d;
            }
            CHECK(imp[i] != NULL, "the embedding has no importance");
            emb++;
            continue;
        }
        if (t->layer < 0 || sl < 0 || t->ndim != 2) { CHECK(!imp[i], "%s: an importance for a non-linear weight", t->name); continue; }
        matrices++;
        if (!imp[i] || !r.sum[t->layer][sl] || r.cols[t->layer][sl] != t->shape[1]) { CHECK(0, "%s: no importance or wrong width", t->name); continue; }
        for (int64_t k = 0; k < t->shape[1]; k++) {
            const double want = r.sum[t->layer][sl][k] / n, d = fabs(imp[i][k] - want) / (want + 1e-30);
            if (d > worst) worst = d;
        }
    }
    printf("importance on %d tokens, %d matrices and the embedding against the recorded activations: worst relative difference %.2e\n", n,
           matrices, worst);
    CHECK(emb == 1, "the embedding's importance checked %d times", emb);
    CHECK(matrices == 7 * m->cfg.layers, "%d matrices with an importance, want %d", matrices, 7 * m->cfg.layers);
    CHECK(worst < 1e-5, "%d tokens: importance differs from mean x^2 of the recorded inputs by %.3g", n, worst);
    g3_quant_importance_free(imp, m->nt);
    free(imp);
    for (int l = 0; l < 64; l++)
        for (int k = 0; k < 4; k++) free(r.sum[l][k]);
    free(r.fin);
    return matrices;
}

static void importance(void) {
    G3Model m;
    if (g3_model_load(&m, "tests/fixtures/gemma3-tiny-f32")) { CHECK(0, "%s", g3_error()); return; }
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32");
    int32_t *ids;
    int T = fixture_ids(&exp, "input_ids", &ids);
    importance_on(&m, ids, T, -1);  // one chunk, the ids as they are
    // three chunks (512, 512, 76), each starting with bos
    enum { N = 1100 };
    int32_t *many = malloc(N * sizeof *many);
    for (int i = 0; i < N; i++) many[i] = (int32_t)(urand() * (m.cfg.vocab - 1));
    importance_on(&m, many, N, 2);
    free(many);
    free(ids);
    st_close(&exp);
    g3_model_free(&m);
}

static void cli(void) {
    const char *fx = "tests/fixtures/gemma3-tiny-f32";
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/g3_qw_%d", (int)getpid());
    CHECK(sh("mkdir -p %s && : > %s/empty.txt", tmp, tmp) == 0, "mkdir");
    CHECK(sh("./gemma3 quantize --model models/default --out %s/x.gguf --type Q4_0 --calibrate %s/missing.txt 2> %s/err.txt", tmp, tmp, tmp) == 1,
          "missing calibration file: exit 1");
    CHECK(sh("grep -q 'missing.txt: cannot open' %s/err.txt", tmp) == 0, "missing calibration file: the message names it");
    CHECK(sh("./gemma3 quantize --model models/default --out %s/x.gguf --type Q4_0 --calibrate %s/empty.txt 2> %s/err.txt", tmp, tmp, tmp) == 1,
          "empty calibration file: exit 1");
    CHECK(sh("grep -q 'empty.txt: no calibration tokens' %s/err.txt", tmp) == 0, "empty calibration file: the message names it");
    CHECK(sh("./gemma3 quantize --model %s --out %s/x.gguf --type Q4_0 --unweighted 2>/dev/null", fx, tmp) == 1, "--unweighted alone: exit 1");
    CHECK(sh("./gemma3 quantize --model %s --out %s/x.gguf --type Q4_0 --calibrate-ids 5000000 2>/dev/null", fx, tmp) == 1, "ids outside: exit 1");
    // the fixture's own ids as the calibration; the weighted file loads, is close, and differs
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32");
    int32_t *ids;
    int T = fixture_ids(&exp, "input_ids", &ids);
    char list[4096] = "";
    for (int i = 0, o = 0; i < T && o < (int)sizeof list - 16; i++) o += snprintf(list + o, sizeof list - (size_t)o, "%s%d", i ? "," : "", ids[i]);
    CHECK(sh("./gemma3 quantize --model %s --out %s/w.gguf --type Q4_0 --calibrate-ids %s --quiet 2>/dev/null", fx, tmp, list) == 0, "weighted Q4_0");
    CHECK(sh("./gemma3 quantize --model %s --out %s/u.gguf --type Q4_0 --calibrate-ids %s --unweighted --quiet 2>/dev/null", fx, tmp, list) == 0,
          "--unweighted Q4_0");
    CHECK(sh("./gemma3 quantize --model %s --out %s/p.gguf --type Q4_0 --quiet 2>/dev/null", fx, tmp) == 0, "plain Q4_0");
    CHECK(sh("cmp -s %s/u.gguf %s/p.gguf", tmp, tmp) == 0, "--unweighted: not the plain file");
    CHECK(sh("cmp -s %s/w.gguf %s/p.gguf", tmp, tmp) != 0, "weighted: the same bytes as the plain file");
    G3Model m, q;
    if (!g3_model_load(&m, fx)) {
        char path[128];
        snprintf(path, sizeof path, "%s/w.gguf", tmp);
        if (!g3_model_load(&q, path)) {
            const int V = m.cfg.vocab;
            float *a = malloc((size_t)T * V * sizeof *a), *b = malloc((size_t)T * V * sizeof *b);
            G3State *s = g3_state_new(&m, 1, T, T, 0, NULL), *t = g3_state_new(&q, 1, T, T, 0, NULL);
            CHECK(s && t && g3_prefill(s, 0, ids, T, a) == 0 && g3_prefill(t, 0, ids, T, b) == 0, "%s", g3_error());
            const double e = rel_err(b, a, (long)T * V);
            printf("weighted Q4_0 of the fixture: logits rel err %.3g against F32\n", e);
            CHECK(e < 3.2e-1, "weighted Q4_0: logits rel err %.3g", e);
            g3_state_free(s), g3_state_free(t);
            free(a), free(b);
            g3_model_free(&q);
        } else CHECK(0, "%s", g3_error());
        g3_model_free(&m);
    }
    free(ids);
    st_close(&exp);
    sh("rm -rf %s", tmp);
}

int main(void) {
    rounding();
    importance();
    cli();
    return check_done();
}
