// fuzz_train_specs.c: libFuzzer harness for the training spec parsers: `--lora`
// (g3_lora_spec_parse) and `--rank1` (g3_rank1_parse). Any text either fails with a message or
// gives a spec in range: r in [1, 65536], alpha > 0 and finite, dropout in [0, 1), at least one
// target among the seven linear layers; a rank-1 variant known, every and iters >= 1.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/model.h"
#include "train/rank1.h"
#include "train/train.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char buf[600];
    if (size >= sizeof buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    G3LoraSpec s;
    if (!g3_lora_spec_parse(&s, buf)) {
        const unsigned lin = 1u << W_Q | 1u << W_K | 1u << W_V | 1u << W_O | 1u << W_GATE | 1u << W_UP | 1u << W_DOWN;
        if (s.r < 1 || s.r > 65536 || !(s.alpha > 0) || !isfinite(s.alpha) || !(s.dropout >= 0 && s.dropout < 1) || !s.targets ||
            (s.targets & ~lin))
            abort();
    } else if (!g3_error_is_set()) {
        abort();
    }
    g3_error_clear();
    G3Rank1Spec r;
    if (!g3_rank1_parse(&r, buf)) {
        if (r.mode > G3_RANK1_LORA || r.every < 1 || r.iters < 1) abort();
    } else if (!g3_error_is_set()) {
        abort();
    }
    g3_error_clear();
    return 0;
}
