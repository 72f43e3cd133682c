// fuzz_config.c: libFuzzer harness for config.json parsing and validation: any text parses to
// a config that passes validation, with every id inside the vocabulary and every number finite,
// or fails with a message; never a crash, never undefined behaviour (UBSan aborts on any).
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "model/config.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    G3Config c;
    if (g3_config_parse(&c, (const char *)data, size, "fuzz.json") == 0) {
        // a valid config must give a consistent table
        if (c.layers < 1 || c.layers > G3_MAX_LAYERS || c.heads % c.kv_heads) abort();
        if (c.bos < 0 || c.bos >= c.vocab || c.eos < 0 || c.eos >= c.vocab || c.pad < 0 || c.pad >= c.vocab) abort();
        if (c.head_dim < 2 || c.head_dim % 2 || c.hidden < 1 || c.inter < 1 || c.sliding_window < 1 || c.max_pos < 1) abort();
        if (!(c.eps > 0) || !(c.query_pre_attn_scalar > 0) || !isfinite(c.eps) || !isfinite(c.query_pre_attn_scalar) ||
            !isfinite(c.attn_softcap) || !isfinite(c.final_softcap) || !(c.rope_global_base > 1) ||
            !(c.rope_local_base > 1) || !isfinite(c.rope_global_base) || !isfinite(c.rope_local_base) ||
            !(c.rope_global_scale > 0) || !(c.rope_local_scale > 0) || !isfinite(c.rope_global_scale))
            abort();
        if ((int64_t)c.vocab * c.hidden < (1 << 26)) {
            G3Model m;
            if (g3_model_table(&m, &c) == 0) g3_model_free(&m);
        }
    }
    return 0;
}
