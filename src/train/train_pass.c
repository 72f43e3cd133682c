// train_pass.c: the exact training pass over a micro-batch of B sequences of T tokens:
// a forward in f32 that keeps what backward needs, the loss, and the backward pass, which
// is the forward read in reverse. One decoder layer, as in the paper:
//   h  = x + post_attn_norm(o_proj(attn(rope(qk_norm(q, k)), v)))   with q, k, v of input_norm(x)
//   x' = h + post_ffw_norm(down(geglu(gate(xn2), up(xn2))))          with xn2 = pre_ffw_norm(h)
// then final_norm, the tied head (logits = xf . E^T, optional softcap) and cross-entropy.
// The layers are the model pass of model/pass.c, the same code inference runs, over the
// ops of the context's backend (bf16 operands in the matrix products in bf16 mode).
// Activations live in one arena carved at context creation; nothing is allocated per step
// (the backend's own scratch is grown once, on the first step). With recompute = 1 only each
// layer's input is kept and the layer is run again inside backward (checkpointing).
// Not here: the optimizer, data loading, schedules (optim.c, data.c, ...).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/ops.h"
#include "../model/adapter.h"
#include "../model/pass.h"
#include "optim.h"
#include "relora.h"
#include "train.h"

struct G3TrainCtx {
    const G3TrainModel *tm;
    G3Backend *be;
    int B, T, recompute, nthreads, chunk;
    int bf16;            // matrix products with bf16 operands (g3_train_ctx_set_bf16)
    float *mem;          // the one allocation
    int64_t nfloats;
    float *xs;           // [L+1, BT, C] residual stream: input of each layer, then the last output
    G3LayerActs *la;     // [L] saved activations, or [1] reused per layer when recomputing
    float *xf, *rsf;     // [BT, C] final_norm output, [BT]
    float *cos_l, *sin_l, *cos_g, *sin_g;  // [BT, HD/2] RoPE tables of sliding / global layers
    // scratch shared by all layers
    float *tmp;          // [BT, C] branch output in forward
    float *a;            // [BT, F] geglu output
    float *dx;           // [BT, C] gradient of the residual stream
    G3LayerGradScratch gs;
    float *logits;       // [chunk, V] logits, then their gradient, a chunk of rows at a time
    double *rowloss;     // [BT] each row's loss (on a device: read back once a call, not once a chunk)
    float **grad;        // [m.nt] gradient of each model tensor (into tm->grads)
    float *lora_xa, *lora_y, *lora_dxa;  // [BT, r], [BT, max_out], [BT, r]: an adapter's scratch
    float *lora_xd;                      // [BT, widest input]: LoRA dropout's masked input (pass.h)
    float lora_dropout;                  // g3_train_ctx_set_lora_dropout
    uint64_t lora_dropout_seed;
    const float *seq_w;  // g3_train_forward_backward_seq's weights during its call, else NULL
    const G3AttnMask *mask;  // g3_train_ctx_set_mask's (Set Block Decoding), else NULL: causal
    // On a device backend (be->host == 0): the parameters and gradients live in device
    // buffers and the pass runs a copy of the model whose tensors point at them (dm); the ids
    // of a call are copied to d_in / d_tg, the rows' losses back to hrowloss. Unless the
    // context is resident (g3_train_ctx_resident), every call copies the host parameters in
    // and, with backward, the host gradients in and out, so callers that step on the host
    // see no difference.
    int dev, resident;
    float *dmom;         // resident training: AdamW's moments on the device (dev_moments: 32-bit m, v [n] each;
                         // 8-bit the absmax [nblocks] of m, of v, then the codes [n] of m, of v)
    size_t dmom_bytes;
    const void *dmom_of; // the optimizer they belong to
    G3Model dm;
    G3Adapter *dlora, *dlora_grad;  // LoRA: the adapter and its gradients with factors in dparams / dgrads
    float *dparams, *dgrads;
    int32_t *d_in, *d_tg;
    double *hrowloss;
    int shadow_fresh;    // bf16 mode: the backend's bf16 copy of dparams is current (bf16_shadow; AdamW keeps it so)
};

static int rope_tables(G3TrainCtx *cx, const int32_t *pos, int stride);

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
    cx->tmp = carve(cv, BT * C);
    cx->a = carve(cv, BT * F);
    for (int l = 0; l < nla; l++) {
        G3LayerActs *a = &cx->la[l];
        a->xn1 = carve(cv, BT * C); a->rs1 = carve(cv, BT);
        a->q = carve(cv, BT * QD); a->k = carve(cv, BT * KD); a->v = carve(cv, BT * KD);
        if (c->qk_norm) {
            a->qraw = carve(cv, BT * QD); a->qrs = carve(cv, BT * c->heads);
            a->kraw = carve(cv, BT * KD); a->krs = carve(cv, BT * c->kv_heads);
        } else {
            a->qraw = a->q; a->kraw = a->k;
        }
        a->lse = carve(cv, BT * c->heads);
        a->att = carve(cv, BT * QD);
        a->ao = carve(cv, BT * C); a->rs2 = carve(cv, BT);
        a->h = carve(cv, BT * C);
        a->xn2 = carve(cv, BT * C); a->rs3 = carve(cv, BT);
        a->g = carve(cv, BT * F); a->u = carve(cv, BT * F);
        a->mo = carve(cv, BT * C); a->rs4 = carve(cv, BT);
        a->a = cx->a;
        a->tmp = cx->tmp;
    }
    cx->xf = carve(cv, BT * C); cx->rsf = carve(cv, BT);
    cx->cos_l = carve(cv, BT * HD / 2); cx->sin_l = carve(cv, BT * HD / 2);
    cx->cos_g = carve(cv, BT * HD / 2); cx->sin_g = carve(cv, BT * HD / 2);
    cx->dx = carve(cv, BT * C);
    G3LayerGradScratch *g = &cx->gs;
    g->tmp = carve(cv, BT * C); g->dxn = carve(cv, BT * C);
    g->a = cx->a; g->dg = carve(cv, BT * F); g->du = carve(cv, BT * F);
    g->datt = carve(cv, BT * QD); g->dq = carve(cv, BT * QD);
    g->dk = carve(cv, BT * KD); g->dv = carve(cv, BT * KD);
    g->dqn = carve(cv, BT * QD); g->dkn = carve(cv, BT * KD);
    // backward of down_proj unfused: when an adapter is attached or the base is not f32
    const G3Model *m = &cx->tm->m;
    int unfused = m->adapter != NULL;
    for (int l = 0; l < L; l++) unfused |= m->t[m->layer_idx[l][W_DOWN]].dtype != G3_F32;
    g->da = unfused ? carve(cv, BT * F) : NULL;
    if (m->adapter) {
        cx->lora_xa = carve(cv, BT * m->adapter->r);
        cx->lora_y = carve(cv, BT * m->adapter->max_out);
        cx->lora_dxa = carve(cv, BT * m->adapter->r);
        cx->lora_xd = carve(cv, BT * G3_MAX(G3_MAX(C, F), QD));
    }
    cx->logits = carve(cv, (int64_t)cx->chunk * c->vocab);
    cx->rowloss = (double *)carve(cv, 2 * (int64_t)cx->B * cx->T);
}

// What the backend's attention keeps besides (CPU: per-thread panels and the per-query-head
// key/value gradients of backward), counted with the context's memory.
static int64_t backend_scratch_bytes(const G3TrainCtx *cx) {
    const G3Config *c = &cx->tm->m.cfg;
    G3Backend *be = cx->be;
    return be->attention_workspace ? (int64_t)be->attention_workspace(be, cx->B, cx->T, c->heads, c->head_dim) : 0;
}

// Rows of logits processed at once: ~128 MB of logits (128 rows at V = 262144), so any B*T
// works with a large vocabulary, and small vocabularies take the whole batch in one GEMM.
// Fewer rows make the dE += dlogits^T . xf GEMMs thin (each one sweeps all of dE): 64 rows
// cost ~30% more time on the head than 128 at V = 262144, 256 rows ~15% less.
// On a GPU (device = 1) 1 GB of logits: its memory is larger and every chunk re-reads (and, in
// bf16 mode, re-rounds) the whole embedding three times.
// There the chunks are also made equal (B16 x T1024 at V = 50,257: 4 of 4096 rows, not 3 of
// 5341 and one of 361, whose thin products ran at ~100 TFLOP/s), rounded up to 64 rows.
static int head_chunk(int64_t BT, int V, int device) {
    int64_t ch = ((int64_t)1 << (device ? 28 : 25)) / V;
    ch = G3_MAX(ch, 32);
    if (device && ch < BT) {
        const int64_t n = (BT + ch - 1) / ch;
        ch = G3_MIN(ch, ((BT + n - 1) / n + 63) / 64 * 64);
    }
    return (int)G3_MIN(ch, BT);
}

int64_t g3_train_ctx_bytes(const G3TrainModel *tm, int B, int T, int recompute) {
    G3TrainCtx cx = {.tm = tm, .be = g3_backend_cpu(), .B = B, .T = T, .recompute = recompute != 0,
                     .nthreads = omp_get_max_threads()};
    cx.chunk = head_chunk((int64_t)B * T, tm->m.cfg.vocab, 0);
    cx.la = g3_calloc(cx.recompute ? 1 : (size_t)tm->m.cfg.layers, sizeof *cx.la);
    if (!cx.la) return -1;
    Carve cv = {NULL, 0};
    layout(&cx, &cv);
    free(cx.la);
    return cv.used * (int64_t)sizeof(float) + backend_scratch_bytes(&cx);
}

// The adapter `a` (factors in host array `from`) with its factors moved to the same offsets
// of device array `to`: what the pass reads on the device. NULL with the error set.
static G3Adapter *adapter_on(const G3Adapter *a, const float *from, float *to) {
    G3Adapter *d = g3_malloc(sizeof *d);
    if (!d) return NULL;
    *d = *a;
    for (int l = 0; l < d->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            G3LoraModule *md = &d->mod[l][r];
            if (!md->A.data) continue;
            md->A.data = to + ((const float *)md->A.data - from);
            md->B.data = to + ((const float *)md->B.data - from);
            md->A.mem = md->B.mem = G3_MEM_DEVICE;
        }
    return d;
}

// The device half of a context: parameter and gradient buffers, the model copy pointing at
// them, the ids' buffers. Trained tensors (and a LoRA adapter's factors) live in the device's
// parameter array; a frozen base in its stored type (plain LoRA: bf16 stays bf16) stays
// where the model has it and the backend uploads each weight once, on first use
// (weight_check here, so that a type without a kernel fails now, not mid-step). The
// host-side objectives (DPO, classification) stay on the CPU for now.
static int device_init(G3TrainCtx *cx) {
    const G3TrainModel *tm = cx->tm;
    G3Backend *be = cx->be;
    const int64_t BT = (int64_t)cx->B * cx->T;
    if (tm->lora && tm->lora_spec.classes > 0)
        return g3_errorf("train: the classification objective runs on the CPU for now (backend %s)", be->name);
    cx->dev = 1;
    const size_t nb = (size_t)(tm->n ? tm->n : 1) * sizeof(float);
    cx->dparams = be->alloc(be, nb);
    cx->dgrads = cx->dparams ? be->alloc(be, nb) : NULL;
    cx->d_in = cx->dgrads ? be->alloc(be, (size_t)BT * sizeof(int32_t)) : NULL;
    cx->d_tg = cx->d_in ? be->alloc(be, (size_t)BT * sizeof(int32_t)) : NULL;
    cx->hrowloss = g3_malloc(sizeof(double) * (size_t)BT);
    if (!cx->d_tg || !cx->hrowloss) {
        g3_error_prefix("train: %.2f GiB of parameters and gradients on %s", 2.0 * tm->n * 4 / (1 << 30), be->name);
        return -1;
    }
    cx->dm = tm->m;
    cx->dm.t = g3_malloc(sizeof(G3Tensor) * (size_t)tm->m.nt);
    if (!cx->dm.t) return -1;
    memcpy(cx->dm.t, tm->m.t, sizeof(G3Tensor) * (size_t)tm->m.nt);
    cx->dm.src = NULL;
    cx->dm.be = NULL;
    cx->dm.adapter = NULL;
    for (int i = 0; i < tm->m.nt; i++) {
        G3Tensor *t = &cx->dm.t[i];
        if (tm->off[i] < 0) {  // frozen as stored (LoRA's base): no gradient; uploaded once
            if (cx->grad[i]) return g3_errorf("train: tensor '%s' has a gradient but no parameters", t->name);
            if (t->kind != G3_KIND_NORM && t->data) {
                const G3Weight w = g3_tensor_weight(t);
                if (G3_NEED(be, weight_check) || be->weight_check(be, &w, t->name)) return -1;
            }
            continue;
        }
        t->data = cx->dparams + tm->off[i];
        t->normf = NULL;  // the parameters are F32: norms are read in place
        if (cx->grad[i]) cx->grad[i] = cx->dgrads + tm->off[i];  // frozen entries (relora.h) keep NULL
    }
    if (tm->lora) {
        if (G3_NEED(be, dropout)) return -1;
        if (!(cx->dlora = adapter_on(tm->lora, tm->params, cx->dparams)) ||
            !(cx->dlora_grad = adapter_on(tm->lora_grad, tm->grads, cx->dgrads)))
            return -1;
        cx->dm.adapter = tm->m.adapter ? cx->dlora : NULL;  // a hybrid model's full-rank phase has none
    }
    return 0;
}

G3TrainCtx *g3_train_ctx_new(const G3TrainModel *tm, int B, int T, int recompute, int64_t *bytes) {
    return g3_train_ctx_new_on(tm, NULL, B, T, recompute, bytes);
}

G3TrainCtx *g3_train_ctx_new_on(const G3TrainModel *tm, G3Backend *be, int B, int T, int recompute, int64_t *bytes) {
    const G3Config *c = &tm->m.cfg;
    if (B < 1 || T < 1) { g3_errorf("train: batch %d x %d tokens: both must be positive", B, T); return NULL; }
    if (T > c->max_pos) { g3_errorf("train: sequence length %d exceeds max_position_embeddings %d", T, c->max_pos); return NULL; }
    G3TrainCtx *cx = g3_calloc(1, sizeof *cx);
    if (!cx) return NULL;
    cx->tm = tm;
    cx->be = be ? be : g3_backend_cpu();
    cx->B = B;
    cx->T = T;
    cx->recompute = recompute != 0;
    cx->nthreads = omp_get_max_threads();
    cx->chunk = head_chunk((int64_t)B * T, c->vocab, !cx->be->host);
    cx->la = g3_calloc(cx->recompute ? 1 : (size_t)c->layers, sizeof *cx->la);
    cx->grad = g3_calloc((size_t)tm->m.nt, sizeof *cx->grad);
    if (!cx->la || !cx->grad) { g3_train_ctx_free(cx); return NULL; }
    for (int j = 0; j < tm->np; j++)  // frozen tensors keep NULL: the pass skips their gradients
        if (tm->p[j].tensor >= 0 && !tm->p[j].frozen) cx->grad[tm->p[j].tensor] = tm->grads + tm->p[j].off;
    if (!cx->be->host && device_init(cx)) { g3_train_ctx_free(cx); return NULL; }
    Carve cv = {NULL, 0};
    layout(cx, &cv);
    cx->nfloats = cv.used;
    if (bytes) *bytes = cv.used * (int64_t)sizeof(float) + backend_scratch_bytes(cx);
    cx->mem = cx->dev ? cx->be->alloc(cx->be, (size_t)cv.used * sizeof(float)) : g3_malloc_aligned((size_t)cv.used * sizeof(float));
    if (!cx->mem) {
        g3_error_prefix("train: %.2f GiB of activations for B=%d, T=%d%s%s%s", cv.used * 4.0 / (1 << 30), B, T,
                        cx->dev ? " on " : "", cx->dev ? cx->be->name : "", recompute ? "" : " (try activation checkpointing)");
        g3_train_ctx_free(cx);
        return NULL;
    }
    cv = (Carve){cx->mem, 0};
    layout(cx, &cv);
    if (rope_tables(cx, NULL, 0)) { g3_train_ctx_free(cx); return NULL; }
    return cx;
}

// The RoPE angles of every row: position pos[t] (t when pos is NULL) of row t of each of the
// B sequences, or pos[b * T + t] with stride T (packed rows: positions restart at each
// example), made on the host, then copied to a device context's buffers. 0 or -1.
static int rope_tables(G3TrainCtx *cx, const int32_t *pos, int stride) {
    const G3Config *c = &cx->tm->m.cfg;
    const int B = cx->B, T = cx->T, h2 = c->head_dim / 2;
    const size_t tab = (size_t)B * T * h2;
    float *cl = cx->cos_l, *sl = cx->sin_l, *cg = cx->cos_g, *sg = cx->sin_g, *host = NULL;
    if (cx->dev) {
        if (!(host = g3_malloc(4 * tab * sizeof(float)))) return -1;
        cl = host, sl = host + tab, cg = host + 2 * tab, sg = host + 3 * tab;
    }
    const int64_t rows = stride ? (int64_t)B * T : T;
    for (int64_t t = 0; t < rows; t++) {
        const int p = pos ? pos[t] : (int)t;
        g3_rope_angles(cl + t * h2, sl + t * h2, p, c->head_dim, c->rope_local_base, c->rope_local_scale);
        g3_rope_angles(cg + t * h2, sg + t * h2, p, c->head_dim, c->rope_global_base, c->rope_global_scale);
    }
    for (int b = 1; b < B && !stride; b++) {
        const size_t n = (size_t)T * h2 * sizeof(float), o = (size_t)b * T * h2;
        memcpy(cl + o, cl, n); memcpy(sl + o, sl, n);
        memcpy(cg + o, cg, n); memcpy(sg + o, sg, n);
    }
    int rc = 0;
    if (host) {
        G3Backend *d = cx->be;
        const size_t nb = tab * sizeof(float);
        rc = d->to_device(d, cx->cos_l, cl, nb) || d->to_device(d, cx->sin_l, sl, nb) || d->to_device(d, cx->cos_g, cg, nb) ||
             d->to_device(d, cx->sin_g, sg, nb) ? -1 : 0;
        free(host);
    }
    return rc;
}

int g3_train_ctx_set_mask(G3TrainCtx *cx, const G3AttnMask *mask) {
    if (mask && (G3_NEED(cx->be, attention_masked) || G3_NEED(cx->be, attention_masked_backward))) return -1;
    if (mask && mask->stride != 0 && mask->stride != cx->T)
        return g3_errorf("train: attention mask: stride %d (0, or the sequence length %d)", mask->stride, cx->T);
    const int64_t rows = mask && mask->stride ? (int64_t)cx->B * cx->T : cx->T;
    for (int64_t t = 0; mask && t < rows; t++)
        if (mask->pos[t] < 0 || mask->pos[t] >= cx->tm->m.cfg.max_pos)
            return g3_errorf("train: attention mask: position %d of row %lld outside [0, %d)", mask->pos[t], (long long)t,
                             cx->tm->m.cfg.max_pos);
    cx->mask = mask;
    return rope_tables(cx, mask ? mask->pos : NULL, mask ? mask->stride : 0);
}

void g3_train_ctx_free(G3TrainCtx *cx) {
    if (!cx) return;
    if (cx->dev) {
        G3Backend *be = cx->be;
        be->free(be, cx->mem);
        be->free(be, cx->dparams);
        be->free(be, cx->dgrads);
        be->free(be, cx->d_in);
        be->free(be, cx->d_tg);
        be->free(be, cx->dmom);
        free(cx->dm.t);
        free(cx->dlora);
        free(cx->dlora_grad);
        free(cx->hrowloss);
    } else {
        g3_free_aligned(cx->mem);
    }
    free(cx->la);
    free(cx->grad);
    free(cx);
}

G3Backend *g3_train_ctx_backend(const G3TrainCtx *cx) { return cx->be; }

void g3_train_ctx_set_bf16(G3TrainCtx *cx, int on) { cx->bf16 = on != 0; }
void g3_train_ctx_set_lora_dropout(G3TrainCtx *cx, float p, uint64_t seed) {
    cx->lora_dropout = p;
    cx->lora_dropout_seed = seed;
}

static G3Pass pass(const G3TrainCtx *cx) {
    // the device model follows the host model's adapter switch (DPO's reference pass turns the
    // adapter off for a call; a hybrid model's full-rank phase has none)
    if (cx->dev) ((G3TrainCtx *)cx)->dm.adapter = cx->tm->m.adapter && cx->dlora ? cx->dlora : NULL;
    return (G3Pass){.be = cx->be, .m = cx->dev ? &cx->dm : &cx->tm->m, .mode = cx->bf16 ? G3_MM_BF16 : G3_MM_EXACT, .R = cx->B * cx->T,
                    .cos_l = cx->cos_l, .sin_l = cx->sin_l, .cos_g = cx->cos_g, .sin_g = cx->sin_g, .B = cx->B, .T = cx->T,
                    .grad = cx->grad, .lora_xa = cx->lora_xa, .lora_y = cx->lora_y, .lora_dxa = cx->lora_dxa,
                    .lora_grad = cx->dev ? cx->dlora_grad : cx->tm->lora_grad, .lora_dropout = cx->lora_dropout, .lora_dropout_seed = cx->lora_dropout_seed,
                    .lora_xd = cx->lora_xd, .mask = cx->mask};
}

// A device context that is not resident mirrors the host: the parameters (and, for a
// backward, the gradients accumulated so far) go in before a call, the gradients come out
// after it.
static int sync_in(G3TrainCtx *cx, int grads) {
    if (!cx->dev || cx->resident) return 0;
    G3Backend *be = cx->be;
    const size_t nb = (size_t)cx->tm->n * sizeof(float);
    cx->shadow_fresh = 0;  // the parameters are rewritten: so is their bf16 copy
    return be->to_device(be, cx->dparams, cx->tm->params, nb) || (grads && be->to_device(be, cx->dgrads, cx->tm->grads, nb)) ? -1 : 0;
}
static int sync_grads_out(G3TrainCtx *cx) {
    if (!cx->dev || cx->resident) return 0;
    return cx->be->to_host(cx->be, cx->tm->grads, cx->dgrads, (size_t)cx->tm->n * sizeof(float));
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

static int forward(G3TrainCtx *cx, const G3Pass *p, const int32_t *inputs) {
    const G3Config *c = &cx->tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T, C = c->hidden;
    if (cx->dev) {  // the ids to the device; backward's embedding gather reads them there too
        if (cx->be->to_device(cx->be, cx->d_in, inputs, sizeof(int32_t) * (size_t)BT)) return -1;
        inputs = cx->d_in;
    }
    // bf16 products read the weights' bf16 copy (made once, kept by AdamW) rather than
    // rounding each weight at every product; remade only after the parameters were written
    // by other means (uploads, merges, rank-1 updates: shadow_fresh cleared there)
    if (cx->dev && cx->bf16 && cx->be->bf16_shadow) {
        if (cx->be->bf16_shadow(cx->be, cx->dparams, (long)cx->tm->n, !cx->shadow_fresh)) return -1;
        cx->shadow_fresh = 1;
    }
    if (g3_pass_embed(p, cx->xs, inputs)) return -1;
    for (int l = 0; l < c->layers; l++)
        if (g3_layer_forward(p, l, &cx->la[cx->recompute ? 0 : l], cx->xs + l * BT * C, cx->xs + (l + 1) * BT * C)) return -1;
    g3_pass_final_norm(p, cx->xf, cx->rsf, cx->xs + c->layers * BT * C, (int)BT);
    return 0;
}

// The tied head and the loss over chunks of rows; with backward, the gradient of the mean
// loss (times grad_scale) goes to dE and to gs.dxn (as d final_norm output). With seq_w
// ([B]), the gradient is instead that of sum_b seq_w[b] * (sequence b's summed loss); with
// seq_loss ([B]), each sequence's summed loss is written there.
static double head(G3TrainCtx *cx, const G3Pass *p0, const int32_t *targets, int64_t nvalid, float grad_scale, int backward,
                   const float *seq_w, double *seq_loss) {
    const G3TrainModel *tm = cx->tm;
    const G3Config *c = &tm->m.cfg;
    G3Backend *be = cx->be;
    const int64_t BT = (int64_t)cx->B * cx->T;
    const int C = c->hidden, V = c->vocab;
    // the pass's model: on a device, its copy whose trained tensors are the device's (the host
    // model's embedding would be uploaded once and go stale as training changes it)
    const G3Weight E = g3_tensor_weight(&p0->m->t[tm->m.embed_idx]);
    float *dE = cx->grad[tm->m.embed_idx];
    const float dscale = seq_w ? 1.0f : nvalid ? grad_scale / (float)nvalid : 0.0f;
    double loss = 0;
    if (seq_loss) memset(seq_loss, 0, sizeof *seq_loss * (size_t)cx->B);
    const int32_t *tg = targets;  // where the op reads them
    double *rowloss = cx->rowloss;
    if (cx->dev) {
        if (be->to_device(be, cx->d_tg, targets, sizeof(int32_t) * (size_t)BT)) return NAN;
        tg = cx->d_tg;
        rowloss = cx->hrowloss;
    }
    for (int64_t r0 = 0; r0 < BT; r0 += cx->chunk) {
        const int n = (int)G3_MIN(cx->chunk, BT - r0);
        G3Pass p = *p0;
        p.R = n;
        if (g3_pass_head(&p, cx->logits, cx->xf + r0 * C, n, 0)) return NAN;  // logits[n, V] = xf . E^T
        be->cross_entropy(be, cx->rowloss + r0, cx->logits, tg + r0, n, V, c->final_softcap, dscale, backward);
        if (!backward) continue;
        if (seq_w && cx->dev) {  // each row's gradient times its sequence's weight, where the logits are
            if (G3_NEED(be, dropout)) return NAN;
            for (int i = 0; i < n; i++) {
                float *z = cx->logits + (int64_t)i * V;
                be->dropout(be, z, z, V, 0.0f, seq_w[(r0 + i) / cx->T], 0, 0, 0);
            }
        } else if (seq_w) {
            for (int i = 0; i < n; i++) {
                const float w = seq_w[(r0 + i) / cx->T];
                float *z = cx->logits + (int64_t)i * V;
                for (int v = 0; v < V; v++) z[v] *= w;
            }
        }
        if (be->linear_dx(be, cx->gs.dxn + r0 * C, cx->logits, &E, n, 0, p.mode)) return NAN;  // dxf = dlogits . E
        if (dE) be->gemm(be, 1, 0, V, C, n, cx->logits, cx->xf + r0 * C, dE, 1, p.mode);    // dE += dlogits^T . xf
    }
    // the rows' losses: one copy (one wait for the device) a call, then summed in row order
    if (cx->dev && be->to_host(be, rowloss, cx->rowloss, sizeof(double) * (size_t)BT)) return NAN;
    for (int64_t r = 0; r < BT; r++) loss += rowloss[r];
    if (seq_loss)
        for (int64_t r = 0; r < BT; r++) seq_loss[r / cx->T] += targets[r] >= 0 ? rowloss[r] : 0.0;
    return nvalid ? loss / (double)nvalid : 0.0;
}

static int backward(G3TrainModel *tm, G3TrainCtx *cx, const G3Pass *pp, const int32_t *inputs);

double g3_train_forward_backward(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets, float grad_scale) {
    if (cx->tm != tm) { g3_errorf("train: context was made for another model"); return NAN; }
    const G3Pass p = pass(cx);
    int64_t nvalid;
    if (check_ids(cx, inputs, targets, &nvalid) || sync_in(cx, 1) || forward(cx, &p, inputs)) return NAN;
    double loss = head(cx, &p, targets, nvalid, grad_scale, 1, cx->seq_w, NULL);
    if (isnan(loss)) return NAN;
    return backward(tm, cx, &p, inputs) || sync_grads_out(cx) ? NAN : loss;
}

// Backward from gs.dxn (the gradient of the final norm's output) to every trained tensor:
// final norm, then the layers in reverse, then the embedding gather.
static int backward(G3TrainModel *tm, G3TrainCtx *cx, const G3Pass *pp, const int32_t *inputs) {
    const G3Config *c = &tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T, C = c->hidden;
    const G3Pass p = *pp;
    G3Backend *be = cx->be;
    be->rmsnorm_backward(be, cx->dx, cx->grad[tm->m.final_norm_idx], cx->gs.dxn, cx->xs + c->layers * BT * C,
                         g3_norm_weight(p.m, tm->m.final_norm_idx), cx->rsf, (int)BT, (int)C, 0);
    for (int l = c->layers - 1; l >= 0; l--) {
        float *x = cx->xs + l * BT * C;
        // recompute the layer from its input; its output (already used) is rewritten in place
        if (cx->recompute && g3_layer_forward(&p, l, &cx->la[0], x, cx->xs + (l + 1) * BT * C)) return -1;
        if (g3_layer_backward(&p, l, &cx->la[cx->recompute ? 0 : l], x, cx->dx, &cx->gs)) return -1;
    }
    float *dE = cx->grad[tm->m.embed_idx];
    if (dE) be->embed_backward(be, dE, cx->dx, cx->dev ? cx->d_in : inputs, (int)BT, (int)C, sqrtf((float)C));
    return 0;
}

double g3_train_classify(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *last, const int32_t *labels, int K,
                         const float *Wc, float *dWc, float grad_scale, int do_backward, int *correct) {
    if (cx->tm != tm) { g3_errorf("train: context was made for another model"); return NAN; }
    if (cx->dev) return g3_errorf("train: the classification objective runs on the CPU for now"), NAN;
    const G3Config *c = &tm->m.cfg;
    const int B = cx->B, T = cx->T, C = c->hidden;
    const G3Pass p = pass(cx);
    for (int64_t r = 0; r < (int64_t)B * T; r++)
        if (inputs[r] < 0 || inputs[r] >= c->vocab)
            return g3_errorf("train: input id %d at row %lld is outside the vocabulary [0, %d)", inputs[r], (long long)r, c->vocab), NAN;
    for (int b = 0; b < B; b++)
        if (last[b] < 0 || last[b] >= T || labels[b] < 0 || labels[b] >= K)
            return g3_errorf("train: classification row %d: last position %d or label %d out of range", b, last[b], labels[b]), NAN;
    if (forward(cx, &p, inputs)) return NAN;
    if (do_backward) memset(cx->gs.dxn, 0, sizeof(float) * (size_t)B * T * C);
    double loss = 0;
    int ok = 0;
    double *z = g3_malloc(sizeof(double) * (size_t)K);
    if (!z) return NAN;
    for (int b = 0; b < B; b++) {
        const float *h = cx->xf + ((int64_t)b * T + last[b]) * C;
        double mx = -INFINITY, sum = 0;
        int best = 0;
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int i = 0; i < C; i++) v += (double)Wc[(int64_t)k * C + i] * h[i];
            z[k] = v;
            if (v > mx) { mx = v; best = k; }
        }
        for (int k = 0; k < K; k++) sum += exp(z[k] - mx);
        loss += (mx + log(sum) - z[labels[b]]) / B;
        ok += best == labels[b];
        if (!do_backward) continue;
        float *dh = cx->gs.dxn + ((int64_t)b * T + last[b]) * C;
        for (int k = 0; k < K; k++) {
            const float g = (float)((exp(z[k] - mx) / sum - (k == labels[b])) * grad_scale / B);
            for (int i = 0; i < C; i++) {
                dh[i] += g * Wc[(int64_t)k * C + i];
                if (dWc) dWc[(int64_t)k * C + i] += g * h[i];
            }
        }
    }
    free(z);
    if (correct) *correct = ok;
    if (do_backward && backward(tm, cx, &p, inputs)) return NAN;
    return loss;
}

double g3_train_loss(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets) {
    if (cx->tm != tm) { g3_errorf("train: context was made for another model"); return NAN; }
    const G3Pass p = pass(cx);
    int64_t nvalid;
    if (check_ids(cx, inputs, targets, &nvalid) || sync_in(cx, 0) || forward(cx, &p, inputs)) return NAN;
    return head(cx, &p, targets, nvalid, 0.0f, 0, NULL, NULL);
}

int g3_train_seq_logps(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets, double *logp) {
    if (cx->tm != tm) return g3_errorf("train: context was made for another model");
    const G3Pass p = pass(cx);
    int64_t nvalid;
    if (check_ids(cx, inputs, targets, &nvalid) || sync_in(cx, 0) || forward(cx, &p, inputs)) return -1;
    if (isnan(head(cx, &p, targets, nvalid, 0.0f, 0, NULL, logp))) return -1;
    for (int b = 0; b < cx->B; b++) logp[b] = -logp[b];
    return 0;
}

double g3_train_forward_backward_seq(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, const int32_t *targets, const float *seq_w) {
    cx->seq_w = seq_w;
    double l = g3_train_forward_backward(tm, cx, inputs, targets, 1.0f);
    cx->seq_w = NULL;
    return l;
}

int g3_train_logits(G3TrainModel *tm, G3TrainCtx *cx, const int32_t *inputs, float *logits) {
    if (cx->tm != tm) return g3_errorf("train: context was made for another model");
    const G3Config *c = &tm->m.cfg;
    const int64_t BT = (int64_t)cx->B * cx->T;
    G3Pass p = pass(cx);
    for (int64_t r = 0; r < BT; r++)
        if (inputs[r] < 0 || inputs[r] >= c->vocab)
            return g3_errorf("train: input id %d at row %lld is outside the vocabulary [0, %d)", inputs[r], (long long)r, c->vocab);
    if (sync_in(cx, 0) || forward(cx, &p, inputs)) return -1;
    p.R = (int)BT;
    if (!cx->dev) return g3_pass_head(&p, logits, cx->xf, (int)BT, 1);
    G3Backend *be = cx->be;
    const size_t nb = sizeof(float) * (size_t)BT * c->vocab;
    float *d = be->alloc(be, nb);
    int rc = !d || g3_pass_head(&p, d, cx->xf, (int)BT, 1) || be->to_host(be, logits, d, nb) ? -1 : 0;
    be->free(be, d);
    return rc;
}

// ---- device-resident training ----

int g3_train_ctx_device_arrays(G3TrainCtx *cx, float **params, float **grads, G3Backend **be) {
    if (!cx->resident) return 0;
    cx->shadow_fresh = 0;  // the caller may write the parameters (rank-1 updates)
    *params = cx->dparams;
    *grads = cx->dgrads;
    *be = cx->be;
    return 1;
}

int g3_train_ctx_resident(G3TrainCtx *cx) {
    if (!cx->dev || cx->resident) return 0;
    if (sync_in(cx, 1)) return -1;
    cx->resident = 1;
    return 0;
}

int g3_train_ctx_zero_grads(G3TrainCtx *cx) {
    if (!cx->resident) {
        g3_train_zero_grads((G3TrainModel *)cx->tm);
        return 0;
    }
    G3Backend *be = cx->be;
    if (G3_NEED(be, zero)) return -1;
    return be->zero(be, cx->dgrads, (size_t)cx->tm->n * sizeof(float));
}

// Where an optimizer's moments lie in cx->dmom, and the host arrays they copy: n pieces of
// (device, host, bytes), one after the other. 32-bit: m [n], v [n] (ReLoRA's merge reads v at
// dmom + n); 8-bit: the absmax of m's blocks and of v's [nblocks] each, then the codes of m
// and of v [n] each (the floats first: every piece stays aligned). bytes: the total.
typedef struct {
    int n;
    char *dev[4];
    void *host[4];
    size_t size[4], bytes;
} DevMoments;

static DevMoments dev_moments(char *base, const G3AdamW *o) {
    DevMoments d = {.n = o->cfg.bits == 8 ? 4 : 2};
    const size_t n = (size_t)o->n, nb = (size_t)o->nblocks * sizeof(float);
    void *const h32[2] = {o->m, o->v}, *const h8[4] = {o->mmax, o->vmax, o->mq, o->vq};
    const size_t s8[4] = {nb, nb, n, n};
    for (int i = 0; i < d.n; i++) {
        d.dev[i] = base ? base + d.bytes : NULL;
        d.host[i] = d.n == 4 ? h8[i] : h32[i];
        d.size[i] = d.n == 4 ? s8[i] : n * sizeof(float);
        d.bytes += d.size[i];
    }
    return d;
}

// The optimizer's moments to the device (up) or back; the device copy must be o's.
static int moments_copy(G3TrainCtx *cx, const G3AdamW *o, int up) {
    G3Backend *be = cx->be;
    const DevMoments d = dev_moments((char *)cx->dmom, o);
    for (int i = 0; i < d.n; i++)
        if (up ? be->to_device(be, d.dev[i], d.host[i], d.size[i]) : be->to_host(be, d.host[i], d.dev[i], d.size[i])) return -1;
    return 0;
}

int g3_train_ctx_step(G3TrainCtx *cx, G3AdamW *o, double lr, double clip, double *norm_out) {
    G3TrainModel *tm = (G3TrainModel *)cx->tm;
    G3Backend *be = cx->be;
    const size_t nb = (size_t)tm->n * sizeof(float);
    const int bits8 = o->cfg.bits == 8;
    *norm_out = NAN;
    if (!cx->resident || (bits8 ? !be->adamw8 : !be->adamw) || !be->sumsq) {
        // on the host (a device backend without the step: the gradients come over and the
        // parameters go back)
        if (cx->resident && be->to_host(be, tm->grads, cx->dgrads, nb)) return -1;
        const double norm = g3_grad_norm(tm->grads, tm->n);
        *norm_out = norm;
        if (!isfinite(norm)) return 1;
        g3_adamw_step(o, tm->params, tm->grads, lr, g3_clip_scale(norm, clip));
        if (!isfinite(g3_grad_norm(tm->params, tm->n))) return 1;
        cx->shadow_fresh = 0;
        return cx->resident && be->to_device(be, cx->dparams, tm->params, nb) ? -1 : 0;
    }
    if (cx->dmom_of != o) {  // the moments go over once (zeros, or a resumed run's)
        const size_t bytes = dev_moments(NULL, o).bytes;
        if (bytes > cx->dmom_bytes) {  // none yet, or an earlier optimizer's smaller state
            if (cx->dmom) be->free(be, cx->dmom);
            cx->dmom_bytes = 0;
            if (!(cx->dmom = be->alloc(be, bytes))) return -1;
            cx->dmom_bytes = bytes;
        }
        if (moments_copy(cx, o, 1)) return -1;
        cx->dmom_of = o;
    }
    const double ss = be->sumsq(be, cx->dgrads, (long)tm->n);
    if (ss < 0) return -1;
    const double norm = sqrt(ss);
    *norm_out = norm;
    if (!isfinite(norm)) return 1;
    // g3_adamw_step's constants, computed the same way
    const G3AdamWConfig *c = &o->cfg;
    o->t++;
    const double bc1 = 1 - pow(c->beta1, (double)o->t), bc2 = 1 - pow(c->beta2, (double)o->t);
    const float k[8] = {(float)c->beta1, (float)c->beta2, (float)(1 - c->beta1), (float)(1 - c->beta2), (float)(lr / bc1),
                        (float)(1 / sqrt(bc2)), (float)c->eps, g3_clip_scale(norm, clip)};
    const float mul_decay = (float)(1 - lr * c->weight_decay);
    const DevMoments d = dev_moments((char *)cx->dmom, o);
    for (int s = 0; s < o->nseg; s++) {
        if (o->seg_skip[s]) continue;  // frozen for now (relora.h): no decay, moments kept, as on the host
        const int64_t off = o->seg_off[s], b0 = o->seg_blk[s];
        const float dm = o->seg_decay[s] ? mul_decay : 1.0f;
        if (bits8 ? be->adamw8(be, cx->dparams + off, cx->dgrads + off, (uint8_t *)d.dev[2] + off, (uint8_t *)d.dev[3] + off,
                               (float *)d.dev[0] + b0, (float *)d.dev[1] + b0, (long)o->seg_n[s], k, dm)
                  : be->adamw(be, cx->dparams + off, cx->dgrads + off, (float *)d.dev[0] + off, (float *)d.dev[1] + off,
                              (long)o->seg_n[s], k, dm))
            return -1;
    }
    const double ps = be->sumsq(be, cx->dparams, (long)tm->n);  // e.g. a huge lr: finite gradients, then overflow
    return ps < 0 ? -1 : isfinite(ps) ? 0 : 1;
}

int g3_train_ctx_sync_host(G3TrainCtx *cx, G3AdamW *o) {
    if (!cx->resident) return 0;
    G3Backend *be = cx->be;
    const G3TrainModel *tm = cx->tm;
    const size_t nb = (size_t)tm->n * sizeof(float);
    if (be->to_host(be, tm->params, cx->dparams, nb)) return -1;
    return o && cx->dmom && cx->dmom_of == o ? moments_copy(cx, o, 0) : 0;
}

int g3_train_ctx_reload(G3TrainCtx *cx, const G3AdamW *o) {
    if (!cx->resident) return 0;
    cx->shadow_fresh = 0;
    G3Backend *be = cx->be;
    const G3TrainModel *tm = cx->tm;
    const size_t nb = (size_t)tm->n * sizeof(float);
    if (be->to_device(be, cx->dparams, tm->params, nb)) return -1;
    return o && cx->dmom && cx->dmom_of == o ? moments_copy(cx, o, 1) : 0;
}

// ---- ReLoRA's merge on the device ----

// Whether entry j of the table is an adapter factor (not a model tensor, not the head), as relora.c tells.
static int is_factor(const G3TrainModel *tm, int j) { return tm->p[j].tensor < 0 && tm->p[j].off != tm->head_off; }

int g3_train_ctx_relora_merge(G3TrainCtx *cx, G3AdamW *o, double prune, uint64_t seed, int64_t gen, double *pruned) {
    G3TrainModel *tm = (G3TrainModel *)cx->tm;
    if (!cx->resident) return g3_relora_merge(tm, o, prune, seed, gen, pruned);
    if (!tm->hybrid || !tm->lora || !cx->dlora) return g3_errorf("ReLoRA: the model has no adapter over an f32 base");
    if (o && o->cfg.bits != 32) return g3_errorf("ReLoRA: pruning the optimizer state needs 32-bit AdamW (--optim adamw)");
    G3Backend *be = cx->be;
    if (G3_NEED(be, dropout) || G3_NEED(be, zero)) return -1;
    cx->shadow_fresh = 0;  // the base weights and the factors are rewritten below
    const G3Adapter *a = cx->dlora;
    int64_t most = 1;
    for (int l = 0; l < a->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++)
            if (g3_adapter_module(a, l, r)) most = G3_MAX(most, a->mod[l][r].B.rows * a->mod[l][r].B.cols);
    float *sb = be->alloc(be, (size_t)most * sizeof(float));  // s B of one module [out, r]
    if (!sb) return -1;
    for (int l = 0; l < a->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r);
            if (!md) continue;
            const int out = (int)md->B.rows, rk = (int)md->B.cols, in = (int)md->A.cols;
            float *W = cx->dparams + tm->off[tm->m.layer_idx[l][r]];
            be->dropout(be, sb, md->B.data, (long)out * rk, 0.0f, a->scale, 0, 0, 0);    // s B
            be->gemm(be, 0, 0, out, in, rk, sb, md->A.data, W, 1, G3_MM_EXACT);            // W += (s B) A
        }
    be->free(be, sb);
    g3_lora_init_factors(tm, seed, gen);  // the host draws the new A (B = 0), as g3_relora_merge does
    int64_t zeroed = 0, total = 0;
    const int mom = o && cx->dmom && cx->dmom_of == o;  // the moments are on the device
    for (int j = 0; j < tm->np; j++) {
        if (!is_factor(tm, j)) continue;
        const G3Param *p = &tm->p[j];
        const size_t nb = (size_t)p->numel * sizeof(float);
        if (be->to_device(be, cx->dparams + p->off, tm->params + p->off, nb)) return -1;
        if (!o) continue;
        float *m = o->m + p->off, *v = o->v + p->off;
        if (mom && (be->to_host(be, m, cx->dmom + p->off, nb) || be->to_host(be, v, cx->dmom + tm->n + p->off, nb))) return -1;
        zeroed += g3_prune_smallest(m, p->numel, prune) + g3_prune_smallest(v, p->numel, prune);
        total += 2 * p->numel;
        if (mom && (be->to_device(be, cx->dmom + p->off, m, nb) || be->to_device(be, cx->dmom + tm->n + p->off, v, nb))) return -1;
    }
    if (pruned) *pruned = total ? (double)zeroed / (double)total : 0;
    return be->sync ? be->sync(be) : 0;
}
