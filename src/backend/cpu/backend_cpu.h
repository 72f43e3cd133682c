// backend_cpu.h: internal to the CPU backend (backend_cpu.c and its op files).
#ifndef G3_BACKEND_CPU_H
#define G3_BACKEND_CPU_H

#include <stddef.h>

#include "../backend.h"

// The calling thread's scratch for one op at a time (never two ops' at once), grown on
// demand and kept: the first call of a size allocates, the steady state never does.
// NULL with g3_error set if it cannot grow.
void *g3_cpu_workspace(size_t bytes);

int g3_cpu_attention_cache(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *segs, int nseg,
                           const float *q, const float *k, const float *v, int NH, int window, float scale, float softcap,
                           const G3AttnHook *hook, G3MatmulMode mode);
void g3_cpu_kv_append(G3Backend *be, G3KVCache *kv, int layer, const G3Segment *segs, int nseg, const float *k, const float *v);
// Set Block Decoding (attn_block.c)
int g3_cpu_attention_masked(G3Backend *be, float *out, float *lse, const float *q, const float *k, const float *v,
                            const G3AttnMask *mask, int B, int T, int NH, int NKV, int HD, int window, float scale, float softcap);
int g3_cpu_attention_masked_backward(G3Backend *be, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                     const float *k, const float *v, const float *lse, const G3AttnMask *mask, int B, int T,
                                     int NH, int NKV, int HD, int window, float scale, float softcap);
int g3_cpu_attention_cache_block(G3Backend *be, float *out, const G3KVCache *kv, int layer, const G3Segment *seg, const float *q,
                                 const float *k, const float *v, int NH, int window, float scale, float softcap);
// The vision tower's ops (vision_ops.c)
void g3_cpu_layernorm(G3Backend *be, float *y, const float *x, const float *w, const float *b, int R, int n, float eps, int exact);
void g3_cpu_bias_act(G3Backend *be, float *y, const float *b, int R, int n, int act, int exact);
size_t g3_cpu_attention_full_workspace(G3Backend *be, int T, int NH, int HD);
int g3_cpu_attention_full(G3Backend *be, float *out, void *work, const float *q, const float *k, const float *v, int T, int NH, int HD,
                          float scale, G3MatmulMode mode);

#endif
