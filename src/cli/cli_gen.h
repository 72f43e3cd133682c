// cli_gen.h: what `generate` and `chat` share: sampling options (unset ones come from the
// model's generation_config.json, then Gemma's defaults), and loading model + tokenizer.
#ifndef G3_CLI_GEN_H
#define G3_CLI_GEN_H

#include <limits.h>
#include <math.h>

#include "cli.h"
#include "model/model.h"
#include "sampler/sampler.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    double temperature, top_p, min_p, repeat_penalty, presence, frequency;
    long top_k, repeat_window, seed;
} CliSampling;

#define CLI_SAMPLING_INIT {NAN, NAN, NAN, NAN, NAN, NAN, LONG_MIN, LONG_MIN, LONG_MIN}
// Ranges: what the sampler accepts (temperature, top-p, min-p, penalties) with wide but finite
// upper bounds; NaN and inf are refused by the parser, so NAN above can only mean "not set".
#define CLI_SAMPLING_OPTS(cs)                                                                          \
    {"--temperature", OPT_FLOAT, &(cs).temperature, "0: greedy (default: generation_config.json, else 1.0)", 0, 0, 0, 100}, \
    {"--top-k", OPT_INT, &(cs).top_k, "keep the k most likely tokens, 0 = off (default 64)", 0, INT_MAX},                     \
    {"--top-p", OPT_FLOAT, &(cs).top_p, "nucleus mass, 1 = off (default 0.95)", 0, 0, 0, 1},                                 \
    {"--min-p", OPT_FLOAT, &(cs).min_p, "drop tokens below min-p x the top probability (default 0)", 0, 0, 0, 1},           \
    {"--repeat-penalty", OPT_FLOAT, &(cs).repeat_penalty, "CTRL-style repetition penalty, 1 = off", 0, 0, 0.001, 1000},       \
    {"--repeat-window", OPT_INT, &(cs).repeat_window, "tokens the penalties look back over, 0 = all (default 64)", 0, INT_MAX}, \
    {"--presence-penalty", OPT_FLOAT, &(cs).presence, "subtract from tokens present in the window", 0, 0, -100, 100},       \
    {"--frequency-penalty", OPT_FLOAT, &(cs).frequency, "subtract per occurrence in the window", 0, 0, -100, 100},            \
    {"--seed", OPT_INT, &(cs).seed, "random seed (default 0); same seed, same text at any thread count"}

// --stop, repeatable: each value with C escapes (\n, \t, \xHH, \uXXXX...) interpreted.
#define CLI_STOP_HELP "stop when the output contains this string; C escapes (\\n \\t \\\\ \\xHH \\uXXXX) are interpreted; repeat for several (<eos> and <end_of_turn> always stop)"
// The --stop values unescaped into out[] (malloc'd strings; free with cli_stops_free). 0 or -1.
int cli_stops(const CliList *l, char **out);
void cli_stops_free(char **s, int n);

// defaults <- generation_config.json in model_dir <- options given. 0 or -1 (message set).
int cli_sampling_resolve(const CliSampling *cs, const char *model_dir, G3SamplerConfig *out);
// Loads the tokenizer from path, or else from the model folder; checks it covers the model's
// vocabulary ids it may produce. NULL with a message.
G3Tokenizer *cli_load_tokenizer(const char *path, const char *model_dir, const G3Model *m);

#endif
