// test_quant_q4x16.c: Q4_0 repacked 16 rows at a time (kernels/cpu/quant_q4x16.h, model/repack.c).
// The reference product on the repacked bytes and the VNNI kernel (where the CPU has it) give
// exactly g3_qdot_q4_0_ref's result for every row (same integer sums, same float steps), at odd
// row counts (padding) and block counts; a group made into a GEMM panel is the panel
// g3_qgemm_pack makes of the same rows; the CPU backend's linear with the repacked copy agrees
// with the one without (bitwise from 4 rows on: the same panels; within the int8 kernels'
// rounding below); and a trained model (models/default) quantized to Q4_0 in memory gives the
// same logits repacked as not, in prefill and in one-token decode steps.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/base.h"
#include "check.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/cpu/quant_q4x16.h"
#include "model/forward.h"
#include "model/model.h"
#include "steps.h"
#include "tensor/quant.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_u32(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}
static float uniform(void) { return (float)next_u32() / 4294967296.0f * 2.0f - 1.0f; }

// N random Q4_0 rows of nb blocks (every nibble value, scales of both signs), row n at q + n * nb.
static G3BlockQ4_0 *random_rows(int N, int nb) {
    G3BlockQ4_0 *q = malloc((size_t)N * nb * sizeof *q);
    for (long i = 0; i < (long)N * nb; i++) {
        q[i].d = g3_f32_to_f16(0.05f * uniform());
        for (int j = 0; j < 16; j++) q[i].qs[j] = (uint8_t)next_u32();
    }
    if (N * nb > 0) q[0].qs[0] = 0xf0, q[0].qs[1] = 0x0f;
    return q;
}

static void test_kernels(int level) {
    const int Ns[] = {1, 5, 16, 17, 37, 64}, nbs[] = {1, 2, 3, 36};
    const G3Q4x16Gemv gemv = g3_q4x16_gemv(level);
    const G3Q4x16Gemv2 gemv2 = g3_q4x16_gemv2(level);
    for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
        for (size_t bi = 0; bi < sizeof nbs / sizeof *nbs; bi++) {
            const int N = Ns[ni], nb = nbs[bi], K = nb * 32, ng = (N + 15) / 16;
            G3BlockQ4_0 *q = random_rows(N, nb);
            float *x = malloc((size_t)K * sizeof *x);
            for (int k = 0; k < K; k++) x[k] = uniform() * (1.0f + (float)(k % 5));
            G3BlockQ8A *a = malloc((size_t)nb * sizeof *a);
            g3_quantize_q8a(a, x, nb);
            void *p = g3_malloc_aligned((size_t)g3_q4x16_bytes(N, nb));
            g3_q4x16_pack(p, q, nb * (int64_t)sizeof *q, N, nb);
            int bad_ref = 0, bad_lvl = 0, bad_panel = 0, bad_two = 0, bad_two_ref = 0;
            G3QPanelBlock *pa = malloc((size_t)nb * sizeof *pa), *pb = malloc((size_t)nb * sizeof *pb);
            for (int g = 0; g < ng; g++) {
                const int nr = N - 16 * g < 16 ? N - 16 * g : 16;
                float yr[16], yl[16];
                g3_q4x16_gemv_ref(yr, g3_q4x16_group(p, g, nb), nb, a, nr);
                gemv(yl, g3_q4x16_group(p, g, nb), nb, a, nr);
                for (int r = 0; r < nr; r++) {
                    const float want = g3_qdot_q4_0_ref(q + (size_t)(16 * g + r) * nb, a, nb);
                    bad_ref += memcmp(&yr[r], &want, 4) != 0;
                    bad_lvl += memcmp(&yl[r], &want, 4) != 0;
                }
                memset(pa, 0, (size_t)nb * sizeof *pa);
                memset(pb, 0, (size_t)nb * sizeof *pb);
                g3_q4x16_to_panel(pa, g3_q4x16_group(p, g, nb), nb);
                g3_qgemm_pack(pb, G3_Q4_0, q + (size_t)16 * g * nb, nb * (int64_t)sizeof *q, nr, nb);
                bad_panel += memcmp(pa, pb, (size_t)nb * sizeof *pa) != 0;
                if (g % 2 == 0 && 16 * (g + 2) <= N) {  // a pair of two full groups from g: the two-group kernels
                    float y2[32], y2r[32];
                    gemv2(y2, g3_q4x16_group(p, g, nb), nb, a);
                    g3_q4x16_gemv2_ref(y2r, g3_q4x16_group(p, g, nb), nb, a);
                    for (int r = 0; r < 32; r++) {
                        const float want = g3_qdot_q4_0_ref(q + (size_t)(16 * g + r) * nb, a, nb);
                        bad_two += memcmp(&y2[r], &want, 4) != 0;
                        bad_two_ref += memcmp(&y2r[r], &want, 4) != 0;
                    }
                }
            }
            CHECK(bad_two_ref == 0, "two-group reference, N %d nb %d: %d rows differ from g3_qdot_q4_0_ref", N, nb, bad_two_ref);
            CHECK(bad_two == 0, "two-group kernel, level %s, N %d nb %d: %d rows differ from g3_qdot_q4_0_ref", g3_qdot_level_name(level), N, nb, bad_two);
            CHECK(bad_ref == 0, "reference on repacked rows, N %d nb %d: %d rows differ from g3_qdot_q4_0_ref", N, nb, bad_ref);
            CHECK(bad_lvl == 0, "level %s, N %d nb %d: %d rows differ from g3_qdot_q4_0_ref", g3_qdot_level_name(level), N, nb, bad_lvl);
            CHECK(bad_panel == 0, "N %d nb %d: %d groups' panels differ from g3_qgemm_pack's", N, nb, bad_panel);
            free(pa), free(pb), free(q), free(x), free(a), g3_free_aligned(p);
        }
}

// The backend's linear over a Q4_0 weight with and without its repacked copy.
static void test_linear(void) {
    G3Backend *be = g3_backend_cpu();
    const struct { int N, K, R; } shapes[] = {{7, 96, 1}, {37, 64, 2}, {67, 1024, 3}, {33, 160, 5}, {300, 256, 1}, {48, 352, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int N = shapes[si].N, K = shapes[si].K, R = shapes[si].R, nb = K / 32;
        G3BlockQ4_0 *q = random_rows(N, nb);
        float *x = malloc((size_t)R * K * 4), *y0 = malloc((size_t)R * N * 4), *y1 = malloc((size_t)R * N * 4);
        for (long i = 0; i < (long)R * K; i++) x[i] = uniform();
        void *p = g3_malloc_aligned((size_t)g3_q4x16_bytes(N, nb));
        g3_q4x16_pack(p, q, nb * (int64_t)sizeof *q, N, nb);
        G3Weight w = {G3_Q4_0, N, K, nb * (int64_t)sizeof *q, q, G3_MEM_HOST, NULL}, wp = w;
        wp.packed = p;
        CHECK(be->linear(be, y0, x, &w, R, G3_MM_FAST) == 0 && be->linear(be, y1, x, &wp, R, G3_MM_FAST) == 0, "%s", g3_error());
        const double e = rel_err(y1, y0, (long)R * N);
        if (R >= 4) CHECK(memcmp(y0, y1, (size_t)R * N * 4) == 0, "linear [%d x %d] x %d rows: repacked differs (rel %.3g)", N, K, R, e);
        else CHECK(e < 1e-5, "linear [%d x %d] x %d rows: repacked rel err %.3g", N, K, R, e);
        // exact mode reads the stored rows whatever the copy
        CHECK(be->linear(be, y0, x, &w, R, G3_MM_EXACT) == 0 && be->linear(be, y1, x, &wp, R, G3_MM_EXACT) == 0 &&
                  memcmp(y0, y1, (size_t)R * N * 4) == 0, "exact mode uses the repacked copy");
        free(q), free(x), free(y0), free(y1), g3_free_aligned(p);
    }
}

static void test_model(void) {
    G3Model m;
    if (g3_model_load(&m, "models/default")) { CHECK(0, "models/default: %s", g3_error()); return; }
    const int T = 9, D = 4, V = m.cfg.vocab;
    int32_t ids[13] = {2, 651, 1213, 33, 470, 90, 1027, 12, 400, 3001, 77, 5, 1500};
    float *ref = steps_logits(&m, ids, T, D);  // the stored bf16 weights: what Q4_0 itself moves the logits by
    // every matrix to Q4_0 in memory (from its stored bf16)
    void **mem = calloc((size_t)m.nt, sizeof *mem);
    int nq = 0;
    for (int i = 0; i < m.nt; i++) {
        G3Tensor *t = &m.t[i];
        if (t->kind == G3_KIND_NORM || t->ndim != 2 || t->shape[1] % 32) continue;
        float *f = malloc((size_t)t->numel * sizeof *f);
        g3_to_f32(f, t->data, t->dtype, (size_t)t->numel);
        const int64_t rb = g3_type_row_bytes(G3_Q4_0, t->shape[1]);
        mem[i] = malloc((size_t)(rb * t->shape[0]));
        for (int64_t r = 0; r < t->shape[0]; r++) g3_type(G3_Q4_0)->from_f32((char *)mem[i] + r * rb, f + r * t->shape[1], t->shape[1]);
        free(f);
        CHECK(g3_model_set(&m, i, G3_Q4_0, mem[i]) == 0, "set %s: %s", t->name, g3_error());
        nq++;
    }
    float *plain = steps_logits(&m, ids, T, D);
    CHECK(g3_model_repack(&m) == 0, "repack: %s", g3_error());
    int packed = 0;
    for (int i = 0; i < m.nt; i++) packed += m.t[i].packed != NULL;
    if (g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI) CHECK(packed == nq, "repacked %d matrices of %d", packed, nq);
    else CHECK(packed == 0, "repacked %d matrices on a CPU without VNNI", packed);
    float *rep = steps_logits(&m, ids, T, D);
    CHECK(memcmp(plain, rep, (size_t)T * V * 4) == 0, "prefill logits differ repacked (rel %.3g)", rel_err(rep, plain, (long)T * V));
    // one-token steps take another int8 kernel repacked than not (the activations rounded to
    // int8 in other groups): their difference must be small beside Q4_0's own (measured: 3.1e-3
    // against 0.1 on the 14.4M-parameter second default model; < 1e-4 on the earlier 5.6M one)
    const double e = rel_err(rep + (size_t)T * V, plain + (size_t)T * V, (long)D * V);
    const double eq = rel_err(plain + (size_t)T * V, ref + (size_t)T * V, (long)D * V);
    CHECK(e < 1e-4 || e < 0.1 * eq, "decode logits repacked: rel err %.3g (Q4_0 against bf16: %.3g)", e, eq);
    printf("decode logits repacked vs not: rel err %.2g; Q4_0 vs bf16: %.2g\n", e, eq);
    // g3_model_set drops a stale copy
    if (packed) {
        const int i = m.layer_idx[0][W_Q];
        CHECK(g3_model_set(&m, i, G3_Q4_0, mem[i]) == 0 && m.t[i].packed == NULL, "g3_model_set keeps a stale repacked copy");
    }
    free(plain), free(rep), free(ref);
    const int nt = m.nt;
    g3_model_free(&m);
    for (int i = 0; i < nt; i++) free(mem[i]);
    free(mem);
}

int main(void) {
    for (int level = 0; level < G3_QDOT_LEVELS; level++)
        if (g3_qdot_table(level)) test_kernels(level);
    test_linear();
    test_model();
    return check_done();
}
