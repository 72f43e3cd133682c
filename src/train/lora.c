// lora.c: the LoRA training model (train.h): a frozen base as stored, and an adapter whose
// f32 factors are the trainable table, initialised as PEFT initialises them.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../model/adapter.h"
#include "rng.h"
#include "train.h"

static const struct {
    const char *flag, *peft, *block;
    G3LayerRole role;
} MODS[] = {
    {"q", "q_proj", "self_attn", W_Q},   {"k", "k_proj", "self_attn", W_K}, {"v", "v_proj", "self_attn", W_V},
    {"o", "o_proj", "self_attn", W_O},   {"gate", "gate_proj", "mlp", W_GATE}, {"up", "up_proj", "mlp", W_UP},
    {"down", "down_proj", "mlp", W_DOWN},
};
enum { NMODS = (int)(sizeof MODS / sizeof MODS[0]) };

int g3_lora_spec_parse(G3LoraSpec *s, const char *text) {
    *s = (G3LoraSpec){.r = 16, .alpha = -1};
    for (int i = 0; i < NMODS; i++) s->targets |= 1u << MODS[i].role;
    char buf[512];
    if (strlen(text) >= sizeof buf) return g3_errorf("--lora: spec too long");
    strcpy(buf, text);
    int in_targets = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end;
        if (eq) *eq = 0;
        const char *v = eq ? eq + 1 : NULL;
        if (!strcmp(tok, "rslora") && !v) { s->rslora = 1; in_targets = 0; continue; }
        if (!v && in_targets) v = tok, tok = "targets+";
        if (!v) return g3_errorf("--lora: '%s' is not key=value (r, alpha, targets, dropout, rslora)", tok);
        if (!strcmp(tok, "r")) {
            long r = strtol(v, &end, 10);
            if (*end || r < 1 || r > 65536) return g3_errorf("--lora: r must be an integer in [1, 65536], not '%s'", v);
            s->r = (int)r;
            in_targets = 0;
        } else if (!strcmp(tok, "alpha") || !strcmp(tok, "dropout")) {
            double x = strtod(v, &end);
            int alpha = tok[0] == 'a';
            if (*end || !*v || !isfinite(x) || (alpha ? x <= 0 : (x < 0 || x >= 1)))
                return g3_errorf("--lora: %s must be a number %s, not '%s'", tok, alpha ? "> 0" : "in [0, 1)", v);
            if (alpha) s->alpha = x;
            else s->dropout = x;
            in_targets = 0;
        } else if (!strcmp(tok, "targets") || !strcmp(tok, "targets+")) {
            if (tok[7] != '+') s->targets = 0;
            if (!strcmp(v, "all")) {
                for (int i = 0; i < NMODS; i++) s->targets |= 1u << MODS[i].role;
            } else {
                int k = -1;
                for (int i = 0; i < NMODS; i++)
                    if (!strcmp(v, MODS[i].flag) || !strcmp(v, MODS[i].peft)) k = i;
                if (k < 0) return g3_errorf("--lora: unknown target '%s' (all, or q, k, v, o, gate, up, down)", v);
                s->targets |= 1u << MODS[k].role;
            }
            in_targets = 1;  // "targets=q,v": the values after the first follow as bare words
        } else {
            return g3_errorf("--lora: unknown key '%s' (r, alpha, targets, dropout, rslora)", tok);
        }
    }
    if (s->alpha < 0) s->alpha = 2.0 * s->r;
    if (!s->targets) return g3_errorf("--lora: no targets");
    return 0;
}

// PEFT: nn.init.kaiming_uniform_(A, a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); B = 0. Draw gen 0
// is the adapter's first; ReLoRA's merges draw 1, 2, ...
void g3_lora_init_factors(G3TrainModel *tm, uint64_t seed, int64_t gen) {
    const G3Adapter *a = tm->lora;
    const uint64_t sd = gen ? seed ^ ((uint64_t)gen * 0x9E3779B97F4A7C15ull) : seed;
    for (int l = 0; l < a->layers; l++)
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r);
            if (!md) continue;
            float *A = (float *)md->A.data, *B = (float *)md->B.data;
            G3Rng rng;
            g3_rng_seed3(&rng, sd, (uint64_t)l, (uint64_t)r + 0x4c6f5241ull);  // "LoRA"
            const double bound = 1.0 / sqrt((double)md->A.cols);
            for (int64_t e = 0; e < md->A.rows * md->A.cols; e++) A[e] = (float)((2.0 * g3_rng_uniform(&rng) - 1.0) * bound);
            memset(B, 0, sizeof(float) * (size_t)(md->B.rows * md->B.cols));
        }
}

// Appends the adapter of spec s (and a classification head if s->classes > 0) to tm's table,
// after whatever it holds (nothing for a frozen base; every model tensor for the hybrid model):
// params and grads grow (values kept; model tensors in them re-pointed), the factors are
// drawn. 0 or -1 (tm untouched but for what it owned).
int g3_lora_append(G3TrainModel *tm, const G3LoraSpec *s, uint64_t seed) {
    tm->lora_spec = *s;
    const G3Config *c = &tm->m.cfg;
    int nmod = 0;
    for (int l = 0; l < c->layers; l++)
        for (int i = 0; i < NMODS; i++) nmod += (s->targets >> MODS[i].role & 1) && tm->m.layer_idx[l][MODS[i].role] >= 0;
    G3Param *np = realloc(tm->p, sizeof *tm->p * (size_t)(tm->np + 2 * nmod + 2));
    if (!np) return g3_errorf("LoRA: out of memory");
    tm->p = np;
    tm->lora = g3_calloc(1, sizeof *tm->lora);
    tm->lora_grad = g3_calloc(1, sizeof *tm->lora_grad);
    tm->names = g3_malloc((size_t)(2 * nmod + 1) * 96);
    if (!tm->lora || !tm->lora_grad || !tm->names) return g3_errorf("LoRA: out of memory");
    G3Adapter *a = tm->lora;
    a->r = s->r;
    a->alpha = s->alpha;
    a->rslora = s->rslora;
    a->scale = (float)(s->rslora ? s->alpha / sqrt((double)s->r) : s->alpha / s->r);
    a->layers = c->layers;
    snprintf(a->dir, sizeof a->dir, "(training)");
    const int64_t n0 = tm->n;
    const int j0 = tm->np;
    // the table: for each layer and module, A [r, in] then B [out, r]
    for (int l = 0; l < c->layers; l++)
        for (int i = 0; i < NMODS; i++) {
            int ti = tm->m.layer_idx[l][MODS[i].role];
            if (!(s->targets >> MODS[i].role & 1) || ti < 0) continue;
            const G3Tensor *t = &tm->m.t[ti];
            int64_t out = t->shape[0], in = t->shape[1];
            for (int k = 0; k < 2; k++) {
                char *nm = tm->names + (size_t)(tm->np - j0) * 96;
                snprintf(nm, 96, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", l, MODS[i].block, MODS[i].peft, k ? 'B' : 'A');
                G3Param *p = &tm->p[tm->np++];
                *p = (G3Param){.name = nm, .ndim = 2, .shape = {k ? out : s->r, k ? s->r : in}, .numel = s->r * (k ? out : in),
                               .off = tm->n, .tensor = -1, .decay = 1};
                tm->n += p->numel;
            }
            a->nmodules++;
            if (out > a->max_out) a->max_out = (int)out;
        }
    const int jend = tm->np;
    if (s->classes > 0) {  // the classification head, last in the table
        G3Param *p = &tm->p[tm->np++];
        *p = (G3Param){.name = "score.weight", .ndim = 2, .shape = {s->classes, c->hidden}, .numel = (int64_t)s->classes * c->hidden,
                       .off = tm->n, .tensor = -1, .decay = 1};
        tm->head_off = tm->n;
        tm->n += p->numel;
    }
    *tm->lora_grad = *a;
    size_t bytes = sizeof(float) * (size_t)(tm->n ? tm->n : 1);
    float *params = g3_malloc_aligned(bytes), *grads = g3_malloc_aligned(bytes);
    if (!params || !grads) {
        g3_free_aligned(params);
        g3_free_aligned(grads);
        return g3_errorf("LoRA: out of memory");
    }
    memset(params, 0, bytes);
    memset(grads, 0, bytes);
    if (n0) memcpy(params, tm->params, sizeof(float) * (size_t)n0);
    g3_free_aligned(tm->params);
    g3_free_aligned(tm->grads);
    tm->params = params;
    tm->grads = grads;
    for (int i = 0; i < tm->m.nt; i++)
        if (tm->off[i] >= 0 && g3_model_set(&tm->m, i, G3_F32, tm->params + tm->off[i])) return -1;
    if (s->classes > 0) {  // N(0, initializer_range 0.02), as transformers initialises a new score layer
        G3Rng rng;
        g3_rng_seed3(&rng, seed, 0x73636f7265ull, 0);  // "score"
        float *h = tm->params + tm->head_off;
        for (int64_t e = 0; e < (int64_t)s->classes * c->hidden; e++) {
            double u1 = g3_rng_uniform(&rng), u2 = g3_rng_uniform(&rng);
            h[e] = (float)(0.02 * sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(6.283185307179586 * u2));
        }
    }
    for (int j = j0; j + 1 < jend; j += 2) {
        int l, i;
        char blk[16], mod[16];
        if (sscanf(tm->p[j].name, "base_model.model.model.layers.%d.%15[^.].%15[^.]", &l, blk, mod) != 3) return g3_errorf("LoRA: bad name");
        for (i = 0; i < NMODS && strcmp(MODS[i].peft, mod); i++) {}
        G3LayerRole r = MODS[i].role;
        const G3Param *pa = &tm->p[j], *pb = &tm->p[j + 1];
        float *A = tm->params + pa->off, *gA = tm->grads + pa->off, *B = tm->params + pb->off, *gB = tm->grads + pb->off;
        G3Weight wa = {.type = G3_F32, .rows = pa->shape[0], .cols = pa->shape[1], .row_bytes = pa->shape[1] * 4, .data = A};
        G3Weight wb = {.type = G3_F32, .rows = pb->shape[0], .cols = pb->shape[1], .row_bytes = pb->shape[1] * 4, .data = B};
        a->mod[l][r] = (G3LoraModule){wa, wb};
        wa.data = gA;
        wb.data = gB;
        tm->lora_grad->mod[l][r] = (G3LoraModule){wa, wb};
    }
    g3_lora_init_factors(tm, seed, 0);
    tm->m.adapter = tm->lora;
    return 0;
}

int g3_train_model_lora(G3TrainModel *tm, G3Model *base, const G3LoraSpec *s, uint64_t seed, const char *base_name) {
    memset(tm, 0, sizeof *tm);
    tm->m = *base;
    memset(base, 0, sizeof *base);
    tm->base_name = base_name;
    tm->off = g3_malloc(sizeof *tm->off * (size_t)tm->m.nt);
    if (!tm->off) goto fail;
    for (int i = 0; i < tm->m.nt; i++) tm->off[i] = -1;  // the base is frozen
    if (g3_lora_append(tm, s, seed)) goto fail;
    return 0;
fail:
    if (!g3_error_is_set()) g3_errorf("LoRA: out of memory");
    g3_train_model_free(tm);
    return -1;
}

double g3_lora_update_norm(const G3LoraModule *md, float scale) {
    // ||s B A||_F^2 = s^2 sum_ij (B^T B)_ij (A A^T)_ij: two r x r Gram matrices, no [out, in] product
    const int r = (int)md->A.rows;
    const int64_t in = md->A.cols, out = md->B.rows;
    const float *A = md->A.data, *B = md->B.data;
    double s = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
            double ga = 0, gb = 0;
            for (int64_t c = 0; c < in; c++) ga += (double)A[i * in + c] * A[j * in + c];
            for (int64_t o = 0; o < out; o++) gb += (double)B[o * r + i] * B[o * r + j];
            s += ga * gb;
        }
    return fabs((double)scale) * sqrt(s > 0 ? s : 0);
}

void g3_lora_layer_norms(const G3TrainModel *tm, double *per_layer) {
    const G3Adapter *a = tm->lora;
    for (int l = 0; l < tm->m.cfg.layers; l++) {
        double s = 0;
        for (int r = 0; r < W_PER_LAYER; r++) {
            const G3LoraModule *md = g3_adapter_module(a, l, r);
            if (md) {
                double n = g3_lora_update_norm(md, a->scale);
                s += n * n;
            }
        }
        per_layer[l] = sqrt(s);
    }
}
