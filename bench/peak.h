// peak.h: this machine's arithmetic peak, from register-only loops (twelve independent
// accumulators, no memory traffic), shared by the benchmarks that report "% of peak".
#ifndef G3_BENCH_PEAK_H
#define G3_BENCH_PEAK_H

#include <immintrin.h>
#include <omp.h>

#include "base/base.h"

__attribute__((target("avx512f,avx512bf16"))) static float dp_loop(long iters) {
    __m512 acc[12];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3c00);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a), "+v"(b));
    }
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,fma"))) static float fma_loop(long iters) {
    __m512 acc[12];
    __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_setzero_ps();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm512_fmadd_ps(a, b, acc[i]);
        __asm__ volatile("" : "+v"(a), "+v"(b));
    }
    __m512 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iters) {
    __m256 acc[12];
    __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
    for (int i = 0; i < 12; i++) acc[i] = _mm256_setzero_ps();
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(a, b, acc[i]);
        __asm__ volatile("" : "+x"(a), "+x"(b));
    }
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    float l[8];
    _mm256_storeu_ps(l, s);
    return l[0] + l[7];
}

static int have_avx512(void) { return __builtin_cpu_supports("avx512f"); }
static int have_avx512bf16(void) { return have_avx512() && __builtin_cpu_supports("avx512bf16"); }

// GFLOP/s of one run of the loop on all threads: 64 flops per vdpbf16ps zmm, 32 per FMA zmm,
// 16 per FMA ymm (CPUs without AVX-512). 0 where the CPU has no such instruction (bf16
// without AVX512-BF16).
static inline double peak_gflops(int bf16) {
    if (bf16 && !have_avx512bf16()) return 0;
    int wide = have_avx512();
    long iters = 20000000;
    volatile float sink = 0;
    double t0 = g3_now();
#pragma omp parallel
    {
        float s = bf16 ? dp_loop(iters) : wide ? fma_loop(iters) : fma_loop_avx2(iters);
#pragma omp atomic
        sink += s;
    }
    return (double)iters * 12 * (bf16 ? 64 : wide ? 32 : 16) * omp_get_max_threads() / (g3_now() - t0) / 1e9;
}

// Sums n floats (n a multiple of 64) with the widest loads the CPU has: the read-bandwidth
// probe of the benchmarks, streaming memory the way decode streams the weights.
__attribute__((target("avx512f"))) static float read_sum512(const float *p, size_t n) {
    __m512 a = _mm512_setzero_ps(), b = a, c = a, d = a;
    for (size_t i = 0; i + 64 <= n; i += 64) {
        a = _mm512_add_ps(a, _mm512_loadu_ps(p + i));
        b = _mm512_add_ps(b, _mm512_loadu_ps(p + i + 16));
        c = _mm512_add_ps(c, _mm512_loadu_ps(p + i + 32));
        d = _mm512_add_ps(d, _mm512_loadu_ps(p + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a, b), _mm512_add_ps(c, d)));
}

__attribute__((target("avx2"))) static float read_sum256(const float *p, size_t n) {
    __m256 a[8];
    for (int k = 0; k < 8; k++) a[k] = _mm256_setzero_ps();
    for (size_t i = 0; i + 64 <= n; i += 64)
        for (int k = 0; k < 8; k++) a[k] = _mm256_add_ps(a[k], _mm256_loadu_ps(p + i + 8 * k));
    for (int k = 1; k < 8; k++) a[0] = _mm256_add_ps(a[0], a[k]);
    float l[8];
    _mm256_storeu_ps(l, a[0]);
    return l[0] + l[1] + l[2] + l[3] + l[4] + l[5] + l[6] + l[7];
}

static inline float read_sum(const float *p, size_t n) { return have_avx512() ? read_sum512(p, n) : read_sum256(p, n); }

#endif
