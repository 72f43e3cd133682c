// widen.h: float lanes widened to double, and double horizontal sums, for the kernels whose
// sums run in double lanes (training's RMSNorm and attention softmax rows), shared by
// train_ops.c and attention_train.c. AVX2 and AVX-512 helpers, each compiled for its ISA.
#ifndef G3_WIDEN_H
#define G3_WIDEN_H

#include <immintrin.h>

#define G3_WIDEN_AVX2 __attribute__((target("avx2,fma")))
#define G3_WIDEN_AVX512 __attribute__((target("avx512f")))

G3_WIDEN_AVX2 static inline __m256d lo_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
G3_WIDEN_AVX2 static inline __m256d hi_pd(__m256 v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
G3_WIDEN_AVX2 static inline double hsum_pd(__m256d v) {
    __m128d a = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(a, _mm_unpackhi_pd(a, a)));
}
G3_WIDEN_AVX512 static inline __m512d lo_pd16(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
G3_WIDEN_AVX512 static inline __m512d hi_pd16(__m512 v) {
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

#endif
