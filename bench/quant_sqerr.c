// quant_sqerr.c: the squared error sum (x - x')^2 of each block type over every matrix of a
// model, for the max rule (g3_*_from_f32_simple), the plain quantizer's search (the traits'
// from_f32) and, built with -DWITH_GGML and linked to llama.cpp's libggml-base, ggml's
// quantize_row_*_ref; with ggml it also checks that ggml's dequantize_row_* decodes our
// search's bytes to exactly our to_f32's values (the layout is ggml's). Each matrix is
// quantized whole (its element count is a multiple of 256). bench/quant_sqerr.sh builds it.
// Usage: quant_sqerr MODEL_DIR
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "tensor/quant.h"

#ifdef WITH_GGML
// ggml's reference quantizers and decoders (ggml-quants.h), over its block structs, which have
// our layouts: declared here on void pointers so that no ggml header is needed.
#define GGML_DECL(T) \
    void quantize_row_##T##_ref(const float *, void *, int64_t); \
    void dequantize_row_##T(const void *, float *, int64_t);
GGML_DECL(q8_0) GGML_DECL(q4_0) GGML_DECL(q4_1) GGML_DECL(q5_0) GGML_DECL(q5_1) GGML_DECL(q4_K) GGML_DECL(q5_K) GGML_DECL(q6_K)
#define GGML_FNS(T) , quantize_row_##T##_ref, dequantize_row_##T
#else
#define GGML_FNS(T) , NULL, NULL
#endif

typedef struct {
    G3DType t;
    void (*simple)(void *, const float *, int64_t);
    void (*gq)(const float *, void *, int64_t);  // ggml's reference quantizer, or NULL
    void (*gd)(const void *, float *, int64_t);  // ggml's decoder, or NULL
} Type;

static double sqerr(const float *x, const float *y, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: quant_sqerr MODEL_DIR\n"); return 2; }
    G3Model m;
    memset(&m, 0, sizeof m);
    if (g3_model_load(&m, argv[1])) { fprintf(stderr, "quant_sqerr: %s: %s\n", argv[1], g3_error()); return 1; }
    const Type types[] = {
        {G3_Q8_0, g3_q8_0_from_f32_simple GGML_FNS(q8_0)}, {G3_Q4_0, g3_q4_0_from_f32_simple GGML_FNS(q4_0)},
        {G3_Q4_1, g3_q4_1_from_f32_simple GGML_FNS(q4_1)}, {G3_Q5_0, g3_q5_0_from_f32_simple GGML_FNS(q5_0)},
        {G3_Q5_1, g3_q5_1_from_f32_simple GGML_FNS(q5_1)}, {G3_Q4_K, g3_q4_k_from_f32_simple GGML_FNS(q4_K)},
        {G3_Q5_K, g3_q5_k_from_f32_simple GGML_FNS(q5_K)}, {G3_Q6_K, g3_q6_k_from_f32_simple GGML_FNS(q6_K)},
    };
    printf("| type | max rule | search | ggml _ref | search / max rule | search / ggml | ggml decodes ours |\n|---|---|---|---|---|---|---|\n");
    int bad = 0;
    for (size_t k = 0; k < sizeof types / sizeof *types; k++) {
        const G3TypeTraits *tt = g3_type(types[k].t);
        double es = 0, en = 0, eg = 0;
        int same = 1;
        for (int i = 0; i < m.nt; i++) {
            const G3Tensor *t = &m.t[i];
            if (t->kind == G3_KIND_NORM || t->numel % G3_QK_K) continue;
            const int64_t n = t->numel;
            float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y), *z = malloc((size_t)n * sizeof *z);
            uint8_t *b = malloc((size_t)g3_type_bytes(types[k].t, n));
            if (!x || !y || !z || !b) { fprintf(stderr, "quant_sqerr: out of memory\n"); return 1; }
            g3_to_f32(x, t->data, t->dtype, (size_t)n);
            types[k].simple(b, x, n), tt->to_f32(y, b, n), es += sqerr(x, y, n);
            tt->from_f32(b, x, n), tt->to_f32(y, b, n), en += sqerr(x, y, n);
            if (types[k].gq) {
                types[k].gd(b, z, n);
                same &= !memcmp(y, z, (size_t)n * sizeof *y);
                types[k].gq(x, b, n), tt->to_f32(y, b, n), eg += sqerr(x, y, n);
            }
            free(x), free(y), free(z), free(b);
        }
        bad += !same;
        if (types[k].gq)
            printf("| %s | %.4g | %.4g | %.4g | %.3f | %.3f | %s |\n", tt->name, es, en, eg, en / es, en / eg, same ? "exactly" : "NO");
        else
            printf("| %s | %.4g | %.4g | | %.3f | | |\n", tt->name, es, en, en / es);
    }
    g3_model_free(&m);
    return bad ? 1 : 0;
}
