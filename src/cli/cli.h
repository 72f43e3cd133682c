// cli.h: what the command files of the gemma3 program share: one entry point per command
// and small argument helpers. Commands print errors as "gemma3 CMD: message" and return 1.
#ifndef G3_CLI_H
#define G3_CLI_H

#include <stdint.h>

int cmd_init(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_intervene(int argc, char **argv);

// Prints "gemma3 <cmd>: <message>" to stderr and returns 1 (the command's exit code).
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// True when argv[i] is --help or -h anywhere.
int cli_wants_help(int argc, char **argv);
// Parses "2,17,300" into a malloc'd array; returns count or -1 (message in g3_error()).
int cli_parse_ids(const char *s, int32_t **out);
// Strict number parsing for option values: -1 with a message naming the option on error.
int cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int cli_float(const char *opt, const char *val, double *out);

// A declarative option table: each command lists its options once, and gets parsing,
// errors that name the option, and --help output from it.
typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_FLAG } CliOptType;
typedef struct {
    const char *name;   // "--model"
    CliOptType type;
    void *dst;          // const char ** / long * / double * / int *
    const char *help;   // one line; the default is shown from *dst
    long lo, hi;        // OPT_INT range (both 0: any non-negative)
} CliOpt;
// Returns 0 to go on; -1 after printing --help (exit 0); 1 after an error (printed).
#define CLI_PARSE(cmd, syn, argc, argv, opts)                                              \
    do {                                                                                   \
        int rc_ = cli_parse(cmd, syn, argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0]))); \
        if (rc_) return rc_ < 0 ? 0 : rc_;                                                 \
    } while (0)
int cli_parse(const char *cmd, const char *synopsis, int argc, char **argv, const CliOpt *opts, int nopts);
// Applies --threads (0 = all cores).
void cli_set_threads(long n);

#endif
