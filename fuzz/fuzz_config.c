// fuzz_config.c: libFuzzer harness for config.json parsing and validation: any text parses to
// a config that passes validation, or fails with a message; never a crash.
#include <stdint.h>
#include <stdlib.h>

#include "model/config.h"
#include "model/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    G3Config c;
    if (g3_config_parse(&c, (const char *)data, size, "fuzz.json") == 0) {
        // a valid config must give a consistent table
        if (c.layers < 1 || c.layers > G3_MAX_LAYERS || c.heads % c.kv_heads) abort();
        if ((int64_t)c.vocab * c.hidden < (1 << 26)) {
            G3Model m;
            if (g3_model_table(&m, &c) == 0) g3_model_free(&m);
        }
    }
    return 0;
}
