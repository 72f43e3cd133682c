// main.c: the gemma3 program: one command per file, dispatched from this table.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <math.h>
#include <errno.h>
#include <omp.h>

#include "base/base.h"
#include "cli.h"

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"inspect", cmd_inspect, "show a model's architecture, parameter counts and memory"},
    {"forward", cmd_forward, "run a forward pass over token ids; save logits"},
    {"generate", cmd_generate, "continue a prompt (ids or text), or a file of prompts"},
    {"chat", cmd_chat, "talk to a model in the terminal"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"init", cmd_init, "write a random-weight checkpoint of a given shape"},
    {"train", cmd_train, "train from scratch or fine-tune"},
    {"grad", cmd_grad, "loss and every gradient for one sequence"},
    {"trace", cmd_trace, "record activations at hook sites to NumPy .npz"},
    {"analyze", cmd_analyze, "attention heads, residual stream and logit lens of a prompt; HTML report"},
    {"intervene", cmd_intervene, "ablate heads/MLPs, patch activations, steer; compare with the clean run"},
};

static void usage(FILE *f) {
    fprintf(f, "gemma3: run, train and look inside Gemma 3 and Gemma 2 models\n\nusage: gemma3 COMMAND [options]   (gemma3 COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < G3_ARRAY_LEN(commands); i++) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].what);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < G3_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gemma3: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

int cli_fail(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "gemma3 %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

int cli_parse_ids(const char *s, int32_t **out) {
    int n = 0, cap = 64;
    int32_t *ids = g3_malloc((size_t)cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(ids);
            return g3_errorf("bad token id at '%.20s' (ids are non-negative integers separated by commas)", p);
        }
        if (n == cap) {
            cap *= 2;
            int32_t *ni = g3_realloc(ids, (size_t)cap * sizeof *ni);
            if (!ni) { free(ids); return -1; }
            ids = ni;
        }
        ids[n++] = (int32_t)v;
        p = end;
        if (*p && *p != ',' && *p != ' ' && *p != ']') { free(ids); return g3_errorf("bad token id list near '%.20s'", p); }
    }
    *out = ids;
    return n;
}

int cli_int(const char *opt, const char *val, long lo, long hi, long *out) {
    if (!val) return g3_errorf("%s needs a value", opt);
    char *end;
    errno = 0;
    long v = strtol(val, &end, 10);
    if (end == val || *end || errno) return g3_errorf("%s: '%s' is not an integer", opt, val);
    if (v < lo || v > hi) return g3_errorf("%s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *val, double *out) {
    if (!val) return g3_errorf("%s needs a value", opt);
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (end == val || *end || errno) return g3_errorf("%s: '%s' is not a number", opt, val);
    *out = v;
    return 0;
}

static void print_help(const char *cmd, const char *synopsis, const CliOpt *opts, int nopts) {
    printf("usage: gemma3 %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < nopts; i++) {
        const CliOpt *o = &opts[i];
        char def[64] = "";
        if (o->type == OPT_STR && *(const char **)o->dst) snprintf(def, sizeof def, " (default %s)", *(const char **)o->dst);
        // LONG_MIN / NAN mean "not set: the model's generation_config.json or the built-in default"
        if (o->type == OPT_INT && *(long *)o->dst != LONG_MIN) snprintf(def, sizeof def, " (default %ld)", *(long *)o->dst);
        if (o->type == OPT_FLOAT && !isnan(*(double *)o->dst)) snprintf(def, sizeof def, " (default %g)", *(double *)o->dst);
        const char *arg = o->type == OPT_STR ? " S" : o->type == OPT_INT ? " N" : o->type == OPT_FLOAT ? " X" : "";
        printf("  %s%-*s %s%s\n", o->name, (int)(20 - strlen(o->name)), arg, o->help, def);
    }
    printf("  --help               this text\n");
}

int cli_parse(const char *cmd, const char *synopsis, int argc, char **argv, const CliOpt *opts, int nopts) {
    if (cli_wants_help(argc, argv)) { print_help(cmd, synopsis, opts, nopts); return -1; }
    for (int i = 1; i < argc; i++) {
        const CliOpt *o = NULL;
        for (int k = 0; k < nopts && !o; k++) if (!strcmp(argv[i], opts[k].name)) o = &opts[k];
        if (!o) return cli_fail(cmd, "unknown option '%s' (see gemma3 %s --help)", argv[i], cmd);
        if (o->type == OPT_FLAG) { *(int *)o->dst = 1; continue; }
        if (i + 1 >= argc) return cli_fail(cmd, "%s needs a value", o->name);
        const char *v = argv[++i];
        if (o->type == OPT_STR) *(const char **)o->dst = v;
        else if (o->type == OPT_INT) {
            long lo = o->lo == LONG_MIN ? 0 : o->lo, hi = o->hi ? o->hi : LONG_MAX;
            if (cli_int(o->name, v, lo, hi, (long *)o->dst)) return cli_fail(cmd, "%s", g3_error());
        } else if (cli_float(o->name, v, (double *)o->dst)) return cli_fail(cmd, "%s", g3_error());
    }
    return 0;
}

void cli_set_threads(long n) {
    if (n > 0) omp_set_num_threads((int)n);
}
