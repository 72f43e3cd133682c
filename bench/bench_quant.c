// bench_quant.c: decode's matrix products over Q4_0 (or Q8_0, Q5_0) weights of Gemma 3 1B's
// shapes, or Q4_K / Q6_K of 4B's (whole super-blocks: 1B's 1152 is not), the ggml rows' int8
// kernel against the rows repacked 16 at a time (kernels/cpu/quant_q4x16.h, quant_q8x16.h,
// quant_q5x16.h, quant_q4kx16.h, quant_q6kx16.h), one
// activation row (a decode step), through the CPU backend's linear. LAYERS layers (q, k, v, o,
// gate, up, down) and the 262144 x 1152 output head: far more bytes than the caches hold, so
// each pass reads its weights from memory. Per repetition both variants run back to back
// (interleaved); prints medians [min, max] of GB/s of weight bytes in wall time and per CPU
// second (CLOCK_PROCESS_CPUTIME_ID over the threads: on a loaded machine the wall time
// measures the others, the CPU time what the kernel costs). Usage: bench_quant [reps] [layers]
// [head|nohead|l2] [Q4_0|Q8_0|Q5_0|Q4_K|Q6_K] (default 7, 4, head, Q4_0; `7 1 nohead`: 15 MB of Q4_0, about the
// L3; `7 0 l2`: 166 KB read 40 times, from the L2: the kernels' own speed; Q4_K / Q6_K: 53 / 77
// MB a layer of 4B, never a head (4B's: 369 / 538 MB of random bytes), l2: one 256 x 1024
// matrix, 147 / 215 KB);
// threads from OMP_NUM_THREADS.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

// The repacked copies as the model holds them (model/repack.c's alloc_big): 2 MB aligned and
// asked for in huge pages, so the bench reads the pages a decode step reads.
static void *alloc_huge(size_t n) {
    const size_t h = (size_t)2 << 20;
    void *p = NULL;
    n = (n + h - 1) / h * h;
    if (posix_memalign(&p, h, n)) return NULL;
    (void)madvise(p, n, MADV_HUGEPAGE);
    return p;
}

#include "backend/backend.h"
#include "base/base.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_q4kx16.h"
#include "kernels/cpu/quant_q4x16.h"
#include "kernels/cpu/quant_q5x16.h"
#include "kernels/cpu/quant_q6kx16.h"
#include "kernels/cpu/quant_q8x16.h"
#include "tensor/quant.h"

static double clk(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x853c49e6748fea9bull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 7, layers = argc > 2 ? atoi(argv[2]) : 4;
    if (reps < 1 || reps > 99) reps = 7;
    if (layers < 0 || layers > 26) layers = 4;
    if (g3_qdot_cpu_level() < G3_QDOT_AVX512VNNI) {
        printf("bench_quant: no AVX512-VNNI on this CPU: the repacked kernel is not used here; skipped\n");
        return 0;
    }
    const G3DType type = argc <= 4                  ? G3_Q4_0
                         : !strcmp(argv[4], "Q8_0") ? G3_Q8_0
                         : !strcmp(argv[4], "Q5_0") ? G3_Q5_0
                         : !strcmp(argv[4], "Q4_K") ? G3_Q4_K
                         : !strcmp(argv[4], "Q6_K") ? G3_Q6_K
                                                    : G3_Q4_0;
    const int kq = type == G3_Q4_K || type == G3_Q6_K;  // a K-quant: 4B's shapes (q, k, v, o, gate, up, down), no head
    const int shapes1b[7][2] = {{1024, 1152}, {256, 1152}, {256, 1152}, {1152, 1024}, {6912, 1152}, {6912, 1152}, {1152, 6912}};
    const int shapes4b[7][2] = {{2048, 2560}, {1024, 2560}, {1024, 2560}, {2560, 2048}, {10240, 2560}, {10240, 2560}, {2560, 10240}};
    const int(*shapes)[2] = kq ? shapes4b : shapes1b;
    // nohead, 1 layer: 15 MB, about the L3; l2: one 256 x 1152 matrix (166 KB) 40 times (the kernels' own speed)
    const int head = !kq && !(argc > 3 && (!strcmp(argv[3], "nohead") || !strcmp(argv[3], "l2"))), l2 = argc > 3 && !strcmp(argv[3], "l2");
    if (l2) layers = 0;
    const int nw = l2 ? 40 : 7 * layers + head;
    G3Weight *w = calloc((size_t)nw, sizeof *w);
    int64_t bytes = 0;
    int maxk = 10240, maxn = 262144;
    for (int i = 0; i < nw; i++) {
        if (l2 && i > 0) {
            w[i] = w[0];
            bytes += w[0].row_bytes * w[0].rows;
            continue;
        }
        const int N = l2 ? 256 : i < 7 * layers ? shapes[i % 7][0] : 262144;
        const int K = l2 && kq ? 1024 : i < 7 * layers ? shapes[i % 7][1] : 1152;
        const int64_t rb = g3_type_row_bytes(type, K), bb = g3_type(type)->block_bytes;
        uint8_t *q = g3_malloc_aligned((size_t)(rb * N));
        for (int64_t b = 0; b < rb / bb * N; b++) {  // random bytes, scales (Q4_K: d and dmin) of 0.01 or so
            uint8_t *blk = q + b * bb;
            for (int j = 0; j < bb; j++) blk[j] = (uint8_t)next_u32();
            for (int j = 0; j < (type == G3_Q4_K ? 2 : 1); j++) {
                const uint16_t d = g3_f32_to_f16(0.01f * (float)(next_u32() % 200) / 100.0f - 0.01f);
                memcpy(blk + (type == G3_Q6_K ? bb - 2 : 2 * j), &d, 2);  // Q6_K: d last
            }
        }
        void *p;
        if (type == G3_Q4_0) {
            p = alloc_huge((size_t)g3_q4x16_bytes(N, K / 32));
            g3_q4x16_pack(p, q, rb, N, K / 32);
        } else if (type == G3_Q8_0) {
            p = alloc_huge((size_t)g3_q8x16_bytes(N, K / 32));
            g3_q8x16_pack(p, q, rb, N, K / 32);
        } else if (type == G3_Q5_0) {
            p = alloc_huge((size_t)g3_q5x16_bytes(N, K / 32));
            g3_q5x16_pack(p, q, rb, N, K / 32);
        } else if (type == G3_Q4_K) {
            p = alloc_huge((size_t)g3_q4kx16_bytes(N, K / 32));
            g3_q4kx16_pack(p, q, rb, N, K / 32);
        } else {
            p = alloc_huge((size_t)g3_q6kx16_bytes(N, K / 32));
            g3_q6kx16_pack(p, q, rb, N, K / 32);
        }
        if (!p) {
            fprintf(stderr, "bench_quant: out of memory for the repacked weights\n");
            return 1;
        }
        w[i] = (G3Weight){type, N, K, rb, q, G3_MEM_HOST, p};
        bytes += rb * N;
    }
    float *x = g3_malloc_aligned((size_t)maxk * sizeof *x), *y = g3_malloc_aligned((size_t)maxn * sizeof *y);
    for (int k = 0; k < maxk; k++) x[k] = (float)(next_u32() % 2001) / 1000.0f - 1.0f;
    G3Backend *be = g3_backend_cpu();
    printf("bench_quant: %s decode products, %d layers of %s%s, %.0f MB of weights, %d threads, %d repetitions\n",
           g3_dtype_name(type), layers, kq ? "4B" : "1B", head ? " + the output head" : "", bytes / 1e6, omp_get_max_threads(), reps);
    double wall[2][99], cpu[2][99];
    for (int r = -1; r < reps; r++)  // r = -1: a warm-up pass of each
        for (int v = 0; v < 2; v++) {
            double t0 = clk(CLOCK_MONOTONIC), c0 = clk(CLOCK_PROCESS_CPUTIME_ID);
            for (int i = 0; i < nw; i++) {
                G3Weight wi = w[i];
                if (!v) wi.packed = NULL;
                if (be->linear(be, y, x, &wi, 1, G3_MM_FAST)) { fprintf(stderr, "%s\n", g3_error()); return 1; }
            }
            if (r >= 0) wall[v][r] = bytes / (clk(CLOCK_MONOTONIC) - t0) / 1e9, cpu[v][r] = bytes / (clk(CLOCK_PROCESS_CPUTIME_ID) - c0) / 1e9;
        }
    const char *name[2] = {"ggml rows (quant_dot)", "repacked x16"};
    for (int v = 0; v < 2; v++) {
        qsort(wall[v], (size_t)reps, sizeof(double), cmp_double);
        qsort(cpu[v], (size_t)reps, sizeof(double), cmp_double);
        printf("  %-22s %6.1f GB/s wall [%.1f, %.1f]   %6.1f GB/s per CPU second [%.1f, %.1f]\n", name[v], wall[v][reps / 2], wall[v][0],
               wall[v][reps - 1], cpu[v][reps / 2], cpu[v][0], cpu[v][reps - 1]);
    }
    double la = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &la) != 1) la = -1;
        fclose(f);
    }
    printf("load average %.2f (the machine is shared: read the CPU-time column when it is high)\n", la);
    return 0;
}
