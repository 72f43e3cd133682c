// weight.h: a weight as the ops see it: its type, its shape as stored, the bytes of one row
// and where those bytes live. Kernels take handles, never bare pointers with a dtype beside
// them, so that a block-quantized type (rows of whole blocks) needs no new signature.
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
} G3Weight;

#endif
