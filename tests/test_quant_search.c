// test_quant_search.c: the plain quantizers' scale (and min) search (tensor/quant_search.c).
// - for every searched type, on random rows of several distributions (normal, uniform,
//   Student-t with 3 degrees of freedom, Laplace, normal with 1% outliers at 10x, normal with a
//   per-row scale over orders of magnitude and a zero block), the traits' from_f32 (the search)
//   has a squared error sum (x - x')^2 no larger than the simple max/min rule's
//   (g3_*_from_f32_simple) in every block, and clearly below it in total;
// - the result does not depend on how a row is cut into calls (whole row, block by block);
// - a block with a NaN or infinity gets the simple rule's bytes.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "tensor/quant.h"

static uint64_t rs = 0x243F6A8885A308D3ull;
static double urand(void) {
    rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
    return ((double)(rs >> 11) + 0.5) / 9007199254740992.0;
}
static double nrand(void) { return sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()); }

enum { DIST_NORMAL, DIST_UNIFORM, DIST_T3, DIST_LAPLACE, DIST_OUTLIERS, DIST_SCALED, NDIST };
static const char *dist_name[NDIST] = {"normal", "uniform", "student-t3", "laplace", "outliers", "scaled"};

static double sample(int dist) {
    switch (dist) {
    case DIST_UNIFORM: return 2 * urand() - 1;
    case DIST_T3: {
        const double z = nrand(), u = nrand(), v = nrand(), w = nrand();
        return z / sqrt((u * u + v * v + w * w) / 3);
    }
    case DIST_LAPLACE: return (urand() < 0.5 ? -1 : 1) * log(urand());
    case DIST_OUTLIERS: return nrand() * (urand() < 0.01 ? 10 : 1);
    default: return nrand();
    }
}

static double sqerr(const float *x, const float *y, int n) {
    double e = 0;
    for (int i = 0; i < n; i++) e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return e;
}

typedef struct {
    G3DType t;
    void (*simple)(void *, const float *, int64_t);
} Type;

static const Type types[] = {
    {G3_Q8_0, g3_q8_0_from_f32_simple}, {G3_Q4_0, g3_q4_0_from_f32_simple}, {G3_Q4_1, g3_q4_1_from_f32_simple},
    {G3_Q5_0, g3_q5_0_from_f32_simple}, {G3_Q5_1, g3_q5_1_from_f32_simple}, {G3_Q4_K, g3_q4_k_from_f32_simple},
    {G3_Q5_K, g3_q5_k_from_f32_simple}, {G3_Q6_K, g3_q6_k_from_f32_simple},
};

static void not_worse(void) {
    enum { N = 1536, ROWS = 24 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z);
    uint8_t *a = malloc(N * 2), *b = malloc(N * 2), *c = malloc(N * 2);
    for (size_t ti = 0; ti < sizeof types / sizeof *types; ti++) {
        const G3TypeTraits *tt = g3_type(types[ti].t);
        const int bn = tt->block, bb = tt->block_bytes;
        const int64_t rb = g3_type_row_bytes(types[ti].t, N);
        printf("%-5s search / simple squared error:", tt->name);
        int worse = 0, split = 1;
        for (int d = 0; d < NDIST; d++) {
            double es = 0, e0 = 0;
            for (int r = 0; r < ROWS; r++) {
                const double sc = d == DIST_SCALED ? exp(3 * nrand()) : 0.02;
                for (int i = 0; i < N; i++) x[i] = (float)(sc * sample(d));
                if (d == DIST_SCALED && r == 0) memset(x + bn, 0, (size_t)bn * sizeof *x);  // a zero block
                types[ti].simple(a, x, N);
                tt->from_f32(b, x, N);
                tt->to_f32(y, a, N);
                tt->to_f32(z, b, N);
                for (int k = 0; k < N / bn; k++) {
                    const double e1 = sqerr(x + k * bn, z + k * bn, bn), ek = sqerr(x + k * bn, y + k * bn, bn);
                    worse += e1 > ek;
                }
                es += sqerr(x, z, N), e0 += sqerr(x, y, N);
                // block by block: the same bytes as the whole row
                for (int k = 0; k < N / bn; k++) tt->from_f32(c + (size_t)k * bb, x + k * bn, bn);
                split &= !memcmp(b, c, (size_t)rb);
            }
            printf(" %s %.3f", dist_name[d], es / e0);
            // the search must do something on every distribution (Q8_0's gain is the smallest)
            CHECK(es < 0.97 * e0, "%s, %s: search's squared error %.4g not below the simple rule's %.4g", tt->name, dist_name[d], es, e0);
        }
        printf("\n");
        CHECK(worse == 0, "%s: %d blocks with a squared error above the simple rule's", tt->name, worse);
        CHECK(split, "%s: a row quantized block by block differs from the whole row", tt->name);
        // a non-finite value: the simple rule's bytes, whatever they are
        for (int i = 0; i < bn; i++) x[i] = (float)nrand();
        x[3] = NAN;
        types[ti].simple(a, x, bn);
        tt->from_f32(b, x, bn);
        CHECK(!memcmp(a, b, (size_t)bb), "%s: a block with a NaN is not the simple rule's", tt->name);
        x[3] = -INFINITY;
        types[ti].simple(a, x, bn);
        tt->from_f32(b, x, bn);
        CHECK(!memcmp(a, b, (size_t)bb), "%s: a block with an infinity is not the simple rule's", tt->name);
    }
    free(x), free(y), free(z), free(a), free(b), free(c);
}

int main(void) {
    not_worse();
    return check_done();
}
