// cmd_init.c: `gemma3 init`: a random-weight checkpoint of a real shape, in the Hub format.
// It never replaces a model without --force: a folder of trained weights looks like any other.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "model/init.h"
#include "vision/vision.h"
#include "train/rundir.h"

static int add_vision(void *ctx, STWriter *w) { return g3_vision_write(ctx, w); }

int cmd_init(int argc, char **argv) {
    const char *shape = NULL, *out = NULL, *dtype = "bf16";
    long seed = 0, shard_mb = 4096;
    double std = 0.02;
    int force = 0, text_only = 0;
    CliOpt opts[] = {
        {"--shape", OPT_STR, &shape, "270m, 1b, 4b, 12b, 27b, tiny, stories, or a config.json to copy the shape from"},
        {"--out", OPT_STR, &out, "folder to write config.json and model.safetensors into"},
        {"--dtype", OPT_STR, &dtype, "bf16, f16 or f32"},
        {"--seed", OPT_INT, &seed, "random seed"},
        {"--std", OPT_FLOAT, &std, "standard deviation of the weights (norm weights are 0)"},
        {"--shard-mb", OPT_INT, &shard_mb, "largest shard in MiB; above it the checkpoint is sharded", 1, 1 << 20},
        {"--text-only", OPT_FLAG, &text_only, "4b, 12b, 27b: no vision tower (they get SigLIP's 896-pixel tower and projector otherwise)"},
        {"--force", OPT_FLAG, &force, "replace a model already in --out (its other layout's files are removed too)"},
    };
    CLI_PARSE("init", "--shape 270m|1b|4b|12b|27b|tiny|FILE.json --out DIR [--dtype bf16|f32] [--seed S] [--force]", argc, argv, opts);
    if (!shape || !out) return cli_fail("init", "--shape and --out are required (see --help)");
    G3DType dt;
    if (!strcmp(dtype, "bf16")) dt = G3_BF16;
    else if (!strcmp(dtype, "f32")) dt = G3_F32;
    else if (!strcmp(dtype, "f16")) dt = G3_F16;
    else return cli_fail("init", "--dtype must be bf16, f16 or f32, not '%s'", dtype);
    if (!(std >= 0 && isfinite(std))) return cli_fail("init", "--std must be a finite number >= 0, not %g", std);
    if (!force && g3_dir_holds_model(out))
        return cli_fail("init", "%s already holds a model (config.json / model.safetensors): give --force to replace it, or another --out",
                        out);
    G3Config c;
    size_t n = strlen(shape);
    int rc = n > 5 && !strcmp(shape + n - 5, ".json") ? g3_config_load(&c, shape) : g3_config_preset(&c, shape);
    if (rc) return cli_fail("init", "%s", g3_error());
    g3_tmp_clean(out, NULL);  // what a killed init left behind
    double t0 = g3_now();
    // the shapes that ship as Gemma3ForConditionalGeneration get their vision tower too
    const int vision = !text_only && (!strcmp(shape, "4b") || !strcmp(shape, "12b") || !strcmp(shape, "27b"));
    G3Vision v = {0};
    G3VisionConfig vc;
    char cfg[4200];
    if (vision) {
        g3_vision_preset(&vc, c.hidden);
        if (g3_vision_random(&v, &vc, dt, (uint64_t)seed, (float)std)) return cli_fail("init", "%s", g3_error());
    }
    rc = g3_init_checkpoint_ex(&c, out, dt, (uint64_t)seed, (float)std, (size_t)shard_mb << 20, 1, vision ? add_vision : NULL, &v);
    if (!rc && vision) rc = g3_path_join(cfg, sizeof cfg, out, "config.json") || g3_vision_config_wrap(cfg, &vc);
    if (vision) g3_vision_free(&v);
    if (rc) return cli_fail("init", "%s", g3_error());
    fprintf(stderr, "init: wrote %s (%s, seed %ld) in %.1f s\n", out, dtype, seed, g3_now() - t0);
    return 0;
}
