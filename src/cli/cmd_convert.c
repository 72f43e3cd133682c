// cmd_convert.c: `gemma3 convert`: a model to a Hub folder (config.json, model.safetensors,
// the tokenizer). From a GGUF file of unquantized types (F32, F16, BF16), so a GGUF model can
// be fine-tuned or read by any Hub tool; norms come out as the Hub stores them (w, not the
// converter's 1 + w: the GGUF source already presents them so). From a Hub folder or GGUF
// with --type SFP8: the linear weights (the *_proj.weight matrices) in gemma.cpp's SFP8
// (tensor/sfp8.h), the rest as stored; a matrix with some |w| > 1.875 keeps its type (gemma.cpp
// would store it scaled; we have no per-tensor scale: docs/quantization.md). For each SFP8
// matrix, stderr shows its relative RMS error and Q8_0's on the same values.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"
#include "cli.h"
#include "io/safetensors.h"
#include "io/source.h"
#include "tensor/quant.h"
#include "tensor/sfp8.h"
#include "tokenizer/tok_gguf.h"

static int ends_with(const char *s, const char *tail) {
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && !strcmp(s + a - b, tail);
}

// sqrt(sum (x - x')^2 / sum x^2) of x through type t and back; -1 if t cannot hold these rows.
static double rel_rms(const float *x, int64_t rows, int64_t cols, G3DType t) {
    const G3TypeTraits *tt = g3_type(t);
    const int64_t rb = g3_type_row_bytes(t, cols);
    if (rb < 0) return -1;
    void *q = malloc((size_t)rb);
    float *y = malloc((size_t)cols * sizeof *y);
    double num = 0, den = 0;
    for (int64_t r = 0; q && y && r < rows; r++) {
        tt->from_f32(q, x + r * cols, cols);
        tt->to_f32(y, q, cols);
        for (int64_t k = 0; k < cols; k++) {
            const double d = (double)x[r * cols + k] - y[k];
            num += d * d, den += (double)x[r * cols + k] * x[r * cols + k];
        }
    }
    const int ok = q && y;
    free(q), free(y);
    return ok ? (den > 0 ? sqrt(num / den) : 0) : -1;
}

// t's data to SFP8 into *out (malloc'd); 1: kept (not a linear weight, or out of range).
static int to_sfp8(const G3SourceTensor *t, void **out, double *e_sfp, double *e_q8) {
    if (t->ndim != 2 || !ends_with(t->name, "_proj.weight") || !g3_type(t->type)->is_float) return 1;
    const int64_t n = t->shape[0] * t->shape[1];
    float *f = malloc((size_t)n * sizeof *f);
    if (!f) return g3_errorf("tensor '%s': out of memory", t->name);
    for (int64_t r = 0; r < t->shape[0]; r++)
        g3_type(t->type)->to_f32(f + r * t->shape[1], (const char *)t->data + r * g3_type_row_bytes(t->type, t->shape[1]), t->shape[1]);
    float mx = 0;
    for (int64_t i = 0; i < n; i++) mx = fmaxf(mx, fabsf(f[i]));
    if (!(mx <= G3_SFP8_MAX)) {
        fprintf(stderr, "convert: %s keeps %s: max |w| %g > %g (SFP8 without a scale cannot hold it)\n", t->name,
                g3_dtype_name(t->type), mx, G3_SFP8_MAX);
        free(f);
        return 1;
    }
    uint8_t *q = malloc((size_t)n);
    if (!q) {
        free(f);
        return g3_errorf("tensor '%s': out of memory", t->name);
    }
    g3_sfp8_from_f32(q, f, n);
    *e_sfp = rel_rms(f, t->shape[0], t->shape[1], G3_SFP8);
    *e_q8 = rel_rms(f, t->shape[0], t->shape[1], G3_Q8_0);
    free(f);
    *out = q;
    return 0;
}

// Copies the tokenizer files of a Hub folder in to out (those present).
static int copy_tokenizer(const char *in, const char *out) {
    static const char *names[] = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                                  "generation_config.json"};
    char a[4200], b[4200];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (g3_path_join(a, sizeof a, in, names[i]) || g3_path_join(b, sizeof b, out, names[i])) return -1;
        if (!g3_file_exists(a)) continue;
        size_t len;
        char *text = g3_read_file(a, &len);
        if (!text) return -1;
        const int rc = g3_write_file_atomic(b, text, len);
        free(text);
        if (rc) return -1;
    }
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *type = NULL;
    int force = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &in, "the .gguf file (F32, F16 or BF16 tensors), or with --type a Hub folder"},
        {"--out", OPT_STR, &out, "the Hub folder to write"},
        {"--type", OPT_STR, &type, "SFP8: linear weights in gemma.cpp's 8-bit switched floating point"},
        {"--force", OPT_FLAG, &force, "replace a model already in --out"},
    };
    CLI_PARSE("convert", "--model FILE.gguf|DIR --out DIR [--type SFP8] [--force]", argc, argv, opts);
    if (!in || !out) return cli_fail("convert", "--model and --out are required (see --help)");
    if (type && strcasecmp(type, "SFP8")) return cli_fail("convert", "--type %s: the only type is SFP8", type);
    const int sfp8 = type != NULL;
    char path[4200];
    if (!force && !g3_path_join(path, sizeof path, out, "config.json") && g3_file_exists(path))
        return cli_fail("convert", "%s already holds a model: give --force to replace it", out);
    G3WeightSource *src;
    if (g3_source_open(&src, in)) return cli_fail("convert", "%s", g3_error());
    STWriter w = {0};
    char *cfg = NULL;
    size_t cfg_len;
    int rc = 1, hub = 0, nsfp = 0;
    const int got = src->config_json ? src->config_json(src, &cfg, &cfg_len) : 1;
    if (got < 0) goto out;
    if (got > 0) {
        hub = 1;
        if (!sfp8) {
            g3_errorf("%s: not a GGUF model (no config in its metadata); a Hub folder needs --type", in);
            goto out;
        }
        if (g3_path_join(path, sizeof path, in, "config.json")) goto out;
        if (!(cfg = g3_read_file(path, &cfg_len))) goto out;
    }
    double sum_sfp = 0, sum_q8 = 0;
    for (int i = 0; i < src->count(src); i++) {
        G3SourceTensor t;
        if (src->at(src, i, &t)) goto out;
        if (sfp8) {
            void *q = NULL;
            double es = 0, e8 = 0;
            const int k = to_sfp8(&t, &q, &es, &e8);
            if (k < 0) goto out;
            if (k == 0) {
                fprintf(stderr, "convert: %-48s SFP8 rel RMS %.5f  (Q8_0 %.5f)\n", t.name, es, e8);
                sum_sfp += es, sum_q8 += e8, nsfp++;
                if (st_writer_add_owned(&w, t.name, G3_SFP8, t.ndim, t.shape, q)) goto out;
                continue;
            }
        }
        if (!hub && t.type != G3_F32 && t.type != G3_F16 && t.type != G3_BF16) {
            g3_errorf("tensor '%s' is %s: convert writes unquantized types only (F32, F16, BF16)", t.name, g3_dtype_name(t.type));
            goto out;
        }
        if (st_writer_add(&w, t.name, t.type, t.ndim, t.shape, t.data)) goto out;
    }
    if (nsfp) fprintf(stderr, "convert: %d SFP8 matrices, mean rel RMS %.5f (Q8_0 %.5f)\n", nsfp, sum_sfp / nsfp, sum_q8 / nsfp);
    if (g3_mkdir_p(out) || st_writer_write_sharded(&w, out, (size_t)5 << 30)) goto out;
    if (hub) {
        if (copy_tokenizer(in, out)) goto out;
    } else {
        if (g3_path_join(path, sizeof path, out, "tokenizer.model")) goto out;
        if (g3_tok_gguf_to_spm(in, path)) {
            fprintf(stderr, "convert: no tokenizer.model written (%s)\n", g3_error());
            g3_error_clear();
        }
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
