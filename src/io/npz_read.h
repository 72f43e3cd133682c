// npz_read.h: a NumPy .npz reader (the writer is npz.h): a zip archive of .npy files, stored
// or deflated, zip64 where numpy wrote it. Made for Gemma Scope 1's params.npz (float32
// arrays of a few hundred MB); it reads what np.savez / np.savez_compressed write and
// refuses the rest by name (object arrays, Fortran order, encrypted or split archives).
// The file is mapped read-only and never trusted: every offset, size, header and shape is
// checked against the file before an array is handed out. Not here: writing (npz.h).
#ifndef G3_NPZ_READ_H
#define G3_NPZ_READ_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor/dtype.h"

#define G3_NPY_MAX_DIMS 8

typedef struct {
    char name[256];      // the member's name without ".npy"
    G3DType dtype;       // F32, F64, F16, I32 or I64 ('<f4' '<f8' '<f2' '<i4' '<i8'; '|' or '=' too)
    int ndim;
    int64_t shape[G3_NPY_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;     // numel x element size
    int method;          // 0 stored, 8 deflated
    uint64_t off;        // the member's data (compressed) in the file
    uint64_t csize;      // its compressed size
    uint64_t skip;       // bytes of .npy header before the array's data (uncompressed)
    uint32_t crc;
} G3NpyArray;

typedef struct {
    char path[4096];
    const uint8_t *map;
    size_t size;
    int mapped;     // map is ours (g3_npz_read_open), not the caller's
    G3NpyArray *a;  // [n] every .npy member
    int n;
} G3NpzFile;

// Maps path and reads its directory and every member's .npy header. 0, or -1 with a message
// naming the file (and the member).
int g3_npz_read_open(G3NpzFile *z, const char *path);
// The same over bytes in memory (not copied: they must outlive z). name is used in messages.
int g3_npz_read_mem(G3NpzFile *z, const void *data, size_t size, const char *name);
void g3_npz_read_close(G3NpzFile *z);
// The member called name (without ".npy"), or NULL.
const G3NpyArray *g3_npz_find(const G3NpzFile *z, const char *name);
// Reads a floating-point member as f32 into out[numel] (inflating and checking the CRC of a
// deflated member). 0, or -1 with a message naming the file and member.
int g3_npz_read_f32(const G3NpzFile *z, const G3NpyArray *a, float *out);

#endif
