// cmd_generate.c: `gemma3 generate` (not built yet).
#include "cli.h"

int cmd_generate(int argc, char **argv) { return cli_fail("generate", "not implemented yet"); }
