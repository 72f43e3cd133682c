// schedule.c: see schedule.h.
#include "schedule.h"

#include <math.h>
#include <string.h>

#include "../base/base.h"

static double base_lr(const G3Schedule *s, int64_t step);

double g3_schedule_lr(const G3Schedule *s, int64_t step) {
    if (s->restart_every > 0 && s->restart_warmup > 0 && step >= s->restart_first) {
        int64_t k = (step - s->restart_first) / s->restart_every, s0 = s->restart_first + k * s->restart_every, i = step - s0;
        if (s0 > 0 && i < s->restart_warmup) return base_lr(s, s0 + s->restart_warmup - 1) * (double)(i + 1) / (double)s->restart_warmup;
    }
    return base_lr(s, step);
}

static double base_lr(const G3Schedule *s, int64_t step) {
    if (step < s->warmup) return s->lr * (double)(step + 1) / (double)s->warmup;
    double lo = s->lr * s->min_ratio;
    switch (s->kind) {
    case G3_SCHED_CONSTANT: return s->lr;
    case G3_SCHED_WSD: {
        int64_t start = s->total - s->decay;  // first step of the decay
        if (s->decay <= 0 || step < start) return s->lr;
        double prog = (double)(step - start + 1) / (double)s->decay;
        if (prog > 1) prog = 1;
        return s->lr - (s->lr - lo) * prog;
    }
    case G3_SCHED_COSINE:
    default: {
        int64_t span = s->total - s->warmup;
        double prog = (double)(step - s->warmup) / (double)(span > 1 ? span : 1);
        if (prog > 1) prog = 1;  // past the planned end (steps raised on resume): stay at the floor
        return lo + (s->lr - lo) * 0.5 * (1 + cos(M_PI * prog));
    }
    }
}

int g3_schedule_parse(const char *name, G3SchedKind *out) {
    if (!strcmp(name, "cosine")) *out = G3_SCHED_COSINE;
    else if (!strcmp(name, "constant")) *out = G3_SCHED_CONSTANT;
    else if (!strcmp(name, "wsd")) *out = G3_SCHED_WSD;
    else return g3_errorf("unknown schedule '%s' (cosine, constant or wsd)", name);
    return 0;
}

const char *g3_schedule_name(G3SchedKind k) {
    return k == G3_SCHED_CONSTANT ? "constant" : k == G3_SCHED_WSD ? "wsd" : "cosine";
}
