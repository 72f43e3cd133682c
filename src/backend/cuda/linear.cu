// linear.cu: y[T, N] = x[T, K] . w[N, K]^T for few rows (decode: T = 1; small batches: T up
// to 16), the weight-streaming kernel. Why a kernel of our own and not cuBLAS: at small T the
// product is bound by reading the weights once (1B decode reads ~2 GB per token and does 2
// flops per weight), and library GEMMs pick tiles for large T that leave most of the memory
// system idle at T = 1. The design aims at the card's copy bandwidth:
//   - every weight byte is read once, in 16-byte loads (8 bf16/f16 or 4 f32 per load),
//     coalesced: the 32 lanes of a warp read 512 consecutive bytes of one row;
//   - each thread keeps 2 x R loads in flight (R rows at once, two chunks of each) before it
//     uses the first, so that enough bytes are outstanding to cover the memory latency;
//   - loads skip L1 (ld.global.nc.L1::no_allocate): the weights are used once and would only
//     evict x, which every row re-reads from L1;
//   - all T rows of x are multiplied with each weight chunk while it is in registers, so a
//     batch of T rows costs one pass over the weights, not T;
//   - a group of WR warps shares R rows when rows are few and long (the MLP's down projection:
//     1152 rows of 6912), so that every multiprocessor still has work; groups walk over row
//     tiles grid-stride with a grid sized to the resident blocks.
// The arithmetic is exact f32 (weights widened exactly, f32 products summed in f32), so this
// path serves both modes. Shapes the 16-byte loads cannot serve (K * element size not a
// multiple of 16, or misaligned pointers) go through a scalar kernel of the same result.
#include "common.cuh"

enum { NT = 256, NWARP = NT / 32, TTMAX = 16 };

template <typename WT, int TT, int R>
__device__ __forceinline__ void fma_chunk(float (&acc)[R][TT], const uint4 (&wq)[R], const float *__restrict__ x, int T,
                                          int K, int c) {
    constexpr int E = Chunk<WT>::E;
    float wf[R][E];
#pragma unroll
    for (int r = 0; r < R; r++) Chunk<WT>::widen(wq[r], wf[r]);
#pragma unroll
    for (int t = 0; t < TT; t++) {
        if (t < T) {
            const float4 *xp = (const float4 *)(x + (long)t * K + (long)c * E);
            float xv[E];
#pragma unroll
            for (int i = 0; i < E / 4; i++) {
                float4 v = __ldg(xp + i);
                xv[4 * i] = v.x; xv[4 * i + 1] = v.y; xv[4 * i + 2] = v.z; xv[4 * i + 3] = v.w;
            }
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int e = 0; e < E; e++) acc[r][t] = fmaf(wf[r][e], xv[e], acc[r][t]);
        }
    }
}

// What one launch computes: up to three products of the same x (q, k and v: LinJob.np parts,
// each y[T, N] = x . w^T, their row tiles numbered one after the other), or with GG the GeGLU
// of two (gate and up: a[T, N] = gelu(x . wg^T) * (x . wu^T), each tile holding R/2 rows of
// each, so that the pair meets in registers and neither product is stored).
struct LinPart {
    const char *w;
    float *y;
    int N, tile0;  // rows; the first tile of this part
};
struct LinJob {
    LinPart p[3];
    int np, ntiles;
    const char *wu;  // GG: the up projection, rows paired with p[0].w's
    int erf;         // GG: the erf form of GELU (else tanh)
};

// Block: NT threads; groups of WR warps; each group owns a tile of R rows (GG: R/2 outputs).
template <typename WT, int TT, int R, bool GG>
__global__ void __launch_bounds__(NT) linear_stream_k(const LinJob job, const float *__restrict__ x, int T, int K, int WR) {
    constexpr int E = Chunk<WT>::E, H = GG ? R / 2 : R;  // H: outputs per tile
    __shared__ float red[NWARP][R][TT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int G = NWARP / WR, grp = warp / WR, tg = (warp % WR) * 32 + lane, stride = 32 * WR;
    const int KC = K / E;
    const size_t rb = (size_t)K * (16 / E);  // bytes per weight row
    const int ntiles = job.ntiles;
    pdl_trigger();  // and the next GEMV may start fetching its own
    // Launched early (programmatic dependent launch), while the kernel before still writes x:
    // the weights do not depend on it, so the first tile's rows are fetched into L2 now, and
    // the wait comes only before x is read. Small matrices (q/k/v, o: a few MB) are then
    // mostly in L2 when the wait ends, instead of paying the launch and DRAM ramp-up after it.
    {
        const int tile = blockIdx.x * G + grp;
        if (tile < ntiles) {
            int pi = 0;
            while (pi + 1 < job.np && tile >= job.p[pi + 1].tile0) pi++;
            const LinPart part = job.p[pi];
            const int n0 = (tile - part.tile0) * H;
            for (int r = 0; r < R; r++) {
                const char *wr = (GG && r >= H ? job.wu : part.w) + (size_t)min(n0 + (r % H), part.N - 1) * rb;
                for (int c = tg * 8; c < KC; c += stride * 8) prefetch_l2(wr + (size_t)c * 16);  // a 128-byte line a step
            }
        }
    }
    pdl_wait();
    // the loop is uniform over the block (every group takes the same number of steps), so
    // that the barriers of the cross-warp reduction are reached by all threads
    for (int base = blockIdx.x * G; base < ntiles; base += gridDim.x * G) {
        const int tile = base + grp;
        int pi = 0;
        while (pi + 1 < job.np && tile >= job.p[pi + 1].tile0) pi++;
        const LinPart part = job.p[pi];
        const int N = part.N, n0 = (tile - part.tile0) * H;
        float acc[R][TT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < TT; t++) acc[r][t] = 0.f;
        if (tile < ntiles) {
            const char *wr[R];
#pragma unroll
            for (int r = 0; r < R; r++)
                wr[r] = (GG && r >= H ? job.wu : part.w) + (size_t)min(n0 + (r % H), N - 1) * rb;
            int c = tg;
            for (; c + stride < KC; c += 2 * stride) {
                uint4 a[R], b[R];
#pragma unroll
                for (int r = 0; r < R; r++) {
                    a[r] = ld_stream(wr[r] + (size_t)c * 16);
                    b[r] = ld_stream(wr[r] + (size_t)(c + stride) * 16);
                }
                fma_chunk<WT, TT, R>(acc, a, x, T, K, c);
                fma_chunk<WT, TT, R>(acc, b, x, T, K, c + stride);
            }
            if (c < KC) {
                uint4 a[R];
#pragma unroll
                for (int r = 0; r < R; r++) a[r] = ld_stream(wr[r] + (size_t)c * 16);
                fma_chunk<WT, TT, R>(acc, a, x, T, K, c);
            }
        }
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < TT; t++) acc[r][t] = warp_sum(acc[r][t]);
        if (WR == 1) {
            if (tile < ntiles && lane == 0)
#pragma unroll
                for (int r = 0; r < H; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++)
                        if (t < T && n0 + r < N)
                            part.y[(long)t * N + n0 + r] = GG ? gelu(acc[r][t], job.erf) * acc[H + r][t] : acc[r][t];
        } else {
            if (lane == 0)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++) red[warp][r][t] = acc[r][t];
            __syncthreads();
            if (tile < ntiles && warp % WR == 0)
                for (int i = lane; i < H * TT; i += 32) {
                    int r = i / TT, t = i % TT;
                    float s = 0.f, s2 = 0.f;
                    for (int v = 0; v < WR; v++) s += red[warp + v][r][t];
                    if (GG)
                        for (int v = 0; v < WR; v++) s2 += red[warp + v][H + r][t];
                    if (t < T && n0 + r < N) part.y[(long)t * N + n0 + r] = GG ? gelu(s, job.erf) * s2 : s;
                }
            __syncthreads();
        }
    }
}

// Any shape: one warp per output feature, element loads; the same exact arithmetic.
template <typename WT>
__global__ void linear_scalar_k(float *__restrict__ y, const float *__restrict__ x, const void *__restrict__ w, int T,
                                int K, int N) {
    const int lane = threadIdx.x & 31;
    const long n = ((long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (n >= N) return;
    for (int t = 0; t < T; t++) {
        float s = 0.f;
        for (int k = lane; k < K; k += 32) s = fmaf(Chunk<WT>::one(w, n * K + k), x[(long)t * K + k], s);
        s = warp_sum(s);
        if (lane == 0) y[(long)t * N + n] = s;
    }
}

template <typename WT, int TT, int R, bool GG>
static int launch_stream(G3Cuda *cu, LinJob job, const float *x, int T, int K) {
    constexpr int E = Chunk<WT>::E;
    const int KC = K / E, ntiles = job.ntiles;
    // Warps per row group: enough groups in flight to fill the card (~48 warps per
    // multiprocessor), but each thread still with at least two chunks of a row to load.
    int WR = 1;
    while (WR < NWARP && (long)ntiles * WR < (long)cu->sms * 48 && KC >= 2 * 32 * (WR * 2)) WR *= 2;
    // a property of the kernel and the card: asked once per instantiation (it costs a
    // microsecond, as much as the launch itself at decode)
    static int per_sm = 0;
    if (!per_sm &&
        g3cu_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, linear_stream_k<WT, TT, R, GG>, NT, 0), "occupancy"))
        return -1;
    const int G = NWARP / WR;
    long need = (ntiles + G - 1) / G, cap = (long)per_sm * cu->sms;
    int blocks = (int)(need < cap ? need : cap);
    if (!cu->pdl) {
        linear_stream_k<WT, TT, R, GG><<<blocks, NT, 0, cu->stream>>>(job, x, T, K, WR);
    } else {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(blocks);
        cfg.blockDim = dim3(NT);
        cfg.stream = cu->stream;
        cudaLaunchAttribute at[1];
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = at;
        cfg.numAttrs = 1;
        if (g3cu_check(cudaLaunchKernelEx(&cfg, linear_stream_k<WT, TT, R, GG>, job, x, T, K, WR), "linear (streaming kernel)"))
            return -1;
    }
    return g3cu_launched(GG ? "linear + geglu (streaming kernel)" : "linear (streaming kernel)");
}

// job's parts with y at row t0 of x's chunk and their tile numbering for R rows a tile
static LinJob job_at(const LinJob *j, int t0, int R, int GG) {
    LinJob o = *j;
    const int H = GG ? R / 2 : R;
    int tiles = 0;
    for (int i = 0; i < o.np; i++) {
        o.p[i].y += (long)t0 * o.p[i].N;
        o.p[i].tile0 = tiles;
        tiles += (o.p[i].N + H - 1) / H;
    }
    o.ntiles = tiles;
    return o;
}

// ws: the parts' weights (all [N_i, K] of type WT); aligned: every pointer 16-byte aligned
template <typename WT, bool GG>
static int stream_typed(G3Cuda *cu, const LinJob *j, const float *x, int T, int K) {
    for (int t0 = 0; t0 < T; t0 += TTMAX) {
        const int tt = T - t0 < TTMAX ? T - t0 : TTMAX;
        const float *xs = x + (long)t0 * K;
        int rc;
        if (tt == 1) rc = launch_stream<WT, 1, 4, GG>(cu, job_at(j, t0, 4, GG), xs, tt, K);
        else if (tt == 2) rc = launch_stream<WT, 2, 2, GG>(cu, job_at(j, t0, 2, GG), xs, tt, K);
        else if (tt <= 4) rc = launch_stream<WT, 4, 2, GG>(cu, job_at(j, t0, 2, GG), xs, tt, K);
        else if (tt <= 8) rc = launch_stream<WT, 8, 2, GG>(cu, job_at(j, t0, 2, GG), xs, tt, K);
        else rc = launch_stream<WT, 16, 2, GG>(cu, job_at(j, t0, 2, GG), xs, tt, K);
        if (rc) return rc;
    }
    return 0;
}

template <typename WT>
static int scalar_typed(G3Cuda *cu, float *y, const float *x, const void *w, int T, int K, int N) {
    for (int t0 = 0; t0 < T; t0 += TTMAX) {
        const int tt = T - t0 < TTMAX ? T - t0 : TTMAX;
        linear_scalar_k<WT><<<g3cu_blocks((long)N * 32, NT), NT, 0, cu->stream>>>(y + (long)t0 * N, x + (long)t0 * K, w, tt, K, N);
        if (g3cu_launched("linear (scalar kernel)")) return -1;
    }
    return 0;
}

static int elem_of(G3DType wt) { return wt == G3_F32 ? 4 : wt == G3_BF16 || wt == G3_F16 ? 8 : 0; }

// One launch for the job when the 16-byte loads can serve it: K a multiple of a chunk and
// every pointer aligned. 1 when they cannot (the caller takes the scalar kernel), -1 on error.
static int stream_job(G3Cuda *cu, const LinJob *j, const float *x, G3DType wt, int T, int K, bool gg) {
    const int E = elem_of(wt);
    if (!E) return g3_errorf("cuda linear: no kernel for weights of type %s", g3_dtype_name(wt));
    int aligned = K % E == 0 && (uintptr_t)x % 16 == 0 && (!gg || (uintptr_t)j->wu % 16 == 0);
    for (int i = 0; i < j->np; i++) aligned &= (uintptr_t)j->p[i].w % 16 == 0;
    if (!aligned) return 1;
    switch (wt) {
    case G3_F32: return gg ? stream_typed<float, true>(cu, j, x, T, K) : stream_typed<float, false>(cu, j, x, T, K);
    case G3_BF16: return gg ? stream_typed<Bf16, true>(cu, j, x, T, K) : stream_typed<Bf16, false>(cu, j, x, T, K);
    default: return gg ? stream_typed<F16, true>(cu, j, x, T, K) : stream_typed<F16, false>(cu, j, x, T, K);
    }
}

static int scalar_one(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N) {
    switch (wt) {
    case G3_F32: return scalar_typed<float>(cu, y, x, w, T, K, N);
    case G3_BF16: return scalar_typed<Bf16>(cu, y, x, w, T, K, N);
    default: return scalar_typed<F16>(cu, y, x, w, T, K, N);
    }
}

extern "C" int g3cu_linear_stream(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N) {
    if (T < 1 || K < 1 || N < 1) return g3_errorf("cuda linear: bad shape T %d, K %d, N %d", T, K, N);
    LinJob j = {};
    j.p[0] = LinPart{(const char *)w, y, N, 0};
    j.np = 1;
    const int rc = stream_job(cu, &j, x, wt, T, K, false);
    return rc == 1 ? scalar_one(cu, y, x, w, wt, T, K, N) : rc;
}

// Which path: measured on an H100 (docs/gpu-notes.md), the streaming kernel matches the copy
// bandwidth at T = 1-2 and holds cuBLAS's bf16 rate to T = 4; past that its f32 arithmetic
// (T products per weight, exact) is the limit and cuBLAS's tensor cores win, so FAST hands
// over there. EXACT keeps the streaming kernel to T = 16: its cuBLAS path must first widen
// bf16 weights to f32, which costs more than the arithmetic it saves.
enum { FAST_MAX_T = 4 };

extern "C" int g3cu_linear(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N,
                           G3CuMode mode) {
    if (T <= (mode == G3CU_FAST ? (int)FAST_MAX_T : (int)TTMAX)) return g3cu_linear_stream(cu, y, x, w, wt, T, K, N);
    return g3cu_linear_blas(cu, y, x, w, wt, T, K, N, mode);
}

// Up to three products of the same x in one launch (q, k, v at decode: one pass, one launch
// where three would each pay the small matrices' ramp-up). Same arithmetic as g3cu_linear per
// row (exact f32; only the split of long rows over warps follows the whole launch's size, so
// sums may round differently); past the streaming kernel's rows, one call each.
extern "C" int g3cu_linear_multi(G3Cuda *cu, int n, float *const *y, const float *x, const void *const *w, G3DType wt, int T,
                                 int K, const int *N, G3CuMode mode) {
    if (n < 1 || n > 3) return g3_errorf("cuda linear_multi: %d products (1 to 3)", n);
    int ok = T >= 1 && T <= (mode == G3CU_FAST ? (int)FAST_MAX_T : (int)TTMAX) && K >= 1;
    LinJob j = {};
    for (int i = 0; i < n; i++) {
        if (N[i] < 1) return g3_errorf("cuda linear_multi: bad shape T %d, K %d, N %d", T, K, N[i]);
        j.p[i] = LinPart{(const char *)w[i], y[i], N[i], 0};
    }
    j.np = n;
    if (ok) {
        const int rc = stream_job(cu, &j, x, wt, T, K, false);
        if (rc <= 0) return rc;
    }
    for (int i = 0; i < n; i++)
        if (g3cu_linear(cu, y[i], x, w[i], wt, T, K, N[i], mode)) return -1;
    return 0;
}

// a[T, N] = gelu(x . wg^T) * (x . wu^T) in one pass over both weights; u [T, N] is scratch
// for the shapes the fused kernel does not take (its contents are then undefined).
extern "C" int g3cu_linear_geglu(G3Cuda *cu, float *a, float *u, const float *x, const void *wg, const void *wu,
                                 G3DType wt, int T, int K, int N, int erf_form, G3CuMode mode) {
    if (T < 1 || K < 1 || N < 1) return g3_errorf("cuda linear_geglu: bad shape T %d, K %d, N %d", T, K, N);
    if (T <= (mode == G3CU_FAST ? (int)FAST_MAX_T : (int)TTMAX)) {
        LinJob j = {};
        j.p[0] = LinPart{(const char *)wg, a, N, 0};
        j.np = 1;
        j.wu = (const char *)wu;
        j.erf = erf_form;
        const int rc = stream_job(cu, &j, x, wt, T, K, true);
        if (rc <= 0) return rc;
    }
    if (g3cu_linear(cu, a, x, wg, wt, T, K, N, mode) || g3cu_linear(cu, u, x, wu, wt, T, K, N, mode)) return -1;
    return g3cu_geglu(cu, a, u, (long)T * N, erf_form);
}
