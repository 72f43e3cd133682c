// prof.cu: a per-op GPU profiler built into the backend (G3_CUDA_PROFILE=1), for machines
// without nsys (the GPU machine has none) and so that one run of `gemma3 train` tells where a
// step's time goes. Why events and not a tracing tool: a pair of cudaEvents around each op
// of the backend table (and around the parts inside an op that matter: bf16 rounding passes,
// each cuBLAS product with its shape and FLOPs) costs a few microseconds of host time and
// nothing on the GPU, and it names the time by the model's ops, not by kernel symbols.
//
// What it keeps, per name: calls, GPU time (the events' elapsed time, resolved when the stream
// has passed them: at the next sync, so no op waits for its own timing), host time inside the
// call (launch cost, or the wait of an op that syncs), FLOPs and bytes where the scope knows
// them. Scopes nest: depth 0 is a backend op, deeper ones are parts of it (included in the
// op's time). Beside them, host-side counters (cudaMalloc, cudaFree, stream syncs) and the
// GPU span: time from a reference event to the last event seen, so that span - the ops' GPU
// time is the time the GPU sat idle between ops (launch gaps, host work, syncs).
//
// Steady state: the first G3_CUDA_PROFILE_SKIP optimizer steps (default 2: cuBLAS's first
// calls, module loading, scratch growth) are dropped; g3cu_prof_step marks step boundaries.
// The report goes to stderr when the process exits (or at g3cu_prof_report).
//
// Not thread-safe beyond a mutex around its tables: it is a diagnostic for one trainer at a
// time. Scopes are skipped while a stream is being captured into a CUDA graph (an event
// recorded there is a graph node, not a timestamp).
#include <atomic>
#include <math.h>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.cuh"

namespace {

struct Name {
    char *name;
    int depth;  // the smallest depth it was seen at
    long calls;
    double gpu_ms, host_ms, flops, bytes;
};

struct Pending {
    int name;
    cudaEvent_t a, b;
    double flops, bytes;
    int depth;
};

struct Open {  // a scope begun and not ended (per thread would be right; one trainer at a time)
    int name;
    cudaEvent_t a;
    double t0;
    int depth;
    cudaStream_t stream;
};

enum { MAX_NAMES = 1024, MAX_OPEN = 16 };

struct Prof {
    std::mutex mu;
    int skip;
    Name names[MAX_NAMES];
    int nnames;
    Pending *pend;
    int npend, cap_pend;
    cudaEvent_t *pool;  // free events
    int npool, cap_pool;
    Open open[MAX_OPEN];
    int nopen;
    long steps;           // step marks seen
    long steps_measured;  // since the reset
    int reset_done;
    cudaEvent_t origin;   // the reference of the GPU span (0: none yet)
    double span_ms;       // latest event seen, ms after origin
    double wall0;         // host clock at the reset
    double wall_last;     // host clock at the last collection
    int reported;
};

Prof P;
std::atomic<int> on_state{-1};  // G3_CUDA_PROFILE read once: -1 not yet, 0 off, 1 on

// The figures at the last step mark: whole steps, without the run's tail (its last update,
// evaluation and checkpoint) after the last mark.
struct Snap {
    Name names[MAX_NAMES];
    int nnames;
    long steps_measured;
    double span_ms, wall_ms;
};
Snap S;
int have_snap;

double now_s() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

unsigned hash_str(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

// The slot of name (interned on first sight); -1 when the table is full.
int intern(const char *s, int depth) {
    static int index[2 * MAX_NAMES];  // open addressing: slot + 1, 0 empty
    unsigned h = hash_str(s) & (2 * MAX_NAMES - 1);
    while (index[h]) {
        Name *n = &P.names[index[h] - 1];
        if (!strcmp(n->name, s)) {
            if (depth < n->depth) n->depth = depth;
            return index[h] - 1;
        }
        h = (h + 1) & (2 * MAX_NAMES - 1);
    }
    if (P.nnames == MAX_NAMES) return -1;
    Name *n = &P.names[P.nnames];
    if (!(n->name = strdup(s))) return -1;
    n->depth = depth;
    index[h] = ++P.nnames;
    return P.nnames - 1;
}

cudaEvent_t event_get() {
    if (P.npool) return P.pool[--P.npool];
    cudaEvent_t e = NULL;
    if (cudaEventCreate(&e) != cudaSuccess) { cudaGetLastError(); return NULL; }
    return e;
}
void event_put(cudaEvent_t e) {
    if (!e) return;
    if (P.npool == P.cap_pool) {
        const int cap = P.cap_pool ? 2 * P.cap_pool : 1024;
        cudaEvent_t *p = (cudaEvent_t *)realloc(P.pool, (size_t)cap * sizeof *p);
        if (!p) { cudaEventDestroy(e); return; }
        P.pool = p;
        P.cap_pool = cap;
    }
    P.pool[P.npool++] = e;
}

// Resolves the pending scopes whose end the GPU has passed (all of them with wait); keeps the
// rest in order. Caller holds the mutex.
void collect_locked(int wait) {
    int k = 0;
    for (int i = 0; i < P.npend; i++) {
        Pending *q = &P.pend[i];
        cudaError_t st = wait ? cudaEventSynchronize(q->b) : cudaEventQuery(q->b);
        if (st == cudaErrorNotReady) { P.pend[k++] = *q; continue; }
        float ms = 0.f;
        if (st == cudaSuccess && cudaEventElapsedTime(&ms, q->a, q->b) == cudaSuccess) {
            Name *n = &P.names[q->name];
            n->gpu_ms += ms;
            if (P.origin) {
                float end = 0.f;
                if (cudaEventElapsedTime(&end, P.origin, q->b) == cudaSuccess && end > P.span_ms) P.span_ms = end;
            }
        }
        cudaGetLastError();
        event_put(q->a);
        event_put(q->b);
    }
    P.npend = k;
    P.wall_last = now_s();
}

void reset_locked(cudaStream_t s) {
    collect_locked(1);
    for (int i = 0; i < P.nnames; i++) {
        Name *n = &P.names[i];
        n->calls = 0;
        n->gpu_ms = n->host_ms = n->flops = n->bytes = 0;
    }
    if (!P.origin && cudaEventCreate(&P.origin) != cudaSuccess) { cudaGetLastError(); P.origin = NULL; }
    if (P.origin) cudaEventRecord(P.origin, s);
    P.span_ms = 0;
    P.steps_measured = 0;
    P.wall0 = P.wall_last = now_s();
    P.reset_done = 1;
}

int by_gpu(const void *a, const void *b) {
    const Name *x = *(const Name *const *)a, *y = *(const Name *const *)b;
    const double dx = x->gpu_ms + 1e-3 * x->host_ms, dy = y->gpu_ms + 1e-3 * y->host_ms;
    return dx < dy ? 1 : dx > dy ? -1 : 0;
}

void print_rows(FILE *f, Name **rows, int n, double per, double span, int top) {
    fprintf(f, "  %-44s %8s %10s %6s %10s %9s %9s\n", "name", "calls", "GPU ms", "% span", "host ms", "TFLOP/s", "GB/s");
    for (int i = 0; i < n && i < top; i++) {
        const Name *r = rows[i];
        char tf[16] = "", gb[16] = "";
        if (r->flops > 0 && r->gpu_ms > 0) snprintf(tf, sizeof tf, "%.1f", r->flops / (r->gpu_ms * 1e-3) / 1e12);
        if (r->bytes > 0 && r->gpu_ms > 0) snprintf(gb, sizeof gb, "%.0f", r->bytes / (r->gpu_ms * 1e-3) / 1e9);
        fprintf(f, "  %-44.44s %8.1f %10.3f %5.1f%% %10.3f %9s %9s\n", r->name, r->calls / per, r->gpu_ms / per,
                span > 0 ? 100.0 * r->gpu_ms / span : 0.0, r->host_ms / per, tf, gb);
    }
}

void report_locked(FILE *f) {
    if (P.reported || !P.nnames) return;
    P.reported = 1;
    collect_locked(1);
    // whole steps (the snapshot at the last step mark) where there were two marks after the
    // skipped ones; else everything since the start
    Name *names = have_snap ? S.names : P.names;
    const int nn = have_snap ? S.nnames : P.nnames;
    const long measured = have_snap ? S.steps_measured : 0;
    const double per = measured > 0 ? (double)measured : 1.0;
    const double wall = have_snap ? S.wall_ms : (P.wall_last - P.wall0) * 1e3;
    const double span_ms = have_snap ? S.span_ms : P.span_ms;
    Name *ops[MAX_NAMES], *parts[MAX_NAMES], *host[MAX_NAMES];
    int nops = 0, nparts = 0, nhost = 0;
    double ops_gpu = 0, ops_host = 0;
    for (int i = 0; i < nn; i++) {
        Name *n = &names[i];
        if (!n->calls) continue;
        if (n->depth < 0) host[nhost++] = n;
        else if (n->depth == 0) { ops[nops++] = n; ops_gpu += n->gpu_ms; ops_host += n->host_ms; }
        else parts[nparts++] = n;
    }
    qsort(ops, (size_t)nops, sizeof *ops, by_gpu);
    qsort(parts, (size_t)nparts, sizeof *parts, by_gpu);
    const double span = span_ms > 0 ? span_ms : ops_gpu;
    fprintf(f, "\n== G3_CUDA_PROFILE: %s\n",
            measured > 0 ? "per optimizer step (from one AdamW update to the next; figures divided by the steps)"
                         : "the whole run (fewer than G3_CUDA_PROFILE_SKIP + 2 optimizer steps)");
    if (measured > 0) fprintf(f, "   steps measured %ld, the first %d skipped (G3_CUDA_PROFILE_SKIP)\n", measured, P.skip);
    fprintf(f, "   host wall %.3f ms | GPU span %.3f ms | GPU busy in ops %.3f ms (%.1f%% of span) | GPU idle between ops %.3f ms\n",
            wall / per, span / per, ops_gpu / per, span > 0 ? 100.0 * ops_gpu / span : 0.0, (span - ops_gpu) / per);
    fprintf(f, "   host time inside ops %.3f ms; host time outside ops (trainer, data, logging) %.3f ms\n", ops_host / per,
            (wall - ops_host) / per);
    fprintf(f, "-- backend ops (depth 0; GPU ms = their events' elapsed time, %% of the GPU span)\n");
    print_rows(f, ops, nops, per, span, 60);
    fprintf(f, "-- parts inside ops (included above): rounding passes, cuBLAS products by shape, kernels\n");
    print_rows(f, parts, nparts, per, span, 60);
    if (nhost) {
        fprintf(f, "-- host-side counters (count, host ms, bytes per step)\n");
        for (int i = 0; i < nhost; i++)
            fprintf(f, "  %-44.44s %8.1f %10.3f ms %12.1f MB\n", host[i]->name, host[i]->calls / per, host[i]->host_ms / per,
                    host[i]->bytes / per / 1e6);
    }
    fflush(f);
}

void at_exit() {
    std::lock_guard<std::mutex> g(P.mu);
    report_locked(stderr);
}

}  // namespace

extern "C" int g3cu_prof_on(void) {
    int s = on_state.load(std::memory_order_acquire);
    if (s >= 0) return s;
    std::lock_guard<std::mutex> g(P.mu);
    if ((s = on_state.load()) < 0) {
        const char *e = getenv("G3_CUDA_PROFILE"), *k = getenv("G3_CUDA_PROFILE_SKIP");
        s = e && *e && strcmp(e, "0") ? 1 : 0;
        P.skip = k && *k ? atoi(k) : 2;
        if (P.skip < 0) P.skip = 0;
        if (s) {
            P.wall0 = P.wall_last = now_s();
            atexit(at_exit);
        }
        on_state.store(s, std::memory_order_release);
    }
    return s;
}

extern "C" int g3cu_prof_begin(G3Cuda *cu, const char *name) {
    if (!g3cu_prof_on()) return -1;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(cu->stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) {
        cudaGetLastError();
        return -1;
    }
    std::lock_guard<std::mutex> g(P.mu);
    if (P.nopen == MAX_OPEN) return -1;
    const int depth = P.nopen;
    const int id = intern(name, depth);
    cudaEvent_t a = id < 0 ? NULL : event_get();
    if (!a) return -1;
    cudaEventRecord(a, cu->stream);
    P.open[P.nopen] = Open{id, a, now_s(), depth, cu->stream};
    return P.nopen++;
}

extern "C" void g3cu_prof_end(G3Cuda *cu, int scope, double flops, double bytes) {
    if (scope < 0) return;
    std::lock_guard<std::mutex> g(P.mu);
    if (scope != P.nopen - 1) return;  // ended out of order (an error path): dropped
    Open o = P.open[--P.nopen];
    Name *n = &P.names[o.name];
    n->calls++;
    n->host_ms += (now_s() - o.t0) * 1e3;
    n->flops += flops;
    n->bytes += bytes;
    cudaEvent_t b = event_get();
    if (!b) { event_put(o.a); return; }
    cudaEventRecord(b, o.stream);
    if (P.npend == P.cap_pend) {
        const int cap = P.cap_pend ? 2 * P.cap_pend : 4096;
        Pending *p = (Pending *)realloc(P.pend, (size_t)cap * sizeof *p);
        if (!p) { event_put(o.a); event_put(b); return; }
        P.pend = p;
        P.cap_pend = cap;
    }
    P.pend[P.npend++] = Pending{o.name, o.a, b, flops, bytes, o.depth};
    if (P.npend >= 1 << 16) collect_locked(1);  // a run that never syncs: bound the events held
}

extern "C" void g3cu_prof_count(const char *name, double host_s, double bytes) {
    if (!g3cu_prof_on()) return;
    std::lock_guard<std::mutex> g(P.mu);
    const int id = intern(name, -1);
    if (id < 0) return;
    Name *n = &P.names[id];
    n->depth = -1;
    n->calls++;
    n->host_ms += host_s * 1e3;
    n->bytes += bytes;
}

extern "C" void g3cu_prof_collect(void) {
    if (!g3cu_prof_on()) return;
    std::lock_guard<std::mutex> g(P.mu);
    collect_locked(0);
}

extern "C" void g3cu_prof_step(G3Cuda *cu) {
    if (!g3cu_prof_on()) return;
    std::lock_guard<std::mutex> g(P.mu);
    P.steps++;
    if (!P.reset_done) {
        if (P.steps > P.skip) reset_locked(cu->stream);
        return;
    }
    P.steps_measured++;
    collect_locked(1);  // cheap here: the optimizer's gradient norm has just waited for the stream
    memcpy(S.names, P.names, sizeof(Name) * (size_t)P.nnames);
    S.nnames = P.nnames;
    S.steps_measured = P.steps_measured;
    S.span_ms = P.span_ms;
    S.wall_ms = (P.wall_last - P.wall0) * 1e3;
    have_snap = 1;
}

extern "C" void g3cu_prof_report(void) {
    if (!g3cu_prof_on()) return;
    std::lock_guard<std::mutex> g(P.mu);
    report_locked(stderr);
}

extern "C" double g3cu_prof_now(void) { return now_s(); }
