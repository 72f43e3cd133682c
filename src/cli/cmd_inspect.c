// cmd_inspect.c: `gemma3 inspect`: the architecture as someone studying it wants to see it.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "backend/backend.h"
#include "cli.h"
#include "model/model.h"

static void human(char *out, size_t cap, double bytes) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (bytes >= 1024 && i < 4) { bytes /= 1024; i++; }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", bytes, u[i]);
}

static void count(char *out, size_t cap, double n) {
    if (n >= 1e9) snprintf(out, cap, "%.2fB", n / 1e9);
    else if (n >= 1e6) snprintf(out, cap, "%.1fM", n / 1e6);
    else if (n >= 1e3) snprintf(out, cap, "%.1fK", n / 1e3);
    else snprintf(out, cap, "%.0f", n);
}

// With --device cuda (or by default where a GPU is present): the weights uploaded as the
// CUDA backend keeps them (stored types), the KV cache one sequence needs, and what is free.
static int gpu_report(G3Model *m, long ctx) {
    const char *dev = cli_device ? cli_device : g3_backend_cuda_devices() > 0 ? "cuda" : "cpu";
    if (!strcmp(dev, "cpu")) return 0;
    G3Backend *be = g3_backend_open(dev);
    if (!be) return cli_fail("inspect", "%s", g3_error());
    int rc = 0;
    for (int i = 0; i < m->nt && !rc; i++) {
        G3Weight w = g3_tensor_weight(&m->t[i]);
        if (m->t[i].ndim == 2 && be->weight_check(be, &w, m->t[i].name)) rc = cli_fail("inspect", "%s", g3_error());
    }
    size_t fb = 0, tb = 0;
    if (!rc && g3_backend_cuda_mem(be, &fb, &tb) == 0) {
        char a[32], b[32], f[32], t[32];
        const double kv = (double)g3_kv_bytes(&m->cfg, (int)ctx, 4, 1);
        human(a, sizeof a, (double)g3_backend_cuda_weight_bytes(be));
        human(b, sizeof b, kv);
        human(f, sizeof f, (double)fb);
        human(t, sizeof t, (double)tb);
        printf("\nGPU        %s\n", g3_backend_cuda_device(be));
        printf("  weights on the GPU (as stored)   %s\n", a);
        printf("  KV cache, one sequence of %ld    %s (f32, windowed)\n", ctx, b);
        printf("  free after the weights           %s of %s: room for %.0f such sequences\n", f, t, kv > 0 ? floor((double)fb / kv) : 0.0);
    }
    g3_backend_free(be);
    return rc ? 1 : 0;
}

int cmd_inspect(int argc, char **argv) {
    const char *dir = NULL;
    long ctx = 0;
    int tensors = 0;
    CliOpt opts[] = {
        {"--tensors", OPT_FLAG, &tensors, "list every tensor with its type, shape and bits per weight"},
        {"--model", OPT_STR, &dir, "model folder (config.json + model.safetensors or a sharded set), or a .gguf file" CLI_MODEL_HELP},
        {"--context", OPT_INT, &ctx, "context length for the KV-cache figures (0: the model's maximum)", 0, 1 << 30},
        CLI_DEVICE_OPT,
    };
    CLI_PARSE("inspect", "--model DIR [--context N] [--tensors]", argc, argv, opts);
    if (cli_model_or_default("inspect", &dir)) return 1;
    G3Model m;
    if (g3_model_load(&m, dir)) return cli_fail("inspect", "%s", g3_error());
    const G3Config *c = &m.cfg;
    if (ctx == 0) ctx = c->max_pos;
    char a[32], b[32];

    printf("model      %s\n", dir);
    printf("family     Gemma %d (%s%s)\n", c->family, c->arch[0] ? c->arch : "?", c->multimodal ? ", text model of a multimodal checkpoint" : "");
    printf("files      %d %s file%s, weights %s\n", m.src->nfiles, m.src->kind, m.src->nfiles == 1 ? "" : "s", g3_dtype_name(m.t[m.embed_idx].dtype));
    printf("\nsizes      vocab %d, hidden %d, MLP %d, layers %d\n", c->vocab, c->hidden, c->inter, c->layers);
    printf("attention  %d query heads, %d KV head%s (%s), head_dim %d, scale 1/sqrt(%g)\n", c->heads, c->kv_heads,
           c->kv_heads == 1 ? "" : "s", c->kv_heads == 1 ? "multi-query" : c->kv_heads == c->heads ? "multi-head" : "grouped-query",
           c->head_dim, c->query_pre_attn_scalar);
    printf("norms      RMSNorm (1+w), eps %g%s; GeGLU (%s)\n", c->eps, c->qk_norm ? ", QK-norm" : "", c->act == G3_GELU_TANH ? "gelu tanh" : "gelu erf");
    printf("softcaps   attention %s, final %s\n", c->attn_softcap > 0 ? (snprintf(a, sizeof a, "%g", c->attn_softcap), a) : "none",
           c->final_softcap > 0 ? (snprintf(b, sizeof b, "%g", c->final_softcap), b) : "none");
    printf("context    max %d positions, sliding window %d\n", c->max_pos, c->sliding_window);

    printf("\nlayers     kind     window  RoPE base  scale\n");
    int nsl = 0;
    for (int l = 0; l < c->layers; l++) nsl += c->sliding[l];
    for (int l = 0; l < c->layers; l++) {
        int sl = c->sliding[l];
        // print runs of identical layers on one line, so 62 layers stay readable
        int e = l;
        while (e + 1 < c->layers && c->sliding[e + 1] == sl) e++;
        char span[32];
        if (e > l) snprintf(span, sizeof span, "%d-%d", l, e); else snprintf(span, sizeof span, "%d", l);
        printf("  %-8s %-8s %6s  %9.0f  %5g\n", span, sl ? "sliding" : "global", sl ? (snprintf(a, sizeof a, "%d", c->sliding_window), a) : "full",
               sl ? c->rope_local_base : c->rope_global_base, sl ? c->rope_local_scale : c->rope_global_scale);
        l = e;
    }
    printf("  (%d sliding, %d global)\n", nsl, c->layers - nsl);

    int64_t by_kind[4] = {0}, bytes_kind[4] = {0};
    for (int i = 0; i < m.nt; i++) {
        by_kind[m.t[i].kind] += m.t[i].numel;
        bytes_kind[m.t[i].kind] += m.t[i].nbytes;
    }
    const char *kinds[] = {"embedding", "attention", "MLP", "norms"};
    printf("\nparameters                 count      share   bytes\n");
    for (int k = 0; k < 4; k++) {
        count(a, sizeof a, (double)by_kind[k]);
        human(b, sizeof b, (double)bytes_kind[k]);
        printf("  %-22s %9s  %6.2f%%  %s\n", kinds[k], a, 100.0 * by_kind[k] / m.nparams, b);
    }
    count(a, sizeof a, (double)m.nparams);
    human(b, sizeof b, (double)g3_model_weight_bytes(&m));
    printf("  %-22s %9s  %6.2f%%  %s  (output head tied to the embedding)\n", "total", a, 100.0, b);

    // stored types: a quantized file mixes them (Q4_K_M: Q4_K, Q6_K, fallbacks; norms F32)
    printf("\ntypes                   tensors     count   bytes     bits/weight\n");
    for (int ty = 0; ty < G3_DTYPE_COUNT; ty++) {
        int64_t n = 0, nb = 0;
        int nt = 0;
        for (int i = 0; i < m.nt; i++)
            if (m.t[i].dtype == (G3DType)ty) n += m.t[i].numel, nb += m.t[i].nbytes, nt++;
        if (!nt) continue;
        count(a, sizeof a, (double)n);
        human(b, sizeof b, (double)nb);
        printf("  %-20s %8d  %8s  %-9s %7.3f\n", g3_dtype_name((G3DType)ty), nt, a, b, 8.0 * (double)nb / (double)n);
    }
    printf("  %-20s %8d  %8s  %-9s %7.3f\n", "all", m.nt, (count(a, sizeof a, (double)m.nparams), a),
           (human(b, sizeof b, (double)g3_model_weight_bytes(&m)), b), 8.0 * (double)g3_model_weight_bytes(&m) / (double)m.nparams);
    if (tensors) {
        printf("\ntensors\n");
        for (int i = 0; i < m.nt; i++) {
            const G3Tensor *t = &m.t[i];
            char shape[48];
            if (t->ndim == 2) snprintf(shape, sizeof shape, "[%lld, %lld]", (long long)t->shape[0], (long long)t->shape[1]);
            else snprintf(shape, sizeof shape, "[%lld]", (long long)t->shape[0]);
            printf("  %-52s %-5s %-14s %7.3f\n", t->name, g3_dtype_name(t->dtype), shape, 8.0 * (double)t->nbytes / (double)t->numel);
        }
    }

    printf("\nKV cache at %ld positions (one sequence)\n", ctx);
    char w32[32], f32[32], w16[32], f16[32];
    human(w32, sizeof w32, (double)g3_kv_bytes(c, (int)ctx, 4, 1));
    human(f32, sizeof f32, (double)g3_kv_bytes(c, (int)ctx, 4, 0));
    human(w16, sizeof w16, (double)g3_kv_bytes(c, (int)ctx, 2, 1));
    human(f16, sizeof f16, (double)g3_kv_bytes(c, (int)ctx, 2, 0));
    printf("  windowed (sliding layers keep %d positions)  f32 %s   bf16 %s   <- gemma3.c keeps this (f32)\n", c->sliding_window, w32, w16);
    printf("  if every layer kept every position           f32 %s   bf16 %s\n", f32, f16);
    printf("  per token: %d values per layer (2 x %d KV heads x %d)\n", 2 * c->kv_heads * c->head_dim, c->kv_heads, c->head_dim);
    int rc = gpu_report(&m, ctx);
    g3_model_free(&m);
    return rc;
}
