// cli.h: what the command files of the gemma3 program share: one entry point per command
// and small argument helpers. Commands print errors as "gemma3 CMD: message" and return 1.
#ifndef G3_CLI_H
#define G3_CLI_H

#include <stdint.h>

#include "model/model.h"

int cmd_init(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_forward(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_intervene(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_sae(int argc, char **argv);
int cmd_capacity(int argc, char **argv);
int cmd_sbd(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_kl(int argc, char **argv);
int cmd_report(int argc, char **argv);

// The program's version; the git commit and build flags are printed beside it (main.c).
#include "base/version.h"

// Prints "gemma3 <cmd>: <message>" to stderr and returns 1 (the command's exit code).
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// True when argv[i] is --help or -h anywhere.
int cli_wants_help(int argc, char **argv);
// Parses "2,17,300" into a malloc'd array; returns count or -1 (message in g3_error()).
int cli_parse_ids(const char *s, int32_t **out);
// Strict number parsing for option values: the whole text must be the number, in [lo, hi]
// (floats: finite as well: "nan" and "inf" are refused). -1 with a message that names the
// option and the allowed range.
int cli_int(const char *opt, const char *val, long lo, long hi, long *out);
int cli_float_range(const char *opt, const char *val, double lo, double hi, double *out);
int cli_float(const char *opt, const char *val, double *out);  // any finite number
// C escapes in an option value (\n \t \r \a \b \f \v \e \\ \" \' \xHH (one byte)
// \uXXXX \UXXXXXXXX (UTF-8)) -> a malloc'd string. NULL with a message naming opt for an
// unknown escape, too few hex digits, a NUL, or a surrogate.
char *cli_unescape(const char *opt, const char *s);

// A declarative option table: each command lists its options once, and gets parsing,
// errors that name the option, and --help output from it. A single-valued option given
// twice is an error (the second would silently replace the first); OPT_LIST collects
// every occurrence in order.
typedef enum { OPT_STR, OPT_INT, OPT_FLOAT, OPT_FLAG, OPT_LIST } CliOptType;
enum { CLI_LIST_MAX = 32, CLI_MAX_THREADS = 1024 };
typedef struct {
    const char *v[CLI_LIST_MAX];  // the values, pointing into argv
    int n;
} CliList;
typedef struct {
    const char *name;   // "--model"
    CliOptType type;
    void *dst;          // const char ** / long * / double * / int * / CliList *
    const char *help;   // one line; the default and the range are shown from the fields
    long lo, hi;        // OPT_INT range (both 0: any non-negative; LONG_MIN lo means 0)
    double flo, fhi;    // OPT_FLOAT range (both 0: any finite number)
} CliOpt;
// Returns 0 to go on; -1 after printing --help (exit 0); 1 after an error (printed).
#define CLI_PARSE(cmd, syn, argc, argv, opts)                                              \
    do {                                                                                   \
        int rc_ = cli_parse(cmd, syn, argc, argv, opts, (int)(sizeof(opts) / sizeof(opts[0]))); \
        if (rc_) return rc_ < 0 ? 0 : rc_;                                                 \
    } while (0)
int cli_parse(const char *cmd, const char *synopsis, int argc, char **argv, const CliOpt *opts, int nopts);
// Whether the last cli_parse saw option name (to refuse options that would be ignored).
int cli_given(const char *name);
// Every command's --threads: 0 = all cores, at most CLI_MAX_THREADS (cli_parse enforces it
// for any option named --threads).
#define CLI_THREADS_OPT(var) {"--threads", OPT_INT, &(var), "threads (0: all cores)", 0, CLI_MAX_THREADS}
// Applies --threads (0 = all cores).
void cli_set_threads(long n);

// --adapter on every command that runs the model (cli_model.c).
#define CLI_ADAPTER_OPT(var) \
    {"--adapter", OPT_STR, &(var), "apply this PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) without merging"}
// Loads the model folder and, when adapter_dir is non-NULL, the adapter that then hangs off
// it (m->adapter), and puts it on the device (cli_model_device). 0, or -1 with the message
// set and nothing left to free.
int cli_model_load(G3Model *m, const char *dir, const char *adapter_dir);
// Frees the model, its adapter and its backend.
void cli_model_free(G3Model *m);
// --device on every command that runs the model: the value lands in cli_device, and
// cli_model_device puts the loaded model there (m->be). Without the option: cuda when this
// build has the CUDA backend and a GPU is present, else cpu (a command that never runs the
// model on a device sets cli_device = "cpu" before loading). 0, or -1 with the message set
// ("cuda: no GPU found ...") and the model left on the CPU.
extern const char *cli_device;
#define CLI_DEVICE_OPT \
    {"--device", OPT_STR, &cli_device, "cpu or cuda (default: cuda when this build has it and a GPU is present, else cpu)"}
int cli_model_device(G3Model *m);
// The backend a training command runs on (--device, else cuda where present, else the CPU:
// *out = NULL). cpu_only (1: LoRA with the classification objective, 2: another objective the device
// lacks, 3: a quantized base) keeps the default on the CPU with a note; an explicit --device
// cuda is left to fail with the reason. 0 or -1.
struct G3Backend;
int cli_train_backend(struct G3Backend **out, int cpu_only, const char *cmd);

// The default model, used when a command is given no --model: $GEMMA3_MODEL if set (a model
// folder or a .gguf file; an error if it holds none), else models/default beside the program
// (or one folder up, or ../share/gemma3/), else ./models/default. NULL with a message saying
// where it looked. cli_model_or_default fills *dir when it is NULL: 0, or 1 after printing.
#define CLI_MODEL_HELP " (default: $GEMMA3_MODEL, else models/default, the model trained here)"
const char *cli_default_model(void);
int cli_model_or_default(const char *cmd, const char **dir);

#endif
