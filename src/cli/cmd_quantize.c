// cmd_quantize.c: `gemma3 quantize`: a model (Hub folder or GGUF) into a GGUF file of one of
// ggml's types, with llama.cpp's _M mixing rules and the tokenizer carried in the metadata;
// --calibrate: the rounding weighted by each column's importance on a text (quantize_imatrix.h),
// --auto: a type per matrix (quantize_auto.h).
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "cli.h"
#include "model/quantize.h"
#include "model/quantize_auto.h"
#include "model/quantize_imatrix.h"
#include "cli_gen.h"
#include "tokenizer/tokenizer.h"

int cmd_quantize(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "Q8_0", *embed = NULL, *tok = NULL;
    const char *calib = NULL, *calib_ids = NULL;
    double autobits = 0;
    long calib_tokens = LONG_MIN;  // not given: up to 16384 for the weighting, 128 for --auto
    int force = 0, quiet = 0, unweighted = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model: a Hub folder or a .gguf file" CLI_MODEL_HELP},
        {"--out", OPT_STR, &out, "the GGUF file to write"},
        {"--type", OPT_STR, &type, "F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K"},
        {"--embedding", OPT_STR, &embed, "the embedding's type (e.g. BF16 or Q8_0 to keep it at higher precision; default: as --type's rules)"},
        {"--tokenizer", OPT_STR, &tok, "tokenizer to carry in the metadata (default: the model's own, if any)"},
        {"--auto", OPT_FLOAT, &autobits, "choose a type per matrix (Q4_K..Q8_0, fallbacks) for this average bits/weight with the least KL on --calibrate's text (default: off)", 0, 0, 1.0, 32.0},
        {"--calibrate", OPT_STR, &calib, "calibration text file: each matrix's rounding weighted by its input columns' mean x^2 on it (imatrix); --auto's KL measured on it"},
        {"--calibrate-ids", OPT_STR, &calib_ids, "calibration token ids (comma-separated), instead of a text (a model without a tokenizer)"},
        {"--calib-tokens", OPT_INT, &calib_tokens, "tokens of the calibration text used (default: up to 16384 for the weighting, one forward pass over them; the first 128 for --auto, which runs one pass per matrix)", 2, 1 << 20},
        {"--unweighted", OPT_FLAG, &unweighted, "with --calibrate: round as without it (only --auto uses the text)"},
        {"--force", OPT_FLAG, &force, "replace --out if it exists"},
        {"--quiet", OPT_FLAG, &quiet, "do not list each tensor's type"},
    };
    CLI_PARSE("quantize", "--model DIR|FILE.gguf --out FILE.gguf [--type Q4_K_M] [--embedding TYPE] [--calibrate TEXT] [--auto BITS]", argc, argv, opts);
    if (!out) return cli_fail("quantize", "--out is required (see --help)");
    if (cli_model_or_default("quantize", &dir)) return 1;
    if (!force && g3_file_exists(out)) return cli_fail("quantize", "%s exists (give --force to replace it)", out);
    if ((autobits > 0 && !calib && !calib_ids) || (calib && calib_ids))
        return cli_fail("quantize", "--auto takes one of --calibrate FILE or --calibrate-ids IDS (see --help)");
    if (unweighted && !calib && !calib_ids) return cli_fail("quantize", "--unweighted goes with --calibrate or --calibrate-ids (see --help)");
    G3QuantOpts o = {G3_Q8_0, 0, -1, NULL};
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
    int rc = 0;
    G3DType *types = NULL;
    float **imp = NULL;
    if (calib || calib_ids) {
        G3Tokenizer *tk = calib ? cli_load_tokenizer(tok, dir, &m) : NULL;
        size_t len = 0;
        char *text = tk ? g3_read_file(calib, &len) : NULL;
        int32_t *ids = NULL;
        int n = text ? g3_tok_encode_parallel(tk, text, len, 0, 0, 0, &ids) : calib_ids ? cli_parse_ids(calib_ids, &ids) : -1;
        free(text);
        if (n == 0) n = g3_errorf("%s: no calibration tokens (an empty text?)", calib ? calib : "--calibrate-ids");
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= m.cfg.vocab) { n = g3_errorf("--calibrate-ids: id %d is outside the vocabulary (%d)", ids[i], m.cfg.vocab); break; }
        if (calib_tokens > 0 && n > calib_tokens) n = (int)calib_tokens;
        if (n > 0 && tk) ids[0] = g3_tok_bos(tk);
        if (n > 0 && !unweighted) {
            imp = g3_calloc((size_t)m.nt, sizeof *imp);
            rc = !imp || g3_quant_importance(&m, ids, calib_tokens > 0 ? n : G3_MIN(n, 16384), tk ? g3_tok_bos(tk) : -1, imp, !quiet);
            o.importance = imp;
        }
        if (calib_tokens < 0 && n > 128) n = 128;
        if (n > 0 && !rc && autobits > 0) {
            if (n < 2) rc = g3_errorf("--auto needs at least 2 calibration tokens");
            types = rc ? NULL : g3_malloc((size_t)m.nt * sizeof *types);
            rc = rc || !types || g3_quant_auto(&m, ids, n, autobits, types, !quiet);
            o.types = types;
        }
        if (n < 0) rc = -1;
        free(ids);
        g3_tok_free(tk);
    }
    o.tok_required = tok != NULL;
    if (!rc) rc = g3_quantize_model(&m, tok ? tok : dir, &o, out, !quiet);
    free(types);
    const int weighted = imp != NULL;
    if (imp) g3_quant_importance_free(imp, m.nt);
    free(imp);
    const char *how = weighted ? ", rounding weighted by the calibration" : "";
    if (rc) cli_fail("quantize", "%s", g3_error());
    else if (autobits > 0) fprintf(stderr, "quantize: wrote %s (--auto %.3g%s) in %.1f s\n", out, autobits, how, g3_now() - t0);
    else fprintf(stderr, "quantize: wrote %s (%s%s) in %.1f s\n", out, type, how, g3_now() - t0);
    cli_model_free(&m);
    return rc ? 1 : 0;
}
