// test_cuda_lora.c: LoRA, ReLoRA and packed rows trained on the GPU (issue 19) against the CPU
// (tests/lora_device.h): the adapter's factors, gradients and AdamW moments resident on the
// device, the bf16 base uploaded once as stored (its input gradients through a widened
// copy), LoRA dropout's masks drawn on the device by the CPU's function, ReLoRA's merge
// through the host, and the masked attention of packed rows (attn_mask.cu). Tolerances are
// f32's: a few ulps per op, amplified over a step or three. The dropout kernel is also checked
// bit for bit against the CPU's op.
#ifndef G3_CUDA
#include <stdio.h>
int main(void) {
    puts("test_cuda_lora: skipped: built without CUDA (make CUDA=1)");
    return 0;
}
#else
#include "cuda/cuda_test.h"
#include "lora_device.h"

// Everything through the backend's own memory ops (its stream orders them).
static void test_dropout(G3Backend *be) {
    const long n = 100003;
    float *x = malloc(n * 4), *y = malloc(n * 4), *z = malloc(n * 4);
    fill(x, n, 1.0f);
    G3Backend *cpu = g3_backend_cpu();
    float *X = be->alloc(be, n * 4), *Y = be->alloc(be, n * 4);
    CHECK(X && Y && be->to_device(be, X, x, n * 4) == 0, "%s", g3_error());
    for (int acc = 0; acc < 2 && X && Y; acc++) {
        memcpy(y, x, n * 4);
        CHECK(be->to_device(be, Y, x, n * 4) == 0, "%s", g3_error());
        cpu->dropout(cpu, y, x, n, 0.3f, 1.0f / 0.7f, 12345, 7, acc);
        be->dropout(be, Y, X, n, 0.3f, 1.0f / 0.7f, 12345, 7, acc);
        CHECK(be->to_host(be, z, Y, n * 4) == 0, "%s", g3_error());
        CHECK(!memcmp(y, z, n * 4), "dropout (accumulate %d): the GPU's mask or values differ from the CPU's", acc);
    }
    long kept = 0;
    for (long i = 0; i < n; i++) kept += z[i] != x[i];  // accumulate: kept elements changed
    CHECK(kept > 0.6 * n && kept < 0.8 * n, "dropout p 0.3 kept %ld of %ld", kept, n);
    printf("dropout: %ld elements, p 0.3: the GPU's mask and values bit-identical to the CPU's (%.3f kept)\n", n, (double)kept / n);
    be->free(be, X), be->free(be, Y);
    free(x), free(y), free(z);
}

int main(void) {
    G3Cuda *cu = cuda_test_start("test_cuda_lora");
    if (!cu) return 0;
    G3Backend *be = g3_backend_open("cuda");
    CHECK(be != NULL, "%s", g3_error());
    if (be) {
        test_dropout(be);
        ld_test_lora(be, "cuda", 1e-5);
        ld_test_relora(be, "cuda", 1e-5);
        ld_test_dpo(be, "cuda", 1e-5);
        ld_test_rank1(be, "cuda", "svd,every=2", 1e-4);
        ld_test_rank1(be, "cuda", "random,every=2", 1e-4);
        ld_test_pack(be, "cuda", "gemma3-tiny-f32", 1e-5);
        ld_test_pack(be, "cuda", "gemma2-tiny-f32", 1e-5);
        g3_backend_free(be);
    }
    g3cu_delete(cu);
    return check_done();
}
#endif
