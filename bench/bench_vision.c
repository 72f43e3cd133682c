// bench_vision.c: seconds to turn one 896x896 picture into Gemma 3 4B's 256 soft tokens:
// preprocessing (resize from 1024x768, normalize) and the SigLIP So400m tower + projector
// (27 layers of width 1152 over 4096 patches: 5.45 TFLOP of products, a third of it attention), with a random bf16
// tower built in memory (the weights `gemma3 init --shape 4b` writes; no file needed). Fast
// mode (bf16 products, the CLI's default), and exact mode (f32 products) with G3_BENCH_EXACT=1.
// Median of G3_BENCH_REPEATS (default 3) runs on G3_BENCH_THREADS threads (default 2).
// G3_BENCH_DEVICE=cpu (default), cuda, or both (the GPU first; its first image, which uploads
// the weights, is timed apart). Each result ends with a summary line "vision: DEVICE MODE
// S s/image" (bench/gpu/vision_gpu.sh prints those).
// With AVX512-BF16 it first measures the CPU's bf16 peak (vdpbf16ps on 24 independent
// accumulators, each thread for ~0.4 s of its own CPU time) and gives the tower's CPU-time
// rate as a fraction of it: on a shared machine that ratio means more than the wall time.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "vision/vision.h"

// CPU seconds of the process (all threads): on a shared machine, wall time says how loaded it
// was; CPU time / threads is what the wall time would be with the cores to ourselves.
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double thread_cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// FLOP per second of one thread's CPU time on vdpbf16ps alone (64 FLOP each: 16 lanes x 2
// products x multiply-add), 24 chains deep so that the latency is hidden.
__attribute__((target("avx512f,avx512bf16"), noinline)) static double bf16_peak_thread(long iters) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps(0.001f * i);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80), b = (__m512bh)_mm512_set1_epi32(0x3c003c00);
    const double c0 = thread_cpu_now();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a), "+v"(b));
    }
    const double c = thread_cpu_now() - c0;
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 64.0 * 24 * iters / c;
}

// The best of 5 rounds on every thread at once, per thread's CPU second (the median over threads).
static double bf16_peak(int threads) {
    double best = 0;
    for (int round = 0; round < 5; round++) {
        double r[64] = {0};
        const int nt = threads < 64 ? threads : 64;
#pragma omp parallel num_threads(nt)
        r[omp_get_thread_num()] = bf16_peak_thread(4000000);
        double sum = 0;
        for (int i = 0; i < nt; i++) sum += r[i];
        if (sum / nt > best) best = sum / nt;
    }
    return best;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    const int threads = getenv("G3_BENCH_THREADS") ? atoi(getenv("G3_BENCH_THREADS")) : 2;
    const int reps = getenv("G3_BENCH_REPEATS") ? atoi(getenv("G3_BENCH_REPEATS")) : 3;
    omp_set_num_threads(threads);
    g3_kernels_init(G3_ISA_AVX512BF16);
    G3VisionConfig vc;
    g3_vision_preset(&vc, 2560);
    G3Vision v;
    if (g3_vision_random(&v, &vc, G3_BF16, 1, 0.02f)) { fprintf(stderr, "%s\n", g3_error()); return 1; }
    G3Image im = {1024, 768, malloc(1024 * 768 * 3)};
    G3Rng r;
    g3_rng_seed(&r, 7);
    for (long i = 0; i < 1024L * 768 * 3; i++) im.rgb[i] = (uint8_t)g3_rng_next(&r);
    const int S = vc.image_size, NP = g3_vision_patches(&vc);
    float *px = malloc((size_t)3 * S * S * sizeof(float)), *vis = malloc((size_t)NP * vc.hidden * sizeof(float));
    float *soft = malloc((size_t)vc.tokens * vc.text_hidden * sizeof(float));
    // products of one image: patches, per layer q/k/v/o + fc1/fc2, q.k^T and p.v, projection
    const double D = vc.hidden, FF = vc.inter, K = 3.0 * vc.patch * vc.patch;
    const double flop = 2.0 * NP * (K * D + vc.layers * (4 * D * D + 2 * D * FF + 2.0 * NP * D)) + 2.0 * vc.tokens * D * vc.text_hidden;
    printf("bench_vision: SigLIP So400m/14 @ %d (%lld parameters, bf16), %d threads, %.2f TFLOP per image; median of %d\n", S,
           (long long)v.nparams, threads, flop / 1e12, reps);
    double peak = 0;
    if (g3_kernels_level() >= G3_ISA_AVX512BF16) {
        peak = bf16_peak(threads);
        printf("  bf16 peak (vdpbf16ps, %d threads)     %8.0f GFLOP/s per thread of CPU time, %.0f for %d\n", threads, peak / 1e9,
               threads * peak / 1e9, threads);
    }
    double *t = malloc((size_t)reps * sizeof *t), *cpu = malloc((size_t)reps * sizeof *cpu);
    for (int i = 0; i < reps; i++) {
        double t0 = g3_now();
        g3_vision_pixels(&vc, px, &im);
        t[i] = g3_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, cmp);
    printf("  preprocess 1024x768 -> 896x896        %8.3f s\n", t[reps / 2]);
    fflush(stdout);
    const char *names[2] = {"fast (bf16 products)", "exact (f32 products)"};
    const int modes = getenv("G3_BENCH_EXACT") && atoi(getenv("G3_BENCH_EXACT")) ? 2 : 1;
    const char *dev = getenv("G3_BENCH_DEVICE") ? getenv("G3_BENCH_DEVICE") : "cpu";
    const int both = !strcmp(dev, "both");
    double med[2][2] = {{0}};  // [gpu][mode]
    for (int gpu = both || !strcmp(dev, "cuda") ? 1 : 0; gpu >= (strcmp(dev, "cuda") ? 0 : 1); gpu--) {
        G3Backend *be = gpu ? g3_backend_open("cuda") : g3_backend_cpu();
        if (!be) { fprintf(stderr, "bench_vision: %s\n", g3_error()); return 1; }
        const char *dn = gpu ? "cuda" : "cpu";
        if (gpu) printf("  on %s\n", g3_backend_cuda_device(be));
        for (int mode = 0; mode < modes; mode++) {
            const G3MatmulMode mm = mode ? G3_MM_EXACT : G3_MM_FAST;
            for (int i = -gpu; i < reps; i++) {  // the GPU's run -1 uploads the weights (timed apart)
                double t0 = g3_now(), c0 = cpu_now();
                if (g3_vision_encode(&v, be, mm, px, vis, NULL) || g3_vision_project(&v, g3_backend_cpu(), mm, vis, soft)) {
                    fprintf(stderr, "%s\n", g3_error());
                    return 1;
                }
                if (i < 0) {
                    printf("  %s first image (uploads the weights)     %8.3f s\n", dn, g3_now() - t0);
                    continue;
                }
                t[i] = g3_now() - t0;
                cpu[i] = (cpu_now() - c0) / threads;
            }
            qsort(t, (size_t)reps, sizeof *t, cmp);
            qsort(cpu, (size_t)reps, sizeof *cpu, cmp);
            med[gpu][mode] = t[reps / 2];
            if (gpu)
                printf("  %s tower + projector, %-20s wall %8.3f s (min %.3f, max %.3f; %.0f TFLOP/s)\n", dn, names[mode], t[reps / 2], t[0],
                       t[reps - 1], flop / t[reps / 2] / 1e12);
            else
            {
                printf("  %s tower + projector, %-20s wall %8.2f s (min %.2f, max %.2f); CPU / threads %8.2f s (%.0f GFLOP/s", dn, names[mode],
                       t[reps / 2], t[0], t[reps - 1], cpu[reps / 2], flop / cpu[reps / 2] / 1e9);
                if (peak > 0) printf(", %.0f%% of the bf16 peak", 100.0 * flop / cpu[reps / 2] / (threads * peak));
                printf(")\n");
            }
            if (gpu) printf("vision: cuda %s %.3f s/image (median of %d)\n", mode ? "exact" : "fast", t[reps / 2], reps);
            else printf("vision: cpu %s %.3f s/image (median of %d, %d threads)\n", mode ? "exact" : "fast", t[reps / 2], reps, threads);
            fflush(stdout);
        }
        if (gpu) g3_backend_free(be);
    }
    for (int mode = 0; both && mode < modes; mode++)
        printf("vision: %s GPU vs CPU (%d threads): x%.1f\n", mode ? "exact" : "fast", threads, med[0][mode] / med[1][mode]);
    free(t);
    free(cpu);
    free(px);
    free(vis);
    free(soft);
    free(im.rgb);
    g3_vision_free(&v);
    return 0;
}
