// attn_cache.c: the CPU backend's attention over a KV cache (inference: prefill and batched
// decode over segments of many sequences) and the append to that cache.
// Short segments (decode steps) run as (row, kv head, block of keys) tasks in parallel,
// reading keys straight from the cache, the blocks merged by their log-sum-exps; long ones
// gather one kv head's keys and values once and run blocks of AB query rows as GEMMs over only the keys some row of the block can see (causal, and inside
// the window on sliding layers): prefill does half the work of the full square, and a long
// prompt on a sliding layer a band of width W. With a score/pattern hook, each head's full
// scores are materialised, shown to the hook, softmaxed, shown again and multiplied by V.
// Scratch comes from the calling thread's workspace, sized for the thread count of this call.
#include <math.h>
#include <omp.h>
#include <string.h>

#include "../../base/base.h"
#include "../../kernels/kernels.h"
#include "../../kernels/ops.h"
#include "backend_cpu.h"
#include "pool.h"

enum { AB = 32 };  // attention row block

typedef struct {
    const G3KVCache *kv;
    int layer, NH, window;
    float scale, softcap;
    const float *q, *k, *v;  // this call's rows
    float *out;
    // scratch
    float *kbuf, *vbuf;      // [S][HD] keys/values of one segment, one kv head
    float *ablk;             // [nthreads][AB][S + 2 HD]
    float *scores;           // [n][S] one head's scores (hooked path)
    float *hq, *ho;          // [R][HD]
    float *tscores;          // [nthreads][NH / NKV][S]
    int S, nthreads;
} Attn;

// Cache row of position p for slot seq, kv head kh.
static inline float *cache_row(float *cache, const G3KVCache *kv, int l, int seq, int kh, int p) {
    long cap = kv->cap[l];
    return cache + (((long)seq * kv->nkv + kh) * cap + p % cap) * kv->hd;
}

// The exclusive end of the keys row i of segment sg sees: p + 1 (causal), or further inside an
// image's run (G3Segment.kend).
static inline int key_end(const G3Segment *sg, int i) { return sg->kend ? sg->kend[i] : sg->pos0 + i + 1; }

// The score of query position p against key position kp (keys end before `end`), already
// scaled; -inf if masked.
static inline float masked(float sc, int p, int kp, int end, int window, float softcap) {
    if (kp >= end || (window > 0 && p - kp >= window)) return -INFINITY;
    return softcap > 0 ? tanhf(sc / softcap) * softcap : sc;
}

static void attend_block(const Attn *A, const G3Segment *sg, int r0, int h, int lo, int i0, int i1, float *scr) {
    const int HD = A->kv->hd, NH = A->NH, W = A->window, pos0 = sg->pos0;
    const float scale = A->scale, cap = A->softcap;
    // visible keys of row i (index into kbuf): [first(i), pos0 + i - lo]
#define FIRST(i) (W > 0 ? G3_MAX(0, pos0 + (i) - (W - 1) - lo) : 0)
    int jb = 0;  // keys past the block's visible ones are not multiplied
    for (int i = i0; i < i1; i++) jb = G3_MAX(jb, key_end(sg, i) - lo);
    const int ja = FIRST(i0), w = jb - ja, nb = i1 - i0;
    float *qb = scr, *ob = qb + AB * HD, *blk = ob + AB * HD;  // [AB][HD], [AB][HD], [AB][w]
    for (int i = 0; i < nb; i++)
        memcpy(qb + (long)i * HD, A->q + (long)(r0 + i0 + i) * NH * HD + (long)h * HD, (size_t)HD * sizeof(float));
    g3_sgemm(0, 1, nb, w, HD, qb, A->kbuf + (long)ja * HD, blk, 0);  // blk[nb][w] = q K^T
    for (int i = 0; i < nb; i++) {
        float *row = blk + (long)i * w;
        int a = FIRST(i0 + i) - ja, b = key_end(sg, i0 + i) - lo - ja;  // visible: [a, b)
        for (int j = 0; j < a; j++) row[j] = 0;
        for (int j = a; j < b; j++) row[j] = cap > 0 ? tanhf(row[j] * scale / cap) * cap : row[j] * scale;
        g3_softmax(row + a, b - a);
        for (int j = b; j < w; j++) row[j] = 0;
    }
#undef FIRST
    g3_sgemm(0, 0, nb, HD, w, blk, A->vbuf + (long)ja * HD, ob, 0);  // ob[nb][HD] = P V
    for (int i = 0; i < nb; i++)
        memcpy(A->out + (long)(r0 + i0 + i) * NH * HD + (long)h * HD, ob + (long)i * HD, (size_t)HD * sizeof(float));
}

// Gathers keys/values of kv head kh at positions lo .. lo+S-1 into kbuf/vbuf[S][HD]: the
// cache for positions before the segment, this call's rows (from r0) for its own.
static void gather_kv(const Attn *A, const G3Segment *sg, int r0, int kh, int lo, int S) {
    const G3KVCache *kv = A->kv;
    const int HD = kv->hd, NKV = kv->nkv, pos0 = sg->pos0, l = A->layer;
    for (int j = 0; j < S; j++) {
        int p = lo + j;
        const float *kr, *vr;
        if (p < pos0) {
            kr = cache_row(kv->k[l], kv, l, sg->seq, kh, p);
            vr = cache_row(kv->v[l], kv, l, sg->seq, kh, p);
        } else {
            kr = A->k + (long)(r0 + p - pos0) * NKV * HD + (long)kh * HD;
            vr = A->v + (long)(r0 + p - pos0) * NKV * HD + (long)kh * HD;
        }
        memcpy(A->kbuf + (long)j * HD, kr, (size_t)HD * sizeof(float));
        memcpy(A->vbuf + (long)j * HD, vr, (size_t)HD * sizeof(float));
    }
}

static void attend_segment(const Attn *A, const G3Segment *sg, int r0) {
    const int HD = A->kv->hd, NH = A->NH, NKV = A->kv->nkv, G = NH / NKV, W = A->window;
    const int n = sg->n, pos0 = sg->pos0;
    const int lo = W > 0 ? G3_MAX(0, pos0 - (W - 1)) : 0;
    const int S = pos0 + n - lo, nblk = (n + AB - 1) / AB;
    for (int kh = 0; kh < NKV; kh++) {
        gather_kv(A, sg, r0, kh, lo, S);
        for (int gi = 0; gi < G; gi++) {
            int h = kh * G + gi;
#pragma omp parallel for num_threads(A->nthreads) schedule(dynamic, 1) if (nblk > 1 && (long)n * S > 16384)
            for (int b = 0; b < nblk; b++)
                attend_block(A, sg, r0, h, lo, b * AB, G3_MIN(n, (b + 1) * AB),
                             A->ablk + (long)omp_get_thread_num() * AB * (A->S + 2 * HD));
        }
    }
}

static void attend_hooked(const Attn *A, const G3Segment *sg, int segi, int r0, const G3AttnHook *hk) {
    const int HD = A->kv->hd, NH = A->NH, NKV = A->kv->nkv, G = NH / NKV, W = A->window;
    const int n = sg->n, pos0 = sg->pos0;
    const int lo = W > 0 ? G3_MAX(0, pos0 - (W - 1)) : 0, S = pos0 + n - lo;
    float *sc = A->scores;  // [n][S]
    for (int kh = 0; kh < NKV; kh++) {
        gather_kv(A, sg, r0, kh, lo, S);
        for (int gi = 0; gi < G; gi++) {
            int h = kh * G + gi;
            for (int i = 0; i < n; i++)
                memcpy(A->hq + (long)i * HD, A->q + (long)(r0 + i) * NH * HD + (long)h * HD, (size_t)HD * sizeof(float));
            g3_sgemm(0, 1, n, S, HD, A->hq, A->kbuf, sc, 0);  // sc[n][S] = q K^T
#pragma omp parallel for num_threads(A->nthreads) if ((long)n * S > 16384) schedule(static)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < S; j++)
                    sc[(long)i * S + j] = masked(sc[(long)i * S + j] * A->scale, pos0 + i, lo + j, key_end(sg, i), W, A->softcap);
            if (hk->want_scores) hk->fn(hk->ctx, A->layer, h, segi, sc, n, S, lo, 0);
#pragma omp parallel for num_threads(A->nthreads) if ((long)n * S > 16384) schedule(static)
            for (int i = 0; i < n; i++) g3_softmax(sc + (long)i * S, S);
            if (hk->want_pattern) hk->fn(hk->ctx, A->layer, h, segi, sc, n, S, lo, 1);
            g3_sgemm(0, 0, n, HD, S, sc, A->vbuf, A->ho, 0);  // ho[n][HD] = P V
            for (int i = 0; i < n; i++)
                memcpy(A->out + (long)(r0 + i) * NH * HD + (long)h * HD, A->ho + (long)i * HD, (size_t)HD * sizeof(float));
        }
    }
}

// Decode rows read keys straight from the cache in blocks of their visible keys: a task is
// (row, kv head, block), every query head of the kv head at once (each key row is read from
// memory once and then from the L1 for the other heads; a task per head read the window once
// per head), and its results are the block's softmax-weighted values with the block's
// log-sum-exp per head, merged afterwards. Splitting the keys, not the heads, lets both
// threads stream half of the cache each where they read all of it for half of the heads
// (Gemma 3 1B: one kv head, 1 MB of keys and values a layer at 512 positions).
// The blocks are a function of the row's key count alone (never of the threads or of the
// other rows), so a row's result does not depend on them; with one block (up to KB visible
// keys) the arithmetic is a single softmax's, as before the split.
enum { KB = 128, MAX_KBLK = 16 };  // keys per block; blocks per row at most (longer rows: larger blocks)

// The visible keys of row r at position p of segment sg: [lo, lo + S).
static inline void row_keys(const Attn *A, const G3Segment *sg, int p, int *lo, int *S) {
    const int W = A->window, end = key_end(sg, p - sg->pos0);
    *lo = W > 0 ? G3_MAX(0, p - (W - 1)) : 0;
    *S = end - *lo;
}

// Blocks of S keys and their size (a multiple of 16 but for the last).
static inline int kblocks(int S, int *bs) {
    int nb = G3_MIN(MAX_KBLK, (S + KB - 1) / KB);
    nb = G3_MAX(nb, 1);
    *bs = ((S + nb - 1) / nb + 15) & ~15;
    return (S + *bs - 1) / *bs;
}

// The cache row PF rows ahead is asked for (prefetch) while one is used: a decode row's keys
// and values come from memory (the weights streamed since have evicted them), and the
// hardware's prefetch alone left the attention waiting on them (26 layers at 700 positions,
// 1B shape: x0.67-0.82 of the time without it, the blocks and the prefetch together).
enum { PF = 4 };
static inline void prefetch_row(const float *p, int HD) {
    for (int i = 0; i < HD; i += 16) __builtin_prefetch(p + i);
}

// Keys [lo + j0, lo + j1) of row r (position p of sg) for the G heads of kv head kh: o[G][HD]
// their softmax-weighted values (the softmax over these keys only), lse[G] its log-normalizer.
// Per head the arithmetic and its order are a single head's (scores, softmax, the axpys in
// key order).
static void attend_row_block(const Attn *A, const G3Segment *sg, int r, int p, int kh, int j0, int j1, float *sc, float *o,
                             float *lse) {
    const G3KVCache *kv = A->kv;
    const int HD = kv->hd, NH = A->NH, NKV = kv->nkv, G = NH / NKV, W = A->window, l = A->layer, n = j1 - j0;
    int lo, S;
    row_keys(A, sg, p, &lo, &S);
    const int end = lo + S;
    const int r0 = r - (p - sg->pos0);  // the segment's first row
    const float *q = A->q + (long)r * NH * HD + (long)kh * G * HD;  // [G][HD]
    for (int j = j0; j < j1; j++) {
        int kp = lo + j;
        const float *kr = kp < sg->pos0 ? cache_row(kv->k[l], kv, l, sg->seq, kh, kp)
                                        : A->k + (long)(r0 + kp - sg->pos0) * NKV * HD + (long)kh * HD;
        if (j + PF < j1 && kp + PF < sg->pos0) prefetch_row(cache_row(kv->k[l], kv, l, sg->seq, kh, kp + PF), HD);
        for (int i = 0; i < G; i++) sc[(long)i * n + j - j0] = masked(g3_dot(q + (long)i * HD, kr, HD) * A->scale, p, kp, end, W, A->softcap);
    }
    for (int i = 0; i < G; i++) lse[i] = g3_softmax(sc + (long)i * n, n);
    memset(o, 0, (size_t)G * HD * sizeof(float));
    for (int j = j0; j < j1; j++) {
        int kp = lo + j;
        const float *vr = kp < sg->pos0 ? cache_row(kv->v[l], kv, l, sg->seq, kh, kp)
                                        : A->v + (long)(r0 + kp - sg->pos0) * NKV * HD + (long)kh * HD;
        if (j + PF < j1 && kp + PF < sg->pos0) prefetch_row(cache_row(kv->v[l], kv, l, sg->seq, kh, kp + PF), HD);
        for (int i = 0; i < G; i++) g3_axpy(o + (long)i * HD, sc[(long)i * n + j - j0], vr, HD);
    }
}

typedef struct {
    const Attn *A;
    const G3Segment *segs;
    const int *seg, *row, *pos, *nb;  // per decode row (nb: its blocks of keys)
    const int *task_t, *task_kh, *task_j0, *task_j1;  // per task: its row (index into the above), kv head, keys
    float *part, *plse;  // [tasks][G][HD] the blocks' results, [tasks][G] their log-sum-exps
} RowJob;

// Task i: its block's keys for its row and kv head, with thread tid's scores ([G][block]).
// A row of one block writes its result in place (nothing to merge).
static void row_task(void *ctx, int i, int tid) {
    const RowJob *j = ctx;
    const Attn *A = j->A;
    const int t = j->task_t[i], kh = j->task_kh[i], G = A->NH / A->kv->nkv, HD = A->kv->hd;
    float *o = j->nb[t] == 1 ? A->out + (long)j->row[t] * A->NH * HD + (long)kh * G * HD : j->part + (long)i * G * HD;
    attend_row_block(A, &j->segs[j->seg[t]], j->row[t], j->pos[t], kh, j->task_j0[i], j->task_j1[i],
                     A->tscores + (long)tid * G * A->S, o, j->plse + (long)i * G);
}

// The merge of row t's blocks for kv head kh (tasks i0 .. i0 + nb - 1): per head, each block's
// values weighted by exp(lse_b - max) / sum of them, in block order.
static void row_merge(const RowJob *j, int t, int kh, int i0, int nb) {
    const Attn *A = j->A;
    const int G = A->NH / A->kv->nkv, HD = A->kv->hd;
    for (int g = 0; g < G; g++) {
        float *out = A->out + (long)j->row[t] * A->NH * HD + (long)(kh * G + g) * HD;
        float mx = -INFINITY, wsum = 0;
        for (int b = 0; b < nb; b++) mx = G3_MAX(mx, j->plse[(long)(i0 + b) * G + g]);
        memset(out, 0, (size_t)HD * sizeof(float));
        if (mx == -INFINITY) continue;  // nothing visible: zeros, as one softmax gives
        for (int b = 0; b < nb; b++) wsum += expf(j->plse[(long)(i0 + b) * G + g] - mx);
        for (int b = 0; b < nb; b++)
            g3_axpy(out, expf(j->plse[(long)(i0 + b) * G + g] - mx) / wsum, j->part + ((long)(i0 + b) * G + g) * HD, HD);
    }
}

int g3_cpu_attention_cache(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                           const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap,
                           const G3AttnHook *hook, G3MatmulMode mode) {
    (void)be;
    (void)mode;  // f32 in every mode
    const int HD = kv->hd;
    int R = 0, maxpos = 0, nshort = 0, ntask = 0;
    long work = 0;  // multiply-adds of the one-row tasks: threads only pay off above a few thousand
    Attn A = {.kv = kv, .layer = layer, .NH = NH, .window = window, .scale = scale, .softcap = softcap, .q = q, .k = k,
              .v = v, .out = out, .nthreads = omp_get_max_threads()};
    for (int i = 0; i < nseg; i++) {
        R += segs[i].n;
        maxpos = G3_MAX(maxpos, segs[i].pos0 + segs[i].n);
        if (!hook && segs[i].n <= 2) {
            nshort += segs[i].n;
            work += (long)segs[i].n * (segs[i].pos0 + segs[i].n) * NH * HD * 2;
            for (int j = 0; j < segs[i].n; j++) {
                int lo, S, bs;
                row_keys(&A, &segs[i], segs[i].pos0 + j, &lo, &S);
                ntask += kv->nkv * kblocks(S, &bs);
            }
        }
    }
    A.S = maxpos;
    const long S = maxpos, T = A.nthreads;
    const long G = NH / kv->nkv;
    size_t floats = (size_t)(2 * S * HD + T * AB * (S + 2 * HD) + T * G * S + 2L * R * HD + (hook ? (long)R * S : 0) +
                             (long)ntask * G * (HD + 1));
    float *ws = g3_cpu_workspace(floats * sizeof(float) + (4 * (size_t)R + 4 * (size_t)ntask) * sizeof(int));
    if (!ws) return g3_error_prefix("attention over the KV cache (%d rows, %d positions)", R, maxpos);
    A.kbuf = ws;
    A.vbuf = A.kbuf + S * HD;
    A.ablk = A.vbuf + S * HD;
    A.tscores = A.ablk + T * AB * (S + 2 * HD);
    A.hq = A.tscores + T * G * S;
    A.ho = A.hq + (long)R * HD;
    A.scores = A.ho + (long)R * HD;
    float *part = A.scores + (hook ? (long)R * S : 0), *plse = part + (long)ntask * G * HD;
    int *task_seg = (int *)(ws + floats), *task_row = task_seg + R, *task_pos = task_row + R;
    int *row_nb = task_pos + R, *task_t = row_nb + R, *task_kh = task_t + ntask, *task_j0 = task_kh + ntask,
        *task_j1 = task_j0 + ntask;
    if (hook) {
        for (int i = 0, r0 = 0; i < nseg; r0 += segs[i].n, i++) attend_hooked(&A, &segs[i], i, r0, hook);
        return 0;
    }
    if (nshort) {
        int nt = 0, it = 0;
        for (int i = 0, r = 0; i < nseg; r += segs[i].n, i++)
            if (segs[i].n <= 2)
                for (int j = 0; j < segs[i].n; j++, nt++) {
                    int lo, Sr, bs;
                    task_seg[nt] = i, task_pos[nt] = segs[i].pos0 + j, task_row[nt] = r + j;
                    row_keys(&A, &segs[i], task_pos[nt], &lo, &Sr);
                    const int nb = row_nb[nt] = kblocks(Sr, &bs);
                    for (int kh = 0; kh < kv->nkv; kh++)
                        for (int b = 0; b < nb; b++, it++)
                            task_t[it] = nt, task_kh[it] = kh, task_j0[it] = b * bs, task_j1[it] = G3_MIN(Sr, (b + 1) * bs);
                }
        RowJob job = {&A, segs, task_seg, task_row, task_pos, row_nb, task_t, task_kh, task_j0, task_j1, part, plse};
        if (work <= 65536 || ntask == 1) {  // (one task: waking the other threads buys nothing)
            for (int i = 0; i < ntask; i++) row_task(&job, i, 0);
        } else if (g3_cpu_pool_for(ntask, row_task, &job)) {  // decode's threads (pool.h), else OpenMP's
#pragma omp parallel for num_threads(A.nthreads) schedule(dynamic, 1)
            for (int i = 0; i < ntask; i++) row_task(&job, i, omp_get_thread_num());
        }
        // rows of several blocks: their merge (rows x kv heads of G x blocks x HD: one thread
        // unless the batch is large)
        for (int t = 0, i0 = 0; t < nt; i0 += kv->nkv * row_nb[t], t++)
            if (row_nb[t] > 1)
                for (int kh = 0; kh < kv->nkv; kh++) row_merge(&job, t, kh, i0 + kh * row_nb[t], row_nb[t]);
    }
    for (int i = 0, r0 = 0; i < nseg; r0 += segs[i].n, i++)
        if (segs[i].n > 2) attend_segment(&A, &segs[i], r0);
    return 0;
}

void g3_cpu_kv_append(G3Backend *be, G3KVCache *kv, int layer, const G3Segment *segs, int nseg, const float *k, const float *v) {
    (void)be;
    const int HD = kv->hd, NKV = kv->nkv, l = layer;
    for (int i = 0, r0 = 0; i < nseg; r0 += segs[i].n, i++) {
        int first = G3_MAX(0, segs[i].n - kv->cap[l]);  // older rows would be overwritten anyway
        for (int j = first; j < segs[i].n; j++)
            for (int kh = 0; kh < NKV; kh++) {
                int p = segs[i].pos0 + j;
                memcpy(cache_row(kv->k[l], kv, l, segs[i].seq, kh, p), k + (long)(r0 + j) * NKV * HD + (long)kh * HD, (size_t)HD * sizeof(float));
                memcpy(cache_row(kv->v[l], kv, l, segs[i].seq, kh, p), v + (long)(r0 + j) * NKV * HD + (long)kh * HD, (size_t)HD * sizeof(float));
            }
    }
}
