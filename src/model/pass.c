// pass.c: the model pass over the backend's ops (see pass.h). Nothing here touches numbers
// itself: every step is one op of the backend the pass was given, so the same code runs
// inference and training on the CPU and on a GPU. Hooks are the one exception: they read
// host memory, so on a device backend the pass stages the sites asked for through p->stage
// (the CPU backend's buffers are host memory and are shown in place).
#include "pass.h"

#include <math.h>
#include <string.h>

#include "../base/base.h"
#include "adapter.h"

const float *g3_norm_weight(const G3Model *m, int i) {
    const G3Tensor *t = &m->t[i];
    return t->normf ? t->normf : (const float *)t->data;
}

// ---- hooks ----

int g3_pass_hook_on(const G3Pass *p, G3HookSite site, int l) {
    if (!p->hook || !(p->hook_sites >> site & 1u)) return 0;
    return l < 0 || (l < 64 ? (int)(p->hook_layers >> l & 1u) : p->hook_layers == ~0ull);
}

void g3_pass_fire(const G3Pass *p, G3HookSite site, int l, float *d, int cols, int heads, int hd) {
    if (!g3_pass_hook_on(p, site, l)) return;
    float *dev = NULL;
    const size_t bytes = (size_t)p->R * cols * sizeof(float);
    if (!p->be->host) {  // show the hook a host copy, then take its edits back
        if (!p->stage || p->be->to_host(p->be, p->stage, d, bytes)) return;
        dev = d;
        d = p->stage;
    }
    if (p->segs) {
        long r0 = 0;
        for (int i = 0; i < p->nseg; i++) {
            const G3Segment *sg = &p->segs[i];
            G3HookEvent ev = {site, l, -1, i, sg->seq, sg->pos0, sg->n, cols, heads, hd, 0, d + r0 * cols};
            p->hook(p->hook_ctx, &ev);
            r0 += sg->n;
        }
    } else {
        for (int b = 0; b < p->B; b++) {
            G3HookEvent ev = {site, l, -1, b, b, 0, p->T, cols, heads, hd, 0, d + (long)b * p->T * cols};
            p->hook(p->hook_ctx, &ev);
        }
    }
    if (dev) p->be->to_device(p->be, dev, d, bytes);
}

#define FIRE(site, d, cols, heads, hd) g3_pass_fire(p, site, l, d, cols, heads, hd)

// ---- forward ----

static G3Weight weight(const G3Model *m, int l, G3LayerRole r) { return g3_tensor_weight(g3_layer_tensor(m, l, r)); }
static const float *norm(const G3Model *m, int l, G3LayerRole r) { return g3_norm_weight(m, m->layer_idx[l][r]); }

// The dropout tag of module (l, r): each adapted layer draws its own mask (backend.h
// g3_dropout_keep).
static inline uint32_t lora_tag(int l, int r) { return (uint32_t)(l * 16 + r + 1); }

// The adapter's input: x itself, or with LoRA dropout x * mask / (1 - p) in p->lora_xd (the
// backend's dropout op: on a device backend the mask is drawn there, nothing crosses).
static const float *lora_input(const G3Pass *p, const float *x, int l, int r, int64_t in) {
    if (!(p->lora_dropout > 0) || !p->lora_xd) return x;
    G3Backend *be = p->be;
    if (G3_NEED(be, dropout)) return NULL;
    be->dropout(be, p->lora_xd, x, (long)p->R * in, p->lora_dropout, 1.0f / (1.0f - p->lora_dropout), p->lora_dropout_seed,
                lora_tag(l, r), 0);
    return p->lora_xd;
}

// y[R, N] = x . W^T for layer l's weight of role r, then, where the model's adapter adapts
// it, y += scale * (x . A^T) . B^T: PEFT's order (base output, then the scaled low-rank term
// added), never merged, so the base stays as stored.
static int linear(const G3Pass *p, float *y, const float *x, int l, G3LayerRole r) {
    G3Backend *be = p->be;
    G3Weight w = weight(p->m, l, r);
    if (be->linear(be, y, x, &w, p->R, p->mode)) return -1;
    const G3LoraModule *lm = g3_adapter_module(p->m->adapter, l, r);
    if (!lm) return 0;
    if (!p->lora_xa || !p->lora_y)
        return g3_errorf("layer %d: the model has a LoRA adapter but this pass has no scratch for it (attach the adapter before "
                         "creating the state or training context)", l);
    const float *xin = lora_input(p, x, l, r, lm->A.cols);
    if (!xin || G3_NEED(be, axpy) || be->linear(be, p->lora_xa, xin, &lm->A, p->R, p->mode) ||
        be->linear(be, p->lora_y, p->lora_xa, &lm->B, p->R, p->mode))
        return -1;
    be->axpy(be, y, p->m->adapter->scale, p->lora_y, (long)p->R * lm->B.rows);
    return 0;
}

// Whether layer l's products of roles r0..r2 may run as one fused op: inference (a KV cache,
// no gradients: the fused ops keep no intermediate for backward) and no adapter on any of them.
static int fusable(const G3Pass *p, int l, G3LayerRole r0, G3LayerRole r1, G3LayerRole r2) {
    const G3Adapter *ad = p->m->adapter;
    return p->kv && !p->grad && !g3_adapter_module(ad, l, r0) && !g3_adapter_module(ad, l, r1) && !g3_adapter_module(ad, l, r2);
}

int g3_pass_embed(const G3Pass *p, float *x, const int32_t *ids) {
    const G3Model *m = p->m;
    const int l = -1;
    G3Weight E = g3_tensor_weight(&m->t[m->embed_idx]);
    // the scale is the exact sqrt in f32 (the float64 reference does not round it to bf16)
    if (p->be->embed(p->be, x, ids, &E, p->R, sqrtf((float)m->cfg.hidden))) return -1;
    const size_t rb = (size_t)m->cfg.hidden * sizeof(float);
    for (int r = 0; p->soft_rows && r < p->R; r++)  // image soft tokens in place of their placeholders
        if (p->soft_rows[r] && p->be->to_device(p->be, x + (long)r * m->cfg.hidden, p->soft_rows[r], rb)) return -1;
    FIRE(G3_HOOK_EMBED, x, m->cfg.hidden, 0, 0);
    return 0;
}

// Scores and patterns of attention_cache reach the hook of hooks.h through this adapter.
typedef struct {
    const G3Pass *p;
    int layer;
} AttnHookCtx;

static void attn_hook(void *ctx, int layer, int head, int seg, float *scores, int rows, int keys, int key0, int pattern) {
    const AttnHookCtx *hc = ctx;
    const G3Pass *p = hc->p;
    const G3Segment *sg = &p->segs[seg];
    G3HookEvent ev = {pattern ? G3_HOOK_PATTERN : G3_HOOK_ATTN_SCORES, layer, head, seg, sg->seq, sg->pos0, rows, keys, 0, 0, key0, scores};
    p->hook(p->hook_ctx, &ev);
}

// Whether layer l's input norm is written by layer l - 1's last op (add_rmsnorm with the next
// weight): layers chained over shared acts at inference (no 1/rms kept), and no hook that
// could edit the residual between the two (the ln1 hook still sees the same values).
static int norm_chained(const G3Pass *p, const G3LayerActs *a, int l) {
    return l > 0 && p->chain && p->kv && !p->grad && p->be->add_rmsnorm && !a->rs1 && !a->rs4 &&
           !g3_pass_hook_on(p, G3_HOOK_LN2_POST, l - 1) && !g3_pass_hook_on(p, G3_HOOK_RESID_POST, l - 1) &&
           !g3_pass_hook_on(p, G3_HOOK_RESID_PRE, l);
}

int g3_layer_forward(const G3Pass *p, int l, const G3LayerActs *a, float *x, float *xout) {
    G3Backend *be = p->be;
    const G3Model *m = p->m;
    const G3Config *c = &m->cfg;
    const int R = p->R, C = c->hidden, F = c->inter, HD = c->head_dim, NH = c->heads, NKV = c->kv_heads;
    const int window = c->sliding[l] ? c->sliding_window : 0;
    const float scale = 1.0f / sqrtf(c->query_pre_attn_scalar);
    const float *cs = c->sliding[l] ? p->cos_l : p->cos_g, *sn = c->sliding[l] ? p->sin_l : p->sin_g;
    FIRE(G3_HOOK_RESID_PRE, x, C, 0, 0);
    // attention block (the input norm done by the previous layer's last op where it could)
    if (!norm_chained(p, a, l)) be->rmsnorm(be, a->xn1, a->rs1, x, norm(m, l, W_ATTN_NORM), R, C, c->eps);
    FIRE(G3_HOOK_LN1, a->xn1, C, 0, 0);
    float *q0 = c->qk_norm ? a->qraw : a->q, *k0 = c->qk_norm ? a->kraw : a->k;
    if (fusable(p, l, W_Q, W_K, W_V) && be->linear_multi) {  // one pass over the three weights
        const G3Weight wq = weight(m, l, W_Q), wk = weight(m, l, W_K), wv = weight(m, l, W_V);
        const G3Weight *w3[3] = {&wq, &wk, &wv};
        float *y3[3] = {q0, k0, a->v};
        if (be->linear_multi(be, 3, y3, a->xn1, w3, R, p->mode)) return -1;
    } else if (linear(p, q0, a->xn1, l, W_Q) || linear(p, k0, a->xn1, l, W_K) || linear(p, a->v, a->xn1, l, W_V)) {
        return -1;
    }
    // QK-norm and RoPE in one op where nothing looks between them (inference, no q/k hook)
    const int fuse_qk = be->qk_norm_rope && !a->qrs && !a->krs && q0 == a->q && k0 == a->k && !g3_pass_hook_on(p, G3_HOOK_Q, l) &&
                        !g3_pass_hook_on(p, G3_HOOK_K, l);
    if (fuse_qk) {
        be->qk_norm_rope(be, a->q, a->k, c->qk_norm ? norm(m, l, W_Q_NORM) : NULL, c->qk_norm ? norm(m, l, W_K_NORM) : NULL, cs, sn,
                         R, NH, NKV, HD, c->eps);
    } else {
        if (c->qk_norm) {  // per-head RMSNorm over HD, one weight shared by all heads
            be->rmsnorm(be, a->q, a->qrs, q0, norm(m, l, W_Q_NORM), R * NH, HD, c->eps);
            be->rmsnorm(be, a->k, a->krs, k0, norm(m, l, W_K_NORM), R * NKV, HD, c->eps);
        }
        FIRE(G3_HOOK_Q, a->q, NH * HD, NH, HD);
        FIRE(G3_HOOK_K, a->k, NKV * HD, NKV, HD);
        be->rope(be, a->q, cs, sn, R, NH, HD);
        be->rope(be, a->k, cs, sn, R, NKV, HD);
    }
    FIRE(G3_HOOK_V, a->v, NKV * HD, NKV, HD);
    FIRE(G3_HOOK_ROT_Q, a->q, NH * HD, NH, HD);
    FIRE(G3_HOOK_ROT_K, a->k, NKV * HD, NKV, HD);
    if (p->kv) {
        AttnHookCtx hc = {p, l};
        G3AttnHook ah = {attn_hook, &hc, g3_pass_hook_on(p, G3_HOOK_ATTN_SCORES, l), g3_pass_hook_on(p, G3_HOOK_PATTERN, l)};
        const int nseg = p->nseg - (p->block_last != 0);  // segments that are appended
        const G3AttnHook *hk = ah.want_scores || ah.want_pattern ? &ah : NULL;
        // the append after the k/v hooks and attention, so that their edits are what later tokens see
        if (nseg > 0 && be->attention_cache_append) {
            if (be->attention_cache_append(be, a->att, p->kv, l, p->segs, nseg, a->q, a->k, a->v, NH, window, scale, c->attn_softcap,
                                           hk, p->mode))
                return -1;
        } else if (nseg > 0) {
            if (be->attention_cache(be, a->att, p->kv, l, p->segs, nseg, a->q, a->k, a->v, NH, window, scale, c->attn_softcap, hk,
                                    p->mode))
                return -1;
            be->kv_append(be, p->kv, l, p->segs, nseg, a->k, a->v);
        }
        if (p->block_last) {  // SBD: the block sees what was just appended, and itself both ways
            const long r0 = R - p->segs[nseg].n;
            if (G3_NEED(be, attention_cache_block) ||
                be->attention_cache_block(be, a->att + r0 * NH * HD, p->kv, l, &p->segs[nseg], a->q + r0 * NH * HD,
                                          a->k + r0 * NKV * HD, a->v + r0 * NKV * HD, NH, window, scale, c->attn_softcap))
                return -1;
        }
    } else if (p->mask) {
        if (G3_NEED(be, attention_masked) || be->attention_masked(be, a->att, a->lse, a->q, a->k, a->v, p->mask, p->B, p->T, NH,
                                                                   NKV, HD, window, scale, c->attn_softcap))
            return -1;
    } else {
        if (G3_NEED(be, attention) ||
            be->attention(be, a->att, a->lse, a->q, a->k, a->v, p->B, p->T, NH, NKV, HD, window, scale, c->attn_softcap, p->mode))
            return -1;
    }
    FIRE(G3_HOOK_Z, a->att, NH * HD, NH, HD);
    if (linear(p, a->ao, a->att, l, W_O)) return -1;
    FIRE(G3_HOOK_ATTN_OUT, a->ao, C, 0, 0);
    // the residual step and the next norm in one op where nothing looks between them
    if (be->add_rmsnorm && !a->rs2 && !a->rs3 && a->h == x && !g3_pass_hook_on(p, G3_HOOK_LN1_POST, l) &&
        !g3_pass_hook_on(p, G3_HOOK_RESID_MID, l)) {
        be->add_rmsnorm(be, a->h, a->xn2, a->ao, norm(m, l, W_POST_ATTN_NORM), norm(m, l, W_PRE_FFW_NORM), R, C, c->eps);
    } else {
        be->rmsnorm(be, a->tmp, a->rs2, a->ao, norm(m, l, W_POST_ATTN_NORM), R, C, c->eps);
        FIRE(G3_HOOK_LN1_POST, a->tmp, C, 0, 0);
        be->add(be, a->h, x, a->tmp, (long)R * C);
        FIRE(G3_HOOK_RESID_MID, a->h, C, 0, 0);
        // MLP block
        be->rmsnorm(be, a->xn2, a->rs3, a->h, norm(m, l, W_PRE_FFW_NORM), R, C, c->eps);
    }
    FIRE(G3_HOOK_LN2, a->xn2, C, 0, 0);
    if (fusable(p, l, W_GATE, W_UP, W_UP) && be->linear_geglu && !g3_pass_hook_on(p, G3_HOOK_MLP_PRE, l) &&
        !g3_pass_hook_on(p, G3_HOOK_MLP_PRE_LINEAR, l)) {  // gate, up and GeGLU in one pass; g and u not kept
        const G3Weight wg = weight(m, l, W_GATE), wu = weight(m, l, W_UP);
        if (be->linear_geglu(be, a->a, a->u, a->xn2, &wg, &wu, R, c->act == G3_GELU_ERF, p->mode)) return -1;
    } else {
        if (linear(p, a->g, a->xn2, l, W_GATE)) return -1;
        FIRE(G3_HOOK_MLP_PRE, a->g, F, 0, 0);
        if (linear(p, a->u, a->xn2, l, W_UP)) return -1;
        FIRE(G3_HOOK_MLP_PRE_LINEAR, a->u, F, 0, 0);
        be->geglu(be, a->a, a->g, a->u, (long)R * F, c->act == G3_GELU_ERF);
    }
    FIRE(G3_HOOK_MLP_POST, a->a, F, 0, 0);
    if (linear(p, a->mo, a->a, l, W_DOWN)) return -1;
    FIRE(G3_HOOK_MLP_OUT, a->mo, C, 0, 0);
    if (be->add_rmsnorm && !a->rs4 && xout == a->h && !g3_pass_hook_on(p, G3_HOOK_LN2_POST, l)) {
        const int next = l + 1 < c->layers && norm_chained(p, a, l + 1);
        be->add_rmsnorm(be, xout, next ? a->xn1 : NULL, a->mo, norm(m, l, W_POST_FFW_NORM), next ? norm(m, l + 1, W_ATTN_NORM) : NULL,
                        R, C, c->eps);
    } else {
        be->rmsnorm(be, a->tmp, a->rs4, a->mo, norm(m, l, W_POST_FFW_NORM), R, C, c->eps);
        FIRE(G3_HOOK_LN2_POST, a->tmp, C, 0, 0);
        be->add(be, xout, a->h, a->tmp, (long)R * C);
    }
    FIRE(G3_HOOK_RESID_POST, xout, C, 0, 0);
    return 0;
}

void g3_pass_final_norm(const G3Pass *p, float *y, float *rstd, const float *x, int R) {
    const G3Model *m = p->m;
    p->be->rmsnorm(p->be, y, rstd, x, g3_norm_weight(m, m->final_norm_idx), R, m->cfg.hidden, m->cfg.eps);
}

int g3_pass_head(const G3Pass *p, float *logits, const float *xf, int R, int cap) {
    const G3Model *m = p->m;
    G3Weight E = g3_tensor_weight(&m->t[m->embed_idx]);
    if (p->be->linear(p->be, logits, xf, &E, R, p->mode)) return -1;
    if (cap && m->cfg.final_softcap > 0) p->be->softcap(p->be, logits, (long)R * m->cfg.vocab, m->cfg.final_softcap);
    return 0;
}

// ---- backward ----

// The gradient of tensor (l, r), or NULL when it is frozen.
static float *grad(const G3Pass *p, int l, G3LayerRole r) { return p->grad ? p->grad[p->m->layer_idx[l][r]] : NULL; }

// dx (+)= dy . W, and dW += dy^T . x when W is trained: the two gradients of y = x . W^T.
static int linear_backward(const G3Pass *p, float *dx, int acc, const float *dy, const float *x, int l, G3LayerRole r) {
    G3Backend *be = p->be;
    G3Weight w = weight(p->m, l, r);
    float *dw = grad(p, l, r);
    if (dw) be->gemm(be, 1, 0, (int)w.rows, (int)w.cols, p->R, dy, x, dw, 1, p->mode);
    return be->linear_dx(be, dx, dy, &w, p->R, acc, p->mode);
}

// The adapter's part of linear's backward, for y += s * (x . A^T) . B^T (s the adapter's
// scale), after the base's: with xa = x . A^T and dxa = s * dy . B,
//   dB += s * dy^T . xa,   dA += dxa^T . x,   dx += dxa . A
// (gradients only where p->lora_grad has the module; dx always, the base may be trained too).
static int lora_backward(const G3Pass *p, float *dx, const float *dy, const float *x, int l, G3LayerRole r) {
    const G3LoraModule *lm = g3_adapter_module(p->m->adapter, l, r);
    if (!lm) return 0;
    if (!p->lora_xa || !p->lora_dxa) return g3_errorf("layer %d: backward through a LoRA adapter needs its scratch", l);
    G3Backend *be = p->be;
    const G3LoraModule *gm = g3_adapter_module(p->lora_grad, l, r);
    const float sc = p->m->adapter->scale;
    const int rk = (int)lm->A.rows, in = (int)lm->A.cols, out = (int)lm->B.rows;
    const int64_t n = (int64_t)p->R * rk;
    if (G3_NEED(be, dropout) || be->linear_dx(be, p->lora_dxa, dy, &lm->B, p->R, 0, p->mode)) return -1;  // dy . B  [R, r]
    be->dropout(be, p->lora_dxa, p->lora_dxa, (long)n, 0.0f, sc, 0, 0, 0);                                 // dxa = s dy . B
    const int drop = p->lora_dropout > 0 && p->lora_xd;
    if (gm) {  // with dropout, x below is forward's x * mask / (1 - p), drawn again
        const float *xin = lora_input(p, x, l, r, in);
        if (!xin || be->linear(be, p->lora_xa, xin, &lm->A, p->R, p->mode)) return -1;  // xa = x . A^T, recomputed
        be->dropout(be, p->lora_xa, p->lora_xa, (long)n, 0.0f, sc, 0, 0, 0);
        be->gemm(be, 1, 0, out, rk, p->R, dy, p->lora_xa, (float *)gm->B.data, 1, p->mode);       // dB += dy^T . (s xa)
        be->gemm(be, 1, 0, rk, in, p->R, p->lora_dxa, xin, (float *)gm->A.data, 1, p->mode);      // dA += dxa^T . x
    }
    if (!drop) return be->linear_dx(be, dx, p->lora_dxa, &lm->A, p->R, 1, p->mode);  // dx += dxa . A
    // dx += (dxa . A) * mask / (1 - p)
    if (be->linear_dx(be, p->lora_xd, p->lora_dxa, &lm->A, p->R, 0, p->mode)) return -1;
    be->dropout(be, dx, p->lora_xd, (long)p->R * in, p->lora_dropout, 1.0f / (1.0f - p->lora_dropout), p->lora_dropout_seed,
                lora_tag(l, r), 1);
    return 0;
}

int g3_layer_backward(const G3Pass *p, int l, const G3LayerActs *a, const float *x, float *dx, const G3LayerGradScratch *s) {
    G3Backend *be = p->be;
    const G3Model *m = p->m;
    const G3Config *c = &m->cfg;
    const int R = p->R, C = c->hidden, F = c->inter, HD = c->head_dim, NH = c->heads, NKV = c->kv_heads;
    const int erf_form = c->act == G3_GELU_ERF, window = c->sliding[l] ? c->sliding_window : 0;
    const float *cs = c->sliding[l] ? p->cos_l : p->cos_g, *sn = c->sliding[l] ? p->sin_l : p->sin_g;
    if (G3_NEED(be, attention_backward) || G3_NEED(be, mlp_down_backward)) return -1;
    // MLP block, last op first; the residual passes dx through unchanged to dh
    be->rmsnorm_backward(be, s->tmp, grad(p, l, W_POST_FFW_NORM), dx, a->mo, norm(m, l, W_POST_FFW_NORM), a->rs4, R, C, 0);
    G3Weight wd = weight(m, l, W_DOWN);
    if (g3_adapter_module(m->adapter, l, W_DOWN) || wd.type != G3_F32) {
        // unfused (the fused op takes F32 weights and no adapter): da = dmo . Wd + the
        // adapter's term, then geglu's backward
        if (!s->da) return g3_errorf("layer %d: backward through an adapted or 16-bit down_proj needs its scratch", l);
        be->geglu(be, s->a, a->g, a->u, (long)R * F, erf_form);  // the down input, recomputed
        if (be->linear_dx(be, s->da, s->tmp, &wd, R, 0, p->mode) || lora_backward(p, s->da, s->tmp, s->a, l, W_DOWN)) return -1;
        be->geglu_backward(be, s->dg, s->du, s->da, a->g, a->u, (long)R * F, erf_form);
    } else if (be->mlp_down_backward(be, s->a, s->dg, s->du, s->tmp, &wd, a->g, a->u, R, F, erf_form, p->mode)) {
        return -1;
    }
    if (grad(p, l, W_DOWN)) be->gemm(be, 1, 0, C, F, R, s->tmp, s->a, grad(p, l, W_DOWN), 1, p->mode);  // dWd += dmo^T . a
    if (linear_backward(p, s->dxn, 0, s->dg, a->xn2, l, W_GATE) || lora_backward(p, s->dxn, s->dg, a->xn2, l, W_GATE) ||
        linear_backward(p, s->dxn, 1, s->du, a->xn2, l, W_UP) || lora_backward(p, s->dxn, s->du, a->xn2, l, W_UP))
        return -1;
    be->rmsnorm_backward(be, dx, grad(p, l, W_PRE_FFW_NORM), s->dxn, a->h, norm(m, l, W_PRE_FFW_NORM), a->rs3, R, C, 1);  // dx = dh
    // attention block
    be->rmsnorm_backward(be, s->tmp, grad(p, l, W_POST_ATTN_NORM), dx, a->ao, norm(m, l, W_POST_ATTN_NORM), a->rs2, R, C, 0);
    if (linear_backward(p, s->datt, 0, s->tmp, a->att, l, W_O) || lora_backward(p, s->datt, s->tmp, a->att, l, W_O)) return -1;
    if (p->mask) {
        if (G3_NEED(be, attention_masked_backward) ||
            be->attention_masked_backward(be, s->dq, s->dk, s->dv, s->datt, a->q, a->k, a->v, a->lse, p->mask, p->B, p->T, NH,
                                          NKV, HD, window, 1.0f / sqrtf(c->query_pre_attn_scalar), c->attn_softcap))
            return -1;
    } else if (be->attention_backward(be, s->dq, s->dk, s->dv, s->datt, a->att, a->q, a->k, a->v, a->lse, p->B, p->T, NH, NKV, HD,
                                      window, 1.0f / sqrtf(c->query_pre_attn_scalar), c->attn_softcap, p->mode)) {
        return -1;
    }
    be->rope_backward(be, s->dq, cs, sn, R, NH, HD);
    be->rope_backward(be, s->dk, cs, sn, R, NKV, HD);
    float *dq0 = s->dq, *dk0 = s->dk;
    if (c->qk_norm) {
        dq0 = s->dqn;
        dk0 = s->dkn;
        be->rmsnorm_backward(be, dq0, grad(p, l, W_Q_NORM), s->dq, a->qraw, norm(m, l, W_Q_NORM), a->qrs, R * NH, HD, 0);
        be->rmsnorm_backward(be, dk0, grad(p, l, W_K_NORM), s->dk, a->kraw, norm(m, l, W_K_NORM), a->krs, R * NKV, HD, 0);
    }
    if (linear_backward(p, s->dxn, 0, dq0, a->xn1, l, W_Q) || lora_backward(p, s->dxn, dq0, a->xn1, l, W_Q) ||
        linear_backward(p, s->dxn, 1, dk0, a->xn1, l, W_K) || lora_backward(p, s->dxn, dk0, a->xn1, l, W_K) ||
        linear_backward(p, s->dxn, 1, s->dv, a->xn1, l, W_V) || lora_backward(p, s->dxn, s->dv, a->xn1, l, W_V))
        return -1;
    be->rmsnorm_backward(be, dx, grad(p, l, W_ATTN_NORM), s->dxn, x, norm(m, l, W_ATTN_NORM), a->rs1, R, C, 1);
    return 0;
}
