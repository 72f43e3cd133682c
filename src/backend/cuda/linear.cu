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

// Block: NT threads; groups of WR warps; each group owns R consecutive rows per tile.
template <typename WT, int TT, int R>
__global__ void __launch_bounds__(NT) linear_stream_k(float *__restrict__ y, const float *__restrict__ x,
                                                      const char *__restrict__ w, int T, int K, int N, int WR) {
    constexpr int E = Chunk<WT>::E;
    __shared__ float red[NWARP][R][TT];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int G = NWARP / WR, grp = warp / WR, tg = (warp % WR) * 32 + lane, stride = 32 * WR;
    const int KC = K / E;
    const size_t rb = (size_t)K * (16 / E);  // bytes per weight row
    const int ntiles = (N + R - 1) / R;
    // the loop is uniform over the block (every group takes the same number of steps), so
    // that the barriers of the cross-warp reduction are reached by all threads
    for (int base = blockIdx.x * G; base < ntiles; base += gridDim.x * G) {
        const int tile = base + grp, n0 = tile * R;
        float acc[R][TT];
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int t = 0; t < TT; t++) acc[r][t] = 0.f;
        if (tile < ntiles) {
            const char *wr[R];
#pragma unroll
            for (int r = 0; r < R; r++) wr[r] = w + (size_t)min(n0 + r, N - 1) * rb;
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
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++)
                        if (t < T && n0 + r < N) y[(long)t * N + n0 + r] = acc[r][t];
        } else {
            if (lane == 0)
#pragma unroll
                for (int r = 0; r < R; r++)
#pragma unroll
                    for (int t = 0; t < TT; t++) red[warp][r][t] = acc[r][t];
            __syncthreads();
            if (tile < ntiles && warp % WR == 0)
                for (int i = lane; i < R * TT; i += 32) {
                    int r = i / TT, t = i % TT;
                    float s = 0.f;
                    for (int v = 0; v < WR; v++) s += red[warp + v][r][t];
                    if (t < T && n0 + r < N) y[(long)t * N + n0 + r] = s;
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

template <typename WT, int TT, int R>
static int launch_stream(G3Cuda *cu, float *y, const float *x, const void *w, int T, int K, int N) {
    constexpr int E = Chunk<WT>::E;
    const int KC = K / E, ntiles = (N + R - 1) / R;
    // Warps per row group: enough groups in flight to fill the card (~48 warps per
    // multiprocessor), but each thread still with at least two chunks of a row to load.
    int WR = 1;
    while (WR < NWARP && (long)ntiles * WR < (long)cu->sms * 48 && KC >= 2 * 32 * (WR * 2)) WR *= 2;
    // a property of the kernel and the card: asked once per instantiation (it costs a
    // microsecond, as much as the launch itself at decode)
    static int per_sm = 0;
    if (!per_sm &&
        g3cu_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, linear_stream_k<WT, TT, R>, NT, 0), "occupancy"))
        return -1;
    const int G = NWARP / WR;
    long need = (ntiles + G - 1) / G, cap = (long)per_sm * cu->sms;
    int blocks = (int)(need < cap ? need : cap);
    linear_stream_k<WT, TT, R><<<blocks, NT, 0, cu->stream>>>(y, x, (const char *)w, T, K, N, WR);
    return g3cu_launched("linear (streaming kernel)");
}

template <typename WT>
static int stream_typed(G3Cuda *cu, float *y, const float *x, const void *w, int T, int K, int N) {
    constexpr int E = Chunk<WT>::E;
    const int aligned = K % E == 0 && (uintptr_t)w % 16 == 0 && (uintptr_t)x % 16 == 0;
    for (int t0 = 0; t0 < T; t0 += TTMAX) {
        const int tt = T - t0 < TTMAX ? T - t0 : TTMAX;
        const float *xs = x + (long)t0 * K;
        float *ys = y + (long)t0 * N;
        int rc;
        if (!aligned) {
            linear_scalar_k<WT><<<g3cu_blocks((long)N * 32, NT), NT, 0, cu->stream>>>(ys, xs, w, tt, K, N);
            rc = g3cu_launched("linear (scalar kernel)");
        } else if (tt == 1) rc = launch_stream<WT, 1, 4>(cu, ys, xs, w, tt, K, N);
        else if (tt == 2) rc = launch_stream<WT, 2, 2>(cu, ys, xs, w, tt, K, N);
        else if (tt <= 4) rc = launch_stream<WT, 4, 2>(cu, ys, xs, w, tt, K, N);
        else if (tt <= 8) rc = launch_stream<WT, 8, 2>(cu, ys, xs, w, tt, K, N);
        else rc = launch_stream<WT, 16, 2>(cu, ys, xs, w, tt, K, N);
        if (rc) return rc;
    }
    return 0;
}

extern "C" int g3cu_linear_stream(G3Cuda *cu, float *y, const float *x, const void *w, G3DType wt, int T, int K, int N) {
    if (T < 1 || K < 1 || N < 1) return g3_errorf("cuda linear: bad shape T %d, K %d, N %d", T, K, N);
    switch (wt) {
    case G3_F32: return stream_typed<float>(cu, y, x, w, T, K, N);
    case G3_BF16: return stream_typed<Bf16>(cu, y, x, w, T, K, N);
    case G3_F16: return stream_typed<F16>(cu, y, x, w, T, K, N);
    default: return g3_errorf("cuda linear: no kernel for weights of type %s", g3_dtype_name(wt));
    }
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
