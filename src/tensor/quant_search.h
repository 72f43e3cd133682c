// quant_search.h: the scale (and min) search shared by the plain quantizers (quant.c,
// quant_legacy.c, quant_k.c) and importance-weighted rounding (quant_weighted.c). Internal to
// tensor/; the public entry points are the traits' from_f32 and g3_quant_weighted (quant.h).
#ifndef G3_QUANT_SEARCH_H
#define G3_QUANT_SEARCH_H

#include "quant.h"

// One block of type t (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1: 32 elements; Q4_K Q5_K Q6_K: 256) from x with
// weights w >= 0, packed in ggml's layout into dst: each block or sub-block gets the scale (and
// min) that a search finds to minimize sum_i w_i (x_i - x'_i)^2 (quant_search.c says how).
// x must be finite.
void g3_qsearch_block(G3DType t, void *dst, const float *x, const float *w);

// A plain quantizer of type t: per block, the block the search finds with weights w_i = 1
// and the block the simple rule `simple` writes (the max/min rule of quant.h), the one with
// the lower squared error sum (x_i - x'_i)^2 kept (decoded with the type's own to_f32), so it
// is never worse than the simple rule. A block with a non-finite value keeps the simple rule's
// bytes. Deterministic: each block depends on its own values only.
typedef void (*G3QuantFn)(void *dst, const float *src, int64_t n);
void g3_qsearch_plain(G3DType t, G3QuantFn simple, void *dst, const float *src, int64_t n);

#endif
