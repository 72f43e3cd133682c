// cli_model.c: loading a model with an optional LoRA adapter, for every command that runs one
// (see cli.h): the adapter hangs off the model, so the pass applies it wherever it runs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cli.h"
#include "model/adapter.h"

const char *cli_device;

int cli_model_device(G3Model *m) {
    const char *dev = cli_device;
    if (!dev) dev = g3_backend_cuda_devices() > 0 ? "cuda" : "cpu";
    if (!strcmp(dev, "cpu")) return 0;
    G3Backend *be = g3_backend_open(dev);
    if (!be) return -1;
    m->be = be;
    return 0;
}

int cli_train_backend(G3Backend **out, int cpu_only, const char *cmd) {
    *out = NULL;
    const char *dev = cli_device;
    if (!dev) {
        if (g3_backend_cuda_devices() <= 0) return 0;
        if (cpu_only) {
            fprintf(stderr, "%s: training on the CPU (%s runs on the CPU for now; --device cpu silences this)\n", cmd, cpu_only == 1 ? "LoRA" : "this objective");
            return 0;
        }
        dev = "cuda";
    }
    if (!strcmp(dev, "cpu")) return 0;
    return (*out = g3_backend_open(dev)) ? 0 : -1;
}

int cli_model_load(G3Model *m, const char *dir, const char *adapter_dir) {
    if (g3_model_load(m, dir)) return -1;
    if (adapter_dir) {
        G3Adapter *a = g3_adapter_load(adapter_dir, m);
        if (!a) {
            g3_model_free(m);
            return -1;
        }
        m->adapter = a;
    }
    if (cli_model_device(m)) {
        cli_model_free(m);
        return -1;
    }
    return 0;
}

void cli_model_free(G3Model *m) {
    g3_adapter_free((G3Adapter *)m->adapter);  // the CLI made it: cli_model_load owns it
    g3_backend_free(m->be);
    m->be = NULL;
    g3_model_free(m);
}
