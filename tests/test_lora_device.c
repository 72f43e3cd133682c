// test_lora_device.c: the training context's device path (train_pass.c: parameters,
// gradients and AdamW moments in backend buffers, the model copy pointing at them, the
// adapter's factors moved there, a frozen base used where it is) run on the CPU's own ops
// behind a device-style table: host = 0, buffers of its own, copies in and out, and the
// resident step's zero / sum of squares / AdamW ops (optim.c's formulas, so results are
// bit-identical). Same ops, same numbers: every result must equal the CPU path's bit for
// bit, which checks the wiring the GPU relies on (tests/test_cuda_lora.c runs the same
// checks on the GPU with f32 tolerances): LoRA (dropout, resident steps, base untouched),
// ReLoRA (frozen weights skipped by the device step, a merge through the host), packed rows.
#include "lora_device.h"
#include "train/optim.h"

static void *fd_alloc(G3Backend *be, size_t bytes) {
    void *p = g3_malloc_aligned(bytes ? bytes : 64);
    if (p) memset(p, 0, bytes ? bytes : 64);
    return p;
}
static void fd_free(G3Backend *be, void *p) { g3_free_aligned(p); }
static int fd_copy(G3Backend *be, void *dst, const void *src, size_t bytes) {
    if (bytes) memmove(dst, src, bytes);
    return 0;
}
static int fd_sync(G3Backend *be) { return 0; }
static int fd_zero(G3Backend *be, void *p, size_t bytes) {
    memset(p, 0, bytes);
    return 0;
}
// g3_grad_norm's sum, so that sqrt gives back its norm exactly (sqrt(x^2) = x in IEEE)
static double fd_sumsq(G3Backend *be, const float *x, long n) {
    const double r = g3_grad_norm(x, n);
    return r * r;
}
static int fd_adamw(G3Backend *be, float *p, const float *g, float *m, float *v, long n, const float k[8], float decay_mul) {
    for (long i = 0; i < n; i++) {  // optim.c adamw_one, the same operations in the same order
        const float gg = g[i] * k[7];
        const float pv = p[i] * decay_mul;
        const float mv = k[0] * m[i] + k[2] * gg;
        const float vv = k[1] * v[i] + k[3] * gg * gg;
        const float denom = sqrtf(vv) * k[5] + k[6];
        p[i] = pv - k[4] * (mv / denom);
        m[i] = mv;
        v[i] = vv;
    }
    return 0;
}

int main(void) {
    G3Backend fake = *g3_backend_cpu();
    fake.name = "cpu-as-device";
    fake.host = 0;
    fake.alloc = fd_alloc;
    fake.free = fd_free;
    fake.to_device = fd_copy;
    fake.to_host = fd_copy;
    fake.sync = fd_sync;
    fake.zero = fd_zero;
    fake.sumsq = fd_sumsq;
    fake.adamw = fd_adamw;
    ld_test_lora(&fake, fake.name, 0);
    ld_test_relora(&fake, fake.name, 0);
    ld_test_dpo(&fake, fake.name, 0);
    ld_test_rank1(&fake, fake.name, "svd,every=2", 1e-5);
    ld_test_rank1(&fake, fake.name, "random,every=2", 1e-5);
    ld_test_pack(&fake, fake.name, "gemma3-tiny-f32", 0);
    ld_test_pack(&fake, fake.name, "gemma2-tiny-f32", 0);
    // a backend without the dropout op cannot train an adapter through the device path
    G3Backend nodrop = fake;
    nodrop.dropout = NULL;
    G3TrainModel tm;
    ld_lora_model(&tm, "tests/fixtures/gemma3-tiny-f32", "r=2");
    G3TrainCtx *cx = g3_train_ctx_new_on(&tm, &nodrop, LD_B, LD_T, 0, NULL);
    CHECK(!cx && strstr(g3_error(), "dropout"), "a device backend without 'dropout' accepted a LoRA context (%s)", g3_error());
    g3_train_ctx_free(cx);
    g3_train_model_free(&tm);
    return check_done();
}
