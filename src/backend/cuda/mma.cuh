// mma.cuh: the bf16 tensor-core building blocks of the attention kernels (attn_mma.cu,
// attn_mma_train.cu): one mma.sync m16n8k16 (bf16 operands, f32 accumulate), packing two
// floats into a bf16 pair, and quad (4-lane) reductions over a fragment's row.
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4 g + t;
//   A (16 x 16, row major): regs {a0a1, a2a3, a4a5, a6a7} = (row g, cols 2t..2t+1), (g + 8, same),
//                           (g, 2t + 8 ..), (g + 8, 2t + 8 ..)
//   B (16 x 8, k x n):      regs {b0b1, b2b3} = (k 2t..2t+1, col g), (k 2t + 8 .., col g)
//   C (16 x 8, f32):        c0, c1 = (row g, cols 2t, 2t + 1); c2, c3 = (row g + 8, same cols)
#ifndef G3_CUDA_MMA_CUH
#define G3_CUDA_MMA_CUH

#include <cuda_bf16.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (lo) in the low half
    return *reinterpret_cast<uint32_t *>(&v);
}

// c += a . b (16 x 16 by 16 x 8, bf16 in, f32 accumulate)
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t ld32(const __nv_bfloat16 *p) { return *reinterpret_cast<const uint32_t *>(p); }

// B operands of two adjacent n-tiles (nd, nd + 1) of one k-step straight from a ROW-MAJOR
// [k][n] tile in shared memory (stride `st` elements, a multiple of 8), by ldmatrix .trans:
// lane l names row k0 + (l & 15) at column n0 + 8 (l >> 4), and gets {b0b1, b2b3} of tile
// n0 in r[0], r[1] and of tile n0 + 8 in r[2], r[3]. The same bits as reading a transposed
// copy with ld32, without writing that copy: staging a transposed tile 2 bytes at a time
// hit 16-way bank conflicts (head dim 128), many times the tile's tensor-core work.
__device__ __forceinline__ void ldsm_b_pair(uint32_t r[4], const __nv_bfloat16 *tile, int st, int k0, int n0, int lane) {
    const __nv_bfloat16 *p = tile + (k0 + (lane & 15)) * st + n0 + 8 * (lane >> 4);
    const unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

__device__ __forceinline__ float quad_max(float x) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
    return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

#endif
