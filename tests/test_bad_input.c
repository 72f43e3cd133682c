// test_bad_input.c: every kind of bad input gets a clear message naming the file and the
// problem, a non-zero exit from the CLI, and no crash: missing or truncated weights, header
// lengths and offsets that lie, a missing tensor, a shape that disagrees with config.json,
// an unknown dtype, malformed or incomplete config.json, ids outside the vocabulary, and a
// prompt longer than the context.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/forward.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

static char tmpdir[256];
static const char *SRC = "tests/fixtures/gemma3-tiny-f32";

static char *slurp(const char *path, size_t *n) {
    char *p = g3_read_file(path, n);
    if (!p) { fprintf(stderr, "%s\n", g3_error()); exit(2); }
    return p;
}

static void spit(const char *path, const void *d, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(d, 1, n, f);
    fclose(f);
}

// Makes a model folder case/ with the given config text and weights bytes.
static const char *make_case(const char *name, const char *cfg, size_t cfg_len, const char *st, size_t st_len) {
    static char dir[512];
    char p[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (cfg) spit(p, cfg, cfg_len);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (st) spit(p, st, st_len);
    return dir;
}

// Loading must fail with a message containing each of the needles.
static void expect_fail(const char *dir, const char *n1, const char *n2) {
    G3Model m;
    int rc = g3_model_load(&m, dir);
    if (rc == 0) { g3_model_free(&m); CHECK(0, "%s: loaded although it should not", dir); return; }
    const char *e = g3_error();
    CHECK(strstr(e, n1) != NULL, "%s: message '%s' lacks '%s'", dir, e, n1);
    CHECK(!n2 || strstr(e, n2) != NULL, "%s: message '%s' lacks '%s'", dir, e, n2);
}

// The CLI must exit non-zero (and not by a signal) with a message containing needle.
static void expect_cli_fail(const char *args, const char *needle) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) return;
    char cmd[2048], out[600];
    snprintf(out, sizeof out, "%s/cli.txt", tmpdir);
    snprintf(cmd, sizeof cmd, "%s %s > %s 2>&1", bin, args, out);
    int st = system(cmd);
    size_t n;
    char *text = slurp(out, &n);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1, "gemma3 %s: exit status %d, want 1 (%s)", args, st, text);
    CHECK(strstr(text, needle) != NULL, "gemma3 %s: output '%s' lacks '%s'", args, text, needle);
    free(text);
}

static char *replace(const char *s, const char *from, const char *to) {
    const char *at = strstr(s, from);
    if (!at) { fprintf(stderr, "replace: '%s' not found\n", from); exit(2); }
    char *r = malloc(strlen(s) + strlen(to) + 1);
    memcpy(r, s, (size_t)(at - s));
    strcpy(r + (at - s), to);
    strcat(r, at + strlen(from));
    return r;
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/g3badXXXXXX");
    if (!mkdtemp(tmpdir)) return 2;
    char p[512];
    size_t cfg_n, st_n;
    snprintf(p, sizeof p, "%s/config.json", SRC);
    char *cfg = slurp(p, &cfg_n);
    snprintf(p, sizeof p, "%s/model.safetensors", SRC);
    char *st = slurp(p, &st_n);
    uint64_t hlen;
    memcpy(&hlen, st, 8);
    char *hdr = strndup(st + 8, hlen);

    // the files themselves
    expect_fail(make_case("nofile", cfg, cfg_n, NULL, 0), "no model.safetensors", NULL);
    expect_fail(make_case("noconfig", NULL, 0, st, st_n), "config.json", "cannot open");
    expect_fail(make_case("tiny", cfg, cfg_n, st, 5), "model.safetensors", "truncated");
    expect_fail(make_case("cut", cfg, cfg_n, st, st_n - 1000), "model.safetensors", "truncated");
    char *lie = malloc(st_n);
    memcpy(lie, st, st_n);
    uint64_t big = st_n * 2;
    memcpy(lie, &big, 8);
    expect_fail(make_case("hlen", cfg, cfg_n, lie, st_n), "model.safetensors", "header length");
    big = (uint64_t)1 << 62;
    memcpy(lie, &big, 8);
    expect_fail(make_case("hlen2", cfg, cfg_n, lie, st_n), "model.safetensors", "header length");
    memcpy(lie, &hlen, 8);
    lie[8] = '#';  // break the header's JSON
    expect_fail(make_case("hjson", cfg, cfg_n, lie, st_n), "model.safetensors", "header");

    // tensors that lie about themselves (header edits keep the header length)
    struct { const char *name, *from, *to, *n1, *n2; } edits[] = {
        {"dtype", "\"dtype\":\"F32\"", "\"dtype\":\"Q99\"", "unsupported dtype", "Q99"},
        {"dtype2", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"", "must be F32, BF16, F16, Q8_0, Q4_0", NULL},
        {"missing", "model.norm.weight", "model.nrm_.weight", "model.norm.weight", "missing"},
        {"offsets", "\"data_offsets\":[0,", "\"data_offsets\":[4,", "data_offsets", NULL},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(edits); i++) {
        char *h = strstr(hdr, edits[i].from) ? replace(hdr, edits[i].from, edits[i].to) : NULL;
        if (!h) { CHECK(0, "fixture header lacks '%s'", edits[i].from); continue; }
        // pad or trim with spaces so the header length is unchanged
        size_t hl = strlen(h);
        char *bytes = malloc(st_n + 16);
        memcpy(bytes, st, st_n);
        if (hl <= hlen) {
            memcpy(bytes + 8, h, hl);
            memset(bytes + 8 + hl, ' ', hlen - hl);
        } else {
            CHECK(0, "edit %s grows the header", edits[i].name);
        }
        expect_fail(make_case(edits[i].name, cfg, cfg_n, bytes, st_n), edits[i].n1, edits[i].n2);
        free(h); free(bytes);
    }

    // config.json that disagrees or is broken
    char *c1 = replace(cfg, "\"hidden_size\": 96", "\"hidden_size\": 128");
    expect_fail(make_case("shape", c1, strlen(c1), st, st_n), "has shape", "config.json implies");
    char *c2 = replace(cfg, "\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7");
    expect_fail(make_case("layers", c2, strlen(c2), st, st_n), "model.layers.6", "missing");
    expect_fail(make_case("cfgjson", "{\"hidden_size\": ", 16, st, st_n), "config.json", "line 1");
    char *c3 = replace(cfg, "\"hidden_size\": 96,", "");
    expect_fail(make_case("cfgmiss", c3, strlen(c3), st, st_n), "config.json", "hidden_size");
    char *c4 = replace(cfg, "\"model_type\": \"gemma3_text\"", "\"model_type\": \"llama\"");
    expect_fail(make_case("cfgtype", c4, strlen(c4), st, st_n), "config.json", "llama");
    char *c5 = replace(cfg, "\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    expect_fail(make_case("cfgheads", c5, strlen(c5), st, st_n), "config.json", "multiple");
    char *c6 = replace(cfg, "\"vocab_size\": 1024", "\"vocab_size\": \"many\"");
    expect_fail(make_case("cfgstr", c6, strlen(c6), st, st_n), "vocab_size", "integer");

    // every number in config.json is range-checked, and a message names the file and the field
    // (issue 15, item 6: eos_token_id 1e10 was cast to int; negative ids were accepted)
    static const char *BASE = "{\"model_type\": \"gemma3_text\", \"vocab_size\": 1024, \"hidden_size\": 96, "
                              "\"intermediate_size\": 256, \"num_hidden_layers\": 6, \"num_attention_heads\": 4, "
                              "\"num_key_value_heads\": 2, \"head_dim\": 32%s}";
    struct { const char *extra, *n1, *n2; } nums[] = {
        {", \"eos_token_id\": 10000000000", "\"eos_token_id\" = 10000000000 is out of range", NULL},
        {", \"eos_token_id\": 99999999999999999999999", "\"eos_token_id\"", "out of range"},
        {", \"eos_token_id\": -1", "\"eos_token_id\" = -1 is out of range [0, 1023]", NULL},
        {", \"eos_token_id\": 1024", "\"eos_token_id\" = 1024 is out of range [0, 1023]", NULL},
        {", \"eos_token_id\": 1e10", "\"eos_token_id\" must be an integer", NULL},
        {", \"eos_token_id\": [1, -5]", "\"eos_token_id\"[1] is outside the vocabulary", NULL},
        {", \"eos_token_id\": [1, 106.5]", "\"eos_token_id\"[1] must be an integer", NULL},
        {", \"eos_token_id\": [10000000000]", "\"eos_token_id\"[0] is outside the vocabulary", NULL},
        {", \"eos_token_id\": []", "\"eos_token_id\" is an empty list", NULL},
        {", \"eos_token_id\": \"1\"", "\"eos_token_id\" must be an integer", NULL},
        {", \"bos_token_id\": -2", "\"bos_token_id\" = -2 is out of range", NULL},
        {", \"pad_token_id\": 4294967296", "\"pad_token_id\" = 4294967296 is out of range", NULL},
        {", \"sliding_window\": 4294967297", "\"sliding_window\" = 4294967297 is out of range", NULL},
        {", \"max_position_embeddings\": -8192", "\"max_position_embeddings\" = -8192 is out of range", NULL},
        {", \"sliding_window_pattern\": 0", "\"sliding_window_pattern\" = 0 is out of range", NULL},
        {", \"rms_norm_eps\": 1e999", "\"rms_norm_eps\" = 1e999 is not a finite number", NULL},
        {", \"rope_theta\": -1e999", "\"rope_theta\" = -1e999 is not a finite number", NULL},
        {", \"query_pre_attn_scalar\": 1e300", "\"query_pre_attn_scalar\" = 1e300 is out of range", NULL},
        {", \"final_logit_softcapping\": 1e39", "\"final_logit_softcapping\" = 1e39 is out of range", NULL},
        {", \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 1e999}", "\"rope_scaling.factor\" = 1e999 is not a finite", NULL},
        {", \"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1e400}}", "\"rope_parameters.full_attention.rope_theta\" = 1e400 is not a finite", NULL},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(nums); i++) {
        char text[1024];
        snprintf(text, sizeof text, BASE, nums[i].extra);
        G3Config c;
        int rc = g3_config_parse(&c, text, strlen(text), "x/config.json");
        CHECK(rc != 0, "config with%s: accepted (eos %d, bos %d, pad %d)", nums[i].extra, c.eos, c.bos, c.pad);
        if (rc == 0) continue;
        CHECK(strstr(g3_error(), "x/config.json: ") == g3_error() && strstr(g3_error(), nums[i].n1) &&
                  (!nums[i].n2 || strstr(g3_error(), nums[i].n2)),
              "config with%s: message '%s' lacks '%s'", nums[i].extra, g3_error(), nums[i].n1);
    }
    {  // a default computed from other fields is checked too: head_dim = hidden_size / heads = 0
        const char *t = "{\"model_type\": \"gemma3_text\", \"vocab_size\": 1024, \"hidden_size\": 2, "
                        "\"intermediate_size\": 256, \"num_hidden_layers\": 6, \"num_attention_heads\": 4, "
                        "\"query_pre_attn_scalar\": 32}";
        G3Config c;
        CHECK(g3_config_parse(&c, t, strlen(t), "x/config.json") != 0 && strstr(g3_error(), "\"head_dim\" is absent and its default 0"),
              "head_dim default 0: %s", g3_error());
        // and what is in range still loads: an eos list's first id is the eos
        char text[1024];
        snprintf(text, sizeof text, BASE, ", \"eos_token_id\": [1, 106], \"bos_token_id\": 2, \"pad_token_id\": 0, \"rms_norm_eps\": 1e-6");
        CHECK(g3_config_parse(&c, text, strlen(text), "x/config.json") == 0 && c.eos == 1 && c.bos == 2, "eos list: %s", g3_error());
        // a key given twice means its last value, as in Python's json (issue 15, item 11)
        snprintf(text, sizeof text, BASE, ", \"hidden_size\": 128, \"eos_token_id\": 5, \"eos_token_id\": 7");
        CHECK(g3_config_parse(&c, text, strlen(text), "x/config.json") == 0 && c.hidden == 128 && c.eos == 7,
              "duplicate keys: hidden %d eos %d (want 128, 7: the last wins)", c.hidden, c.eos);
    }
    char *c7 = replace(cfg, "\"vocab_size\": 1024", "\"eos_token_id\": 10000000000, \"vocab_size\": 1024");
    expect_fail(make_case("cfgeos", c7, strlen(c7), st, st_n), "cfgeos/config.json: field \"eos_token_id\"", "out of range");

    // tokenizer files: ids are integers in [0, 2^30); a SentencePiece piece's type is one of the
    // six and its score finite (a NaN score made the merge ranking's sort inconsistent; type
    // 2^32 + 1 was cast to int and read as 1, NORMAL)
    {
        size_t tn, mn;
        char *tj = slurp("fuzz/corpus/fuzz_tok_json/tiny.json", &tn);
        char *tm = slurp("fuzz/corpus/fuzz_tok_spm/tiny.model", &mn);
        struct { const char *to, *n1; } ids[] = {
            {"\"</b>\": 10.0", "model.vocab[\"</b>\"]: token id is not an integer (10.0)"},
            {"\"</b>\": -10", "model.vocab[\"</b>\"]: token id -10 is outside [0, 2^30)"},
            {"\"</b>\": 9223372036854775818", "token id 9223372036854775818 is outside"},
            {"\"</b>\": \"10\"", "token id is not an integer (not a number)"},
        };
        for (size_t i = 0; i < G3_ARRAY_LEN(ids); i++) {
            char *t = replace(tj, "\"</b>\": 10", ids[i].to);
            snprintf(p, sizeof p, "%s/tok%zu.json", tmpdir, i);
            spit(p, t, strlen(t));
            G3Tokenizer *tok = g3_tok_load_ex(p, G3_TOK_LOAD_NO_CACHE);
            CHECK(!tok && strstr(g3_error(), p) && strstr(g3_error(), ids[i].n1), "tokenizer.json with %s: %s", ids[i].to,
                  tok ? "loaded" : g3_error());
            g3_tok_free(tok);
            free(t);
        }
        // the first piece, "\n\x0e" "\n\x05<pad>" "\x15" score "\x18\x03" (type CONTROL)
        CHECK(mn > 16 && !memcmp(tm, "\n\x0e\n\x05<pad>\x15", 10) && !memcmp(tm + 14, "\x18\x03", 2), "tiny.model's first piece");
        char *bad = malloc(mn + 8);
        memcpy(bad, tm, mn);
        memcpy(bad + 10, "\x00\x00\xc0\x7f", 4);  // score NaN
        snprintf(p, sizeof p, "%s/nan.model", tmpdir);
        spit(p, bad, mn);
        G3Tokenizer *tok = g3_tok_load_ex(p, G3_TOK_LOAD_NO_CACHE);
        CHECK(!tok && strstr(g3_error(), p) && strstr(g3_error(), "piece 0: score is not a finite number"), "NaN score: %s",
              tok ? "loaded" : g3_error());
        g3_tok_free(tok);
        memcpy(bad, "\n\x12", 2);  // type 2^32 + 1: a 5-byte varint where "\x03" was
        memcpy(bad + 2, tm + 2, 12);
        memcpy(bad + 14, "\x18\x81\x80\x80\x80\x10", 6);
        memcpy(bad + 20, tm + 16, mn - 16);
        snprintf(p, sizeof p, "%s/type.model", tmpdir);
        spit(p, bad, mn + 4);
        tok = g3_tok_load_ex(p, G3_TOK_LOAD_NO_CACHE);
        CHECK(!tok && strstr(g3_error(), "piece 0: unknown type 4294967297"), "type 2^32+1: %s", tok ? "loaded" : g3_error());
        g3_tok_free(tok);
        free(bad); free(tj); free(tm);
    }

    // safetensors: a dimension of INT64_MAX is exact (its double, 2^63, must not be cast)
    {
        const char h[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775807],\"data_offsets\":[0,0]}}";
        uint64_t hl = sizeof h - 1;
        char buf[256];
        memcpy(buf, &hl, 8);
        memcpy(buf + 8, h, hl);
        snprintf(p, sizeof p, "%s/dim.safetensors", tmpdir);
        spit(p, buf, 8 + hl);
        STSet set;
        CHECK(st_open(&set, p) == 0 && set.ntensors == 1 && set.tensors[0].shape[1] == INT64_MAX, "INT64_MAX dim: %s", g3_error());
        if (set.ntensors) st_close(&set);
    }

    // a token file whose header claims a vocabulary beyond int (its ids became negative ints
    // and passed the check against the model's vocabulary)
    {
        uint8_t tf[68] = "G3TOKENS";
        uint32_t version = 1, vocab = 0xFFFFFFFFu, data_offset = 64, id = 0x80000000u;
        uint64_t ntok = 1;
        memcpy(tf + 8, &version, 4);
        memcpy(tf + 12, &vocab, 4);
        memcpy(tf + 24, &ntok, 8);
        memcpy(tf + 36, &data_offset, 4);
        memcpy(tf + 64, &id, 4);
        snprintf(p, sizeof p, "%s/big.tok", tmpdir);
        spit(p, tf, sizeof tf);
        G3TokenFile f;
        int rc = g3_tokfile_open(&f, p);
        CHECK(rc != 0 && strstr(g3_error(), "big.tok: bad vocabulary size"), "token file with vocab 2^32-1: %s",
              rc ? g3_error() : "opened");
        if (rc == 0) g3_tokfile_close(&f);
    }

    // the engine refuses ids outside the vocabulary and sequences beyond the context
    G3Model m;
    CHECK(g3_model_load(&m, SRC) == 0, "%s", g3_error());
    G3State *s = g3_state_new(&m, 1, 16, 8, 0, NULL);
    int32_t bad[] = {2, 5000};
    CHECK(g3_prefill(s, 0, bad, 2, NULL) != 0 && strstr(g3_error(), "outside the vocabulary"), "bad id: %s", g3_error());
    int32_t lng[20] = {2};
    CHECK(g3_prefill(s, 0, lng, 20, NULL) != 0 && strstr(g3_error(), "exceeds the context"), "long prompt: %s", g3_error());
    CHECK(g3_state_new(&m, 1, 1 << 20, 8, 0, NULL) == NULL && strstr(g3_error(), "max_position_embeddings"), "ctx: %s", g3_error());
    g3_state_free(s);
    g3_model_free(&m);

    // and the CLI turns all of this into one line and exit status 1
    char args[1024];
    snprintf(args, sizeof args, "forward --model %s/cut --ids 2,3", tmpdir);
    expect_cli_fail(args, "truncated");
    snprintf(args, sizeof args, "forward --model %s --ids 2,1024", SRC);
    expect_cli_fail(args, "outside the vocabulary");
    snprintf(args, sizeof args, "forward --model %s --ids 2,x", SRC);
    expect_cli_fail(args, "bad token id");
    snprintf(args, sizeof args, "generate --model %s --ids 2,3 --max-tokens 5 --context 2", SRC);
    expect_cli_fail(args, "does not fit the context");
    snprintf(args, sizeof args, "inspect --model %s/nonexistent", tmpdir);
    expect_cli_fail(args, "nonexistent");
    expect_cli_fail("forward --model", "needs a value");
    expect_cli_fail("inspect --bogus 1", "unknown option");

    snprintf(p, sizeof p, "rm -rf %s", tmpdir);
    if (system(p) != 0) return 2;
    free(cfg); free(st); free(hdr); free(lie); free(c1); free(c2); free(c3); free(c4); free(c5); free(c6); free(c7);
    return check_done();
}
