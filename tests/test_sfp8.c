// test_sfp8.c: gemma.cpp's SFP8 (tensor/sfp8.h). Every one of the 256 codes decodes to the
// value the definition gives and encodes back to itself (0x80, the reserved "-0", to 0x00);
// boundary values (ties to the even code, saturation at 1.875, the bottom of the range, NaN,
// infinities); the fast decoders bit for bit and the dot kernels against the reference at every
// level this CPU has, odd lengths; `gemma3 convert --type SFP8` of the tiny F32 fixture loads and
// gives logits within 1e-1 (relative; measured 4.3e-2) of the F32 model in exact and fast mode; a file that
// claims SFP8 with the wrong byte count is refused naming the tensor.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "fixtures.h"
#include "io/safetensors.h"
#include "kernels/cpu/sfp8_dot.h"
#include "model/forward.h"
#include "model/model.h"
#include "tensor/dtype.h"
#include "tensor/sfp8.h"

static float logits_rel(const char *path, const float *ref, const int32_t *ids, int T, int fast, int V) {
    G3Model m;
    if (g3_model_load(&m, path)) {
        CHECK(0, "%s: %s", path, g3_error());
        return 1e9f;
    }
    G3State *s = g3_state_new(&m, 1, T, T, fast, NULL);
    float *lg = malloc((size_t)T * V * sizeof *lg);
    double e = 1e9;
    if (s && lg && m.cfg.vocab == V && g3_prefill(s, 0, ids, T, lg) == 0) e = rel_err(lg, ref, (long)T * V);
    else CHECK(0, "prefill: %s", g3_error());
    free(lg);
    g3_state_free(s);
    g3_model_free(&m);
    return (float)e;
}

static float *logits_of(const char *path, const int32_t *ids, int T, int *V) {
    G3Model m;
    if (g3_model_load(&m, path)) {
        CHECK(0, "%s: %s", path, g3_error());
        return NULL;
    }
    *V = m.cfg.vocab;
    G3State *s = g3_state_new(&m, 1, T, T, 0, NULL);
    float *lg = malloc((size_t)T * *V * sizeof *lg);
    CHECK(s && g3_prefill(s, 0, ids, T, lg) == 0, "%s", g3_error());
    g3_state_free(s);
    g3_model_free(&m);
    return lg;
}

static void test_codes(void) {
    // the definition, independently: 2-bit mantissa below 2^-7, 3-bit from 2^-7 to 1.875
    for (int b = 0; b < 256; b++) {
        const int c = b & 0x7f;
        double v = c == 0 ? 0 : c < 64 ? (1 + (c & 3) / 4.0) * pow(2, (c >> 2) - 23) : (1 + (c & 7) / 8.0) * pow(2, (c >> 3) - 15);
        if (b & 0x80) v = -v;
        const float d = g3_sfp8_decode((uint8_t)b);
        CHECK(d == (float)v, "code 0x%02x decodes to %g, not %g", b, d, v);
        const uint8_t back = g3_sfp8_encode(d);
        CHECK(back == (b == 0x80 ? 0 : b), "code 0x%02x: decode then encode gives 0x%02x", b, back);
        if (c > 0 && c < 127) CHECK(g3_sfp8_decode((uint8_t)(c + 1)) > g3_sfp8_decode((uint8_t)c), "code order is value order at %d", c);
    }
    CHECK(g3_sfp8_decode(0x7f) == G3_SFP8_MAX && g3_sfp8_decode(0xff) == -G3_SFP8_MAX, "the largest magnitude is 1.875");
    // the fast decoders: the same bits for all 256 codes
    uint8_t all[256];
    for (int b = 0; b < 256; b++) all[b] = (uint8_t)b;
    for (int lv = 0; lv < G3_SFP8_LEVELS; lv++) {
        const G3Sfp8Kernels *k = g3_sfp8_kernels_at(lv);
        if (!k) continue;
        float f[256], r[256];
        k->to_f32(f, all, 256);
        g3_sfp8_to_f32(r, all, 256);
        CHECK(!memcmp(f, r, sizeof f), "level %d: the row decoder differs from the reference", lv);
    }
}

static void test_boundaries(void) {
    static const struct { float x; uint8_t c; } known[] = {
        {0.0f, 0x00}, {-0.0f, 0x00}, {1.0f, 0x78}, {-1.0f, 0xf8}, {0.5f, 0x70}, {0x1p-7f, 0x40}, {0x1p-8f, 0x3c},
        {1.875f, 0x7f}, {-1.875f, 0xff}, {1.9f, 0x7f}, {2.0f, 0x7f}, {1e30f, 0x7f}, {-1e30f, 0xff}, {INFINITY, 0x7f},
        {-INFINITY, 0xff}, {NAN, 0x00}, {1.25f * 0x1p-23f, 0x01}, {0x1p-30f, 0x00}, {-0x1p-30f, 0x00},
        {1.8125f, 0x7e},             // the tie between 1.75 (0x7e) and 1.875 (0x7f): even code
        {1.875f * 0x1p-8f, 0x40},    // the tie between 1.75 * 2^-8 (0x3f) and 2^-7 (0x40): even code
        {0.625f * 0x1p-23f, 0x00},   // the tie between zero and the smallest code: zero
    };
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
        const uint8_t c = g3_sfp8_encode(known[i].x);
        CHECK(c == known[i].c, "encode(%a) = 0x%02x, not 0x%02x", (double)known[i].x, c, known[i].c);
    }
    // every gap between neighbouring codes: the midpoint goes to the even code, a step either
    // side to the nearer one (both signs)
    for (int c = 0; c < 127; c++) {
        const float lo = g3_sfp8_decode((uint8_t)c), hi = g3_sfp8_decode((uint8_t)(c + 1)), mid = (lo + hi) / 2;
        for (int s = 0; s < 2; s++) {
            const float sg = s ? -1.0f : 1.0f;
            const uint8_t sb = s ? 0x80 : 0, elo = c ? (uint8_t)(c | sb) : 0, ehi = (uint8_t)((c + 1) | sb);
            CHECK(g3_sfp8_encode(sg * mid) == (c & 1 ? ehi : elo), "tie between codes %d and %d", c, c + 1);
            CHECK(g3_sfp8_encode(sg * nextafterf(mid, 0)) == elo, "below the midpoint of %d and %d", c, c + 1);
            CHECK(g3_sfp8_encode(sg * nextafterf(mid, 10)) == ehi, "above the midpoint of %d and %d", c, c + 1);
        }
    }
    // the traits: one byte per weight, any row length
    const G3TypeTraits *tt = g3_type(G3_SFP8);
    CHECK(tt && !strcmp(tt->name, "SFP8") && tt->block == 1 && tt->block_bytes == 1 && tt->is_float, "traits");
    CHECK(g3_type_row_bytes(G3_SFP8, 1153) == 1153 && g3_dtype_from_name("SFP8", 4) == G3_SFP8, "row bytes and name");
}

static void test_dot(void) {
    static const int ns[] = {1, 7, 15, 16, 17, 63, 64, 65, 129, 1152 + 7, 4099};
    uint64_t st = 12345;
    for (size_t i = 0; i < sizeof ns / sizeof *ns; i++) {
        const int n = ns[i];
        uint8_t *w = malloc((size_t)n);
        float *x = malloc((size_t)n * sizeof *x);
        double abs_sum = 0;
        for (int k = 0; k < n; k++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            w[k] = (uint8_t)(st >> 56);
            if (w[k] == 0x80) w[k] = 0x81;
            x[k] = (float)((double)((st >> 20) & 0xfffff) / 0xfffff - 0.5);
            abs_sum += fabs((double)g3_sfp8_decode(w[k]) * x[k]);
        }
        double exact = 0;
        for (int k = 0; k < n; k++) exact += (double)g3_sfp8_decode(w[k]) * x[k];
        const float ref = g3_sfp8_kernels_at(G3_SFP8_SCALAR)->dot(w, x, n);
        CHECK(fabs(ref - exact) <= 1e-6 * abs_sum + 1e-30, "n %d: the reference dot %g, in double %g", n, ref, exact);
        for (int lv = 1; lv < G3_SFP8_LEVELS; lv++) {
            const G3Sfp8Kernels *k = g3_sfp8_kernels_at(lv);
            if (!k) {
                if (i == 0) printf("sfp8: level %d not on this CPU: skipped\n", lv);
                continue;
            }
            const float f = k->dot(w, x, n);
            CHECK(fabs(f - ref) <= 1e-6 * abs_sum + 1e-30, "level %d n %d: dot %g, reference %g", lv, n, f, ref);
            if (k->prep) {  // activations rounded to bf16: relative 2^-9 per product
                uint16_t *xp = malloc((size_t)n * sizeof *xp);
                k->prep(xp, x, n);
                const float fp = k->dot_prep(w, xp, x, n);
                CHECK(fabs(fp - ref) <= 4e-3 * abs_sum + 1e-30, "level %d n %d: bf16 dot %g, reference %g", lv, n, fp, ref);
                // with x already bf16 the lookups and pair sums are exact up to the f32 order
                float *xb = malloc((size_t)n * sizeof *xb);
                for (int j = 0; j < n; j++) xb[j] = g3_bf16_to_f32(g3_f32_to_bf16(x[j]));
                k->prep(xp, xb, n);
                const float fb = k->dot_prep(w, xp, xb, n), rb = g3_sfp8_kernels_at(G3_SFP8_SCALAR)->dot(w, xb, n);
                CHECK(fabs(fb - rb) <= 1e-6 * abs_sum + 1e-30, "level %d n %d: bf16-exact dot %g, reference %g", lv, n, fb, rb);
                free(xb);
                free(xp);
            }
        }
        free(w);
        free(x);
    }
}

// A safetensors file of one SFP8 tensor [4, 4] whose data_offsets span `bytes` bytes.
static int write_bad(const char *path, int bytes) {
    char hdr[160];
    int n = snprintf(hdr, sizeof hdr, "{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"SFP8\",\"shape\":[4,4],\"data_offsets\":[0,%d]}}", bytes);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint64_t len = (uint64_t)n;
    uint8_t data[32] = {0};
    fwrite(&len, 8, 1, f);
    fwrite(hdr, 1, (size_t)n, f);
    fwrite(data, 1, (size_t)bytes, f);
    return fclose(f);
}

int main(void) {
    test_codes();
    test_boundaries();
    test_dot();

    const char *fx = "gemma3-tiny-f32", *dir = "tests/fixtures/gemma3-tiny-f32";
    char tmp[64], path[128];
    snprintf(tmp, sizeof tmp, "/tmp/g3_sfp8_%d", (int)getpid());
    CHECK(sh("mkdir -p %s", tmp) == 0, "mkdir");
    STSet exp;
    fixture_open(&exp, fx);
    int32_t *ids;
    int V = 0, T = fixture_ids(&exp, "input_ids", &ids);
    float *ref = logits_of(dir, ids, T, &V);
    CHECK(sh("./gemma3 convert --model %s --out %s/sfp8 --type SFP8 2>/dev/null", dir, tmp) == 0, "convert --type SFP8");
    snprintf(path, sizeof path, "%s/sfp8", tmp);
    G3Model m;
    if (!g3_model_load(&m, path)) {
        int nsfp = 0;
        for (int i = 0; i < m.nt; i++) nsfp += m.t[i].dtype == G3_SFP8;
        CHECK(nsfp > 0, "the converted folder holds SFP8 matrices");
        g3_model_free(&m);
    }
    for (int fast = 0; fast < 2 && ref; fast++) {
        // the fixture's weights through SFP8: relative RMS ~3e-2 (docs/quantization.md); the tiny
        // random model amplifies weight noise about 3x (as test_quantize's tolerances say)
        const float e = logits_rel(path, ref, ids, T, fast, V);
        CHECK(e <= 1e-1, "SFP8 (%s mode): logits rel err %.3g over 1e-1", fast ? "fast" : "exact", e);
        printf("SFP8 %s mode: logits rel err %.2e against F32\n", fast ? "fast " : "exact", e);
    }
    CHECK(sh("./gemma3 forward --model %s --ids 2,5,9 >/dev/null 2>&1", path) == 0, "forward loads the SFP8 folder");
    CHECK(sh("./gemma3 convert --model %s --out %s/x --type Q3 >/dev/null 2>&1", dir, tmp) == 1, "an unknown --type exits 1");
    // bad files: the byte count must be one per weight
    for (int bytes = 15; bytes <= 17; bytes += 2) {
        snprintf(path, sizeof path, "%s/bad%d.safetensors", tmp, bytes);
        CHECK(write_bad(path, bytes) == 0, "write %s", path);
        STSet s;
        const int rc = st_open(&s, path);
        CHECK(rc != 0 && strstr(g3_error(), "up_proj") && strstr(g3_error(), "16"), "%d bytes for 16 SFP8 weights: %s", bytes,
              rc ? g3_error() : "accepted");
        if (!rc) st_close(&s);
        g3_error_clear();
    }
    snprintf(path, sizeof path, "%s/good.safetensors", tmp);
    STSet s;
    CHECK(write_bad(path, 16) == 0 && st_open(&s, path) == 0, "16 bytes for 16 SFP8 weights: %s", g3_error());
    st_close(&s);
    free(ref);
    free(ids);
    st_close(&exp);
    sh("rm -rf %s", tmp);
    return check_done();
}
