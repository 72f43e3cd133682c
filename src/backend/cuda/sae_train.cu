// sae_train.cu: a JumpReLU SAE's training step on the GPU (analysis/sae_train.c's step, in
// the same order and with the same formulas): the five matrix products through cuBLAS in f32
// (TF32 off, as g3cu_gemm's exact mode), the rest as small kernels. Sums that the CPU takes
// row by row in float (the column sums of the backward, the batch mean) are taken the same
// way, a thread per column walking the rows in order, so they round as the CPU's do; the
// reconstruction error and variance are per-block double partials added on the host in
// block order. No atomics but integer counts: a step gives the same bits every run.
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "common.cuh"

extern "C" {
#include "../backend.h"
}

struct G3DevSae {
    G3Cuda *cu;
    int D, S, cap;
    long np;
    float *p, *g, *m, *v;  // [np]: w_enc [D][S], b_enc [S], log_th [S], w_dec [S][D], b_dec [D]
    unsigned long long *fired;  // [S]
    float *x, *xs, *pre, *f, *xhat, *df;  // batch buffers, [cap] rows
    float *mean;                          // [D]
    double *part;                         // [2 * PARTS]
    unsigned long long *active;           // [1]
    int *bad;                             // [1]: the first non-finite input row, INT_MAX if none
};

namespace {

enum { PARTS = 256, TPB = 256 };

__global__ void k_scale(float *__restrict__ xs, int *__restrict__ bad, const float *__restrict__ x, long n, int D, float sc) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const float y = x[i] * sc;
        xs[i] = y;
        if (!isfinite(y)) atomicMin(bad, (int)(i / D));
    }
}

// pre += b_enc; f = pre > exp(log_th) ? pre : 0; count the active features
__global__ void k_encode(float *__restrict__ pre, float *__restrict__ f, unsigned long long *__restrict__ active,
                         const float *__restrict__ b_enc, const float *__restrict__ log_th, long n, int S) {
    unsigned long long cnt = 0;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const int j = (int)(i % S);
        const float pr = pre[i] + b_enc[j];
        const float fv = pr > expf(log_th[j]) ? pr : 0.0f;
        pre[i] = pr;
        f[i] = fv;
        cnt += fv != 0.0f;
    }
    for (int o = 16; o > 0; o >>= 1) cnt += __shfl_down_sync(0xffffffffu, cnt, o);
    if ((threadIdx.x & 31) == 0 && cnt) atomicAdd(active, cnt);
}

// mean[d] = sum over rows of xs[r][d] / n, in row order and in float (the CPU's rounding)
__global__ void k_colmean(float *__restrict__ mean, const float *__restrict__ xs, int n, int D) {
    const int d = blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D) return;
    float s = 0;
    for (int r = 0; r < n; r++) s += xs[(long)r * D + d] / n;
    mean[d] = s;
}

// xhat += b_dec; err += (xhat - xs)^2, var += (xs - mean)^2 (double partials per block);
// xhat becomes d loss / d xhat = 2 (xhat - xs) / n
__global__ void __launch_bounds__(TPB) k_recon(float *__restrict__ xhat, double *__restrict__ part, const float *__restrict__ xs,
                                               const float *__restrict__ b_dec, const float *__restrict__ mean, long total, int D,
                                               int n) {
    double err = 0, var = 0;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long)gridDim.x * blockDim.x) {
        const int d = (int)(i % D);
        const float xh = xhat[i] + b_dec[d];
        const double e = (double)xh - xs[i], u = (double)xs[i] - mean[d];
        err += e * e;
        var += u * u;
        xhat[i] = (float)(2 * e / n);
    }
    __shared__ double se[TPB / 32], sv[TPB / 32];
    err = warp_sum_d(err);
    var = warp_sum_d(var);
    if ((threadIdx.x & 31) == 0) {
        se[threadIdx.x >> 5] = err;
        sv[threadIdx.x >> 5] = var;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double a = 0, b = 0;
        for (int w = 0; w < TPB / 32; w++) {
            a += se[w];
            b += sv[w];
        }
        part[2 * blockIdx.x] = a;
        part[2 * blockIdx.x + 1] = b;
    }
}

// out[c] = sum over rows of x[r][c] (double, row order)
__global__ void k_colsum(float *__restrict__ out, const float *__restrict__ x, int n, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double s = 0;
    for (int r = 0; r < n; r++) s += x[(long)r * C + c];
    out[c] = (float)s;
}

// The backward through the JumpReLU, a thread per feature walking the rows in order: the
// straight-through estimator's threshold gradient (rectangle kernel of width eps), df masked
// to the active features, b_enc's gradient, the firing counts.
__global__ void k_back(float *__restrict__ df, float *__restrict__ g_log_th, float *__restrict__ g_b_enc,
                       unsigned long long *__restrict__ fired, const float *__restrict__ pre, const float *__restrict__ f,
                       const float *__restrict__ log_th, int n, int S, float inv_eps, float dpen_n) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= S) return;
    const float th = expf(log_th[j]);
    float glt = 0, gb = 0;
    unsigned long long cnt = 0;
    for (int r = 0; r < n; r++) {
        const long i = (long)r * S + j;
        const float g = df[i], u = (pre[i] - th) * inv_eps;
        if (u > -0.5f && u < 0.5f) glt += th * (g * (-th * inv_eps) + dpen_n * (-inv_eps));
        const bool on = f[i] != 0.0f;
        const float d = on ? g : 0.0f;
        df[i] = d;
        gb += d;
        cnt += on;
    }
    g_log_th[j] = glt;
    g_b_enc[j] = gb;
    fired[j] += cnt;
}

// decoder rows stay unit-norm: each row's gradient loses its component along the row
// (renorm = 0), or each row is scaled back to norm 1 (renorm = 1); a block per row
__global__ void __launch_bounds__(TPB) k_rows(float *__restrict__ g, float *__restrict__ w, int D, int renorm) {
    const long o = (long)blockIdx.x * D;
    double s = 0;
    for (int d = threadIdx.x; d < D; d += TPB) s += renorm ? (double)w[o + d] * w[o + d] : (double)g[o + d] * w[o + d];
    __shared__ double sw[TPB / 32];
    __shared__ double tot;
    s = warp_sum_d(s);
    if ((threadIdx.x & 31) == 0) sw[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double a = 0;
        for (int k = 0; k < TPB / 32; k++) a += sw[k];
        tot = a;
    }
    __syncthreads();
    if (renorm) {
        if (tot > 0) {
            const float nrm = (float)sqrt(tot);
            for (int d = threadIdx.x; d < D; d += TPB) w[o + d] /= nrm;
        }
    } else {
        const float dot = (float)tot;
        for (int d = threadIdx.x; d < D; d += TPB) g[o + d] -= dot * w[o + d];
    }
}

__global__ void k_adam(float *__restrict__ p, float *__restrict__ m, float *__restrict__ v, const float *__restrict__ g, long np,
                       float step, float isb2, float b1, float b2) {
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < np; i += (long)gridDim.x * blockDim.x) {
        const float gi = g[i];
        const float mi = b1 * m[i] + (1 - b1) * gi, vi = b2 * v[i] + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) * isb2 + 1e-8f);
    }
}

unsigned blocks_for(long n) { return (unsigned)(n < 1 ? 1 : n / TPB + 1 < 4096 ? n / TPB + 1 : 4096); }

void free_batch(G3DevSae *s) {
    float **b[] = {&s->x, &s->xs, &s->pre, &s->f, &s->xhat, &s->df};
    for (float **q : b) {
        g3cu_free(s->cu, *q);
        *q = NULL;
    }
    s->cap = 0;
}

int grow(G3DevSae *s, int n) {
    if (n <= s->cap) return 0;
    free_batch(s);
    const size_t nd = (size_t)n * s->D * sizeof(float), ns = (size_t)n * s->S * sizeof(float);
    s->x = (float *)g3cu_malloc(s->cu, nd);
    s->xs = (float *)g3cu_malloc(s->cu, nd);
    s->xhat = (float *)g3cu_malloc(s->cu, nd);
    s->pre = (float *)g3cu_malloc(s->cu, ns);
    s->f = (float *)g3cu_malloc(s->cu, ns);
    s->df = (float *)g3cu_malloc(s->cu, ns);
    if (!s->x || !s->xs || !s->xhat || !s->pre || !s->f || !s->df) {
        free_batch(s);
        return -1;
    }
    s->cap = n;
    return 0;
}

}  // namespace

extern "C" G3Cuda *g3_backend_cuda_context(G3Backend *be);

extern "C" void g3_dev_sae_free(G3DevSae *s) {
    if (!s) return;
    free_batch(s);
    void *b[] = {s->p, s->g, s->m, s->v, s->fired, s->mean, s->part, s->active, s->bad};
    for (void *q : b) g3cu_free(s->cu, q);
    free(s);
}

extern "C" G3DevSae *g3_dev_sae_new(G3Backend *be, int D, int S, const float *p, const float *m, const float *v,
                                    const int64_t *fired) {
    G3Cuda *cu = g3_backend_cuda_context(be);
    if (!cu) {
        g3_errorf("SAE training on the GPU: the backend is not a CUDA one");
        return NULL;
    }
    G3DevSae *s = (G3DevSae *)calloc(1, sizeof *s);
    if (!s) {
        g3_errorf("SAE training on the GPU: out of host memory");
        return NULL;
    }
    s->cu = cu;
    s->D = D;
    s->S = S;
    s->np = 2L * D * S + 2L * S + D;
    const size_t pb = (size_t)s->np * sizeof(float);
    s->p = (float *)g3cu_malloc(cu, pb);
    s->g = (float *)g3cu_malloc(cu, pb);
    s->m = (float *)g3cu_malloc(cu, pb);
    s->v = (float *)g3cu_malloc(cu, pb);
    s->fired = (unsigned long long *)g3cu_malloc(cu, (size_t)S * 8);
    s->mean = (float *)g3cu_malloc(cu, (size_t)D * sizeof(float));
    s->part = (double *)g3cu_malloc(cu, 2 * PARTS * sizeof(double));
    s->active = (unsigned long long *)g3cu_malloc(cu, 8);
    s->bad = (int *)g3cu_malloc(cu, sizeof(int));
    if (!s->p || !s->g || !s->m || !s->v || !s->fired || !s->mean || !s->part || !s->active || !s->bad ||
        g3cu_upload(cu, s->p, p, pb) || g3cu_upload(cu, s->m, m, pb) || g3cu_upload(cu, s->v, v, pb) ||
        g3cu_upload(cu, s->fired, fired, (size_t)S * 8) || g3cu_sync(cu)) {
        g3_dev_sae_free(s);
        return NULL;
    }
    return s;
}

extern "C" int g3_dev_sae_step(G3DevSae *s, const float *x, int n, const G3DevSaeStep *k, G3DevSaeStats *st) {
    G3Cuda *cu = s->cu;
    const int D = s->D, S = s->S;
    if (grow(s, n)) return -1;
    float *w_enc = s->p, *b_enc = w_enc + (long)D * S, *log_th = b_enc + S, *w_dec = log_th + S, *b_dec = w_dec + (long)S * D;
    float *g_w_enc = s->g, *g_b_enc = g_w_enc + (long)D * S, *g_log_th = g_b_enc + S, *g_w_dec = g_log_th + S,
          *g_b_dec = g_w_dec + (long)S * D;
    const long nd = (long)n * D, ns = (long)n * S;
    const int none = INT_MAX;
    unsigned long long zero = 0;
    if (g3cu_upload(cu, s->x, x, (size_t)nd * sizeof(float)) || g3cu_upload(cu, s->bad, &none, sizeof none) ||
        g3cu_upload(cu, s->active, &zero, 8))
        return -1;
    k_scale<<<blocks_for(nd), TPB, 0, cu->stream>>>(s->xs, s->bad, s->x, nd, D, k->scale);
    if (g3cu_launched("SAE step (scale)")) return -1;
    // forward: pre = xs W_enc + b_enc; f; xhat = f W_dec + b_dec
    if (g3cu_gemm(cu, 0, 0, n, S, D, s->xs, w_enc, s->pre, 0, G3CU_EXACT)) return -1;
    k_encode<<<blocks_for(ns), TPB, 0, cu->stream>>>(s->pre, s->f, s->active, b_enc, log_th, ns, S);
    if (g3cu_launched("SAE step (encode)") || g3cu_gemm(cu, 0, 0, n, D, S, s->f, w_dec, s->xhat, 0, G3CU_EXACT)) return -1;
    k_colmean<<<(D + TPB - 1) / TPB, TPB, 0, cu->stream>>>(s->mean, s->xs, n, D);
    k_recon<<<PARTS, TPB, 0, cu->stream>>>(s->xhat, s->part, s->xs, b_dec, s->mean, nd, D, n);
    if (g3cu_launched("SAE step (reconstruction)")) return -1;
    double part[2 * PARTS];
    int bad;
    unsigned long long active;
    if (g3cu_download(cu, part, s->part, sizeof part) || g3cu_download(cu, &bad, s->bad, sizeof bad) ||
        g3cu_download(cu, &active, s->active, 8))
        return -1;
    if (bad != INT_MAX) return g3_errorf("SAE training: activation row %d is not finite", bad);
    double err = 0, var = 0;
    for (int b = 0; b < PARTS; b++) {
        err += part[2 * b];
        var += part[2 * b + 1];
    }
    const double l0 = (double)active / n;
    double pen = 0, dpen = 0;  // penalty and dP/dL0
    if (k->l0_target > 0) {
        const double u = l0 / k->l0_target - 1;
        pen = k->lambda * u * u;
        dpen = 2 * k->lambda * u / k->l0_target;
    } else {
        pen = k->lambda * l0;
        dpen = k->lambda;
    }
    // backward (xhat holds d loss / d xhat)
    k_colsum<<<(D + TPB - 1) / TPB, TPB, 0, cu->stream>>>(g_b_dec, s->xhat, n, D);
    if (g3cu_launched("SAE step (b_dec)") || g3cu_gemm(cu, 1, 0, S, D, n, s->f, s->xhat, g_w_dec, 0, G3CU_EXACT) ||
        g3cu_gemm(cu, 0, 1, n, S, D, s->xhat, w_dec, s->df, 0, G3CU_EXACT))
        return -1;
    k_back<<<(S + TPB - 1) / TPB, TPB, 0, cu->stream>>>(s->df, g_log_th, g_b_enc, s->fired, s->pre, s->f, log_th, n, S, k->inv_eps,
                                                         (float)(dpen / n));
    if (g3cu_launched("SAE step (JumpReLU backward)") || g3cu_gemm(cu, 1, 0, D, S, n, s->xs, s->df, g_w_enc, 0, G3CU_EXACT)) return -1;
    k_rows<<<S, TPB, 0, cu->stream>>>(g_w_dec, w_dec, D, 0);
    k_adam<<<blocks_for(s->np), TPB, 0, cu->stream>>>(s->p, s->m, s->v, s->g, s->np, k->step, k->isb2, k->b1, k->b2);
    k_rows<<<S, TPB, 0, cu->stream>>>(g_w_dec, w_dec, D, 1);
    if (g3cu_launched("SAE step (Adam)") || g3cu_sync(cu)) return -1;
    st->err = err;
    st->var = var;
    st->active = (int64_t)active;
    st->pen = pen;
    return 0;
}

extern "C" int g3_dev_sae_get(G3DevSae *s, float *p, float *m, float *v, int64_t *fired) {
    const size_t pb = (size_t)s->np * sizeof(float);
    if ((p && g3cu_download(s->cu, p, s->p, pb)) || (m && g3cu_download(s->cu, m, s->m, pb)) ||
        (v && g3cu_download(s->cu, v, s->v, pb)) || (fired && g3cu_download(s->cu, fired, s->fired, (size_t)s->S * 8)))
        return -1;
    return g3cu_sync(s->cu);
}
