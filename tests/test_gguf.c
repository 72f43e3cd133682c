// test_gguf.c: the GGUF reader, writer and weight source. Each fixture written as GGUF the way
// llama.cpp's converter writes it (ggml names, reversed dims, norms stored as 1 + w, the
// converter's metadata keys) loads with the same config as from safetensors and gives the same
// logits (1e-6, exact mode), through the library and through `gemma3 forward`; F16 runs; Q8_0
// and Q4_0 files are refused by type and tensor; the writer round-trips; and every kind of
// damage (magic, version, lying counts and lengths, unknown types, offsets past the end or
// misaligned, overlaps, missing metadata) is a message naming the key or tensor, exit 1 from
// the CLI.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "fixtures.h"
#include "io/gguf.h"
#include "io/gguf_gemma.h"
#include "io/source.h"
#include "model/config.h"
#include "model/forward.h"
#include "backend/backend.h"
#include "model/model.h"

static char tmp[64];

// Writes the fixture's model as GGUF (matrices in mtype; norms f32 as 1 + w). skip_key: a
// metadata key to leave out (for the missing-metadata cases), or NULL.
static int fixture_to_gguf(const char *fixture, const char *out, G3DType mtype, const char *skip_key) {
    char dir[256];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", fixture);
    G3Model m;
    if (g3_model_load(&m, dir)) return -1;
    const G3Config *c = &m.cfg;
    const char *arch = c->family == G3_GEMMA3 ? "gemma3" : "gemma2";
    GGUFWriter w;
    gguf_w_init(&w, 32);
    char key[128];
#define KEY(name) (snprintf(key, sizeof key, "%s.%s", arch, name), key)
#define U32(name, v) do { if (!skip_key || strcmp(KEY(name), skip_key)) gguf_w_u32(&w, KEY(name), (uint32_t)(v)); } while (0)
#define F32(name, v) do { if (!skip_key || strcmp(KEY(name), skip_key)) gguf_w_f32(&w, KEY(name), (float)(v)); } while (0)
    if (!skip_key || strcmp(skip_key, "general.architecture")) gguf_w_str(&w, "general.architecture", arch);
    gguf_w_str(&w, "general.name", fixture);
    U32("context_length", c->max_pos);
    U32("embedding_length", c->hidden);
    U32("block_count", c->layers);
    U32("feed_forward_length", c->inter);
    U32("attention.head_count", c->heads);
    U32("attention.head_count_kv", c->kv_heads);
    U32("attention.key_length", c->head_dim);
    U32("attention.value_length", c->head_dim);
    F32("attention.layer_norm_rms_epsilon", c->eps);
    U32("attention.sliding_window", c->sliding_window);
    if (c->family == G3_GEMMA3) {
        F32("rope.freq_base", c->rope_global_base);  // the converter writes no local base nor pattern
        if (c->rope_global_scale != 1.0) {
            gguf_w_str(&w, KEY("rope.scaling.type"), "linear");
            F32("rope.scaling.factor", c->rope_global_scale);
        }
        // a scale llama.cpp would not infer: carried in attention.scale (our extension)
        if (c->query_pre_attn_scalar != (float)c->head_dim) F32("attention.scale", 1.0 / sqrt(c->query_pre_attn_scalar));
    } else {                                          // nor a gemma2 base (llama.cpp's default is Gemma 2's)
        F32("attn_logit_softcapping", c->attn_softcap);
        F32("final_logit_softcapping", c->final_softcap);
    }
    gguf_w_u32(&w, "tokenizer.ggml.bos_token_id", (uint32_t)c->bos);
    float **bufs = calloc((size_t)m.nt, sizeof *bufs);
    int rc = 0;
    for (int i = 0; i < m.nt && !rc; i++) {
        const G3Tensor *t = &m.t[i];
        char name[128];
        if (gguf_gemma_gguf_name(t->name, name, sizeof name)) { rc = g3_errorf("no GGUF name for %s", t->name); break; }
        float *f = malloc((size_t)t->numel * sizeof *f);
        g3_to_f32(f, t->data, t->dtype, (size_t)t->numel);
        int64_t ne[2] = {t->ndim == 2 ? t->shape[1] : t->shape[0], t->ndim == 2 ? t->shape[0] : 1};
        G3DType ty = t->kind == G3_KIND_NORM ? G3_F32 : mtype;
        if (t->kind == G3_KIND_NORM)
            for (int64_t k = 0; k < t->numel; k++) f[k] += 1.0f;  // the converter's 1 + w
        int64_t nb = g3_type_bytes(ty, t->numel);
        void *d = malloc((size_t)nb);
        g3_type(ty)->from_f32(d, f, t->numel);
        free(f);
        bufs[i] = d;
        rc = gguf_w_tensor(&w, name, ty, t->ndim, ne, d, nb);
    }
    if (!rc) rc = gguf_w_write(&w, out);
    for (int i = 0; i < m.nt; i++) free(bufs[i]);
    free(bufs);
    gguf_w_free(&w);
    g3_model_free(&m);
    return rc;
#undef KEY
#undef U32
#undef F32
}

// Logits [T, V] of the model at path over the fixture's ids, exact mode.
static float *logits_of(const char *path, const int32_t *ids, int T, int *V) {
    G3Model m;
    if (g3_model_load(&m, path)) { CHECK(0, "%s: %s", path, g3_error()); return NULL; }
    *V = m.cfg.vocab;
    G3State *s = g3_state_new(&m, 1, T, T, 0, NULL);
    float *lg = malloc((size_t)T * *V * sizeof *lg);
    CHECK(s && g3_prefill(s, 0, ids, T, lg) == 0, "%s", g3_error());
    g3_state_free(s);
    g3_model_free(&m);
    return lg;
}

static void test_fixtures(void) {
    const char *fx[] = {"gemma3-tiny-f32", "gemma2-tiny-f32", "gemma3-tiny-bf16", "gemma3-tiny-multimodal-layout"};
    for (size_t f = 0; f < sizeof fx / sizeof *fx; f++) {
        char dir[256], path[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fx[f]);
        snprintf(path, sizeof path, "%s/%s.gguf", tmp, fx[f]);
        G3Model a, b;
        CHECK(g3_model_load(&a, dir) == 0, "%s", g3_error());
        G3DType mt = a.t[0].dtype;  // keep the stored type (bf16 stays bf16: same bits)
        if (fixture_to_gguf(fx[f], path, mt, NULL)) { CHECK(0, "%s: %s", fx[f], g3_error()); g3_model_free(&a); continue; }
        if (g3_model_load(&b, path)) { CHECK(0, "%s: %s", path, g3_error()); g3_model_free(&a); continue; }
        const G3Config *x = &a.cfg, *y = &b.cfg;
        CHECK(x->family == y->family && x->vocab == y->vocab && x->hidden == y->hidden && x->inter == y->inter && x->layers == y->layers &&
                  x->heads == y->heads && x->kv_heads == y->kv_heads && x->head_dim == y->head_dim &&
                  x->query_pre_attn_scalar == y->query_pre_attn_scalar && x->sliding_window == y->sliding_window &&
                  x->rope_global_base == y->rope_global_base && x->rope_local_base == y->rope_local_base &&
                  x->attn_softcap == y->attn_softcap && x->final_softcap == y->final_softcap && x->eps == y->eps &&
                  x->max_pos == y->max_pos && x->qk_norm == y->qk_norm && !memcmp(x->sliding, y->sliding, sizeof x->sliding),
              "%s: the config from GGUF metadata differs from config.json", fx[f]);
        // norms come back as w (not 1 + w), bit for bit where |w| <= 0.5
        for (int i = 0; i < a.nt; i++) {
            const G3Tensor *ta = &a.t[i], *tb = &b.t[i];
            if (ta->kind != G3_KIND_NORM) continue;
            float *wa = malloc((size_t)ta->numel * 4), *wb = malloc((size_t)tb->numel * 4);
            g3_to_f32(wa, ta->data, ta->dtype, (size_t)ta->numel);
            g3_to_f32(wb, tb->data, tb->dtype, (size_t)tb->numel);
            double worst = 0;
            for (int64_t k = 0; k < ta->numel; k++) worst = fmax(worst, fabs((double)(1.0f + wa[k]) - (double)(1.0f + wb[k])));
            CHECK(tb->dtype == G3_F32 && worst == 0, "%s: norm %s: 1 + w differs by %g", fx[f], ta->name, worst);
            free(wa);
            free(wb);
        }
        // the GGUF's matrices are read from copies in huge pages (model/repack.c), the file's
        // bytes as they are; a folder keeps its mapping (no GPU here: with one, no copies)
        int copies = 0, same = 0, mats = 0;
        for (int i = 0; i < b.nt; i++) {
            const G3Tensor *ta = &a.t[i], *tb = &b.t[i];
            if (tb->ndim != 2 || tb->packed) continue;
            mats++;
            copies += tb->copy && tb->data == tb->copy && !ta->copy;
            same += ta->dtype == tb->dtype && ta->nbytes == tb->nbytes && !memcmp(ta->data, tb->data, (size_t)tb->nbytes);
        }
        if (g3_backend_cuda_devices() <= 0) CHECK(mats > 0 && copies == mats, "%s: %d of %d matrices copied at load", fx[f], copies, mats);
        CHECK(same == mats, "%s: %d of %d matrices hold the folder's bytes", fx[f], same, mats);
        g3_model_free(&a);
        g3_model_free(&b);

        STSet exp;
        fixture_open(&exp, fx[f]);
        int32_t *ids;
        int T = fixture_ids(&exp, "input_ids", &ids), V1, V2;
        float *la = logits_of(dir, ids, T, &V1), *lb = logits_of(path, ids, T, &V2);
        if (la && lb && V1 == V2) {
            double e = rel_err(lb, la, (long)T * V1);
            CHECK(e <= 1e-6, "%s: GGUF logits differ from safetensors: rel err %.3g", fx[f], e);
            printf("%-32s GGUF vs safetensors logits rel err %.2e\n", fx[f], e);
        }
        free(la);
        free(lb);
        free(ids);
        st_close(&exp);
    }
}

// F16 matrices load and run (close to f32); Q8_0 and Q4_0 files parse, and the loader refuses
// them naming the type and the tensor (no linear kernel yet).
static void test_types(void) {
    char path[256];
    const char *fx = "gemma3-tiny-f32";
    STSet exp;
    fixture_open(&exp, fx);
    int32_t *ids;
    int T = fixture_ids(&exp, "input_ids", &ids), V1, V2;
    snprintf(path, sizeof path, "%s/f16.gguf", tmp);
    CHECK(fixture_to_gguf(fx, path, G3_F16, NULL) == 0, "%s", g3_error());
    float *la = logits_of("tests/fixtures/gemma3-tiny-f32", ids, T, &V1), *lb = logits_of(path, ids, T, &V2);
    if (la && lb) {
        double e = rel_err(lb, la, (long)T * V1);
        CHECK(e <= 2e-3, "f16 GGUF logits rel err %.3g", e);
        printf("%-32s F16 GGUF vs F32 logits rel err %.2e\n", fx, e);
    }
    free(la);
    free(lb);
    free(ids);
    st_close(&exp);
    // Q8_0 and Q4_0: read as stored, run by the CPU's scalar kernel, logits near the f32 ones
    // within 5x each type's relative RMS weight error (test_quant: 3.8e-3 and 6.4e-2); the tiny
    // random fixture amplifies weight noise about 3x into the logits (F16 too: 2.4e-4 -> 4.8e-4)
    const G3DType q[] = {G3_Q8_0, G3_Q4_0};
    const double tol[] = {2e-2, 3.2e-1};
    fixture_open(&exp, fx);
    T = fixture_ids(&exp, "input_ids", &ids);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s.gguf", tmp, g3_dtype_name(q[i]));
        CHECK(fixture_to_gguf(fx, path, q[i], NULL) == 0, "%s", g3_error());
        GGUFFile g;
        CHECK(gguf_open(&g, path) == 0, "%s", g3_error());
        const GGUFTensor *t = gguf_tensor(&g, "blk.0.ffn_up.weight");
        CHECK(t && t->type == q[i] && t->ne[0] == 96 && t->ne[1] == 256 && t->nbytes == 256 * 3 * g3_type(q[i])->block_bytes,
              "%s tensor as read", g3_dtype_name(q[i]));
        gguf_close(&g);
        la = logits_of("tests/fixtures/gemma3-tiny-f32", ids, T, &V1);
        lb = logits_of(path, ids, T, &V2);
        if (la && lb) {
            double e = rel_err(lb, la, (long)T * V1);
            CHECK(e <= tol[i], "%s GGUF logits rel err %.3g (tolerance %g)", g3_dtype_name(q[i]), e, tol[i]);
            printf("%-32s %s GGUF vs F32 logits rel err %.2e\n", fx, g3_dtype_name(q[i]), e);
        }
        free(la);
        free(lb);
        CHECK(sh("%s forward --model %s --ids 2,5,9 >/dev/null 2>&1", getenv("BIN") ? getenv("BIN") : "./gemma3", path) == 0,
              "%s: forward runs", g3_dtype_name(q[i]));
    }
    free(ids);
    st_close(&exp);
}

// The CLI on a GGUF file: the same logits as on the fixture folder.
static void test_cli(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char path[256];
    snprintf(path, sizeof path, "%s/gemma3-tiny-f32.gguf", tmp);
    const char *ids = "2,17,300,45,999,3,8,100";
    CHECK(sh("%s forward --model tests/fixtures/gemma3-tiny-f32 --ids %s --exact --save %s/a.safetensors 2>/dev/null", bin, ids, tmp) == 0, "forward on the fixture");
    CHECK(sh("%s forward --model %s --ids %s --exact --save %s/b.safetensors 2>/dev/null", bin, path, ids, tmp) == 0, "forward on the GGUF file");
    STSet a, b;
    char pa[256], pb[256];
    snprintf(pa, sizeof pa, "%s/a.safetensors", tmp);
    snprintf(pb, sizeof pb, "%s/b.safetensors", tmp);
    if (st_open(&a, pa) == 0) {
        if (st_open(&b, pb) == 0) {
            const STTensor *x = st_find(&a, "logits"), *y = st_find(&b, "logits");
            CHECK(x && y && x->nbytes == y->nbytes, "logits shapes");
            if (x && y && x->nbytes == y->nbytes) {
                double e = rel_err(y->data, x->data, (long)(x->nbytes / 4));
                CHECK(e <= 1e-6, "forward --model X.gguf: logits rel err %.3g", e);
            }
            st_close(&b);
        } else CHECK(0, "%s", g3_error());
        st_close(&a);
    } else CHECK(0, "%s", g3_error());
    // inspect lists the Hub names
    CHECK(sh("%s inspect --model %s >/dev/null 2>&1", bin, path) == 0, "inspect on a GGUF file");
}

// ---- damage: a small valid file, then one fault at a time ----

static uint8_t *good;
static size_t good_len;

static void make_small(void) {
    static float a[64], b[32];
    for (int i = 0; i < 64; i++) a[i] = (float)i;
    for (int i = 0; i < 32; i++) b[i] = -(float)i;
    GGUFWriter w;
    gguf_w_init(&w, 32);
    gguf_w_str(&w, "general.architecture", "gemma3");
    gguf_w_u32(&w, "gemma3.block_count", 1);
    gguf_w_f32(&w, "gemma3.attention.layer_norm_rms_epsilon", 1e-6f);
    int64_t nea[2] = {32, 2}, neb[1] = {32};
    CHECK(gguf_w_tensor(&w, "token_embd.weight", G3_F32, 2, nea, a, sizeof a) == 0, "%s", g3_error());
    CHECK(gguf_w_tensor(&w, "output_norm.weight", G3_F32, 1, neb, b, sizeof b) == 0, "%s", g3_error());
    CHECK(gguf_w_bytes(&w, &good, &good_len) == 0, "%s", g3_error());
    gguf_w_free(&w);
}

// Offset of the first occurrence of s (as bytes) in the good file.
static size_t at(const char *s) {
    const uint8_t *p = memmem(good, good_len, s, strlen(s));
    if (!p) { fprintf(stderr, "'%s' not in the small file\n", s); exit(2); }
    return (size_t)(p - good);
}

// Parses a damaged copy (bytes [off, off + n) replaced by v, the file cut to len) and expects
// failure with every one of want (NULL-ended) in the message.
static void expect_bad(const char *what, size_t off, const void *v, size_t n, size_t len, const char *const *want) {
    uint8_t *d = malloc(good_len + 1);
    memcpy(d, good, good_len);
    if (v) memcpy(d + off, v, n);
    GGUFFile g;
    int rc = gguf_parse(&g, d, len, "bad.gguf");
    int ok = rc == -1;
    for (const char *const *w = want; ok && *w; w++) ok = strstr(g3_error(), *w) != NULL;
    CHECK(ok, "%s: rc %d, message: %s", what, rc, rc ? g3_error() : "(none)");
    if (rc == 0) gguf_close(&g);
    free(d);
}
#define BAD(what, off, v, n, len, ...) expect_bad(what, off, v, n, len, (const char *const[]){__VA_ARGS__, NULL})

static void test_damage(void) {
    make_small();
    GGUFFile g;
    CHECK(gguf_parse(&g, good, good_len, "good.gguf") == 0, "%s", g3_error());
    if (g.ntensors == 2) {  // the writer round-trips
        const GGUFTensor *t = gguf_tensor(&g, "token_embd.weight");
        CHECK(g.version == 3 && g.nkv == 3 && t && t->ndim == 2 && t->ne[0] == 32 && t->ne[1] == 2 && t->type == G3_F32 &&
                  ((const float *)t->data)[63] == 63.0f && (uintptr_t)((const uint8_t *)t->data - good) % 32 == 0,
              "round trip");
        int64_t v;
        double f;
        const char *s;
        size_t n;
        CHECK(gguf_get_int(&g, "gemma3.block_count", &v) == 0 && v == 1, "block_count");
        CHECK(gguf_get_float(&g, "gemma3.attention.layer_norm_rms_epsilon", &f) == 0 && f == (double)1e-6f, "eps");
        CHECK(gguf_get_str(&g, "general.architecture", &s, &n) == 0 && n == 6 && !memcmp(s, "gemma3", 6), "arch");
        CHECK(gguf_get_int(&g, "nope", &v) == 1, "absent key");
        CHECK(gguf_get_int(&g, "general.architecture", &v) == -1 && strstr(g3_error(), "general.architecture"), "%s", g3_error());
        gguf_close(&g);
    }
    uint32_t u32;
    uint64_t u64;
    const size_t L = good_len;
    uint8_t *v2 = malloc(good_len);  // version 2 has version 3's layout (3 added big-endian files)
    memcpy(v2, good, good_len);
    v2[4] = 2;
    CHECK(gguf_parse(&g, v2, good_len, "v2.gguf") == 0 && g.version == 2 && g.ntensors == 2, "version 2: %s", g3_error());
    gguf_close(&g);
    free(v2);
    BAD("magic", 0, "GGML", 4, L, "bad.gguf", "magic");
    u32 = 1; BAD("version 1", 4, &u32, 4, L, "version 1");
    u32 = 4; BAD("version 4", 4, &u32, 4, L, "version 4");
    u32 = 3u << 24; BAD("big-endian", 4, &u32, 4, L, "big-endian");
    BAD("empty", 0, NULL, 0, 0, "magic");
    BAD("header cut", 0, NULL, 0, 12, "truncated");
    u64 = 1ull << 40; BAD("tensor count", 8, &u64, 8, L, "claims", "tensors");
    u64 = 1ull << 40; BAD("kv count", 16, &u64, 8, L, "claims", "metadata");
    u64 = 5; BAD("more tensors than infos", 8, &u64, 8, L, "tensor info");
    u64 = 1ull << 50; BAD("key length", 24, &u64, 8, L, "metadata key 0", "string length");
    size_t k1 = at("gemma3.block_count");
    u32 = 99; BAD("value type", k1 + 18, &u32, 4, L, "gemma3.block_count", "unknown value type 99");
    size_t k0 = at("general.architecture");
    u64 = 1ull << 40; BAD("string value length", k0 + 20 + 4, &u64, 8, L, "general.architecture", "string length");
    uint32_t tv[2] = {GGUF_BOOL, 2};  // the type, then the value's first byte
    BAD("bool value", k1 + 18, tv, 8, L, "gemma3.block_count", "bool value 2");
    size_t t0 = at("token_embd.weight"), t1 = at("output_norm.weight");
    u32 = 5; BAD("ndim", t0 + 17, &u32, 4, L, "token_embd.weight", "5 dimensions");
    u32 = 77; BAD("unknown type", t0 + 17 + 4 + 16, &u32, 4, L, "token_embd.weight", "unknown ggml type 77");
    u32 = 10; BAD("Q2_K", t0 + 17 + 4 + 16, &u32, 4, L, "token_embd.weight", "Q2_K", "not supported");
    u32 = 12; BAD("Q4_K rows", t0 + 17 + 4 + 16, &u32, 4, L, "token_embd.weight", "not whole Q4_K blocks of 256");
    struct __attribute__((packed)) { uint64_t ne0, ne1; uint32_t type; } pb = {33, 2, GGML_Q8_0};
    BAD("partial block", t0 + 17 + 4, &pb, sizeof pb, L, "token_embd.weight", "whole Q8_0 blocks");
    u64 = 1ull << 62; BAD("dims overflow", t0 + 17 + 4 + 8, &u64, 8, L, "token_embd.weight", "overflows");
    u64 = 4096; BAD("offset past the end", t1 + 18 + 4 + 8 + 4, &u64, 8, L, "output_norm.weight", "truncated");
    u64 = 8; BAD("misaligned", t1 + 18 + 4 + 8 + 4, &u64, 8, L, "output_norm.weight", "general.alignment");
    u64 = 128; BAD("overlap", t1 + 18 + 4 + 8 + 4, &u64, 8, L, "overlap", "token_embd.weight");
    BAD("data cut", 0, NULL, 0, L - 4, "truncated", "output_norm.weight");
    BAD("tensor name cut", 0, NULL, 0, t1 + 5, "tensor info 1", "past the end");
    // duplicates and a bad alignment, written as such
    GGUFWriter w;
    uint8_t *d;
    size_t n;
    GGUFFile g2;
    static float z[32];
    int64_t ne[1] = {32};
    gguf_w_init(&w, 32);
    gguf_w_u32(&w, "a.key", 1);
    gguf_w_u32(&w, "a.key", 2);
    CHECK(gguf_w_bytes(&w, &d, &n) == 0 && gguf_parse(&g2, d, n, "dup.gguf") == -1 && strstr(g3_error(), "'a.key' appears twice"), "%s", g3_error());
    free(d);
    gguf_w_free(&w);
    gguf_w_init(&w, 32);
    gguf_w_tensor(&w, "t", G3_F32, 1, ne, z, sizeof z);
    gguf_w_tensor(&w, "t", G3_F32, 1, ne, z, sizeof z);
    CHECK(gguf_w_bytes(&w, &d, &n) == 0 && gguf_parse(&g2, d, n, "dup.gguf") == -1 && strstr(g3_error(), "tensor 't' appears twice"), "%s", g3_error());
    free(d);
    gguf_w_free(&w);
    gguf_w_init(&w, 32);
    gguf_w_u32(&w, "general.alignment", 24);
    CHECK(gguf_w_bytes(&w, &d, &n) == 0 && gguf_parse(&g2, d, n, "al.gguf") == -1 && strstr(g3_error(), "general.alignment") && strstr(g3_error(), "power of two"), "%s", g3_error());
    free(d);
    gguf_w_free(&w);
    gguf_w_init(&w, 32);
    gguf_w_f32(&w, "general.alignment", 32);
    CHECK(gguf_w_bytes(&w, &d, &n) == 0 && gguf_parse(&g2, d, n, "al.gguf") == -1 && strstr(g3_error(), "general.alignment") && strstr(g3_error(), "u32"), "%s", g3_error());
    free(d);
    gguf_w_free(&w);
}

// The source's own checks: metadata it needs, architectures, names.
static void test_metadata(void) {
    char path[256];
    const struct { const char *skip, *want; } cases[] = {
        {"general.architecture", "general.architecture"},
        {"gemma3.block_count", "gemma3.block_count"},
        {"gemma3.embedding_length", "gemma3.embedding_length"},
        {"gemma3.attention.head_count", "gemma3.attention.head_count"},
        {"gemma3.attention.layer_norm_rms_epsilon", "gemma3.attention.layer_norm_rms_epsilon"},
    };
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(path, sizeof path, "%s/missing%zu.gguf", tmp, i);
        CHECK(fixture_to_gguf("gemma3-tiny-f32", path, G3_F32, cases[i].skip) == 0, "%s", g3_error());
        G3Model m;
        CHECK(g3_model_load(&m, path) == -1 && strstr(g3_error(), cases[i].want) && strstr(g3_error(), path), "missing %s: %s", cases[i].skip, g3_error());
        CHECK(sh("%s forward --model %s --ids 2 >/dev/null 2>%s/err.txt", bin, path, tmp) == 1 &&
                  sh("grep -q 'gemma3 forward: .*%s' %s/err.txt", cases[i].want, tmp) == 0,
              "CLI, missing %s: exit 1 with the key", cases[i].skip);
    }
    // a damaged file through the CLI
    snprintf(path, sizeof path, "%s/cut.gguf", tmp);
    FILE *f = fopen(path, "wb");
    fwrite(good, 1, good_len - 4, f);
    fclose(f);
    CHECK(sh("%s forward --model %s --ids 2 >/dev/null 2>%s/err.txt", bin, path, tmp) == 1 && sh("grep -q 'truncated' %s/err.txt", tmp) == 0,
          "CLI on a truncated GGUF: exit 1, 'truncated'");
    CHECK(sh("%s forward --model %s/absent.gguf --ids 2 >/dev/null 2>/dev/null", bin, tmp) == 1, "CLI on an absent GGUF: exit 1");
    // another architecture
    GGUFWriter w;
    gguf_w_init(&w, 64);
    gguf_w_str(&w, "general.architecture", "llama");
    snprintf(path, sizeof path, "%s/llama.gguf", tmp);
    CHECK(gguf_w_write(&w, path) == 0, "%s", g3_error());
    gguf_w_free(&w);
    G3WeightSource *s;
    CHECK(g3_source_open(&s, path) == -1 && s == NULL && strstr(g3_error(), "llama") && strstr(g3_error(), "general.architecture"), "%s", g3_error());
    // alignment 64 is written and honoured
    GGUFFile g;
    CHECK(gguf_open(&g, path) == 0 && g.alignment == 64, "%s", g3_error());
    gguf_close(&g);
    // names: the table both ways
    char out[128];
    const char *hub[] = {"model.layers.3.self_attn.q_norm.weight", "model.layers.10.post_feedforward_layernorm.weight", "model.embed_tokens.weight"};
    const char *gg[] = {"blk.3.attn_q_norm.weight", "blk.10.post_ffw_norm.weight", "token_embd.weight"};
    for (int i = 0; i < 3; i++) CHECK(gguf_gemma_gguf_name(hub[i], out, sizeof out) == 0 && !strcmp(out, gg[i]), "%s -> %s", hub[i], out);
    CHECK(gguf_gemma_gguf_name("model.layers.1.mlp.nothing.weight", out, sizeof out) == 1, "unknown names have no GGUF name");
}

// llama.cpp's defaults where the converter writes nothing, and the keys that override them.
static G3Config config_of(GGUFWriter *w, const char *arch) {
    G3Config c;
    memset(&c, 0, sizeof c);
    uint8_t *d;
    size_t n;
    GGUFFile g;
    char *text;
    size_t len;
    if (gguf_w_bytes(w, &d, &n) || gguf_parse(&g, d, n, "cfg.gguf")) { CHECK(0, "%s", g3_error()); free(d); return c; }
    if (gguf_gemma_config_json(&g, arch, 1000, G3_F32, &text, &len) == 0) {
        CHECK(g3_config_parse(&c, text, len, "cfg.gguf") == 0, "%s: %s", g3_error(), text);
        free(text);
    } else CHECK(0, "%s", g3_error());
    gguf_close(&g);
    free(d);
    gguf_w_free(w);
    return c;
}
static void base_keys(GGUFWriter *w, const char *arch, int layers) {
    char k[128];
    gguf_w_init(w, 32);
#define PUT(name, v) (snprintf(k, sizeof k, "%s.%s", arch, name), gguf_w_u32(w, k, v))
    PUT("block_count", (uint32_t)layers);
    PUT("context_length", 8192);
    PUT("embedding_length", 5376);
    PUT("feed_forward_length", 21504);
    PUT("attention.head_count", 32);
    PUT("attention.head_count_kv", 16);
    PUT("attention.key_length", 128);
#undef PUT
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    gguf_w_f32(w, k, 1e-6f);
}
static void test_defaults(void) {
    GGUFWriter w;
    base_keys(&w, "gemma3", 62);  // 27B: scale from embedding / heads, 5 local : 1 global, local base 10000
    gguf_w_u32(&w, "gemma3.attention.sliding_window", 1024);
    G3Config c = config_of(&w, "gemma3");
    CHECK(c.query_pre_attn_scalar == 168 && c.rope_local_base == 10000 && c.rope_global_base == 10000 && c.sliding_window == 1024 &&
              c.sliding[0] && c.sliding[4] && !c.sliding[5] && c.sliding[6] && !c.sliding[11] && c.attn_softcap == 0 && c.final_softcap == 0,
          "gemma3 27B defaults: qpas %g, local %g", c.query_pre_attn_scalar, c.rope_local_base);
    base_keys(&w, "gemma3", 26);  // no window: every layer global; scale from head_dim; explicit bases and period
    gguf_w_f32(&w, "gemma3.rope.freq_base", 1e6f);
    gguf_w_f32(&w, "gemma3.rope.freq_base_swa", 5e4f);
    c = config_of(&w, "gemma3");
    int any = 0;
    for (int i = 0; i < 26; i++) any |= c.sliding[i];
    CHECK(!any && c.query_pre_attn_scalar == 128 && c.rope_global_base == 1e6 && c.rope_local_base == 5e4, "gemma3 without a window");
    base_keys(&w, "gemma3", 8);
    gguf_w_u32(&w, "gemma3.attention.sliding_window", 512);
    gguf_w_u32(&w, "gemma3.attention.sliding_window_pattern", 4);
    c = config_of(&w, "gemma3");
    CHECK(c.sliding[0] && c.sliding[2] && !c.sliding[3] && !c.sliding[7], "an explicit period");
    base_keys(&w, "gemma2", 46);  // gemma2 27B: softcaps 50 / 30, window 4096, alternating
    c = config_of(&w, "gemma2");
    CHECK(c.family == G3_GEMMA2 && c.query_pre_attn_scalar == 168 && c.attn_softcap == 50 && c.final_softcap == 30 && c.sliding_window == 4096 &&
              c.sliding[0] && !c.sliding[1] && c.rope_local_base == c.rope_global_base,
          "gemma2 defaults");
    base_keys(&w, "gemma3", 4);
    gguf_w_str(&w, "gemma3.rope.scaling.type", "yarn");
    uint8_t *d;
    size_t n;
    GGUFFile g;
    char *text;
    size_t len;
    CHECK(gguf_w_bytes(&w, &d, &n) == 0 && gguf_parse(&g, d, n, "cfg.gguf") == 0, "%s", g3_error());
    CHECK(gguf_gemma_config_json(&g, "gemma3", 1000, G3_F32, &text, &len) == -1 && strstr(g3_error(), "gemma3.rope.scaling.type"), "%s", g3_error());
    gguf_close(&g);
    free(d);
    gguf_w_free(&w);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/g3_gguf_XXXXXX");
    if (!mkdtemp(tmp)) { perror("mkdtemp"); return 2; }
    test_damage();
    test_defaults();
    test_fixtures();
    test_types();
    test_cli();
    test_metadata();
    free(good);
    if (!getenv("G3_KEEP")) sh("rm -rf %s", tmp);
    else printf("kept %s\n", tmp);
    return check_done();
}
