// pool.c: the decode threads of pool.h. One job at a time: the caller publishes (fn, ctx, n),
// opens the job, bumps the generation word and wakes sleepers; every thread, the caller
// included, takes task indices from one counter. A worker joins a job by raising the active
// count and then checking that the job is still open; the caller, its own tasks done, closes
// the job and waits only for the workers that joined (seq_cst on both sides, Dekker's pattern:
// either the caller sees the worker's count, or the worker sees the job closed). So the caller
// never waits for a worker that is asleep or was not scheduled: on a machine whose cores are
// busy with other work, a worker can be off its core for milliseconds, and a step of ~130
// hand-offs that waited for it at each one took ~10x as long as one thread alone (measured
// 2026-12-07, note at g3_cpu_pool_for). A late worker finds the job closed (or a later job open,
// whose fields were published before it opened) and goes back to waiting.
// Sleeping is a futex wait on the generation word, entered only after the sleeper count is
// raised and the word re-read (seq_cst on both sides: either the caller sees the sleeper and
// wakes it, or the sleeper sees the new generation).
#include "pool.h"

#include <omp.h>

#ifdef __linux__
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 256 };

static struct {
    _Atomic uint32_t gen;   // the job's generation (the futex word)
    _Atomic int sleepers;   // workers in (or entering) the futex wait
    _Atomic int next;       // the next task index
    _Atomic int open;       // 1 while the job takes workers
    _Atomic int active;     // workers that joined the job and have not left it
    G3PoolFn fn;
    void *ctx;
    int n, nthreads;        // tasks; threads with the caller
    int64_t spin_ns;
    uint32_t gen0;          // the generation when the workers were started
} pool;
static _Atomic int pool_state;  // 0 not started, 1 ready, -1 off
static atomic_flag pool_lock = ATOMIC_FLAG_INIT;  // one caller at a time
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(int tid) {
    const int n = pool.n;
    for (int i; (i = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed)) < n;) pool.fn(pool.ctx, i, tid);
}

static void *worker(void *arg) {
    const int tid = (int)(intptr_t)arg;
    uint32_t seen = pool.gen0;  // not the word now: the first job may be out before this thread runs
    for (;;) {
        int64_t t0 = now_ns();
        for (int k = 1; atomic_load_explicit(&pool.gen, memory_order_acquire) == seen; k++) {
            relax();
            if (k % 64 == 0 && now_ns() - t0 > pool.spin_ns) {  // no work for a while: sleep
                atomic_fetch_add(&pool.sleepers, 1);
                if (atomic_load(&pool.gen) == seen) syscall(SYS_futex, &pool.gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
                atomic_fetch_sub(&pool.sleepers, 1);
                t0 = now_ns();
            }
        }
        seen = atomic_load_explicit(&pool.gen, memory_order_acquire);
        atomic_fetch_add(&pool.active, 1);      // join (seq_cst) ...
        if (atomic_load(&pool.open)) run_tasks(tid);  // ... then look: a closed job is left alone
        atomic_fetch_sub_explicit(&pool.active, 1, memory_order_release);
    }
    return NULL;
}

// A child of fork has none of the parent's threads: it starts its own pool when it needs one.
static void after_fork_child(void) {
    atomic_store(&pool_state, 0);
    atomic_flag_clear(&pool_lock);
    pthread_mutex_init(&start_mu, NULL);
}

static int start(void) {
    pthread_mutex_lock(&start_mu);
    if (atomic_load(&pool_state) == 0) {
        static int atfork;
        if (!atfork) atfork = 1, pthread_atfork(NULL, NULL, after_fork_child);
        const char *on = getenv("G3_POOL"), *spin = getenv("G3_SPIN_US");
        const int nt = omp_get_max_threads();
        pool.spin_ns = (spin && *spin ? atol(spin) : 20) * 1000;
        pool.nthreads = nt;
        pool.gen0 = atomic_load(&pool.gen);
        int ok = !(on && on[0] == '0') && nt > 1 && nt <= MAX_THREADS;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        for (int t = 1; ok && t < nt; t++) {
            pthread_t th;
            if (pthread_create(&th, &at, worker, (void *)(intptr_t)t)) {
                // the threads already started wait for a generation that never comes: harmless
                ok = 0;
            }
        }
        pthread_attr_destroy(&at);
        atomic_store(&pool_state, ok ? 1 : -1);
    }
    pthread_mutex_unlock(&start_mu);
    return atomic_load(&pool_state);
}

int g3_cpu_pool_for(int n, G3PoolFn fn, void *ctx) {
    if (n <= 0) return 0;
    int st = atomic_load_explicit(&pool_state, memory_order_acquire);
    if (st == 0) st = start();
    if (st != 1 || omp_in_parallel() || omp_get_max_threads() != pool.nthreads) return 1;
    if (atomic_flag_test_and_set_explicit(&pool_lock, memory_order_acquire)) return 1;
    // no worker is inside a job here (the last caller waited for every one that joined), so
    // the fields are ours until the job opens
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.open, 1);  // publishes the fields to a worker that sees it open
    atomic_fetch_add(&pool.gen, 1);
    if (atomic_load(&pool.sleepers)) syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
    run_tasks(0);
    // every task is taken: close the job, then wait for the workers that joined it to finish
    // their last tasks (a worker that joins from now on sees it closed)
    atomic_store(&pool.open, 0);
    const int64_t t0 = now_ns();
    for (int k = 1; atomic_load(&pool.active) > 0; k++) {
        relax();
        if (k % 64 == 0 && now_ns() - t0 > pool.spin_ns) sched_yield();
    }
    atomic_flag_clear_explicit(&pool_lock, memory_order_release);
    return 0;
}

#else
int g3_cpu_pool_for(int n, G3PoolFn fn, void *ctx) {
    (void)n, (void)fn, (void)ctx;
    return 1;
}
#endif
