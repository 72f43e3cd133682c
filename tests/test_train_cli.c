// test_train_cli.c: `gemma3 train` and `gemma3 init` never lose a user's work and never say
// something false (issue 15), through the built binary (env BIN, default ./gemma3) on tiny
// models:
//  - a model written into a folder replaces the other layout (no stale index or shards hiding
//    it), and a folder holding both loads model.safetensors first, as transformers does;
//  - two runs on one --out: the second is refused, naming the first's pid;
//  - init over a model, and train over its base model's folder, are refused without --force;
//  - temporaries of killed writes (<file>.tmp.<pid>) are removed once their writer is gone;
//  - a NaN loss or weights the update made non-finite end with "training diverged at step N",
//    exit 1, and no diverged checkpoint; --lr, --clip, --std are checked at the edge;
//  - the tokenizer goes into the run folder, its cache goes under $XDG_CACHE_HOME, never
//    beside it; Ctrl-C saves a checkpoint and exits 130; a failed run leaves no folder; a
//    binary --data file is refused with its name and the offending byte's offset.
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "train/data.h"
#include "train/train.h"

static const char *bin;
static char dir[256], cfg[300], toks[300], tokjs[300], textp[300], log_path[300];

// Runs `BIN args` with stdout and stderr into log_path; returns the exit status (128 + signal
// if killed). A run that should stop at once but does not (a regression) is killed after
// limit_s seconds.
static int limit_s = 120;
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
    char args[3000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return sh("timeout -s KILL %d %s %s > %s 2>&1", limit_s, bin, args, log_path);
}

// The last run's output (static buffer).
static const char *out_text(void) {
    static char buf[16384];
    FILE *f = fopen(log_path, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    return buf;
}

static int exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int exists(const char *fmt, ...) {
    char p[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p, sizeof p, fmt, ap);
    va_end(ap);
    return g3_file_exists(p);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs("partial", f); fclose(f); }
}

// A pid that belonged to a process that has exited (and been reaped).
static pid_t dead_pid(void) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    waitpid(p, NULL, 0);
    return p;
}

// The shard files (model-*-of-*.safetensors) in d.
static int shards(const char *d) {
    char cmd[600], line[64] = "";
    snprintf(cmd, sizeof cmd, "ls %s | grep -c '^model-.*-of-.*\\.safetensors$'", d);
    FILE *f = popen(cmd, "r");
    if (f && !fgets(line, sizeof line, f)) line[0] = 0;
    if (f) pclose(f);
    return atoi(line);
}

static int count_lines(const char *path) {
    char *t = g3_read_file(path, NULL);
    int n = 0;
    for (char *s = t; s && *s; s++) n += *s == '\n';
    free(t);
    return n;
}

// The step checkpoint.json of run folder d records, or -1.
static long ckpt_step(const char *d) {
    char p[600];
    snprintf(p, sizeof p, "%s/checkpoint.json", d);
    char *t = g3_read_file(p, NULL);
    const char *s = t ? strstr(t, "\"step\": ") : NULL;
    long v = s ? atol(s + 8) : -1;
    free(t);
    return v;
}

// 1 if every master weight in d's train_state.safetensors is finite.
static int state_finite(const char *d) {
    char p[600];
    snprintf(p, sizeof p, "%s/train_state.safetensors", d);
    STSet st;
    if (st_open(&st, p)) return 0;
    int ok = 1, masters = 0;
    for (int i = 0; i < st.ntensors; i++) {
        const STTensor *t = &st.tensors[i];
        if (strncmp(t->name, "master.", 7) || t->dtype != G3_F32) continue;
        masters++;
        for (int64_t k = 0; k < st_numel(t); k++) {  // the data need not be 4-byte aligned
            float x;
            memcpy(&x, (const char *)t->data + 4 * k, 4);
            ok &= isfinite(x) != 0;
        }
    }
    st_close(&st);
    return ok && masters > 0;
}

static const char *COMMON = "--batch 2 --seq 16 --warmup 2 --eval-batches 1 --threads 1";

// Overwrites, stale layouts, the loader's order and temporaries of killed writes.
static void test_layouts(void) {
    char m[400], s[400], both[400];
    snprintf(m, sizeof m, "%s/m", dir);
    CHECK(run("init --shape %s --out %s --dtype f32", cfg, m) == 0, "init: %s", out_text());
    CHECK(run("init --shape %s --out %s --dtype f32 --seed 3", cfg, m) == 1 && strstr(out_text(), "--force"),
          "init over a model must be refused, naming --force: %s", out_text());
    CHECK(run("init --shape %s --out %s --dtype f32 --seed 3 --force", cfg, m) == 0, "init --force: %s", out_text());
    CHECK(run("train --model %s --out %s --data %s --steps 1 %s", m, m, toks, COMMON) == 1 && strstr(out_text(), "--force") &&
              strstr(out_text(), "base model"),
          "train --out = the --model folder must be refused: %s", out_text());
    CHECK(!exists("%s/train_state.safetensors", m), "the refused run wrote into the base model's folder");

    // A sharded model (the fixture's shape, f32: 3 MB in 1 MiB shards), then fine-tuned in place.
    snprintf(s, sizeof s, "%s/sharded", dir);
    CHECK(run("init --shape tests/fixtures/gemma3-tiny-f32/config.json --dtype f32 --shard-mb 1 --out %s", s) == 0, "init: %s", out_text());
    CHECK(exists("%s/model.safetensors.index.json", s) && shards(s) > 1, "init did not shard");
    pid_t dead = dead_pid();
    char p[600], live[600];
    snprintf(p, sizeof p, "%s/model.safetensors.tmp.%d", s, (int)dead);
    touch(p);
    snprintf(live, sizeof live, "%s/config.json.tmp.%d", s, (int)getpid());  // a writer still alive: kept
    touch(live);
    CHECK(run("train --model %s --out %s --force --data %s --steps 2 --save-every 1 %s", s, s, toks, COMMON) == 0, "train: %s", out_text());
    CHECK(exists("%s/model.safetensors", s), "train wrote no model.safetensors");
    CHECK(!exists("%s/model.safetensors.index.json", s) && shards(s) == 0, "the old index or %d shards were left beside the new model.safetensors",
          shards(s));
    CHECK(!g3_file_exists(p), "the killed writer's temporary %s was not removed", p);
    CHECK(g3_file_exists(live), "a live writer's temporary %s was removed", live);
    unlink(live);
    // The trained weights are what loads (the same init untrained is the reference).
    char ref[400];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    CHECK(run("init --shape tests/fixtures/gemma3-tiny-f32/config.json --dtype f32 --out %s", ref) == 0, "init: %s", out_text());
    STSet sa, sb;
    if (st_open(&sa, s) == 0 && st_open(&sb, ref) == 0) {
        CHECK(sa.nfiles == 1 && strstr(sa.paths[0], "/model.safetensors"), "loaded %d files", sa.nfiles);
        const STTensor *ta = st_find(&sa, "model.embed_tokens.weight"), *tb = st_find(&sb, "model.embed_tokens.weight");
        CHECK(ta && tb && ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes), "the trained weights do not load");
        st_close(&sa);
        st_close(&sb);
    } else CHECK(0, "%s", g3_error());

    // Sharding over a single file removes it.
    CHECK(run("init --shape tests/fixtures/gemma3-tiny-f32/config.json --dtype f32 --shard-mb 1 --out %s --force", s) == 0, "init: %s",
          out_text());
    CHECK(exists("%s/model.safetensors.index.json", s) && !exists("%s/model.safetensors", s),
          "a sharded write left the old model.safetensors beside the index");

    // A folder holding both layouts loads model.safetensors (transformers' order).
    snprintf(both, sizeof both, "%s/both", dir);
    CHECK(sh("cp -r %s %s && cp %s/model.safetensors %s/", s, both, ref, both) == 0, "copy");
    STSet st;
    if (st_open(&st, both) == 0) {
        CHECK(st.nfiles == 1 && strstr(st.paths[0], "/model.safetensors"), "a folder with both layouts opened %s (%d files)", st.paths[0],
              st.nfiles);
        st_close(&st);
    } else CHECK(0, "%s", g3_error());

    // init removes temporaries a killed init left
    snprintf(p, sizeof p, "%s/model-00002-of-00004.safetensors.tmp.%d", s, (int)dead);
    touch(p);
    CHECK(run("init --shape tests/fixtures/gemma3-tiny-f32/config.json --dtype f32 --shard-mb 1 --out %s --force", s) == 0, "init: %s",
          out_text());
    CHECK(!g3_file_exists(p), "init left %s", p);
}

// Divergence and the numbers checked at the edge.
static void test_divergence(void) {
    const struct { const char *args, *needle; } bad[] = {
        {"train --init %s --data %s --out %s/x --seq 16 --lr inf", "--lr"},
        {"train --init %s --data %s --out %s/x --seq 16 --lr nan", "--lr"},
        {"train --init %s --data %s --out %s/x --seq 16 --clip nan", "--clip"},
        {"train --init %s --data %s --out %s/x --seq 16 --std -5", "--std"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        CHECK(run(bad[i].args, cfg, toks, dir) == 1 && strstr(out_text(), bad[i].needle), "'%s' must be refused naming %s: %s", bad[i].args,
              bad[i].needle, out_text());
        CHECK(!exists("%s/x", dir), "a refused run made its folder");
        sh("rm -rf %s/x", dir);
    }
    CHECK(run("init --shape %s --out %s/y --std nan", cfg, dir) == 1 && strstr(out_text(), "--std"), "init --std nan: %s", out_text());
    CHECK(run("init --shape %s --out %s/y --std -1", cfg, dir) == 1 && strstr(out_text(), "--std"), "init --std -1: %s", out_text());

    // NaN weights: the very first loss is NaN. The run folder it made goes away with it.
    G3Config c;
    G3TrainModel tm;
    char nanm[400], r[400];
    snprintf(nanm, sizeof nanm, "%s/nanmodel", dir);
    CHECK(g3_config_load(&c, cfg) == 0 && g3_train_model_new(&tm, &c) == 0, "%s", g3_error());
    g3_train_model_init_random(&tm, 1, 0.02f);
    tm.params[tm.n / 2] = NAN;
    CHECK(g3_train_model_save(&tm, nanm, G3_F32) == 0, "%s", g3_error());
    g3_train_model_free(&tm);
    snprintf(r, sizeof r, "%s/nanrun", dir);
    int rc = run("train --model %s --out %s --data %s --steps 3 --save-every 1 %s", nanm, r, toks, COMMON);
    CHECK(rc == 1 && strstr(out_text(), "diverged at step 1") && strstr(out_text(), "loss nan") && !strstr(out_text(), "unknown error"),
          "a NaN loss: status %d: %s", rc, out_text());
    CHECK(!exists("%s", r), "a run that failed before any checkpoint left its folder %s", r);

    // A huge learning rate: step 1's loss is finite, its update makes the weights huge, step 2's
    // loss is not. Step 1 is saved (--save-every 1), the diverged state never is.
    snprintf(r, sizeof r, "%s/lrrun", dir);
    rc = run("train --init %s --out %s --data %s --steps 5 --save-every 1 --lr 1e30 %s", cfg, r, toks, COMMON);
    CHECK(rc == 1 && strstr(out_text(), "diverged at step") && !strstr(out_text(), "unknown error"), "--lr 1e30: status %d: %s", rc,
          out_text());
    long saved = ckpt_step(r);
    CHECK(saved >= 0 && saved < 5 && strstr(out_text(), "intact"), "the last good checkpoint (step %ld) should remain: %s", saved, out_text());
    CHECK(state_finite(r), "the committed state holds non-finite weights");
    rc = run("train --init %s --out %s --data %s --steps 5 --save-every 1 --lr 1e30 %s", cfg, r, toks, COMMON);
    CHECK(rc == 1 && strstr(out_text(), "diverged") && ckpt_step(r) == saved && state_finite(r), "the resumed run: status %d: %s", rc,
          out_text());
}

// Two runs on one folder, Ctrl-C, and the resume after it.
static void test_lock_and_interrupt(void) {
    char r[400], alog[400];
    snprintf(r, sizeof r, "%s/long", dir);
    snprintf(alog, sizeof alog, "%s/long.log", dir);
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        if (!freopen(alog, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(127);
        execl(bin, bin, "train", "--init", cfg, "--data", toks, "--out", r, "--steps", "100000000", "--save-every", "0", "--eval-every", "0",
              "--batch", "2", "--seq", "16", "--threads", "1", (char *)NULL);
        _exit(127);
    }
    char metrics[500];
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", r);
    for (int i = 0; i < 600 && count_lines(metrics) < 3; i++) usleep(20000);  // until it trains
    CHECK(count_lines(metrics) >= 3, "the long run did not start");
    limit_s = 20;  // without a lock it would train on for ever
    int rc = run("train --init %s --data %s --out %s --steps 100000000 --save-every 0 --eval-every 0 --batch 2 --seq 16 --threads 1", cfg,
                 toks, r);
    limit_s = 120;
    char pid[32];
    snprintf(pid, sizeof pid, "pid %d", (int)a);
    CHECK(rc == 1 && strstr(out_text(), pid), "a second run on %s: status %d, want 1 naming %s: %s", r, rc, pid, out_text());

    kill(a, SIGINT);
    int st;
    waitpid(a, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 130, "Ctrl-C: status %d, want exit 130", st);
    char *t = g3_read_file(alog, NULL);
    CHECK(t && strstr(t, "stopped by Ctrl-C") && strstr(t, "checkpoint"), "Ctrl-C must say it saved: %s", t ? t : "");
    free(t);
    long saved = ckpt_step(r);
    int lines = count_lines(metrics);
    CHECK(saved > 0 && saved == lines, "Ctrl-C saved step %ld; %d steps were logged", saved, lines);
    CHECK(!exists("%s/train.lock", r), "the lock file outlived its run");
    rc = run("train --init %s --data %s --out %s --steps %ld --save-every 0 --eval-every 0 --batch 2 --seq 16 --threads 1", cfg, toks, r,
             saved + 2);
    CHECK(rc == 0 && strstr(out_text(), "resuming") && ckpt_step(r) == saved + 2, "resume after Ctrl-C: status %d: %s", rc, out_text());
}

// The tokenizer travels with the run; its cache never lands beside it; failures leave nothing.
static void test_tokenizer_and_data(void) {
    char r[400], cache_dir[400];
    snprintf(r, sizeof r, "%s/textrun", dir);
    int rc = run("train --init %s --tokenizer %s --data %s --out %s --steps 2 %s", cfg, tokjs, textp, r, COMMON);
    CHECK(rc == 0, "text run: %s", out_text());
    char a[500];
    snprintf(a, sizeof a, "%s/tokenizer.json", r);
    size_t na = 0, nb = 0;
    char *x = g3_read_file(a, &na), *y = g3_read_file(tokjs, &nb);
    CHECK(x && y && na == nb && !memcmp(x, y, na), "the run folder should hold the tokenizer it used");
    free(x);
    free(y);
    CHECK(!exists("%s.g3tok", tokjs) && !exists("%s/tokenizer.json.g3tok", r), "a tokenizer cache was written beside the tokenizer");
    snprintf(cache_dir, sizeof cache_dir, "%s/xdg/gemma3", dir);
    CHECK(sh("ls %s/*.g3tok > /dev/null 2>&1", cache_dir) == 0, "no tokenizer cache under $XDG_CACHE_HOME/gemma3");
    rc = run("generate --model %s --prompt 'once upon' --max-tokens 3 --temperature 0 --threads 1", r);
    CHECK(rc == 0, "generate on the run folder without --tokenizer: %s", out_text());

    // A cache folder that cannot be made: no cache, no error.
    rc = sh("XDG_CACHE_HOME=/proc/gemma3-nowhere %s tokenize --tokenizer %s --text 'once upon' > %s 2>&1", bin, tokjs, log_path);
    CHECK(rc == 0, "tokenize with an unwritable cache folder: %s", out_text());

    // Binary data: refused with the file and the offset; nothing left behind.
    char binp[400], nested[400];
    snprintf(binp, sizeof binp, "%s/binary.txt", dir);
    CHECK(g3_write_file_atomic(binp, "once upon\0a time", 16) == 0, "%s", g3_error());
    snprintf(nested, sizeof nested, "%s/new/run", dir);
    rc = run("train --init %s --tokenizer %s --data %s --out %s --steps 2 %s", cfg, tokjs, binp, nested, COMMON);
    CHECK(rc == 1 && strstr(out_text(), "binary.txt") && strstr(out_text(), "byte 9"), "binary data: status %d: %s", rc, out_text());
    CHECK(!exists("%s/new", dir), "a failed run left the folders it made (%s/new)", dir);
    CHECK(g3_write_file_atomic(binp, "caf\xc3\xa9 caf\xe9 x", 12) == 0, "%s", g3_error());
    rc = run("train --init %s --tokenizer %s --data %s --out %s --steps 2 %s", cfg, tokjs, binp, nested, COMMON);
    CHECK(rc == 1 && strstr(out_text(), "byte 9") && strstr(out_text(), "UTF-8"), "invalid UTF-8: status %d: %s", rc, out_text());
    // Too little data: another failure before any checkpoint.
    rc = run("train --init %s --data %s --out %s --steps 2 --batch 2 --seq 100000", cfg, toks, nested);
    CHECK(rc == 1 && !exists("%s/new", dir), "a failed run (status %d) left %s/new: %s", rc, dir, out_text());
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK)) { fprintf(stderr, "no binary at %s (set BIN)\n", bin); return 1; }
    snprintf(dir, sizeof dir, "/tmp/g3_traincli_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    snprintf(log_path, sizeof log_path, "%s/log.txt", dir);
    char xdg[400];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", xdg, 1);  // the tokenizer cache goes here, not into ~/.cache

    // A small shape with the tiny tokenizer's vocabulary (296 pieces), tokens of a repeating
    // rule, and a little text.
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 296; c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16;
    c.query_pre_attn_scalar = 16; c.sliding_window = 8; c.sliding[0] = 1; c.sliding[1] = 0;
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    CHECK(g3_config_write(&c, cfg) == 0, "%s", g3_error());
    enum { N = 4000 };
    static uint32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = i % 100 == 0 ? 2 : (uint32_t)(i * 7 % 290) + 3;
    snprintf(toks, sizeof toks, "%s/tokens.bin", dir);
    CHECK(g3_tokfile_write(toks, ids, N, 296, 2, 1, NULL, 0) == 0, "%s", g3_error());
    size_t n;
    char *tj = g3_read_file("fuzz/corpus/fuzz_tok_json/tiny.json", &n);
    snprintf(tokjs, sizeof tokjs, "%s/tiny.json", dir);
    CHECK(tj && g3_write_file_atomic(tokjs, tj, n) == 0, "tiny tokenizer: %s", g3_error());
    free(tj);
    const char *words[] = {"once", "upon", "a", "time", "there", "was", "little", "cat", "who", "liked", "to", "play", "in", "the", "sun"};
    char *text = malloc(200000);
    size_t at = 0;
    for (int d = 0; d < 40; d++) {
        for (int w = 0; w < 80; w++) at += (size_t)sprintf(text + at, "%s ", words[(d * 7 + w * w) % 15]);
        at += (size_t)sprintf(text + at, "\n<|endoftext|>\n");
    }
    snprintf(textp, sizeof textp, "%s/text.txt", dir);
    CHECK(g3_write_file_atomic(textp, text, at) == 0, "%s", g3_error());
    free(text);

    double t0 = g3_now();
    test_layouts();
    test_divergence();
    test_lock_and_interrupt();
    test_tokenizer_and_data();
    printf("train/init CLI checks in %.1f s\n", g3_now() - t0);

    if (!check_failures && !getenv("KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) {}
    }
    return check_done();
}
