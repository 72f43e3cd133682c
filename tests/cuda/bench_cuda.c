// bench_cuda.c: speeds of the CUDA kernels on the GPU machine (make CUDA=1 cuda-bench), above
// all the decode GEMV against the card's own copy bandwidth measured in the same run: a
// device-to-device cudaMemcpy of the same bytes (counted read + written, as the card's copy
// bandwidth is quoted). Shapes are Gemma 3 1B's in bf16 (hidden 1152, 4 query heads and 1 kv
// head of 256, MLP 6912, tied 262,144-row embedding). Every matrix is timed over a ring of
// distinct buffers larger than the L2 cache (26 of them: one per layer, as a decode step
// reads them), so the numbers are memory's, not the cache's. Timed with CUDA events around
// a whole ring, median of 9 rounds after a warm-up round.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_test.h"
#include "backend/backend.h"
#include "model/forward.h"
#include "model/model.h"
#include "sampler/sampler.h"

enum { ROUNDS = 9 };

typedef int (*OpFn)(void *ctx, int i);

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Median milliseconds of one op (fn over instances 0 .. n-1, averaged per instance).
static double time_ms(G3Cuda *cu, int n, OpFn fn, void *ctx) {
    cudaStream_t st = (cudaStream_t)g3cu_stream(cu);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < n; i++)
        if (fn(ctx, i)) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
    double t[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        cudaEventRecord(e0, st);
        for (int i = 0; i < n; i++) fn(ctx, i);
        cudaEventRecord(e1, st);
        if (g3cu_sync(cu)) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        t[r] = ms / n;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    qsort(t, ROUNDS, sizeof t[0], cmp_d);
    return t[ROUNDS / 2];
}

// A ring of nbuf weight matrices [N, K] bf16 (random), inputs x [16, K], outputs y [16, N].
typedef struct {
    G3Cuda *cu;
    int N, K, T, nbuf;
    void *w[32], *dst[32];
    float *x, *y;
    G3CuMode mode;
} Ring;

static void ring_new(Ring *r, G3Cuda *cu, int N, int K, int nbuf) {
    memset(r, 0, sizeof *r);
    r->cu = cu; r->N = N; r->K = K; r->nbuf = nbuf;
    size_t bytes = (size_t)N * K * 2;
    uint16_t *h = malloc(bytes);
    for (size_t i = 0; i < (size_t)N * K; i++) h[i] = g3_f32_to_bf16(frand() * 0.05f);
    for (int i = 0; i < nbuf; i++) {
        r->w[i] = dev_from(cu, h, bytes);
        r->dst[i] = dev_from(cu, NULL, bytes);
    }
    free(h);
    float *hx = malloc(sizeof(float) * 512 * K);
    fill(hx, 512L * K, 1.0f);
    r->x = dev_from(cu, hx, sizeof(float) * 512 * K);
    r->y = dev_from(cu, NULL, sizeof(float) * 512 * N);
    free(hx);
}
static void ring_free(Ring *r) {
    for (int i = 0; i < r->nbuf; i++) { g3cu_free(r->cu, r->w[i]); g3cu_free(r->cu, r->dst[i]); }
    g3cu_free(r->cu, r->x);
    g3cu_free(r->cu, r->y);
}

static int op_copy(void *c, int i) {
    Ring *r = c;
    return g3cu_copy(r->cu, r->dst[i], r->w[i], (size_t)r->N * r->K * 2);
}
static int op_stream(void *c, int i) {
    Ring *r = c;
    return g3cu_linear_stream(r->cu, r->y, r->x, r->w[i], G3_BF16, r->T, r->K, r->N);
}
static int op_blas(void *c, int i) {
    Ring *r = c;
    return g3cu_linear_blas(r->cu, r->y, r->x, r->w[i], G3_BF16, r->T, r->K, r->N, r->mode);
}

// Attention of the 1B shape (4 heads on 1 kv head of 256): one decode row over a global
// layer's 32K-key cache and a sliding layer's ring of 512, and a 512-token prefill.
typedef struct {
    G3Cuda *cu;
    float *q, *k, *v, *kc, *vc, *out;
    G3CuRow *meta;
    G3CuAttn a;
    int keys, n;
} Att;
static int op_decode(void *c, int i) {
    Att *t = c;
    return g3cu_attn_decode(t->cu, t->out, t->q, t->k, t->v, t->kc, t->vc, t->meta, 1, t->keys, &t->a);
}
static int op_prefill(void *c, int i) {
    Att *t = c;
    return g3cu_attn_prefill(t->cu, t->out, t->q, t->k, t->v, t->kc, t->vc, 0, t->n, 0, 0, &t->a);
}
static int op_prefill_mma(void *c, int i) {
    Att *t = c;
    return g3cu_attn_prefill_mma(t->cu, t->out, NULL, t->q, t->k, t->v, t->kc, t->vc, 0, t->n, 0, 0, &t->a);
}
static void bench_attention(G3Cuda *cu) {
    const int ctx = 32768, hd = 256, P = 8192;
    Att t = {cu};
    float *h = malloc(sizeof(float) * ctx * hd);
    fill(h, (long)ctx * hd, 1.0f);
    t.kc = dev_from(cu, h, sizeof(float) * ctx * hd);
    t.vc = dev_from(cu, h, sizeof(float) * ctx * hd);
    t.q = dev_from(cu, h, sizeof(float) * P * 4 * hd);
    t.k = dev_from(cu, h, sizeof(float) * P * hd);
    t.v = dev_from(cu, h, sizeof(float) * P * hd);
    t.out = dev_from(cu, NULL, sizeof(float) * P * 4 * hd);
    printf("\nattention, 1B shape (4 heads, 1 kv head of 256), f32 cache\n");
    const int lens[] = {ctx, 4096, P};
    for (int k = 0; k < 3; k++) {
        const int pos = lens[k] - 1;
        G3CuRow m = {0, pos, 0, 1};
        t.meta = dev_from(cu, &m, sizeof m);
        t.a = (G3CuAttn){4, 1, hd, k == 2 ? P : ctx, k == 2 ? P : 0, 1.0f / 16, 0};
        t.keys = lens[k];
        double ms = time_ms(cu, 20, op_decode, &t), mb = 2.0 * lens[k] * hd * 4 / 1e6;
        printf("decode row over %5d keys%s: %7.1f us, %6.0f GB/s of cache read\n", lens[k], k == 2 ? " (sliding ring)" : "        ",
               ms * 1e3, mb / ms);
        g3cu_free(cu, t.meta);
    }
    const int ns[] = {512, 2048, 8192};
    for (int k = 0; k < 3; k++) {
        t.a = (G3CuAttn){4, 1, hd, ctx, 0, 1.0f / 16, 0};
        t.n = ns[k];
        const double fl = 4.0 * 4 * hd * (double)t.n * (t.n + 1) / 2;
        const double ms = time_ms(cu, 5, op_prefill, &t), mt = time_ms(cu, 5, op_prefill_mma, &t);
        printf("prefill of %4d tokens (causal): f32 CUDA cores %8.1f us, %5.1f TFLOP/s; bf16 tensor cores %8.1f us, %5.1f "
               "TFLOP/s (x%.1f)\n",
               t.n, ms * 1e3, fl / ms / 1e9, mt * 1e3, fl / mt / 1e9, ms / mt);
    }
    t.a = (G3CuAttn){4, 1, hd, 512, 512, 1.0f / 16, 0};
    t.n = 8192;
    {
        const double ms = time_ms(cu, 5, op_prefill, &t), mt = time_ms(cu, 5, op_prefill_mma, &t);
        printf("prefill of 8192 tokens, sliding window 512: f32 %8.1f us; tensor cores %8.1f us (x%.1f)\n", ms * 1e3, mt * 1e3,
               ms / mt);
    }
    g3cu_free(cu, t.kc); g3cu_free(cu, t.vc); g3cu_free(cu, t.q); g3cu_free(cu, t.k); g3cu_free(cu, t.v); g3cu_free(cu, t.out);
    free(h);
}

typedef struct {
    const char *name;
    int N, K, per_layer;  // per_layer: how many of it a 1B decode step reads per layer (0: once)
} Shape;

// The linear layers of a whole 1B decode step (26 x (qkv, o, gate+up, down) + head, each
// layer its own weights) captured in one CUDA graph and replayed: launch gaps as small as
// they get without fusing kernels.
static void bench_graph(G3Cuda *cu, const Shape *shapes) {
    enum { L = 26 };
    const int idx[4] = {0, 1, 2, 4};
    void *w[L][4];
    uint16_t *h = malloc((size_t)13824 * 1152 * 2);
    for (size_t i = 0; i < (size_t)13824 * 1152; i++) h[i] = g3_f32_to_bf16(frand() * 0.05f);
    double bytes = 0;
    for (int l = 0; l < L; l++)
        for (int j = 0; j < 4; j++) {
            size_t b = (size_t)shapes[idx[j]].N * shapes[idx[j]].K * 2;
            w[l][j] = dev_from(cu, h, b);
            bytes += b;
        }
    free(h);
    Ring head;
    ring_new(&head, cu, 262144, 1152, 1);
    bytes += 262144.0 * 1152 * 2;
    float *x = dev_from(cu, NULL, sizeof(float) * 13824), *y = dev_from(cu, NULL, sizeof(float) * 262144);
    g3cu_memset(cu, x, 0, sizeof(float) * 13824);
    cudaStream_t st = (cudaStream_t)g3cu_stream(cu);
    cudaGraph_t g;
    cudaGraphExec_t ge;
    if (cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) != cudaSuccess) { puts("graph capture failed"); return; }
    for (int l = 0; l < L; l++)
        for (int j = 0; j < 4; j++) g3cu_linear(cu, y, x, w[l][j], G3_BF16, 1, shapes[idx[j]].K, shapes[idx[j]].N, G3CU_FAST);
    g3cu_linear(cu, y, x, head.w[0], G3_BF16, 1, 1152, 262144, G3CU_FAST);
    if (cudaStreamEndCapture(st, &g) != cudaSuccess || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
        printf("graph capture failed: %s\n", g3_error());
        return;
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[ROUNDS];
    cudaGraphLaunch(ge, st);
    for (int r = 0; r < ROUNDS; r++) {
        cudaEventRecord(e0, st);
        for (int k = 0; k < 10; k++) cudaGraphLaunch(ge, st);
        cudaEventRecord(e1, st);
        g3cu_sync(cu);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        t[r] = ms / 10;
    }
    qsort(t, ROUNDS, sizeof t[0], cmp_d);
    printf("\n1B decode step's GEMVs in one CUDA graph (%d launches, %.0f MB): %.3f ms = %.0f GB/s: %.0f steps/s\n", L * 4 + 1,
           bytes / 1e6, t[ROUNDS / 2], bytes / 1e6 / t[ROUNDS / 2], 1e3 / t[ROUNDS / 2]);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    for (int l = 0; l < L; l++)
        for (int j = 0; j < 4; j++) g3cu_free(cu, w[l][j]);
    ring_free(&head);
    g3cu_free(cu, x);
    g3cu_free(cu, y);
}

// A whole model's prefill (`bench_cuda --model DIR`): one sequence of T tokens from position
// 0 through g3_forward (last row's logits), fast mode (and exact with G3_BENCH_EXACT=1), warm (two runs first),
// median of 7; the time includes the host's part of a call (RoPE tables, uploads).
static void bench_model_prefill(const char *dir) {
    G3Model m;
    if (g3_model_load(&m, dir)) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
    G3Backend *gpu = g3_backend_open("cuda");
    if (!gpu) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
    printf("\nmodel prefill, %s (one sequence from position 0, warm, median of 7)\n", dir);
    const int Ts[] = {512, 2048, 8192};
    const int modes = getenv("G3_BENCH_EXACT") ? 2 : 1;  // the exact mode too
    for (int fast = 1; fast > 1 - modes; fast--)
        for (int k = 0; k < 3; k++) {
            const int T = Ts[k];
            G3State *s = g3_state_new_on(gpu, &m, 1, T, T, fast, NULL);
            if (!s) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
            int32_t *ids = malloc(sizeof(int32_t) * T);
            for (int i = 0; i < T; i++) ids[i] = 2 + (int32_t)((i * 7919u) % (unsigned)(m.cfg.vocab - 2));
            double t[9];
            for (int r = 0; r < 9; r++) {
                g3_state_reset(s, 0);
                const G3Segment seg = {.seq = 0, .pos0 = 0, .n = T};
                const double t0 = g3_now();
                if (g3_forward(s, ids, &seg, 1, G3_LOGITS_LAST)) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
                t[r] = g3_now() - t0;
            }
            qsort(t + 2, 7, sizeof(double), cmp_d);
            printf("%s T = %5d: %8.2f ms, %8.0f tok/s (min %.2f, max %.2f ms)\n", fast ? "fast " : "exact", T, t[5] * 1e3,
                   T / t[5], t[2] * 1e3, t[8] * 1e3);
            free(ids);
            g3_state_free(s);
        }
    g3_backend_free(gpu);
    g3_model_free(&m);
}

// ---- the sampler's step (--sampler): what the engine waits for per decode step, host clock ----

// Median microseconds of fn over 201 calls, each complete on return (the ops below synchronise).
static double wall_us(int (*fn)(void *), void *ctx) {
    enum { N = 201 };
    static double t[N];
    for (int i = 0; i < 10; i++) fn(ctx);
    for (int i = 0; i < N; i++) {
        double t0 = g3_now();
        if (fn(ctx)) { fprintf(stderr, "bench: %s\n", g3_error()); exit(1); }
        t[i] = (g3_now() - t0) * 1e6;
    }
    qsort(t, N, sizeof t[0], cmp_d);
    return t[N / 2];
}

typedef struct {
    G3Cuda *cu;
    G3CuSampler *smp;
    G3Sampler *host;
    float *x, *h;  // device logits [R][V], page-locked host copy
    int32_t *idd, ids[64 * 256], bad[64], win[64 * 64];
    float vals[64 * 256];
    G3CuSampleRow rows[64];
    int R, V, nwin;
} SmpBench;

static int op_argmax_back(void *c) {
    SmpBench *b = c;
    int32_t id[64];
    return g3cu_argmax(b->cu, b->idd, b->x, b->R, b->V) || g3cu_download(b->cu, id, b->idd, (size_t)b->R * sizeof(int32_t));
}
static int op_topk(void *c) {
    SmpBench *b = c;
    return g3cu_sample_top_k(b->smp, b->x, b->R, b->V, b->rows, b->win, b->nwin, 64, b->ids, b->vals, b->bad);
}
static int op_host_path(void *c) {  // the logits back, then the CPU sampler on each row
    SmpBench *b = c;
    if (g3cu_download(b->cu, b->h, b->x, (size_t)b->R * b->V * sizeof(float))) return -1;
    for (int r = 0; r < b->R; r++)
        if (g3_sampler_sample(b->host, b->h + (long)r * b->V, NULL, 0) < 0) return -1;
    return 0;
}

static void bench_sampler(G3Cuda *cu) {
    SmpBench b = {.cu = cu, .V = 262144};
    b.smp = g3cu_sampler_new(cu);
    G3SamplerConfig c = g3_sampler_defaults();  // T 1, top-k 64, top-p 0.95
    b.host = g3_sampler_new(&c, b.V);
    float *xh = malloc((size_t)64 * b.V * sizeof(float));
    for (long i = 0; i < 64L * b.V; i++) xh[i] = frand() * 4.0f;
    b.x = dev_from(cu, xh, (size_t)64 * b.V * sizeof(float));
    b.idd = dev_from(cu, NULL, 64 * sizeof(int32_t));
    if (!b.smp || !b.host || cudaMallocHost((void **)&b.h, (size_t)64 * b.V * sizeof(float)) != cudaSuccess) {
        fprintf(stderr, "bench: sampler set-up failed\n");
        exit(1);
    }
    for (int i = 0; i < 64 * 64; i++) b.win[i] = (int32_t)((i * 7919) % 5000);
    printf("\nsampler step, V = 262,144, microseconds per call on the host clock (median of 201)\n");
    printf("%-6s %14s %22s %22s %26s\n", "rows", "argmax + ids", "top-64 (sample_top_k)", "+ penalties (64 each)", "logits back + CPU sampler");
    const int Rs[] = {1, 16, 64};
    for (int k = 0; k < 3; k++) {
        b.R = Rs[k];
        for (int r = 0; r < b.R; r++) b.rows[r] = (G3CuSampleRow){64, 0, 0, 1.0f, 0.0f, 0.0f};
        b.nwin = 0;
        double ta = wall_us(op_argmax_back, &b), tk = wall_us(op_topk, &b);
        for (int r = 0; r < b.R; r++) b.rows[r] = (G3CuSampleRow){64, r * 64, 64, 1.1f, 0.2f, 0.1f};
        b.nwin = b.R * 64;
        double tp = wall_us(op_topk, &b), th = wall_us(op_host_path, &b);
        printf("%-6d %14.1f %22.1f %22.1f %26.1f\n", b.R, ta, tk, tp, th);
    }
    g3cu_free(cu, b.x);
    g3cu_free(cu, b.idd);
    cudaFreeHost(b.h);
    g3cu_sampler_free(b.smp);
    g3_sampler_free(b.host);
    free(xh);
}

int main(int argc, char **argv) {
    G3Cuda *cu = cuda_test_start("bench_cuda");
    if (!cu) return 0;
    if (argc == 2 && !strcmp(argv[1], "--sampler")) {
        bench_sampler(cu);
        g3cu_delete(cu);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--model")) {
        bench_model_prefill(argv[2]);
        g3cu_delete(cu);
        return 0;
    }
    size_t fr, tot;
    g3cu_mem_info(cu, &fr, &tot);
    printf("device memory: %.1f GiB free of %.1f GiB\n\n", fr / 1073741824.0, tot / 1073741824.0);
    const int L = 26;
    const Shape shapes[] = {
        {"qkv (fused)", 1536, 1152, 1}, {"o", 1152, 1024, 1},       {"gate+up (fused)", 13824, 1152, 1},
        {"gate", 6912, 1152, 0},        {"down", 1152, 6912, 1},    {"head (tied)", 262144, 1152, 0},
    };
    const int ns = sizeof shapes / sizeof shapes[0];
    double t1[8] = {0}, copy_bw_max = 0;
    printf("decode GEMV, bf16 weights, T = 1 (GB/s = weight bytes / time; copy = 2 x bytes / time)\n");
    printf("%-16s %9s %9s %10s %10s %8s %10s\n", "matrix [N,K]", "MB", "us", "GEMV GB/s", "copy GB/s", "of copy", "cuBLAS GB/s");
    for (int s = 0; s < ns; s++) {
        Ring r;
        const int nbuf = shapes[s].N == 262144 ? 1 : L;
        ring_new(&r, cu, shapes[s].N, shapes[s].K, nbuf);
        const double mb = (double)shapes[s].N * shapes[s].K * 2 / 1e6;
        const double tc = time_ms(cu, nbuf, op_copy, &r);
        r.T = 1;
        const double tg = time_ms(cu, nbuf, op_stream, &r);
        r.mode = G3CU_FAST;
        const double tb = time_ms(cu, nbuf, op_blas, &r);
        const double cbw = 2 * mb / 1e3 / tc, gbw = mb / 1e3 / tg;
        if (cbw > copy_bw_max) copy_bw_max = cbw;
        t1[s] = tg;
        printf("%-16s %9.1f %9.2f %10.0f %10.0f %7.1f%% %10.0f\n", shapes[s].name, mb, tg * 1e3, gbw * 1e3, cbw * 1e3,
               100 * gbw / cbw, mb / 1e3 / tb * 1e3);
        ring_free(&r);
    }
    double step = 0, bytes = 0;
    for (int s = 0; s < ns; s++) {
        double mb = (double)shapes[s].N * shapes[s].K * 2 / 1e6;
        if (shapes[s].per_layer) { step += L * t1[s]; bytes += L * mb; }
        if (shapes[s].N == 262144) { step += t1[s]; bytes += mb; }
    }
    printf("1B decode step, linear layers only (26 x (qkv + o + gate+up + down) + head): %.0f MB in %.3f ms = %.0f GB/s,"
           " %.0f%% of the best copy (%.0f GB/s): at most %.0f tokens/s from the GEMVs\n\n",
           bytes, step, bytes / step, 100 * bytes / step / (copy_bw_max * 1e3), copy_bw_max * 1e3, 1e3 / step);

    printf("small batches: effective weight GB/s, streaming kernel / cuBLAS bf16 (g3cu_linear's FAST mode\n"
           "takes the streaming kernel up to T = %d, cuBLAS past it)\n", 4);
    printf("%-16s", "matrix");
    const int Ts[] = {1, 2, 4, 8, 16};
    for (int k = 0; k < 5; k++) printf("      T=%-6d", Ts[k]);
    printf("\n");
    const int sel[] = {2, 4, 5};
    for (int q = 0; q < 3; q++) {
        const Shape *sh = &shapes[sel[q]];
        Ring r;
        const int nbuf = sh->N == 262144 ? 1 : L;
        ring_new(&r, cu, sh->N, sh->K, nbuf);
        const double mb = (double)sh->N * sh->K * 2 / 1e6;
        printf("%-16s", sh->name);
        for (int k = 0; k < 5; k++) {
            r.T = Ts[k];
            r.mode = G3CU_FAST;
            double ts = time_ms(cu, nbuf, op_stream, &r), tb = time_ms(cu, nbuf, op_blas, &r);
            printf("   %5.0f/%-5.0f", mb / ts, mb / tb);
        }
        printf("\n");
        ring_free(&r);
    }
    bench_graph(cu, shapes);

    printf("\nprefill products through cuBLAS, T = 512 (TFLOP/s)\n");
    for (int q = 0; q < 2; q++) {
        const Shape *sh = &shapes[q == 0 ? 2 : 4];
        Ring r;
        ring_new(&r, cu, sh->N, sh->K, 4);
        r.T = 512;
        const double fl = 2.0 * 512 * sh->N * sh->K;
        r.mode = G3CU_FAST;
        double tf = time_ms(cu, 4, op_blas, &r);
        r.mode = G3CU_EXACT;
        double te = time_ms(cu, 4, op_blas, &r);
        printf("%-16s fast (bf16) %7.1f   exact (f32, TF32 off) %6.1f\n", sh->name, fl / tf / 1e9, fl / te / 1e9);
        ring_free(&r);
    }
    bench_attention(cu);
    bench_sampler(cu);
    g3cu_delete(cu);
    return 0;
}
