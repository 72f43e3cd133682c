// test_analyze.c: the analysis metrics on synthetic patterns with known answers (uniform,
// previous-token, <bos>, induction stripes; orthogonal and rank-1 matrices; eigenvalues
// against a Jacobi reference written here), then g3_analyze_run on fixtures against figures
// computed in this file from the float64 reference activations (attn.{i}, layer.{i},
// logits), and the JSON and HTML reports (the JSON parses, the HTML fetches nothing and holds
// the data, token text with <, &, quotes, newlines and invalid UTF-8 comes out escaped).
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analysis/analyze.h"
#include "analysis/report.h"
#include "base/json.h"
#include "base/rng.h"
#include "check.h"
#include "fixtures.h"
#include "model/init.h"

static float *square(int T) { return calloc((size_t)T * T, sizeof(float)); }

static void test_rows(void) {
    float u[7], one[7] = {0, 0, 1, 0, 0, 0, 0};
    for (int i = 0; i < 7; i++) u[i] = 1.0f / 7;
    CHECK(fabs(g3_an_entropy(u, 7) - log(7.0)) < 1e-6, "uniform entropy %g", g3_an_entropy(u, 7));
    CHECK(g3_an_entropy(one, 7) == 0, "one-hot entropy");
    CHECK(fabs(g3_an_distance(one, 6) - 4) < 1e-12, "distance of key 2 from query 6");
    CHECK(fabs(g3_an_distance(u, 6) - 21.0 / 7) < 1e-6, "uniform distance");  // sum_{k<6} (6-k)/7
    int bk[][2] = {{0, 0}, {1, 1}, {2, 2}, {3, 2}, {4, 3}, {7, 3}, {8, 4}, {1 << 20, G3_AN_NBUCKET - 1}};
    for (size_t i = 0; i < G3_ARRAY_LEN(bk); i++) CHECK(g3_an_bucket(bk[i][0]) == bk[i][1], "bucket(%d) = %d", bk[i][0], g3_an_bucket(bk[i][0]));
    float a[4] = {1, 0, 0, 0}, b[4] = {0, 1, 0, 0};
    CHECK(fabs(g3_an_js(a, b, 4) - log(2.0)) < 1e-12, "disjoint JS = log 2");
    CHECK(g3_an_js(u, u, 7) == 0, "JS of identical rows");
    float c[2] = {0.5f, 0.5f};  // JS([1,0], [.5,.5]) = .5 log(1/.75) + .25 log(.5/.75) + .25 log(.5/.25)... by hand:
    double m0 = 0.75, m1 = 0.25, ref = 0.5 * (1 * log(1 / m0)) + 0.5 * (0.5 * log(0.5 / m0) + 0.5 * log(0.5 / m1));
    CHECK(fabs(g3_an_js(a, c, 2) - ref) < 1e-7, "JS %g vs %g", g3_an_js(a, c, 2), ref);
}

static void test_heads(void) {
    const int T = 9;
    float *prev = square(T), *bos = square(T), *uni = square(T);
    prev[0] = bos[0] = 1;
    for (int q = 1; q < T; q++) { prev[q * T + q - 1] = 1; bos[q * T] = 1; }
    for (int q = 0; q < T; q++)
        for (int k = 0; k <= q; k++) uni[q * T + k] = 1.0f / (q + 1);
    G3AnHead h;
    g3_an_head(&h, prev, T);
    CHECK(fabs(h.prev - 1) < 1e-12 && fabs(h.distance - 1) < 1e-12 && h.entropy == 0, "previous-token head: prev %g dist %g ent %g", h.prev, h.distance, h.entropy);
    CHECK(fabs(h.bos - 1.0 / (T - 1)) < 1e-12, "previous-token head <bos> mass %g", h.bos);  // only q = 1 lands on 0
    CHECK(fabs(h.hist[1] - 1) < 1e-12 && h.hist[0] == 0, "previous-token histogram");
    CHECK(isnan(h.induction), "induction unset");
    g3_an_head(&h, bos, T);
    CHECK(fabs(h.bos - 1) < 1e-12 && fabs(h.distance - T / 2.0) < 1e-12, "<bos> head: bos %g distance %g", h.bos, h.distance);
    double hsum = 0;
    for (int b = 0; b < G3_AN_NBUCKET; b++) hsum += h.hist[b];
    CHECK(fabs(hsum - 1) < 1e-12 && fabs(h.hist[4] - 1.0 / 8) < 1e-12, "<bos> histogram: sum %g, bucket 4 (distance 8) %g", hsum, h.hist[4]);
    g3_an_head(&h, uni, T);
    double ent = 0, dist = 0;
    for (int q = 1; q < T; q++) { ent += log(q + 1.0); dist += q / 2.0; }
    CHECK(fabs(h.entropy - ent / (T - 1)) < 1e-6 && fabs(h.distance - dist / (T - 1)) < 1e-6, "uniform causal head: ent %g dist %g", h.entropy, h.distance);
    // JS between the previous-token and <bos> heads: row 1 agrees, rows 2..T-1 are disjoint
    double js = g3_an_js_heads(prev, bos, T);
    CHECK(fabs(js - log(2.0) * (T - 2) / (T - 1)) < 1e-9, "JS(prev, bos) %g", js);
    CHECK(g3_an_js_heads(uni, uni, T) == 0, "JS of a head with itself");
    // induction stripe on [bos, r1..rn, r1..rn]: second-copy position n+i looks at i+1
    const int n = 5, T2 = 2 * n + 1;
    float *ind = square(T2);
    for (int q = 0; q < T2; q++) ind[q * T2] = 1;
    for (int i = 1; i <= n; i++) { ind[(n + i) * T2] = 0; ind[(n + i) * T2 + i + 1] = 1; }
    CHECK(fabs(g3_an_induction(ind, n) - 1) < 1e-12, "perfect induction head %g", g3_an_induction(ind, n));
    float *pv = square(T2);
    for (int q = 1; q < T2; q++) pv[q * T2 + q - 1] = 1;
    CHECK(g3_an_induction(pv, n) == 0, "a previous-token head is no induction head");
    free(prev); free(bos); free(uni); free(ind); free(pv);
}

// Cyclic Jacobi eigenvalues: the slow, simple reference for the Householder + QL solver.
static void jacobi(double *ev, double *a, int n) {
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int i = 0; i < n; i++)
            for (int j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        if (off < 1e-30) break;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                if (fabs(a[p * n + q]) < 1e-300) continue;
                double th = (a[q * n + q] - a[p * n + p]) / (2 * a[p * n + q]);
                double t = (th >= 0 ? 1 : -1) / (fabs(th) + sqrt(th * th + 1)), c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {  // A <- J^T A J
                    double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {
                    double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
    for (int i = 0; i < n; i++) ev[i] = a[i * n + i];
    for (int i = 1; i < n; i++)  // ascending
        for (int j = i; j > 0 && ev[j] < ev[j - 1]; j--) { double t = ev[j]; ev[j] = ev[j - 1]; ev[j - 1] = t; }
}

static void test_linalg(void) {
    G3Rng r;
    g3_rng_seed(&r, 7);
    int sizes[] = {1, 2, 3, 7, 16, 33};
    for (size_t si = 0; si < G3_ARRAY_LEN(sizes); si++) {
        int n = sizes[si];
        double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n), *e1 = malloc(sizeof(double) * n), *e2 = malloc(sizeof(double) * n);
        for (int i = 0; i < n; i++)
            for (int j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = g3_rng_uniform(&r) * 2 - 1;
        memcpy(b, a, sizeof(double) * n * n);
        CHECK(g3_an_sym_eigvals(e1, a, n) == 0, "%s", g3_error());
        jacobi(e2, b, n);
        double worst = 0;
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(e1[i] - e2[i]));
        CHECK(worst < 1e-10, "eigenvalues n=%d: worst difference from Jacobi %g", n, worst);
        free(a); free(b); free(e1); free(e2);
    }
    // effective rank: orthogonal rows of equal norm -> the number of rows; rank 1 -> 1;
    // two orthogonal rows of norms 3 and 1 -> exp(H(.75, .25)); the zero matrix -> 0
    const int R = 5, C = 12;
    float x[5 * 12] = {0};
    for (int i = 0; i < R; i++) x[i * C + 2 * i] = 2.5f;
    CHECK(fabs(g3_an_effective_rank(x, R, C) - R) < 1e-9, "orthogonal rows: erank %g", g3_an_effective_rank(x, R, C));
    float xt[12 * 5] = {0};
    for (int i = 0; i < R; i++) xt[2 * i * R + i] = 2.5f;  // its transpose: tall, Gram of the columns
    CHECK(fabs(g3_an_effective_rank(xt, C, R) - R) < 1e-9, "tall: erank %g", g3_an_effective_rank(xt, C, R));
    float one[4 * 6];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++) one[i * 6 + j] = (float)((i + 1) * (j - 2.5));
    CHECK(fabs(g3_an_effective_rank(one, 4, 6) - 1) < 1e-6, "rank 1: erank %g", g3_an_effective_rank(one, 4, 6));
    float two[2 * 3] = {3, 0, 0, 0, 1, 0};
    double h = -(0.75 * log(0.75) + 0.25 * log(0.25));
    CHECK(fabs(g3_an_effective_rank(two, 2, 3) - exp(h)) < 1e-9, "3:1 singular values: erank %g vs %g", g3_an_effective_rank(two, 2, 3), exp(h));
    float zero[6] = {0};
    CHECK(g3_an_effective_rank(zero, 2, 3) == 0, "zero matrix");
    // norms and sparsity
    float v[8] = {3, 4, 0, 0, 0, 0, 0, 0};
    CHECK(fabs(g3_an_mean_norm(v, 2, 4) - 2.5) < 1e-12, "mean norm");
    CHECK(fabs(g3_an_sparsity(v, 8, 1e-3) - 0.75) < 1e-12, "sparsity: 6 of 8 zero");
    float w[4] = {1, -1, 1e-4f, 1};  // RMS ~0.866: 1e-4 < 1e-3 * RMS? no (8.7e-4 > 1e-4: yes below)
    CHECK(fabs(g3_an_sparsity(w, 4, 1e-3) - 0.25) < 1e-12, "sparsity: the 1e-4 entry %g", g3_an_sparsity(w, 4, 1e-3));
    CHECK(g3_an_sparsity(zero, 6, 1e-3) == 0, "sparsity of zeros");
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[b]) b = i;
    return b;
}

static void test_fixture(const char *name, G3Analysis *keep) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", name);
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); return; }
    STSet ex;
    fixture_open(&ex, name);
    int32_t *ids;
    const int T = fixture_ids(&ex, "input_ids", &ids), L = m.cfg.layers, NH = m.cfg.heads, C = m.cfg.hidden, V = m.cfg.vocab;
    G3AnOptions o = {5, 0, 0, 6, 99, NULL};
    G3Analysis a;
    if (g3_analyze_run(&a, &m, ids, T, &o)) { CHECK(0, "%s: %s", name, g3_error()); goto out; }
    double worst = 0;
    for (int l = 0; l < L; l++) {
        char key[32];
        snprintf(key, sizeof key, "attn.%d", l);
        const float *ref = fixture_get(&ex, key)->data;  // [NH][T][T]
        CHECK(rel_err(a.pattern + (long)l * NH * T * T, ref, (long)NH * T * T) < 1e-5, "%s: captured %s", name, key);
        for (int h = 0; h < NH; h++) {
            const float *p = ref + (long)h * T * T;
            double ent = 0, dist = 0, bos = 0, prev = 0;  // the definitions, written out again
            for (int q = 1; q < T; q++) {
                for (int k = 0; k <= q; k++) {
                    double v = p[q * T + k];
                    if (v > 0) ent -= v * log(v);
                    dist += v * (q - k);
                }
                bos += p[q * T];
                prev += p[q * T + q - 1];
            }
            const G3AnHead *hd = &a.heads[l * NH + h];
            double e = fmax(fmax(fabs(hd->entropy - ent / (T - 1)), fabs(hd->distance - dist / (T - 1))), fmax(fabs(hd->bos - bos / (T - 1)), fabs(hd->prev - prev / (T - 1))));
            worst = fmax(worst, e);
            CHECK(e < 1e-4, "%s: layer %d head %d differs from the reference pattern by %g", name, l, h, e);
            CHECK(!isnan(hd->induction) && hd->induction >= 0 && hd->induction <= 1, "%s: induction %g", name, hd->induction);
        }
        snprintf(key, sizeof key, "layer.%d", l);
        const float *x = fixture_get(&ex, key)->data;
        double norm = 0;
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int i = 0; i < C; i++) s += (double)x[t * C + i] * x[t * C + i];
            norm += sqrt(s);
        }
        norm /= T;
        CHECK(fabs(a.layers[l].resid_norm - norm) < 1e-5 * norm, "%s: layer %d resid norm %g vs %g", name, l, a.layers[l].resid_norm, norm);
        double er = g3_an_effective_rank(x + C, T - 1, C);
        CHECK(fabs(a.layers[l].erank - er) < 1e-4 * er && er >= 1 && er <= G3_MIN(T - 1, C), "%s: layer %d erank %g vs %g", name, l, a.layers[l].erank, er);
        CHECK(a.layers[l].mlp_sparsity >= 0 && a.layers[l].mlp_sparsity < 0.5, "%s: sparsity %g", name, a.layers[l].mlp_sparsity);
    }
    CHECK(a.kind[0].layers + a.kind[1].layers == L, "kinds cover the layers");
    // the logit lens at the last layer is the model's output
    const float *lg = fixture_get(&ex, "logits")->data;
    int same = 1;
    double lerr = 0;
    for (int t = 0; t < T; t++) {
        const G3AnTop *tp = &a.lens[((long)L * T + t) * a.K];
        same &= tp->id == argmax(lg + (long)t * V, V);
        lerr = fmax(lerr, fabs(tp->logit - lg[(long)t * V + tp->id]) / (fabs(lg[(long)t * V + tp->id]) + 1));
        double mx = lg[(long)t * V + tp->id], z = 0;
        for (int i = 0; i < V; i++) z += exp(lg[(long)t * V + i] - mx);
        CHECK(fabs(tp->prob - 1 / z) < 1e-4, "%s: lens p at %d: %g vs %g", name, t, tp->prob, 1 / z);
        for (int k = 1; k < a.K; k++) CHECK(tp[k].logit <= tp[k - 1].logit, "lens order");
    }
    CHECK(same, "%s: the last layer's logit lens top token is not the argmax of the reference logits", name);
    CHECK(lerr < 1e-4, "%s: lens logits differ from the reference by %g", name, lerr);
    printf("%s: worst head-metric difference %.2g, lens logit %.2g\n", name, worst, lerr);
    if (keep) *keep = a;
    else g3_analysis_free(&a);
out:
    free(ids);
    st_close(&ex);
    g3_model_free(&m);
}

static void test_reports(G3Analysis *a) {
    G3Config c;
    g3_config_load(&c, "tests/fixtures/gemma3-tiny-f32");
    const char *texts[] = {"a \"prompt\" with <tags> & \n newline \xff\xfe bad bytes"};
    G3AnMeta meta = {"tests/fixtures/gemma3-tiny-f32", texts, NULL, &c};
    char jp[256], hp[256];
    snprintf(jp, sizeof jp, "%s/test_analyze.json", getenv("BUILD") ? getenv("BUILD") : "build");
    snprintf(hp, sizeof hp, "%s/test_analyze.html", getenv("BUILD") ? getenv("BUILD") : "build");
    g3_mkdir_p(getenv("BUILD") ? getenv("BUILD") : "build");
    CHECK(g3_an_write_json(jp, a, 1, &meta) == 0, "%s", g3_error());
    Json j;
    CHECK(json_parse_file(&j, jp) == 0, "analysis JSON does not parse: %s", g3_error());
    const JsonNode *res = json_get(json_root(&j), "results"), *r0 = json_at(res, 0);
    CHECK(r0 && json_get(r0, "heads") && json_get(r0, "lens"), "results[0] has heads and lens");
    const JsonNode *pr = json_get(r0, "prompt");
    CHECK(json_is_string(pr) && strstr(pr->str, "<tags> & \n newline") && strstr(pr->str, "\xEF\xBF\xBD\xEF\xBF\xBD"), "prompt text round trip");
    const JsonNode *ent = json_get(json_at(json_at(json_get(r0, "heads"), 2), 1), "entropy");
    CHECK(json_is_number(ent) && fabs(ent->num - a->heads[2 * a->NH + 1].entropy) < 1e-5, "entropy in the JSON");
    json_free(&j);

    CHECK(g3_an_write_html(hp, a, 1, &meta) == 0, "%s", g3_error());
    size_t len;
    char *html = g3_read_file(hp, &len);
    CHECK(html && len > 1000, "HTML written");
    if (html) {
        CHECK(!strstr(html, "src=\"http") && !strstr(html, "href=\"http") && !strstr(html, "src='http") && !strstr(html, "@import") && !strstr(html, "url(http"),
              "the report fetches nothing");
        CHECK(strstr(html, "<script type=\"application/json\" id=\"g3data\">") != NULL, "the data is embedded");
        const char *d = strstr(html, "id=\"g3data\">");
        const char *e = d ? strstr(d, "</script>") : NULL;
        CHECK(d && e, "the data ends at its </script>");
        if (d && e) {
            d += strlen("id=\"g3data\">");
            CHECK(!memchr(d, '<', (size_t)(e - d)), "no raw '<' inside the embedded data");
            Json hj;
            CHECK(json_parse(&hj, d, (size_t)(e - d)) == 0, "the embedded data parses: %s", g3_error());
            const JsonNode *p = json_get(json_at(json_get(json_root(&hj), "results"), 0), "patterns");
            CHECK(p && p->type == JSON_ARRAY && p->count == (uint32_t)a->L, "patterns embedded");
            json_free(&hj);
        }
        CHECK(strstr(html, "\\u003ctags\\u003e \\u0026") != NULL, "token text escaped");
    }
    free(html);
}

// The command end to end: a tiny model with the real Gemma vocabulary and tokenizer, text
// prompts with characters that need escaping, a prompts file, and bad arguments.
static void test_cli(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) { printf("(no %s: CLI not tested)\n", bin); return; }
    char tmp[] = "/tmp/g3anXXXXXX";
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp"); return; }
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 262144;
    c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
    char md[300], p[1200];
    snprintf(md, sizeof md, "%s/model", tmp);
    CHECK(g3_init_checkpoint(&c, md, G3_BF16, 3, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
    CHECK(sh("cp tests/data/tokenizer/tokenizer.model %s/", md) == 0, "copy the tokenizer");
    CHECK(sh("%s analyze --model %s --prompt 'Tags <b>&amp; \"quotes\"\n\ta new line' --html %s/r.html --top 3 --induction-len 8 > %s/out.txt 2> %s/err.txt",
             bin, md, tmp, tmp, tmp) == 0, "analyze --prompt failed");
    snprintf(p, sizeof p, "%s/analysis.json", tmp);  // beside the report by default
    Json j;
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *r0 = json_at(json_get(json_root(&j), "results"), 0);
        const JsonNode *t1 = json_get(json_at(json_get(r0, "tokens"), 1), "text");
        CHECK(json_is_string(t1) && !strcmp(t1->str, "Tags"), "first token text '%s'", t1 ? t1->str : "?");
        const JsonNode *top = json_at(json_get(json_at(json_get(json_get(r0, "lens"), "rows"), 2), "top"), 0);
        CHECK(top && top->count == 3, "lens cells hold --top 3 candidates");
        CHECK(json_get(json_get(r0, "induction"), "n")->num == 8, "--induction-len");
        json_free(&j);
    } else CHECK(0, "%s", g3_error());
    CHECK(sh("grep -q 'logit lens at the last position' %s/out.txt && grep -q '^heads' %s/out.txt", tmp, tmp) == 0, "tables on stdout");
    CHECK(sh("grep -q '\\\\u003cb\\\\u003e' %s/r.html", tmp) == 0, "escaped token text in the report");
    CHECK(sh("printf 'first prompt here\nand a second one\n' > %s/p.txt && %s analyze --model %s --prompts-file %s/p.txt --json %s/m.json --quiet 2>/dev/null",
             tmp, bin, md, tmp, tmp) == 0, "--prompts-file failed");
    snprintf(p, sizeof p, "%s/m.json", tmp);
    if (json_parse_file(&j, p) == 0) {
        CHECK(json_get(json_root(&j), "results")->count == 2, "one result per prompt");
        json_free(&j);
    } else CHECK(0, "%s", g3_error());
    CHECK(sh("%s analyze --model %s 2>/dev/null", bin, md) == 1, "no prompt accepted");
    CHECK(sh("%s analyze --model %s --ids 2 2>/dev/null", bin, md) == 1, "one token accepted");
    CHECK(sh("%s analyze --model %s --ids 2,5 --prompt x 2>/dev/null", bin, md) == 1, "two prompt sources accepted");
    CHECK(sh("%s analyze --model %s --ids 2,999999 --json %s/bad.json 2>/dev/null", bin, md, tmp) == 1, "id outside the vocabulary accepted");
    sh("rm -rf %s", tmp);
}

int main(void) {
    test_rows();
    test_heads();
    test_linalg();
    G3Analysis a = {0};
    test_fixture("gemma3-tiny-f32", &a);
    test_fixture("gemma2-tiny-f32", NULL);  // softcaps in the lens
    test_fixture("gemma3-tiny-multimodal-layout", NULL);
    if (a.T) { test_reports(&a); g3_analysis_free(&a); }
    test_cli();
    return check_done();
}
