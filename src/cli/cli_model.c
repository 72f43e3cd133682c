// cli_model.c: loading a model with an optional LoRA adapter, for every command that runs one
// (see cli.h): the adapter hangs off the model, so the pass applies it wherever it runs.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "cli.h"
#include "base/base.h"
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
            const char *what = cpu_only == 1 ? "LoRA with this objective (classification)" : cpu_only == 3 ? "LoRA over a quantized base" : "this objective";
            fprintf(stderr, "%s: training on the CPU (%s runs on the CPU for now; --device cpu silences this)\n", cmd, what);
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

// ---- the default model (models/default: a small Gemma 3 trained here; docs in its README) ----

static int holds_model(const char *dir) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    return g3_file_exists(p);
}

const char *cli_default_model(void) {
    static char found[4200];
    const char *env = getenv("GEMMA3_MODEL");
    if (env && *env) {
        size_t n = strlen(env);
        if ((n > 5 && !strcmp(env + n - 5, ".gguf") && g3_file_exists(env)) || holds_model(env)) return env;
        g3_errorf("GEMMA3_MODEL=%s holds no model (no config.json there, and not a .gguf file)", env);
        return NULL;
    }
    // beside the program (a build in the repository root), one folder up (build/...), an
    // installed share folder, then the current folder
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[k > 0 ? k : 0] = 0;
    char *slash = strrchr(exe, '/');
    if (slash) *slash = 0;
    const char *rel[] = {"models/default", "../models/default", "../share/gemma3/models/default"};
    for (size_t i = 0; k > 0 && i < sizeof rel / sizeof rel[0]; i++) {
        snprintf(found, sizeof found, "%s/%s", exe, rel[i]);
        if (holds_model(found)) return found;
    }
    if (holds_model("models/default")) return "models/default";
    g3_errorf("no --model given, and no default model found (GEMMA3_MODEL is unset; looked for models/default beside "
              "the program %s and in the current folder): pass --model DIR, or set GEMMA3_MODEL=DIR",
              k > 0 ? exe : "(unknown)");
    return NULL;
}

int cli_model_or_default(const char *cmd, const char **dir) {
    if (*dir) return 0;
    *dir = cli_default_model();
    return *dir ? 0 : cli_fail(cmd, "%s", g3_error());
}
