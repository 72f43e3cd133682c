// localtools.c: the example tools `gemma3 chat --tools` runs on the user's machine: a
// calculator that evaluates arithmetic (a parser of its own: nothing is executed, there are
// no names but a few functions and constants) and a read-only file explorer confined to one
// folder (paths are resolved with realpath, symbolic links included, and must stay inside).
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "srv_internal.h"

// ---- the calculator ----

typedef struct {
    const char *s;
    int depth;
    const char *err;
} Calc;

static double expr(Calc *c);

static void skip(Calc *c) {
    while (isspace((unsigned char)*c->s)) c->s++;
}

static double fail(Calc *c, const char *why) {
    if (!c->err) c->err = why;
    return NAN;
}

// number | name | name(args) | (expr)
static double primary(Calc *c) {
    skip(c);
    if (++c->depth > 64) return fail(c, "expression nested too deeply");
    double v;
    if (*c->s == '(') {
        c->s++;
        v = expr(c);
        skip(c);
        if (*c->s != ')') return fail(c, "missing ')'");
        c->s++;
    } else if (isdigit((unsigned char)*c->s) || *c->s == '.') {
        char *end;
        v = strtod(c->s, &end);
        if (end == c->s) return fail(c, "bad number");
        c->s = end;
    } else if (isalpha((unsigned char)*c->s)) {
        const char *w = c->s;
        while (isalnum((unsigned char)*c->s) || *c->s == '_') c->s++;
        size_t n = (size_t)(c->s - w);
        static const struct { const char *name; double (*f)(double); } fns[] = {
            {"sqrt", sqrt}, {"abs", fabs}, {"exp", exp}, {"ln", log}, {"log", log}, {"log10", log10}, {"log2", log2},
            {"sin", sin}, {"cos", cos}, {"tan", tan}, {"asin", asin}, {"acos", acos}, {"atan", atan},
            {"floor", floor}, {"ceil", ceil}, {"round", round}};
        if (n == 2 && !memcmp(w, "pi", 2)) v = M_PI;
        else if (n == 1 && *w == 'e') v = M_E;
        else {
            int k = -1;
            for (int i = 0; i < (int)G3_ARRAY_LEN(fns); i++)
                if (strlen(fns[i].name) == n && !memcmp(fns[i].name, w, n)) k = i;
            if (k < 0) return fail(c, "unknown name (functions: sqrt abs exp ln log log10 log2 sin cos tan asin acos atan floor ceil round; constants: pi e)");
            skip(c);
            if (*c->s != '(') return fail(c, "a function needs (argument)");
            c->s++;
            double a = expr(c);
            skip(c);
            if (*c->s != ')') return fail(c, "missing ')'");
            c->s++;
            v = fns[k].f(a);
        }
    } else {
        return fail(c, *c->s ? "unexpected character" : "unexpected end");
    }
    c->depth--;
    return v;
}

// unary minus binds looser than power, as in Python: -2**2 = -4
static double unary(Calc *c);
static double power(Calc *c) {
    double b = primary(c);
    skip(c);
    if (c->s[0] == '^' || (c->s[0] == '*' && c->s[1] == '*')) {
        c->s += c->s[0] == '^' ? 1 : 2;
        if (++c->depth > 64) return fail(c, "expression nested too deeply");
        double e = unary(c);  // right-associative: 2**3**2 = 2**9
        c->depth--;
        return pow(b, e);
    }
    return b;
}

static double unary(Calc *c) {
    skip(c);
    if (*c->s == '-' || *c->s == '+') {
        int neg = *c->s == '-';
        c->s++;
        if (++c->depth > 64) return fail(c, "expression nested too deeply");
        double v = unary(c);
        c->depth--;
        return neg ? -v : v;
    }
    return power(c);
}

static double term(Calc *c) {
    double v = unary(c);
    for (;;) {
        skip(c);
        char op = *c->s;
        if ((op != '*' && op != '/' && op != '%') || (op == '*' && c->s[1] == '*')) return v;
        c->s++;
        double r = unary(c);
        if ((op == '/' || op == '%') && r == 0) return fail(c, "division by zero");
        v = op == '*' ? v * r : op == '/' ? v / r : v - r * floor(v / r);  // % as Python: the sign of the divisor
    }
}

static double expr(Calc *c) {
    double v = term(c);
    for (;;) {
        skip(c);
        if (*c->s != '+' && *c->s != '-') return v;
        char op = *c->s++;
        double r = term(c);
        v = op == '+' ? v + r : v - r;
    }
}

int srv_calc(const char *text, double *out, const char **err) {
    if (strlen(text) > 4096) { *err = "expression too long"; return -1; }
    Calc c = {text, 0, NULL};
    double v = expr(&c);
    skip(&c);
    if (!c.err && *c.s) c.err = "unexpected character";
    if (!c.err && !isfinite(v)) c.err = "the result is not a finite number";
    *err = c.err;
    if (c.err) return -1;
    *out = v;
    return 0;
}

// ---- the file explorer ----

// root/rel resolved into out, which must lie inside root (itself resolved). 0, or -1 with *why.
static int confine(const char *root, const char *rel, char *out, const char **why) {
    char r[PATH_MAX], joined[PATH_MAX * 2];
    if (!realpath(root, r)) { *why = "the tools folder does not exist"; return -1; }
    if (strlen(rel) >= PATH_MAX) { *why = "path too long"; return -1; }
    snprintf(joined, sizeof joined, "%s/%s", r, rel[0] == '/' ? rel + 1 : rel);  // absolute paths count from the root
    if (!realpath(joined, out)) { *why = errno == ENOENT ? "no such file or folder" : "cannot resolve the path"; return -1; }
    size_t n = strlen(r);
    if (strncmp(out, r, n) || (out[n] && out[n] != '/' && strcmp(r, "/"))) { *why = "outside the folder the tools may read"; return -1; }
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list_dir(const char *root, const char *rel, SBuf *out) {
    char p[PATH_MAX];
    const char *why;
    if (confine(root, rel, p, &why)) { sb_printf(out, "error: %s: %s", rel, why); return; }
    DIR *d = opendir(p);
    if (!d) { sb_printf(out, "error: %s: %s", rel, strerror(errno)); return; }
    char *names[500];
    int n = 0, more = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == (int)G3_ARRAY_LEN(names)) { more++; continue; }
        char full[PATH_MAX + 256];
        struct stat st;
        snprintf(full, sizeof full, "%s/%s", p, e->d_name);
        int dir = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
        size_t k = strlen(e->d_name);
        if ((names[n] = malloc(k + 2))) {
            memcpy(names[n], e->d_name, k);
            strcpy(names[n] + k, dir ? "/" : "");
            n++;
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n; i++) {
        sb_printf(out, "%s%s", i ? "\n" : "", names[i]);
        free(names[i]);
    }
    if (!n) sb_puts(out, "(empty folder)");
    if (more) sb_printf(out, "\n... and %d more", more);
}

enum { READ_MAX = 16 << 10 };

static void read_file(const char *root, const char *rel, SBuf *out) {
    char p[PATH_MAX];
    const char *why;
    if (confine(root, rel, p, &why)) { sb_printf(out, "error: %s: %s", rel, why); return; }
    FILE *f = fopen(p, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        sb_printf(out, "error: %s: not a readable file", rel);
        if (f) fclose(f);
        return;
    }
    char *buf = malloc(READ_MAX);
    size_t n = buf ? fread(buf, 1, READ_MAX, f) : 0;
    fclose(f);
    if (buf && memchr(buf, 0, n)) sb_printf(out, "error: %s: a binary file (%lld bytes)", rel, (long long)st.st_size);
    else if (buf) {
        sb_put(out, buf, n);
        if (st.st_size > READ_MAX) sb_printf(out, "\n... (%lld bytes in all; the first %d shown)", (long long)st.st_size, READ_MAX);
    }
    free(buf);
}

// ---- dispatch ----

const char *srv_local_tools_json(int calc, int files) {
    static char buf[2048];
    snprintf(buf, sizeof buf, "[%s%s%s]",
             calc ? "{\"type\": \"function\", \"function\": {\"name\": \"calc\", \"description\": \"Evaluates an arithmetic expression exactly as written: "
                    "+ - * / % ** ( ), numbers, sqrt abs exp ln log10 sin cos tan floor ceil round, pi, e.\", "
                    "\"parameters\": {\"type\": \"object\", \"properties\": {\"expression\": {\"type\": \"string\"}}, \"required\": [\"expression\"]}}}"
                  : "",
             calc && files ? ", " : "",
             files ? "{\"type\": \"function\", \"function\": {\"name\": \"list_dir\", \"description\": \"Lists the files and folders (ending in /) of a folder; "
                     "paths are relative to the folder the user shared, \\\".\\\" is its top.\", "
                     "\"parameters\": {\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\"}}, \"required\": [\"path\"]}}}, "
                     "{\"type\": \"function\", \"function\": {\"name\": \"read_file\", \"description\": \"Reads a text file (its first 16 KiB).\", "
                     "\"parameters\": {\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\"}}, \"required\": [\"path\"]}}}"
                   : "");
    return buf;
}

int srv_local_tool(const char *root, const SrvToolCall *call, SBuf *out) {
    Json j;
    if (json_parse(&j, call->args, strlen(call->args))) return sb_printf(out, "error: the arguments are not JSON");
    const JsonNode *a = json_root(&j), *x = json_get(a, "expression"), *p = json_get(a, "path");
    if (!strcmp(call->name, "calc")) {
        double v;
        const char *err;
        if (!json_is_string(x)) sb_puts(out, "error: calc needs {\"expression\": string}");
        else if (srv_calc(x->str, &v, &err)) sb_printf(out, "error: %s", err);
        else sb_printf(out, "%.15g", v);
    } else if (!strcmp(call->name, "list_dir") || !strcmp(call->name, "read_file")) {
        const char *rel = json_is_string(p) ? p->str : ".";
        if (p && !json_is_string(p)) sb_printf(out, "error: %s needs {\"path\": string}", call->name);
        else if (!root) sb_puts(out, "error: no folder was shared");
        else if (call->name[0] == 'l') list_dir(root, rel, out);
        else read_file(root, rel, out);
    } else {
        sb_printf(out, "error: no tool named %s", call->name);
    }
    json_free(&j);
    return 0;
}
