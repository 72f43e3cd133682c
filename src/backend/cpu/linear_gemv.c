// linear_gemv.c: the CPU's decode products (a few activation rows) run as column ranges that
// any thread of one parallel region can take, so that the fused ops of backend.h cost one
// parallel region each: linear_multi (q, k and v: three regions before, two of them on
// 256-row matrices where the threads' hand-offs cost as much as the product) and linear_geglu
// (gate and up, then GeGLU on each chunk of columns while it is in cache: one region for
// three). On a machine shared with other work a region's end waits until the other thread
// has been scheduled; fewer regions per layer is most of what decode can gain outside the
// products themselves.
//
// The activations are prepared once per call in the calling thread (int8 blocks for the
// block types, the bf16 copy for fast BF16) and the column ranges call the kernels that
// linear would: per output the same arithmetic, so the fused ops give linear's results bit for
// bit (test_linear_gemv), whatever the chunks.
#include <omp.h>
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/cpu/quant_dot.h"
#include "../../kernels/kernels.h"
#include "../../kernels/train_ops.h"
#include "linear_quant.h"
#include "pool.h"

typedef enum { GEMV_NONE = 0, GEMV_FLOAT, GEMV_QDOT, GEMV_X16 } GemvKind;  // X16: repacked at load (G3X16)

typedef struct {
    GemvKind kind;
    const G3Weight *w;
    float *y;
    int R, N, K, nb, fast;
    const void *xop;  // GEMV_FLOAT: g3_matmul_operand's; the block types: R x nb int8 blocks
    G3QDot dot;
    G3X16 x16;
} Gemv;

// Which kernel cpu_linear would run for w with R rows (GEMV_NONE: a product of many rows, a
// mode or type these ops leave to linear).
static GemvKind gemv_kind(const G3Weight *w, int R, G3MatmulMode mode) {
    if (R < 1 || R >= G3_GEMV_MAX_ROWS) return GEMV_NONE;
    switch (w->type) {
    case G3_F32: return mode == G3_MM_BF16 ? GEMV_NONE : GEMV_FLOAT;  // g3_sgemm: g3_matmul for R <= 4
    case G3_BF16:
    case G3_F16: return GEMV_FLOAT;
    default: {
        const G3TypeTraits *tt = g3_type(w->type);
        if (mode == G3_MM_EXACT || !tt || w->cols % tt->block || !g3_qdot_kernel(g3_qdot(), w->type))
            return GEMV_NONE;
        G3X16 x16;
        return g3_x16(w, g3_qdot_level(), &x16) ? GEMV_X16 : GEMV_QDOT;
    }
    }
}

// Per calling thread, grown on demand and kept: the int8 activation blocks.
static _Thread_local G3BlockQ8A *qa_buf;
static _Thread_local size_t qa_cap;

// Prepares n products of the same x (R rows of K); the block types share one set of int8
// blocks, the float types one operand (all of them of one float type). 1: not for these ops
// (the caller runs linear), 0 ready, -1 no memory.
static int gemv_prepare(Gemv *g, int n, float *const *y, const float *x, const G3Weight *const *w, int R, G3MatmulMode mode) {
    const int K = (int)w[0]->cols;
    int nquant = 0;
    for (int i = 0; i < n; i++) {
        g[i] = (Gemv){gemv_kind(w[i], R, mode), w[i], y[i], R, (int)w[i]->rows, K, K / 32, mode != G3_MM_EXACT, NULL, NULL, {0}};
        if (!g[i].kind || w[i]->cols != K) return 1;
        if (g[i].kind == GEMV_FLOAT && w[i]->type != w[0]->type) return 1;
        nquant += g[i].kind != GEMV_FLOAT;
    }
    if (nquant && nquant != n) return 1;
    if (!nquant) {
        const void *xop = g3_matmul_operand(x, w[0]->type, R, K, g[0].fast);
        if (!xop) return -1;
        for (int i = 0; i < n; i++) g[i].xop = xop;
        return 0;
    }
    const int nb = K / 32;
    if ((size_t)R * nb > qa_cap) {
        g3_free_aligned(qa_buf);
        qa_buf = g3_malloc_aligned((size_t)R * nb * sizeof *qa_buf);
        qa_cap = qa_buf ? (size_t)R * nb : 0;
        if (!qa_buf) return -1;
    }
    const G3QuantA quant = g3_qdot_quantizer(g3_qdot_level());  // linear_quant.c's, so the same blocks
    for (int r = 0; r < R; r++) quant(qa_buf + (size_t)r * nb, x + (size_t)r * K, nb);
    for (int i = 0; i < n; i++) {
        g[i].xop = qa_buf;
        if (g[i].kind == GEMV_X16) g3_x16(w[i], g3_qdot_level(), &g[i].x16);
        else g[i].dot = g3_qdot_kernel(g3_qdot(), w[i]->type);
    }
    return 0;
}

// Columns [n0, n1) of g's product; n0 a multiple of 32 (the repacked groups' pairs).
static void gemv_cols(const Gemv *g, int n0, int n1) {
    const int R = g->R, N = g->N, nb = g->nb;
    const G3BlockQ8A *qa = g->xop;
    switch (g->kind) {
    case GEMV_FLOAT: g3_matmul_cols(g->y, g->xop, g->w->data, g->w->type, R, g->K, N, n0, n1, g->fast); break;
    case GEMV_QDOT:
        for (int n = n0; n < n1; n++) {
            const void *row = g3_weight_row(g->w, n);
            for (int r = 0; r < R; r++) g->y[(size_t)r * N + n] = g->dot(row, qa + (size_t)r * nb, nb);
        }
        break;
    case GEMV_X16:
        for (int n = n0; n < n1;) {
            const uint8_t *grp = g->x16.group(g->w->packed, n / 16, nb);
            // two full groups at a time where the range has them (each activation quad
            // broadcast once for 32 rows), else one
            const int two = n + 32 <= G3_MIN(n1, N), nr = two ? 32 : G3_MIN(16, N - n);
            for (int r = 0; r < R; r++) {
                float t[32];
                if (two) g->x16.gemv2(t, grp, nb, qa + (size_t)r * nb);
                else g->x16.gemv(t, grp, nb, qa + (size_t)r * nb, nr);
                memcpy(g->y + (size_t)r * N + n, t, (size_t)nr * sizeof *t);
            }
            n += two ? 32 : 16;
        }
        break;
    case GEMV_NONE: break;
    }
}

// The next chunk when `left` rows of the call remain: a share of them that shrinks as they
// do (as OpenMP's guided schedule), whole pairs of groups of 16 (the repacked groups' kernel
// takes two at a time), taken in turn by the threads. On a shared machine one core often runs
// slower, so equal halves leave the other waiting; fixed chunks of 1/6 of a thread's share
// left it waiting for half a chunk on average at the end of every region (the head's chunks
// were 14 MB of Q4_0 each); shrinking ones end on 32 rows. Measured on the 1B Q4_0 decode,
// tokens alternating between the two in one process: 1.7-2.6% less time a token.
static int next_chunk(long left) {
    const long c = left / (2L * omp_get_max_threads());
    return (int)G3_MAX(32, (c + 31) & ~31L);
}

// Below this many multiply-adds one thread does it (a fork/join costs more), as linear_quant.c.
enum { PAR_MACS = 65536, MAX_TASKS = 512 };

typedef struct {
    const Gemv *g;
    const int *task_g, *task_n0;
    int nt;
} MultiJob;

// Task t of linear_multi: its product's columns from its first to the next task's (or the end).
static void multi_task(void *ctx, int t, int tid) {
    (void)tid;
    const MultiJob *j = ctx;
    const Gemv *gi = &j->g[j->task_g[t]];
    const int n0 = j->task_n0[t], n1 = t + 1 < j->nt && j->task_g[t + 1] == j->task_g[t] ? j->task_n0[t + 1] : gi->N;
    gemv_cols(gi, n0, n1);
}

typedef struct {
    const Gemv *g;
    G3GegluEpi *e;
    const int *n0;  // [nt] each chunk's first column
    int nt, R;
} GegluJob;

// Chunk t of linear_geglu: the gate's columns into a, the up's into u, then a = gelu(a) u there.
static void geglu_task(void *ctx, int t, int tid) {
    (void)tid;
    const GegluJob *j = ctx;
    const int n0 = j->n0[t], n1 = t + 1 < j->nt ? j->n0[t + 1] : j->g[0].N;
    gemv_cols(&j->g[0], n0, n1);
    gemv_cols(&j->g[1], n0, n1);
    g3_geglu_epi(j->e, 0, n0, j->R, n1 - n0);
}

int g3_cpu_gemv_multi(int n, float *const *y, const float *x, const G3Weight *const *w, int R, G3MatmulMode mode) {
    if (n < 1 || n > 3) return 1;
    Gemv g[3];
    const int rc = gemv_prepare(g, n, y, x, w, R, mode);
    if (rc) return rc;
    long rows = 0;
    for (int i = 0; i < n; i++) rows += g[i].N;
    // the tasks: (product, first column), the products in turn cut into shrinking chunks
    int task_g[MAX_TASKS], task_n0[MAX_TASKS], nt = 0;
    long left = rows;
    for (int i = 0; i < n; i++)
        for (int n0 = 0; n0 < g[i].N; nt++) {
            // the last task this product may have (the later ones keep one each) takes its rest
            const int last = nt + 1 >= MAX_TASKS - (n - 1 - i);
            const int step = last ? g[i].N - n0 : G3_MIN(next_chunk(left), g[i].N - n0);
            task_g[nt] = i, task_n0[nt] = n0;
            n0 += step, left -= step;
        }
    const long macs = rows * g[0].K * (long)R;
    MultiJob job = {g, task_g, task_n0, nt};
    if (macs <= PAR_MACS) {
        for (int t = 0; t < nt; t++) multi_task(&job, t, 0);
    } else if (g3_cpu_pool_for(nt, multi_task, &job)) {  // the pool's threads, else OpenMP's
#pragma omp parallel for schedule(dynamic, 1)
        for (int t = 0; t < nt; t++) multi_task(&job, t, 0);
    }
    return 0;
}

int g3_cpu_gemv_geglu(float *a, float *u, const float *x, const G3Weight *wg, const G3Weight *wu, int R, int erf_form,
                      G3MatmulMode mode) {
    if (wg->rows != wu->rows || wg->type != wu->type) return 1;
    Gemv g[2];
    float *y[2] = {a, u};
    const G3Weight *w[2] = {wg, wu};
    const int rc = gemv_prepare(g, 2, y, x, w, R, mode);
    if (rc) return rc;
    const int N = g[0].N;
    const long macs = 2L * N * g[0].K * R;
    int n0s[MAX_TASKS], nt = 0;  // chunks of columns, each run on both products
    for (int n0 = 0; n0 < N; nt++) {
        n0s[nt] = n0;
        n0 += nt + 1 == MAX_TASKS ? N - n0 : G3_MIN(next_chunk(N - n0), N - n0);
    }
    // the gate's outputs go to a, then a = gelu(a) u on the chunk (element by element, so the
    // same bits as g3_geglu_forward over the whole rows)
    G3GegluEpi e = {.a = a, .g = a, .u = u, .ld = N, .erf_form = erf_form};
    GegluJob job = {g, &e, n0s, nt, R};
    if (macs <= PAR_MACS) {
        for (int t = 0; t < nt; t++) geglu_task(&job, t, 0);
    } else if (g3_cpu_pool_for(nt, geglu_task, &job)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int t = 0; t < nt; t++) geglu_task(&job, t, 0);
    }
    return 0;
}
