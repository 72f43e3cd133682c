// test_quant_x16.c: Q8_0 and Q5_0 repacked 16 rows at a time (kernels/cpu/quant_q8x16.h,
// quant_q5x16.h, model/repack.c; Q4_0's groups: test_quant_q4x16.c). For each type: the reference
// product on the repacked bytes and the VNNI kernels, one group and two groups a call (where
// the CPU has them), give exactly the type's g3_qdot_*_ref result for every row (same integer
// sums, same float steps), at odd row counts (padding) and block counts, on random bytes (every
// value: Q8_0's -128 too, which a file may hold though ggml's rounding never writes it) and
// activations from each level's quantizer, extremes included; a group made into a GEMM panel
// (plain C, and Q5_0's VNNI panel maker) is the panel g3_qgemm_pack makes of the same rows; the CPU backend's linear with the
// repacked copy agrees with the one without (bitwise from 4 rows on: the same panels; below,
// the reference's results exactly); and a trained model (models/default) quantized to the
// type in memory gives the same prefill logits repacked as not, and decode logits within float
// rounding.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/base.h"
#include "check.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu/quant_gemm.h"
#include "kernels/cpu/quant_q5x16.h"
#include "kernels/cpu/quant_q8x16.h"
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

// A repacked type's functions.
typedef struct {
    G3DType type;
    void (*pack)(void *out, const void *w, int64_t row_bytes, int64_t N, int nb);
    int64_t (*bytes)(int64_t N, int nb);
    const uint8_t *(*group)(const void *packed, int64_t g, int nb);
    G3Q8x16Gemv (*gemv)(int level);  // the Q5_0 kernels have the same signatures
    G3Q8x16Gemv2 (*gemv2)(int level);
    G3Q8x16Gemv gemv_ref;
    G3Q8x16Gemv2 gemv2_ref;
    void (*to_panel)(G3QPanelBlock *p, const uint8_t *group, int nb);
    G3QDot qdot_ref;
    G3Q5x16Panel (*to_panel_fn)(int level);  // NULL: the plain-C one at every level
} XType;

static const XType xtypes[] = {
    {G3_Q8_0, g3_q8x16_pack, g3_q8x16_bytes, g3_q8x16_group, g3_q8x16_gemv, g3_q8x16_gemv2, g3_q8x16_gemv_ref,
     g3_q8x16_gemv2_ref, g3_q8x16_to_panel, g3_qdot_q8_0_ref, NULL},
    {G3_Q5_0, g3_q5x16_pack, g3_q5x16_bytes, g3_q5x16_group, g3_q5x16_gemv, g3_q5x16_gemv2, g3_q5x16_gemv_ref,
     g3_q5x16_gemv2_ref, g3_q5x16_to_panel, g3_qdot_q5_0_ref, g3_q5x16_to_panel_fn},
};

// N random rows of nb blocks of type t (every byte value after the f16 scale, scales of both
// signs), row n at n * nb blocks; Q8_0's first block starts with -128, 127, -127.
static uint8_t *random_rows(G3DType t, int N, int nb) {
    const int bb = (int)g3_type(t)->block_bytes;
    uint8_t *q = malloc((size_t)N * nb * bb);
    for (long i = 0; i < (long)N * nb; i++) {
        const uint16_t d = g3_f32_to_f16(0.05f * uniform());
        memcpy(q + i * bb, &d, 2);
        for (int j = 2; j < bb; j++) q[i * bb + j] = (uint8_t)next_u32();
    }
    if (t == G3_Q8_0 && N * nb > 0) q[2] = 0x80, q[3] = 127, q[4] = 0x81;
    return q;
}

static void test_kernels(const XType *xt, int level) {
    const int Ns[] = {1, 5, 16, 17, 37, 64}, nbs[] = {1, 2, 3, 36};
    const G3Q8x16Gemv gemv = xt->gemv(level);
    const G3Q8x16Gemv2 gemv2 = xt->gemv2(level);
    const char *tn = g3_dtype_name(xt->type);
    const int64_t bb = g3_type(xt->type)->block_bytes;
    for (size_t ni = 0; ni < sizeof Ns / sizeof *Ns; ni++)
        for (size_t bi = 0; bi < sizeof nbs / sizeof *nbs; bi++) {
            const int N = Ns[ni], nb = nbs[bi], K = nb * 32, ng = (N + 15) / 16;
            const uint8_t *q = random_rows(xt->type, N, nb);
            float *x = malloc((size_t)K * sizeof *x);
            for (int k = 0; k < K; k++) x[k] = uniform() * (1.0f + (float)(k % 5));
            if (nb > 1)  // a block of extremes: the activations' -127 and 127 against the weights' -128
                for (int k = 0; k < 32; k++) x[32 + k] = k % 2 ? 1.0f : -1.0f;
            G3BlockQ8A *a = malloc((size_t)nb * sizeof *a);
            g3_qdot_quantizer(level)(a, x, nb);  // the level's own quantizer (decode's)
            void *p = g3_malloc_aligned((size_t)xt->bytes(N, nb));
            xt->pack(p, q, nb * bb, N, nb);
            int bad_ref = 0, bad_lvl = 0, bad_panel = 0, bad_two = 0, bad_two_ref = 0;
            G3QPanelBlock *pa = malloc((size_t)nb * sizeof *pa), *pb = malloc((size_t)nb * sizeof *pb);
            for (int g = 0; g < ng; g++) {
                const int nr = N - 16 * g < 16 ? N - 16 * g : 16;
                float yr[16], yl[16];
                xt->gemv_ref(yr, xt->group(p, g, nb), nb, a, nr);
                gemv(yl, xt->group(p, g, nb), nb, a, nr);
                for (int r = 0; r < nr; r++) {
                    const float want = xt->qdot_ref(q + (16 * g + r) * nb * bb, a, nb);
                    bad_ref += memcmp(&yr[r], &want, 4) != 0;
                    bad_lvl += memcmp(&yl[r], &want, 4) != 0;
                }
                memset(pa, 0, (size_t)nb * sizeof *pa);
                memset(pb, 0, (size_t)nb * sizeof *pb);
                xt->to_panel(pa, xt->group(p, g, nb), nb);
                g3_qgemm_pack(pb, xt->type, q + 16 * g * nb * bb, nb * bb, nr, nb);
                bad_panel += memcmp(pa, pb, (size_t)nb * sizeof *pa) != 0;
                if (xt->to_panel_fn) {  // the level's own panel maker
                    memset(pa, 0, (size_t)nb * sizeof *pa);
                    xt->to_panel_fn(level)(pa, xt->group(p, g, nb), nb);
                    bad_panel += memcmp(pa, pb, (size_t)nb * sizeof *pa) != 0;
                }
                if (g % 2 == 0 && 16 * (g + 2) <= N) {  // a pair of two full groups from g: the two-group kernels
                    float y2[32], y2r[32];
                    gemv2(y2, xt->group(p, g, nb), nb, a);
                    xt->gemv2_ref(y2r, xt->group(p, g, nb), nb, a);
                    for (int r = 0; r < 32; r++) {
                        const float want = xt->qdot_ref(q + (16 * g + r) * nb * bb, a, nb);
                        bad_two += memcmp(&y2[r], &want, 4) != 0;
                        bad_two_ref += memcmp(&y2r[r], &want, 4) != 0;
                    }
                }
            }
            CHECK(bad_two_ref == 0, "%s two-group reference, N %d nb %d: %d rows differ from the dot reference", tn, N, nb, bad_two_ref);
            CHECK(bad_two == 0, "%s two-group kernel, level %s, N %d nb %d: %d rows differ from the dot reference", tn, g3_qdot_level_name(level), N, nb, bad_two);
            CHECK(bad_ref == 0, "%s reference on repacked rows, N %d nb %d: %d rows differ from the dot reference", tn, N, nb, bad_ref);
            CHECK(bad_lvl == 0, "%s level %s, N %d nb %d: %d rows differ from the dot reference", tn, g3_qdot_level_name(level), N, nb, bad_lvl);
            CHECK(bad_panel == 0, "%s N %d nb %d: %d groups' panels differ from g3_qgemm_pack's", tn, N, nb, bad_panel);
            free(pa), free(pb), free((void *)q), free(x), free(a), g3_free_aligned(p);
        }
}

// The backend's linear over a weight with and without its repacked copy.
static void test_linear(const XType *xt) {
    const int64_t bb = g3_type(xt->type)->block_bytes;
    const char *tn = g3_dtype_name(xt->type);
    G3Backend *be = g3_backend_cpu();
    const struct { int N, K, R; } shapes[] = {{7, 96, 1}, {37, 64, 2}, {67, 1024, 3}, {33, 160, 5}, {300, 256, 1}, {48, 352, 9}};
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int N = shapes[si].N, K = shapes[si].K, R = shapes[si].R, nb = K / 32;
        uint8_t *q = random_rows(xt->type, N, nb);
        float *x = malloc((size_t)R * K * 4), *y0 = malloc((size_t)R * N * 4), *y1 = malloc((size_t)R * N * 4);
        for (long i = 0; i < (long)R * K; i++) x[i] = uniform();
        void *p = g3_malloc_aligned((size_t)xt->bytes(N, nb));
        xt->pack(p, q, nb * bb, N, nb);
        G3Weight w = {xt->type, N, K, nb * bb, q, G3_MEM_HOST, NULL}, wp = w;
        wp.packed = p;
        CHECK(be->linear(be, y0, x, &w, R, G3_MM_FAST) == 0 && be->linear(be, y1, x, &wp, R, G3_MM_FAST) == 0, "%s", g3_error());
        const double e = rel_err(y1, y0, (long)R * N);
        if (R >= 4) CHECK(memcmp(y0, y1, (size_t)R * N * 4) == 0, "%s linear [%d x %d] x %d rows: repacked differs (rel %.3g)", tn, N, K, R, e);
        else CHECK(e < 1e-5, "%s linear [%d x %d] x %d rows: repacked rel err %.3g", tn, N, K, R, e);
        if (R < 4) {  // decode's rows: g3_qdot_q8_0_ref's results exactly
            G3BlockQ8A *a = malloc((size_t)R * nb * sizeof *a);
            int bad = 0;
            for (int r = 0; r < R; r++) g3_qdot_quantizer(g3_qdot_level())(a + (size_t)r * nb, x + (size_t)r * K, nb);
            for (int r = 0; r < R; r++)
                for (int n = 0; n < N; n++) {
                    const float want = xt->qdot_ref(q + n * nb * bb, a + (size_t)r * nb, nb);
                    bad += memcmp(&y1[(size_t)r * N + n], &want, 4) != 0;
                }
            CHECK(bad == 0, "%s linear [%d x %d] x %d rows repacked: %d outputs differ from the dot reference", tn, N, K, R, bad);
            free(a);
        }
        // exact mode reads the stored rows whatever the copy
        CHECK(be->linear(be, y0, x, &w, R, G3_MM_EXACT) == 0 && be->linear(be, y1, x, &wp, R, G3_MM_EXACT) == 0 &&
                  memcmp(y0, y1, (size_t)R * N * 4) == 0, "%s: exact mode uses the repacked copy", tn);
        free(q), free(x), free(y0), free(y1), g3_free_aligned(p);
    }
}

static void test_model(G3DType type) {
    const char *tn = g3_dtype_name(type);
    G3Model m;
    if (g3_model_load(&m, "models/default")) { CHECK(0, "models/default: %s", g3_error()); return; }
    const int T = 9, D = 4, V = m.cfg.vocab;
    int32_t ids[13] = {2, 651, 1213, 33, 470, 90, 1027, 12, 400, 3001, 77, 5, 1500};
    float *ref = steps_logits(&m, ids, T, D);  // the stored bf16 weights: what the type itself moves the logits by
    // every matrix to the type in memory (from its stored bf16)
    void **mem = calloc((size_t)m.nt, sizeof *mem);
    int nq = 0;
    for (int i = 0; i < m.nt; i++) {
        G3Tensor *t = &m.t[i];
        if (t->kind == G3_KIND_NORM || t->ndim != 2 || t->shape[1] % 32) continue;
        float *f = malloc((size_t)t->numel * sizeof *f);
        g3_to_f32(f, t->data, t->dtype, (size_t)t->numel);
        const int64_t rb = g3_type_row_bytes(type, t->shape[1]);
        mem[i] = malloc((size_t)(rb * t->shape[0]));
        for (int64_t r = 0; r < t->shape[0]; r++) g3_type(type)->from_f32((char *)mem[i] + r * rb, f + r * t->shape[1], t->shape[1]);
        free(f);
        CHECK(g3_model_set(&m, i, type, mem[i]) == 0, "set %s: %s", t->name, g3_error());
        nq++;
    }
    float *plain = steps_logits(&m, ids, T, D);
    CHECK(g3_model_repack(&m) == 0, "repack: %s", g3_error());
    int packed = 0;
    for (int i = 0; i < m.nt; i++) packed += m.t[i].packed != NULL;
    if (g3_qdot_cpu_level() >= G3_QDOT_AVX512VNNI) CHECK(packed == nq, "%s: repacked %d matrices of %d", tn, packed, nq);
    else CHECK(packed == 0, "%s: repacked %d matrices on a CPU without VNNI", tn, packed);
    float *rep = steps_logits(&m, ids, T, D);
    CHECK(memcmp(plain, rep, (size_t)T * V * 4) == 0, "%s: prefill logits differ repacked (rel %.3g)", tn, rel_err(rep, plain, (long)T * V));
    // one-token steps take another kernel repacked than not (the reference's float order, not
    // the ggml rows' kernel's two blocks a register): the same int32 block sums, so only the
    // float rounding differs, far below the type's own error
    const double e = rel_err(rep + (size_t)T * V, plain + (size_t)T * V, (long)D * V);
    const double eq = rel_err(plain + (size_t)T * V, ref + (size_t)T * V, (long)D * V);
    CHECK(e < 1e-4 || e < 0.1 * eq, "%s: decode logits repacked: rel err %.3g (against bf16: %.3g)", tn, e, eq);
    printf("%s: decode logits repacked vs not: rel err %.2g; %s vs bf16: %.2g\n", tn, e, tn, eq);
    // g3_model_set drops a stale copy
    if (packed) {
        const int i = m.layer_idx[0][W_Q];
        CHECK(g3_model_set(&m, i, type, mem[i]) == 0 && m.t[i].packed == NULL, "%s: g3_model_set keeps a stale repacked copy", tn);
    }
    free(plain), free(rep), free(ref);
    const int nt = m.nt;
    g3_model_free(&m);
    for (int i = 0; i < nt; i++) free(mem[i]);
    free(mem);
}

int main(void) {
    for (size_t i = 0; i < sizeof xtypes / sizeof *xtypes; i++) {
        for (int level = 0; level < G3_QDOT_LEVELS; level++)
            if (g3_qdot_table(level)) test_kernels(&xtypes[i], level);
        test_linear(&xtypes[i]);
        test_model(xtypes[i].type);
    }
    return check_done();
}
