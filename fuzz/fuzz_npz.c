// fuzz_npz.c: libFuzzer harness for the .npz reader (io/npz_read.h): any bytes must open
// cleanly or fail with a message; every member handed out must lie inside the input, and
// reading each floating-point member (inflating deflated ones, checking their CRC) must
// either succeed or fail with a message. Members are read only when small, so that a
// header claiming gigabytes costs nothing.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/npz_read.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    G3NpzFile z;
    if (g3_npz_read_mem(&z, data, size, "fuzz.npz") != 0) return 0;
    for (int i = 0; i < z.n; i++) {
        const G3NpyArray *a = &z.a[i];
        if (a->off > size || a->csize > size - a->off) abort();
        if (g3_npz_find(&z, a->name) == NULL) abort();
        if (a->numel > (1 << 16)) continue;
        float *out = malloc((size_t)(a->numel ? a->numel : 1) * sizeof(float));
        if (!out) abort();
        (void)g3_npz_read_f32(&z, a, out);
        free(out);
    }
    g3_npz_read_close(&z);
    return 0;
}
