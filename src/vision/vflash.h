// vflash.h: the tower's attention in bf16 (fast mode) as one fused pass per (head, 128
// queries): scores, an online softmax and P . V over chunks of 128 keys, every product on the
// CPU's bf16 dot product, nothing bigger than a chunk ever written (flash attention's order).
//
// Why not vattn.c's blocked form (two GEMM calls per head and 128 query rows): each call packed
// its operands again (the head's whole K for every query block: 32 times a layer), and its
// 128 x 4096 f32 score block went through memory twice: ~100 GFLOP/s a core on the 4B tower,
// a third of what the products run at.
//
// Everything is transposed so that the queries lie in the 32 lanes of a tile (two registers):
//   S^T[keys, 32]  = K . Q^T          tile 8 keys x 32 queries, depth HD (pairs)
//   m, l, P^T      online softmax down each lane: the maxima and sums are lane-wise, no
//                  horizontal reductions; P^T's rows (keys) paired into bf16 pair words
//   O^T[HD, 32]    = alpha * O^T + V^T . P^T   tile 8 dims x 32 queries, depth the chunk's keys
//   out            = O / l
// The operands are packed once per call (Q, K as pair words of HD, V^T as pair words of keys),
// ~1% of the work. The numbers: bf16 operands (q, k, v, and the probabilities rounded before
// P . V), products exact, f32 sums, exponentials within ~1e-7 of exp2f; the sums l are of the
// unrounded probabilities (as vattn.c does).
//
// Kernels: a scalar reference for each (vflash.c) and AVX512-BF16 versions (vflash_avx512bf16.c),
// held to each other in tests/test_vision_kernels.c; the driver runs on either table.
#ifndef G3_VFLASH_H
#define G3_VFLASH_H

#include <stddef.h>
#include <stdint.h>

enum {
    G3_VF_LANES = 32,   // queries per lane block (a tile's columns)
    G3_VF_KR = 8,       // keys (or head dims) per tile row block
    G3_VF_CHUNK = 128,  // keys per softmax chunk: S^T chunk 16 KB, P^T 8 KB (L1)
    G3_VF_GROUP = 4,    // lane blocks per work item: K and V chunks reused 4 times from L1/L2
};

typedef struct {
    // panel[kd][w] pair words from n <= w rows of x (row r at x + r * ldx), hd values each:
    // word (k2, r) = bf16(x[r][2 k2]) | bf16(x[r][2 k2 + 1]) << 16, kd = (hd + 1) / 2 (an
    // odd hd's last high half zero); rows n..w-1 zero. Q (w = 32) and K (w = 8) panels.
    void (*pack_rows)(uint32_t *p, int w, const float *x, int64_t ldx, int n, int hd);
    // V^T panels: dims [0, hdp) (hdp a multiple of 8) in panels of 8, panel dp at p + dp * pstride,
    // nk / 2 steps (nk even) of 8 words: word (k2, d) = bf16(v[2 k2][d]) | bf16(v[2 k2 + 1][d]) << 16
    // (row j at v + j * ldv); keys >= nvalid and dims >= hd zero.
    void (*pack_cols8)(uint32_t *p, size_t pstride, const float *v, int64_t ldv, int nvalid, int nk, int hd, int hdp);
    // c[8][32] (row stride ldc) = sum over k2 < kd of a[k2][8] . b[k2][32] (pair words, each
    // word's two products summed), or, with alpha, c[r][j] = alpha[j] * c[r][j] + that sum.
    void (*tile)(float *c, int64_t ldc, const uint32_t *a, const uint32_t *b, int kd, const float *alpha);
    // A chunk's scores: s[rows][32] = the tiles of rows / 8 key panels (panel i at k + i * kd * 8)
    // against the lane block's q; smax[j] = the largest s[r][j] over r < valid (rows >= valid:
    // padding keys, computed but not counted).
    void (*scores)(float *s, const uint32_t *k, const uint32_t *q, int kd, int rows, int valid, float *smax);
    // One chunk of the online softmax down the 32 lanes of s[rows][32] (rows even; rows >=
    // valid are padding keys, probability 0), in base 2 (c = scale * log2 e > 0, m in those
    // units), with smax the chunk's largest scores (scores' output):
    //   mx = max(m, c smax);  alpha = 2^(m - mx);  e[r] = 2^(c s[r] - mx)
    //   l = alpha l + sum_r e[r];  m = mx;  p[r/2][j] = pair word of e[r][j], e[r+1][j]
    void (*softmax)(uint32_t *p, const float *s, int rows, int valid, float c, const float *smax, float *m, float *l, float *alpha);
    // The lanes back to rows: out[j][d] = o[d][j] / l[j] for j < nq (<= 32), d < hd (row j at
    // out + j * ldo; o is [hdp][32], hdp = hd rounded up to 8).
    void (*unpack)(float *out, int64_t ldo, const float *o, const float *l, int nq, int hd);
} G3VFlashKernels;

// The kernel tables: the scalar references, and AVX512-BF16's (NULL where the CPU lacks it).
const G3VFlashKernels *g3_vflash_ref(void);
const G3VFlashKernels *g3_vflash_avx512bf16(void);
// The best table the kernel level allows (g3_kernels_level() >= G3_ISA_AVX512BF16), else NULL.
const G3VFlashKernels *g3_vflash_best(void);

// out[NP, D] = softmax(scale q k^T) v per head (NH heads of D / NH columns), every row seeing
// every row; work is g3_vflash_bytes(NP, D, NH, threads) bytes (64-byte aligned), threads the
// OpenMP team it uses.
size_t g3_vflash_bytes(int NP, int D, int NH, int threads);
void g3_vflash_attention(const G3VFlashKernels *kn, float *out, const float *q, const float *k, const float *v, int NP, int D, int NH,
                         float scale, void *work, int threads);

#endif
