// cli_gen.c: see cli_gen.h.
#include "cli_gen.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "base/base.h"

int cli_sampling_resolve(const CliSampling *cs, const char *model_dir, G3SamplerConfig *out) {
    *out = g3_sampler_defaults();
    // a folder's generation_config.json; a model file (.gguf) has none beside it to read
    struct stat st;
    if (model_dir && stat(model_dir, &st) == 0 && S_ISDIR(st.st_mode) && g3_sampler_config_from_generation_config(out, model_dir))
        return -1;
    if (!isnan(cs->temperature)) out->temperature = (float)cs->temperature;
    if (!isnan(cs->top_p)) out->top_p = (float)cs->top_p;
    if (!isnan(cs->min_p)) out->min_p = (float)cs->min_p;
    if (!isnan(cs->repeat_penalty)) out->repeat_penalty = (float)cs->repeat_penalty;
    if (!isnan(cs->presence)) out->presence_penalty = (float)cs->presence;
    if (!isnan(cs->frequency)) out->frequency_penalty = (float)cs->frequency;
    if (cs->top_k != LONG_MIN) out->top_k = (int)cs->top_k;
    if (cs->repeat_window != LONG_MIN) out->repeat_window = (int)cs->repeat_window;
    if (cs->seed != LONG_MIN) out->seed = (uint64_t)cs->seed;
    return g3_sampler_config_check(out);
}

int cli_stops(const CliList *l, char **out) {
    for (int i = 0; i < l->n; i++) {
        if (!(out[i] = cli_unescape("--stop", l->v[i]))) { cli_stops_free(out, i); return -1; }
        if (!out[i][0]) { cli_stops_free(out, i + 1); return g3_errorf("--stop: an empty stop string would stop at once"); }
    }
    return 0;
}

void cli_stops_free(char **s, int n) {
    for (int i = 0; i < n; i++) free(s[i]);
}

G3Tokenizer *cli_load_tokenizer(const char *path, const char *model_dir, const G3Model *m) {
    G3Tokenizer *tok = g3_tok_load(path ? path : model_dir);
    if (!tok) {
        if (!path) g3_error_prefix("no tokenizer in the model folder (give --tokenizer FILE)");
        return NULL;
    }
    // Gemma 3's tokenizer has one piece more than 1B's embedding (the image soft token, never
    // produced by text); a large surplus means the two do not belong together.
    if (m && g3_tok_vocab_size(tok) > m->cfg.vocab + 64) {
        g3_errorf("the tokenizer has %d pieces but the model's vocabulary has %d rows: they do not belong together",
                  g3_tok_vocab_size(tok), m->cfg.vocab);
        g3_tok_free(tok);
        return NULL;
    }
    return tok;
}
