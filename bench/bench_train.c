// bench_train.c: training throughput on the CPU: tokens/s and achieved GFLOP/s of full
// training steps (forward + backward + AdamW) for a small Gemma 3, against a measured f32 FMA
// peak of this machine. FLOPs per token: 6 * parameters (the tied embedding counts once, as the
// output projection) + 12 * layers * heads * head_dim * T for attention (the PaLM convention,
// which counts the causal half too). Usage: bench_train [B T steps]
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/train.h"

__attribute__((target("avx2,fma"))) static double fma_peak_avx2(double secs) {
    double flops = 0, t0 = g3_now();
#pragma omp parallel reduction(+ : flops)
    {
        __m256 a[10], b = _mm256_set1_ps(0.999f), c = _mm256_set1_ps(1e-3f);
        for (int i = 0; i < 10; i++) a[i] = _mm256_set1_ps((float)i);
        long it = 0;
        while (g3_now() - t0 < secs) {
            for (int r = 0; r < 1000; r++)
                for (int i = 0; i < 10; i++) a[i] = _mm256_fmadd_ps(a[i], b, c);
            it += 1000;
        }
        float s[8];
        __m256 acc = a[0];
        for (int i = 1; i < 10; i++) acc = _mm256_add_ps(acc, a[i]);
        _mm256_storeu_ps(s, acc);
        if (s[0] == 12345.f) printf(" ");  // keep the loop alive
        flops = (double)it * 10 * 8 * 2;
    }
    return flops / (g3_now() - t0) / 1e9;
}

static double run(G3TrainModel *tm, int B, int T, int steps, int recompute, int64_t *act) {
    G3TrainCtx *ctx = g3_train_ctx_new(tm, B, T, recompute, act);
    if (!ctx) { fprintf(stderr, "%s\n", g3_error()); exit(1); }
    G3AdamWConfig oc = g3_adamw_defaults();
    G3AdamW o;
    if (g3_adamw_init_model(&o, &oc, tm, 0)) exit(1);
    int V = tm->m.cfg.vocab;
    enum { N = 1 << 16 };
    static uint32_t tok[N];
    for (int i = 0; i < N; i++) tok[i] = (uint32_t)((i * 2654435761u) % (unsigned)V);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)(B * T)), *tg = malloc(sizeof(int32_t) * (size_t)(B * T));
    double t0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) t0 = g3_now();  // step 0 warms up (page faults, caches)
        memset(tm->grads, 0, sizeof(float) * (size_t)tm->n);
        g3_data_batch(tok, N, B, T, 1, s, 0, in, tg);
        g3_train_forward_backward(tm, ctx, in, tg, 1.0f);
        g3_adamw_step(&o, tm->params, tm->grads, 1e-4, g3_clip_scale(g3_grad_norm(tm->grads, tm->n), 1.0));
    }
    double dt = (g3_now() - t0) / steps;
    free(in); free(tg);
    g3_adamw_free(&o);
    g3_train_ctx_free(ctx);
    return dt;
}

int main(int argc, char **argv) {
    int B = argc > 1 ? atoi(argv[1]) : 4, T = argc > 2 ? atoi(argv[2]) : 128, steps = argc > 3 ? atoi(argv[3]) : 5;
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 8192; c.hidden = 256; c.inter = 1024; c.layers = 4; c.heads = 4; c.kv_heads = 1; c.head_dim = 64;
    c.query_pre_attn_scalar = 64; c.sliding_window = 64;
    for (int i = 0; i < c.layers; i++) c.sliding[i] = (i + 1) % 4 != 0;
    G3TrainModel tm;
    if (g3_train_model_new(&tm, &c)) { fprintf(stderr, "%s\n", g3_error()); return 1; }
    g3_train_model_init_random(&tm, 1, 0.02f);
    double peak = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? fma_peak_avx2(0.5) : 0;
    double fpt = 6.0 * (double)tm.n + 12.0 * c.layers * c.heads * c.head_dim * T;
    printf("train step: %lld params (vocab %d, hidden %d, %d layers), B=%d T=%d, %d threads; f32 FMA peak %.1f GFLOP/s\n",
           (long long)tm.n, c.vocab, c.hidden, c.layers, B, T, omp_get_max_threads(), peak);
    for (int rc = 0; rc < 2; rc++) {
        int64_t act;
        double dt = run(&tm, B, T, steps, rc, &act);
        double tps = B * T / dt, gf = fpt * B * T / dt / 1e9;
        printf("  %-26s %8.0f tokens/s  %6.1f GFLOP/s  %5.1f%% of peak  (%.0f ms/step, activations %.1f MiB)\n",
               rc ? "activation checkpointing:" : "all activations kept:", tps, gf, peak > 0 ? 100 * gf / peak : 0, dt * 1e3,
               act / 1048576.0);
    }
    g3_train_model_free(&tm);
    return 0;
}
