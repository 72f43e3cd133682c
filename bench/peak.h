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

// GFLOP/s of one run of the loop on all threads: 64 flops per vdpbf16ps zmm, 32 per FMA zmm.
static double peak_gflops(int bf16) {
    long iters = 20000000;
    volatile float sink = 0;
    double t0 = g3_now();
#pragma omp parallel
    {
        float s = bf16 ? dp_loop(iters) : fma_loop(iters);
#pragma omp atomic
        sink += s;
    }
    return (double)iters * 12 * (bf16 ? 64 : 32) * omp_get_max_threads() / (g3_now() - t0) / 1e9;
}

#endif
