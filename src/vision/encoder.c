// encoder.c: the SigLIP vision tower (transformers' SiglipVisionTransformer without the
// pooling head), one image at a time:
//   x   = patches . Wpatch^T + b + pos          patches [NP, 3*P*P] in (channel, y, x) order
//   per layer:  x += out_proj(mha(ln1(x)))       q, k, v, out with biases; every patch sees every patch
//               x += fc2(gelu(fc1(ln2(x))))
//   out = post_layernorm(x)
// The products go through the backend (linear or its bf16 GEMM for the weights; vattn.c's
// blocked attention over its gemm); LayerNorm, biases, GELU and softmax are vops.c over host
// memory.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"
#include "vops.h"

typedef struct {
    float *x, *xn, *q, *k, *v, *att, *tmp, *h;   // [NP, D] x7, [NP, FF]
    float *wf;                                   // a weight widened to f32: [max(FF, D) * D]
    float *attn;                                 // g3_vision_attention's scratch
} Bufs;

// How the tower multiplies: exact mode is f32 products and the scalar row-wise ops (the
// reference the fixture holds to 1e-5); fast mode uses the vector row-wise ops, and where
// the tower's weights are bf16 (every released one) bf16 products, as the text model's fast
// mode does, attention included.
typedef struct {
    G3Backend *be;
    G3MatmulMode mode;
    int fast, bf16, threads;
    float *wf;
} Mm;

// y = x . W^T (+ b). A bf16 matrix in fast mode, over many rows, goes to the backend's bf16
// GEMM (packed panels, 8 x 32 tiles with AVX512-BF16: ~2.5x the in-place rows of `linear`
// at 4096 rows) on the weight widened to f32, exactly (the GEMM rounds it back to the same
// bf16); x is rounded to bf16 either way.
static int linear_b(const Mm *m, float *y, const float *x, const G3Weight *w, const float *b, int R) {
    if (m->bf16 && w->type == G3_BF16 && R >= 64) {
        const long N = (long)w->rows, K = (long)w->cols;
#pragma omp parallel for schedule(static) num_threads(m->threads)
        for (long r = 0; r < N; r++) g3_to_f32(m->wf + r * K, (const char *)w->data + r * w->row_bytes, G3_BF16, (size_t)K);
        m->be->gemm(m->be, 0, 1, R, (int)N, (int)K, x, m->wf, y, 0, G3_MM_BF16);
    } else if (m->be->linear(m->be, y, x, w, R, m->mode)) {
        return -1;
    }
    if (b) g3_vops_bias(y, b, R, (int)w->rows);
    return 0;
}

int g3_vision_encode(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *px, float *out, G3VisionHook hook, void *hook_ctx) {
    const G3VisionConfig *c = &v->cfg;
    if (!be->host)
        return g3_errorf("backend %s: the vision tower runs on host-memory backends only for now (its row-wise ops are on the CPU); use --device cpu",
                         be->name);
    if (G3_NEED(be, gemm)) return -1;
    const int D = c->hidden, FF = c->inter, P = c->patch, S = c->image_size, side = g3_vision_side(c), NP = side * side;
    const int K = 3 * P * P;
    const long nd = (long)NP * D;
    Mm m = {be, mode, mode != G3_MM_EXACT, mode != G3_MM_EXACT && v->patch.type == G3_BF16, omp_get_max_threads(), NULL};
    Bufs b = {0};
    float *patches = NULL;
    int rc = -1;
    float **all[] = {&b.x, &b.xn, &b.q, &b.k, &b.v, &b.att, &b.tmp};
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++)
        if (!(*all[i] = g3_malloc_aligned((size_t)nd * sizeof(float)))) goto out;
    if (!(b.h = g3_malloc_aligned((size_t)NP * FF * sizeof(float))) ||
        !(b.attn = g3_malloc_aligned(g3_vision_attention_floats(NP, D, m.threads) * sizeof(float))) ||
        (m.bf16 && !(b.wf = g3_malloc_aligned((size_t)G3_MAX(FF, D) * G3_MAX(D, K) * sizeof(float)))) ||
        !(patches = g3_malloc_aligned((size_t)NP * K * sizeof(float))))
        goto out;
    m.wf = b.wf;
    // the patch convolution (stride = kernel = P) as a product: row n = the patch at (n / side, n % side)
#pragma omp parallel for schedule(static)
    for (int n = 0; n < NP; n++) {
        const int py = n / side, pxl = n % side;
        float *row = patches + (long)n * K;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < P; y++)
                memcpy(row + (ch * P + y) * P, px + ((long)ch * S + py * P + y) * S + pxl * P, (size_t)P * sizeof(float));
    }
    if (linear_b(&m, b.x, patches, &v->patch, v->patch_b, NP)) goto out;
    for (long i = 0; i < nd; i++) b.x[i] += v->pos[i];
    if (hook) hook(hook_ctx, "embed", -1, b.x, NP, D);
    for (int l = 0; l < c->layers; l++) {
        const G3VisionLayer *y = &v->layer[l];
        g3_vops_layernorm(b.xn, b.x, y->ln1w, y->ln1b, NP, D, c->eps, m.fast);
        if (linear_b(&m, b.q, b.xn, &y->q, y->qb, NP) || linear_b(&m, b.k, b.xn, &y->k, y->kb, NP) ||
            linear_b(&m, b.v, b.xn, &y->v, y->vb, NP))
            goto out;
        g3_vision_attention(be, m.bf16, m.fast, b.att, b.q, b.k, b.v, NP, D, c->heads, b.attn, m.threads);
        if (linear_b(&m, b.tmp, b.att, &y->o, y->ob, NP)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        g3_vops_layernorm(b.xn, b.x, y->ln2w, y->ln2b, NP, D, c->eps, m.fast);
        if (linear_b(&m, b.h, b.xn, &y->fc1, NULL, NP)) goto out;
        g3_vops_bias_gelu(b.h, y->fc1b, NP, FF, c->act_erf, m.fast);
        if (linear_b(&m, b.tmp, b.h, &y->fc2, y->fc2b, NP)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        if (hook) hook(hook_ctx, "resid_post", l, b.x, NP, D);
    }
    g3_vops_layernorm(out, b.x, v->post_w, v->post_b, NP, D, c->eps, m.fast);
    if (hook) hook(hook_ctx, "post_norm", -1, out, NP, D);
    rc = 0;
out:
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++) g3_free_aligned(*all[i]);
    g3_free_aligned(b.h);
    g3_free_aligned(b.wf);
    g3_free_aligned(b.attn);
    g3_free_aligned(patches);
    if (rc) g3_error_prefix("vision tower");
    return rc;
}
