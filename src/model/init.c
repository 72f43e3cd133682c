// init.c: random-weight checkpoints (see init.h).
#include "init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/base.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void g3_init_tensor_f32(const G3Model *m, int i, uint64_t seed, float std, float *out) {
    const G3Tensor *t = &m->t[i];
    if (t->kind == G3_KIND_NORM) {
        memset(out, 0, (size_t)t->numel * sizeof(float));
        return;
    }
    const int64_t CH = 1 << 16;  // values per independent stream
    int64_t nch = (t->numel + CH - 1) / CH;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < nch; ch++) {
        uint64_t st = seed * 0x100000001b3ULL ^ ((uint64_t)i << 40) ^ (uint64_t)ch;
        splitmix64(&st);
        int64_t end = G3_MIN(t->numel, (ch + 1) * CH);
        for (int64_t k = ch * CH; k < end; k += 2) {
            // Box-Muller: two normals from two uniforms in (0, 1]
            double u1 = ((splitmix64(&st) >> 11) + 1) * 0x1.0p-53, u2 = (splitmix64(&st) >> 11) * 0x1.0p-53;
            double r = sqrt(-2 * log(u1)), a = 6.283185307179586 * u2;
            out[k] = (float)(std * r * cos(a));
            if (k + 1 < end) out[k + 1] = (float)(std * r * sin(a));
        }
    }
}

typedef struct {
    const G3Model *m;
    uint64_t seed;
    float std;
    G3DType dt;
    int verbose;
    int64_t done, total;
    double last;
} InitCtx;

static int fill(void *ctxp, const void *outp, void *buf) {
    InitCtx *ctx = ctxp;
    const STOut *o = outp;
    int i = -1;
    for (int k = 0; k < ctx->m->nt; k++)
        if (!strcmp(ctx->m->t[k].name, o->name)) i = k;
    if (i < 0) return g3_errorf("init: unknown tensor %s", o->name);
    const G3Tensor *t = &ctx->m->t[i];
    const G3TypeTraits *tt = g3_type(ctx->dt);
    if (!tt || !tt->from_f32) return g3_errorf("init: weights cannot be written as %s", g3_dtype_name(ctx->dt));
    // f32 values straight into the buffer when they are the output, else converted from a copy
    float *f = ctx->dt == G3_F32 ? buf : g3_malloc((size_t)t->numel * sizeof(float));
    if (!f) return -1;
    g3_init_tensor_f32(ctx->m, i, ctx->seed, ctx->std, f);
    if (f != buf) {
        tt->from_f32(buf, f, t->numel);
        free(f);
    }
    ctx->done += t->numel;
    // progress at most twice a second: an updating line on a terminal, plain lines otherwise
    double now = g3_now();
    if (ctx->verbose && (now - ctx->last >= 0.5 || ctx->done == ctx->total)) {
        ctx->last = now;
        fprintf(stderr, isatty(2) ? "\rinit: %5.1f%% of %lld parameters" : "init: %5.1f%% of %lld parameters\n",
                100.0 * ctx->done / ctx->total, (long long)ctx->total);
    }
    return 0;
}

int g3_init_checkpoint(const G3Config *c, const char *dir, G3DType dt, uint64_t seed, float std, size_t max_shard, int verbose) {
    return g3_init_checkpoint_ex(c, dir, dt, seed, std, max_shard, verbose, NULL, NULL);
}

int g3_init_checkpoint_ex(const G3Config *c, const char *dir, G3DType dt, uint64_t seed, float std, size_t max_shard, int verbose,
                          int (*extra)(void *ctx, STWriter *w), void *extra_ctx) {
    G3Model m;
    if (g3_model_table(&m, c)) return -1;
    if (g3_mkdir_p(dir)) { g3_model_free(&m); return -1; }
    G3Config cc = *c;
    cc.dtype = dt;
    char path[4200];
    int rc = -1;
    STWriter w = {0};
    InitCtx ctx = {&m, seed, std, dt, verbose, 0, m.nparams, g3_now()};
    for (int i = 0; i < m.nt; i++)
        if (st_writer_add_fill(&w, m.t[i].name, dt, m.t[i].ndim, m.t[i].shape, fill, &ctx)) goto out;
    if (extra && extra(extra_ctx, &w)) goto out;
    if (st_writer_write_sharded(&w, dir, max_shard)) goto out;
    if (verbose && isatty(2)) fprintf(stderr, "\n");
    if (g3_path_join(path, sizeof path, dir, "config.json") || g3_config_write(&cc, path)) goto out;
    rc = 0;
out:
    st_writer_free(&w);
    g3_model_free(&m);
    return rc;
}
