// test_vision_analyze.c: `gemma3 analyze --image` on tests/fixtures/gemma3-tiny-vision.
// - analysis.json's "images" section: where the image's soft tokens are (start 4, 4 tokens on
//   a 2 x 2 grid), the query positions after the run, and attn [L][NH][queries][tokens]
//   equal to the attention pattern `gemma3 trace --image --hooks 'blocks.*.attn.hook_pattern'`
//   records for the same prompt (an independent path: the trace's arrays, read from its .npz);
// - the HTML report carries the picture as a PNG data: URL that decodes to the model's square
//   view, and the page's image view;
// - analyze --tower: "tower" holds, per tower layer and head, the attention each patch receives,
//   equal (to its byte quantization) to the column means of the patterns `trace --hooks
//   'vision.blocks.*.attn.hook_pattern'` records; the HTML's view of it;
// - refusals: --image with --prompts-file, a run without an image, an image without a run,
//   --tower without --image.
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "base/json.h"
#include "io/image.h"
#include "io/npz_read.h"

static const char *bin;
static char tmp[256];
static const char *FX = "tests/fixtures/gemma3-tiny-vision";
static const char *IDS = "2,17,45,1000,1002,1002,1002,1002,1001,300,301,302,77,5,9,400,401";
enum { T = 17, L = 6, NH = 4, START = 4, TOK = 4 };

static void test_json_against_trace(void) {
    char js[512], npz[512], html[512];
    snprintf(js, sizeof js, "%s/a.json", tmp);
    snprintf(html, sizeof html, "%s/a.html", tmp);
    snprintf(npz, sizeof npz, "%s/t.npz", tmp);
    CHECK(sh("%s analyze --model %s --ids %s --image %s/image.png --exact --quiet --induction-len 3 --json %s --html %s 2>/dev/null", bin, FX, IDS,
             FX, js, html) == 0, "analyze --image");
    CHECK(sh("%s trace --model %s --ids %s --image %s/image.png --exact --hooks 'blocks.*.attn.hook_pattern' --out %s 2>/dev/null", bin, FX, IDS, FX,
             npz) == 0, "trace --image");
    Json j = {0};
    G3NpzFile z = {0};
    if (json_parse_file(&j, js)) { CHECK(0, "%s", g3_error()); return; }
    if (g3_npz_read_open(&z, npz)) { CHECK(0, "%s", g3_error()); json_free(&j); return; }
    const JsonNode *res = json_at(json_get(json_root(&j), "results"), 0), *ims = json_get(res, "images"), *im = json_at(ims, 0);
    CHECK(ims && ims->count == 1 && im, "one image in the results");
    if (!im) goto out;
    CHECK(json_int(json_get(im, "start")) == START && json_int(json_get(im, "tokens")) == TOK && json_int(json_get(im, "side")) == 2,
          "start %lld tokens %lld side %lld", (long long)json_int(json_get(im, "start")), (long long)json_int(json_get(im, "tokens")),
          (long long)json_int(json_get(im, "side")));
    CHECK(json_is_string(json_get(im, "file")) && strstr(json_get(im, "file")->str, "image.png"), "file");
    CHECK(!json_get(im, "png"), "analysis.json carries no picture (the HTML does)");
    const JsonNode *qs = json_get(im, "queries"), *attn = json_get(im, "attn");
    const int Q = qs ? (int)qs->count : 0;
    CHECK(Q == T - (START + TOK), "queries: %d (want the %d positions after the run)", Q, T - (START + TOK));
    for (int i = 0; i < Q; i++) CHECK(json_int(json_at(qs, (size_t)i)) == START + TOK + i, "query %d", i);
    CHECK(attn && attn->count == L, "attn has %u layers", attn ? attn->count : 0);
    float *pat = malloc(sizeof(float) * NH * T * T);
    double worst = 0;
    int compared = 0;
    for (int l = 0; attn && l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.hook_pattern", l);
        const G3NpyArray *a = g3_npz_find(&z, name);
        CHECK(a && a->numel == (int64_t)NH * T * T, "%s in the trace", name);
        if (!a || a->numel != (int64_t)NH * T * T || g3_npz_read_f32(&z, a, pat)) continue;
        const JsonNode *al = json_at(attn, (size_t)l);
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < Q; i++) {
                const JsonNode *row = json_at(json_at(al, (size_t)h), (size_t)i);
                CHECK(row && row->count == TOK, "attn[%d][%d][%d] has %u values", l, h, i, row ? row->count : 0);
                double sum = 0;
                for (int k = 0; row && k < TOK; k++) {
                    const double v = json_at(row, (size_t)k)->num, want = pat[((long)h * T + START + TOK + i) * T + START + k];
                    worst = fmax(worst, fabs(v - want) / fmax(fabs(want), 1e-6));
                    sum += v;
                    compared++;
                }
                // the last layer is global (the others slide over 8 positions: the last queries no longer reach the image)
                CHECK(sum <= 1.0001 && (l < L - 1 || sum > 0.001), "attn[%d][%d][%d] sums to %g", l, h, i, sum);
            }
    }
    CHECK(compared == L * NH * Q * TOK && worst < 1e-3, "%d values, worst relative difference from the trace %.3g", compared, worst);
    printf("analyze --image: %d attention values, worst relative difference from trace %.3g\n", compared, worst);
    free(pat);
    // the report: the picture as a PNG the model's size (56 pixels: under the 448 cap)
    size_t n;
    char *page = g3_read_file(html, &n);
    const char *key = "data:image/png;base64,", *p = page ? strstr(page, key) : NULL;
    CHECK(p, "the report holds the picture");
    CHECK(page && strstr(page, "id=\"imgview\""), "the report has its image view");
    if (p) {
        p += strlen(key);
        size_t len = strcspn(p, "\""), o = 0;
        uint8_t *bytes = malloc(len);
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < len && p[i] != '='; i++) {
            const char *c = strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", p[i]);
            acc = acc << 6 | (uint32_t)(c ? c - "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/" : 0);
            if ((bits += 6) >= 8) bytes[o++] = (uint8_t)(acc >> (bits -= 8));
        }
        G3Image pic;
        CHECK(g3_image_decode(&pic, bytes, o, "report picture") == 0 && pic.w == 56 && pic.h == 56, "report picture %dx%d: %s", pic.w, pic.h,
              g3_error());
        g3_image_free(&pic);
        free(bytes);
    }
    free(page);
out:
    g3_npz_read_close(&z);
    json_free(&j);
}

static size_t unbase64(uint8_t *out, const char *p, size_t len) {
    static const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len && p[i] != '='; i++) {
        const char *c = strchr(A, p[i]);
        acc = acc << 6 | (uint32_t)(c ? c - A : 0);
        if ((bits += 6) >= 8) out[o++] = (uint8_t)(acc >> (bits -= 8));
    }
    return o;
}

// analyze --tower against trace's patterns of the tower (the tiny tower: 2 layers, 2 heads, 4 x 4 patches).
static void test_tower(void) {
    enum { TL = 2, TH = 2, TS = 4, NP = TS * TS };
    char js[512], npz[512], html[512];
    snprintf(js, sizeof js, "%s/tower_analysis.json", tmp);  // (tw.npz gets its sidecar tw.json)
    snprintf(html, sizeof html, "%s/tw.html", tmp);
    snprintf(npz, sizeof npz, "%s/tw.npz", tmp);
    CHECK(sh("%s analyze --model %s --ids %s --image %s/image.png --exact --tower --quiet --induction-len 0 --json %s --html %s 2>/dev/null", bin,
             FX, IDS, FX, js, html) == 0, "analyze --image --tower");
    CHECK(sh("%s trace --model %s --ids %s --image %s/image.png --exact --hooks 'vision.blocks.*.attn.hook_pattern' --out %s 2>/dev/null", bin, FX,
             IDS, FX, npz) == 0, "trace --image, the tower's patterns");
    Json j = {0};
    G3NpzFile z = {0};
    if (json_parse_file(&j, js)) { CHECK(0, "%s", g3_error()); return; }
    if (g3_npz_read_open(&z, npz)) { CHECK(0, "%s", g3_error()); json_free(&j); return; }
    const JsonNode *im = json_at(json_get(json_at(json_get(json_root(&j), "results"), 0), "images"), 0), *tw = json_get(im, "tower");
    CHECK(tw && json_int(json_get(tw, "layers")) == TL && json_int(json_get(tw, "heads")) == TH && json_int(json_get(tw, "side")) == TS,
          "tower: layers, heads, side");
    const JsonNode *mx = json_get(tw, "max"), *u8 = json_get(tw, "u8");
    uint8_t b[TL * TH * NP + 8];
    const size_t nb = json_is_string(u8) && u8->str_len <= 4 * sizeof b / 3 ? unbase64(b, u8->str, u8->str_len) : 0;
    CHECK(nb == TL * TH * NP, "tower: %zu bytes (want %d)", nb, TL * TH * NP);
    float pat[TH * NP * NP];
    double worst = 0;
    for (int l = 0; nb == TL * TH * NP && mx && l < TL; l++) {
        char name[64];
        snprintf(name, sizeof name, "vision.blocks.%d.attn.hook_pattern", l);
        const G3NpyArray *a = g3_npz_find(&z, name);
        CHECK(a && a->numel == TH * NP * NP && g3_npz_read_f32(&z, a, pat) == 0, "%s in the trace", name);
        if (!a || a->numel != TH * NP * NP) continue;
        for (int h = 0; h < TH; h++) {
            const double m = json_at(json_at(mx, (size_t)l), (size_t)h)->num;
            double sum = 0;
            for (int k = 0; k < NP; k++) {
                double want = 0;
                for (int i = 0; i < NP; i++) want += pat[((long)h * NP + i) * NP + k];
                want /= NP;
                const double got = b[(l * TH + h) * NP + k] / 255.0 * m;
                worst = fmax(worst, fabs(got - want) / m);
                sum += got;
            }
            CHECK(fabs(sum - 1) < NP * 0.5 / 255, "tower layer %d head %d: the attention received sums to %g (want 1)", l, h, sum);
        }
    }
    CHECK(worst <= 0.5 / 255 + 1e-5, "tower: worst difference from the trace's column means %.3g of the map's largest", worst);
    printf("analyze --tower: worst difference from trace's column means %.3g of each map's largest (bytes: 1/510 at most)\n", worst);
    size_t n;
    char *page = g3_read_file(html, &n);
    CHECK(page && strstr(page, "\"tower\":{\"layers\":2") && strstr(page, "inside the tower"), "the report carries the tower's view");
    free(page);
    g3_npz_read_close(&z);
    json_free(&j);
}

static void refused(const char *args, const char *what) {
    char out[512];
    snprintf(out, sizeof out, "%s/err.txt", tmp);
    int rc = sh("%s %s > /dev/null 2> %s", bin, args, out);
    size_t n;
    char *msg = g3_read_file(out, &n);
    CHECK(rc == 1, "%s: exit %d (want 1)", args, rc);
    CHECK(msg && strstr(msg, what), "%s: message lacks '%s': %s", args, what, msg ? msg : "(none)");
    CHECK(msg && !strstr(msg, "Sanitizer") && !strstr(msg, "runtime error"), "%s: %s", args, msg ? msg : "");
    free(msg);
}

static void test_refusals(void) {
    char cmd[1024], pf[512];
    snprintf(pf, sizeof pf, "%s/prompts.txt", tmp);
    FILE *f = fopen(pf, "w");
    if (f) fputs("hello\n", f), fclose(f);
    snprintf(cmd, sizeof cmd, "analyze --model %s --prompts-file %s --image %s/image.png --quiet --json %s/x.json", FX, pf, FX, tmp);
    refused(cmd, "--prompts-file");
    snprintf(cmd, sizeof cmd, "analyze --model %s --ids %s --quiet --json %s/x.json", FX, IDS, tmp);  // a run, no image
    refused(cmd, "image");
    snprintf(cmd, sizeof cmd, "analyze --model %s --ids 2,17,45,300 --image %s/image.png --quiet --json %s/x.json", FX, FX, tmp);
    refused(cmd, "image");
    snprintf(cmd, sizeof cmd, "analyze --model %s --ids 2,17,45,300 --tower --quiet --json %s/x.json", FX, tmp);
    refused(cmd, "--tower");
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    snprintf(tmp, sizeof tmp, "/tmp/g3_vision_analyze_%d", (int)getpid());
    if (sh("mkdir -p %s", tmp)) return 2;
    if (getenv("KEEP")) fprintf(stderr, "tmp %s\n", tmp);
    test_json_against_trace();
    test_tower();
    test_refusals();
    if (!getenv("KEEP")) sh("rm -rf %s", tmp);
    return check_done();
}
