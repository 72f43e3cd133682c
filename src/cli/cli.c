// cli.c: what the command files share (see cli.h): the option table parser, strict number
// parsing with ranges, id lists, and C escapes in option values. Every message names the
// option and, for numbers, the allowed range: a bad value is refused at the edge, never
// turned silently into a default or passed on to fail later with a message about something else.
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

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
    if (end == val || *end || errno == EINVAL) return g3_errorf("%s: '%s' is not an integer", opt, val);
    if (errno == ERANGE || v < lo || v > hi) return g3_errorf("%s: %s is out of range: allowed %ld to %ld", opt, val, lo, hi);
    *out = v;
    return 0;
}

int cli_float_range(const char *opt, const char *val, double lo, double hi, double *out) {
    if (!val) return g3_errorf("%s needs a value", opt);
    char *end;
    errno = 0;
    double v = strtod(val, &end);
    if (end == val || *end) return g3_errorf("%s: '%s' is not a number", opt, val);
    // strtod accepts "nan" and "inf": neither is ever a meaningful setting, and NaN would
    // read as "not set" to code that uses it as a sentinel
    if (!isfinite(v)) return g3_errorf("%s: '%s' is not a finite number", opt, val);
    if (v < lo || v > hi) return g3_errorf("%s: %s is out of range: allowed %g to %g", opt, val, lo, hi);
    *out = v;
    return 0;
}

int cli_float(const char *opt, const char *val, double *out) { return cli_float_range(opt, val, -HUGE_VAL, HUGE_VAL, out); }

// ---- C escapes ----

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static char *put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) *o++ = (char)cp;
    else if (cp < 0x800) { *o++ = (char)(0xC0 | cp >> 6); *o++ = (char)(0x80 | (cp & 63)); }
    else if (cp < 0x10000) { *o++ = (char)(0xE0 | cp >> 12); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    else { *o++ = (char)(0xF0 | cp >> 18); *o++ = (char)(0x80 | (cp >> 12 & 63)); *o++ = (char)(0x80 | (cp >> 6 & 63)); *o++ = (char)(0x80 | (cp & 63)); }
    return o;
}

char *cli_unescape(const char *opt, const char *s) {
    // the result is never longer than the input: every escape is at least as long as its bytes
    char *out = g3_malloc(strlen(s) + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s; *p;) {
        if (*p != '\\') { *o++ = *p++; continue; }
        const char *at = p++;
        int ndig = 0;
        switch (*p) {
        case 'n': *o++ = '\n'; p++; continue;
        case 't': *o++ = '\t'; p++; continue;
        case 'r': *o++ = '\r'; p++; continue;
        case 'a': *o++ = '\a'; p++; continue;
        case 'b': *o++ = '\b'; p++; continue;
        case 'f': *o++ = '\f'; p++; continue;
        case 'v': *o++ = '\v'; p++; continue;
        case 'e': *o++ = '\x1b'; p++; continue;
        case '\\': case '"': case '\'': case '?': *o++ = *p++; continue;
        case 'x': ndig = 2; break;
        case 'u': ndig = 4; break;
        case 'U': ndig = 8; break;
        default:
            free(out);
            g3_errorf("%s: unknown escape '\\%.1s' at byte %d of '%s' (known: \\n \\t \\r \\\\ \\\" \\xHH \\uXXXX \\UXXXXXXXX; write \\\\ for a backslash)",
                      opt, *p ? p : "", (int)(at - s), s);
            return NULL;
        }
        unsigned v = 0;
        p++;
        for (int k = 0; k < ndig; k++, p++) {
            int h = hexval(*p);
            if (h < 0) {
                free(out);
                g3_errorf("%s: '\\%c' at byte %d of '%s' needs exactly %d hex digits", opt, at[1], (int)(at - s), s, ndig);
                return NULL;
            }
            v = v << 4 | (unsigned)h;
        }
        if (v == 0 || (ndig > 2 && ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF))) {
            free(out);
            g3_errorf("%s: '%.*s' at byte %d of '%s' is %s", opt, ndig + 2, at, (int)(at - s), s,
                      v == 0 ? "a NUL character, which a stop string cannot hold" : "not a Unicode scalar value");
            return NULL;
        }
        if (ndig == 2) *o++ = (char)v;  // \xHH is one raw byte, as in C
        else o = put_utf8(o, v);
    }
    *o = 0;
    return out;
}

// ---- the option table ----

static void print_help(const char *cmd, const char *synopsis, const CliOpt *opts, int nopts) {
    printf("usage: gemma3 %s %s\n\noptions:\n", cmd, synopsis);
    for (int i = 0; i < nopts; i++) {
        const CliOpt *o = &opts[i];
        char def[64] = "", range[80] = "";
        if (o->type == OPT_STR && *(const char **)o->dst) snprintf(def, sizeof def, " (default %s)", *(const char **)o->dst);
        // LONG_MIN / NAN mean "not set: the model's generation_config.json or the built-in default"
        if (o->type == OPT_INT && *(long *)o->dst != LONG_MIN) snprintf(def, sizeof def, " (default %ld)", *(long *)o->dst);
        if (o->type == OPT_FLOAT && !isnan(*(double *)o->dst)) snprintf(def, sizeof def, " (default %g)", *(double *)o->dst);
        if (o->type == OPT_INT && (o->lo || o->hi)) {
            long lo = o->lo == LONG_MIN ? 0 : o->lo, hi = o->hi ? o->hi : LONG_MAX;
            if (hi == LONG_MAX) snprintf(range, sizeof range, " [>= %ld]", lo);
            else snprintf(range, sizeof range, " [%ld..%ld]", lo, hi);
        }
        if (o->type == OPT_FLOAT && (o->flo || o->fhi)) snprintf(range, sizeof range, " [%g..%g]", o->flo, o->fhi);
        const char *arg = o->type == OPT_STR || o->type == OPT_LIST ? " S" : o->type == OPT_INT ? " N" : o->type == OPT_FLOAT ? " X" : "";
        printf("  %s%-*s %s%s%s\n", o->name, (int)(20 - strlen(o->name)), arg, o->help, range, def);
    }
    printf("  --help               this text\n");
}

// The options the last cli_parse saw (one parse per process), for cli_given.
static const char *given[128];
static int ngiven;

int cli_given(const char *name) {
    for (int i = 0; i < ngiven; i++)
        if (!strcmp(given[i], name)) return 1;
    return 0;
}

int cli_parse(const char *cmd, const char *synopsis, int argc, char **argv, const CliOpt *opts, int nopts) {
    if (cli_wants_help(argc, argv)) { print_help(cmd, synopsis, opts, nopts); return -1; }
    ngiven = 0;
    char seen[128] = {0};  // options given so far (a single-valued option given twice is refused)
    for (int i = 1; i < argc; i++) {
        int k = 0;
        while (k < nopts && strcmp(argv[i], opts[k].name)) k++;
        if (k == nopts) return cli_fail(cmd, "unknown option '%s' (see gemma3 %s --help)", argv[i], cmd);
        const CliOpt *o = &opts[k];
        // a second value would silently replace the first: say so instead (lists take many)
        if (o->type != OPT_LIST && k < (int)sizeof seen && seen[k]++)
            return cli_fail(cmd, "%s is given twice; it takes one value", o->name);
        if (ngiven < (int)G3_ARRAY_LEN(given)) given[ngiven++] = o->name;
        if (o->type == OPT_FLAG) { *(int *)o->dst = 1; continue; }
        if (i + 1 >= argc) return cli_fail(cmd, "%s needs a value", o->name);
        const char *v = argv[++i];
        if (o->type == OPT_STR) *(const char **)o->dst = v;
        else if (o->type == OPT_LIST) {
            CliList *l = o->dst;
            if (l->n == CLI_LIST_MAX) return cli_fail(cmd, "%s is given more than %d times", o->name, CLI_LIST_MAX);
            l->v[l->n++] = v;
        } else if (o->type == OPT_INT) {
            long lo = o->lo == LONG_MIN ? 0 : o->lo, hi = o->hi ? o->hi : LONG_MAX;
            // every command's --threads sizes per-thread scratch (and libgomp fails well
            // below 10^4 threads): one bound for all of them, here
            if (!strcmp(o->name, "--threads")) hi = G3_MIN(hi, CLI_MAX_THREADS);
            if (cli_int(o->name, v, lo, hi, (long *)o->dst)) return cli_fail(cmd, "%s", g3_error());
        } else {
            double lo = o->flo || o->fhi ? o->flo : -HUGE_VAL, hi = o->flo || o->fhi ? o->fhi : HUGE_VAL;
            if (cli_float_range(o->name, v, lo, hi, (double *)o->dst)) return cli_fail(cmd, "%s", g3_error());
        }
    }
    return 0;
}

void cli_set_threads(long n) {
    if (n > 0) omp_set_num_threads((int)G3_MIN(n, CLI_MAX_THREADS));
}
