// gguf_config.c: a Hub config.json from a GGUF file's metadata (see gguf_gemma.h), so that
// model/config.c parses and validates it as any other config.
//
// Keys are "<arch>.<name>" (gemma3.block_count, ...). Where llama.cpp's converter writes no
// key, the value is the one llama.cpp itself takes for the architecture (src/llama-model.cpp,
// llm_load_hparams):
//   - sliding-window pattern: gemma3 5 local : 1 global (layer i is local iff i % 6 < 5),
//     gemma2 alternating (i % 2 == 0 local); an explicit <arch>.attention.sliding_window_pattern
//     (an integer period, or one bool per layer) wins. gemma3 without a sliding_window (or 0)
//     has no local layers; gemma2's window defaults to 4096.
//   - local RoPE base: 10000 for gemma3 (<arch>.rope.freq_base_swa if present); gemma2 uses
//     the global base everywhere. Global base: <arch>.rope.freq_base, else 10000.
//   - attention scale (query_pre_attn_scalar): head_dim (attention.key_length), except for the
//     27B shapes (gemma3 with 62 layers, gemma2 with 46) where it is embedding / heads.
//     <arch>.attention.scale, if present, wins (our extension: llama.cpp ignores it here).
//   - softcapping: gemma2 attn 50 and final 30 unless the keys say otherwise; gemma3 none.
// Required, as llama.cpp requires them: block_count, context_length, embedding_length,
// feed_forward_length, attention.head_count, attention.layer_norm_rms_epsilon.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "gguf_gemma.h"

// model/config.h's G3_MAX_LAYERS (io/ does not include model/)
enum { G3_GGUF_MAX_LAYERS = 256 };

int gguf_gemma_arch(const GGUFFile *g, char *arch, size_t cap) {
    const char *s;
    size_t n;
    int rc = gguf_get_str(g, "general.architecture", &s, &n);
    if (rc < 0) return -1;
    if (rc > 0) return g3_errorf("%s: metadata key 'general.architecture' is missing", g->path);
    if ((n == 6 && !memcmp(s, "gemma3", 6)) || (n == 6 && !memcmp(s, "gemma2", 6))) {
        snprintf(arch, cap, "%.*s", (int)n, s);
        return 0;
    }
    return g3_errorf("%s: general.architecture is '%.*s': only gemma3 and gemma2 are supported", g->path, (int)(n > 64 ? 64 : n), s);
}

// "<arch>.<name>" into key.
static const char *K(char *key, size_t cap, const char *arch, const char *name) {
    snprintf(key, cap, "%s.%s", arch, name);
    return key;
}

// An integer key in [lo, hi]: 0, or -1 naming the key when missing (if required), malformed
// or out of range. *out keeps def when the key is absent and not required.
static int int_key(const GGUFFile *g, const char *key, int required, int64_t lo, int64_t hi, int64_t *out) {
    int rc = gguf_get_int(g, key, out);
    if (rc < 0) return -1;
    if (rc > 0) return required ? g3_errorf("%s: metadata key '%s' is missing", g->path, key) : 0;
    if (*out < lo || *out > hi) return g3_errorf("%s: metadata '%s' is %lld, out of range [%lld, %lld]", g->path, key, (long long)*out, (long long)lo, (long long)hi);
    return 0;
}
static int num_key(const GGUFFile *g, const char *key, int required, double *out) {
    int rc = gguf_get_float(g, key, out);
    if (rc < 0) return -1;
    if (rc > 0) return required ? g3_errorf("%s: metadata key '%s' is missing", g->path, key) : 0;
    if (!(*out == *out) || *out > 1e30 || *out < -1e30) return g3_errorf("%s: metadata '%s' is not a finite number", g->path, key);
    return 0;
}

// Layer kinds: 1 = sliding. From <arch>.attention.sliding_window_pattern if present, else
// the architecture's period.
static int layer_kinds(const GGUFFile *g, const char *arch, int layers, uint8_t *sliding) {
    char key[128];
    K(key, sizeof key, arch, "attention.sliding_window_pattern");
    const GGUFKV *kv = gguf_kv(g, key);
    int64_t period = !strcmp(arch, "gemma3") ? 6 : 2;
    if (kv && kv->type == GGUF_ARRAY) {
        if (kv->arr_type != GGUF_BOOL) return g3_errorf("%s: metadata '%s' must be an integer or an array of bools", g->path, key);
        if (kv->n != (uint64_t)layers) return g3_errorf("%s: metadata '%s' has %llu entries for %d layers", g->path, key, (unsigned long long)kv->n, layers);
        for (int i = 0; i < layers; i++) sliding[i] = kv->value[i];
        return 0;
    }
    if (kv && int_key(g, key, 0, 1, 1 << 20, &period)) return -1;
    for (int i = 0; i < layers; i++) sliding[i] = i % period < period - 1;
    return 0;
}

int gguf_gemma_config_json(const GGUFFile *g, const char *arch, int64_t vocab, G3DType dtype, char **text, size_t *len) {
    *text = NULL;
    char key[128];
    const int g3 = !strcmp(arch, "gemma3");
    int64_t L = 0, C = 0, F = 0, NH = 0, NKV, HD, ctx = 0, W = g3 ? 0 : 4096, bos = 2, eos = 1, pad = 0, vlen;
    double eps = 0, base = 10000.0, local = 10000.0, attn_cap = g3 ? 0 : 50.0, final_cap = g3 ? 0 : 30.0, factor = 1.0;
    const int64_t BIG = (int64_t)1 << 30;
    if (int_key(g, K(key, sizeof key, arch, "block_count"), 1, 1, G3_GGUF_MAX_LAYERS, &L) ||
        int_key(g, K(key, sizeof key, arch, "context_length"), 1, 1, BIG, &ctx) ||
        int_key(g, K(key, sizeof key, arch, "embedding_length"), 1, 1, BIG, &C) ||
        int_key(g, K(key, sizeof key, arch, "feed_forward_length"), 1, 1, BIG, &F) ||
        int_key(g, K(key, sizeof key, arch, "attention.head_count"), 1, 1, 4096, &NH))
        return -1;
    NKV = NH;
    HD = C / NH;
    if (int_key(g, K(key, sizeof key, arch, "attention.head_count_kv"), 0, 1, 4096, &NKV) ||
        int_key(g, K(key, sizeof key, arch, "attention.key_length"), 0, 1, 65536, &HD) ||
        int_key(g, K(key, sizeof key, arch, "attention.sliding_window"), 0, 0, BIG, &W) ||
        num_key(g, K(key, sizeof key, arch, "attention.layer_norm_rms_epsilon"), 1, &eps) ||
        num_key(g, K(key, sizeof key, arch, "rope.freq_base"), 0, &base) ||
        int_key(g, "tokenizer.ggml.bos_token_id", 0, 0, BIG, &bos) ||
        int_key(g, "tokenizer.ggml.eos_token_id", 0, 0, BIG, &eos) ||
        int_key(g, "tokenizer.ggml.padding_token_id", 0, 0, BIG, &pad))
        return -1;
    vlen = HD;
    if (int_key(g, K(key, sizeof key, arch, "attention.value_length"), 0, 1, 65536, &vlen)) return -1;
    if (vlen != HD) return g3_errorf("%s: metadata '%s' (%lld) differs from the key length (%lld): Gemma's are equal", g->path, key, (long long)vlen, (long long)HD);
    if (g3) {
        if (num_key(g, K(key, sizeof key, arch, "rope.freq_base_swa"), 0, &local)) return -1;
    } else {
        local = base;
        if (num_key(g, K(key, sizeof key, arch, "attn_logit_softcapping"), 0, &attn_cap) ||
            num_key(g, K(key, sizeof key, arch, "final_logit_softcapping"), 0, &final_cap))
            return -1;
    }
    // RoPE scaling (linear, global layers only): rope.scaling.type + rope.scaling.factor, or
    // the older rope.scale_linear
    const char *st;
    size_t stn;
    int rc = gguf_get_str(g, K(key, sizeof key, arch, "rope.scaling.type"), &st, &stn);
    if (rc < 0) return -1;
    if (rc == 0 && !(stn == 4 && !memcmp(st, "none", 4))) {
        if (!(stn == 6 && !memcmp(st, "linear", 6)))
            return g3_errorf("%s: metadata '%s' is '%.*s': only linear RoPE scaling is supported", g->path, key, (int)(stn > 32 ? 32 : stn), st);
        if (num_key(g, K(key, sizeof key, arch, "rope.scaling.factor"), 1, &factor)) return -1;
    } else if (num_key(g, K(key, sizeof key, arch, "rope.scale_linear"), 0, &factor)) {
        return -1;
    }
    if (!(factor > 0)) return g3_errorf("%s: the RoPE scaling factor %g must be positive", g->path, factor);
    // llama.cpp: the 27B shapes scale scores by (embedding / heads)^-0.5, the others by head_dim^-0.5
    double qpas = (double)HD, scale = 0;
    if ((g3 && L == 62) || (!g3 && L == 46)) qpas = (double)(C / NH);
    // <arch>.attention.scale (the scores' factor, qpas^-0.5), which llama.cpp reads for other
    // architectures but not these: honoured when present, so a checkpoint whose scale is
    // neither of the above can be carried (our writer sets it only then)
    if (num_key(g, K(key, sizeof key, arch, "attention.scale"), 0, &scale)) return -1;
    if (scale != 0) {
        if (!(scale > 0)) return g3_errorf("%s: metadata '%s' must be positive", g->path, key);
        qpas = 1.0 / (scale * scale);
    }

    uint8_t sliding[G3_GGUF_MAX_LAYERS];
    if (layer_kinds(g, arch, (int)L, sliding)) return -1;
    if (W == 0) {  // no window: every layer global (gemma3 as llama.cpp reads it)
        memset(sliding, 0, sizeof sliding);
        W = ctx;
    }

    size_t cap = 4096 + (size_t)L * 24;
    char *s = g3_malloc(cap);
    if (!s) return -1;
    size_t n = 0;
#define OUT(...) n += (size_t)snprintf(s + n, n < cap ? cap - n : 0, __VA_ARGS__)
    OUT("{\"architectures\": [\"%s\"], \"model_type\": \"%s\", ", g3 ? "Gemma3ForCausalLM" : "Gemma2ForCausalLM", g3 ? "gemma3_text" : "gemma2");
    OUT("\"vocab_size\": %lld, \"hidden_size\": %lld, \"intermediate_size\": %lld, \"num_hidden_layers\": %lld, ",
        (long long)vocab, (long long)C, (long long)F, (long long)L);
    OUT("\"num_attention_heads\": %lld, \"num_key_value_heads\": %lld, \"head_dim\": %lld, \"query_pre_attn_scalar\": %.17g, ",
        (long long)NH, (long long)NKV, (long long)HD, qpas);
    OUT("\"sliding_window\": %lld, \"max_position_embeddings\": %lld, \"rms_norm_eps\": %.17g, ", (long long)W, (long long)ctx, eps);
    OUT("\"rope_theta\": %.17g, \"rope_local_base_freq\": %.17g, ", base, local);
    if (factor != 1.0) OUT("\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": %.17g}, ", factor);
    if (attn_cap > 0) OUT("\"attn_logit_softcapping\": %.17g, ", attn_cap);
    if (final_cap > 0) OUT("\"final_logit_softcapping\": %.17g, ", final_cap);
    OUT("\"hidden_activation\": \"gelu_pytorch_tanh\", \"tie_word_embeddings\": true, ");
    OUT("\"bos_token_id\": %lld, \"eos_token_id\": %lld, \"pad_token_id\": %lld, \"torch_dtype\": \"%s\", ", (long long)bos,
        (long long)eos, (long long)pad, dtype == G3_BF16 ? "bfloat16" : dtype == G3_F16 ? "float16" : "float32");
    OUT("\"layer_types\": [");
    for (int i = 0; i < L; i++) OUT("%s\"%s\"", i ? ", " : "", sliding[i] ? "sliding_attention" : "full_attention");
    OUT("]}\n");
#undef OUT
    if (n >= cap) { free(s); return g3_errorf("%s: config text overflow", g->path); }
    *text = s;
    *len = n;
    return 0;
}
