// schedule.h: learning-rate schedules as a pure function of the step, so that resuming needs
// only the step number. `step` is the 0-based index of the optimizer step being taken.
//   cosine:   linear warmup (lr * (step+1)/warmup), then cosine from lr down to lr*min_ratio,
//             reached just after the last step.
//   constant: linear warmup, then lr.
//   wsd:      warmup-stable-decay: warmup, lr until the last decay_steps, then linear decay
//             to lr*min_ratio on the last step.
// Jagged restarts (ReLoRA, Lialin et al. 2023), over any of these: with restart_every N > 0,
// the steps s0 = restart_first + k N (k >= 0, s0 > 0) each begin a re-warm of restart_warmup R
// steps in which the rate climbs linearly again, lr(s0 + i) = base(s0 + R - 1) * (i + 1) / R
// for i < R, to rejoin the base schedule at s0 + R - 1 (base: the schedule above, so its
// envelope decays as usual). ReLoRA merges its adapters and resets the optimizer at each s0.
#ifndef G3_SCHEDULE_H
#define G3_SCHEDULE_H

#include <stdint.h>

typedef enum { G3_SCHED_COSINE = 0, G3_SCHED_CONSTANT, G3_SCHED_WSD } G3SchedKind;

typedef struct {
    G3SchedKind kind;
    double lr;         // peak
    double min_ratio;  // floor of cosine / wsd, as a fraction of lr
    int64_t warmup;    // steps of linear warmup
    int64_t total;     // steps in the run
    int64_t decay;     // wsd: steps of the final decay
    int64_t restart_first, restart_every, restart_warmup;  // jagged restarts (0: none)
} G3Schedule;

double g3_schedule_lr(const G3Schedule *s, int64_t step);
// "cosine", "constant", "wsd" -> kind; -1 with a message otherwise.
int g3_schedule_parse(const char *name, G3SchedKind *out);
const char *g3_schedule_name(G3SchedKind k);

#endif
