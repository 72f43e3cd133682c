// npz.h: a NumPy .npz writer: a zip archive with one .npy file (format 1.0, little-endian,
// C order) per array, stored or deflated (zlib), zip64 where sizes or offsets pass 4 GiB.
// Streamed: an array's bytes go to the file as they are given, in as many pieces as the
// caller likes, so nothing is held twice. Written atomically (temporary file, fsync,
// rename): a crash leaves the old file or the new one. Writing only; numpy reads it back
// with np.load(path)[name].
#ifndef G3_NPZ_H
#define G3_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "../base/base.h"

typedef enum { G3_NPZ_F32, G3_NPZ_I32 } G3NpzType;  // '<f4', '<i4'

typedef struct {
    char name[256];
    uint32_t crc;
    uint64_t csize, usize, offset;  // compressed and uncompressed bytes, local header offset
    int zip64;                      // the local header carries zip64 sizes
} G3NpzEntry;

typedef struct {
    G3AtomicFile f;
    int compress;          // deflate (zlib level 6) instead of stored
    uint64_t pos;          // bytes written so far
    G3NpzEntry *ent;       // [nent] finished entries, for the central directory
    int nent, cap;
    // the entry being written
    int open;
    G3NpzEntry cur;
    uint64_t left;         // data bytes still expected
    void *zs;              // z_stream when compressing
    unsigned char *zbuf;   // [ZBUF] deflate output
    int failed;
    int force_zip64;       // tests: zip64 records even where 32 bits suffice (set after open)
} G3Npz;

// Creates path (through a temporary beside it). Returns 0, or -1 with g3_error set.
int g3_npz_open(G3Npz *z, const char *path, int compress);
// Starts array `name` (stored as name.npy) of the given type and shape; its
// shape-product * 4 bytes must follow through g3_npz_write before the next begin.
int g3_npz_begin(G3Npz *z, const char *name, G3NpzType type, int ndim, const int64_t *shape);
int g3_npz_write(G3Npz *z, const void *data, size_t bytes);
int g3_npz_end(G3Npz *z);
// begin + write + end of a whole array in memory.
int g3_npz_add(G3Npz *z, const char *name, G3NpzType type, int ndim, const int64_t *shape, const void *data);
// Writes the central directory and commits the file. Frees z either way.
int g3_npz_close(G3Npz *z);
// Drops everything written (the target is untouched) and frees z.
void g3_npz_abort(G3Npz *z);

#endif
