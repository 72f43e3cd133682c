// panscan.c: pan and scan, as transformers' Gemma3ImageProcessor.pan_and_scan and
// Gemma3Processor write it (do_pan_and_scan): a wide or tall picture is shown whole and as a
// few crops along its long side, each crop a picture of its own (resized to the tower's square
// like the whole one), announced in the prompt by "Here is the original image <boi> and here
// are some crops to help you see better <boi> <boi>". The arithmetic below is the processor's,
// step for step (Python's floor(x + 0.5) for the rounding, ceil for the crop size).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"

int g3_vision_pan_and_scan(const G3VisionConfig *vc, const G3Image *im, G3Image *crops) {
    const int w = im->w, h = im->h, mc = vc->pas_min_crop;
    int nw = 1, nh = 1;
    if (w >= h) {  // square or landscape
        if ((double)w / h < vc->pas_min_ratio) return 0;
        nw = (int)floor((double)w / h + 0.5);
        nw = G3_MIN((int)floor((double)w / mc), nw);
        nw = G3_MIN(vc->pas_max_crops, G3_MAX(2, nw));
    } else {  // portrait
        if ((double)h / w < vc->pas_min_ratio) return 0;
        nh = (int)floor((double)h / w + 0.5);
        nh = G3_MIN((int)floor((double)h / mc), nh);
        nh = G3_MIN(vc->pas_max_crops, G3_MAX(2, nh));
    }
    const int cw = (int)ceil((double)w / nw), ch = (int)ceil((double)h / nh);
    if (G3_MIN(cw, ch) < mc) return 0;
    int n = 0;
    for (int i = 0; i < nh; i++)
        for (int j = 0; j < nw; j++) {  // rows, then columns (itertools.product(h, w)); the last cut at the edge
            const int y0 = i * ch, x0 = j * cw, rh = G3_MIN(ch, h - y0), rw = G3_MIN(cw, w - x0);
            if (rh <= 0 || rw <= 0) continue;
            G3Image *c = &crops[n];
            c->w = rw, c->h = rh;
            if (!(c->rgb = g3_malloc((size_t)rw * rh * 3))) {
                for (int k = 0; k < n; k++) g3_image_free(&crops[k]);
                return -1;
            }
            for (int y = 0; y < rh; y++) memcpy(c->rgb + (size_t)y * rw * 3, im->rgb + ((size_t)(y0 + y) * w + x0) * 3, (size_t)rw * 3);
            n++;
        }
    return n;
}

char *g3_vision_pan_and_scan_text(const char *text, const int *ncrops, int nimages) {
    static const char MARK[] = "<start_of_image>";
    const size_t ml = strlen(MARK);
    int marks = 0;
    for (const char *p = strstr(text, MARK); p; p = strstr(p + ml, MARK)) marks++;
    if (marks && marks != nimages) {
        g3_errorf("the prompt has %d <start_of_image> marker%s but %d image%s given", marks, marks == 1 ? "" : "s", nimages,
                  nimages == 1 ? " was" : "s were");
        return NULL;
    }
    size_t cap = strlen(text) + (size_t)nimages * ml + 1;
    for (int i = 0; i < nimages; i++) cap += 100 + (size_t)ncrops[i] * (ml + 1);
    char *out = g3_malloc(cap), *o = out;
    if (!out) return NULL;
    const char *p = text;
    for (int i = 0; i < nimages; i++) {
        const char *at = marks ? strstr(p, MARK) : p;  // without markers, the images come first
        memcpy(o, p, (size_t)(at - p));
        o += at - p;
        if (ncrops[i] > 0) {
            o += sprintf(o, "Here is the original image %s and here are some crops to help you see better", MARK);
            for (int k = 0; k < ncrops[i]; k++) o += sprintf(o, " %s", MARK);
        } else {
            o += sprintf(o, "%s", MARK);
        }
        p = marks ? at + ml : at;
    }
    strcpy(o, p);
    return out;
}
