// test_optim.c: our AdamW, gradient clipping and schedule against PyTorch's torch.optim.AdamW
// (tests/data/adamw_ref.safetensors, written by tests/ref/gen_adamw_ref.py in float64); the
// 8-bit variant against the same trajectory (close, not exact); the 8-bit code tables; the
// schedules' shapes.
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "backend/backend.h"
#include "base/base.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "train/optim.h"
#include "train/rng.h"
#include "train/schedule.h"

static const char *names[3] = {"w_mat", "embed", "norm"};

static const void *get(const STSet *st, const char *name, int64_t n, G3DType dt) {
    const STTensor *t = st_find(st, name);
    if (!t || st_numel(t) != n || t->dtype != dt) {
        fprintf(stderr, "reference tensor %s missing or wrong\n", name);
        exit(1);
    }
    return t->data;
}

static double get1(const double *a, int i) { double x; memcpy(&x, a + i, 8); return x; }

// Runs the reference's steps with bits 32 or 8; returns the largest per-tensor relative error
// of the parameters (bits 32) or of the total update (bits 8) over all steps.
static double run(const STSet *st, int bits, double *max_lr_err, double *max_norm_err) {
    const double *hp = get(st, "hparams", 9, G3_F64);
    int steps = (int)get1(hp, 3);
    int64_t numel[3], off[3], n = 0;
    uint8_t decay[3] = {1, 0, 0};
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "init.%s", names[i]);
        numel[i] = st_numel(st_find(st, nm));
        off[i] = n;
        n += numel[i];
    }
    float *p = malloc(sizeof(float) * (size_t)n), *g = malloc(sizeof(float) * (size_t)n), *p0 = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < 3; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "init.%s", names[i]);
        memcpy(p + off[i], get(st, nm, numel[i], G3_F32), sizeof(float) * (size_t)numel[i]);
    }
    memcpy(p0, p, sizeof(float) * (size_t)n);
    G3AdamWConfig c = {.beta1 = get1(hp, 4), .beta2 = get1(hp, 5), .eps = get1(hp, 6), .weight_decay = get1(hp, 7), .bits = bits};
    G3AdamW o;
    CHECK(g3_adamw_init(&o, &c, 3, off, numel, decay) == 0, "%s", g3_error());
    G3Schedule sch = {G3_SCHED_COSINE, get1(hp, 0), get1(hp, 1), (int64_t)get1(hp, 2), steps, 0};
    const double *lrs = get(st, "lr", steps, G3_F64), *norms = get(st, "grad_norm", steps, G3_F64);
    double worst = 0;
    *max_lr_err = *max_norm_err = 0;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < 3; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "grad%d.%s", s, names[i]);
            memcpy(g + off[i], get(st, nm, numel[i], G3_F32), sizeof(float) * (size_t)numel[i]);
        }
        double norm = g3_grad_norm(g, n), lr = g3_schedule_lr(&sch, s);
        *max_lr_err = fmax(*max_lr_err, fabs(lr - get1(lrs, s)) / get1(lrs, s));
        *max_norm_err = fmax(*max_norm_err, fabs(norm - get1(norms, s)) / get1(norms, s));
        g3_adamw_step(&o, p, g, lr, g3_clip_scale(norm, get1(hp, 8)));
        for (int i = 0; i < 3; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "step%d.%s", s, names[i]);
            const float *ref = get(st, nm, numel[i], G3_F32);
            double e;
            if (bits == 32) e = rel_err(p + off[i], ref, numel[i]);
            else {
                // Compare the updates (p - p0), which is where quantization shows.
                float *du = malloc(sizeof(float) * (size_t)numel[i]), *dr = malloc(sizeof(float) * (size_t)numel[i]);
                for (int64_t j = 0; j < numel[i]; j++) {
                    du[j] = p[off[i] + j] - p0[off[i] + j];
                    dr[j] = ref[j] - p0[off[i] + j];
                }
                e = rel_err(du, dr, numel[i]);
                free(du);
                free(dr);
            }
            if (e > worst) worst = e;
        }
    }
    g3_adamw_free(&o);
    free(p); free(g); free(p0);
    return worst;
}

// The 8-bit step at the scalar level and with AVX2 (when this CPU has it) from the same start:
// the same bits in parameters, codes and block scales after a few steps. Segments of odd
// lengths (vector tails), gradients over many decades, exact zeros and a NaN in one block.
static void adamw8_levels(void) {
    if (g3_kernels_init(G3_ISA_AVX2) != G3_ISA_AVX2) { printf("8-bit AdamW levels: no AVX2 here, skipped\n"); return; }
    int64_t numel[3] = {1000, 7, 777}, off[3] = {0, 1000, 1007}, n = 1784;
    uint8_t decay[3] = {1, 0, 1};
    G3AdamWConfig c = g3_adamw_defaults();
    c.bits = 8;
    float *p[2], *g = malloc(sizeof(float) * (size_t)n);
    G3AdamW o[2];
    G3Rng r;
    for (int lv = 0; lv < 2; lv++) {
        p[lv] = malloc(sizeof(float) * (size_t)n);
        CHECK(g3_adamw_init(&o[lv], &c, 3, off, numel, decay) == 0, "init");
        g3_rng_seed(&r, 3);
        for (int64_t i = 0; i < n; i++) p[lv][i] = (float)(g3_rng_uniform(&r) - 0.5);
    }
    for (int step = 0; step < 6; step++) {
        g3_rng_seed(&r, 100 + (uint64_t)step);
        for (int64_t i = 0; i < n; i++) {
            double u = g3_rng_uniform(&r);
            g[i] = i % 97 == 0 ? 0.0f : (float)((u - 0.5) * pow(10, -8 * g3_rng_uniform(&r)));
        }
        if (step == 3) g[1500] = NAN;
        for (int lv = 0; lv < 2; lv++) {
            g3_kernels_init(lv ? G3_ISA_AVX2 : G3_ISA_SCALAR);
            g3_adamw_step(&o[lv], p[lv], g, 1e-3, 1.0f);
        }
    }
    int codes = memcmp(o[0].mq, o[1].mq, (size_t)n) == 0 && memcmp(o[0].vq, o[1].vq, (size_t)n) == 0;
    int scales = memcmp(o[0].mmax, o[1].mmax, sizeof(float) * (size_t)o[0].nblocks) == 0 &&
                 memcmp(o[0].vmax, o[1].vmax, sizeof(float) * (size_t)o[0].nblocks) == 0;
    int params = memcmp(p[0], p[1], sizeof(float) * (size_t)n) == 0;
    CHECK(codes, "8-bit codes: AVX2 != scalar");
    CHECK(scales, "8-bit block scales: AVX2 != scalar");
    CHECK(params, "8-bit AdamW parameters: AVX2 != scalar");
    if (codes && scales && params) printf("8-bit AdamW: AVX2 and scalar steps agree bit for bit (%lld params, 6 steps)\n", (long long)n);
    g3_kernels_init(G3_ISA_AVX512BF16);
    for (int lv = 0; lv < 2; lv++) { g3_adamw_free(&o[lv]); free(p[lv]); }
    free(g);
}

// The backend op (what resident training calls per tensor; train_pass.c) against the direct
// call (g3_adamw_step) on the CPU backend, bit for bit: segments of odd lengths with and
// without decay, random starting codes and block scales, gradients over many decades with
// zeros and a NaN, six steps. The constants are those train_pass.c computes.
static void adamw8_backend_op(void) {
    int64_t numel[4] = {1000, 7, 777, 4099}, off[4] = {0, 1000, 1007, 1784}, n = 5883;
    uint8_t decay[4] = {1, 0, 1, 1};
    G3AdamWConfig c = g3_adamw_defaults();
    c.bits = 8;
    G3Backend *be = g3_backend_cpu();
    CHECK(be->adamw8 != NULL, "the CPU backend has no adamw8 op");
    if (!be->adamw8) return;
    float *p[2], *g = malloc(sizeof(float) * (size_t)n);
    G3AdamW o[2];
    G3Rng r;
    for (int k = 0; k < 2; k++) {
        p[k] = malloc(sizeof(float) * (size_t)n);
        CHECK(g3_adamw_init(&o[k], &c, 4, off, numel, decay) == 0, "init");
        g3_rng_seed(&r, 5);
        for (int64_t i = 0; i < n; i++) {
            p[k][i] = (float)(g3_rng_uniform(&r) - 0.5);
            o[k].mq[i] = (uint8_t)(g3_rng_next(&r) & 255);
            o[k].vq[i] = (uint8_t)(g3_rng_next(&r) & 255);
        }
        for (int64_t b = 0; b < o[k].nblocks; b++) {
            o[k].mmax[b] = (float)(g3_rng_uniform(&r) * 1e-2);
            o[k].vmax[b] = (float)(g3_rng_uniform(&r) * 1e-4);
        }
    }
    for (int step = 0; step < 6; step++) {
        g3_rng_seed(&r, 200 + (uint64_t)step);
        for (int64_t i = 0; i < n; i++) {
            double u = g3_rng_uniform(&r);
            g[i] = i % 89 == 0 ? 0.0f : (float)((u - 0.5) * pow(10, -8 * g3_rng_uniform(&r)));
        }
        if (step == 2) g[1500] = NAN;
        const double lr = 1e-3 * (step + 1);
        const float scale = 0.8f;
        g3_adamw_step(&o[0], p[0], g, lr, scale);
        G3AdamW *b = &o[1];
        b->t++;
        const double bc1 = 1 - pow(c.beta1, (double)b->t), bc2 = 1 - pow(c.beta2, (double)b->t);
        const float k[8] = {(float)c.beta1, (float)c.beta2, (float)(1 - c.beta1), (float)(1 - c.beta2), (float)(lr / bc1),
                            (float)(1 / sqrt(bc2)), (float)c.eps, scale};
        const float mul_decay = (float)(1 - lr * c.weight_decay);
        for (int s = 0; s < b->nseg; s++) {
            const int64_t o0 = b->seg_off[s], b0 = b->seg_blk[s];
            CHECK(be->adamw8(be, p[1] + o0, g + o0, b->mq + o0, b->vq + o0, b->mmax + b0, b->vmax + b0, (long)b->seg_n[s], k,
                             b->seg_decay[s] ? mul_decay : 1.0f) == 0, "adamw8 op: %s", g3_error());
        }
    }
    const int params = memcmp(p[0], p[1], sizeof(float) * (size_t)n) == 0;
    const int codes = memcmp(o[0].mq, o[1].mq, (size_t)n) == 0 && memcmp(o[0].vq, o[1].vq, (size_t)n) == 0;
    const int scales = memcmp(o[0].mmax, o[1].mmax, sizeof(float) * (size_t)o[0].nblocks) == 0 &&
                       memcmp(o[0].vmax, o[1].vmax, sizeof(float) * (size_t)o[0].nblocks) == 0;
    CHECK(params && codes && scales, "8-bit AdamW: the CPU backend's adamw8 op differs from g3_adamw_step (params %d codes %d scales %d)",
          params, codes, scales);
    if (params && codes && scales)
        printf("8-bit AdamW: the CPU backend's adamw8 op equals g3_adamw_step bit for bit (%lld params in 4 tensors, 6 steps)\n",
               (long long)n);
    for (int k = 0; k < 2; k++) { g3_adamw_free(&o[k]); free(p[k]); }
    free(g);
}

// The device kernel's quantizer (g3_adamw8_code: a count of the decision thresholds below x,
// the function the CUDA kernel calls) against the CPU step's table quantizer, which main()
// holds to the reference search for |x| < 1.5: every code, the midpoints, the thresholds and
// their neighbours, random values, a sweep of float bit patterns over the whole float line
// (far above 1 both differ from the search alike: at FLT_MAX the search's two distances
// round to the same float and it keeps the lower code), the ends.
static void adamw8_device_code(void) {
    const float *tab = g3_adamw8_tables();
    G3Rng r;
    g3_rng_seed(&r, 13);
    int same = 1;
    long checked = 0;
    for (int t = 0; t < 2; t++) {
        const float *q = t ? g3_qmap_unsigned() : g3_qmap_signed(), *thr = tab + 256 * (2 + t);  // (the fast one knows its map by address)
        same &= memcmp(tab + 256 * t, q, 256 * sizeof(float)) == 0;
#define SAME(x) (same &= g3_adamw8_code(thr, (x)) == g3_quantize_nearest_fast(q, (x)), checked++)
        for (int i = 0; i < 256; i++) {
            float mid = i < 255 ? (q[i] + q[i + 1]) / 2 : 2.0f;
            float xs[] = {q[i], nextafterf(q[i], -2), nextafterf(q[i], 2), mid, nextafterf(mid, -2), nextafterf(mid, 2), -q[i],
                          thr[i], nextafterf(thr[i], -2), nextafterf(thr[i], 2)};
            for (int j = 0; j < 10; j++) SAME(xs[j]);
        }
        for (int i = 0; i < 100000; i++) {
            const float x = (float)(3 * g3_rng_uniform(&r) - 1.5);  // (SAME reads its argument twice)
            SAME(x);
        }
        for (uint32_t u = 0; u <= 0x7F800000u; u += 251) {  // 0 .. +inf
            float x;
            memcpy(&x, &u, sizeof x);
            SAME(x);
            SAME(-x);
        }
        float ends[] = {-5, -1, 0, 1, 5, -0.0f, 1e-30f, -1e-30f, NAN, INFINITY, -INFINITY, 1.0000001f, -1.0000001f, FLT_MAX, -FLT_MAX};
        for (int j = 0; j < 15; j++) SAME(ends[j]);
#undef SAME
    }
    CHECK(same, "8-bit AdamW: the device quantizer (g3_adamw8_code) differs from the CPU step's");
    if (same) printf("8-bit AdamW: the device quantizer equals the CPU step's on %ld values\n", checked);
}

// The gradient norm's AVX2 sums against the scalar ones, bit for bit: lengths that leave a
// tail in every chunk, values over many decades.
static void grad_norm_levels(void) {
    if (g3_kernels_init(G3_ISA_AVX2) != G3_ISA_AVX2) { printf("grad norm levels: no AVX2 here, skipped\n"); return; }
    G3Rng r;
    g3_rng_seed(&r, 11);
    int same = 1;
    for (int64_t n = 1; n < 200000; n = n * 3 + 5) {
        float *g = malloc(sizeof(float) * (size_t)n);
        for (int64_t i = 0; i < n; i++) g[i] = (float)((g3_rng_uniform(&r) - 0.5) * pow(10, 6 - 12 * g3_rng_uniform(&r)));
        g3_kernels_init(G3_ISA_SCALAR);
        double a = g3_grad_norm(g, n);
        g3_kernels_init(G3_ISA_AVX2);
        double b = g3_grad_norm(g, n);
        same &= memcmp(&a, &b, sizeof a) == 0;
        CHECK(a == b, "grad norm n=%lld: AVX2 %.17g, scalar %.17g", (long long)n, b, a);
        free(g);
    }
    if (same) printf("grad norm: AVX2 and scalar sums agree bit for bit\n");
    g3_kernels_init(G3_ISA_AVX512BF16);
}

int main(void) {
    adamw8_levels();
    adamw8_backend_op();
    adamw8_device_code();
    grad_norm_levels();
    STSet st;
    if (st_open(&st, "tests/data/adamw_ref.safetensors")) {
        fprintf(stderr, "%s\n", g3_error());
        return 1;
    }
    double lr_err, norm_err;
    double e32 = run(&st, 32, &lr_err, &norm_err);
    printf("AdamW vs torch.optim.AdamW: max rel err %.3g (params), lr %.3g, grad norm %.3g\n", e32, lr_err, norm_err);
    CHECK(e32 < 1e-6, "32-bit AdamW rel err %g", e32);
    CHECK(lr_err < 1e-12, "schedule rel err %g", lr_err);
    CHECK(norm_err < 1e-9, "grad norm rel err %g", norm_err);
    double e8 = run(&st, 8, &lr_err, &norm_err);
    printf("8-bit AdamW: update rel err %.3g vs the f32 reference\n", e8);
    CHECK(e8 < 0.05, "8-bit AdamW update rel err %g", e8);
    st_close(&st);

    // The 8-bit code tables: ascending, 0 and 1 present, and round trips close over six decades.
    const float *qs = g3_qmap_signed(), *qu = g3_qmap_unsigned();
    int sorted = 1;
    for (int i = 1; i < 256; i++) sorted &= qs[i] > qs[i - 1] && qu[i] > qu[i - 1];
    CHECK(sorted, "code tables must be strictly ascending");
    CHECK(qu[0] == 0 && qu[255] == 1 && qs[255] == 1, "code table ends");
    CHECK(qs[g3_quantize_nearest(qs, 0)] == 0, "zero must be exact");
    double worst_rt = 0;
    G3Rng r;
    g3_rng_seed(&r, 7);
    for (int i = 0; i < 10000; i++) {
        float x = (float)pow(10, -5 * g3_rng_uniform(&r));  // 1e-5 .. 1
        float y = qu[g3_quantize_nearest(qu, x)], z = qs[g3_quantize_nearest(qs, -x)];
        // Error relative to the block's absmax (1 here): the code's spacing is finest near 0.
        worst_rt = fmax(worst_rt, fmax(fabs(y - x), fabs(z + x)));
    }
    printf("8-bit code round trip over 1e-5..1: max abs err %.3g (of absmax)\n", worst_rt);
    // The table quantizer against the reference: every code, the midpoints between codes
    // (ties) and their float neighbours, random values in [-1.5, 1.5], every 251st float below
    // 1.5 in magnitude, and the ends (NaN and infinities included).
    int same = 1;
    for (int t = 0; t < 2; t++) {
        const float *q = t ? qu : qs;
        for (int i = 0; i < 256; i++) {
            float mid = i < 255 ? (q[i] + q[i + 1]) / 2 : 2.0f;
            float xs[] = {q[i], nextafterf(q[i], -2), nextafterf(q[i], 2), mid, nextafterf(mid, -2), nextafterf(mid, 2), -q[i]};
            for (int j = 0; j < 7; j++) same &= g3_quantize_nearest(q, xs[j]) == g3_quantize_nearest_fast(q, xs[j]);
        }
        for (int i = 0; i < 100000; i++) {
            float x = (float)(3 * g3_rng_uniform(&r) - 1.5);
            same &= g3_quantize_nearest(q, x) == g3_quantize_nearest_fast(q, x);
        }
        for (uint32_t u = 0; u < 0x3FC00000u; u += 251) {  // a sweep of float bit patterns, |x| < 1.5, both signs
            float x;
            memcpy(&x, &u, sizeof x);
            same &= g3_quantize_nearest(q, x) == g3_quantize_nearest_fast(q, x);
            same &= g3_quantize_nearest(q, -x) == g3_quantize_nearest_fast(q, -x);
        }
        float ends[] = {-5, -1, 0, 1, 5, -0.0f, 1e-30f, -1e-30f, NAN, INFINITY, -INFINITY};
        for (int j = 0; j < 11; j++) same &= g3_quantize_nearest(q, ends[j]) == g3_quantize_nearest_fast(q, ends[j]);
    }
    CHECK(same, "table quantizer differs from the reference");
    CHECK(worst_rt < 0.008, "dynamic code round trip error %g", worst_rt);

    // Memory: 8 bytes per parameter for f32 moments, ~2 for 8-bit.
    G3AdamW o;
    int64_t off = 0, n = 1 << 20;
    uint8_t d = 1;
    G3AdamWConfig c = g3_adamw_defaults();
    c.bits = 8;
    CHECK(g3_adamw_init(&o, &c, 1, &off, &n, &d) == 0, "init");
    printf("state for 1M params: %lld bytes (32-bit) vs %lld (8-bit)\n", (long long)g3_adamw_state_bytes(&o, 32),
           (long long)g3_adamw_state_bytes(&o, 8));
    CHECK(g3_adamw_state_bytes(&o, 8) * 3 < g3_adamw_state_bytes(&o, 32), "8-bit saves ~4x");
    g3_adamw_free(&o);

    // Schedules: constant after warmup; wsd stable then linear to the floor on the last step;
    // cosine reaches near the floor at the end.
    G3Schedule s = {G3_SCHED_CONSTANT, 1.0, 0.1, 10, 100, 0};
    CHECK(g3_schedule_lr(&s, 0) == 0.1 && g3_schedule_lr(&s, 9) == 1.0 && g3_schedule_lr(&s, 99) == 1.0, "constant");
    s.kind = G3_SCHED_WSD;
    s.decay = 20;
    CHECK(g3_schedule_lr(&s, 79) == 1.0 && fabs(g3_schedule_lr(&s, 89) - 0.55) < 1e-12 && fabs(g3_schedule_lr(&s, 99) - 0.1) < 1e-12,
          "wsd: %g %g %g", g3_schedule_lr(&s, 79), g3_schedule_lr(&s, 89), g3_schedule_lr(&s, 99));
    s.kind = G3_SCHED_COSINE;
    CHECK(g3_schedule_lr(&s, 10) == 1.0 && g3_schedule_lr(&s, 99) < 0.11 && g3_schedule_lr(&s, 500) == 0.1, "cosine");
    // Clipping: the factor of clip_grad_norm_.
    CHECK(g3_clip_scale(0.5, 1.0) == 1.0f && fabsf(g3_clip_scale(4.0, 1.0) - 0.25f) < 1e-6f && g3_clip_scale(4, 0) == 1.0f, "clip");
    return check_done();
}
