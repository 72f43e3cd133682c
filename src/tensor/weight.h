// weight.h: a handle on one stored weight: its type, its shape as stored, its row size in
// bytes, its data and where that data lives. What the ops take instead of a bare pointer and
// a dtype, so that a quantized row (blocks, not elements) or a weight in a backend's memory
// needs no new argument. It owns nothing: the model (or a backend buffer) keeps the bytes.
#ifndef G3_WEIGHT_H
#define G3_WEIGHT_H

#include <stdint.h>

#include "dtype.h"

typedef enum { G3_MEM_HOST = 0, G3_MEM_DEVICE = 1 } G3MemKind;

typedef struct {
    G3DType type;
    int64_t rows, cols;     // a matrix [N, K] as stored ([out, in]); a vector: rows 1, cols n
    int64_t row_bytes;      // g3_type_row_bytes(type, cols)
    const void *data;
    G3MemKind mem;
    // NULL, or the same weight in a kernel's own layout, made at load (a Q4_0, Q8_0, Q5_0,
    // Q4_K or Q6_K weight: 16 rows interleaved, kernels/cpu/quant_q4x16.h, quant_q8x16.h,
    // quant_q5x16.h, quant_q4kx16.h, quant_q6kx16.h);
    // data stays the stored bytes.
    const void *packed;
} G3Weight;

// Row r of w (host or device address: only a backend of the same memory may read it).
static inline const void *g3_weight_row(const G3Weight *w, int64_t r) {
    return (const char *)w->data + r * w->row_bytes;
}

#endif
