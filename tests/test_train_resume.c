// test_train_resume.c: checkpoints lose nothing. Runs `gemma3 train` (env BIN, default
// ./gemma3) on a tiny model and synthetic tokens uninterrupted, then again in another folder
// while killing it with SIGKILL: inside checkpoint writes (G3_TEST_KILL_IN_SAVE, each phase)
// and at random moments, restarting the same command until it finishes. The final weights,
// optimizer state and every logged loss must equal the uninterrupted run's bit for bit. Also:
// a resume with a changed --seq or --matmul is refused, --steps may be raised to continue, and
// a --matmul bf16 run trains. G3_TEST_DEVICE=cuda runs all of it with --device cuda;
// G3_TEST_OPTIM=adamw8bit with 8-bit AdamW (its codes and scales are the state to keep).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "model/config.h"
#include "train/data.h"

static const char *bin;
static char dir[256];

// Runs BIN train with the common arguments plus extra into out (with --matmul matmul unless
// NULL); kill_after_us > 0 sends SIGKILL after that long. Returns the exit status, or -SIGNAL.
static int run_train_mm(const char *out, const char *extra_env, long kill_after_us, const char *steps, const char *seq,
                        const char *matmul) {
    char cfg[300], data[300], log[300];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(data, sizeof data, "%s/tokens.bin", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    fflush(stdout);  // or the child's freopen would print our buffered output again
    pid_t pid = fork();
    if (pid == 0) {
        if (extra_env) putenv((char *)extra_env);
        if (!freopen(log, "a", stderr) || !freopen("/dev/null", "w", stdout)) _exit(127);
        // G3_TEST_DEVICE=cuda: the same checks on the GPU (tests/cuda/gpu_session.sh runs it there)
        const char *dev = getenv("G3_TEST_DEVICE");
        char *argv[40] = {(char *)bin, "train", "--init", cfg, "--data", data, "--out", (char *)out, "--steps", (char *)steps,
                          "--batch", "4", "--seq", (char *)seq, "--save-every", "4", "--eval-every", "10", "--eval-batches", "2",
                          "--warmup", "5", "--lr", "3e-3", "--threads", "1"};
        int n = 26;
        if (matmul) argv[n++] = "--matmul", argv[n++] = (char *)matmul;
        if (dev) argv[n++] = "--device", argv[n++] = (char *)dev;
        const char *optim = getenv("G3_TEST_OPTIM");
        if (optim) argv[n++] = "--optim", argv[n++] = (char *)optim;
        argv[n] = NULL;
        execv(bin, argv);
        _exit(127);
    }
    if (kill_after_us > 0) {
        struct timespec ts = {kill_after_us / 1000000, (kill_after_us % 1000000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

static int run_train(const char *out, const char *extra_env, long kill_after_us, const char *steps, const char *seq) {
    return run_train_mm(out, extra_env, kill_after_us, steps, seq, NULL);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = g3_read_file(a, &na), *y = g3_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

// The metrics lines without tokens_per_s (the only field that may differ).
static char *losses(const char *path) {
    size_t n;
    char *t = g3_read_file(path, &n);
    if (!t) return NULL;
    char *o = t, *w = t;
    while (*o) {
        char *tp = strstr(o, ", \"tokens_per_s\"");
        char *nl = strchr(o, '\n');
        if (!nl) break;
        if (tp && tp < nl) {
            memmove(w, o, (size_t)(tp - o));
            w += tp - o;
            char *after = strpbrk(tp + 2, ",}");  // skip the field's value
            memmove(w, after, (size_t)(nl + 1 - after));
            w += nl + 1 - after;
        } else {
            memmove(w, o, (size_t)(nl + 1 - o));
            w += nl + 1 - o;
        }
        o = nl + 1;
    }
    *w = 0;
    return t;
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK)) { fprintf(stderr, "no binary at %s (set BIN)\n", bin); return 1; }
    snprintf(dir, sizeof dir, "/tmp/g3_resume_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    // A small shape with a small vocabulary, and tokens from a noisy repeating rule.
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 128; c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16;
    c.query_pre_attn_scalar = 16; c.sliding_window = 8; c.sliding[0] = 1; c.sliding[1] = 0;
    char p[300], q[300];
    snprintf(p, sizeof p, "%s/config.json", dir);
    CHECK(g3_config_write(&c, p) == 0, "%s", g3_error());
    enum { N = 20000 };
    static uint32_t ids[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = i % 200 == 0 ? 2 : (x >> 60) == 0 ? (uint32_t)(x >> 33) % 128 : (ids[i - 1] * 5 + 3) % 128;
    }
    snprintf(p, sizeof p, "%s/tokens.bin", dir);
    CHECK(g3_tokfile_write(p, ids, N, 128, 2, 1, NULL, 0) == 0, "%s", g3_error());

    char ref[300], run[300];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    snprintf(run, sizeof run, "%s/run", dir);
    double t0 = g3_now();
    CHECK(run_train(ref, NULL, 0, "40", "16") == 0, "uninterrupted run failed (see %s/log.txt)", dir);
    double dur = g3_now() - t0;

    // Interrupted: one kill in each phase of a checkpoint write, then kills at random moments.
    srand(20240611);
    int kills = 0, done = 0, attempts = 0;
    const char *save_kills[] = {"G3_TEST_KILL_IN_SAVE=1:1", "G3_TEST_KILL_IN_SAVE=2:2", "G3_TEST_KILL_IN_SAVE=1:3",
                                "G3_TEST_KILL_IN_SAVE=3:1"};
    while (!done && attempts < 40) {
        int rc;
        if (attempts < 4) rc = run_train(run, save_kills[attempts], 0, "40", "16");
        else if (attempts < 10) rc = run_train(run, NULL, 1 + (long)(rand() % (int)(dur * 0.6e6 + 1)), "40", "16");
        else rc = run_train(run, NULL, 0, "40", "16");
        attempts++;
        if (rc == -SIGKILL) kills++;
        else if (rc == 0) done = 1;
        else CHECK(0, "run ended with status %d (see %s/log.txt)", rc, dir);
    }
    printf("uninterrupted run %.2f s; interrupted run finished after %d SIGKILLs in %d attempts\n", dur, kills, attempts);
    CHECK(done, "the interrupted run never finished");
    CHECK(kills >= 4, "only %d kills landed", kills);
    const char *files[] = {"model.safetensors", "train_state.safetensors", "config.json", "checkpoint.json"};
    for (size_t i = 0; i < G3_ARRAY_LEN(files); i++) {
        snprintf(p, sizeof p, "%s/%s", ref, files[i]);
        snprintf(q, sizeof q, "%s/%s", run, files[i]);
        CHECK(same_file(p, q), "%s differs after resuming", files[i]);
    }
    snprintf(p, sizeof p, "%s/metrics.jsonl", ref);
    snprintf(q, sizeof q, "%s/metrics.jsonl", run);
    char *lr = losses(p), *lq = losses(q);
    CHECK(lr && lq && !strcmp(lr, lq), "metrics (losses) differ:\n%s\nvs\n%s", lr ? lr : "", lq ? lq : "");
    int lines = 0;
    for (char *s = lr; s && *s; s++) lines += *s == '\n';
    CHECK(lines == 40, "expected 40 metrics lines, got %d", lines);
    free(lr);
    free(lq);

    // A changed essential setting is refused; more steps continue the finished run.
    CHECK(run_train(run, NULL, 0, "40", "32") == 1, "a resume with another --seq must be refused");
    CHECK(run_train(run, NULL, 0, "44", "16") == 0, "raising --steps must continue the run");
    snprintf(p, sizeof p, "%s/checkpoint.json", run);
    char *cj = g3_read_file(p, NULL);
    CHECK(cj && strstr(cj, "\"step\": 44"), "continued run should end at step 44: %s", cj ? cj : "");
    free(cj);
    // The matrix-product precision is part of the run: a bf16 resume of this f32 run is
    // refused; a bf16 run of its own trains; an unknown precision is an error.
    CHECK(run_train_mm(run, NULL, 0, "48", "16", "bf16") == 1, "a resume with another --matmul must be refused");
    snprintf(q, sizeof q, "%s/bf16", dir);
    CHECK(run_train_mm(q, NULL, 0, "8", "16", "bf16") == 0, "a --matmul bf16 run failed (see %s/log.txt)", dir);
    snprintf(p, sizeof p, "%s/checkpoint.json", q);
    cj = g3_read_file(p, NULL);
    CHECK(cj && strstr(cj, "\"step\": 8"), "the bf16 run should end at step 8: %s", cj ? cj : "");
    free(cj);
    snprintf(q, sizeof q, "%s/fp8", dir);
    CHECK(run_train_mm(q, NULL, 0, "8", "16", "fp8") == 1, "--matmul fp8 must be refused");

    if (!check_failures && !getenv("KEEP")) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd)) {}
    }
    return check_done();
}
