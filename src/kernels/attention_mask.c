// attention_mask.c: batch attention under a block mask (backend.h G3AttnMask: Set Block
// Decoding's doubled layout [clean ; noisy copy]), forward and backward, beside the direct
// per-row loops that are their scalar references. The mask is not a band, so the fast
// versions compute each (sequence, head)'s full [T, T] scores as one GEMM, mask them row by
// row, and multiply by V as a second GEMM; backward recomputes the probabilities from the
// kept log-sum-exp, as attention_train.c does.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../base/base.h"
#include "kernels.h"
#include "ops.h"
#include "train_ops.h"

static inline float capped(float raw, float scale, float softcap) {
    float s = raw * scale;
    return softcap > 0 ? tanhf(s / softcap) * softcap : s;
}

static long masked_work(int B, int T, int NH, int HD) { return (long)B * NH * T * T * HD; }

// ---- scalar references ----

void g3_attention_masked_forward_ref(float *out, float *lse, const float *q, const float *k, const float *v, const G3AttnMask *mask,
                                     int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                     float *scratch, int nthreads) {
    const int G = NH / NKV;
    const long QD = (long)NH * HD, KD = (long)NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (masked_work(B, T, NH, HD) > 32768)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const G3AttnMask mseq = g3_attn_mask_seq(mask, b), *ms = &mseq;  // sequence b's rows
            float *p = scratch + (long)omp_get_thread_num() * 3 * T;
            const int kh = h / G;
            for (int t = 0; t < T; t++) {
                const long row = (long)b * T + t;
                const float *qr = q + row * QD + (long)h * HD;
                float mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    if (!g3_attn_mask_sees(ms, t, j, window)) continue;
                    p[j] = capped(g3_dot(qr, k + ((long)b * T + j) * KD + (long)kh * HD, HD), scale, softcap);
                    mx = p[j] > mx ? p[j] : mx;
                }
                double sum = 0;
                for (int j = 0; j < T; j++)
                    if (g3_attn_mask_sees(ms, t, j, window)) sum += p[j] = expf(p[j] - mx);
                lse[((long)b * NH + h) * T + t] = mx + (float)log(sum);
                float inv = (float)(1.0 / sum), *o = out + row * QD + (long)h * HD;
                memset(o, 0, (size_t)HD * sizeof(float));
                for (int j = 0; j < T; j++)
                    if (g3_attn_mask_sees(ms, t, j, window)) g3_axpy(o, p[j] * inv, v + ((long)b * T + j) * KD + (long)kh * HD, HD);
            }
        }
}

void g3_attention_masked_backward_ref(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                                      const float *q, const float *k, const float *v, const float *lse, const G3AttnMask *mask,
                                      int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                      float *scratch, int nthreads) {
    const int G = NH / NKV;
    const long QD = (long)NH * HD, KD = (long)NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (masked_work(B, T, NH, HD) > 8192)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const G3AttnMask mseq = g3_attn_mask_seq(mask, b), *ms = &mseq;  // sequence b's rows
            float *p = scratch + (long)omp_get_thread_num() * 3 * T, *dp = p + T, *dcap = dp + T;
            const int kh = h / G;
            for (int t = 0; t < T; t++) {
                memset(dkh + ((long)b * T + t) * QD + (long)h * HD, 0, (size_t)HD * sizeof(float));
                memset(dvh + ((long)b * T + t) * QD + (long)h * HD, 0, (size_t)HD * sizeof(float));
            }
            for (int t = 0; t < T; t++) {
                const long row = (long)b * T + t;
                const float *qr = q + row * QD + (long)h * HD, *dor = dout + row * QD + (long)h * HD;
                float *dqr = dq + row * QD + (long)h * HD;
                const float L = lse[((long)b * NH + h) * T + t];
                double D = 0;
                for (int j = 0; j < T; j++) {
                    if (!g3_attn_mask_sees(ms, t, j, window)) continue;
                    const long kr = ((long)b * T + j) * KD + (long)kh * HD;
                    float z = capped(g3_dot(qr, k + kr, HD), scale, softcap);
                    dcap[j] = softcap > 0 ? 1.0f - (z / softcap) * (z / softcap) : 1.0f;
                    p[j] = expf(z - L);
                    dp[j] = g3_dot(dor, v + kr, HD);
                    D += (double)p[j] * dp[j];
                }
                memset(dqr, 0, (size_t)HD * sizeof(float));
                for (int j = 0; j < T; j++) {
                    if (!g3_attn_mask_sees(ms, t, j, window)) continue;
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

// ---- as GEMMs over the full square ----

long g3_attention_masked_scratch(int T) { return 2L * T * T + T; }

void g3_attention_masked_forward(float *out, float *lse, const float *q, const float *k, const float *v, const G3AttnMask *mask,
                                 int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                 float *scratch, int nthreads) {
    const int G = NH / NKV, QD = NH * HD, KD = NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (masked_work(B, T, NH, HD) > 32768)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const G3AttnMask mseq = g3_attn_mask_seq(mask, b), *ms = &mseq;  // sequence b's rows
            float *S = scratch + (long)omp_get_thread_num() * g3_attention_masked_scratch(T);  // [T, T]
            const float *Qh = q + (long)b * T * QD + (long)h * HD, *Kh = k + (long)b * T * KD + (long)(h / G) * HD;
            const float *Vh = v + (long)b * T * KD + (long)(h / G) * HD;
            g3_sgemm_ld(0, 1, T, T, HD, Qh, QD, Kh, KD, S, T, 0);  // S = Q K^T
            for (int t = 0; t < T; t++) {
                float *z = S + (long)t * T, mx = -INFINITY;
                for (int j = 0; j < T; j++)
                    if (g3_attn_mask_sees(ms, t, j, window)) {
                        z[j] = capped(z[j], scale, softcap);
                        mx = z[j] > mx ? z[j] : mx;
                    }
                double sum = 0;
                for (int j = 0; j < T; j++) {
                    if (g3_attn_mask_sees(ms, t, j, window)) sum += z[j] = expf(z[j] - mx);
                    else z[j] = 0.0f;
                }
                const float inv = (float)(1.0 / sum);
                for (int j = 0; j < T; j++) z[j] *= inv;
                lse[((long)b * NH + h) * T + t] = mx + (float)log(sum);
            }
            g3_sgemm_ld(0, 0, T, HD, T, S, T, Vh, KD, out + (long)b * T * QD + (long)h * HD, QD, 0);  // O = P V
        }
}

void g3_attention_masked_backward(float *dq, float *dk, float *dv, float *dkh, float *dvh, const float *dout,
                                  const float *q, const float *k, const float *v, const float *lse, const G3AttnMask *mask,
                                  int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap,
                                  float *scratch, int nthreads) {
    const int G = NH / NKV, QD = NH * HD, KD = NKV * HD;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(nthreads) if (masked_work(B, T, NH, HD) > 8192)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const G3AttnMask mseq = g3_attn_mask_seq(mask, b), *ms = &mseq;  // sequence b's rows
            float *P = scratch + (long)omp_get_thread_num() * g3_attention_masked_scratch(T), *dS = P + (long)T * T;
            float *dcap = dS + (long)T * T;  // [T] one row's cap derivative
            const long qo = (long)b * T * QD + (long)h * HD, ko = (long)b * T * KD + (long)(h / G) * HD;
            const float *Qh = q + qo, *dOh = dout + qo, *Kh = k + ko, *Vh = v + ko;
            g3_sgemm_ld(0, 1, T, T, HD, Qh, QD, Kh, KD, P, T, 0);    // raw scores
            g3_sgemm_ld(0, 1, T, T, HD, dOh, QD, Vh, KD, dS, T, 0);  // dP = dO V^T
            for (int t = 0; t < T; t++) {
                float *z = P + (long)t * T, *d = dS + (long)t * T;
                const float L = lse[((long)b * NH + h) * T + t];
                double D = 0;  // softmax backward needs D = sum p dp first
                for (int j = 0; j < T; j++) {
                    if (!g3_attn_mask_sees(ms, t, j, window)) { z[j] = d[j] = dcap[j] = 0.0f; continue; }
                    const float zc = capped(z[j], scale, softcap);
                    dcap[j] = softcap > 0 ? 1.0f - (zc / softcap) * (zc / softcap) : 1.0f;
                    z[j] = expf(zc - L);
                    D += (double)z[j] * d[j];
                }
                for (int j = 0; j < T; j++) d[j] = z[j] * (d[j] - (float)D) * dcap[j] * scale;  // 0 where masked (z = 0)
            }
            g3_sgemm_ld(1, 0, T, HD, T, P, T, dOh, QD, dvh + qo, QD, 0);  // dV = P^T dO
            g3_sgemm_ld(0, 0, T, HD, T, dS, T, Kh, KD, dq + qo, QD, 0);   // dQ = dS K
            g3_sgemm_ld(1, 0, T, HD, T, dS, T, Qh, QD, dkh + qo, QD, 0);  // dK = dS^T Q
        }
    g3_attention_sum_groups(dk, dv, dkh, dvh, B, T, NH, NKV, HD, nthreads);
}
