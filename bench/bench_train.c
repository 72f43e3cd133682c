// bench_train.c: training throughput on the CPU: tokens/s and achieved GFLOP/s of full
// training steps (forward + backward + AdamW) for a small Gemma 3, against a measured f32 FMA
// peak of this machine. FLOPs per token: 6 * parameters (the tied embedding counts once, as the
// output projection) + 12 * layers * heads * head_dim * T for attention (the PaLM convention,
// which counts the causal half too). tok/s is the median over the timed steps (the machine is
// shared). PyTorch's tok/s for the two shapes, measured in the same run by bench/train_peers.sh
// (bench/train_torch.py), come in through G3_TORCH_TRAIN="A B" (f32) and G3_TORCH_TRAIN_BF16
// (bf16 autocast); without them no ratio is shown. The bf16 mode (matrix products with bf16
// operands) is reported against the vdpbf16ps peak where the CPU has one.
// Usage: bench_train [steps [a|b [0|1|2|3]]] (a shape letter runs only that shape; a mode number
// only that mode: 0 all activations, 1 checkpointing, 2 checkpointing + 8-bit AdamW, 3 bf16
// products with all activations; for profiling)
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/train.h"
#include "peak.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sort(double *v, int n) {  // insertion sort: a handful of values
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) { double t = v[j]; v[j] = v[j - 1]; v[j - 1] = t; }
}

// Median wall seconds per step; *cpu gets the median process CPU seconds per step (all
// threads): with one thread, a figure that other tenants' time slices do not inflate.
static double run(G3TrainModel *tm, int B, int T, int steps, int recompute, int bits, int bf16, int64_t *act,
                  int64_t *opt_bytes, double *cpu) {
    G3TrainCtx *ctx = g3_train_ctx_new(tm, B, T, recompute, act);
    if (!ctx) { fprintf(stderr, "%s\n", g3_error()); exit(1); }
    g3_train_ctx_set_bf16(ctx, bf16);
    G3AdamWConfig oc = g3_adamw_defaults();
    oc.bits = bits;
    G3AdamW o;
    if (g3_adamw_init_model(&o, &oc, tm, 0)) exit(1);
    *opt_bytes = g3_adamw_state_bytes(&o, bits);
    int V = tm->m.cfg.vocab;
    enum { N = 1 << 16 };
    static uint32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (uint32_t)((i * 2654435761u) % (unsigned)V);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    double dts[64], cts[64];
    for (int s = 0; s <= steps; s++) {  // step 0 warms up (page faults, caches)
        double t0 = g3_now(), c0 = cpu_now();
        g3_train_zero_grads(tm);
        g3_data_batch(tok, N, B, T, 1, s, 0, in, tg);
        g3_train_forward_backward(tm, ctx, in, tg, 1.0f);
        g3_adamw_step(&o, tm->params, tm->grads, 1e-4, g3_clip_scale(g3_grad_norm(tm->grads, tm->n), 1.0));
        if (s > 0) dts[s - 1] = g3_now() - t0, cts[s - 1] = cpu_now() - c0;
    }
    sort(dts, steps);
    sort(cts, steps);
    double dt = dts[steps / 2];
    *cpu = cts[steps / 2];
    free(in); free(tg);
    g3_adamw_free(&o);
    g3_train_ctx_free(ctx);
    return dt;
}

// The two shapes (vocab 8192, T = 256).
typedef struct { const char *name; int hidden, inter, layers, heads, kv, hd, B; } Shape;
static const Shape shapes[] = {
    {"(a) 9.7M", 256, 1024, 8, 4, 1, 64, 8},
    {"(b) 35.7M", 512, 2048, 8, 4, 2, 128, 4},
};

int main(int argc, char **argv) {
    int T = 256, steps = argc > 1 ? atoi(argv[1]) : 5;
    if (steps < 1) steps = 1;
    if (steps > 64) steps = 64;
    double torch[2][2] = {{0, 0}, {0, 0}};  // [f32, bf16][shape]
    const char *te = getenv("G3_TORCH_TRAIN"), *tb = getenv("G3_TORCH_TRAIN_BF16");
    if (te) sscanf(te, "%lf %lf", &torch[0][0], &torch[0][1]);
    if (tb) sscanf(tb, "%lf %lf", &torch[1][0], &torch[1][1]);
    // The peak is the best of all readings through the run (the machine is shared, and a busy
    // spell reads low): so the lines are printed at the end, each against that best.
    double peak = 0, peak_bf = 0;
    for (int r = 0; r < 5; r++) peak = G3_MAX(peak, peak_gflops(0)), peak_bf = G3_MAX(peak_bf, peak_gflops(1));
    enum { NMODES = 4, MAXLINES = 2 * NMODES };
    struct { char head[160]; double tps, gf, dt, cpu, mib, act, opt, torch; const char *what; int bf16; } out[MAXLINES];
    int nout = 0;
    static const struct { int rc, bits, bf16; const char *what; } modes[NMODES] = {
        {0, 32, 0, "all activations, AdamW"}, {1, 32, 0, "checkpointing, AdamW"}, {1, 8, 0, "checkpointing, 8-bit AdamW"},
        {0, 32, 1, "bf16 products, AdamW"}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const Shape *sh = &shapes[si];
        if (argc > 2 && argv[2][0] != sh->name[1]) continue;
        G3Config c;
        g3_config_preset(&c, "tiny");
        c.vocab = 8192; c.hidden = sh->hidden; c.inter = sh->inter; c.layers = sh->layers; c.heads = sh->heads;
        c.kv_heads = sh->kv; c.head_dim = sh->hd; c.query_pre_attn_scalar = (float)sh->hd; c.sliding_window = 128;
        for (int i = 0; i < c.layers; i++) c.sliding[i] = (i + 1) % 6 != 0;
        G3TrainModel tm;
        if (g3_train_model_new(&tm, &c)) { fprintf(stderr, "%s\n", g3_error()); return 1; }
        g3_train_model_init_random(&tm, 1, 0.02f);
        int B = sh->B;
        double fpt = 6.0 * (double)tm.n + 12.0 * c.layers * c.heads * c.head_dim * T;
        double base = 8.0 * (double)tm.n;  // f32 parameters + gradients
        for (int mi = 0; mi < NMODES; mi++) {
            if (argc > 3 && atoi(argv[3]) != mi) continue;
            int64_t act, opt;
            for (int r = 0; r < 2; r++) peak = G3_MAX(peak, peak_gflops(0)), peak_bf = G3_MAX(peak_bf, peak_gflops(1));
            double cpu, dt = run(&tm, B, T, steps, modes[mi].rc, modes[mi].bits, modes[mi].bf16, &act, &opt, &cpu);
            snprintf(out[nout].head, sizeof out[nout].head, "%s: %lld params (hidden %d, MLP %d, %d layers, %d/%d heads, head_dim %d), B=%d",
                     sh->name, (long long)tm.n, c.hidden, c.inter, c.layers, c.heads, c.kv_heads, c.head_dim, B);
            out[nout].what = modes[mi].what;
            out[nout].tps = B * T / dt;
            out[nout].gf = fpt * B * T / dt / 1e9;
            out[nout].dt = dt, out[nout].cpu = cpu, out[nout].torch = torch[modes[mi].bf16][si], out[nout].bf16 = modes[mi].bf16;
            out[nout].mib = (base + act + opt) / 1048576.0, out[nout].act = act / 1048576.0, out[nout].opt = opt / 1048576.0;
            fprintf(stderr, "bench_train: %s, %s: %.0f tok/s\n", sh->name, modes[mi].what, out[nout].tps);  // progress
            nout++;
        }
        g3_train_model_free(&tm);
    }
    for (int r = 0; r < 3; r++) peak = G3_MAX(peak, peak_gflops(0)), peak_bf = G3_MAX(peak_bf, peak_gflops(1));
    printf("training steps (forward + backward + AdamW), T=%d, %d threads, median of %d steps; f32 FMA peak %.1f GFLOP/s"
           " (%s register loop, all threads; the best of the readings taken through the run)", T, omp_get_max_threads(),
           steps, peak, have_avx512() ? "AVX-512" : "AVX2");
    if (peak_bf > 0) printf("; vdpbf16ps peak %.1f GFLOP/s (the bf16 lines' %% of peak)", peak_bf);
    printf("\n");
    for (int i = 0; i < nout; i++) {
        if (i == 0 || strcmp(out[i].head, out[i - 1].head)) printf("\n%s\n", out[i].head);
        char ratio[48] = "";
        if (out[i].torch > 0) snprintf(ratio, sizeof ratio, " (x%.2f PyTorch %s)", out[i].tps / out[i].torch, out[i].bf16 ? "bf16" : "f32");
        double pk = out[i].bf16 && peak_bf > 0 ? peak_bf : peak;
        printf("  %-28s %6.0f tok/s%s  %6.1f GFLOP/s = %3.0f%% of peak  %5.0f ms/step (CPU %5.0f ms)  memory %6.1f MiB"
               " (activations %.1f, optimizer %.1f)\n",
               out[i].what, out[i].tps, ratio, out[i].gf, pk > 0 ? 100 * out[i].gf / pk : 0, out[i].dt * 1e3, out[i].cpu * 1e3,
               out[i].mib, out[i].act, out[i].opt);
    }
    return 0;
}
