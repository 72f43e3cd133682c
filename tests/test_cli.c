// test_cli.c: the gemma3 program at its edges, run as a user runs it: `--version`; absurd
// option values refused with the option and its range named (NaN, inf, out of range, given
// twice, options that would be ignored); --stop with C escapes, given several times; JSON
// output that stays valid JSON (and UTF-8) whatever bytes the prompts and outputs hold;
// `generate --resume` refusing settings that differ from the first run's; and a model whose
// weights hold NaN stopping every command with a message instead of emitting token 0.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "model/init.h"

static const char *bin;
static char tmp[64], md[128], nanmd[128];

static const char *python(void) { return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3"; }

// Runs `gemma3 ARGS` with stdout and stderr into tmp/out.txt; returns the exit status and
// the output (malloc'd) in *out.
static int run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run(char **out, const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    int rc = sh("%s %s > %s/out.txt 2>&1", bin, args, tmp);
    char p[256];
    snprintf(p, sizeof p, "%s/out.txt", tmp);
    size_t n;
    *out = g3_read_file(p, &n);
    if (!*out) *out = g3_strdup("");
    return rc;
}

// `gemma3 ARGS` must exit with status 1 and say needle.
static void refused(const char *args, const char *needle) {
    char *out;
    int rc = run(&out, "%s", args);
    CHECK(rc == 1 && strstr(out, needle), "gemma3 %s: exit %d, output '%s', want 1 and '%s'", args, rc, out, needle);
    free(out);
}

// The file is valid UTF-8 throughout and parses as JSON (or as one JSON value a line).
static void valid_json(const char *path, int lines) {
    size_t n;
    char *t = g3_read_file(path, &n);
    if (!t) { CHECK(0, "%s", g3_error()); return; }
    for (size_t i = 0; i < n;) {
        int k = json_utf8_len(t + i, n - i);
        if (!k) { CHECK(0, "%s: byte %zu (0x%02x) is not UTF-8", path, i, (unsigned char)t[i]); break; }
        i += (size_t)k;
    }
    Json j;
    if (!lines) {
        CHECK(json_parse(&j, t, n) == 0, "%s: %s", path, g3_error());
        json_free(&j);
    } else {
        for (char *p = t, *nl; (nl = memchr(p, '\n', n - (size_t)(p - t))); p = nl + 1) {
            CHECK(json_parse(&j, p, (size_t)(nl - p)) == 0, "%s: %s", path, g3_error());
            json_free(&j);
        }
    }
    free(t);
    // and Python's strict reader agrees (what a user's script would do)
    CHECK(sh("%s -c \"import json, sys; p = sys.argv[1]; f = open(p, encoding='utf-8'); "
             "[json.loads(l) for l in f] if %d else json.load(f)\" %s", python(), lines, path) == 0, "%s: python's json rejects it", path);
}

// Sets every value of one BF16 tensor of dir/model.safetensors to NaN.
static void poison(const char *dir, const char *tensor) {
    char p[256];
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    size_t n;
    char *b = g3_read_file(p, &n);
    uint64_t hl;
    memcpy(&hl, b, 8);
    Json j;
    CHECK(json_parse(&j, b + 8, hl) == 0, "%s", g3_error());
    const JsonNode *off = json_get(json_get(json_root(&j), tensor), "data_offsets");
    size_t s = (size_t)json_at(off, 0)->num, e = (size_t)json_at(off, 1)->num;
    for (size_t i = 8 + hl + s; i < 8 + hl + e; i += 2) { b[i] = (char)0xC0; b[i + 1] = 0x7F; }
    json_free(&j);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    free(b);
}

static void options(void) {
    const char *gen = "generate --model tests/fixtures/gemma3-tiny-f32 --ids 2,3";
    struct { const char *args, *needle; } cases[] = {
        {"--threads 5000", "--threads: 5000 is out of range: allowed 0 to 1024"},
        {"--threads -1", "--threads: -1 is out of range"},
        {"--max-tokens 0", "--max-tokens: 0 is out of range: allowed 1 to"},
        {"--temperature nan", "--temperature: 'nan' is not a finite number"},
        {"--temperature inf", "--temperature: 'inf' is not a finite number"},
        {"--temperature -1", "--temperature: -1 is out of range: allowed 0 to 100"},
        {"--top-p 1.5", "--top-p: 1.5 is out of range: allowed 0 to 1"},
        {"--top-p NaN", "--top-p: 'NaN' is not a finite number"},
        {"--top-k -1", "--top-k: -1 is out of range"},
        {"--top-k 99999999999", "--top-k: 99999999999 is out of range"},
        {"--min-p -0.1", "--min-p: -0.1 is out of range"},
        {"--repeat-penalty 0", "--repeat-penalty: 0 is out of range"},
        {"--presence-penalty nan", "--presence-penalty: 'nan' is not a finite number"},
        {"--frequency-penalty 1e300", "--frequency-penalty: 1e300 is out of range"},
        {"--seed -1", "--seed: -1 is out of range"},
        {"--seed 1e3", "--seed: '1e3' is not an integer"},
        {"--seed 99999999999999999999999", "--seed: 99999999999999999999999 is out of range"},
        {"--temperature 1 --temperature 2", "--temperature is given twice"},
        {"--resume", "--resume only applies to a --prompts-file run"},
        {"--out-dir x", "--out-dir only applies to a --prompts-file run"},
        {"--batch-size 2", "--batch-size only applies to a --prompts-file run"},
        {"--stop '\\q'", "--stop: unknown escape '\\q'"},
        {"--stop '\\x4'", "needs exactly 2 hex digits"},
        {"--stop '\\u0000'", "NUL"},
        {"--stop '\\ud800'", "not a Unicode scalar value"},
        {"--stop ''", "empty stop string"},
    };
    char args[512];
    for (size_t i = 0; i < G3_ARRAY_LEN(cases); i++) {
        snprintf(args, sizeof args, "%s %s", gen, cases[i].args);
        refused(args, cases[i].needle);
    }
    refused("generate --model tests/fixtures/gemma3-tiny-f32 --prompt hi --system x", "--system is the chat format's system message: it needs --chat");
    refused("generate --model M --prompts-file P --out-dir O --print-ids", "--print-ids applies to --prompt and --ids");
    snprintf(args, sizeof args, "generate --create-sample-prompts %s/sample.json --model M", tmp);  // (never into the checkout)
    refused(args, "give it alone");
    refused("chat --model M --temperature nan", "--temperature: 'nan' is not a finite number");
    refused("chat --model M --threads 100000", "--threads: 100000 is out of range");
    refused("intervene --model M --ids 2,3 --scale nan", "--scale: 'nan' is not a finite number");
    refused("intervene --model M --ids 2,3 --scale inf", "--scale: 'inf' is not a finite number");
    refused("analyze --model M --ids 2,3 --induction-len 0 --seed 4", "--seed draws the induction run's sequence");
    refused("tokenize --tokenizer T --input x.jsonl --pieces", "--pieces applies to --text and --file");
    refused("tokenize --tokenizer T --model M --text x", "give one of --tokenizer FILE and --model DIR");
    refused("trace --model M --ids 2 --hooks '*' --out x.npz --threads 2000", "--threads: 2000 is out of range");
    refused("forward --model M --ids 2 --threads 5000", "--threads: 5000 is out of range");

    // --help shows the ranges; --version says what was built
    char *out;
    CHECK(run(&out, "generate --help") == 0 && strstr(out, "--top-p X") && strstr(out, "[0..1]") && strstr(out, "--threads N") &&
              strstr(out, "[0..1024]") && strstr(out, "C escapes"), "generate --help: %s", out);
    free(out);
    for (int k = 0; k < 2; k++) {
        CHECK(run(&out, k ? "version" : "--version") == 0 && !strncmp(out, "gemma3 ", 7) && strstr(out, "(git ") && strstr(out, "flags: ") &&
                  strstr(out, "kernels: "), "gemma3 %s: %s", k ? "version" : "--version", out);
        free(out);
    }
    CHECK(run(&out, "version --bogus") == 2 && strstr(out, "takes no options"), "version --bogus: %s", out);  // main's usage errors: 2
    free(out);
}

// A stop string given with escapes, before another that never occurs, cuts the text where
// the escaped character first appears.
static void stops(void) {
    char *out;
    int rc = run(&out, "generate --model %s --prompt 'Once upon a time' --max-tokens 16 --seed 7 --quiet", md);
    CHECK(rc == 0, "generate: %s", out);
    size_t n = strlen(out);
    // the first character (a valid UTF-8 one) after position 0 whose first occurrence is not at 0
    size_t at = 0, k = 0;
    for (size_t i = 1; i < n && !at; i += k ? k : 1) {
        k = (size_t)json_utf8_len(out + i, n - i);
        if (k && out[i] != '\n' && out[i] != '\'' && out[i] != '\\' && memmem(out, i, out + i, k) == NULL) at = i;
    }
    if (!at) { CHECK(0, "no usable character in '%s'", out); free(out); return; }
    char esc[16];
    if (k == 1) snprintf(esc, sizeof esc, "\\x%02x", (unsigned char)out[at]);
    else {
        unsigned cp = (unsigned char)out[at] & (k == 2 ? 0x1F : k == 3 ? 0x0F : 0x07);
        for (size_t i = 1; i < k; i++) cp = cp << 6 | ((unsigned char)out[at + i] & 0x3F);
        snprintf(esc, sizeof esc, cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
    }
    char *want = strndup(out, at), *got;
    rc = run(&got, "generate --model %s --prompt 'Once upon a time' --max-tokens 16 --seed 7 --quiet --stop '%s' --stop '\\u2603\\u2603'", md, esc);
    CHECK(rc == 0 && !strncmp(got, want, at) && !strcmp(got + at, "\n"), "--stop '%s': got '%s', want '%s'", esc, got, want);
    free(out); free(want); free(got);
}

// Batch results, metadata and summary stay valid JSON with invalid UTF-8 in the prompts and
// stop strings; resume still recognises the prompts; a changed setting is refused.
static void batch(void) {
    char pf[256], out[256], p[300], *o;
    snprintf(pf, sizeof pf, "%s/prompts.txt", tmp);
    snprintf(out, sizeof out, "%s/res", tmp);
    FILE *f = fopen(pf, "wb");
    fprintf(f, "caf\xe9 au lait\nplain text\n\xff\xfe broken \xc3 start\n");  // Latin-1, stray bytes
    fclose(f);
    const char *base = "--max-tokens 4 --seed 1 --quiet --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'";
    int rc = run(&o, "generate --model %s --prompts-file %s --out-dir %s %s", md, pf, out, base);
    CHECK(rc == 0, "batch run: %s", o);
    free(o);
    const char *files[] = {"results.json", "prompt_metadata.json", "summary.json", "results.jsonl"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", out, files[i]);
        valid_json(p, i == 3);
    }
    Json j;
    snprintf(p, sizeof p, "%s/prompt_metadata.json", out);
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *s = json_get(json_root(&j), "stop_strings");
        CHECK(s && s->count == 4 && !strcmp(json_at(s, 0)->str, "\n\n") && !strcmp(json_at(s, 1)->str, "x\ty") &&
                  !strcmp(json_at(s, 2)->str, "\xc3\xa9") && !strcmp(json_at(s, 3)->str, "\xef\xbf\xbd"),
              "stop strings with escapes, all kept: %u", s ? s->count : 0);
        json_free(&j);
    }
    snprintf(p, sizeof p, "%s/results.json", out);
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *r0 = json_at(json_root(&j), 0), *bad = json_get(r0, "invalid_utf8");
        CHECK(bad && json_get(bad, "prompt")->num == 1 && !strcmp(json_get(r0, "prompt")->str, "caf\xef\xbf\xbd au lait"),
              "the Latin-1 prompt is written with U+FFFD and counted");
        CHECK(json_get(json_at(json_root(&j), 1), "invalid_utf8") == NULL, "a clean prompt has no invalid_utf8 field");
        json_free(&j);
    }
    // an interruption after the first result; resume recognises the prompts despite U+FFFD
    CHECK(sh("head -1 %s/results.jsonl > %s/j && mv %s/j %s/results.jsonl", out, out, out, out) == 0, "journal surgery");
    struct { const char *change, *needle; } changed[] = {
        {"--max-tokens 5 --seed 1 --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--max-tokens (max_tokens): 4 in the first run, 5 now"},
        {"--max-tokens 4 --seed 2 --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--seed (sampling.seed): 1 in the first run, 2 now"},
        {"--max-tokens 4 --seed 1 --temperature 0.5 --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--temperature (sampling.temperature): 1 in the first run, 0.5 now"},
        {"--max-tokens 4 --seed 1 --top-p 0.5 --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--top-p (sampling.top_p): 0.95 in the first run, 0.5 now"},
        {"--max-tokens 4 --seed 1 --stop '\\n\\n'", "--stop (stop_strings): "},
        {"--max-tokens 4 --seed 1 --chat --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--chat (chat): false in the first run, true now"},
        {"--max-tokens 4 --seed 1 --exact --stop '\\n\\n' --stop 'x\\ty' --stop '\\u00e9' --stop '\\xff'", "--exact (mode): \"fast\" in the first run, \"exact\" now"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(changed); i++) {
        char args[1024];
        snprintf(args, sizeof args, "generate --model %s --prompts-file %s --out-dir %s --quiet --resume %s", md, pf, out, changed[i].change);
        refused(args, changed[i].needle);
    }
    // the same settings, the model by another path and another batch size: resumed
    snprintf(p, sizeof p, "%s/link", tmp);
    CHECK(symlink(md, p) == 0, "symlink");
    rc = run(&o, "generate --model %s --prompts-file %s --out-dir %s --resume --batch-size 2 %s", p, pf, out, base);
    CHECK(rc == 0, "resume with equal settings: %s", o);
    free(o);
    snprintf(p, sizeof p, "%s/results.json", out);
    CHECK(json_parse_file(&j, p) == 0 && json_root(&j)->count == 3, "resumed results: %s", g3_error());
    json_free(&j);
}

// Invalid UTF-8 in traced prompts (the batch's file): the sidecar stays valid JSON.
static void trace_sidecar(void) {
    char *o;
    int rc = run(&o, "trace --model %s --prompts-file %s/prompts.txt --hooks blocks.0.hook_resid_post --out %s/t.npz", md, tmp, tmp);
    CHECK(rc == 0, "trace: %s", o);
    free(o);
    char p[300];
    snprintf(p, sizeof p, "%s/t.json", tmp);
    valid_json(p, 0);
}

// NaN weights: an error naming the step and the model, exit 1, in every decoding path.
static void nan_weights(void) {
    char args[600], needle[300];
    snprintf(needle, sizeof needle, "non-finite logits (NaN or inf) at step 1: the model in %s", nanmd);
    snprintf(args, sizeof args, "generate --model %s --prompt hello --max-tokens 4", nanmd);
    refused(args, needle);
    snprintf(args, sizeof args, "generate --model %s --ids 2,3 --max-tokens 4", nanmd);
    refused(args, needle);
    snprintf(args, sizeof args, "generate --model %s --prompts-file %s/prompts.txt --out-dir %s/nanres --quiet", nanmd, tmp, tmp);
    refused(args, "step 1: non-finite logits (NaN or inf); the model in");
    char p[300];
    snprintf(p, sizeof p, "%s/nanres/results.jsonl", tmp);
    CHECK(sh("test -s %s", p) != 0, "failed prompts were journaled as results (resume would skip them)");
    char *o;
    CHECK(run(&o, "chat --model %s < %s/prompts.txt", nanmd, tmp) == 1 && strstr(o, "non-finite logits (NaN or inf) at token 1 of the answer"), "chat: %s", o);
    free(o);
    // trace and intervene decode on the engine too: no token 0 from their own argmax
    snprintf(args, sizeof args, "trace --model %s --ids 2,3 --hooks blocks.0.hook_resid_post --generate 2 --out %s/nan.npz", nanmd, tmp);
    refused(args, "sequence 1, generated token 1: non-finite logits (NaN or inf); the model in");
    snprintf(args, sizeof args, "intervene --model %s --ids 2,3 --ablate-mlp 0 --generate 2", nanmd);
    refused(args, "clean run, generated token 1: non-finite logits (NaN or inf); the model in");
    snprintf(args, sizeof args, "analyze --model %s --prompt 'hello world' --quiet --json %s/a.json", nanmd, tmp);
    refused(args, "blocks.1.hook_resid_post holds NaN at position 0");
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) { fprintf(stderr, "no %s: build it first\n", bin); return 1; }
    snprintf(tmp, sizeof tmp, "/tmp/g3cliXXXXXX");
    if (!mkdtemp(tmp)) return 2;
    snprintf(md, sizeof md, "%s/model", tmp);
    snprintf(nanmd, sizeof nanmd, "%s/nanmodel", tmp);
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 262144;
    c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
    CHECK(g3_init_checkpoint(&c, md, G3_BF16, 1, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
    CHECK(sh("cp tests/data/tokenizer/tokenizer.model %s/ && cp -r %s %s && true", md, md, nanmd) == 0, "model copies");
    poison(nanmd, "model.layers.1.mlp.down_proj.weight");

    options();
    stops();
    batch();
    trace_sidecar();
    nan_weights();

    sh("rm -rf %s", tmp);
    return check_done();
}
