// attention_train.c: the training attention of train_ops.h: causal grouped-query attention over
// [B, T] batches, forward and backward, as blocked GEMMs over the keys each block of queries
// can see (the probabilities are recomputed in backward from the kept log-sum-exp, never
// stored), beside the direct per-row loops that are their scalar references. Split from
// train_ops.c, which keeps the row-wise ops.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "cpu/vexp.h"
#include "cpu/widen.h"
#include "kernels.h"
#include "ops.h"
#include "train_ops.h"

#define AVX2 __attribute__((target("avx2,fma")))
#define AVX512 __attribute__((target("avx512f")))
// ---- attention ----

// The scaled (and capped) score of query row qr against key row kr.
static inline float score(const float *qr, const float *kr, int HD, float scale, float softcap) {
    float s = g3_dot(qr, kr, HD) * scale;
    return softcap > 0 ? tanhf(s / softcap) * softcap : s;
}

// Multiply-adds of one pass over all visible (query, key) pairs: small problems stay on one
// thread, where waking a team would cost more than the work.
static long attn_work(int B, int T, int NH, int HD, int window) {
    long span = window > 0 ? G3_MIN(window, T) : (T + 1) / 2;
    return (long)B * NH * T * span * HD;
}

void g3_attention_sum_groups(float *dk, float *dv, const float *dkh, const float *dvh, int B, int T, int NH, int NKV, int HD,
                       int nthreads) {
    const int G = NH / NKV;
    const long QD = (long)NH * HD, KD = (long)NKV * HD;
#pragma omp parallel for if ((long)B * T * NH * HD > 16384) schedule(static) num_threads(nthreads)
    for (long r = 0; r < (long)B * T; r++)
        for (int kh = 0; kh < NKV; kh++) {
            float *dkr = dk + r * KD + (long)kh * HD, *dvr = dv + r * KD + (long)kh * HD;
            memcpy(dkr, dkh + r * QD + (long)kh * G * HD, (size_t)HD * sizeof(float));
            memcpy(dvr, dvh + r * QD + (long)kh * G * HD, (size_t)HD * sizeof(float));
            for (int g = 1; g < G; g++) {
                g3_axpy(dkr, 1.0f, dkh + r * QD + (long)(kh * G + g) * HD, HD);
                g3_axpy(dvr, 1.0f, dvh + r * QD + (long)(kh * G + g) * HD, HD);
            }
        }
}

void g3_attention_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v,
                          int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                          float *scratch, int nthreads) {
    const int G = NH / NKV;
    const long QD = (long)NH * HD, KD = (long)NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (attn_work(B, T, NH, HD, window) > 32768)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *p = scratch + (long)omp_get_thread_num() * T;
            const int kh = h / G;
            for (int t = 0; t < T; t++) {
                const long row = (long)b * T + t;
                const float *qr = q + row * QD + (long)h * HD;
                const int lo = window > 0 ? G3_MAX(0, t - window + 1) : 0;
                float mx = -INFINITY;
                for (int j = lo; j <= t; j++) {
                    p[j] = score(qr, k + ((long)b * T + j) * KD + (long)kh * HD, HD, scale, softcap);
                    mx = p[j] > mx ? p[j] : mx;
                }
                double sum = 0;
                for (int j = lo; j <= t; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                lse[((long)b * NH + h) * T + t] = mx + (float)log(sum);
                float inv = (float)(1.0 / sum), *o = out + row * QD + (long)h * HD;
                memset(o, 0, (size_t)HD * sizeof(float));
                for (int j = lo; j <= t; j++) g3_axpy(o, p[j] * inv, v + ((long)b * T + j) * KD + (long)kh * HD, HD);
            }
        }
}

void g3_attention_backward_ref(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                           const float *q, const float *k, const float *v, const float *lse,
                           int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                           float *scratch, int nthreads) {
    const int G = NH / NKV;
    const long QD = (long)NH * HD, KD = (long)NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (attn_work(B, T, NH, HD, window) > 8192)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *p = scratch + (long)omp_get_thread_num() * 3 * T, *dp = p + T, *dcap = dp + T;
            const int kh = h / G;
            for (int t = 0; t < T; t++) {  // this head's slices of dkh/dvh belong to this task
                memset(dkh + ((long)b * T + t) * QD + (long)h * HD, 0, (size_t)HD * sizeof(float));
                memset(dvh + ((long)b * T + t) * QD + (long)h * HD, 0, (size_t)HD * sizeof(float));
            }
            for (int t = 0; t < T; t++) {
                const long row = (long)b * T + t;
                const float *qr = q + row * QD + (long)h * HD, *dor = dout + row * QD + (long)h * HD;
                float *dqr = dq + row * QD + (long)h * HD;
                const int lo = window > 0 ? G3_MAX(0, t - window + 1) : 0;
                const float L = lse[((long)b * NH + h) * T + t];
                // recompute the probabilities; dp = dout . v
                double D = 0;
                for (int j = lo; j <= t; j++) {
                    const long kr = ((long)b * T + j) * KD + (long)kh * HD;
                    float z = score(qr, k + kr, HD, scale, softcap);
                    dcap[j] = softcap > 0 ? 1.0f - (z / softcap) * (z / softcap) : 1.0f;
                    p[j] = expf(z - L);
                    dp[j] = g3_dot(dor, v + kr, HD);
                    D += (double)p[j] * dp[j];
                }
                // softmax backward, then through the cap and the scale: ds = dscore/ds_raw
                memset(dqr, 0, (size_t)HD * sizeof(float));
                for (int j = lo; j <= t; j++) {
                    const long kr = ((long)b * T + j) * KD + (long)kh * HD, kq = ((long)b * T + j) * QD + (long)h * HD;
                    float ds = p[j] * (dp[j] - (float)D) * dcap[j] * scale;
                    g3_axpy(dvh + kq, p[j], dor, HD);
                    g3_axpy(dqr, ds, k + kr, HD);
                    g3_axpy(dkh + kq, ds, qr, HD);
                }
            }
        }
    g3_attention_sum_groups(dk, dv, dkh, dvh, B, T, NH, NKV, HD, nthreads);
}

// ---- attention as blocked GEMMs ----
// Per (sequence, head) task, query rows go in blocks of QB: scores of the block against the
// keys it can see (lo..hi) are one GEMM, the masked softmax is row-wise, and P.V another
// GEMM. The GEMMs read the head's q, k, v and write its output and gradients in place, inside
// the [T, heads * HD] rows (strided GEMMs): copying each head out to contiguous panels and
// back was a quarter of the attention's time. They run single-threaded inside the task (the
// tasks are the parallelism). The head's keys and values are packed once per task, for the
// products whose B they are (g3_sgemm_packed): packing them again for every block was a
// quarter of those products. And those go a micro-tile of rows at a time, each only as far
// as its last row sees: the keys after it are masked (zero in P), and the scores there are
// never read.

enum { QB = 64 };  // query rows per block

// S [QB, T] and dS [QB, T], then up to three packed copies of a head's keys or values.
static long packed_floats(int T, int HD) { return (long)G3_MAX(g3_sgemm_packed_floats(HD, T), g3_sgemm_packed_floats(T, HD)); }
long g3_attention_scratch(int T, int HD) { return 2L * QB * T + 3 * packed_floats(T, HD); }

// The keys [lo, hi) a block of query rows [i0, i0 + R) may see, and, per row t, [first, t].
static inline int block_lo(int i0, int window) { return window > 0 ? G3_MAX(0, i0 - window + 1) : 0; }
static inline int row_first(int t, int window) { return window > 0 ? G3_MAX(0, t - window + 1) : 0; }

static inline float capped(float raw, float scale, float softcap) {
    float s = raw * scale;
    return softcap > 0 ? tanhf(s / softcap) * softcap : s;
}

// One row of raw scores z[n] of which [a, b] are visible: z becomes the softmax of the
// scaled (and capped) scores there and 0 elsewhere; returns the log-sum-exp. Without a cap
// (Gemma 3) on 8 lanes with exp256: libm's expf here was ~3% of a training step.
static float softmax_row_scalar(float *z, int n, int a, int b, float scale, float softcap) {
    float mx = -INFINITY;
    for (int j = a; j <= b; j++) {
        z[j] = capped(z[j], scale, softcap);
        mx = z[j] > mx ? z[j] : mx;
    }
    double sum = 0;
    for (int j = a; j <= b; j++) sum += z[j] = expf(z[j] - mx);
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < n; j++) z[j] = j >= a && j <= b ? z[j] * inv : 0.0f;
    return mx + (float)log(sum);
}

AVX2 static float softmax_row_avx2(float *z, int n, int a, int b, float scale) {
    const __m256 vs = _mm256_set1_ps(scale);
    float *x = z + a;
    const int len = b - a + 1;
    __m256 vmx = _mm256_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        _mm256_storeu_ps(x + i, v);
        vmx = _mm256_max_ps(vmx, v);
    }
    float mx = hmax8(vmx);
    for (int j = i; j < len; j++) x[j] *= scale, mx = x[j] > mx ? x[j] : mx;
    const __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    for (i = 0; i + 8 <= len; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        s0 = _mm256_add_pd(s0, lo_pd(e));
        s1 = _mm256_add_pd(s1, hi_pd(e));
    }
    double sum = hsum_pd(_mm256_add_pd(s0, s1));
    for (int j = i; j < len; j++) sum += x[j] = expf(x[j] - mx);
    const float inv = (float)(1.0 / sum);
    const __m256 vi = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= len; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vi));
    for (int j = i; j < len; j++) x[j] *= inv;
    memset(z, 0, (size_t)a * sizeof(float));
    memset(z + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
    return mx + (float)log(sum);
}

// The same on 16 lanes (the rows are in L1: the exponentials are the cost).
AVX512 static float softmax_row_avx512(float *z, int n, int a, int b, float scale) {
    const __m512 vs = _mm512_set1_ps(scale);
    float *x = z + a;
    const int len = b - a + 1;
    __m512 vmx = _mm512_set1_ps(-INFINITY);
    int i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), vs);
        _mm512_storeu_ps(x + i, v);
        vmx = _mm512_max_ps(vmx, v);
    }
    float mx = _mm512_reduce_max_ps(vmx);
    for (int j = i; j < len; j++) x[j] *= scale, mx = x[j] > mx ? x[j] : mx;
    const __m512 vm = _mm512_set1_ps(mx);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (i = 0; i + 16 <= len; i += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        s0 = _mm512_add_pd(s0, lo_pd16(e));
        s1 = _mm512_add_pd(s1, hi_pd16(e));
    }
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < len; j++) sum += x[j] = expf(x[j] - mx);
    const float inv = (float)(1.0 / sum);
    const __m512 vi = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= len; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vi));
    for (int j = i; j < len; j++) x[j] *= inv;
    memset(z, 0, (size_t)a * sizeof(float));
    memset(z + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
    return mx + (float)log(sum);
}

static float softmax_row(float *z, int n, int a, int b, float scale, float softcap) {
    int isa = g3_ops_isa();
    if (softcap <= 0 && isa >= 2) return softmax_row_avx512(z, n, a, b, scale);
    if (softcap <= 0 && isa == 1) return softmax_row_avx2(z, n, a, b, scale);
    return softmax_row_scalar(z, n, a, b, scale, softcap);
}

// Its backward from the raw scores z[n] (recomputed) and dp[n] = dO . V^T: z becomes the
// probabilities p, dp the gradient of the raw scores, p (dp - sum p dp) cap' scale; both 0
// outside [a, b]. The vector version computes each exponential once (the scalar one twice).
static void softmax_row_backward_scalar(float *z, float *dp, int n, int a, int b, float L, float scale, float softcap) {
    double D = 0;  // softmax backward needs D = sum p dp first
    for (int j = a; j <= b; j++) D += (double)expf(capped(z[j], scale, softcap) - L) * dp[j];
    for (int j = 0; j < n; j++) {
        if (j < a || j > b) { z[j] = dp[j] = 0.0f; continue; }
        float zc = capped(z[j], scale, softcap), p = expf(zc - L);
        float dcap = softcap > 0 ? 1.0f - (zc / softcap) * (zc / softcap) : 1.0f;
        z[j] = p;
        dp[j] = p * (dp[j] - (float)D) * dcap * scale;
    }
}

AVX2 static void softmax_row_backward_avx2(float *z, float *dp, int n, int a, int b, float L, float scale) {
    const __m256 vs = _mm256_set1_ps(scale), vl = _mm256_set1_ps(L);
    float *x = z + a, *d = dp + a;
    const int len = b - a + 1;
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 p = exp256(_mm256_sub_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), vl));
        __m256 dv = _mm256_loadu_ps(d + i);
        _mm256_storeu_ps(x + i, p);
        s0 = _mm256_fmadd_pd(lo_pd(p), lo_pd(dv), s0);  // products exact in double, as the reference's
        s1 = _mm256_fmadd_pd(hi_pd(p), hi_pd(dv), s1);
    }
    double D = hsum_pd(_mm256_add_pd(s0, s1));
    for (int j = i; j < len; j++) {
        float p = expf(x[j] * scale - L);
        x[j] = p;
        D += (double)p * d[j];
    }
    const __m256 vd = _mm256_set1_ps((float)D);
    for (i = 0; i + 8 <= len; i += 8)
        _mm256_storeu_ps(d + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_sub_ps(_mm256_loadu_ps(d + i), vd)), vs));
    for (int j = i; j < len; j++) d[j] = x[j] * (d[j] - (float)D) * scale;
    memset(z, 0, (size_t)a * sizeof(float));
    memset(z + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
    memset(dp, 0, (size_t)a * sizeof(float));
    memset(dp + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
}

AVX512 static void softmax_row_backward_avx512(float *z, float *dp, int n, int a, int b, float L, float scale) {
    const __m512 vs = _mm512_set1_ps(scale), vl = _mm512_set1_ps(L);
    float *x = z + a, *d = dp + a;
    const int len = b - a + 1;
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    int i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512 p = exp512(_mm512_sub_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), vl));
        __m512 dv = _mm512_loadu_ps(d + i);
        _mm512_storeu_ps(x + i, p);
        s0 = _mm512_fmadd_pd(lo_pd16(p), lo_pd16(dv), s0);  // products exact in double, as the reference's
        s1 = _mm512_fmadd_pd(hi_pd16(p), hi_pd16(dv), s1);
    }
    double D = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (int j = i; j < len; j++) {
        float p = expf(x[j] * scale - L);
        x[j] = p;
        D += (double)p * d[j];
    }
    const __m512 vd = _mm512_set1_ps((float)D);
    for (i = 0; i + 16 <= len; i += 16)
        _mm512_storeu_ps(d + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_sub_ps(_mm512_loadu_ps(d + i), vd)), vs));
    for (int j = i; j < len; j++) d[j] = x[j] * (d[j] - (float)D) * scale;
    memset(z, 0, (size_t)a * sizeof(float));
    memset(z + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
    memset(dp, 0, (size_t)a * sizeof(float));
    memset(dp + b + 1, 0, (size_t)(n - b - 1) * sizeof(float));
}

static void softmax_row_backward(float *z, float *dp, int n, int a, int b, float L, float scale, float softcap) {
    int isa = g3_ops_isa();
    if (softcap <= 0 && isa >= 2) softmax_row_backward_avx512(z, dp, n, a, b, L, scale);
    else if (softcap <= 0 && isa == 1) softmax_row_backward_avx2(z, dp, n, a, b, L, scale);
    else softmax_row_backward_scalar(z, dp, n, a, b, L, scale, softcap);
}

// A block's product against the head's packed keys or values, a micro-tile of rows at a time,
// each only as far as its last row sees (the later keys are masked): the scores
// C[R, n] = A[R, HD] . pb[:, lo ...] (keys the columns), or, over_keys, C[R, HD] =
// A[R, n] . pb[lo ..., :] (keys the depth: P . V, dS . K).
static void block_product(int over_keys, int R, int i0, int lo, int HD, const float *A, int lda, const G3PackedB *pb, float *C,
                          int ldc) {
    const int MR = g3_sgemm_packed_rows();
    for (int r0 = 0; r0 < R; r0 += MR) {
        const int mr = G3_MIN(MR, R - r0), nk = i0 + r0 + mr - lo;
        const float *a = A + (long)r0 * lda;
        float *c = C + (long)r0 * ldc;
        if (over_keys) g3_sgemm_packed(mr, HD, nk, a, lda, pb, lo, 0, c, ldc, 0);
        else g3_sgemm_packed(mr, nk, HD, a, lda, pb, 0, lo, c, ldc, 0);
    }
}

void g3_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                          int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                          float *scratch, int nthreads) {
    const int G = NH / NKV, QD = NH * HD, KD = NKV * HD, AL = g3_sgemm_packed_cols();
    const long per = g3_attention_scratch(T, HD), pk = packed_floats(T, HD);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (attn_work(B, T, NH, HD, window) > 32768)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *S = scratch + (long)omp_get_thread_num() * per, *pbuf = S + 2L * QB * T;  // S [QB, T]
            // the head's rows: [T, HD] each, QD (q, out) or KD (k, v) floats apart
            const float *Qh = q + (long)b * T * QD + (long)h * HD, *Kh = k + (long)b * T * KD + (long)(h / G) * HD;
            const float *Vh = v + (long)b * T * KD + (long)(h / G) * HD;
            float *Oh = out + (long)b * T * QD + (long)h * HD;
            G3PackedB Kt, Vp;  // op(B) = K^T [HD, T] for the scores, V [T, HD] for P . V
            g3_sgemm_pack_b(&Kt, pbuf, 1, HD, T, Kh, KD);
            g3_sgemm_pack_b(&Vp, pbuf + pk, 0, T, HD, Vh, KD);
            for (int i0 = 0; i0 < T; i0 += QB) {
                // lo down to a whole micro-panel: the keys before the window are masked anyway
                const int R = G3_MIN(QB, T - i0), lo = block_lo(i0, window) / AL * AL, n = i0 + R - lo;
                block_product(0, R, i0, lo, HD, Qh + (long)i0 * QD, QD, &Kt, S, n);  // S[R, n] = Q K^T
                for (int r = 0; r < R; r++) {
                    const int t = i0 + r, j0 = row_first(t, window);
                    lse[((long)b * NH + h) * T + t] = softmax_row(S + (long)r * n, n, j0 - lo, t - lo, scale, softcap);
                }
                block_product(1, R, i0, lo, HD, S, n, &Vp, Oh + (long)i0 * QD, QD);  // O = P V
            }
        }
}

void g3_attention_backward(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                           const float *q, const float *k, const float *v, const float *lse,
                           int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                           float *scratch, int nthreads) {
    const int G = NH / NKV, QD = NH * HD, KD = NKV * HD, AL = g3_sgemm_packed_cols();
    const long per = g3_attention_scratch(T, HD), pk = packed_floats(T, HD);
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (attn_work(B, T, NH, HD, window) > 8192)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *P = scratch + (long)omp_get_thread_num() * per, *dS = P + (long)QB * T;  // [QB, T] each
            float *pbuf = P + 2L * QB * T;
            const long qo = (long)b * T * QD + (long)h * HD, ko = (long)b * T * KD + (long)(h / G) * HD;
            const float *Qh = q + qo, *dOh = dout + qo, *Kh = k + ko, *Vh = v + ko;  // rows QD or KD apart
            float *dQh = dq + qo, *dKh = dkh + qo, *dVh = dvh + qo;                 // rows QD apart
            G3PackedB Kt, Vt, Kp;  // K^T and V^T [HD, T] (scores, dP), K [T, HD] (dQ = dS K)
            g3_sgemm_pack_b(&Kt, pbuf, 1, HD, T, Kh, KD);
            g3_sgemm_pack_b(&Vt, pbuf + pk, 1, HD, T, Vh, KD);
            g3_sgemm_pack_b(&Kp, pbuf + 2 * pk, 0, T, HD, Kh, KD);
            for (int t = 0; t < T; t++) {  // the key/value gradients accumulate over query blocks
                memset(dKh + (long)t * QD, 0, (size_t)HD * sizeof(float));
                memset(dVh + (long)t * QD, 0, (size_t)HD * sizeof(float));
            }
            for (int i0 = 0; i0 < T; i0 += QB) {
                const int R = G3_MIN(QB, T - i0), lo = block_lo(i0, window) / AL * AL, n = i0 + R - lo;
                const float *Qb = Qh + (long)i0 * QD, *dOb = dOh + (long)i0 * QD;
                block_product(0, R, i0, lo, HD, Qb, QD, &Kt, P, n);    // raw scores
                block_product(0, R, i0, lo, HD, dOb, QD, &Vt, dS, n);  // dP = dO V^T
                for (int r = 0; r < R; r++) {
                    const int t = i0 + r, j0 = row_first(t, window);
                    softmax_row_backward(P + (long)r * n, dS + (long)r * n, n, j0 - lo, t - lo, lse[((long)b * NH + h) * T + t],
                                         scale, softcap);
                }
                g3_sgemm_ld(1, 0, n, HD, R, P, n, dOb, QD, dVh + (long)lo * QD, QD, 1);  // dV += P^T dO
                block_product(1, R, i0, lo, HD, dS, n, &Kp, dQh + (long)i0 * QD, QD);  // dQ = dS K
                g3_sgemm_ld(1, 0, n, HD, R, dS, n, Qb, QD, dKh + (long)lo * QD, QD, 1);  // dK += dS^T Q
            }
        }
    g3_attention_sum_groups(dk, dv, dkh, dvh, B, T, NH, NKV, HD, nthreads);
}

