// cuda_test.h: what the GPU tests (tests/test_cuda_*.c) share: the skip rule, a context,
// random inputs, device buffers poisoned before each run (so that an output a kernel
// forgets to write shows as NaN), and the bf16/f16 rounding of the scalar references.
// Without CUDA=1 (G3_CUDA undefined) the tests only print that they were skipped.
#ifndef G3_CUDA_TEST_H
#define G3_CUDA_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "backend/cuda/g3cuda.h"
#include "check.h"

// A context on device 0, or NULL after printing why the test is skipped (the caller then
// exits 0): a CUDA build on a machine without a GPU is not a failure.
static inline G3Cuda *cuda_test_start(const char *name) {
    if (g3cu_device_count() == 0) {
        printf("%s: skipped: no GPU (no CUDA device or driver)\n", name);
        return NULL;
    }
    G3Cuda *cu = g3cu_new(0);
    if (!cu) {
        fprintf(stderr, "%s: %s\n", name, g3_error());
        exit(1);
    }
    printf("%s: on %s\n", name, g3cu_device_name(cu));
    return cu;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static inline float frand(void) {  // uniform in [-1, 1)
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng_state >> 40) * (1.0 / (1 << 23))) - 1.0f;
}
static inline void fill(float *x, long n, float scale) {
    for (long i = 0; i < n; i++) x[i] = frand() * scale;
}

// Device copy of host data; aborts the test on failure (a broken GPU is a failure).
static inline void *dev_from(G3Cuda *cu, const void *h, size_t bytes) {
    void *d = g3cu_malloc(cu, bytes);
    if (!d || (h && g3cu_upload(cu, d, h, bytes))) {
        fprintf(stderr, "device buffer: %s\n", g3_error());
        exit(1);
    }
    return d;
}
// Fills a device buffer of floats with NaN (all bits set).
static inline void poison(G3Cuda *cu, void *d, size_t bytes) {
    if (g3cu_memset(cu, d, 0xff, bytes)) { fprintf(stderr, "poison: %s\n", g3_error()); exit(1); }
}
static inline void to_host(G3Cuda *cu, void *h, const void *d, size_t bytes) {
    if (g3cu_download(cu, h, d, bytes)) { fprintf(stderr, "download: %s\n", g3_error()); exit(1); }
}

// Weights of type t from f32 values: stored (bytes, for the GPU) and widened back (the values
// the references use), so that both sides see the same numbers.
static inline void *make_weights(G3DType t, float *vals, long n) {
    int es = g3_dtype_size(t);
    void *w = malloc((size_t)n * es);
    for (long i = 0; i < n; i++) {
        if (t == G3_F32) ((float *)w)[i] = vals[i];
        else if (t == G3_BF16) { ((uint16_t *)w)[i] = g3_f32_to_bf16(vals[i]); vals[i] = g3_bf16_to_f32(((uint16_t *)w)[i]); }
        else { ((uint16_t *)w)[i] = g3_f32_to_f16(vals[i]); vals[i] = g3_f16_to_f32(((uint16_t *)w)[i]); }
    }
    return w;
}

static inline int all_finite(const float *x, long n) {
    for (long i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

#endif
