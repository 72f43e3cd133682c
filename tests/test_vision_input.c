// test_vision_input.c: images in through the commands and the decoder's refusals.
// - `gemma3 forward --image ... --exact --save` gives the fixture's logits (1e-5) and
//   `gemma3 generate --ids ... --image ... --temperature 0 --print-ids` its greedy ids;
// - decoding: RGBA composited onto white as Pillow does, gray expanded, a JPEG written here
//   read back close to its source, 16-bit PNG keeping the high byte;
// - bad input, each a clear message naming the file and exit 1 from the commands: a missing
//   file, an empty one, a GIF, text, a truncated PNG and JPEG, a PNG claiming 100000 x 100000
//   pixels, more images than placeholder runs and the reverse, an image on a text-only model.
#include <stdio.h>  // before jpeglib.h
#include <unistd.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "check.h"
#include "fixtures.h"
#include "io/image.h"
#include "io/npz_read.h"

static const char *bin;
static char tmp[256];
static const char *FX = "tests/fixtures/gemma3-tiny-vision";
static const char *IDS = "2,17,45,1000,1002,1002,1002,1002,1001,300,301,302,77,5,9,400,401";

static int write_bytes(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(d, 1, n, f);
    return fclose(f) || w != n ? -1 : 0;
}

// A PNG of w x h pixels of `channels` 8- or 16-bit samples from data, written with libpng.
static int write_png(const char *path, int w, int h, int color_type, int depth, const uint8_t *data, int row_bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (setjmp(png_jmpbuf(p))) { png_destroy_write_struct(&p, &info); fclose(f); return -1; }
    png_init_io(p, f);
    png_set_IHDR(p, info, w, h, depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(data + (long)y * row_bytes));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    return fclose(f);
}

static int write_jpeg(const char *path, const G3Image *im) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = im->w;
    c.image_height = im->h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    for (int y = 0; y < im->h; y++) {
        JSAMPROW row = im->rgb + (long)y * im->w * 3;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f);
}

static void test_decode(void) {
    char p[512];
    G3Image im;
    // RGBA: alpha 0 -> white, 255 -> the color, 128 over black -> 127 (Pillow's rounding)
    const uint8_t rgba[4 * 4] = {10, 20, 30, 0, 10, 20, 30, 255, 0, 0, 0, 128, 200, 100, 50, 64};
    snprintf(p, sizeof p, "%s/rgba.png", tmp);
    CHECK(write_png(p, 4, 1, PNG_COLOR_TYPE_RGBA, 8, rgba, 16) == 0, "write rgba.png");
    CHECK(g3_image_load(&im, p) == 0, "%s", g3_error());
    if (im.rgb) {
        const uint8_t want[12] = {255, 255, 255, 10, 20, 30, 127, 127, 127};
        CHECK(im.w == 4 && im.h == 1 && !memcmp(im.rgb, want, 9), "rgba composite: %d %d %d / %d %d %d / %d %d %d", im.rgb[0], im.rgb[1],
              im.rgb[2], im.rgb[3], im.rgb[4], im.rgb[5], im.rgb[6], im.rgb[7], im.rgb[8]);
        // 200 at alpha 64 over white: coef1 = 64*255*255*128/(64*255+255*191)
        unsigned c1 = 64u * 255 * 255 * 128 / (64 * 255 + 255 * 191), c2 = 255 * 128 - c1, t = 200 * c1 + 255 * c2 + (0x80 << 7);
        CHECK(im.rgb[9] == (((t >> 8) + t) >> 8) >> 7, "partial alpha: %d", im.rgb[9]);
    }
    g3_image_free(&im);
    // gray 8-bit and RGB 16-bit (big-endian samples: the high byte is kept)
    const uint8_t gray[3] = {0, 128, 255};
    snprintf(p, sizeof p, "%s/gray.png", tmp);
    CHECK(write_png(p, 3, 1, PNG_COLOR_TYPE_GRAY, 8, gray, 3) == 0 && g3_image_load(&im, p) == 0, "%s", g3_error());
    CHECK(im.rgb && im.rgb[3] == 128 && im.rgb[4] == 128 && im.rgb[5] == 128 && im.rgb[8] == 255, "gray expanded");
    g3_image_free(&im);
    const uint8_t rgb16[6] = {0x12, 0xff, 0x80, 0x01, 0xfe, 0x80};
    snprintf(p, sizeof p, "%s/rgb16.png", tmp);
    CHECK(write_png(p, 1, 1, PNG_COLOR_TYPE_RGB, 16, rgb16, 6) == 0 && g3_image_load(&im, p) == 0, "%s", g3_error());
    CHECK(im.rgb && im.rgb[0] == 0x12 && im.rgb[1] == 0x80 && im.rgb[2] == 0xfe, "16-bit: %d %d %d", im.rgb[0], im.rgb[1], im.rgb[2]);
    g3_image_free(&im);
    // a JPEG of a smooth picture reads back close to it (lossy at quality 95)
    G3Image src = {64, 48, malloc(64 * 48 * 3)};
    for (int y = 0; y < src.h; y++)
        for (int x = 0; x < src.w; x++) {
            uint8_t *px = src.rgb + (y * src.w + x) * 3;
            px[0] = (uint8_t)(x * 4);
            px[1] = (uint8_t)(y * 5);
            px[2] = (uint8_t)(128 + 60 * sin(x * 0.2) * cos(y * 0.15));
        }
    snprintf(p, sizeof p, "%s/image.jpg", tmp);
    CHECK(write_jpeg(p, &src) == 0 && g3_image_load(&im, p) == 0, "%s", g3_error());
    if (im.rgb && src.rgb) {
        double d = 0;
        for (long i = 0; i < (long)src.w * src.h * 3; i++) d += abs((int)im.rgb[i] - (int)src.rgb[i]);
        d /= (double)src.w * src.h * 3;
        CHECK(im.w == src.w && im.h == src.h && d < 4, "jpeg round trip: %dx%d, mean abs diff %.2f", im.w, im.h, d);
    }
    g3_image_free(&im);
    g3_image_free(&src);
}

// Runs the command; checks exit 1 and that stderr names `name` and says `what`.
static void refused(const char *args, const char *name, const char *what) {
    char out[512];
    snprintf(out, sizeof out, "%s/err.txt", tmp);
    int rc = sh("%s %s > /dev/null 2> %s", bin, args, out);
    size_t n;
    char *msg = g3_read_file(out, &n);
    CHECK(rc == 1, "%s: exit %d (want 1)", args, rc);
    CHECK(msg && strstr(msg, name) && strstr(msg, what), "%s: message lacks '%s' / '%s': %s", args, name, what, msg ? msg : "(none)");
    CHECK(msg && !strstr(msg, "Sanitizer") && !strstr(msg, "runtime error"), "%s: %s", args, msg ? msg : "");
    free(msg);
}

static void test_commands(void) {
    char cmd[2048], p[512];
    // the outside checks' forms
    snprintf(p, sizeof p, "%s/logits.safetensors", tmp);
    CHECK(sh("%s forward --model %s --ids %s --image %s/image.png --exact --save %s 2>/dev/null", bin, FX, IDS, FX, p) == 0, "forward --image");
    STSet got, exp;
    fixture_open(&exp, "gemma3-tiny-vision");
    if (st_open(&got, p) == 0) {
        const STTensor *l = st_find(&got, "logits"), *r = fixture_get(&exp, "logits");
        double e = l && st_numel(l) == st_numel(r) ? rel_err(l->data, r->data, st_numel(r)) : 1;
        CHECK(e <= 1e-5, "forward --image --exact logits rel err %.3g", e);
        st_close(&got);
    } else {
        CHECK(0, "%s", g3_error());
    }
    st_close(&exp);
    snprintf(p, sizeof p, "%s/ids.txt", tmp);
    CHECK(sh("%s generate --model %s --ids %s --image %s/image.png --max-tokens 8 --temperature 0 --print-ids > %s 2>/dev/null", bin, FX, IDS, FX, p) == 0,
          "generate --image");
    size_t n;
    char *ids = g3_read_file(p, &n);
    CHECK(ids && !strcmp(ids, "401,401,401,401,401,401,401,401\n"), "greedy ids: %s", ids ? ids : "(none)");
    free(ids);

    // trace --image: the tower's sites beside the text model's, as the reference has them
    snprintf(p, sizeof p, "%s/acts.npz", tmp);
    CHECK(sh("%s trace --model %s --ids %s --image %s/image.png --exact --hooks 'vision.*,hook_embed' --out %s 2>/dev/null", bin, FX, IDS, FX, p) == 0,
          "trace --image");
    G3NpzFile z;
    if (g3_npz_read_open(&z, p) == 0) {
        fixture_open(&exp, "gemma3-tiny-vision");
        const char *pairs[3][2] = {{"vision.hook_post_norm", "vision_tower_out"}, {"vision.hook_soft_tokens", "soft_tokens"}, {"hook_embed", "text_input_embeds"}};
        for (int i = 0; i < 3; i++) {
            const G3NpyArray *a = g3_npz_find(&z, pairs[i][0]);
            const STTensor *r = fixture_get(&exp, pairs[i][1]);
            float *buf = a && a->numel == st_numel(r) ? malloc((size_t)a->numel * sizeof(float)) : NULL;
            double e = buf && g3_npz_read_f32(&z, a, buf) == 0 ? rel_err(buf, r->data, st_numel(r)) : 1;
            CHECK(e <= 1e-5, "trace: %s vs %s rel err %.3g", pairs[i][0], pairs[i][1], e);
            free(buf);
        }
        CHECK(g3_npz_find(&z, "vision.blocks.1.hook_resid_post") != NULL, "trace: per-layer tower sites");
        st_close(&exp);
        g3_npz_read_close(&z);
    } else {
        CHECK(0, "%s", g3_error());
    }
    snprintf(cmd, sizeof cmd, "trace --model %s --ids %s --hooks vision.hook_embed --out %s/x.npz", FX, IDS, tmp);
    refused(cmd, "vision.hook_embed", "need --image");

    // bad images: each named
    snprintf(p, sizeof p, "%s/empty.png", tmp);
    write_bytes(p, "", 0);
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s", FX, IDS, p);
    refused(cmd, p, "empty file");
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s/missing.png", FX, IDS, tmp);
    refused(cmd, "missing.png", "cannot open");
    snprintf(p, sizeof p, "%s/pic.gif", tmp);
    write_bytes(p, "GIF89a\x01\x00\x01\x00\x00\x00\x00;", 14);
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s", FX, IDS, p);
    refused(cmd, p, "unsupported image format (a GIF image)");
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s/config.json", FX, IDS, FX);
    refused(cmd, "config.json", "not a PNG or JPEG");
    // truncated: the first half of the fixture's PNG, and of the JPEG written above
    const char *halves[2][2] = {{"image.png", "half.png"}, {"image.jpg", "half.jpg"}};
    for (int i = 0; i < 2; i++) {
        char src[512];
        snprintf(src, sizeof src, "%s/%s", i ? tmp : FX, halves[i][0]);
        snprintf(p, sizeof p, "%s/%s", tmp, halves[i][1]);
        char *d = g3_read_file(src, &n);
        CHECK(d && write_bytes(p, d, n / 2) == 0, "write %s", p);
        free(d);
        snprintf(cmd, sizeof cmd, "generate --model %s --ids %s --image %s --max-tokens 1", FX, IDS, p);
        refused(cmd, p, i ? "bad JPEG" : "bad PNG");
    }
    // a PNG header claiming 100000 x 100000 pixels: refused before anything is allocated
    uint8_t big[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 8, 2, 0, 0, 0};
    uLong crc = crc32(0, big + 12, 17);
    big[29] = crc >> 24; big[30] = crc >> 16; big[31] = crc >> 8; big[32] = crc;
    snprintf(p, sizeof p, "%s/huge.png", tmp);
    write_bytes(p, big, 33);
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s", FX, IDS, p);
    refused(cmd, p, "100000x100000 pixels is larger than");
    // images and placeholder runs that do not match
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s --image %s/image.png --image %s/image.png", FX, IDS, FX, FX);
    refused(cmd, "1 image placeholder run", "2 images were given");
    snprintf(cmd, sizeof cmd, "forward --model %s --ids %s", FX, IDS);
    refused(cmd, "1 image placeholder run", "0 images were given");
    snprintf(cmd, sizeof cmd, "generate --model %s --ids 2,17,45 --image %s/image.png --max-tokens 1", FX, FX);
    refused(cmd, "0 image placeholder runs", "1 image was given");
    snprintf(cmd, sizeof cmd, "forward --model %s --ids 2,1000,1002,1002,1001 --image %s/image.png", FX, FX);
    refused(cmd, "position 2 has 2 image tokens", "exactly 4");
    // an image on a text-only model
    snprintf(cmd, sizeof cmd, "forward --model tests/fixtures/gemma3-tiny-f32 --ids 2,17 --image %s/image.png", FX);
    refused(cmd, "image.png", "has no vision tower");
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    snprintf(tmp, sizeof tmp, "/tmp/g3_vision_input_%d", (int)getpid());
    if (sh("mkdir -p %s", tmp)) return 2;
    test_decode();
    test_commands();
    sh("rm -rf %s", tmp);
    return check_done();
}
