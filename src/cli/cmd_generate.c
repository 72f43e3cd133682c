// cmd_generate.c: `gemma3 generate`: continue a prompt given as token ids.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "gen/generate.h"

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL;
    long max_tokens = 32, threads = 0, ctx = 0;
    double temperature = 0;
    int print_ids = 0, exact = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder"},
        {"--ids", OPT_STR, &ids_s, "prompt as token ids, comma-separated"},
        {"--max-tokens", OPT_INT, &max_tokens, "new tokens at most", 0, 1 << 24},
        {"--temperature", OPT_FLOAT, &temperature, "0: greedy"},
        {"--print-ids", OPT_FLAG, &print_ids, "print the new ids, comma-separated, on the last line"},
        {"--context", OPT_INT, &ctx, "context to reserve (0: prompt + max-tokens)", 0, 1 << 30},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere"},
        {"--threads", OPT_INT, &threads, "threads (0: all cores)"},
    };
    CLI_PARSE("generate", "--model DIR --ids 2,17,300 [--max-tokens N] [--temperature 0] [--print-ids]", argc, argv, opts);
    if (!dir || !ids_s) return cli_fail("generate", "--model and --ids are required (see --help)");
    if (temperature != 0) return cli_fail("generate", "only --temperature 0 (greedy) is available with --ids for now");
    cli_set_threads(threads);
    int32_t *ids;
    int T = cli_parse_ids(ids_s, &ids);
    if (T < 0) return cli_fail("generate", "--ids: %s", g3_error());
    if (T == 0) { free(ids); return cli_fail("generate", "--ids: no ids given"); }
    G3Model m;
    if (g3_model_load(&m, dir)) { free(ids); return cli_fail("generate", "%s", g3_error()); }
    int rc = 1;
    if (ctx == 0) ctx = G3_MIN((long)m.cfg.max_pos, T + max_tokens);
    if (T >= ctx) { cli_fail("generate", "prompt of %d tokens does not fit the context of %ld (the model's maximum is %d)", T, ctx, m.cfg.max_pos); goto out; }
    G3State *s = g3_state_new(&m, 1, (int)ctx, G3_MIN(T, 512), !exact, NULL);
    if (!s) { cli_fail("generate", "%s", g3_error()); goto out; }
    G3GenOptions o = {.max_tokens = (int)max_tokens};
    G3GenResult r;
    const int32_t *p = ids;
    if (g3_generate(s, &p, &T, 1, &o, &r)) { cli_fail("generate", "%s", g3_error()); g3_state_free(s); goto out; }
    g3_state_free(s);
    if (r.stop == G3_STOP_ERROR) { cli_fail("generate", "%s", r.error); free(r.ids); goto out; }
    fprintf(stderr, "generate: %d prompt tokens, %d new (%s); prefill %.1f tok/s, decode %.1f tok/s\n", T, r.new_tokens,
            g3_stop_name(r.stop), T / (r.prefill_s > 0 ? r.prefill_s : 1e-9), r.new_tokens > 1 ? (r.new_tokens - 1) / r.decode_s : 0.0);
    if (!print_ids) printf("(new ids)\n");
    for (int i = 0; i < r.new_tokens; i++) printf("%s%d", i ? "," : "", r.ids[i]);
    printf("\n");
    free(r.ids);
    rc = 0;
out:
    free(ids);
    g3_model_free(&m);
    return rc;
}
