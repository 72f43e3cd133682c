// cmd_convert.c: `gemma3 convert`: a GGUF file of unquantized types (F32, F16, BF16) back to a
// Hub folder (config.json, model.safetensors, tokenizer.model), so a GGUF model can be
// fine-tuned or read by any Hub tool. Norms come out as the Hub stores them (w, not the
// converter's 1 + w: the GGUF source already presents them so).
#include <stdio.h>
#include <stdlib.h>

#include "base/base.h"
#include "cli.h"
#include "io/safetensors.h"
#include "io/source.h"
#include "tokenizer/tok_gguf.h"

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int force = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &in, "the .gguf file (F32, F16 or BF16 tensors)"},
        {"--out", OPT_STR, &out, "the Hub folder to write"},
        {"--force", OPT_FLAG, &force, "replace a model already in --out"},
    };
    CLI_PARSE("convert", "--model FILE.gguf --out DIR [--force]", argc, argv, opts);
    if (!in || !out) return cli_fail("convert", "--model and --out are required (see --help)");
    char path[4200];
    if (!force && !g3_path_join(path, sizeof path, out, "config.json") && g3_file_exists(path))
        return cli_fail("convert", "%s already holds a model: give --force to replace it", out);
    G3WeightSource *src;
    if (g3_source_open(&src, in)) return cli_fail("convert", "%s", g3_error());
    STWriter w = {0};
    char *cfg = NULL;
    size_t cfg_len;
    int rc = 1;
    if (!src->config_json || src->config_json(src, &cfg, &cfg_len) != 0) {
        g3_errorf("%s: not a GGUF model (no config in its metadata)", in);
        goto out;
    }
    for (int i = 0; i < src->count(src); i++) {
        G3SourceTensor t;
        if (src->at(src, i, &t)) goto out;
        if (t.type != G3_F32 && t.type != G3_F16 && t.type != G3_BF16) {
            g3_errorf("tensor '%s' is %s: convert writes unquantized types only (F32, F16, BF16)", t.name, g3_dtype_name(t.type));
            goto out;
        }
        if (st_writer_add(&w, t.name, t.type, t.ndim, t.shape, t.data)) goto out;
    }
    if (g3_mkdir_p(out) || st_writer_write_sharded(&w, out, (size_t)5 << 30)) goto out;
    if (g3_path_join(path, sizeof path, out, "tokenizer.model")) goto out;
    if (g3_tok_gguf_to_spm(in, path)) {
        fprintf(stderr, "convert: no tokenizer.model written (%s)\n", g3_error());
        g3_error_clear();
    }
    if (g3_path_join(path, sizeof path, out, "config.json") || g3_write_file_atomic(path, cfg, cfg_len)) goto out;
    fprintf(stderr, "convert: %s -> %s (%d tensors)\n", in, out, src->count(src));
    rc = 0;
out:
    if (rc) cli_fail("convert", "%s", g3_error());
    st_writer_free(&w);
    free(cfg);
    g3_source_close(src);
    return rc;
}
