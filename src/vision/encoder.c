// encoder.c: the SigLIP vision tower (transformers' SiglipVisionTransformer without the
// pooling head), one image at a time:
//   x   = patches . Wpatch^T + b + pos          patches [NP, 3*P*P] in (channel, y, x) order
//   per layer:  x += out_proj(mha(ln1(x)))       q, k, v, out with biases; every patch sees every patch
//               x += fc2(gelu(fc1(ln2(x))))
//   out = post_layernorm(x)
// Every step is an op of the backend (linear, layernorm, bias_act, attention_full, add), over
// buffers of the backend, so the same code runs on the CPU and on a GPU; only the patches go
// up (cut on the host) and the output comes down. The hook sites (vision.h) fire on host
// copies when the backend's memory is not the host's.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"

typedef struct {
    float *x, *xn, *q, *k, *v, *att, *tmp, *h;  // backend buffers: [NP, D] x7, [NP, FF]
    void *work;                                 // attention_full's workspace
    float *wf;                                  // host: a bf16 weight widened to f32, [max(FF, D) * max(D, K)]
    float *stage;                               // host: a hooked site's copy (device backends), [NP * max(D, FF)]
    float *hq, *hk, *hv, *ho;                   // host: a hooked attention's operands (device backends), [NP, D]
} Bufs;

// How the tower multiplies: exact mode is f32 products and the reference row-wise ops (what the
// fixture holds to 1e-5); fast mode lets the backend take its faster row-wise ops and, where
// the tower's weights are bf16 (every released one), bf16 products, attention included, as the
// text model's fast mode does.
typedef struct {
    G3Backend *be;
    G3MatmulMode mode;
    int exact, bf16, threads;
    const G3VisionHooks *hk;
    Bufs *b;
} Enc;

// y = x . W^T (+ b). On the CPU a bf16 matrix in fast mode, over many rows, goes to the bf16
// GEMM (packed panels, 8 x 32 tiles with AVX512-BF16: ~2.5x the in-place rows of `linear` at
// 4096 rows) on the weight widened to f32, exactly (the GEMM rounds it back to the same bf16);
// x is rounded to bf16 either way. A device backend's linear does this itself (cuBLAS).
static int lin(const Enc *e, float *y, const float *x, const G3Weight *w, const float *b, int R) {
    G3Backend *be = e->be;
    if (be->host && e->bf16 && w->type == G3_BF16 && R >= 64) {
        const long N = (long)w->rows, K = (long)w->cols;
        float *wf = e->b->wf;
#pragma omp parallel for schedule(static) num_threads(e->threads)
        for (long r = 0; r < N; r++) g3_to_f32(wf + r * K, (const char *)w->data + r * w->row_bytes, G3_BF16, (size_t)K);
        be->gemm(be, 0, 1, R, (int)N, (int)K, x, wf, y, 0, G3_MM_BF16);
    } else if (be->linear(be, y, x, w, R, e->mode)) {
        return -1;
    }
    if (b) be->bias_act(be, y, b, R, (int)w->rows, 0, e->exact);
    return 0;
}

// Fires site (site, layer) on buf [rows][cols] when it is hooked: in place on a host backend,
// else through the host copy (down, the callback, up again).
static int fire(const Enc *e, G3VisionSite site, int layer, float *buf, int rows, int cols, int heads) {
    if (!g3_vision_hook_wants(e->hk, site, layer)) return 0;
    G3VisionHookEvent ev = {site, layer, -1, rows, cols, heads, heads ? cols / heads : 0, buf};
    const size_t bytes = (size_t)rows * cols * sizeof(float);
    if (e->be->host) {
        e->hk->fn(e->hk->ctx, &ev);
        return 0;
    }
    ev.data = e->b->stage;
    if (e->be->to_host(e->be, ev.data, buf, bytes)) return -1;
    e->hk->fn(e->hk->ctx, &ev);
    return e->be->to_device(e->be, buf, ev.data, bytes);
}

// The layer's attention, att = mha(q, k, v): the backend's, or the host's hooked form when the
// layer's scores or pattern are hooked (operands copied down and the result up on a device).
static int attention(const Enc *e, int layer, int NP, int D, int NH) {
    Bufs *b = e->b;
    G3Backend *be = e->be;
    const float scale = 1.0f / sqrtf((float)(D / NH));
    if (!g3_vision_hook_wants(e->hk, G3_VH_ATTN_SCORES, layer) && !g3_vision_hook_wants(e->hk, G3_VH_PATTERN, layer)) {
        const G3MatmulMode am = e->bf16 ? G3_MM_BF16 : e->exact ? G3_MM_EXACT : G3_MM_FAST;
        return be->attention_full(be, b->att, b->work, b->q, b->k, b->v, NP, NH, D / NH, scale, am);
    }
    if (be->host) return g3_vision_attention_hooked(b->att, b->q, b->k, b->v, NP, D, NH, scale, !e->exact, layer, e->hk);
    const size_t bytes = (size_t)NP * D * sizeof(float);
    if (be->to_host(be, b->hq, b->q, bytes) || be->to_host(be, b->hk, b->k, bytes) || be->to_host(be, b->hv, b->v, bytes) ||
        g3_vision_attention_hooked(b->ho, b->hq, b->hk, b->hv, NP, D, NH, scale, !e->exact, layer, e->hk))
        return -1;
    return be->to_device(be, b->att, b->ho, bytes);
}

static int need_ops(G3Backend *be) {
    if (!be->layernorm || !be->bias_act || !be->attention_full || !be->attention_full_workspace)
        return g3_errorf("backend %s: no vision tower ops (layernorm, bias_act, attention_full)", be->name);
    return G3_NEED(be, linear) || G3_NEED(be, add) || G3_NEED(be, alloc) || (be->host && G3_NEED(be, gemm)) ? -1 : 0;
}

int g3_vision_encode(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *px, float *out, const G3VisionHooks *hooks) {
    const G3VisionConfig *c = &v->cfg;
    if (need_ops(be)) return -1;
    const int D = c->hidden, FF = c->inter, P = c->patch, S = c->image_size, side = g3_vision_side(c), NP = side * side, NH = c->heads;
    const int K = 3 * P * P, act = c->act_erf ? 2 : 1;
    const long nd = (long)NP * D;
    if (NH < 1 || D % NH) return g3_errorf("vision tower: width %d is not a whole number of %d heads", D, NH);
    Bufs b = {0};
    Enc e = {be, mode, mode == G3_MM_EXACT, mode != G3_MM_EXACT && v->patch.type == G3_BF16, omp_get_max_threads(),
             hooks && hooks->fn && hooks->sites ? hooks : NULL, &b};
    float *patches = NULL, *dpatches = NULL;
    int rc = -1;
    float **all[] = {&b.x, &b.xn, &b.q, &b.k, &b.v, &b.att, &b.tmp};
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++)
        if (!(*all[i] = be->alloc(be, (size_t)nd * sizeof(float)))) goto out;
    const size_t ws = be->attention_full_workspace(be, NP, NH, D / NH);
    if (!(b.h = be->alloc(be, (size_t)NP * FF * sizeof(float))) || !(b.work = be->alloc(be, ws ? ws : 64)) ||
        (e.bf16 && be->host && !(b.wf = g3_malloc_aligned((size_t)G3_MAX(FF, D) * G3_MAX(D, K) * sizeof(float)))) ||
        !(patches = g3_malloc_aligned((size_t)NP * K * sizeof(float))))
        goto out;
    if (e.hk && !be->host) {
        const int scores = (e.hk->sites >> G3_VH_ATTN_SCORES & 1) || (e.hk->sites >> G3_VH_PATTERN & 1);
        if (!(b.stage = g3_malloc_aligned((size_t)NP * G3_MAX(D, FF) * sizeof(float)))) goto out;
        if (scores && !(b.hq = g3_malloc_aligned(4 * (size_t)nd * sizeof(float)))) goto out;
        if (scores) b.hk = b.hq + nd, b.hv = b.hk + nd, b.ho = b.hv + nd;
    }
    // the patch convolution (stride = kernel = P) as a product: row n = the patch at (n / side, n % side)
#pragma omp parallel for schedule(static)
    for (int n = 0; n < NP; n++) {
        const int py = n / side, pxl = n % side;
        float *row = patches + (long)n * K;
        for (int ch = 0; ch < 3; ch++)
            for (int y = 0; y < P; y++)
                memcpy(row + (ch * P + y) * P, px + ((long)ch * S + py * P + y) * S + pxl * P, (size_t)P * sizeof(float));
    }
    if (!be->host) {
        if (!(dpatches = be->alloc(be, (size_t)NP * K * sizeof(float))) ||
            be->to_device(be, dpatches, patches, (size_t)NP * K * sizeof(float)))
            goto out;
    }
    if (lin(&e, b.x, be->host ? patches : dpatches, &v->patch, v->patch_b, NP)) goto out;
    be->bias_act(be, b.x, v->pos, 1, (int)nd, 0, e.exact);  // + the position embeddings, [NP * D] as one row
    if (fire(&e, G3_VH_EMBED, -1, b.x, NP, D, 0)) goto out;
    for (int l = 0; l < c->layers; l++) {
        const G3VisionLayer *y = &v->layer[l];
        if (fire(&e, G3_VH_RESID_PRE, l, b.x, NP, D, 0)) goto out;
        be->layernorm(be, b.xn, b.x, y->ln1w, y->ln1b, NP, D, c->eps, e.exact);
        if (fire(&e, G3_VH_LN1, l, b.xn, NP, D, 0)) goto out;
        if (lin(&e, b.q, b.xn, &y->q, y->qb, NP) || lin(&e, b.k, b.xn, &y->k, y->kb, NP) || lin(&e, b.v, b.xn, &y->v, y->vb, NP))
            goto out;
        if (fire(&e, G3_VH_Q, l, b.q, NP, D, NH) || fire(&e, G3_VH_K, l, b.k, NP, D, NH) || fire(&e, G3_VH_V, l, b.v, NP, D, NH)) goto out;
        if (attention(&e, l, NP, D, NH) || fire(&e, G3_VH_Z, l, b.att, NP, D, NH)) goto out;
        if (lin(&e, b.tmp, b.att, &y->o, y->ob, NP) || fire(&e, G3_VH_ATTN_OUT, l, b.tmp, NP, D, 0)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        if (fire(&e, G3_VH_RESID_MID, l, b.x, NP, D, 0)) goto out;
        be->layernorm(be, b.xn, b.x, y->ln2w, y->ln2b, NP, D, c->eps, e.exact);
        if (fire(&e, G3_VH_LN2, l, b.xn, NP, D, 0) || lin(&e, b.h, b.xn, &y->fc1, NULL, NP)) goto out;
        if (g3_vision_hook_wants(e.hk, G3_VH_MLP_PRE, l)) {  // the bias and the GELU apart, to show what is between
            be->bias_act(be, b.h, y->fc1b, NP, FF, 0, e.exact);
            if (fire(&e, G3_VH_MLP_PRE, l, b.h, NP, FF, 0)) goto out;
            be->bias_act(be, b.h, NULL, NP, FF, act, e.exact);
        } else {
            be->bias_act(be, b.h, y->fc1b, NP, FF, act, e.exact);
        }
        if (fire(&e, G3_VH_MLP_POST, l, b.h, NP, FF, 0)) goto out;
        if (lin(&e, b.tmp, b.h, &y->fc2, y->fc2b, NP) || fire(&e, G3_VH_MLP_OUT, l, b.tmp, NP, D, 0)) goto out;
        be->add(be, b.x, b.x, b.tmp, nd);
        if (fire(&e, G3_VH_RESID_POST, l, b.x, NP, D, 0)) goto out;
    }
    if (be->host) {
        be->layernorm(be, out, b.x, v->post_w, v->post_b, NP, D, c->eps, e.exact);
    } else {
        be->layernorm(be, b.xn, b.x, v->post_w, v->post_b, NP, D, c->eps, e.exact);
        if (fire(&e, G3_VH_POST_NORM, -1, b.xn, NP, D, 0) || be->to_host(be, out, b.xn, (size_t)nd * sizeof(float))) goto out;
    }
    if (be->host && g3_vision_hook_wants(e.hk, G3_VH_POST_NORM, -1)) {
        G3VisionHookEvent ev = {G3_VH_POST_NORM, -1, -1, NP, D, 0, 0, out};
        e.hk->fn(e.hk->ctx, &ev);
    }
    rc = be->sync ? be->sync(be) : 0;
out:
    for (size_t i = 0; i < G3_ARRAY_LEN(all); i++) be->free(be, *all[i]);
    be->free(be, b.h);
    be->free(be, b.work);
    be->free(be, dpatches);
    g3_free_aligned(b.wf);
    g3_free_aligned(b.stage);
    g3_free_aligned(b.hq);
    g3_free_aligned(patches);
    if (rc) g3_error_prefix("vision tower");
    return rc;
}
