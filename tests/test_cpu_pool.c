// test_cpu_pool.c: the CPU backend's decode threads (backend/cpu/pool.h): every task index runs
// exactly once with a thread id below the thread count, over many jobs back to back (the
// workers spinning) and jobs after pauses (the workers asleep: the futex wake-up path); the pool
// declines (returns 1, runs nothing) inside an OpenMP region and when the thread count changed;
// a forked child gets a pool of its own. The pool is on unless G3_POOL=0: the test sets 1 anyway.
#include <omp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/cpu/pool.h"
#include "check.h"

enum { MAXN = 300 };

typedef struct {
    _Atomic int count[MAXN];
    _Atomic int bad_tid;
    int nthreads;
} Job;

static void task(void *ctx, int i, int tid) {
    Job *j = ctx;
    atomic_fetch_add(&j->count[i], 1);
    if (tid < 0 || tid >= j->nthreads) atomic_store(&j->bad_tid, 1);
}

// n tasks: 0 if the pool ran each once, 1 if it declined, -1 if it ran them wrongly.
static int run(int n) {
    static Job j;
    memset(&j, 0, sizeof j);
    j.nthreads = omp_get_max_threads();
    if (g3_cpu_pool_for(n, task, &j)) return 1;
    for (int i = 0; i < n; i++)
        if (atomic_load(&j.count[i]) != 1) return -1;
    return atomic_load(&j.bad_tid) ? -1 : 0;
}

int main(void) {
    setenv("G3_POOL", "1", 1);  // read when the pool starts, at the first call
    const int nt = omp_get_max_threads();
    int rc = run(7);
    if (nt < 2) {
        CHECK(rc == 1, "one thread: the pool should decline");
        return check_done();
    }
    CHECK(rc == 0, "first job: %d", rc);
    int bad = 0;
    for (int it = 0; it < 5000; it++) bad += run(1 + it % MAXN) != 0;  // back to back
    CHECK(bad == 0, "%d of 5000 jobs back to back went wrong", bad);
    bad = 0;
    for (int it = 0; it < 20; it++) {  // after a pause longer than the spin: the workers sleep
        struct timespec ts = {0, 3 * 1000 * 1000};
        nanosleep(&ts, NULL);
        bad += run(1 + it) != 0;
    }
    CHECK(bad == 0, "%d of 20 jobs after a pause went wrong", bad);
    int inside = 0;
#pragma omp parallel num_threads(2)
    {
#pragma omp single
        inside = run(5);
    }
    CHECK(inside == 1, "inside an OpenMP region the pool should decline, got %d", inside);
    omp_set_num_threads(nt + 1);
    CHECK(run(5) == 1, "with another thread count the pool should decline");
    omp_set_num_threads(nt);
    CHECK(run(5) == 0, "the pool back at its thread count");
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        int ok = 1;
        for (int it = 0; it < 1000; it++) ok &= run(1 + it % 50) == 0;
        _exit(ok ? 0 : 1);
    }
    int st = 0;
    CHECK(pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "a forked child's pool went wrong");
    return check_done();
}
