// test_vision_panscan.c: pan and scan as transformers' Gemma3ImageProcessor does it
// (do_pan_and_scan: min crop 256, at most 4 crops, from an aspect ratio of 1.2).
// - the crops' geometry on cases worked out by hand from the processor's code (landscape,
//   portrait, too square, too small, the last crop cut at the edge, the 4-crop cap) and their
//   pixels;
// - the processor's prompt text around an image with crops, with and without markers;
// - preprocessor_config.json's pan_and_scan_* fields;
// - `forward --image wide.png --pan-and-scan` equals `forward` with the picture and its crops
//   given as separate images (the same logits, to the bit), and without --pan-and-scan the
//   prompt's four runs are refused for one image.
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "io/safetensors.h"
#include "vision/vision.h"

static G3Image picture(int w, int h) {
    G3Image im = {w, h, malloc((size_t)w * h * 3)};
    for (long i = 0; i < (long)w * h * 3; i++) im.rgb[i] = (uint8_t)(i * 7 + i / 3 * 13);
    return im;
}

static void test_geometry(void) {
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    const struct { int w, h, n, cw, ch, lastw, lasth; } cases[] = {
        {1000, 500, 2, 500, 500, 500, 500},   // ratio 2: two squares
        {500, 500, 0, 0, 0, 0, 0},            // square
        {600, 500, 2, 300, 500, 300, 500},    // ratio 1.2 rounds to 1, at least 2
        {400, 300, 0, 0, 0, 0, 0},            // crops of 200 < 256
        {3000, 600, 4, 750, 600, 750, 600},   // 5 wanted, 4 at most
        {500, 1100, 2, 500, 550, 500, 550},   // portrait
        {1001, 300, 3, 334, 300, 333, 300},   // ceil(1001 / 3) = 334: the last cut to 333
        {599, 500, 0, 0, 0, 0, 0},            // ratio 1.198 < 1.2
    };
    for (int i = 0; i < (int)G3_ARRAY_LEN(cases); i++) {
        G3Image im = picture(cases[i].w, cases[i].h), crops[4];
        int n = g3_vision_pan_and_scan(&vc, &im, crops);
        CHECK(n == cases[i].n, "%dx%d: %d crops (want %d)", cases[i].w, cases[i].h, n, cases[i].n);
        for (int k = 0; k < n && n == cases[i].n; k++) {
            const int last = k == n - 1, w = last ? cases[i].lastw : cases[i].cw, h = last ? cases[i].lasth : cases[i].ch;
            CHECK(crops[k].w == w && crops[k].h == h, "%dx%d crop %d: %dx%d (want %dx%d)", cases[i].w, cases[i].h, k, crops[k].w, crops[k].h, w, h);
            const int x0 = cases[i].w >= cases[i].h ? k * cases[i].cw : 0, y0 = cases[i].w >= cases[i].h ? 0 : k * cases[i].ch;
            int same = crops[k].w == w && crops[k].h == h;
            for (int y = 0; same && y < h; y++) same = !memcmp(crops[k].rgb + (size_t)y * w * 3, im.rgb + ((size_t)(y0 + y) * im.w + x0) * 3, (size_t)w * 3);
            CHECK(same, "%dx%d crop %d: pixels", cases[i].w, cases[i].h, k);
        }
        for (int k = 0; k < n; k++) g3_image_free(&crops[k]);
        g3_image_free(&im);
    }
}

static void test_text(void) {
    const int two[1] = {2}, mixed[2] = {1, 0};
    char *t = g3_vision_pan_and_scan_text("A <start_of_image> B", two, 1);
    CHECK(t && !strcmp(t, "A Here is the original image <start_of_image> and here are some crops to help you see better <start_of_image> "
                          "<start_of_image> B"), "%s", t ? t : g3_error());
    free(t);
    t = g3_vision_pan_and_scan_text("hi", mixed, 2);  // no markers: the images first
    CHECK(t && !strcmp(t, "Here is the original image <start_of_image> and here are some crops to help you see better <start_of_image>"
                          "<start_of_image>hi"), "%s", t ? t : g3_error());
    free(t);
    CHECK(!g3_vision_pan_and_scan_text("<start_of_image>", mixed, 2) && strstr(g3_error(), "1 <start_of_image> marker but 2 images"), "%s", g3_error());
}

static void test_config(const char *tmp) {
    char p[300];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", tmp);
    const char *js = "{\"do_pan_and_scan\": true, \"pan_and_scan_min_crop_size\": 100, \"pan_and_scan_max_num_crops\": 3, "
                     "\"pan_and_scan_min_ratio_to_activate\": 1.5, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5]}";
    CHECK(g3_write_file_atomic(p, js, strlen(js)) == 0, "%s", g3_error());
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    CHECK(g3_vision_preproc_load(&vc, tmp) == 0 && vc.pas_on && vc.pas_min_crop == 100 && vc.pas_max_crops == 3 && vc.pas_min_ratio == 1.5,
          "preprocessor_config: %d %d %d %g (%s)", vc.pas_on, vc.pas_min_crop, vc.pas_max_crops, vc.pas_min_ratio, g3_error());
    js = "{\"do_pan_and_scan\": 3}";
    CHECK(g3_write_file_atomic(p, js, strlen(js)) == 0, "%s", g3_error());
    CHECK(g3_vision_preproc_load(&vc, tmp) < 0 && strstr(g3_error(), "do_pan_and_scan"), "%s", g3_error());
    unlink(p);
}

// forward's logits (the "logits" tensor of --save) into a malloc'd array, *n values.
static float *logits(const char *path, long *n) {
    STSet s;
    if (st_open(&s, path)) return NULL;
    const STTensor *t = st_find(&s, "logits");
    float *out = t && t->dtype == G3_F32 ? malloc(t->nbytes) : NULL;
    if (out) {
        *n = (long)st_numel(t);
        memcpy(out, t->data, t->nbytes);
    }
    st_close(&s);
    return out;
}

static void test_forward(const char *bin, const char *tmp) {
    const char *FX = "tests/fixtures/gemma3-tiny-vision";
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    G3Image im = picture(800, 300), crops[4];  // ratio 2.67: 3 crops of 267 x 300 (the last 266)
    int n = g3_vision_pan_and_scan(&vc, &im, crops);
    CHECK(n == 3, "800x300: %d crops", n);
    char wide[300], c[3][300], ids[1024], a[300], b[300];
    snprintf(wide, sizeof wide, "%s/wide.png", tmp);
    uint8_t *png;
    size_t len;
    CHECK(g3_image_encode_png(&im, &png, &len) == 0 && g3_write_file_atomic(wide, png, len) == 0, "%s", g3_error());
    free(png);
    for (int k = 0; k < n && k < 3; k++) {
        snprintf(c[k], sizeof c[k], "%s/crop%d.png", tmp, k);
        CHECK(g3_image_encode_png(&crops[k], &png, &len) == 0 && g3_write_file_atomic(c[k], png, len) == 0, "%s", g3_error());
        free(png);
        g3_image_free(&crops[k]);
    }
    g3_image_free(&im);
    // four runs (the picture, its three crops) of the fixture's 4 soft tokens, as the processor writes them
    int o = snprintf(ids, sizeof ids, "2,17");
    for (int r = 0; r < 4; r++) o += snprintf(ids + o, sizeof ids - o, ",1000,1002,1002,1002,1002,1001,%d", 300 + r);
    snprintf(a, sizeof a, "%s/a.safetensors", tmp);
    snprintf(b, sizeof b, "%s/b.safetensors", tmp);
    CHECK(sh("%s forward --model %s --ids %s --image %s --pan-and-scan --exact --save %s 2>/dev/null", bin, FX, ids, wide, a) == 0, "forward --pan-and-scan");
    CHECK(sh("%s forward --model %s --ids %s --image %s --image %s --image %s --image %s --exact --save %s 2>/dev/null", bin, FX, ids, wide, c[0], c[1], c[2], b) == 0,
          "forward with the crops as images");
    long na = 0, nb = 0;
    float *la = logits(a, &na), *lb = logits(b, &nb);
    CHECK(la && lb && na == nb && na > 0 && !memcmp(la, lb, (size_t)na * sizeof(float)), "the same logits (%ld, %ld values)", na, nb);
    free(la);
    free(lb);
    char err[300];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    CHECK(sh("%s forward --model %s --ids %s --image %s --exact 2> %s", bin, FX, ids, wide, err) == 1, "four runs for one image refused");
    char *msg = g3_read_file(err, &len);
    CHECK(msg && strstr(msg, "4") && strstr(msg, "1"), "message: %s", msg ? msg : "");
    free(msg);
}

// tests/fixtures/panscan (tests/ref/gen_panscan_ref.py, from transformers): the processor's
// pixel_values for the picture and its crops, and its text. Skipped, and said, where absent.
static void test_reference(void) {
    const char *dir = "tests/fixtures/panscan";
    char p[300];
    snprintf(p, sizeof p, "%s/expected.safetensors", dir);
    if (!g3_file_exists(p)) {
        printf("no %s (tests/ref/gen_panscan_ref.py writes it): the transformers comparison is skipped\n", dir);
        return;
    }
    STSet s;
    if (st_open(&s, p)) { CHECK(0, "%s", g3_error()); return; }
    const STTensor *pv = st_find(&s, "pixel_values");
    G3VisionConfig vc;
    g3_vision_preset(&vc, 64);
    G3Image im, crops[4];
    snprintf(p, sizeof p, "%s/panscan.png", dir);
    if (!pv || pv->dtype != G3_F32 || g3_image_load(&im, p)) { CHECK(0, "reference: %s", g3_error()); st_close(&s); return; }
    const int n = g3_vision_pan_and_scan(&vc, &im, crops), S = vc.image_size;
    CHECK(pv->shape[0] == 1 + n, "%d crops, the processor %lld", n, (long long)pv->shape[0] - 1);
    float *px = malloc(sizeof(float) * 3 * S * S);
    for (int k = 0; k <= n && k < pv->shape[0]; k++) {
        CHECK(g3_vision_pixels(&vc, px, k ? &crops[k - 1] : &im) == 0, "%s", g3_error());
        double md = 0;
        for (long i = 0; i < 3L * S * S; i++) md = fmax(md, fabs(px[i] - ((const float *)pv->data)[(long)k * 3 * S * S + i]));
        CHECK(md <= 1e-6, "picture %d: pixel_values max abs diff %.3g", k, md);
    }
    free(px);
    snprintf(p, sizeof p, "%s/prompt.txt", dir);
    char *want = g3_read_file(p, NULL), *got = g3_vision_pan_and_scan_text("<start_of_image>Describe.", (int[]){n}, 1);
    CHECK(want && got && !strcmp(want, got), "text: %s vs %s", got ? got : "", want ? want : "");
    free(want), free(got);
    for (int k = 0; k < n; k++) g3_image_free(&crops[k]);
    g3_image_free(&im);
    st_close(&s);
}

int main(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char tmp[64];
    snprintf(tmp, sizeof tmp, "/tmp/g3_panscan_%d", (int)getpid());
    if (sh("mkdir -p %s", tmp)) return 2;
    test_geometry();
    test_text();
    test_config(tmp);
    test_forward(bin, tmp);
    test_reference();
    sh("rm -rf %s", tmp);
    return check_done();
}
