// image.c: PNG (libpng's progressive-free low-level reader, from memory) and JPEG
// (libjpeg-turbo, from memory) to RGB8, as Pillow decodes them; see image.h. Both libraries
// report errors by longjmp: the handlers here copy their message and jump back, so a bad
// file is a message naming it, never an exit or a print.
#include "image.h"

#include <setjmp.h>
#include <stdio.h>  // before jpeglib.h, which uses FILE

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

// Pillow's Image.alpha_composite of src over an opaque white background (its integer
// arithmetic: 7 extra bits, divisions by 255 rounded by shifts), as transformers'
// convert_to_rgb does before an RGB image processor sees the picture.
static uint8_t over_white(unsigned c, unsigned a) {
    if (a == 0) return 255;
    const unsigned PB = 7;
    unsigned outa255 = a * 255 + 255 * (255 - a);
    unsigned coef1 = a * 255 * 255 * (1u << PB) / outa255, coef2 = 255 * (1u << PB) - coef1;
    unsigned t = c * coef1 + 255 * coef2 + (0x80u << PB);
    return (uint8_t)((((t >> 8) + t) >> 8) >> PB);
}

static int too_big(const char *name, const char *fmt, uint64_t w, uint64_t h) {
    if (w == 0 || h == 0) return g3_errorf("%s: %s image of %llux%llu pixels is empty", name, fmt, (unsigned long long)w, (unsigned long long)h);
    if (w * h > G3_IMAGE_MAX_PIXELS)
        return g3_errorf("%s: %s image of %llux%llu pixels is larger than the %d pixels accepted", name, fmt,
                         (unsigned long long)w, (unsigned long long)h, G3_IMAGE_MAX_PIXELS);
    return 0;
}

// ---- PNG ----

typedef struct {
    const uint8_t *p;
    size_t n, off;
    char msg[200];
} PngIn;

static void png_read_mem(png_structp png, png_bytep out, size_t len) {
    PngIn *in = png_get_io_ptr(png);
    if (len > in->n - in->off) png_error(png, "truncated PNG data");
    memcpy(out, in->p + in->off, len);
    in->off += len;
}

static void png_on_error(png_structp png, png_const_charp msg) {
    PngIn *in = png_get_error_ptr(png);
    snprintf(in->msg, sizeof in->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }  // libpng would print them

static int decode_png(G3Image *im, const uint8_t *data, size_t n, const char *name) {
    // the size first, from IHDR (always the first chunk), before libpng reads any further
    if (n >= 24 && !memcmp(data + 12, "IHDR", 4)) {
        uint64_t w = (uint64_t)data[16] << 24 | data[17] << 16 | data[18] << 8 | data[19];
        uint64_t h = (uint64_t)data[20] << 24 | data[21] << 16 | data[22] << 8 | data[23];
        if (too_big(name, "PNG", w, h)) return -1;
    }
    PngIn in = {data, n, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &in, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return g3_errorf("%s: out of memory starting the PNG decoder", name);
    }
    uint8_t *volatile buf = NULL;
    png_bytep *volatile rows = NULL;
    volatile int refused = 0;  // a message of our own is already set
    if (setjmp(png_jmpbuf(png))) {
        free(buf);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        return refused ? -1 : g3_errorf("%s: bad PNG: %s", name, in.msg[0] ? in.msg : "decoding failed");
    }
    png_set_read_fn(png, &in, png_read_mem);
    png_set_user_limits(png, 1u << 24, 1u << 24);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    if (too_big(name, "PNG", w, h)) { refused = 1; png_longjmp(png, 1); }
    if (depth == 16) png_set_strip_16(png);  // Pillow keeps the high byte
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int ch = png_get_channels(png, info);
    const size_t rb = png_get_rowbytes(png, info);
    if ((ch != 3 && ch != 4) || rb != (size_t)w * ch) png_error(png, "unexpected pixel layout after expansion");
    buf = malloc((size_t)h * rb);
    rows = malloc((size_t)h * sizeof *rows);
    if (!buf || !rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + (size_t)y * rb;
    png_read_image(png, rows);
    // every pixel is read: a missing or damaged end (IEND) does not matter (Pillow ignores it too)
    free(rows);
    rows = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    if (ch == 4) {  // composite onto white, in place to RGB
        const size_t np = (size_t)w * h;
        for (size_t i = 0; i < np; i++) {
            unsigned a = buf[4 * i + 3];
            for (int c = 0; c < 3; c++) buf[3 * i + c] = over_white(buf[4 * i + c], a);
        }
    }
    im->w = (int)w;
    im->h = (int)h;
    im->rgb = buf;
    return 0;
}

// ---- JPEG ----

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_on_error(j_common_ptr c) {
    JpegErr *e = (JpegErr *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

// Warnings are silent, except the end of the data before the image is whole: libjpeg would
// fill the rest with gray; Pillow refuses a truncated file, and so do we.
static void jpeg_on_message(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(c);
}

static int decode_jpeg(G3Image *im, const uint8_t *data, size_t n, const char *name) {
    struct jpeg_decompress_struct cinfo;
    JpegErr err;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = jpeg_on_error;
    err.pub.emit_message = jpeg_on_message;
    err.msg[0] = 0;
    uint8_t *volatile buf = NULL;
    volatile int refused = 0;
    if (setjmp(err.jb)) {
        free(buf);
        jpeg_destroy_decompress(&cinfo);
        return refused ? -1 : g3_errorf("%s: bad JPEG: %s", name, err.msg[0] ? err.msg : "decoding failed");
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)n);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        g3_errorf("%s: CMYK JPEG images are not supported (convert it to RGB)", name);
        refused = 1;
        longjmp(err.jb, 1);
    }
    if (too_big(name, "JPEG", cinfo.image_width, cinfo.image_height)) { refused = 1; longjmp(err.jb, 1); }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const size_t w = cinfo.output_width, h = cinfo.output_height;
    if (cinfo.output_components != 3) {
        snprintf(err.msg, sizeof err.msg, "%d components after conversion to RGB", cinfo.output_components);
        longjmp(err.jb, 1);
    }
    buf = malloc(w * h * 3);
    if (!buf) {
        snprintf(err.msg, sizeof err.msg, "out of memory for %zux%zu pixels", w, h);
        longjmp(err.jb, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buf + (size_t)cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    im->w = (int)w;
    im->h = (int)h;
    im->rgb = buf;
    return 0;
}

// ---- entry points ----

int g3_image_decode(G3Image *im, const uint8_t *data, size_t n, const char *name) {
    memset(im, 0, sizeof *im);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 8 && !memcmp(data, png_sig, 8)) return decode_png(im, data, n, name);
    if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(im, data, n, name);
    const char *what = n >= 6 && (!memcmp(data, "GIF87a", 6) || !memcmp(data, "GIF89a", 6)) ? "a GIF image"
                       : n >= 12 && !memcmp(data, "RIFF", 4) && !memcmp(data + 8, "WEBP", 4) ? "a WebP image"
                       : n >= 2 && !memcmp(data, "BM", 2)                                   ? "a BMP image"
                       : n == 0                                                              ? "an empty file"
                                                                                             : "not a PNG or JPEG image";
    return g3_errorf("%s: unsupported image format (%s); PNG and JPEG are read", name, what);
}

int g3_image_load(G3Image *im, const char *path) {
    memset(im, 0, sizeof *im);
    size_t n;
    char *data = g3_read_file(path, &n);
    if (!data) return -1;
    int rc = g3_image_decode(im, (const uint8_t *)data, n, path);
    free(data);
    return rc;
}

void g3_image_free(G3Image *im) {
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

// ---- PNG out (the analysis report's picture) ----

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
    char msg[200];
} PngOut;

static void png_write_mem(png_structp png, png_bytep d, size_t len) {
    PngOut *o = png_get_io_ptr(png);
    if (o->oom) return;
    if (o->n + len > o->cap) {
        size_t cap = G3_MAX(o->cap * 2, o->n + len + 4096);
        uint8_t *np = realloc(o->p, cap);
        if (!np) { o->oom = 1; return; }
        o->p = np, o->cap = cap;
    }
    memcpy(o->p + o->n, d, len);
    o->n += len;
}

static void png_flush_mem(png_structp png) { (void)png; }

static void png_out_error(png_structp png, png_const_charp msg) {
    PngOut *o = png_get_error_ptr(png);
    snprintf(o->msg, sizeof o->msg, "%s", msg);
    png_longjmp(png, 1);
}

int g3_image_encode_png(const G3Image *im, uint8_t **out, size_t *n) {
    *out = NULL, *n = 0;
    PngOut o = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &o, png_out_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, NULL);
        return g3_errorf("PNG: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(o.p);
        return g3_errorf("PNG: %s", o.msg);
    }
    png_set_write_fn(png, &o, png_write_mem, png_flush_mem);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < im->h; y++) png_write_row(png, im->rgb + (size_t)y * im->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (o.oom) {
        free(o.p);
        return g3_errorf("PNG: out of memory");
    }
    *out = o.p, *n = o.n;
    return 0;
}
