// attn_decode.cu: attention of a few query rows (decode steps of many sequences) over the KV
// cache, split-K ("flash-decoding"). Why this shape of kernel:
//   - a decode row has one query per head and up to the whole context of keys: parallelism
//     over (row, head) alone leaves most multiprocessors idle at batch 1, so the keys of each
//     row are cut into `nsplit` ranges, each a block, and a second small kernel merges the
//     ranges' softmax partials (max, sum, weighted values) exactly as the online softmax does;
//   - one block serves all G query heads that share a kv head (grouped-query attention), so
//     each key and value row is read from memory once for the G heads;
//   - a warp takes one key at a time (its lanes split the head dimension: 128-byte coalesced
//     reads for each 32 floats; the loop unrolled twice so that the next key's loads issue
//     before this one's arithmetic); each warp keeps its own running max/sum/accumulator,
//     merged in shared memory at the end of the range;
//   - rows carry their own slot, position and segment (G3CuRow, in device memory), so one
//     launch serves a batch of sequences of different lengths, sliding layers read their ring
//     and keys of the segment itself come from this call's k/v rows; the split count depends
//     only on max_keys, so a captured graph replays at any length up to it.
// Arithmetic is f32 with expf; the merge is exact up to rounding (the CPU normalizes once).
#include <math.h>

#include "attn.cuh"

enum { DW = 4, DT = DW * 32, MAXPER = 8 };  // warps per block; floats per lane: head dim <= 256

template <int G>
__global__ void __launch_bounds__(DT) attn_decode_k(float *__restrict__ out, float *__restrict__ part, const float *__restrict__ q,
                                                   const float *__restrict__ k, const float *__restrict__ v,
                                                   const float *__restrict__ kc, const float *__restrict__ vc,
                                                   const G3CuRow *__restrict__ meta, G3CuAttn a, int nsplit) {
    __shared__ float sm[DW][G], sl[DW][G];
    __shared__ float sacc[DW][G][256];
    const int split = blockIdx.x, kh = blockIdx.y, r = blockIdx.z;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, per = a.hd / 32;
    const G3CuRow m = meta[r];
    const int p = m.pos, lo = first_key(p, a), S = p + 1 - lo, first_pos = p - (r - m.row0);
    const int chunk = (S + nsplit - 1) / nsplit, j0 = lo + split * chunk, j1 = min(p + 1, j0 + chunk);
    float qr[G][MAXPER], acc[G][MAXPER], mx[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        const float *qp = q + ((long)r * a.nh + kh * G + g) * a.hd;
        mx[g] = -INFINITY;
        l[g] = 0.f;
#pragma unroll
        for (int e = 0; e < MAXPER; e++) {
            qr[g][e] = e < per ? qp[lane + 32 * e] : 0.f;
            acc[g][e] = 0.f;
        }
    }
#pragma unroll 2
    for (int j = j0 + warp; j < j1; j += DW) {
        const float *kp = kv_row(kc, k, a, m.seq, kh, m.row0, first_pos, j);
        const float *vp = kv_row(vc, v, a, m.seq, kh, m.row0, first_pos, j);
        float kr[MAXPER], vr[MAXPER];
#pragma unroll
        for (int e = 0; e < MAXPER; e++) {
            kr[e] = e < per ? kp[lane + 32 * e] : 0.f;
            vr[e] = e < per ? vp[lane + 32 * e] : 0.f;
        }
#pragma unroll
        for (int g = 0; g < G; g++) {
            float d = 0.f;
#pragma unroll
            for (int e = 0; e < MAXPER; e++) d = fmaf(qr[g][e], kr[e], d);
            const float s = score_of(warp_sum(d), a);
            const float mn = fmaxf(mx[g], s), corr = expf(mx[g] - mn), pe = expf(s - mn);
            mx[g] = mn;
            l[g] = l[g] * corr + pe;
#pragma unroll
            for (int e = 0; e < MAXPER; e++) acc[g][e] = fmaf(pe, vr[e], acc[g][e] * corr);
        }
    }
    // merge the warps' partials
#pragma unroll
    for (int g = 0; g < G; g++) {
        if (lane == 0) { sm[warp][g] = mx[g]; sl[warp][g] = l[g]; }
#pragma unroll
        for (int e = 0; e < MAXPER; e++)
            if (e < per) sacc[warp][g][lane + 32 * e] = acc[g][e];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < G * a.hd; i += DT) {
        const int g = i / a.hd, d = i % a.hd;
        float M = -INFINITY;
        for (int w = 0; w < DW; w++) M = fmaxf(M, sm[w][g]);
        float L = 0.f, o = 0.f;
        if (M > -INFINITY)
            for (int w = 0; w < DW; w++) {
                const float f = expf(sm[w][g] - M);
                L += sl[w][g] * f;
                o += sacc[w][g][d] * f;
            }
        const int h = kh * G + g;
        if (nsplit == 1) {
            out[((long)r * a.nh + h) * a.hd + d] = o / L;
        } else {
            float *pp = part + (((long)r * a.nh + h) * nsplit + split) * (a.hd + 2);
            if (d == 0) { pp[0] = M; pp[1] = L; }
            pp[2 + d] = o;
        }
    }
}

// Merges the splits of one (row, head): thread d of the head dimension. With kc_app, the first
// query head of each kv head then appends the row's key and value to the cache: every split
// has read it by now (kv_append_k's rule for rows a ring cannot hold).
__global__ void attn_merge_k(float *__restrict__ out, const float *__restrict__ part, int nh, int hd, int nsplit,
                             float *__restrict__ kc_app, float *__restrict__ vc_app, const float *__restrict__ k,
                             const float *__restrict__ v, const G3CuRow *__restrict__ meta, G3CuAttn a) {
    pdl_trigger();
    const int r = blockIdx.x, h = blockIdx.y, d = threadIdx.x;
    if (kc_app && h % (nh / a.nkv) == 0) {
        const int kh = h / (nh / a.nkv);
        const G3CuRow m = meta[r];
        if (m.n - (r - m.row0) <= a.cap) {
            const long dst = (((long)m.seq * a.nkv + kh) * a.cap + m.pos % a.cap) * hd + d, src = ((long)r * a.nkv + kh) * hd + d;
            kc_app[dst] = k[src];
            vc_app[dst] = v[src];
        }
    }
    const float *pp = part + ((long)r * nh + h) * nsplit * (hd + 2);
    float M = -INFINITY;
    for (int s = 0; s < nsplit; s++) M = fmaxf(M, pp[(long)s * (hd + 2)]);
    float L = 0.f, o = 0.f;
    for (int s = 0; s < nsplit; s++) {
        const float *ps = pp + (long)s * (hd + 2);
        if (ps[0] == -INFINITY) continue;  // an empty range (a row shorter than the others)
        const float f = expf(ps[0] - M);
        L += ps[1] * f;
        o += ps[2 + d] * f;
    }
    out[((long)r * nh + h) * hd + d] = o / L;
}

extern "C" int g3cu_attn_decode(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                                const float *vc, const G3CuRow *meta, int rows, int max_keys, const G3CuAttn *a) {
    return g3cu_attn_decode_append(cu, out, q, k, v, kc, vc, NULL, NULL, meta, rows, max_keys, a);
}

extern "C" int g3cu_attn_decode_append(G3Cuda *cu, float *out, const float *q, const float *k, const float *v, const float *kc,
                                       const float *vc, float *kc_app, float *vc_app, const G3CuRow *meta, int rows, int max_keys,
                                       const G3CuAttn *a) {
    if (g3cu_attn_check(a, "attention (decode)")) return -1;
    if (rows < 1 || max_keys < 1) return g3_errorf("cuda attention (decode): %d rows, %d keys", rows, max_keys);
    const int G = a->nh / a->nkv;
    if (G < 1 || G > 8) return g3_errorf("cuda attention (decode): %d query heads per kv head (1 to 8 supported)", G);
    // Splits: about four blocks per multiprocessor in all (a warp walks its keys one at a
    // time, so the card needs many warps in flight: with two blocks per multiprocessor and
    // ranges of 64+ keys, one row over 32K keys read its cache at 538 GB/s on an H100), each
    // range at least 32 keys, at most 256 ranges.
    long base = (long)rows * a->nkv;
    int nsplit = (int)((4L * cu->sms + base - 1) / base);
    int most = (max_keys + 31) / 32;
    if (nsplit > most) nsplit = most;
    if (nsplit > 256) nsplit = 256;
    if (nsplit < 1) nsplit = 1;
    // While a graph is captured the scratch cannot grow: fewer splits, in what was reserved.
    const size_t per_split = (size_t)rows * a->nh * (a->hd + 2) * sizeof(float);
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(cu->stream, &cs);
    if (cs != cudaStreamCaptureStatusNone && (size_t)nsplit * per_split > cu->scratch_bytes) {
        nsplit = (int)(cu->scratch_bytes / per_split);
        if (nsplit < 1) nsplit = 1;
    }
    float *part = NULL;
    if (nsplit > 1 && !(part = (float *)g3cu_scratch(cu, (size_t)nsplit * per_split))) return -1;
    dim3 grid(nsplit, a->nkv, rows);
    // every group size a model may have: Gemma's 1, 2, 4, 8, and the 5 (default model) or 3
    // (GemmaZero) of small models, which otherwise ran on the host at ~100x the time
    switch (G) {
    case 1: attn_decode_k<1><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 2: attn_decode_k<2><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 3: attn_decode_k<3><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 4: attn_decode_k<4><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 5: attn_decode_k<5><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 6: attn_decode_k<6><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    case 7: attn_decode_k<7><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    default: attn_decode_k<8><<<grid, DT, 0, cu->stream>>>(out, part, q, k, v, kc, vc, meta, *a, nsplit); break;
    }
    if (g3cu_launched("attention (decode)")) return -1;
    if (nsplit == 1) {
        if (!kc_app) return 0;
        G3CuAttn ak = *a;
        ak.nh = a->nkv;
        return g3cu_kv_append(cu, kc_app, vc_app, k, v, meta, rows, &ak);
    }
    attn_merge_k<<<dim3(rows, a->nh), a->hd, 0, cu->stream>>>(out, part, a->nh, a->hd, nsplit, kc_app, vc_app, k, v, meta, *a);
    return g3cu_launched(kc_app ? "attention (decode merge + kv append)" : "attention (decode merge)");
}
