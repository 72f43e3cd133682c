// preprocess.c: an RGB8 picture to the vision tower's input, exactly as Hugging Face's
// Gemma3ImageProcessor (transformers 5, the default "fast" one) makes it: torchvision's
// antialiased bilinear resize of the uint8 image, then x / 255 and (x - mean) / std in
// float32. That resize is Pillow's algorithm (a triangle filter whose support widens by the
// scale when shrinking; a horizontal pass into rounded, clipped 8-bit rows, then a vertical
// pass) with int16 fixed-point weights: per pass, the most fractional bits (at most 22) that
// keep the largest weight below 2^15. Pillow itself uses 22 bits always; the two differ only
// where a horizontal sum lands exactly on .5 (11 of the fixture's 9408 values; the fixture
// follows torchvision). Neither library's code is copied; the arithmetic follows them.
#include "vision.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

// Per output index: the first input index, the count, and the fixed-point weights
// ([out][ksize], pb fractional bits).
typedef struct {
    int ksize, pb;
    int *lo, *cnt;
    int32_t *k;
} Coeffs;

static double tri(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// The bilinear filter's weights mapping in_size samples to out_size (Pillow's box is the
// whole input).
static int coeffs(Coeffs *c, int in_size, int out_size) {
    const double scale = (double)in_size / out_size, fscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * fscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->lo = g3_malloc((size_t)out_size * sizeof *c->lo);
    c->cnt = g3_malloc((size_t)out_size * sizeof *c->cnt);
    c->k = g3_calloc((size_t)out_size * c->ksize, sizeof *c->k);
    double *w = g3_malloc((size_t)out_size * c->ksize * sizeof *w), wmax = 0;
    if (!c->lo || !c->cnt || !c->k || !w) {
        free(w);
        return -1;
    }
    for (int o = 0; o < out_size; o++) {
        const double center = (o + 0.5) * scale, ss = 1.0 / fscale;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double sum = 0, *wo = w + (long)o * c->ksize;
        for (int x = 0; x < n; x++) sum += wo[x] = tri((x + lo - center + 0.5) * ss);
        for (int x = 0; x < n; x++) {
            if (sum != 0.0) wo[x] /= sum;
            if (wo[x] > wmax) wmax = wo[x];
        }
        c->lo[o] = lo;
        c->cnt[o] = n;
    }
    // torchvision's int16 weights: the precision that keeps the largest below 2^15
    for (c->pb = 0; c->pb < 22; c->pb++)
        if ((int)(0.5 + wmax * (1 << (c->pb + 1))) >= (1 << 15)) break;
    for (int o = 0; o < out_size; o++)
        for (int x = 0; x < c->cnt[o]; x++) {
            double v = w[(long)o * c->ksize + x] * (1 << c->pb);
            c->k[(long)o * c->ksize + x] = (int32_t)(v < 0 ? -0.5 + v : 0.5 + v);
        }
    free(w);
    return 0;
}

static void coeffs_free(Coeffs *c) {
    free(c->lo);
    free(c->cnt);
    free(c->k);
}

static inline uint8_t clip8(int64_t v, int pb) {
    v >>= pb;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int g3_image_resize(uint8_t *out, int ow, int oh, const uint8_t *in, int iw, int ih) {
    if (ow == iw && oh == ih) {
        memcpy(out, in, (size_t)iw * ih * 3);
        return 0;
    }
    Coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    int rc = -1;
    if (coeffs(&cx, iw, ow) || coeffs(&cy, ih, oh)) goto out;
    // the horizontal pass covers only the input rows the vertical pass reads
    const int y0 = cy.lo[0], y1 = cy.lo[oh - 1] + cy.cnt[oh - 1], th = y1 - y0;
    const int need_h = ow != iw, need_v = oh != ih;
    const uint8_t *src = in;
    int sy0 = 0;  // the input row that src's row 0 holds
    if (need_h) {
        if (!(tmp = g3_malloc((size_t)ow * th * 3))) goto out;
#pragma omp parallel for schedule(static) if ((long)ow * th > 65536)
        for (int y = 0; y < th; y++)
            for (int x = 0; x < ow; x++) {
                const int32_t *k = cx.k + (long)x * cx.ksize;
                const uint8_t *row = in + ((long)(y + y0) * iw + cx.lo[x]) * 3;
                for (int c = 0; c < 3; c++) {
                    int64_t s = cx.pb ? 1 << (cx.pb - 1) : 0;
                    for (int i = 0; i < cx.cnt[x]; i++) s += (int64_t)row[i * 3 + c] * k[i];
                    tmp[((long)y * ow + x) * 3 + c] = clip8(s, cx.pb);
                }
            }
        src = tmp;
        sy0 = y0;
    }
    if (need_v) {
#pragma omp parallel for schedule(static) if ((long)ow * oh > 65536)
        for (int y = 0; y < oh; y++) {
            const int32_t *k = cy.k + (long)y * cy.ksize;
            for (int x = 0; x < ow; x++)
                for (int c = 0; c < 3; c++) {
                    int64_t s = cy.pb ? 1 << (cy.pb - 1) : 0;
                    for (int i = 0; i < cy.cnt[y]; i++) s += (int64_t)src[((long)(cy.lo[y] + i - sy0) * ow + x) * 3 + c] * k[i];
                    out[((long)y * ow + x) * 3 + c] = clip8(s, cy.pb);
                }
        }
    } else {
        memcpy(out, src + (long)(0 - sy0) * ow * 3, (size_t)ow * oh * 3);
    }
    rc = 0;
out:
    if (rc) g3_error_prefix("resizing a %dx%d image to %dx%d", iw, ih, ow, oh);
    free(tmp);
    coeffs_free(&cx);
    coeffs_free(&cy);
    return rc;
}

int g3_vision_pixels(const G3VisionConfig *vc, float *px, const G3Image *im) {
    const int S = vc->image_size;
    uint8_t *rs = g3_malloc((size_t)S * S * 3);
    if (!rs || g3_image_resize(rs, S, S, im->rgb, im->w, im->h)) {
        free(rs);
        return -1;
    }
    // rescale in double then round to float32, normalize in float32: numpy's order in the
    // processor (rescale casts to float32, normalize works in the image's float32)
    for (int c = 0; c < 3; c++) {
        const float mean = vc->mean[c], std = vc->std[c];
        for (long i = 0; i < (long)S * S; i++) {
            float v = (float)(rs[i * 3 + c] * vc->rescale);
            px[(long)c * S * S + i] = (v - mean) / std;
        }
    }
    free(rs);
    return 0;
}
