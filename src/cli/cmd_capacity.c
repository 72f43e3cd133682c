// cmd_capacity.c: `gemma3 capacity`: the memorization-capacity experiment (Morris et al.
// 2025) on Gemma 3 shapes (experiments/capacity.h). One cell (--layers L --width D
// --sequences N) trains to its convergence criterion and writes DIR/results.json; --grid
// runs layers x widths x dataset sizes, each cell a child process of this program (the
// single-cell form with --threads 1: tiny models run best one per core), skipping cells
// whose results are already there, so a grid killed halfway continues where it stopped;
// then the grid's results.json with the capacity fit, and with --html an offline report.
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/backend.h"
#include "base/base.h"
#include "base/json.h"
#include "cli.h"
#include "experiments/capacity.h"
#include "experiments/capacity_grid.h"

#define CMD "capacity"

typedef struct {
    const char *layers, *width, *sequences, *multiples, *out, *device, *precision, *save_model, *schedule, *workers;
    long vocab, seq_len, seed, heldout_seed, heldout, batch, max_steps, eval_steps, warmup, threads, jobs, lr_drops;
    double lr, wd, min_gain;
    int grid, html, quiet, collect;
} Args;

static void progress(void *user, const G3CapSpec *s, const G3CapResult *r, const G3CapPoint *p) {
    const int *quiet = user;
    if (*quiet) return;
    const double total = r->bits_per_sequence * (double)s->nseq;
    fprintf(stderr, "capacity L%d D%d N%lld %s: step %lld epoch %.0f  train %.4f  held-out %.4f nats/token  memorized %.0f bits (%.1f%% of %.0f; %.3f bits/param)  lr %.2g\n",
            s->layers, s->width, (long long)s->nseq, s->bf16 ? "bf16" : "f32", (long long)p->step, p->epoch, p->train_loss,
            p->heldout_loss, p->memorized_bits, 100 * p->memorized_bits / total, total, p->memorized_bits / (double)r->params, p->lr);
}

// Parses one integer option value that must be a single number in cell mode.
static int one_int(const char *opt, const char *v, long lo, long hi, long *out) {
    if (!v) return g3_errorf("%s is required (see --help)", opt);
    return cli_int(opt, v, lo, hi, out);
}

static int write_cell(const char *dir, const G3CapSpec *s, const G3CapResult *r) {
    char path[4200], *buf = NULL;
    size_t len = 0;
    if (g3_mkdir_p(dir) || g3_path_join(path, sizeof path, dir, "results.json")) return -1;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return g3_errorf("out of memory");
    fputs("{\"cells\": [", f);
    g3_cap_cell_json(f, s, r);
    fputs("]}\n", f);
    fclose(f);
    int rc = g3_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static int run_cell(const Args *a, G3CapSpec *s) {
    long v;
    if (one_int("--layers", a->layers, 1, G3_MAX_LAYERS, &v)) return cli_fail(CMD, "%s", g3_error());
    s->layers = (int)v;
    if (one_int("--width", a->width, 8, 65536, &v)) return cli_fail(CMD, "%s", g3_error());
    s->width = (int)v;
    if (one_int("--sequences", a->sequences, 1, 1L << 26, &v)) return cli_fail(CMD, "%s", g3_error());
    s->nseq = v;
    s->save_dir = a->save_model;
    if (g3_cap_spec_check(s)) return cli_fail(CMD, "%s", g3_error());
    if (!a->quiet)
        fprintf(stderr, "capacity: %d layers x width %d (%lld parameters), %lld sequences of %d tokens over %d ids (%.0f bits each, %.0f in all), %s\n",
                s->layers, s->width, (long long)g3_cap_params(s->layers, s->width, s->vocab, s->seq_len), (long long)s->nseq, s->seq_len,
                s->vocab, s->seq_len * log2(s->vocab), s->seq_len * log2(s->vocab) * (double)s->nseq,
                s->bf16 ? "bf16 mixed precision (bf16 operands in the matrix products; f32 master weights, sums, optimizer state)" : "f32");
    G3CapResult r;
    int quiet = a->quiet;
    if (g3_cap_run(s, &r, progress, &quiet)) return cli_fail(CMD, "%s", g3_error());
    int rc = write_cell(a->out, s, &r);
    if (!rc)
        printf("params %lld  sequences %lld  memorized %.1f bits (%.1f%%)  %.3f bits/param  held-out %.4f nats/token  MIA F1 %.3f  %s (%s), %lld steps, %.1f s\n",
               (long long)r.params, (long long)s->nseq, r.memorized_bits, 100 * r.memorized_fraction, r.bits_per_param, r.heldout_loss,
               r.mia_f1, r.converged ? "converged" : "NOT converged", r.stop_reason, (long long)r.steps, r.seconds);
    g3_cap_result_free(&r);
    return rc ? cli_fail(CMD, "%s", g3_error()) : 0;
}

// ---- the grid ----

static int parse_list_int(const char *opt, const char *s, long lo, long hi, long *out, int cap) {
    int n = 0;
    char buf[1024];
    if (!s) return g3_errorf("%s is required (see --help)", opt);
    if (strlen(s) >= sizeof buf) return g3_errorf("%s: list too long", opt);
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == cap) return g3_errorf("%s: at most %d values", opt, cap);
        if (cli_int(opt, t, lo, hi, &out[n])) return -1;
        n++;
    }
    if (!n) return g3_errorf("%s: no values", opt);
    return n;
}

static int parse_list_float(const char *opt, const char *s, double lo, double hi, double *out, int cap) {
    int n = 0;
    char buf[1024];
    if (strlen(s) >= sizeof buf) return g3_errorf("%s: list too long", opt);
    strcpy(buf, s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == cap) return g3_errorf("%s: at most %d values", opt, cap);
        if (cli_float_range(opt, t, lo, hi, &out[n])) return -1;
        n++;
    }
    if (!n) return g3_errorf("%s: no values", opt);
    return n;
}

enum { MAXL = 16, MAXCELLS = 1024 };

typedef struct {
    int layers, width;
    long nseq;
    char dir[4200];
    pid_t pid;
} Job;

// The command line of one cell: this program's single-cell form.
static void cell_argv(const Args *a, const G3CapSpec *s, const Job *j, char store[][64], char **argv) {
    int n = 0, k = 0;
#define A(str) (argv[n++] = (char *)(str))
#define F(...) (snprintf(store[k], 64, __VA_ARGS__), argv[n++] = store[k++])
    A("gemma3"); A("capacity");
    A("--layers"); F("%d", j->layers);
    A("--width"); F("%d", j->width);
    A("--sequences"); F("%ld", j->nseq);
    A("--vocab"); F("%d", s->vocab);
    A("--seq-len"); F("%d", s->seq_len);
    A("--seed"); F("%llu", (unsigned long long)s->seed);
    A("--heldout-seed"); F("%llu", (unsigned long long)s->heldout_seed);
    A("--heldout"); F("%lld", (long long)s->nheld);
    A("--precision"); A(s->bf16 ? "bf16" : "f32");
    A("--batch"); F("%d", s->batch);
    A("--lr"); F("%.17g", s->lr);
    A("--wd"); F("%.17g", s->wd);
    A("--warmup"); F("%lld", (long long)s->warmup);
    A("--max-steps"); F("%lld", (long long)s->max_steps);
    A("--eval-steps"); F("%lld", (long long)s->eval_steps);
    A("--min-gain"); F("%.17g", s->min_gain);
    A("--lr-drops"); F("%d", s->lr_drops);
    A("--schedule"); A(s->cosine ? "cosine" : "plateau");
    A("--threads"); F("%ld", a->threads ? a->threads : 1);
    if (a->quiet) A("--quiet");
    A("--out"); A(j->dir);
    argv[n] = NULL;
#undef A
#undef F
}

// 1 if dir holds this cell's results, 0 if not (yet); -1 (message set) if it holds a cell run
// with other settings: mixing them into one grid would make its fit meaningless.
static int cell_done(const char *dir, const G3CapSpec *s) {
    char p[4300];
    snprintf(p, sizeof p, "%s/results.json", dir);
    Json j;
    if (!g3_file_exists(p) || json_parse_file(&j, p)) return 0;
    const JsonNode *cs = json_get(json_root(&j), "cells"), *c = cs && cs->type == JSON_ARRAY && cs->count == 1 ? json_at(cs, 0) : NULL;
    int rc = c != NULL;
    const struct { const char *key; double want; } keys[] = {
        {"vocab", s->vocab}, {"seq_len", s->seq_len}, {"heldout_sequences", (double)s->nheld}, {"batch", s->batch}, {"lr", s->lr},
        {"wd", s->wd}, {"warmup", (double)s->warmup}, {"max_steps", (double)s->max_steps}, {"min_gain", s->min_gain},
        {"lr_drops", s->lr_drops}, {"heldout_seed", (double)s->heldout_seed}, {"cosine", s->cosine}};
    for (size_t i = 0; c && i < G3_ARRAY_LEN(keys); i++) {
        const JsonNode *n = json_get(c, keys[i].key);
        if (!n && !strcmp(keys[i].key, "cosine") && keys[i].want == 0) continue;  // cells from before --schedule
        if (!json_is_number(n) || fabs(n->num - keys[i].want) > 1e-9 * fabs(keys[i].want)) {
            rc = g3_errorf("%s was run with %s %s, this grid asks for %.9g: finish it with its own settings, or use another --out", p,
                           keys[i].key, n && n->str ? n->str : "(none)", keys[i].want);
            break;
        }
    }
    json_free(&j);
    return rc;
}

static double cost(const Job *j, const G3CapSpec *s) {
    return (double)g3_cap_params(j->layers, j->width, s->vocab, s->seq_len) * (double)j->nseq;
}

// Cells as threads of this process (--workers threads; the default with --device cuda): each
// thread trains one cell at a time with a backend of its own (on a GPU: its own stream and
// cuBLAS handle, so the small kernels of several cells run side by side, where separate
// processes would take turns on the device), one CPU thread each.
typedef struct {
    const Args *a;
    const G3CapSpec *s;
    Job *jobs;
    int nj, next, finished, todo, failed;
    double t0;
    pthread_mutex_t mu;
} Pool;

static void *pool_worker(void *arg) {
    Pool *pl = arg;
    omp_set_num_threads(1);  // this thread's host work; the cells run side by side instead
    for (;;) {
        pthread_mutex_lock(&pl->mu);
        Job *j = NULL;
        while (pl->next < pl->nj && !j) {
            Job *c = &pl->jobs[pl->next++];
            if (!cell_done(c->dir, pl->s)) j = c;
        }
        pthread_mutex_unlock(&pl->mu);
        if (!j) return NULL;
        G3CapSpec cs = *pl->s;
        cs.layers = j->layers;
        cs.width = j->width;
        cs.nseq = j->nseq;
        G3CapResult r;
        int quiet = pl->a->quiet;
        int ok = g3_cap_run(&cs, &r, progress, &quiet) == 0;
        if (ok) {
            ok = write_cell(j->dir, &cs, &r) == 0;
            g3_cap_result_free(&r);
        }
        char msg[1100];
        snprintf(msg, sizeof msg, "%s", ok ? "" : g3_error());
        pthread_mutex_lock(&pl->mu);
        pl->finished++;
        pl->failed += !ok;
        fprintf(stderr, "capacity: cell L%d D%d N%ld %s%s (%d of %d this run, %.0f s elapsed)\n", j->layers, j->width, j->nseq,
                ok ? "done" : "FAILED: ", msg, pl->finished, pl->todo, g3_now() - pl->t0);
        pthread_mutex_unlock(&pl->mu);
    }
}

static int run_threads(const Args *a, const G3CapSpec *s, Job *jobs, int nj, int todo) {
    Pool pl = {.a = a, .s = s, .jobs = jobs, .nj = nj, .todo = todo, .t0 = g3_now()};
    pthread_mutex_init(&pl.mu, NULL);
    const int nt = (int)G3_MIN(a->jobs, (long)G3_MAX(todo, 1));
    // OpenMP's threads rather than threads of our own: they stay in its pool, so the per-thread
    // scratch the kernels keep (sgemm panels, the CPU backend's workspace) is never orphaned by
    // a thread exit; a cell's own parallel regions are nested inside and run on its one thread
#pragma omp parallel num_threads(nt)
    pool_worker(&pl);
    pthread_mutex_destroy(&pl.mu);
    return pl.failed;
}

static int run_grid(const Args *a, G3CapSpec *s) {
    long L[MAXL], D[MAXL], Nl[64];
    double M[64];
    int nl = parse_list_int("--layers", a->layers, 1, G3_MAX_LAYERS, L, MAXL);
    int nd = nl < 0 ? -1 : parse_list_int("--width", a->width, 8, 65536, D, MAXL);
    if (nl < 0 || nd < 0) return cli_fail(CMD, "%s", g3_error());
    if (!a->sequences == !a->multiples) return cli_fail(CMD, "--grid needs exactly one of --multiples (of each model's expected capacity) and --sequences (a list)");
    int nm = a->multiples ? parse_list_float("--multiples", a->multiples, 1e-3, 1e3, M, 64) : parse_list_int("--sequences", a->sequences, 1, 1L << 26, Nl, 64);
    if (nm < 0) return cli_fail(CMD, "%s", g3_error());
    const double bps = s->seq_len * log2((double)s->vocab);
    static Job jobs[MAXCELLS];
    int nj = 0;
    for (int i = 0; i < nl; i++)
        for (int k = 0; k < nd; k++) {
            s->layers = (int)L[i];
            s->width = (int)D[k];
            if (g3_cap_spec_check(s)) return cli_fail(CMD, "%s", g3_error());
            const int64_t P = g3_cap_params(s->layers, s->width, s->vocab, s->seq_len);
            for (int q = 0; q < nm; q++) {
                long n = a->multiples ? G3_MAX(1L, lround(M[q] * G3_CAP_BITS_PER_PARAM * (double)P / bps)) : Nl[q];
                if (nj == MAXCELLS) return cli_fail(CMD, "at most %d cells", MAXCELLS);
                Job *j = &jobs[nj++];
                *j = (Job){.layers = s->layers, .width = s->width, .nseq = n};
                snprintf(j->dir, sizeof j->dir, "%s/cells/L%d-D%d-N%ld-%s-s%llu", a->out, j->layers, j->width, n, s->bf16 ? "bf16" : "f32",
                         (unsigned long long)s->seed);
            }
        }
    // the costliest cells first (parameters x sequences), so the last to finish are short ones
    for (int i = 1; i < nj; i++)
        for (int k = i; k > 0 && cost(&jobs[k], s) > cost(&jobs[k - 1], s); k--) {
            Job t = jobs[k];
            jobs[k] = jobs[k - 1];
            jobs[k - 1] = t;
        }
    if (g3_mkdir_p(a->out)) return cli_fail(CMD, "%s", g3_error());
    int todo = 0;
    for (int i = 0; i < nj; i++) {
        int d = cell_done(jobs[i].dir, s);
        if (d < 0) return cli_fail(CMD, "%s", g3_error());
        todo += !d;
    }
    const int threads = !strcmp(a->workers, "threads") || (!strcmp(a->workers, "auto") && !strcmp(s->device, "cuda"));
    fprintf(stderr, "capacity: grid of %d cells in %s (%d done already, %d to run, %ld at a time, as %s)\n", nj, a->out, nj - todo, todo,
            a->jobs, threads ? "threads of this process" : "child processes");
    // --collect: gather the finished cells only (a grid stopped halfway, looked at as it stands)
    int running = 0, failed = threads && !a->collect ? run_threads(a, s, jobs, nj, todo) : 0, finished = 0;
    int next = threads || a->collect ? nj : 0;
    double t0 = g3_now();
    while (next < nj || running) {
        while (running < a->jobs && next < nj) {
            Job *j = &jobs[next++];
            if (cell_done(j->dir, s) > 0) continue;
            char store[32][64], *argv[64];
            cell_argv(a, s, j, store, argv);
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0) return cli_fail(CMD, "fork: %s", strerror(errno));
            if (pid == 0) {
                execv("/proc/self/exe", argv);
                fprintf(stderr, "gemma3 capacity: cannot run /proc/self/exe: %s\n", strerror(errno));
                _exit(127);
            }
            j->pid = pid;
            running++;
        }
        if (!running) break;
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) {
            if (errno == EINTR) continue;
            return cli_fail(CMD, "wait: %s", strerror(errno));
        }
        for (int i = 0; i < nj; i++)
            if (jobs[i].pid == pid) {
                running--;
                finished++;
                int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
                failed += !ok;
                fprintf(stderr, "capacity: cell L%d D%d N%ld %s (%d of %d this run, %.0f s elapsed)\n", jobs[i].layers, jobs[i].width, jobs[i].nseq,
                        ok ? "done" : "FAILED", finished, todo, g3_now() - t0);
                jobs[i].pid = 0;
            }
    }
    // the grid's results: every finished cell, and the fit
    const char *dirs[MAXCELLS];
    int nd2 = 0;
    for (int i = 0; i < nj; i++)
        if (cell_done(jobs[i].dir, s) > 0) dirs[nd2++] = jobs[i].dir;
    if (g3_cap_grid_collect(a->out, dirs, nd2, a->html)) return cli_fail(CMD, "%s", g3_error());
    fprintf(stderr, "capacity: %s/results.json (%d cells)%s%s\n", a->out, nd2, a->html ? ", " : "", a->html ? "report.html" : "");
    if (failed) return cli_fail(CMD, "%d cells failed (their messages are above); run the same command again to retry them", failed);
    return 0;
}

int cmd_capacity(int argc, char **argv) {
    G3CapSpec s;
    g3_cap_spec_defaults(&s);
    Args a = {.device = "cpu", .precision = "f32", .schedule = "plateau", .workers = "auto", .vocab = s.vocab, .seq_len = s.seq_len, .seed = (long)s.seed,
              .heldout_seed = (long)s.heldout_seed, .heldout = s.nheld, .batch = s.batch, .max_steps = s.max_steps,
              .eval_steps = s.eval_steps, .warmup = s.warmup, .lr = s.lr, .wd = s.wd, .min_gain = s.min_gain, .jobs = 0, .lr_drops = s.lr_drops};
    CliOpt opts[] = {
        {"--layers", OPT_STR, &a.layers, "decoder layers L (--grid: a list, e.g. 1,2)"},
        {"--width", OPT_STR, &a.width, "hidden size D, a multiple of 8 (--grid: a list, e.g. 32,64)"},
        {"--sequences", OPT_STR, &a.sequences, "training sequences N (--grid: a list, instead of --multiples)"},
        {"--vocab", OPT_INT, &a.vocab, "ids the data is drawn from (the model has one more row: the start token)", 2, 1 << 20},
        {"--seq-len", OPT_INT, &a.seq_len, "tokens a sequence, all scored (seq-len x log2(vocab) bits a sequence)", 1, 4096},
        {"--seed", OPT_INT, &a.seed, "seed of the training data, the initialisation and the batch order"},
        {"--heldout-seed", OPT_INT, &a.heldout_seed, "seed of the held-out data (must differ from --seed)"},
        {"--heldout", OPT_INT, &a.heldout, "held-out sequences (held-out loss, membership inference)", 1, 1L << 26},
        {"--device", OPT_STR, &a.device, "cpu, or cuda (each cell on the GPU, parameters and optimizer state resident there)"},
        {"--precision", OPT_STR, &a.precision, "f32, or bf16: bf16 operands in the matrix products, f32 master weights, sums and AdamW state"},
        {"--batch", OPT_INT, &a.batch, "sequences a step (every epoch sees every sequence once)", 1, 65536},
        {"--lr", OPT_FLOAT, &a.lr, "AdamW learning rate (constant after --warmup)"},
        {"--wd", OPT_FLOAT, &a.wd, "AdamW weight decay on the projections"},
        {"--warmup", OPT_INT, &a.warmup, "steps of linear warmup"},
        {"--max-steps", OPT_INT, &a.max_steps, "step cap: a cell that reaches it is reported as not converged", 1, 1L << 40},
        {"--eval-steps", OPT_INT, &a.eval_steps, "evaluate at the first epoch end this many steps after the last evaluation", 1, 1L << 40},
        {"--min-gain", OPT_FLOAT, &a.min_gain, "converged when the memorized bits grew less than this fraction over the last max(500, steps/4) steps at one learning rate"},
        {"--lr-drops", OPT_INT, &a.lr_drops, "times the learning rate is divided by 4 when memorization stops growing, before the cell counts as converged", 0, 16},
        {"--schedule", OPT_STR, &a.schedule, "plateau: constant rate, divided by 4 at each plateau (--lr-drops), converged at the next; cosine: from --lr to 0 over exactly --max-steps, converged when its last quarter added less than --min-gain"},
        {"--out", OPT_STR, &a.out, "folder for results.json (--grid: cells/, results.json, report.html)"},
        {"--save-model", OPT_STR, &a.save_model, "one cell: also write the trained model (Hub format, f32) to this folder"},
        {"--grid", OPT_FLAG, &a.grid, "run every --layers x --width x (--multiples or --sequences) cell; resumable"},
        {"--multiples", OPT_STR, &a.multiples, "--grid: dataset sizes as multiples of each model's expected capacity (3.6 bits x params), e.g. 0.5,1,2,4"},
        {"--jobs", OPT_INT, &a.jobs, "--grid: cells trained at once (0: one per core)", 0, 1024},
        {"--workers", OPT_STR, &a.workers, "--grid: cells run as processes (child processes of this program, one thread each) or threads (of this process, a backend each: on a GPU one stream per cell, so several cells' kernels run at once); auto: threads with --device cuda, processes on the CPU"},
        {"--collect", OPT_FLAG, &a.collect, "--grid: run nothing; write results.json (and --html) from the cells finished so far"},
        {"--html", OPT_FLAG, &a.html, "--grid: also write report.html (offline, self-contained)"},
        {"--quiet", OPT_FLAG, &a.quiet, "no progress lines"},
        CLI_THREADS_OPT(a.threads),
    };
    CLI_PARSE(CMD, "--layers L --width D --sequences N --out DIR [options] | --grid --layers 1,2 --width 32,64 --multiples 0.5,1,2 --out DIR [--html]",
              argc, argv, opts);
    if (strcmp(a.device, "cpu") && strcmp(a.device, "cuda")) return cli_fail(CMD, "--device must be cpu or cuda, not '%s'", a.device);
    if (!strcmp(a.device, "cuda") && g3_backend_cuda_devices() <= 0) {
        G3Backend *be = g3_backend_open("cuda");  // says why: no CUDA build, or no GPU
        g3_backend_free(be);
        return cli_fail(CMD, "--device cuda: %s", be ? "no GPU found" : g3_error());
    }
    s.device = a.device;
    if (!a.out) return cli_fail(CMD, "--out DIR is required (see --help)");
    s.bf16 = !strcmp(a.precision, "bf16");
    if (!s.bf16 && strcmp(a.precision, "f32")) return cli_fail(CMD, "--precision must be f32 or bf16, not '%s'", a.precision);
    s.vocab = (int)a.vocab;
    s.seq_len = (int)a.seq_len;
    s.seed = (uint64_t)a.seed;
    s.heldout_seed = (uint64_t)a.heldout_seed;
    s.nheld = a.heldout;
    s.batch = (int)a.batch;
    s.lr = a.lr;
    s.wd = a.wd;
    s.warmup = a.warmup;
    s.max_steps = a.max_steps;
    s.eval_steps = a.eval_steps;
    s.min_gain = a.min_gain;
    s.lr_drops = (int)a.lr_drops;
    s.cosine = !strcmp(a.schedule, "cosine");
    if (!s.cosine && strcmp(a.schedule, "plateau")) return cli_fail(CMD, "--schedule must be plateau or cosine, not '%s'", a.schedule);
    if (strcmp(a.workers, "auto") && strcmp(a.workers, "threads") && strcmp(a.workers, "processes"))
        return cli_fail(CMD, "--workers must be auto, threads or processes, not '%s'", a.workers);
    if (a.grid) {
        if (a.save_model) return cli_fail(CMD, "--save-model is for one cell, not --grid");
        if (!a.jobs) a.jobs = G3_MAX(1L, sysconf(_SC_NPROCESSORS_ONLN));
        return run_grid(&a, &s);
    }
    if (a.multiples || a.html || a.collect || cli_given("--jobs") || cli_given("--workers"))
        return cli_fail(CMD, "--multiples, --jobs, --workers, --collect and --html go with --grid");
    cli_set_threads(a.threads);
    return run_cell(&a, &s);
}
