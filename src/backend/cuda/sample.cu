// sample.cu: the sampler's heavy part on the GPU (backend.h sample_top_k): a row's finite
// check, its penalties and the exact choice of its k best logits out of V, so that only k
// (id, logit) pairs cross back and the host's own sampler code (sampler.h g3_sampler_finish)
// does the rest: temperature, softmax, top-p, min-p and the draw. Not here: any arithmetic
// whose rounding depends on its order (sampler.h says why configurations without top-k stay
// on the host path).
//
// Why the result is the host's, bit for bit:
//   - the penalties are g3_sample_penalties' IEEE operations in its order, written with the
//     _rn intrinsics so that nvcc cannot fuse the multiply and the add (gcc does not, in ISO C);
//   - the selection compares 64-bit keys: the float's bits made monotone in the high half (-0
//     as +0: the host compares them equal) and the complemented id in the low half, so equal
//     logits rank by ascending id. The order is total, so "the k best" is one set in one order,
//     the one g3_sample_select_top_k returns;
//   - the finite check reads the logits before the penalties (the host checks first too).
//
// How: (1) one block counts each row's window tokens and writes each distinct token's
// penalized logit (the logits stay as they are); (2) blocks of C logits of a row, with the
// penalized values put in place, are sorted by key in shared memory (bitonic) and keep their
// kp best (kp: the largest k of the call, to a power of two); (3) one block per row sorts the
// blocks' survivors and writes the row's k best. The global best k are among the blocks' best
// k, so (3) is exact. 1B's 262,144 logits with k = 64: 128 blocks of 2,048, then 8,192 keys.
#include <math.h>
#include <string.h>

#include "common.cuh"

enum { ST_T = 1024, ST_KEYS = 8192 };  // threads per block; keys one block sorts at most (64 KB of shared memory)

// The rank of (v, id): larger is better.
static __device__ __forceinline__ uint64_t make_key(float v, int id) {
    uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return (uint64_t)u << 32 | (uint32_t)~(uint32_t)id;
}
static __device__ __forceinline__ float key_value(uint64_t key) {
    uint32_t u = (uint32_t)(key >> 32);
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}
static __device__ __forceinline__ int32_t key_id(uint64_t key) { return (int32_t)~(uint32_t)key; }

// Sorts k[0 .. n) (n a power of two, shared memory) in descending order; the whole block calls it.
static __device__ void bitonic_desc(uint64_t *k, int n) {
    for (int size = 2; size <= n; size <<= 1)
        for (int stride = size >> 1; stride > 0; stride >>= 1) {
            for (int i = threadIdx.x; i < n / 2; i += blockDim.x) {
                const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
                const uint64_t a = k[lo], b = k[hi];
                if ((lo & size) == 0 ? a < b : a > b) { k[lo] = b; k[hi] = a; }
            }
            __syncthreads();
        }
}

// (1) For every row with a window: pen_id[j] / pen_val[j] for window entry j: the token and its
// penalized logit at one entry per distinct token, -1 at the others. counts [n] is all zero on
// entry and left so. One block, rows in turn (windows are short; this is not the hot part).
__global__ void __launch_bounds__(ST_T) penalties_k(int32_t *pen_id, float *pen_val, int32_t *counts, const float *__restrict__ x,
                                                    long n, const G3CuSampleRow *rows, int R, const int32_t *__restrict__ win) {
    for (int r = 0; r < R; r++) {
        const G3CuSampleRow rp = rows[r];
        if (rp.nw <= 0) continue;
        const int32_t *w = win + rp.w0;
        for (int i = threadIdx.x; i < rp.nw; i += ST_T) atomicAdd(&counts[w[i]], 1);
        __syncthreads();
        for (int i = threadIdx.x; i < rp.nw; i += ST_T) {
            const int t = w[i];
            const int c = atomicExch(&counts[t], 0);  // one entry of the token gets its count
            int32_t id = -1;
            float v = 0.0f;
            if (c > 0) {
                v = x[(long)r * n + t];
                if (rp.repeat != 1.0f) v = v > 0 ? __fdiv_rn(v, rp.repeat) : __fmul_rn(v, rp.repeat);
                v = __fsub_rn(v, __fadd_rn(__fmul_rn(__int2float_rn(c), rp.frequency), rp.presence));
                id = t;
            }
            pen_id[rp.w0 + i] = id;
            pen_val[rp.w0 + i] = v;
        }
        __syncthreads();
    }
}

// (2) Block b of row r: logits [b C, (b + 1) C), its kp best keys into part[r][b][kp]; flags[r][b]:
// bit 0 for a NaN or +inf, bit 1 for a logit above -inf.
__global__ void __launch_bounds__(ST_T) block_top_k(uint64_t *part, int32_t *flags, const float *__restrict__ x, long n, int C, int kp,
                                                    const G3CuSampleRow *rows, const int32_t *pen_id, const float *pen_val) {
    extern __shared__ uint64_t keys[];
    const int r = blockIdx.y;
    const long c0 = (long)blockIdx.x * C;
    const float *xr = x + (long)r * n;
    int nonfinite = 0, some = 0;
    for (int i = threadIdx.x; i < C; i += ST_T) {
        const long j = c0 + i;
        uint64_t key = 0;  // below every real key (-inf's is 0x007fffff...)
        if (j < n) {
            const float v = xr[j];
            nonfinite |= !(v < INFINITY);
            some |= v > -INFINITY;
            key = make_key(v, (int)j);
        }
        keys[i] = key;
    }
    nonfinite = __syncthreads_or(nonfinite);
    some = __syncthreads_or(some);
    if (threadIdx.x == 0) flags[(long)r * gridDim.x + blockIdx.x] = (nonfinite ? 1 : 0) | (some ? 2 : 0);
    const G3CuSampleRow rp = rows[r];
    for (int i = threadIdx.x; i < rp.nw; i += ST_T) {
        const long t = pen_id[rp.w0 + i];
        if (t >= c0 && t < c0 + C) keys[t - c0] = make_key(pen_val[rp.w0 + i], (int)t);
    }
    __syncthreads();
    bitonic_desc(keys, C);
    uint64_t *out = part + ((long)r * gridDim.x + blockIdx.x) * kp;
    for (int i = threadIdx.x; i < kp; i += ST_T) out[i] = keys[i];
}

// (3) Row r: the m survivors of its nb blocks sorted (padded to mp, a power of two), the row's
// k best written, and whether its logits hold a choice.
__global__ void __launch_bounds__(ST_T) merge_top_k(int32_t *bad, int32_t *ids, float *vals, const uint64_t *__restrict__ part,
                                                    const int32_t *flags, int nb, int m, int mp, int kmax, const G3CuSampleRow *rows) {
    extern __shared__ uint64_t keys[];
    const int r = blockIdx.x;
    for (int i = threadIdx.x; i < mp; i += ST_T) keys[i] = i < m ? part[(long)r * m + i] : 0;
    int f = 0;
    for (int i = threadIdx.x; i < nb; i += ST_T) f |= flags[(long)r * nb + i];
    const int nonfinite = __syncthreads_or(f & 1), some = __syncthreads_or(f & 2);
    bitonic_desc(keys, mp);
    const int k = rows[r].k;
    for (int i = threadIdx.x; i < k; i += ST_T) {
        ids[(long)r * kmax + i] = key_id(keys[i]);
        vals[(long)r * kmax + i] = key_value(keys[i]);
    }
    if (threadIdx.x == 0) bad[r] = nonfinite || !some;
}

struct G3CuSampler {
    G3Cuda *cu;
    char *h;  // page-locked staging: the rows and windows in, the results out
    size_t h_bytes;
    char *d;  // device: the blocks' keys, the rows and windows, the penalized values, the flags, the results
    size_t d_bytes;
    int32_t *counts;  // [ncounts] all zero between calls
    long ncounts;
    char *last;       // the rows and windows uploaded last (a decode loop without penalties sends
    size_t nlast;     // the same rows every step: they are not uploaded again), nlast bytes
    size_t last_cap;
};

extern "C" G3CuSampler *g3cu_sampler_new(G3Cuda *cu) {
    G3CuSampler *s = (G3CuSampler *)calloc(1, sizeof *s);
    if (!s) { g3_errorf("cuda sampler: out of host memory"); return NULL; }
    s->cu = cu;
    const int shm = ST_KEYS * (int)sizeof(uint64_t);
    if (g3cu_check(cudaFuncSetAttribute(block_top_k, cudaFuncAttributeMaxDynamicSharedMemorySize, shm), "sampler shared memory") ||
        g3cu_check(cudaFuncSetAttribute(merge_top_k, cudaFuncAttributeMaxDynamicSharedMemorySize, shm), "sampler shared memory")) {
        free(s);
        return NULL;
    }
    return s;
}

extern "C" void g3cu_sampler_free(G3CuSampler *s) {
    if (!s) return;
    cudaFreeHost(s->h);
    g3cu_free(s->cu, s->d);
    g3cu_free(s->cu, s->counts);
    free(s->last);
    free(s);
}

static size_t round8(size_t b) { return (b + 7) & ~(size_t)7; }

extern "C" int g3cu_sample_top_k(G3CuSampler *s, const float *x, int R, int n, const G3CuSampleRow *rp, const int32_t *win, int nwin,
                                 int kmax, int32_t *ids, float *vals, int32_t *bad) {
    G3Cuda *cu = s->cu;
    if (R < 1 || n < 2 || kmax < 1 || kmax > G3CU_TOPK_MAX || nwin < 0 || (nwin && !win))
        return g3_errorf("cuda sample_top_k: bad shape (rows %d, n %d, kmax %d, window %d)", R, n, kmax, nwin);
    int kp = 1, pen = 0;
    for (int r = 0; r < R; r++) {
        const G3CuSampleRow *p = &rp[r];
        if (p->k < 1 || p->k > kmax || p->k >= n)
            return g3_errorf("cuda sample_top_k: row %d asks for %d of %d logits (1 to %d)", r, p->k, n, kmax < n - 1 ? kmax : n - 1);
        if (p->nw < 0 || p->w0 < 0 || (long)p->w0 + p->nw > nwin) return g3_errorf("cuda sample_top_k: row %d: window outside [0, %d)", r, nwin);
        while (kp < p->k) kp <<= 1;
        pen |= p->nw > 0;
    }
    for (int i = 0; i < nwin; i++)
        if (win[i] < 0 || win[i] >= n) return g3_errorf("cuda sample_top_k: window token %d outside [0, %d)", win[i], n);
    // blocks of C logits (a power of two, >= kp), few enough that their survivors fit one block
    long C = kp > 1024 ? kp : 1024;
    while ((n + C - 1) / C * kp > ST_KEYS) C <<= 1;
    if (C > ST_KEYS) return g3_errorf("cuda sample_top_k: k = %d of %d logits is more than one block can hold", kp, n);
    const int NB = (int)((n + C - 1) / C), m = NB * kp;
    int mp = 1;
    while (mp < m) mp <<= 1;

    // device layout: keys [R][m] | rows [R] | win [nwin] | pen_id [nwin] | pen_val [nwin] | flags [R][NB] | bad [R] | ids, vals [R][kmax]
    const size_t b_part = (size_t)R * m * sizeof(uint64_t), b_rows = (size_t)R * sizeof(G3CuSampleRow), b_win = (size_t)nwin * sizeof(int32_t);
    const size_t b_out = ((size_t)R + 2 * (size_t)R * kmax) * sizeof(int32_t);
    const size_t o_in = round8(b_part), o_pid = o_in + round8(b_rows + b_win), o_pval = o_pid + round8(b_win), o_flags = o_pval + round8(b_win),
                 o_out = o_flags + round8((size_t)R * NB * sizeof(int32_t)), d_need = o_out + round8(b_out);
    const size_t h_need = round8(b_rows + b_win) + round8(b_out);
    if (d_need > s->d_bytes) {
        g3cu_free(cu, s->d);
        s->d_bytes = 0;
        s->nlast = 0;  // what was uploaded is gone
        if (!(s->d = (char *)g3cu_malloc(cu, d_need + d_need / 2))) return -1;
        s->d_bytes = d_need + d_need / 2;
    }
    if (h_need > s->h_bytes) {
        cudaFreeHost(s->h);
        s->h = NULL;
        s->h_bytes = 0;
        if (g3cu_check(cudaMallocHost((void **)&s->h, h_need + h_need / 2), "sampler staging")) return -1;
        s->h_bytes = h_need + h_need / 2;
    }
    if (pen && n > s->ncounts) {
        g3cu_free(cu, s->counts);
        s->ncounts = 0;
        if (!(s->counts = (int32_t *)g3cu_malloc(cu, (size_t)n * sizeof(int32_t))) ||
            g3cu_check(cudaMemsetAsync(s->counts, 0, (size_t)n * sizeof(int32_t), cu->stream), "sampler counts"))
            return -1;
        s->ncounts = n;
    }
    char *d = s->d, *h_out = s->h + round8(b_rows + b_win);
    const G3CuSampleRow *rows_d = (const G3CuSampleRow *)(d + o_in);
    const int32_t *win_d = (const int32_t *)(d + o_in + b_rows);
    int32_t *pen_id = (int32_t *)(d + o_pid), *flags = (int32_t *)(d + o_flags), *out = (int32_t *)(d + o_out);
    float *pen_val = (float *)(d + o_pval);
    uint64_t *part = (uint64_t *)d;

    cudaStream_t st = cu->stream;
    // the rows and windows, unless the device holds them at this place already
    const size_t nin = b_rows + b_win;
    const int same = s->nlast == nin + sizeof(size_t) && !memcmp(s->last, &o_in, sizeof(size_t)) &&
                     !memcmp(s->last + sizeof(size_t), rp, b_rows) && (!nwin || !memcmp(s->last + sizeof(size_t) + b_rows, win, b_win));
    if (!same) {
        memcpy(s->h, rp, b_rows);
        if (nwin) memcpy(s->h + b_rows, win, b_win);
        if (g3cu_check(cudaMemcpyAsync(d + o_in, s->h, nin, cudaMemcpyHostToDevice, st), "sampler upload")) return -1;
        s->nlast = 0;
        if (nin + sizeof(size_t) > s->last_cap) {
            free(s->last);
            s->last_cap = 0;
            if (!(s->last = (char *)malloc(2 * (nin + sizeof(size_t))))) return g3_errorf("cuda sampler: out of host memory");
            s->last_cap = 2 * (nin + sizeof(size_t));
        }
        memcpy(s->last, &o_in, sizeof(size_t));
        memcpy(s->last + sizeof(size_t), s->h, nin);
        s->nlast = nin + sizeof(size_t);
    }
    if (pen) {
        penalties_k<<<1, ST_T, 0, st>>>(pen_id, pen_val, s->counts, x, n, rows_d, R, win_d);
        if (g3cu_launched("sampler penalties")) return -1;
    }
    block_top_k<<<dim3(NB, R), ST_T, C * sizeof(uint64_t), st>>>(part, flags, x, n, (int)C, kp, rows_d, pen_id, pen_val);
    if (g3cu_launched("sampler block top-k")) return -1;
    merge_top_k<<<R, ST_T, mp * sizeof(uint64_t), st>>>(out, out + R, (float *)(out + R + (long)R * kmax), part, flags, NB, m, mp, kmax, rows_d);
    if (g3cu_launched("sampler merge top-k")) return -1;
    if (g3cu_check(cudaMemcpyAsync(h_out, out, b_out, cudaMemcpyDeviceToHost, st), "sampler download") ||
        g3cu_check(cudaStreamSynchronize(st), "sampler"))
        return -1;
    const int32_t *ho = (const int32_t *)h_out;
    memcpy(bad, ho, (size_t)R * sizeof(int32_t));
    memcpy(ids, ho + R, (size_t)R * kmax * sizeof(int32_t));
    memcpy(vals, ho + R + (long)R * kmax, (size_t)R * kmax * sizeof(float));
    return 0;
}
