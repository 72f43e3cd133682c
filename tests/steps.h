// steps.h: a model's logits over a prefill and then one-token steps, for tests that compare
// decode's kernels (the repacked weights' tests: test_quant_q4x16, test_quant_x16,
// test_quant_kx16). Header-only; needs check.h's CHECK before it.
#ifndef G3_TEST_STEPS_H
#define G3_TEST_STEPS_H

#include <stdlib.h>

#include "base/base.h"
#include "model/forward.h"
#include "model/model.h"

// Logits of a prefill of T ids then D one-token steps (rows [T + D][V]).
static float *steps_logits(const G3Model *m, const int32_t *ids, int T, int D) {
    const int V = m->cfg.vocab;
    float *lg = malloc((size_t)(T + D) * V * sizeof *lg);
    G3State *s = g3_state_new(m, 1, T + D, T, 1, NULL);
    int ok = s && g3_prefill(s, 0, ids, T, lg) == 0;
    for (int d = 0; ok && d < D; d++) ok = g3_prefill(s, 0, ids + T + d, 1, lg + (size_t)(T + d) * V) == 0;
    CHECK(ok, "forward: %s", g3_error());
    g3_state_free(s);
    return lg;
}

#endif
