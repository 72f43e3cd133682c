// pool.h: the CPU backend's decode threads, OFF unless G3_POOL=1. A decode step hands work to
// the other threads ~130 times (4 products and attention a layer, the head); through OpenMP
// with passive waits each hand-off wakes a sleeping thread and each end puts it back to sleep,
// and on a virtual machine a wake-up costs tens of microseconds. The pool's threads spin for a
// short while (G3_SPIN_US, default 100 microseconds) after each piece of work before they
// sleep, so within a step they stay awake (as llama.cpp's threads, which spin at every barrier
// of its graph) and between steps they sleep. Why off: on the shared 2-core machine at load
// 14-16 it halved decode (Q4_0 4.8-6.2 against 7.8-14 tok/s with OpenMP, interleaved): spinning
// threads lose their turns to the other tenants' processes; at load 4.5 it was still slower
// (Q4_0 decode 12.7-17.9 against 17.2-24.3 tok/s, 3 rounds interleaved). Not measured on an
// idle machine, where it might pay; remove it if it does not.
//
// g3_cpu_pool_for(n, fn, ctx) calls fn(ctx, i, tid) for every i < n (each once, in any order,
// on any thread; tid < omp_get_max_threads(), 0 the caller's) and returns 0 when done; 1 when
// it did not run anything (the pool is off: no G3_POOL=1, or one thread; the caller is inside
// an OpenMP region; the thread count changed since the pool started; another thread is using
// it): the caller then runs its own OpenMP loop. Linux only (futex); elsewhere always 1.
#ifndef G3_CPU_POOL_H
#define G3_CPU_POOL_H

typedef void (*G3PoolFn)(void *ctx, int i, int tid);
int g3_cpu_pool_for(int n, G3PoolFn fn, void *ctx);

#endif
