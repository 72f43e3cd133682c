// bench_kernels.c: the matrix kernels on the shapes of Gemma 3 1B (hidden 1152,
// intermediate 6912, 4 q heads / 1 kv head of dim 256, 26 layers, vocab 262144 tied
// output head), bf16 weights, with the threads OpenMP gives (set OMP_NUM_THREADS=2 to
// match the project's benchmark). Prints, as median [min, max] over repetitions:
//   1. memory bandwidth: copy (read + write bytes counted) and read-only, on 1 GB buffers;
//   2. decode GEMV (T = 1) over all 26 layers + the output head, ~2 GB of weights per
//      token: GB/s and % of the copy bandwidth, exact and fast mode;
//   3. prefill GEMM (T = 512) over the layer shapes: GFLOP/s, % of the measured peak of
//      vdpbf16ps (fast) or f32 FMA (exact) from a register-only loop, and the prefill
//      tokens/s this projects for the 1B model's matrix work (attention excluded);
//   4. sgemm on a training shape, GFLOP/s against the f32 FMA peak; and g3_gemm_bf16 against
//      the bf16 one.
// Weights are random and filled once. Timings on a shared machine are noisy: look at the
// medians. Usage: bench_kernels [reps] (default 7) [bandwidth] (only part 1: for scripts that
// put a bandwidth beside a peer's figures, bench/quant_peers.sh).
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/base.h"
#include "kernels/kernels.h"
#include "peak.h"

#define DIM 1152
#define HID 6912
#define QD 1024
#define KVD 256
#define LAYERS 26
#define VOCAB 262144
#define PREFILL_T 512

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct { double med, min, max; } Stats;
static Stats stats(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return (Stats){v[n / 2], v[0], v[n - 1]};
}

// ---- 1. bandwidth ----

// One 2-thread copy of n floats; returns GB/s counting read + write bytes.
static double copy_once(float *dst, const float *src, size_t n) {
    double t0 = now();
#pragma omp parallel
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t chunk = n / nt;
        memcpy(dst + id * chunk, src + id * chunk, (id == nt - 1 ? n - id * chunk : chunk) * 4);
    }
    return 2.0 * n * 4 / (now() - t0) / 1e9;
}

static float *bw_src, *bw_dst;
static size_t bw_n;

static void bench_bandwidth(int reps, double *copy_gbs) {
    size_t bytes = (size_t)1 << 30, n = bytes / 4;
    float *src = g3_malloc_aligned(bytes), *dst = g3_malloc_aligned(bytes);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) src[i] = (float)(i & 1023), dst[i] = 0;
    double tc[64], tr[64], sink = 0;
    for (int r = 0; r < reps; r++) {
        tc[r] = copy_once(dst, src, n);
        double t0 = now();
#pragma omp parallel reduction(+ : sink)
        {
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            size_t chunk = n / nt;
            sink += read_sum(src + id * chunk, id == nt - 1 ? n - id * chunk : chunk);
        }
        tr[r] = (double)bytes / (now() - t0) / 1e9;
    }
    Stats c = stats(tc, reps), rd = stats(tr, reps);
    printf("bandwidth (%d threads, 1 GB buffers):\n", omp_get_max_threads());
    printf("  copy  %6.1f GB/s  [%.1f, %.1f]   (read + write bytes)\n", c.med, c.min, c.max);
    printf("  read  %6.1f GB/s  [%.1f, %.1f]   (sink %g)\n", rd.med, rd.min, rd.max, sink > 0 ? 0.0 : 1.0);
    *copy_gbs = c.med;
    bw_src = src, bw_dst = dst, bw_n = n;  // kept: decode measures the copy again beside each token
}

// ---- peak: register-only loops ----

static Stats peak(int bf16, int reps) {
    double v[64];
    for (int r = 0; r < reps; r++) v[r] = peak_gflops(bf16);
    return stats(v, reps);
}

// ---- the model's weights ----

typedef struct { int N, K; uint16_t *w; } Mat;
static Mat mats[LAYERS * 7 + 1];
static int nmats;

static uint16_t *random_bf16(size_t n) {
    uint16_t *w = g3_malloc_aligned(n * 2);
#pragma omp parallel
    {
        unsigned long long s = 0x9E3779B97F4A7C15ull * (omp_get_thread_num() + 1) + n;
#pragma omp for schedule(static)
        for (size_t i = 0; i < n; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            float f = ((float)(s >> 40) / (1 << 24) - 0.5f) * 0.1f;
            w[i] = g3_f32_to_bf16(f);
        }
    }
    return w;
}

static void make_model(void) {
    static const int shapes[7][2] = {{QD, DIM}, {KVD, DIM}, {KVD, DIM}, {DIM, QD}, {HID, DIM}, {HID, DIM}, {DIM, HID}};
    for (int l = 0; l < LAYERS; l++)
        for (int i = 0; i < 7; i++) {
            Mat *m = &mats[nmats++];
            m->N = shapes[i][0], m->K = shapes[i][1];
            m->w = random_bf16((size_t)m->N * m->K);
        }
    Mat *h = &mats[nmats++];
    h->N = VOCAB, h->K = DIM, h->w = random_bf16((size_t)VOCAB * DIM);
}

// ---- 2. decode ----

static void bench_decode(int reps, double copy_gbs) {
    float *x = g3_malloc_aligned(HID * 4), *y = g3_malloc_aligned((size_t)VOCAB * 4);
    for (int i = 0; i < HID; i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    double bytes = 0;
    for (int i = 0; i < nmats; i++) bytes += 2.0 * mats[i].N * mats[i].K;
    printf("decode GEMV, T=1, %d matrices, %.2f GB of bf16 weights per token:\n", nmats, bytes / 1e9);
    printf("  (%% of copy: each token is timed right after a copy measurement, the ratio taken per\n"
           "   repetition, so that the load others put on the machine affects both alike)\n");
    for (int fast = 0; fast <= 1; fast++) {
        double v[64], head[64], ratio[64];
        for (int r = 0; r < reps + 1; r++) {
            double cp = copy_once(bw_dst, bw_src, bw_n);
            double t0 = now();
            for (int i = 0; i < nmats - 1; i++) g3_matmul(y, x, mats[i].w, G3_BF16, 1, mats[i].K, mats[i].N, fast);
            double t1 = now();
            g3_matmul(y, x, mats[nmats - 1].w, G3_BF16, 1, DIM, VOCAB, fast);
            double t2 = now();
            if (r == 0) continue;  // warm-up: page faults, thread start
            v[r - 1] = bytes / (t2 - t0) / 1e9;
            head[r - 1] = 2.0 * VOCAB * DIM / (t2 - t1) / 1e9;
            ratio[r - 1] = 100 * v[r - 1] / cp;
        }
        Stats s = stats(v, reps), h = stats(head, reps), q = stats(ratio, reps);
        printf("  %s: %5.1f GB/s [%.1f, %.1f], %.1f ms/token; %3.0f%% [%.0f, %.0f] of copy bandwidth "
               "(%.0f%% of the first median); output head alone %.1f GB/s\n",
               fast ? "fast " : "exact", s.med, s.min, s.max, bytes / s.med / 1e6, q.med, q.min, q.max,
               100 * s.med / copy_gbs, h.med);
    }
    g3_free_aligned(x), g3_free_aligned(y);
}

// ---- 3. prefill ----

static void bench_prefill(int reps, double peak_bf16, double peak_f32) {
    const int T = PREFILL_T, per_rep = 2;  // layers timed per repetition, rotating through the 26
    float *x = g3_malloc_aligned((size_t)T * HID * 4), *y = g3_malloc_aligned((size_t)T * HID * 4);
    for (size_t i = 0; i < (size_t)T * HID; i++) x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    double layer_flops = 0;
    for (int i = 0; i < 7; i++) layer_flops += 2.0 * T * mats[i].N * mats[i].K;
    printf("prefill GEMM, T=%d, the 7 matrices of a layer (%.1f GFLOP per layer, %.0f GFLOP for 26):\n", T,
           layer_flops / 1e9, 26 * layer_flops / 1e9);
    for (int fast = 1; fast >= 0; fast--) {
        double v[64];
        int layer = 0, n = fast ? reps : (reps < 5 ? reps : 5);
        for (int r = 0; r < n + 1; r++) {
            double t0 = now();
            for (int l = 0; l < per_rep; l++, layer = (layer + 1) % LAYERS)
                for (int i = 0; i < 7; i++) {
                    Mat *m = &mats[layer * 7 + i];
                    g3_matmul(y, x, m->w, G3_BF16, T, m->K, m->N, fast);
                }
            if (r > 0) v[r - 1] = per_rep * layer_flops / (now() - t0) / 1e9;
        }
        Stats s = stats(v, n);
        double pk = fast ? peak_bf16 : peak_f32;
        printf("  %s: %6.1f GFLOP/s [%.1f, %.1f] = %3.0f%% of %s peak; projected 1B prefill %.0f tok/s (matrix work only)\n",
               fast ? "fast " : "exact", s.med, s.min, s.max, 100 * s.med / pk, fast && peak_bf16 != peak_f32 ? "vdpbf16ps" : "f32 FMA",
               T / (LAYERS * layer_flops / (s.med * 1e9)));
        // Per-matrix breakdown, fast mode only.
        if (fast) {
            static const char *names[7] = {"q", "k", "v", "o", "gate", "up", "down"};
            printf("    per matrix:");
            for (int i = 0; i < 7; i++) {
                Mat *m = &mats[i];
                double tv[16];
                for (int r = 0; r < 3; r++) {
                    double t0 = now();
                    g3_matmul(y, x, m->w, G3_BF16, T, m->K, m->N, fast);
                    tv[r] = 2.0 * T * m->N * m->K / (now() - t0) / 1e9;
                }
                printf(" %s %.0f", names[i], stats(tv, 3).med);
            }
            printf(" GFLOP/s\n");
        }
    }
    g3_free_aligned(x), g3_free_aligned(y);
}

// ---- 4. sgemm ----

// bf16: g3_gemm_bf16 (training's bf16 mode) against the vdpbf16ps peak (the f32 one where
// the CPU has no bf16 dot product, as the products then run on f32 FMA).
static void bench_sgemm(int reps, double peak, int bf16) {
    static const int shapes[][3] = {{4096, 1024, 1024}, {4096, 512, 2048}, {512, 512, 256}};
    printf("%s (training / attention shapes):\n", bf16 ? "gemm_bf16" : "sgemm");
    for (int s = 0; s < 3; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = g3_malloc_aligned((size_t)M * K * 4), *B = g3_malloc_aligned((size_t)K * N * 4),
              *C = g3_malloc_aligned((size_t)M * N * 4);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)(i % 13) * 0.01f;
        for (size_t i = 0; i < (size_t)K * N; i++) B[i] = (float)(i % 7) * 0.01f;
        printf("  M=%d N=%d K=%d:", M, N, K);
        for (int ta = 0; ta <= 1; ta++)
            for (int tb = 0; tb <= 1; tb++) {
                double v[64];
                for (int r = 0; r < reps + 1; r++) {
                    double t0 = now();
                    if (bf16) g3_gemm_bf16(ta, tb, M, N, K, A, B, C, 0);
                    else g3_sgemm(ta, tb, M, N, K, A, B, C, 0);
                    if (r > 0) v[r - 1] = 2.0 * M * N * K / (now() - t0) / 1e9;
                }
                Stats st = stats(v, reps);
                printf("  %s%s %.0f (%.0f%%)", ta ? "T" : "N", tb ? "T" : "N", st.med, 100 * st.med / peak);
            }
        printf(" GFLOP/s (%% of %s peak)\n", bf16 ? "the bf16 products'" : "f32 FMA");
        g3_free_aligned(A), g3_free_aligned(B), g3_free_aligned(C);
    }
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7;
    if (reps < 1) reps = 1;
    if (reps > 60) reps = 60;
    G3Isa isa = g3_kernels_init(G3_ISA_AVX512BF16);
    printf("kernels: %s, %d threads, %d repetitions (median [min, max])\n", g3_isa_name(isa), omp_get_max_threads(), reps);
    if (isa < G3_ISA_AVX2) {
        printf("this benchmark needs AVX2 + FMA for its peak loops; skipped\n");
        return 0;
    }
    double copy_gbs;
    bench_bandwidth(reps, &copy_gbs);
    if (argc > 2 && !strcmp(argv[2], "bandwidth")) return 0;
    // Peak is the best repetition: others' load on the machine can only lower it.
    Stats pb = peak(1, reps), pf = peak(0, reps);
    printf("peak (register-only loops, best of %d): vdpbf16ps %.0f GFLOP/s (median %.0f), f32 FMA (%s) %.0f GFLOP/s (median %.0f)\n",
           reps, pb.max, pb.med, isa >= G3_ISA_AVX512 ? "zmm" : "ymm", pf.max, pf.med);
    if (pb.max == 0) printf("  (no AVX512-BF16: the fast mode's products run on f32 FMA, so that is its peak too)\n");
    fflush(stdout);
    make_model();
    bench_decode(reps, copy_gbs);
    fflush(stdout);
    bench_prefill(reps, pb.max > 0 ? pb.max : pf.max, pf.max);
    fflush(stdout);
    bench_sgemm(reps < 5 ? reps : 5, pf.max, 0);
    fflush(stdout);
    bench_sgemm(reps < 5 ? reps : 5, pb.max > 0 ? pb.max : pf.max, 1);
    return 0;
}
