// embed.cu: the embedding lookup with Gemma's sqrt(hidden) scale, x[r] = E[token[r]] * scale,
// one block per row. The scale is applied in f32 after widening the stored value, as the
// CPU does, so the result is bitwise the CPU's. Token ids live on the device (a decode step
// captured in a graph reads the next id from there); an id out of range gives a zero row
// rather than a read outside the table: the host validates ids before they get here.
#include "common.cuh"

template <typename WT>
__global__ void embed_k(float *__restrict__ x, const void *__restrict__ E, const int32_t *__restrict__ tok, int C, int vocab,
                        float scale) {
    const int r = blockIdx.x, t = tok[r];
    float *xr = x + (long)r * C;
    const int ok = t >= 0 && t < vocab;
    for (int i = threadIdx.x; i < C; i += blockDim.x) xr[i] = ok ? Chunk<WT>::one(E, (long)t * C + i) * scale : 0.f;
}

extern "C" int g3cu_embed(G3Cuda *cu, float *x, const void *E, G3DType et, const int32_t *tokens, int rows, int C, int vocab,
                          float scale) {
    if (rows < 1 || C < 1 || vocab < 1) return g3_errorf("cuda embed: bad shape rows %d, hidden %d, vocab %d", rows, C, vocab);
    switch (et) {
    case G3_F32: embed_k<float><<<rows, 256, 0, cu->stream>>>(x, E, tokens, C, vocab, scale); break;
    case G3_BF16: embed_k<Bf16><<<rows, 256, 0, cu->stream>>>(x, E, tokens, C, vocab, scale); break;
    case G3_F16: embed_k<F16><<<rows, 256, 0, cu->stream>>>(x, E, tokens, C, vocab, scale); break;
    default: return g3_errorf("cuda embed: no kernel for an embedding of type %s", g3_dtype_name(et));
    }
    return g3cu_launched("embed");
}
