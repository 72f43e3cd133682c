// train_model.c: the trainable model: f32 parameters and gradients, each one allocation
// laid out in the order of the tensor table; creation, random init, copy from a loaded
// model, and saving in the Hub's format. Not the optimizer (optim.c) nor checkpoints of a
// training run (checkpoint.c): those read the same layout.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../model/adapter.h"
#include "../model/init.h"
#include "relora.h"
#include "train.h"

int g3_train_model_new(G3TrainModel *tm, const G3Config *c) {
    memset(tm, 0, sizeof *tm);
    if (g3_model_table(&tm->m, c)) return -1;
    tm->off = g3_calloc((size_t)tm->m.nt, sizeof *tm->off);
    tm->p = g3_calloc((size_t)tm->m.nt, sizeof *tm->p);
    if (!tm->off || !tm->p) goto fail;
    // full training: every tensor of the model's table is trainable, in table order
    for (int i = 0; i < tm->m.nt; i++) {
        const G3Tensor *t = &tm->m.t[i];
        G3Param *p = &tm->p[tm->np++];
        *p = (G3Param){.name = t->name, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]}, .numel = t->numel,
                       .off = tm->n, .tensor = i, .decay = t->kind != G3_KIND_NORM && i != tm->m.embed_idx};
        tm->off[i] = tm->n;
        tm->n += t->numel;
    }
    size_t bytes = (size_t)tm->n * sizeof(float);
    tm->params = g3_malloc_aligned(bytes);
    tm->grads = g3_malloc_aligned(bytes);
    if (!tm->params || !tm->grads) {
        g3_error_prefix("%.1f GiB for the parameters and gradients of %lld parameters", 2.0 * bytes / (1 << 30),
                        (long long)tm->m.nparams);
        goto fail;
    }
    memset(tm->params, 0, bytes);
    memset(tm->grads, 0, bytes);
    for (int i = 0; i < tm->m.nt; i++)
        if (g3_model_set(&tm->m, i, G3_F32, tm->params + tm->off[i])) goto fail;
    return 0;
fail:
    g3_train_model_free(tm);
    return -1;
}

void g3_train_zero_grads(G3TrainModel *tm) {
    enum { CHUNK = 1 << 16 };
    int64_t nch = (tm->n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) if (nch > 4)
    for (int64_t c = 0; c < nch; c++) memset(tm->grads + c * CHUNK, 0, sizeof(float) * (size_t)G3_MIN((int64_t)CHUNK, tm->n - c * CHUNK));
}

void g3_train_model_init_random(G3TrainModel *tm, uint64_t seed, float std) {
    for (int i = 0; i < tm->m.nt; i++) g3_init_tensor_f32(&tm->m, i, seed, std, tm->params + tm->off[i]);
}

int g3_train_model_from(G3TrainModel *tm, const G3Model *src) {
    if (g3_train_model_new(tm, &src->cfg)) return -1;
    for (int i = 0; i < tm->m.nt; i++) {
        const G3Tensor *s = &src->t[i];
        if (!s->data || s->numel != tm->m.t[i].numel) {
            g3_errorf("train: source model lacks tensor '%s'", tm->m.t[i].name);
            g3_train_model_free(tm);
            return -1;
        }
        g3_to_f32(tm->params + tm->off[i], s->data, s->dtype, (size_t)s->numel);
    }
    return 0;
}

typedef struct {
    const G3TrainModel *tm;
    G3DType dt;
} SaveCtx;

// Converts one tensor to the output dtype just before the writer needs it.
static int fill(void *ctxp, const void *outp, void *buf) {
    const SaveCtx *ctx = ctxp;
    const STOut *o = outp;
    for (int i = 0; i < ctx->tm->m.nt; i++) {
        const G3Tensor *t = &ctx->tm->m.t[i];
        if (strcmp(t->name, o->name)) continue;
        if (ctx->tm->hybrid) {  // a LoRA over an f32 base (relora.h): the weight with the adapter merged
            float *w = g3_malloc(sizeof(float) * (size_t)t->numel);
            if (!w || g3_hybrid_weight(ctx->tm, i, w)) { free(w); return -1; }
            g3_type(ctx->dt)->from_f32(buf, w, t->numel);
            free(w);
            return 0;
        }
        g3_type(ctx->dt)->from_f32(buf, ctx->tm->params + ctx->tm->off[i], t->numel);  // dt checked by the caller
        return 0;
    }
    return g3_errorf("save: unknown tensor %s", o->name);
}

int g3_train_model_save(const G3TrainModel *tm, const char *dir, G3DType dt) {
    if (tm->lora && !tm->hybrid) {
        if (g3_adapter_save(tm->lora, dir, tm->base_name, tm->lora_spec.dropout)) return -1;
        if (tm->lora_spec.classes <= 0) return 0;
        STWriter w = {0};
        char path[4200];
        int64_t shape[2] = {tm->lora_spec.classes, tm->m.cfg.hidden};
        int rc = g3_path_join(path, sizeof path, dir, "classify_head.safetensors") ||
                 st_writer_add(&w, "score.weight", G3_F32, 2, shape, tm->params + tm->head_off) || st_writer_write(&w, path, NULL);
        st_writer_free(&w);
        return rc ? g3_error_prefix("saving the classification head to %s", dir) : 0;
    }
    if (dt != G3_F32 && dt != G3_BF16 && dt != G3_F16) return g3_errorf("save: weights must be F32, BF16 or F16, not %s", g3_dtype_name(dt));
    if (g3_mkdir_p(dir)) return -1;
    G3Config c = tm->m.cfg;
    c.dtype = dt;
    SaveCtx ctx = {tm, dt};
    STWriter w = {0};
    char path[4200];
    int rc = -1;
    for (int i = 0; i < tm->m.nt; i++) {
        const G3Tensor *t = &tm->m.t[i];
        int e = dt == G3_F32 && !tm->hybrid ? st_writer_add(&w, t->name, dt, t->ndim, t->shape, tm->params + tm->off[i])
                             : st_writer_add_fill(&w, t->name, dt, t->ndim, t->shape, fill, &ctx);
        if (e) goto out;
    }
    // weights first, config last: a folder with a config.json is a complete model
    // one model.safetensors, replacing a sharded layout left in dir (safetensors.h)
    if (st_writer_write_sharded(&w, dir, SIZE_MAX)) goto out;
    if (g3_path_join(path, sizeof path, dir, "config.json") || g3_config_write(&c, path)) goto out;
    rc = 0;
out:
    if (rc) g3_error_prefix("saving the model to %s", dir);
    st_writer_free(&w);
    return rc;
}

void g3_train_model_free(G3TrainModel *tm) {
    if (tm->m.t) g3_model_free(&tm->m);
    g3_free_aligned(tm->params);
    g3_free_aligned(tm->grads);
    free(tm->off);
    free(tm->p);
    free(tm->lora);       // the factors live in params and grads
    free(tm->lora_grad);
    free(tm->names);
    memset(tm, 0, sizeof *tm);
}
