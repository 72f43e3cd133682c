// pool.c: the decode threads of pool.h. One job at a time: the caller publishes (fn, ctx, n),
// bumps the generation word and wakes sleepers; every thread, the caller included, takes task
// indices from one counter; the caller waits until every worker has left the job, so a worker
// never misses a generation and never sees the next job's fields while it runs this one.
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
    _Atomic int busy;       // workers that have not left the current job
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
        run_tasks(tid);
        atomic_fetch_sub_explicit(&pool.busy, 1, memory_order_release);
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
        pool.spin_ns = (spin && *spin ? atol(spin) : 100) * 1000;
        pool.nthreads = nt;
        pool.gen0 = atomic_load(&pool.gen);
        int ok = on && on[0] == '1' && nt > 1 && nt <= MAX_THREADS;
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
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    atomic_store(&pool.next, 0);
    atomic_store(&pool.busy, pool.nthreads - 1);
    atomic_fetch_add(&pool.gen, 1);
    if (atomic_load(&pool.sleepers)) syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, MAX_THREADS, NULL, NULL, 0);
    run_tasks(0);
    // the workers finish their last tasks (or, asleep, wake and find none left)
    const int64_t t0 = now_ns();
    for (int k = 1; atomic_load_explicit(&pool.busy, memory_order_acquire) > 0; k++) {
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
