// linear_quant.c: the linear layer over block-quantized weights (see linear_quant.h). Each weight
// row is read once per call and, for a batch of activation rows, reused from cache across a
// tile of rows; threads split the output columns. The exact path is plain C (the reference);
// the fast path quantizes the activations once per call and runs the quant_dot.h kernels
// (every ggml type we read: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K); exact mode keeps
// the f32 references (Q8_0 / Q4_0 direct, the others widened row by row).
#include "linear_quant.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/cpu/quant_dot.h"
#include "../../kernels/cpu/quant_gemm.h"
#include "../../kernels/kernels.h"
#include "../../tensor/quant.h"

// sum_k W[k] x[k] over nb blocks of one Q8_0 row.
static float dot_q8_0(const G3BlockQ8_0 *b, const float *x, int nb) {
    float acc = 0.0f;
    for (int i = 0; i < nb; i++, x += G3_QK8_0) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // four chains: the adds need not wait on each other
        for (int j = 0; j < G3_QK8_0; j += 4) {
            s0 += (float)b[i].qs[j] * x[j];
            s1 += (float)b[i].qs[j + 1] * x[j + 1];
            s2 += (float)b[i].qs[j + 2] * x[j + 2];
            s3 += (float)b[i].qs[j + 3] * x[j + 3];
        }
        acc += ((s0 + s1) + (s2 + s3)) * g3_f16_to_f32(b[i].d);
    }
    return acc;
}

// The same for Q4_0: element j of a block in the low nibble of byte j, j + 16 in the high one.
static float dot_q4_0(const G3BlockQ4_0 *b, const float *x, int nb) {
    float acc = 0.0f;
    for (int i = 0; i < nb; i++, x += G3_QK4_0) {
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (int j = 0; j < G3_QK4_0 / 2; j += 2) {
            s0 += (float)((b[i].qs[j] & 0x0f) - 8) * x[j];
            s1 += (float)((b[i].qs[j] >> 4) - 8) * x[j + 16];
            s2 += (float)((b[i].qs[j + 1] & 0x0f) - 8) * x[j + 1];
            s3 += (float)((b[i].qs[j + 1] >> 4) - 8) * x[j + 17];
        }
        acc += ((s0 + s1) + (s2 + s3)) * g3_f16_to_f32(b[i].d);
    }
    return acc;
}

// Per calling thread, grown on demand and kept: the quantized activations.
static _Thread_local G3BlockQ8A *qa_buf;
static _Thread_local size_t qa_cap;

static G3BlockQ8A *qa_scratch(size_t n) {
    if (n > qa_cap) {
        free(qa_buf);
        qa_cap = n + (n >> 2) + 16;
        qa_buf = g3_malloc(qa_cap * sizeof *qa_buf);
        if (!qa_buf) qa_cap = 0;
    }
    return qa_buf;
}

enum { RT = 8 };  // activation rows per tile: a weight row stays in L1 while they pass

// Many rows (prefill): the product is compute-bound, and the f32 GEMM's tiles beat one dot per
// (row, column). Slices of the weight rows are widened to f32 (the traits' to_f32, in
// parallel) and multiplied by g3_sgemm: the widening costs N x K once per call, shared by the R
// rows. Slices keep the f32 copy near 16 MB (a 262144-row embedding is never widened whole).
enum { GEMM_MIN_ROWS = 8, QGEMM_MIN_ROWS = 4 };
static _Thread_local float *wf_buf, *yt_buf;
static _Thread_local size_t wf_cap, yt_cap;

static float *grow(float **buf, size_t *cap, size_t n) {
    if (n > *cap) {
        g3_free_aligned(*buf);
        *buf = g3_malloc_aligned(n * sizeof **buf);
        *cap = *buf ? n : 0;
    }
    return *buf;
}

static int linear_gemm(float *y, const float *x, const G3Weight *w, int R) {
    const int N = (int)w->rows, K = (int)w->cols;
    const G3TypeTraits *tt = g3_type(w->type);
    int S = (int)G3_MIN((int64_t)N, G3_MAX((int64_t)64, ((int64_t)4 << 20) / K));
    float *wf = grow(&wf_buf, &wf_cap, (size_t)S * K), *yt = S < N ? grow(&yt_buf, &yt_cap, (size_t)R * S) : y;
    if (!wf || !yt) return -1;
    for (int n0 = 0; n0 < N; n0 += S) {
        const int ns = G3_MIN(S, N - n0);
#pragma omp parallel for schedule(static) if ((long)ns * K > 65536)
        for (int n = 0; n < ns; n++) tt->to_f32(wf + (size_t)n * K, g3_weight_row(w, n0 + n), K);
        g3_sgemm(0, 1, R, ns, K, x, wf, yt, 0);
        if (yt != y)
            for (int r = 0; r < R; r++) memcpy(y + (size_t)r * N + n0, yt + (size_t)r * ns, (size_t)ns * sizeof *y);
    }
    return 0;
}

// Many rows, the int8 GEMM (kernels/cpu/quant_gemm.h): the activation rows quantized once
// (blocks of 32 with their half sums), then panels of 16 weight rows, each unpacked once into a
// per-thread buffer and swept by every row; threads split the panels.
static _Thread_local G3BlockQ8G *qg_buf;
static _Thread_local size_t qg_cap;
static _Thread_local G3QPanelBlock *pan_buf;
static _Thread_local size_t pan_cap;

static int linear_qgemm(float *y, const float *x, const G3Weight *w, int R, G3QGemmPanel kern) {
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32, np = (N + G3_QG_ROWS - 1) / G3_QG_ROWS;
    G3QGemmKind kind;
    if (g3_qgemm_kind(w->type, &kind)) return g3_errorf("linear_quant: no GEMM for %s", g3_dtype_name(w->type));
    if ((size_t)R * nb > qg_cap) {
        free(qg_buf);
        qg_cap = (size_t)R * nb;
        qg_buf = g3_malloc(qg_cap * sizeof *qg_buf);
        if (!qg_buf) return qg_cap = 0, -1;
    }
    G3BlockQ8G *qa = qg_buf;
    G3X16 x16;
    const int packed = g3_x16(w, g3_qdot_level(), &x16);
    const G3QGemmQuant quant = g3_qgemm_quantizer(g3_qdot_level());
#pragma omp parallel for schedule(static) if ((long)R * K > 65536)
    for (int r = 0; r < R; r++) quant(qa + (size_t)r * nb, x + (size_t)r * K, nb);
    int fail = 0;
#pragma omp parallel if ((long)N * K * R > 65536)
    {
        if ((size_t)nb > pan_cap) {
            g3_free_aligned(pan_buf);
            pan_buf = g3_malloc_aligned((size_t)nb * sizeof *pan_buf);
            pan_cap = pan_buf ? (size_t)nb : 0;
        }
        G3QPanelBlock *p = pan_buf;
        if (!p) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 4)
        for (int q = 0; q < np; q++) {
            if (!p) continue;
            const int n0 = q * G3_QG_ROWS, nr = G3_MIN(G3_QG_ROWS, N - n0);
            if (packed) {  // repacked at load: its groups of 16 rows are the panels
                x16.to_panel(p, x16.group(w->packed, q, nb), nb);
                if (q + 1 < np && (q + 1) % 4) {  // the next group's blocks (every other one of a pair's)
                    const char *next = (const char *)x16.group(w->packed, q + 1, nb);
                    for (int b = 0; b < nb; b++)
                        for (int64_t o = 0; o < x16.block_bytes; o += 64) __builtin_prefetch(next + b * x16.block_stride + o);
                }
            } else {
                g3_qgemm_pack(p, w->type, g3_weight_row(w, n0), w->row_bytes, nr, nb);
                if (q + 1 < np && (q + 1) % 4)  // the next panel of this thread's chunk of 4, fetched while this one runs
                    g3_qgemm_prefetch(w->type, g3_weight_row(w, n0 + G3_QG_ROWS), w->row_bytes, G3_MIN(G3_QG_ROWS, N - n0 - G3_QG_ROWS), nb);
            }
            kern(y + n0, N, p, nb, qa, R, nr, &kind);
        }
    }
    return fail ? g3_errorf("linear_quant: out of memory for the GEMM panels") : 0;
}

// A weight repacked at load (Q4_0, Q8_0, Q5_0, Q4_K, Q6_K: G3X16), a few rows: one product per group of 16
// weight rows and activation row; threads split the groups.
static int linear_x16(float *y, const float *x, const G3Weight *w, const G3X16 *x16, int R) {
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32, ng = (N + 15) / 16;
    G3BlockQ8A *qa = qa_scratch((size_t)R * nb);
    if (!qa) return -1;
    const G3QuantA quant = g3_qdot_quantizer(g3_qdot_level());
    for (int r = 0; r < R; r++) quant(qa + (size_t)r * nb, x + (size_t)r * K, nb);
    // chunks of ~1/6 of a thread's share, taken in turn: on a shared machine one core often
    // runs slower, and equal halves leave the other waiting (as g3_matmul's GEMV)
    const int chunk = G3_MAX(1, ng / (6 * omp_get_max_threads()));
#pragma omp parallel for schedule(dynamic, chunk) if ((long)N * K * R > 65536)
    for (int g = 0; g < ng; g++) {
        const uint8_t *grp = x16->group(w->packed, g, nb);
        const int n0 = g * 16, nr = G3_MIN(16, N - n0);
        for (int r = 0; r < R; r++) {
            float t[16];
            x16->gemv(t, grp, nb, qa + (size_t)r * nb, nr);
            memcpy(y + (size_t)r * N + n0, t, (size_t)nr * sizeof *t);
        }
    }
    return 0;
}

static int linear_fast(float *y, const float *x, const G3Weight *w, int R) {
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32;
    if (R >= QGEMM_MIN_ROWS) {
        G3QGemmPanel kern = g3_qgemm_kernel(g3_qdot_level(), w->type);
        if (kern) return linear_qgemm(y, x, w, R, kern);
    }
    G3X16 x16;
    if (g3_x16(w, g3_qdot_level(), &x16)) return linear_x16(y, x, w, &x16, R);
    if (R >= GEMM_MIN_ROWS) return linear_gemm(y, x, w, R);
    G3BlockQ8A *qa = qa_scratch((size_t)R * nb);
    if (!qa) return -1;
    const G3QuantA quant = g3_qdot_quantizer(g3_qdot_level());
#pragma omp parallel for schedule(static) if ((long)R * K > 65536)
    for (int r = 0; r < R; r++) quant(qa + (size_t)r * nb, x + (size_t)r * K, nb);
    const G3QDot dot = g3_qdot_kernel(g3_qdot(), w->type);
#pragma omp parallel for schedule(static) if ((long)N * K * R > 65536)
    for (int n = 0; n < N; n++) {
        const void *row = g3_weight_row(w, n);
        for (int r = 0; r < R; r++) y[(long)r * N + n] = dot(row, qa + (size_t)r * nb, nb);
    }
    return 0;
}

// Any other block type: each weight row widened to f32 (the traits' reference), then f32 dots.
static int linear_widen(float *y, const float *x, const G3Weight *w, int R) {
    const int N = (int)w->rows, K = (int)w->cols;
    const G3TypeTraits *tt = g3_type(w->type);
    int fail = 0;
#pragma omp parallel if ((long)N * K * R > 65536)
    {
        float *row = g3_malloc((size_t)K * sizeof *row);
        if (!row) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            if (!row) continue;
            tt->to_f32(row, g3_weight_row(w, n), K);
            for (int r = 0; r < R; r++) {
                const float *xr = x + (long)r * K;
                float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                int k = 0;
                for (; k + 4 <= K; k += 4) s0 += row[k] * xr[k], s1 += row[k + 1] * xr[k + 1], s2 += row[k + 2] * xr[k + 2], s3 += row[k + 3] * xr[k + 3];
                for (; k < K; k++) s0 += row[k] * xr[k];
                y[(long)r * N + n] = (s0 + s1) + (s2 + s3);
            }
        }
        free(row);
    }
    return fail ? -1 : 0;
}

int g3_cpu_linear_quant(float *y, const float *x, const G3Weight *w, int R, int exact) {
    const int N = (int)w->rows, K = (int)w->cols, nb = K / 32;
    const int q8 = w->type == G3_Q8_0;
    const G3TypeTraits *tt = g3_type(w->type);
    if (!tt || tt->block == 1 || !tt->to_f32) return g3_errorf("linear_quant: type %s is not a block type", g3_dtype_name(w->type));
    // outside exact mode every block type with a kernel (all ggml types we read: quant_dot.h)
    if (!exact && g3_qdot_kernel(g3_qdot(), w->type) && K % tt->block == 0) return linear_fast(y, x, w, R);
    if (!q8 && w->type != G3_Q4_0) return R >= GEMM_MIN_ROWS ? linear_gemm(y, x, w, R) : linear_widen(y, x, w, R);
#pragma omp parallel for schedule(static) if ((long)N * K * R > 65536)
    for (int n = 0; n < N; n++) {
        const void *row = g3_weight_row(w, n);
        for (int r0 = 0; r0 < R; r0 += RT)
            for (int r = r0; r < R && r < r0 + RT; r++) {
                const float *xr = x + (long)r * K;
                y[(long)r * N + n] = q8 ? dot_q8_0(row, xr, nb) : dot_q4_0(row, xr, nb);
            }
    }
    return 0;
}
