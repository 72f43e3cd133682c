// test_cuda_sae.c: a JumpReLU SAE trained on the GPU (cuda/sae_train.cu through
// g3_sae_trainer_use) against the same training on the CPU (analysis/sae_train.c): after
// several Adam steps on the same batches the exported SAEs, the step statistics and the
// firing counts agree (the GPU's products are cuBLAS f32 with TF32 off, summed in another
// order, so within float rounding, not bit for bit); and two GPU runs give the same bits.
#ifndef G3_CUDA
#include <stdio.h>
int main(void) {
    puts("test_cuda_sae: skipped: built without CUDA (make CUDA=1)");
    return 0;
}
#else
#include "analysis/sae.h"
#include "base/rng.h"
#include "backend/backend.h"
#include "cuda/cuda_test.h"

enum { D = 96, S = 384, N = 256, STEPS = 8 };

// Activations with structure (a few directions carry most of the variance) so that the
// features have something to find, plus a common offset (b_dec's job).
static void batch(float *x, int step) {
    G3Rng r;
    g3_rng_seed(&r, 100 + (uint64_t)step);
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) {
            const int k = (i * 7 + step) % 12;
            x[i * D + d] = (float)(0.3 + (d % 12 == k ? 3.0 : 0.0) + (g3_rng_uniform(&r) - 0.5));
        }
}

static int train(G3Backend *be, G3Sae *out, G3SaeStepStats *last, int64_t *fired) {
    G3SaeTrainConfig c = g3_sae_train_defaults();
    c.d_model = D;
    c.d_sae = S;
    c.l0_target = 16;
    c.lr = 2e-3;
    c.seed = 5;
    G3SaeTrainer *t = g3_sae_trainer_new(&c);
    if (!t || (be && g3_sae_trainer_use(t, be))) return -1;
    float *x = malloc(sizeof(float) * N * D);
    int rc = 0;
    for (int s = 0; s < STEPS && !rc; s++) {
        batch(x, s);
        rc = g3_sae_train_step(t, x, N, last);
    }
    int64_t rows;
    const int64_t *f = rc ? NULL : g3_sae_trainer_fired(t, &rows);
    if (!rc && f) memcpy(fired, f, sizeof(int64_t) * S);
    if (!rc && (!f || g3_sae_trainer_export(t, out))) rc = -1;
    free(x);
    g3_sae_trainer_free(t);
    return rc;
}

int main(void) {
    G3Cuda *cu = cuda_test_start("test_cuda_sae");
    if (!cu) return 0;
    g3cu_delete(cu);
    G3Backend *gpu = g3_backend_open("cuda");
    CHECK(gpu != NULL, "%s", g3_error());
    if (!gpu) return check_done();
    G3Sae a = {0}, b = {0}, b2 = {0};
    G3SaeStepStats sa, sb, sb2;
    int64_t fa[S], fb[S], fb2[S];
    CHECK(train(NULL, &a, &sa, fa) == 0, "CPU training: %s", g3_error());
    CHECK(train(gpu, &b, &sb, fb) == 0, "GPU training: %s", g3_error());
    CHECK(train(gpu, &b2, &sb2, fb2) == 0, "GPU training again: %s", g3_error());
    if (!a.w_enc || !b.w_enc || !b2.w_enc) return check_done();
    const double e_enc = rel_err(b.w_enc, a.w_enc, (long)D * S), e_dec = rel_err(b.w_dec, a.w_dec, (long)S * D);
    const double e_be = rel_err(b.b_enc, a.b_enc, S), e_th = rel_err(b.threshold, a.threshold, S), e_bd = rel_err(b.b_dec, a.b_dec, D);
    printf("GPU vs CPU after %d steps: w_enc %.2g, w_dec %.2g, b_enc %.2g, threshold %.2g, b_dec %.2g; mse %.6g vs %.6g, L0 %.3f vs %.3f\n",
           STEPS, e_enc, e_dec, e_be, e_th, e_bd, sb.mse, sa.mse, sb.l0, sa.l0);
    CHECK(e_enc < 1e-3 && e_dec < 1e-3 && e_be < 1e-3 && e_th < 1e-3 && e_bd < 1e-3, "GPU SAE differs from the CPU's");
    CHECK(fabs(sb.mse - sa.mse) <= 1e-3 * sa.mse && fabs(sb.l0 - sa.l0) <= 0.05 * sa.l0 + 0.5, "step statistics: mse %g vs %g, L0 %g vs %g",
          sb.mse, sa.mse, sb.l0, sa.l0);
    long dfire = 0, tot = 0;
    for (int j = 0; j < S; j++) {
        dfire += labs((long)(fb[j] - fa[j]));
        tot += fa[j];
    }
    CHECK(dfire <= tot / 100 + 5, "firing counts differ by %ld of %ld", dfire, tot);
    CHECK(!memcmp(b.w_enc, b2.w_enc, sizeof(float) * D * S) && !memcmp(b.w_dec, b2.w_dec, sizeof(float) * D * S) &&
              !memcmp(fb, fb2, sizeof fb),
          "two GPU runs give different bits");
    g3_sae_free(&a);
    g3_sae_free(&b);
    g3_sae_free(&b2);
    // TopK is refused on the GPU (it trains on the CPU), and the device is chosen before training
    G3SaeTrainConfig c = g3_sae_train_defaults();
    c.d_model = D, c.d_sae = S, c.kind = G3_SAE_TOPK, c.k = 8;
    G3SaeTrainer *t = g3_sae_trainer_new(&c);
    CHECK(t && g3_sae_trainer_use(t, gpu) == -1 && strstr(g3_error(), "TopK"), "TopK on the GPU: %s", g3_error());
    g3_sae_trainer_free(t);
    g3_backend_free(gpu);
    return check_done();
}
#endif
