// cmd_merge.c: `gemma3 merge`: a model with a PEFT LoRA adapter merged into its weights
// (W + scale * B . A in each weight's stored type), written as a Hub folder.
#include <stdio.h>

#include "base/base.h"
#include "cli.h"
#include "model/adapter.h"

int cmd_merge(int argc, char **argv) {
    const char *dir = NULL, *adapter = NULL, *out = NULL;
    int force = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "base model folder"},
        {"--adapter", OPT_STR, &adapter, "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)"},
        {"--out", OPT_STR, &out, "folder to write config.json and model.safetensors into"},
        {"--force", OPT_FLAG, &force, "replace a model already in --out"},
    };
    CLI_PARSE("merge", "--model DIR --adapter PEFT_DIR --out DIR [--force]", argc, argv, opts);
    if (!dir || !adapter || !out) return cli_fail("merge", "--model, --adapter and --out are required (see --help)");
    G3Model m;
    cli_device = "cpu";  // merging is host arithmetic
    if (cli_model_load(&m, dir, adapter)) return cli_fail("merge", "%s", g3_error());
    const G3Adapter *a = m.adapter;
    double t0 = g3_now();
    int rc = g3_adapter_merge_save(&m, a, out, force);
    if (rc) cli_fail("merge", "%s", g3_error());
    else
        fprintf(stderr, "merge: %d LoRA modules (r = %d, scale %g) merged into %s in %.2f s\n", a->nmodules, a->r, (double)a->scale, out,
                g3_now() - t0);
    cli_model_free(&m);
    return rc ? 1 : 0;
}
