// kv_cache.cu: appends a call's keys and values to the cache, after attention has read it
// (on a sliding layer's ring, appending first would overwrite keys that the segment's
// earlier rows still see). A segment longer than the ring keeps its newest cap positions,
// so no two rows write one slot. One block per (row, kv head), one float per thread.
#include "attn.cuh"

int g3cu_attn_check(const G3CuAttn *a, const char *what) {
    if (a->nh < 1 || a->nkv < 1 || a->nh % a->nkv || a->hd < 32 || a->hd > 256 || a->hd % 32 || a->cap < 1 || a->window < 0)
        return g3_errorf("cuda %s: unsupported attention shape: %d heads over %d kv heads (a multiple), head dim %d (a multiple "
                         "of 32 up to 256), cache of %d, window %d",
                         what, a->nh, a->nkv, a->hd, a->cap, a->window);
    return 0;
}

__global__ void kv_append_k(float *kc, float *vc, const float *__restrict__ k, const float *__restrict__ v,
                            const G3CuRow *__restrict__ meta, G3CuAttn a) {
    const int r = blockIdx.x, kh = blockIdx.y;
    const G3CuRow m = meta[r];
    if (m.n - (r - m.row0) > a.cap) return;  // a newer row of the segment takes this ring slot
    const long dst = (((long)m.seq * a.nkv + kh) * a.cap + m.pos % a.cap) * a.hd, src = ((long)r * a.nkv + kh) * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        kc[dst + d] = k[src + d];
        vc[dst + d] = v[src + d];
    }
}

extern "C" int g3cu_kv_append(G3Cuda *cu, float *kc, float *vc, const float *k, const float *v, const G3CuRow *meta, int rows,
                              const G3CuAttn *a) {
    if (a->nkv < 1 || a->hd < 1 || a->hd > 1024 || a->cap < 1)
        return g3_errorf("cuda kv append: unsupported shape: %d kv heads, head dim %d, cache of %d", a->nkv, a->hd, a->cap);
    if (rows < 1) return g3_errorf("cuda kv append: no rows");
    kv_append_k<<<dim3(rows, a->nkv), a->hd, 0, cu->stream>>>(kc, vc, k, v, meta, *a);
    return g3cu_launched("kv append");
}
