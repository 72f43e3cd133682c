// quant_weighted.c: importance-weighted rounding for ggml's block types with a scale choice
// (see quant.h, g3_quant_weighted). Plain C, a reference: it runs once per file written.
//
// Each block's scale (and min) is chosen to minimize sum_i w_i (x_i - x'_i)^2 by the search of
// quant_search.c, with the importances as the weights. The packed result is dequantized with
// the type's own to_f32 and its weighted error compared with that of the plain quantizer's
// block (the traits' from_f32): the better one is kept, so the weighted error is never worse
// than without the importance, whatever the search finds. A block whose weights are all equal
// keeps the plain quantizer's bytes (equal weights carry no information).
#include <math.h>
#include <string.h>

#include "quant_search.h"

static double werr(const float *x, const float *y, const float *w, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += (double)w[i] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

int g3_quant_weighted_has(G3DType t) {
    return t == G3_Q8_0 || t == G3_Q4_0 || t == G3_Q4_1 || t == G3_Q5_0 || t == G3_Q5_1 || t == G3_Q4_K || t == G3_Q5_K || t == G3_Q6_K;
}

void g3_quant_weighted(G3DType t, void *dst, const float *src, const float *w, int64_t n) {
    const G3TypeTraits *tt = g3_type(t);
    if (!w || !g3_quant_weighted_has(t)) { tt->from_f32(dst, src, n); return; }
    const int bn = tt->block, bb = tt->block_bytes;
    uint8_t cand[256];
    float y[G3_QK_K], z[G3_QK_K];
    for (int64_t i = 0; i < n / bn; i++) {
        const float *x = src + i * bn, *wi = w + i * bn;
        uint8_t *b = (uint8_t *)dst + i * bb;
        tt->from_f32(b, x, bn);  // the reference block: the search must beat it to replace it
        double sw = 0;
        int finite = 1, equal = 1;
        for (int j = 0; j < bn; j++) sw += wi[j], finite &= isfinite(x[j]), equal &= wi[j] == wi[0];
        // equal weights carry no information: today's bytes, so that a file differs from the
        // one written without --calibrate only where the importance says something
        if (!(sw > 0) || !finite || equal) continue;
        g3_qsearch_block(t, cand, x, wi);
        tt->to_f32(y, b, bn);
        tt->to_f32(z, cand, bn);
        if (werr(x, z, wi, bn) < werr(x, y, wi, bn)) memcpy(b, cand, (size_t)bb);
    }
}
