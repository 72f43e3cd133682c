// init.h: random weights for a tensor of the table, as Hugging Face initialises Gemma
// (projections and embedding ~ N(0, std), norm weights 0 so that Gemma's (1 + w) starts at 1).
// Deterministic and counter-based: the values of tensor i depend only on (seed, i), and
// chunks are generated in parallel, so any tensor can be produced alone (streaming `init`).
#ifndef G3_INIT_H
#define G3_INIT_H

#include <stdint.h>

#include "model.h"

// Fills out[numel] (f32) for tensor i of m's table.
void g3_init_tensor_f32(const G3Model *m, int i, uint64_t seed, float std, float *out);
// Writes a random-weight checkpoint (config.json + model.safetensors, sharded above
// max_shard bytes) of config c into dir, weights of type dt. Progress on stderr if verbose.
int g3_init_checkpoint(const G3Config *c, const char *dir, G3DType dt, uint64_t seed, float std, size_t max_shard, int verbose);
// The same, with extra(ctx, w) adding more tensors (a vision tower) to the writer before it
// writes; extra may be NULL.
int g3_init_checkpoint_ex(const G3Config *c, const char *dir, G3DType dt, uint64_t seed, float std, size_t max_shard, int verbose,
                          int (*extra)(void *ctx, STWriter *w), void *extra_ctx);

#endif
