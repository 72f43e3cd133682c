// repack.c: g3_model_repack (model.h): weights copied at load into memory and layouts the CPU
// kernels read fastest. Q4_0, Q8_0, Q5_0, Q4_K and Q6_K matrices: 16 rows interleaved
// (kernels/cpu/quant_q4x16.h, quant_q8x16.h, quant_q5x16.h, quant_q4kx16.h, quant_q6kx16.h), when the CPU has AVX512-VNNI
// (decode's kernels for those layouts; on other CPUs the ggml rows' own kernels are as fast
// as a repacked reference would not be). Every other matrix of a mapped GGUF: its bytes as
// they are, copied into huge pages (why: at alloc_big).
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../backend/backend.h"
#include "../base/base.h"
#include "../kernels/cpu/quant_dot.h"
#include "../kernels/cpu/quant_q4kx16.h"
#include "../kernels/cpu/quant_q4x16.h"
#include "../kernels/cpu/quant_q5x16.h"
#include "../kernels/cpu/quant_q6kx16.h"
#include "../kernels/cpu/quant_q8x16.h"
#include "model.h"

// A mapped file's pages of [p, p + n) given back: the kernels read the repacked copy, and a
// reader of the stored bytes (save, exact mode, the embedding's row lookup) faults them back in
// from the page cache. Only whole pages inside the range (a neighbour's edge pages stay).
static void release(const void *p, int64_t n) {
    const uintptr_t pg = 4096, a = ((uintptr_t)p + pg - 1) & ~(pg - 1), e = ((uintptr_t)p + (uintptr_t)n) & ~(pg - 1);
    if (e > a) (void)madvise((void *)a, e - a, MADV_DONTNEED);
}

// Memory for a repacked or copied tensor: 2 MB aligned and asked for in huge pages where it is
// that large (the kernel's transparent huge pages in `madvise` mode: a decode step streams the
// whole copy, and 4 KB pages cost a TLB miss and at load a page fault every 4 KB; the repack
// of a 1B model took ~1 s of page faults). The file's own mapping is in 4 KB pages: there the
// prefill's packer of BF16 panels (32 rows at once, each row in other pages) spent 5x the
// cycles it does on a huge-page copy (1B, 512 rows: 0.7 -> 0.14 Gcycles a thread, prefill
// 295 -> 377 tok/s), and decode of BF16 rows gained 20-40% (docs/quantization.md). Freed with
// g3_free_aligned (free).
static void *alloc_big(size_t n) {
    const size_t huge = (size_t)2 << 20;
    if (n < huge) return g3_malloc_aligned(n);
    void *p = NULL;
    n = (n + huge - 1) / huge * huge;
    if (posix_memalign(&p, huge, n) != 0) {
        g3_errorf("out of memory allocating %zu bytes", n);
        return NULL;
    }
    (void)madvise(p, n, MADV_HUGEPAGE);
    return p;
}

// Out of memory at tensor i: the repacked copies made so far freed (the copied tensors keep
// their copies: the mapping's pages were given back, and the copy is their data now).
static int repack_fail(G3Model *m, int i, const char *name) {
    for (int j = 0; j < i; j++) g3_free_aligned(m->t[j].packed), m->t[j].packed = NULL;
    return g3_error_prefix("repacking tensor '%s'", name);
}

// The bytes of t's repacked form, 0 for a type that is not repacked.
static int64_t packed_bytes(const G3Tensor *t) {
    const int64_t N = t->shape[0];
    const int nb = (int)(t->shape[1] / 32);
    switch (t->dtype) {
    case G3_Q4_0: return g3_q4x16_bytes(N, nb);
    case G3_Q8_0: return g3_q8x16_bytes(N, nb);
    case G3_Q5_0: return g3_q5x16_bytes(N, nb);
    case G3_Q4_K: return g3_q4kx16_bytes(N, nb);
    case G3_Q6_K: return g3_q6kx16_bytes(N, nb);
    default: return 0;
    }
}

int g3_model_repack(G3Model *m) {
    const int vnni = g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI;
    // only a read-only file mapping may give its pages back (a GGUF source maps its file;
    // memory of a model built in memory would be lost)
    const int mapped = m->src && m->src->kind && !strcmp(m->src->kind, "gguf");
    // the copies are for the CPU's kernels: where a GPU is there (the default device then),
    // the weights go to it and a copy would only hold memory the page cache could reclaim
    const int copy = mapped && g3_backend_cuda_devices() <= 0;
    for (int i = 0; i < m->nt; i++) {
        G3Tensor *t = &m->t[i];
        const int repacks = vnni && t->ndim == 2 && packed_bytes(t) > 0;
        if (copy && !repacks && t->ndim == 2 && t->data && !t->copy && !t->packed) {
            // the stored bytes, moved into huge pages (the copy is data from now on; the
            // mapping's pages go back to the page cache, so memory holds one copy)
            void *p = alloc_big((size_t)t->nbytes);
            if (!p) return repack_fail(m, i, t->name);
            memcpy(p, t->data, (size_t)t->nbytes);
            release(t->data, t->nbytes);
            t->data = t->copy = p;
            continue;
        }
        if (!repacks || t->packed || !t->data) continue;
        const int64_t N = t->shape[0];
        const int nb = (int)(t->shape[1] / 32);
        void *p = alloc_big((size_t)packed_bytes(t));
        if (!p) return repack_fail(m, i, t->name);
        if (t->dtype == G3_Q4_0) g3_q4x16_pack(p, t->data, t->row_bytes, N, nb);
        else if (t->dtype == G3_Q8_0) g3_q8x16_pack(p, t->data, t->row_bytes, N, nb);
        else if (t->dtype == G3_Q5_0) g3_q5x16_pack(p, t->data, t->row_bytes, N, nb);
        else if (t->dtype == G3_Q4_K) g3_q4kx16_pack(p, t->data, t->row_bytes, N, nb);
        else g3_q6kx16_pack(p, t->data, t->row_bytes, N, nb);
        t->packed = p;
        if (mapped) release(t->data, t->nbytes);
    }
    return 0;
}
