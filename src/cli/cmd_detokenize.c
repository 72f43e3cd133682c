// cmd_detokenize.c: `gemma3 detokenize` (not built yet).
#include "cli.h"

int cmd_detokenize(int argc, char **argv) { return cli_fail("detokenize", "not implemented yet"); }
