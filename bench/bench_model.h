// bench_model.h: the benchmarks' random Gemma 3 1B (BF16), written once by `gemma3 init`'s
// code into G3_BENCH_MODEL (default models/bench-1b-bf16) and loaded from there.
#ifndef G3_BENCH_MODEL_H
#define G3_BENCH_MODEL_H

#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "model/init.h"
#include "model/model.h"

// Returns 0 with *m loaded, or -1 after printing why.
static inline int bench_load_1b(G3Model *m, const char *dir) {
    char cfgp[4200];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", dir);
    size_t n = strlen(dir);
    int gguf = n > 5 && !strcmp(dir + n - 5, ".gguf");  // a GGUF file (e.g. from gemma3 quantize) is taken as it is
    if (!gguf && !g3_file_exists(cfgp)) {
        G3Config c;
        g3_config_preset(&c, "1b");
        fprintf(stderr, "bench: creating %s (random Gemma 3 1B, bf16) once\n", dir);
        if (g3_init_checkpoint(&c, dir, G3_BF16, 0, 0.02f, (size_t)4 << 30, 1)) { fprintf(stderr, "%s\n", g3_error()); return -1; }
    }
    if (g3_model_load(m, dir)) { fprintf(stderr, "%s\n", g3_error()); return -1; }
    return 0;
}

#endif
