// encoder.c: the SigLIP vision tower (transformers' SiglipVisionTransformer without the
// pooling head), one image at a time:
//   x   = patches . Wpatch^T + b + pos          patches [NP, 3*P*P] in (channel, y, x) order
//   per layer:  x += out_proj(mha(ln1(x)))       q, k, v, out with biases; every patch sees every patch
//               x += fc2(gelu(fc1(ln2(x))))
//   out = post_layernorm(x)
// The products go through the backend (linear for the weights, gemm for q.k^T and p.v per
// head, in blocks of rows); LayerNorm, biases, GELU and softmax are vops.c over host memory.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"
#include "vops.h"

enum { QB = 256 };  // query rows per block of scores

typedef struct {
    float *x, *xn, *q, *k, *v, *att, *tmp, *h;   // [NP, D] x7, [NP, FF]
    float *qh, *kh, *vh, *oh, *sc;               // [NP, hd] x3, [QB, hd], [QB, NP]
} Bufs;

// y = x . W^T + b.
static int linear_b(G3Backend *be, G3MatmulMode mode, float *y, const float *x, const G3Weight *w, const float *b, int R) {
    if (be->linear(be, y, x, w, R, mode)) return -1;
    g3_vops_bias(y, b, R, (int)w->rows);
    return 0;
}

// Multi-head attention without a mask: att[NP, D] from q, k, v [NP, D], heads of hd columns.
static void mha(G3Backend *be, G3MatmulMode mode, const Bufs *b, int NP, int D, int NH) {
    const int hd = D / NH;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int h = 0; h < NH; h++) {
        for (int r = 0; r < NP; r++) {
            memcpy(b->qh + (long)r * hd, b->q + (long)r * D + h * hd, (size_t)hd * sizeof(float));
            memcpy(b->kh + (long)r * hd, b->k + (long)r * D + h * hd, (size_t)hd * sizeof(float));
            memcpy(b->vh + (long)r * hd, b->v + (long)r * D + h * hd, (size_t)hd * sizeof(float));
        }
        for (int r0 = 0; r0 < NP; r0 += QB) {
            const int n = G3_MIN(QB, NP - r0);
            be->gemm(be, 0, 1, n, NP, hd, b->qh + (long)r0 * hd, b->kh, b->sc, 0, mode);  // sc[n, NP] = q k^T
            g3_vops_softmax_scaled(b->sc, n, NP, scale);
            be->gemm(be, 0, 0, n, hd, NP, b->sc, b->vh, b->oh, 0, mode);  // oh[n, hd] = p v
            for (int i = 0; i < n; i++) memcpy(b->att + (long)(r0 + i) * D + h * hd, b->oh + (long)i * hd, (size_t)hd * sizeof(float));
        }
    }
}

int g3_vision_encode(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *px, float *out, G3VisionHook hook, void *hook_ctx) {
    const G3VisionConfig *c = &v->cfg;
    if (!be->host)
        return g3_errorf("backend %s: the vision tower runs on host-memory backends only for now (its row-wise ops are on the CPU); use --device cpu",
                         be->name);
    if (G3_NEED(be, gemm)) return -1;
    const int D = c->hidden, FF = c->inter, P = c->patch, S = c->image_size, side = g3_vision_side(c), NP = side * side;
    const int K = 3 * P * P, hd = D / c->heads;
    const long nd = (long)NP * D;
    Bufs b = {0};
    float *patches = NULL;
    int rc = -1;
    float **all[] = {&b.x, &b.xn, &b.q, &b.k, &b.v, &b.att, &b.tmp};
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++)
        if (!(*all[i] = g3_malloc_aligned((size_t)nd * sizeof(float)))) goto out;
    if (!(b.h = g3_malloc_aligned((size_t)NP * FF * sizeof(float))) || !(b.qh = g3_malloc_aligned((size_t)NP * hd * sizeof(float))) ||
        !(b.kh = g3_malloc_aligned((size_t)NP * hd * sizeof(float))) || !(b.vh = g3_malloc_aligned((size_t)NP * hd * sizeof(float))) ||
        !(b.oh = g3_malloc_aligned((size_t)QB * hd * sizeof(float))) || !(b.sc = g3_malloc_aligned((size_t)QB * NP * sizeof(float))) ||
        !(patches = g3_malloc_aligned((size_t)NP * K * sizeof(float))))
        goto out;
    // the patch convolution (stride = kernel = P) as a product: row n = the patch at (n / side, n % side)
#pragma omp parallel for schedule(static)
    for (int n = 0; n < NP; n++) {
        const int py = n / side, pxl = n % side;
        float *row = patches + (long)n * K;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < P; y++)
                memcpy(row + (ch * P + y) * P, px + ((long)ch * S + py * P + y) * S + pxl * P, (size_t)P * sizeof(float));
    }
    if (linear_b(be, mode, b.x, patches, &v->patch, v->patch_b, NP)) goto out;
    for (long i = 0; i < nd; i++) b.x[i] += v->pos[i];
    if (hook) hook(hook_ctx, "embed", -1, b.x, NP, D);
    for (int l = 0; l < c->layers; l++) {
        const G3VisionLayer *y = &v->layer[l];
        g3_vops_layernorm(b.xn, b.x, y->ln1w, y->ln1b, NP, D, c->eps);
        if (linear_b(be, mode, b.q, b.xn, &y->q, y->qb, NP) || linear_b(be, mode, b.k, b.xn, &y->k, y->kb, NP) ||
            linear_b(be, mode, b.v, b.xn, &y->v, y->vb, NP))
            goto out;
        mha(be, mode, &b, NP, D, c->heads);
        if (linear_b(be, mode, b.tmp, b.att, &y->o, y->ob, NP)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        g3_vops_layernorm(b.xn, b.x, y->ln2w, y->ln2b, NP, D, c->eps);
        if (linear_b(be, mode, b.h, b.xn, &y->fc1, y->fc1b, NP)) goto out;
        g3_vops_gelu(b.h, (long)NP * FF, c->act_erf);
        if (linear_b(be, mode, b.tmp, b.h, &y->fc2, y->fc2b, NP)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        if (hook) hook(hook_ctx, "resid_post", l, b.x, NP, D);
    }
    g3_vops_layernorm(out, b.x, v->post_w, v->post_b, NP, D, c->eps);
    if (hook) hook(hook_ctx, "post_norm", -1, out, NP, D);
    rc = 0;
out:
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++) g3_free_aligned(*all[i]);
    g3_free_aligned(b.h);
    g3_free_aligned(b.qh);
    g3_free_aligned(b.kh);
    g3_free_aligned(b.vh);
    g3_free_aligned(b.oh);
    g3_free_aligned(b.sc);
    g3_free_aligned(patches);
    if (rc) g3_error_prefix("vision tower");
    return rc;
}
