// pool.h: the CPU backend's decode threads (on unless G3_POOL=0). A decode step hands work to
// the other threads ~130 times (4 products and attention a layer, the head); through OpenMP
// with passive waits each hand-off wakes a sleeping thread and each end puts it back to sleep,
// and on a virtual machine a wake-up costs tens of microseconds; with libgomp's spinning waits
// a step collapses as soon as other processes take the cores (the thread waited for is off its
// core). The pool's threads spin for a short while (G3_SPIN_US, default 20 microseconds) after
// each piece of work before they sleep, so within a step they stay awake (as llama.cpp's
// threads, which spin at every barrier of its graph) and between steps they sleep; and the
// caller never waits for a thread that has not joined the job (pool.c). Measured 2026-12-07 on
// the shared 2-core machine (1B Q4_0 decode, tok/s, interleaved; docs/quantization.md): with
// other processes making the load ~8, 13.8-17.0 against 9.2-9.4 (OpenMP passive) and 1.0-6.0
// (libgomp's default); at load 12-14, 3.4-5.3 against 3.8-4.2 and < 0.4. An earlier version,
// whose caller waited for every worker to check out of each job, halved decode under load.
//
// g3_cpu_pool_for(n, fn, ctx) calls fn(ctx, i, tid) for every i < n (each once, in any order,
// on any thread; tid < omp_get_max_threads(), 0 the caller's) and returns 0 when done; 1 when
// it did not run anything (the pool is off: G3_POOL=0, or one thread; the caller is inside
// an OpenMP region; the thread count changed since the pool started; another thread is using
// it): the caller then runs its own OpenMP loop. Linux only (futex); elsewhere always 1.
#ifndef G3_CPU_POOL_H
#define G3_CPU_POOL_H

typedef void (*G3PoolFn)(void *ctx, int i, int tid);
int g3_cpu_pool_for(int n, G3PoolFn fn, void *ctx);

#endif
