// sbd_tasks.c: the experiment's task examples (sbd_tasks.h).
#include "sbd_tasks.h"

#include <string.h>

static const char *names[G3_TASK_COUNT] = {"copy", "reverse", "add", "random"};

int g3_sbd_task_parse(const char *name) {
    for (int t = 0; t < G3_TASK_COUNT; t++)
        if (!strcmp(name, names[t])) return t;
    return -1;
}

const char *g3_sbd_task_name(G3SbdTask t) { return t >= 0 && t < G3_TASK_COUNT ? names[t] : "?"; }

enum { EOS = 1, BOS = 2, D0 = 5, EQ = 15, PLUS = 16, TAG = 17 };

// n digits of v, least significant first, zero-padded to n; returns n.
static int digits_le(int32_t *out, long v, int n) {
    for (int i = 0; i < n; i++, v /= 10) out[i] = D0 + (int32_t)(v % 10);
    return n;
}

void g3_sbd_task_example(G3SbdTask t, G3Rng *r, int32_t *prompt, int *np_out, int32_t *answer, int *na_out) {
    int np = 0, na = 0;
    prompt[np++] = BOS;
    prompt[np++] = TAG + (int32_t)t;
    if (t == G3_TASK_ADD) {
        long a = 0, b = 0, p = 1;
        const int la = 3 + (int)g3_rng_below(r, 5), lb = 3 + (int)g3_rng_below(r, 5);
        for (int i = 0; i < la; i++, p *= 10) a += (long)(i == la - 1 ? 1 + g3_rng_below(r, 9) : g3_rng_below(r, 10)) * p;
        p = 1;
        for (int i = 0; i < lb; i++, p *= 10) b += (long)(i == lb - 1 ? 1 + g3_rng_below(r, 9) : g3_rng_below(r, 10)) * p;
        np += digits_le(prompt + np, a, G3_SBD_ADD_DIGITS);
        prompt[np++] = PLUS;
        np += digits_le(prompt + np, b, G3_SBD_ADD_DIGITS);
        prompt[np++] = EQ;
        na = digits_le(answer, a + b, G3_SBD_ADD_DIGITS + 1);
    } else {
        const int n = t == G3_TASK_RANDOM ? 4 + (int)g3_rng_below(r, 5) : 8 + (int)g3_rng_below(r, 9);
        for (int i = 0; i < n; i++) prompt[np + i] = D0 + (int32_t)g3_rng_below(r, 10);
        if (t == G3_TASK_COPY) memcpy(answer, prompt + np, sizeof *answer * (size_t)n), na = n;
        if (t == G3_TASK_REVERSE)
            for (int i = 0; i < n; i++) answer[na++] = prompt[np + n - 1 - i];
        if (t == G3_TASK_RANDOM)
            for (int i = 0; i < 12; i++) answer[na++] = D0 + (int32_t)g3_rng_below(r, 10);
        np += n;
        prompt[np++] = EQ;
    }
    answer[na++] = EOS;
    *np_out = np;
    *na_out = na;
}
