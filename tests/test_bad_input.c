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
#include "model/forward.h"

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
        {"dtype2", "\"dtype\":\"F32\"", "\"dtype\":\"I32\"", "must be F32, BF16, F16, Q8_0 or Q4_0", NULL},
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
    free(cfg); free(st); free(hdr); free(lie); free(c1); free(c2); free(c3); free(c4); free(c5); free(c6);
    return check_done();
}
