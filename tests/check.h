// check.h: the few macros every test uses. A test is a program whose exit code is the
// verdict: CHECK records a failure (with file and line) and carries on, so one run shows
// every problem; main returns check_done(), non-zero if anything failed.
#ifndef G3_CHECK_H
#define G3_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
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
// so 0 means it succeeded. For tests that drive ./gemma3 or a checker script.
static inline int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int sh(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static inline int check_done(void) {
    if (check_failures) fprintf(stderr, "%d of %d checks failed\n", check_failures, check_count);
    else printf("%d checks passed\n", check_count);
    return check_failures != 0;
}

#endif
