// cli_model.c: loading a model with an optional LoRA adapter, for every command that runs one
// (see cli.h): the adapter hangs off the model, so the pass applies it wherever it runs.
#include <stdlib.h>

#include "cli.h"
#include "model/adapter.h"

int cli_model_load(G3Model *m, const char *dir, const char *adapter_dir) {
    if (g3_model_load(m, dir)) return -1;
    if (!adapter_dir) return 0;
    G3Adapter *a = g3_adapter_load(adapter_dir, m);
    if (!a) {
        g3_model_free(m);
        return -1;
    }
    m->adapter = a;
    return 0;
}

void cli_model_free(G3Model *m) {
    g3_adapter_free((G3Adapter *)m->adapter);  // the CLI made it: cli_model_load owns it
    g3_model_free(m);
}
