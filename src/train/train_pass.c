// train_pass.c: the exact training pass over a micro-batch of B sequences of T tokens:
// a forward in f32 that keeps what backward needs, the loss, and the backward pass, which
// is the forward read in reverse. One decoder layer, as in the paper:
//   h  = x + post_attn_norm(o_proj(attn(rope(qk_norm(q, k)), v)))   with q, k, v of input_norm(x)
//   x' = h + post_ffw_norm(down(geglu(gate(xn2), up(xn2))))          with xn2 = pre_ffw_norm(h)
// then final_norm, the tied head (logits = xf . E^T, optional softcap) and cross-entropy.
// Matrix products are g3_sgemm (g3_gemm_bf16 in bf16 mode); the row-wise ops are
// train_ops.c. Activations live in one arena carved at context creation; nothing is
// allocated per step. With recompute = 1 only each layer's input is kept and the layer is
// run again inside backward (checkpointing).
// Not here: the optimizer, data loading, schedules (optim.c, data.c, ...).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/kernels.h"
#include "../kernels/ops.h"
#include "train.h"
#include "train_ops.h"

// One layer's saved activations (BT = B*T rows, QD = NH*HD, KD = NKV*HD).
typedef struct {
    float *xn1, *rs1;    // [BT, C] input_layernorm(x), [BT] its 1/rms
    float *qraw, *qrs;   // [BT, QD] q_proj output before QK-norm, [BT*NH] 1/rms (Gemma 3 only)
    float *kraw, *krs;   // [BT, KD], [BT*NKV]                                 (Gemma 3 only)
    float *q, *k, *v;    // [BT, QD], [BT, KD], [BT, KD] after QK-norm and RoPE
    float *lse;          // [B, NH, T] log-sum-exp of each attention row (probabilities are recomputed)
    float *att;          // [BT, QD] attention output (o_proj input)
    float *ao, *rs2;     // [BT, C] o_proj output, [BT] post_attention_layernorm 1/rms
    float *h;            // [BT, C] residual after the attention block
    float *xn2, *rs3;    // [BT, C] pre_feedforward_layernorm(h), [BT]
    float *g, *u;        // [BT, F] gate and up outputs (geglu is recomputed from them)
    float *mo, *rs4;     // [BT, C] down_proj output, [BT] post_feedforward_layernorm 1/rms
} LayerActs;

struct G3TrainCtx {
    const G3TrainModel *tm;
    int B, T, recompute, nthreads, chunk;
    int bf16;            // matrix products with bf16 operands (g3_train_ctx_set_bf16)
    float *mem;          // the one allocation
    int64_t nfloats;
    float *xs;           // [L+1, BT, C] residual stream: input of each layer, then the last output
    LayerActs *la;       // [L] saved activations, or [1] reused per layer when recomputing
    float *xf, *rsf;     // [BT, C] final_norm output, [BT]
    float *cos_l, *sin_l, *cos_g, *sin_g;  // [T, HD/2] RoPE tables of sliding / global layers
    // scratch shared by all layers
    float *tmp;          // [BT, C] branch output in forward; d(norm input) in backward
    float *dx;           // [BT, C] gradient of the residual stream
    float *dxn;          // [BT, C] gradient of a norm's output
    float *a;            // [BT, F] geglu output
    float *dg, *du;      // [BT, F]
    float *datt, *dq;    // [BT, QD]
    float *dkh, *dvh;    // [BT, QD] per-query-head key/value gradients
    float *dk, *dv;      // [BT, KD]
    float *logits;       // [chunk, V] logits, then their gradient, a chunk of rows at a time
    double *rowloss;     // [chunk]
    float *scratch;      // [nthreads, g3_attention_scratch(T, HD)] attention panels
};

// Sizing and carving walk the same code: with base == NULL it only counts.
typedef struct {
    float *base;
    int64_t used;
} Carve;

static float *carve(Carve *cv, int64_t n) {
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 15) & ~(int64_t)15;  // 64-byte aligned pieces
    return p;
}

static void layout(G3TrainCtx *cx, Carve *cv) {
    const G3Config *c = &cx->tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T, C = c->hidden, F = c->inter, HD = c->head_dim;
    const int64_t QD = c->heads * HD, KD = c->kv_heads * HD, L = c->layers;
    cx->xs = carve(cv, (L + 1) * BT * C);
    int nla = cx->recompute ? 1 : (int)L;
    for (int l = 0; l < nla; l++) {
        LayerActs *a = &cx->la[l];
        a->xn1 = carve(cv, BT * C); a->rs1 = carve(cv, BT);
        if (c->qk_norm) {
            a->qraw = carve(cv, BT * QD); a->qrs = carve(cv, BT * c->heads);
            a->kraw = carve(cv, BT * KD); a->krs = carve(cv, BT * c->kv_heads);
        }
        a->q = carve(cv, BT * QD); a->k = carve(cv, BT * KD); a->v = carve(cv, BT * KD);
        a->lse = carve(cv, BT * c->heads);
        a->att = carve(cv, BT * QD);
        a->ao = carve(cv, BT * C); a->rs2 = carve(cv, BT);
        a->h = carve(cv, BT * C);
        a->xn2 = carve(cv, BT * C); a->rs3 = carve(cv, BT);
        a->g = carve(cv, BT * F); a->u = carve(cv, BT * F);
        a->mo = carve(cv, BT * C); a->rs4 = carve(cv, BT);
    }
    cx->xf = carve(cv, BT * C); cx->rsf = carve(cv, BT);
    cx->cos_l = carve(cv, cx->T * HD / 2); cx->sin_l = carve(cv, cx->T * HD / 2);
    cx->cos_g = carve(cv, cx->T * HD / 2); cx->sin_g = carve(cv, cx->T * HD / 2);
    cx->tmp = carve(cv, BT * C); cx->dx = carve(cv, BT * C); cx->dxn = carve(cv, BT * C);
    cx->a = carve(cv, BT * F); cx->dg = carve(cv, BT * F); cx->du = carve(cv, BT * F);
    cx->datt = carve(cv, BT * QD); cx->dq = carve(cv, BT * QD);
    cx->dkh = carve(cv, BT * QD); cx->dvh = carve(cv, BT * QD);
    cx->dk = carve(cv, BT * KD); cx->dv = carve(cv, BT * KD);
    cx->logits = carve(cv, (int64_t)cx->chunk * c->vocab);
    cx->rowloss = (double *)carve(cv, 2 * (int64_t)cx->chunk);
    cx->scratch = carve(cv, (int64_t)cx->nthreads * g3_attention_scratch(cx->T, (int)HD));
}

// Rows of logits processed at once: ~128 MB of logits (128 rows at V = 262144), so any B*T
// works with a large vocabulary, and small vocabularies take the whole batch in one GEMM.
// Fewer rows make the dE += dlogits^T . xf GEMMs thin (each one sweeps all of dE): 64 rows
// cost ~30% more time on the head than 128 at V = 262144, 256 rows ~15% less.
static int head_chunk(int64_t BT, int V) {
    int64_t ch = ((int64_t)1 << 25) / V;
    ch = G3_MAX(ch, 32);
    return (int)G3_MIN(ch, BT);
}

int64_t g3_train_ctx_bytes(const G3TrainModel *tm, int B, int T, int recompute) {
    G3TrainCtx cx = {.tm = tm, .B = B, .T = T, .recompute = recompute != 0, .nthreads = omp_get_max_threads()};
    cx.chunk = head_chunk((int64_t)B * T, tm->m.cfg.vocab);
    cx.la = g3_calloc(cx.recompute ? 1 : (size_t)tm->m.cfg.layers, sizeof *cx.la);
    if (!cx.la) return -1;
    Carve cv = {NULL, 0};
    layout(&cx, &cv);
    free(cx.la);
    return cv.used * (int64_t)sizeof(float);
}

G3TrainCtx *g3_train_ctx_new(const G3TrainModel *tm, int B, int T, int recompute, int64_t *bytes) {
    const G3Config *c = &tm->m.cfg;
    if (B < 1 || T < 1) { g3_errorf("train: batch %d x %d tokens: both must be positive", B, T); return NULL; }
    if (T > c->max_pos) { g3_errorf("train: sequence length %d exceeds max_position_embeddings %d", T, c->max_pos); return NULL; }
    G3TrainCtx *cx = g3_calloc(1, sizeof *cx);
    if (!cx) return NULL;
    cx->tm = tm;
    cx->B = B;
    cx->T = T;
    cx->recompute = recompute != 0;
    cx->nthreads = omp_get_max_threads();
    cx->chunk = head_chunk((int64_t)B * T, c->vocab);
    cx->la = g3_calloc(cx->recompute ? 1 : (size_t)c->layers, sizeof *cx->la);
    if (!cx->la) { free(cx); return NULL; }
    Carve cv = {NULL, 0};
    layout(cx, &cv);
    cx->nfloats = cv.used;
    if (bytes) *bytes = cv.used * (int64_t)sizeof(float);
    cx->mem = g3_malloc_aligned((size_t)cv.used * sizeof(float));
    if (!cx->mem) {
        g3_error_prefix("train: %.2f GiB of activations for B=%d, T=%d%s", cv.used * 4.0 / (1 << 30), B, T,
                        recompute ? "" : " (try activation checkpointing)");
        g3_train_ctx_free(cx);
        return NULL;
    }
    cv = (Carve){cx->mem, 0};
    layout(cx, &cv);
    // positions 0..T-1 of every sequence: the RoPE tables are fixed for the context's life
    for (int t = 0; t < T; t++) {
        g3_rope_angles(cx->cos_l + (int64_t)t * c->head_dim / 2, cx->sin_l + (int64_t)t * c->head_dim / 2, t, c->head_dim,
                       c->rope_local_base, c->rope_local_scale);
        g3_rope_angles(cx->cos_g + (int64_t)t * c->head_dim / 2, cx->sin_g + (int64_t)t * c->head_dim / 2, t, c->head_dim,
                       c->rope_global_base, c->rope_global_scale);
    }
    return cx;
}

void g3_train_ctx_free(G3TrainCtx *cx) {
    if (!cx) return;
    g3_free_aligned(cx->mem);
    free(cx->la);
    free(cx);
}

void g3_train_ctx_set_bf16(G3TrainCtx *cx, int on) { cx->bf16 = on != 0; }

// The pass's matrix products (those of the linear layers and the head; attention's own stay
// f32): f32, or with operands rounded to bf16 and f32 sums (mixed precision).
static void mm_epi(const G3TrainCtx *cx, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int acc,
                   const G3SgemmEpilogue *epi) {
    if (cx->bf16) g3_gemm_bf16_epi(ta, tb, M, N, K, A, B, C, acc, epi);
    else g3_sgemm_epi(ta, tb, M, N, K, A, B, C, acc, epi);
}

static void mm(const G3TrainCtx *cx, int ta, int tb, int M, int N, int K, const float *A, const float *B, float *C, int acc) {
    mm_epi(cx, ta, tb, M, N, K, A, B, C, acc, NULL);
}

#define P(l, r) (tm->params + tm->off[tm->m.layer_idx[l][r]])
#define G(l, r) (tm->grads + tm->off[tm->m.layer_idx[l][r]])

// y = a + b over n floats (the residual adds), with every thread: serial, they held the other
// thread idle twice a layer.
static void add_rows(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void layer_forward(G3TrainCtx *cx, int l, const LayerActs *a, const float *x, float *xout) {
    const G3TrainModel *tm = cx->tm;
    const G3Config *c = &tm->m.cfg;
    const int B = cx->B, T = cx->T, BT = B * T, C = c->hidden, F = c->inter, HD = c->head_dim;
    const int NH = c->heads, NKV = c->kv_heads, QD = NH * HD, KD = NKV * HD;
    const float *cs = c->sliding[l] ? cx->cos_l : cx->cos_g, *sn = c->sliding[l] ? cx->sin_l : cx->sin_g;
    // attention block
    g3_rmsnorm_forward(a->xn1, a->rs1, x, P(l, W_ATTN_NORM), BT, C, c->eps);
    float *q0 = c->qk_norm ? a->qraw : a->q, *k0 = c->qk_norm ? a->kraw : a->k;
    mm(cx, 0, 1, BT, QD, C, a->xn1, P(l, W_Q), q0, 0);
    mm(cx, 0, 1, BT, KD, C, a->xn1, P(l, W_K), k0, 0);
    mm(cx, 0, 1, BT, KD, C, a->xn1, P(l, W_V), a->v, 0);
    if (c->qk_norm) {  // per-head RMSNorm over HD, one weight shared by all heads
        g3_rmsnorm_forward(a->q, a->qrs, a->qraw, P(l, W_Q_NORM), BT * NH, HD, c->eps);
        g3_rmsnorm_forward(a->k, a->krs, a->kraw, P(l, W_K_NORM), BT * NKV, HD, c->eps);
    }
    g3_rope_forward(a->q, cs, sn, B, T, NH, HD);
    g3_rope_forward(a->k, cs, sn, B, T, NKV, HD);
    g3_attention_forward(a->att, a->lse, a->q, a->k, a->v, B, T, NH, NKV, HD, c->sliding[l] ? c->sliding_window : 0,
                         1.0f / sqrtf(c->query_pre_attn_scalar), c->attn_softcap, cx->scratch, cx->nthreads);
    mm(cx, 0, 1, BT, C, QD, a->att, P(l, W_O), a->ao, 0);
    g3_rmsnorm_forward(cx->tmp, a->rs2, a->ao, P(l, W_POST_ATTN_NORM), BT, C, c->eps);
    add_rows(a->h, x, cx->tmp, (int64_t)BT * C);
    // MLP block
    g3_rmsnorm_forward(a->xn2, a->rs3, a->h, P(l, W_PRE_FFW_NORM), BT, C, c->eps);
    mm(cx, 0, 1, BT, F, C, a->xn2, P(l, W_GATE), a->g, 0);
    mm(cx, 0, 1, BT, F, C, a->xn2, P(l, W_UP), a->u, 0);
    // a separate pass: as the up product's epilogue (as the backward does) it measured the
    // same on shape (a) and 4-8% slower on (b)
    g3_geglu_forward(cx->a, a->g, a->u, (int64_t)BT * F, c->act == G3_GELU_ERF);
    mm(cx, 0, 1, BT, C, F, cx->a, P(l, W_DOWN), a->mo, 0);
    g3_rmsnorm_forward(cx->tmp, a->rs4, a->mo, P(l, W_POST_FFW_NORM), BT, C, c->eps);
    add_rows(xout, a->h, cx->tmp, (int64_t)BT * C);
}

// dx: in, the gradient of the layer's output; out, the gradient of its input x.
static void layer_backward(G3TrainCtx *cx, int l, const LayerActs *a, const float *x, float *dx) {
    const G3TrainModel *tm = cx->tm;
    const G3Config *c = &tm->m.cfg;
    const int B = cx->B, T = cx->T, BT = B * T, C = c->hidden, F = c->inter, HD = c->head_dim;
    const int NH = c->heads, NKV = c->kv_heads, QD = NH * HD, KD = NKV * HD, erf_form = c->act == G3_GELU_ERF;
    const float *cs = c->sliding[l] ? cx->cos_l : cx->cos_g, *sn = c->sliding[l] ? cx->sin_l : cx->sin_g;
    // MLP block, last op first; the residual passes dx through unchanged to dh
    g3_rmsnorm_backward(cx->tmp, G(l, W_POST_FFW_NORM), dx, a->mo, P(l, W_POST_FFW_NORM), a->rs4, BT, C, 0);
    // da = dmo . Wd into dg, and per tile of it while in cache: a recomputed (cheaper than
    // keeping [BT, F]), dg and du, from one read of g and u. Two passes after the product
    // were 0.5-0.7 ms a layer slower on shape (a) (the same on (b)).
    G3GegluEpi ge = {.a = cx->a, .dg = cx->dg, .du = cx->du, .g = a->g, .u = a->u, .ld = F, .erf_form = erf_form};
    mm_epi(cx, 0, 0, BT, F, C, cx->tmp, P(l, W_DOWN), cx->dg, 0, &(G3SgemmEpilogue){g3_geglu_epi, g3_geglu_epi_prefetch, &ge});
    mm(cx, 1, 0, C, F, BT, cx->tmp, cx->a, G(l, W_DOWN), 1);      // dWd += dmo^T . a
    mm(cx, 1, 0, F, C, BT, cx->dg, a->xn2, G(l, W_GATE), 1);
    mm(cx, 1, 0, F, C, BT, cx->du, a->xn2, G(l, W_UP), 1);
    mm(cx, 0, 0, BT, C, F, cx->dg, P(l, W_GATE), cx->dxn, 0);
    mm(cx, 0, 0, BT, C, F, cx->du, P(l, W_UP), cx->dxn, 1);
    g3_rmsnorm_backward(dx, G(l, W_PRE_FFW_NORM), cx->dxn, a->h, P(l, W_PRE_FFW_NORM), a->rs3, BT, C, 1);  // dx = dh
    // attention block
    g3_rmsnorm_backward(cx->tmp, G(l, W_POST_ATTN_NORM), dx, a->ao, P(l, W_POST_ATTN_NORM), a->rs2, BT, C, 0);
    mm(cx, 1, 0, C, QD, BT, cx->tmp, a->att, G(l, W_O), 1);
    mm(cx, 0, 0, BT, QD, C, cx->tmp, P(l, W_O), cx->datt, 0);
    g3_attention_backward(cx->dq, cx->dk, cx->dv, cx->dkh, cx->dvh, cx->datt, a->q, a->k, a->v, a->lse, B, T, NH, NKV, HD,
                          c->sliding[l] ? c->sliding_window : 0, 1.0f / sqrtf(c->query_pre_attn_scalar), c->attn_softcap,
                          cx->scratch, cx->nthreads);
    g3_rope_backward(cx->dq, cs, sn, B, T, NH, HD);
    g3_rope_backward(cx->dk, cs, sn, B, T, NKV, HD);
    float *dq0 = cx->dq, *dk0 = cx->dk;
    if (c->qk_norm) {  // datt and dvh are free again: they take the pre-norm gradients
        dq0 = cx->datt;
        dk0 = cx->dvh;
        g3_rmsnorm_backward(dq0, G(l, W_Q_NORM), cx->dq, a->qraw, P(l, W_Q_NORM), a->qrs, BT * NH, HD, 0);
        g3_rmsnorm_backward(dk0, G(l, W_K_NORM), cx->dk, a->kraw, P(l, W_K_NORM), a->krs, BT * NKV, HD, 0);
    }
    mm(cx, 1, 0, QD, C, BT, dq0, a->xn1, G(l, W_Q), 1);
    mm(cx, 1, 0, KD, C, BT, dk0, a->xn1, G(l, W_K), 1);
    mm(cx, 1, 0, KD, C, BT, cx->dv, a->xn1, G(l, W_V), 1);
    mm(cx, 0, 0, BT, C, QD, dq0, P(l, W_Q), cx->dxn, 0);
    mm(cx, 0, 0, BT, C, KD, dk0, P(l, W_K), cx->dxn, 1);
    mm(cx, 0, 0, BT, C, KD, cx->dv, P(l, W_V), cx->dxn, 1);
    g3_rmsnorm_backward(dx, G(l, W_ATTN_NORM), cx->dxn, x, P(l, W_ATTN_NORM), a->rs1, BT, C, 1);
}

static int check_ids(const G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets, int64_t *nvalid) {
    const int V = cx->tm->m.cfg.vocab;
    const int64_t BT = (int64_t)cx->B * cx->T;
    *nvalid = 0;
    for (int64_t r = 0; r < BT; r++) {
        if (inputs[r] < 0 || inputs[r] >= V)
            return g3_errorf("train: input id %d at row %lld is outside the vocabulary [0, %d)", inputs[r], (long long)r, V);
        if (targets[r] >= V)
            return g3_errorf("train: target id %d at row %lld is outside the vocabulary [0, %d)", targets[r], (long long)r, V);
        *nvalid += targets[r] >= 0;
    }
    return 0;
}

static void forward(G3TrainCtx *cx, const int32_t *inputs) {
    const G3TrainModel *tm = cx->tm;
    const G3Config *c = &tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T, C = c->hidden;
    // the scale is the exact sqrt in f32 (the f32 reference does not round it to bf16)
    g3_embedding_forward(cx->xs, inputs, tm->params + tm->off[tm->m.embed_idx], (int)BT, (int)C, sqrtf((float)C));
    for (int l = 0; l < c->layers; l++)
        layer_forward(cx, l, &cx->la[cx->recompute ? 0 : l], cx->xs + l * BT * C, cx->xs + (l + 1) * BT * C);
    g3_rmsnorm_forward(cx->xf, cx->rsf, cx->xs + c->layers * BT * C, tm->params + tm->off[tm->m.final_norm_idx], (int)BT,
                       (int)C, c->eps);
}

// The tied head and the loss over chunks of rows; with backward, the gradient of the mean
// loss (times grad_scale) goes to dE and to cx->dxn (as d final_norm output).
static double head(G3TrainCtx *cx, const int32_t *targets, int64_t nvalid, float grad_scale, int backward) {
    const G3TrainModel *tm = cx->tm;
    const G3Config *c = &tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T;
    const int C = c->hidden, V = c->vocab;
    const float *E = tm->params + tm->off[tm->m.embed_idx];
    float *dE = tm->grads + tm->off[tm->m.embed_idx];
    const float dscale = nvalid ? grad_scale / (float)nvalid : 0.0f;
    double loss = 0;
    for (int64_t r0 = 0; r0 < BT; r0 += cx->chunk) {
        const int n = (int)G3_MIN(cx->chunk, BT - r0);
        mm(cx, 0, 1, n, V, C, cx->xf + r0 * C, E, cx->logits, 0);  // logits[n, V] = xf . E^T
#pragma omp parallel for schedule(static) num_threads(cx->nthreads) if ((int64_t)n * V > 65536)
        for (int i = 0; i < n; i++) {
            float *z = cx->logits + (int64_t)i * V;
            const int t = targets[r0 + i];
            if (t < 0) {
                cx->rowloss[i] = 0;
                if (backward) memset(z, 0, (size_t)V * sizeof(float));
            } else if (backward) {
                cx->rowloss[i] = g3_crossentropy_forward_backward(z, z, t, V, c->final_softcap, dscale);
            } else {
                if (c->final_softcap > 0) g3_softcap_forward(z, z, V, c->final_softcap);
                cx->rowloss[i] = g3_crossentropy_forward(z, t, V);
            }
        }
        for (int i = 0; i < n; i++) loss += cx->rowloss[i];  // in row order: deterministic
        if (!backward) continue;
        mm(cx, 0, 0, n, C, V, cx->logits, E, cx->dxn + r0 * C, 0);  // dxf = dlogits . E
        mm(cx, 1, 0, V, C, n, cx->logits, cx->xf + r0 * C, dE, 1);  // dE += dlogits^T . xf
    }
    return nvalid ? loss / (double)nvalid : 0.0;
}

double g3_train_forward_backward(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets, float grad_scale) {
    if (cx->tm != tm) { g3_errorf("train: context was made for another model"); return NAN; }
    const G3Config *c = &tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T, C = c->hidden;
    int64_t nvalid;
    if (check_ids(cx, inputs, targets, &nvalid)) return NAN;
    forward(cx, inputs);
    double loss = head(cx, targets, nvalid, grad_scale, 1);
    // backward: final norm, then the layers in reverse, then the embedding gather
    g3_rmsnorm_backward(cx->dx, tm->grads + tm->off[tm->m.final_norm_idx], cx->dxn, cx->xs + c->layers * BT * C,
                        tm->params + tm->off[tm->m.final_norm_idx], cx->rsf, (int)BT, (int)C, 0);
    for (int l = c->layers - 1; l >= 0; l--) {
        const float *x = cx->xs + l * BT * C;
        // recompute the layer from its input; its output (already used) is rewritten in place
        if (cx->recompute) layer_forward(cx, l, &cx->la[0], x, cx->xs + (l + 1) * BT * C);
        layer_backward(cx, l, &cx->la[cx->recompute ? 0 : l], x, cx->dx);
    }
    g3_embedding_backward(tm->grads + tm->off[tm->m.embed_idx], cx->dx, inputs, (int)BT, (int)C, sqrtf((float)C));
    return loss;
}

double g3_train_loss(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets) {
    if (cx->tm != tm) { g3_errorf("train: context was made for another model"); return NAN; }
    int64_t nvalid;
    if (check_ids(cx, inputs, targets, &nvalid)) return NAN;
    forward(cx, inputs);
    return head(cx, targets, nvalid, 0.0f, 0);
}
