// check.h: the few macros every test uses. A test is a program whose exit code is the
// verdict: CHECK records a failure (with file and line) and carries on, so one run shows
// every problem; main returns check_done(), non-zero if anything failed.
#ifndef G3_CHECK_H
#define G3_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>  // system(), and WIFEXITED / WEXITSTATUS in glibc

static int check_failures = 0, check_count = 0;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        check_count++;                                                       \
        if (!(cond)) {                                                       \
            check_failures++;                                                \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
        }                                                                    \
    } while (0)

// Relative error ||a - b|| / ||b|| over n floats (b is the reference), in double.
static inline double rel_err(const float *a, const float *b, long n) {
    double num = 0, den = 0;
    for (long i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

// Runs a shell command built printf-style; returns its exit status (128 if it did not exit),
// so 0 means it succeeded. For tests that drive ./gemma3 or a checker script. A command
// word "./gemma3" becomes $BIN when that is set (make sets it: `make SAN=1 test` then runs
// the sanitized program, not the release one a test may have spelled out).
static inline int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int sh(const char *fmt, ...) {
    char raw[8192], cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    const char *bin = getenv("BIN"), *word = "./gemma3 ";
    size_t o = 0, wl = strlen(word);
    for (const char *p = raw; *p && o + 1 < sizeof cmd;) {
        if (bin && *bin && strcmp(bin, "./gemma3") && !strncmp(p, word, wl) && (p == raw || p[-1] == ' ' || p[-1] == '(' || p[-1] == ';')) {
            int k = snprintf(cmd + o, sizeof cmd - o, "%s ", bin);
            o = k > 0 && o + (size_t)k < sizeof cmd ? o + (size_t)k : sizeof cmd - 1;
            p += wl;
        } else {
            cmd[o++] = *p++;
        }
    }
    cmd[o] = 0;
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline int check_done(void) {
    if (check_failures) fprintf(stderr, "%d of %d checks failed\n", check_failures, check_count);
    else printf("%d checks passed\n", check_count);
    return check_failures != 0;
}

#endif
