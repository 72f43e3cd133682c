// cmd_quantize.c: `gemma3 quantize`: a model (Hub folder or GGUF) into a GGUF file of one of
// ggml's types, with llama.cpp's _M mixing rules and the tokenizer carried in the metadata.
#include <stdio.h>

#include "base/base.h"
#include "cli.h"
#include "model/quantize.h"

int cmd_quantize(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "Q8_0", *embed = NULL, *tok = NULL;
    int force = 0, quiet = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model: a Hub folder or a .gguf file" CLI_MODEL_HELP},
        {"--out", OPT_STR, &out, "the GGUF file to write"},
        {"--type", OPT_STR, &type, "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K (default Q8_0)"},
        {"--embedding", OPT_STR, &embed, "the embedding's type (e.g. BF16 or Q8_0 to keep it at higher precision; default: as --type's rules)"},
        {"--tokenizer", OPT_STR, &tok, "tokenizer to carry in the metadata (default: the model's own, if any)"},
        {"--force", OPT_FLAG, &force, "replace --out if it exists"},
        {"--quiet", OPT_FLAG, &quiet, "do not list each tensor's type"},
    };
    CLI_PARSE("quantize", "--model DIR|FILE.gguf --out FILE.gguf [--type Q4_K_M] [--embedding TYPE]", argc, argv, opts);
    if (!out) return cli_fail("quantize", "--out is required (see --help)");
    if (cli_model_or_default("quantize", &dir)) return 1;
    if (!force && g3_file_exists(out)) return cli_fail("quantize", "%s exists (give --force to replace it)", out);
    G3QuantOpts o = {G3_Q8_0, 0, -1};
    if (g3_quant_opts_parse(&o, type)) return cli_fail("quantize", "--type: %s", g3_error());
    if (embed) {
        G3QuantOpts e = o;
        if (g3_quant_opts_parse(&e, embed)) return cli_fail("quantize", "--embedding: %s", g3_error());
        o.embed_type = e.type;
    }
    G3Model m;
    cli_device = "cpu";
    if (cli_model_load(&m, dir, NULL)) return cli_fail("quantize", "%s", g3_error());
    double t0 = g3_now();
    int rc = g3_quantize_model(&m, tok ? tok : dir, &o, out, !quiet);
    if (rc) cli_fail("quantize", "%s", g3_error());
    else fprintf(stderr, "quantize: wrote %s (%s) in %.1f s\n", out, type, g3_now() - t0);
    cli_model_free(&m);
    return rc ? 1 : 0;
}
