// cmd_init.c: `gemma3 init` (not built yet).
#include "cli.h"

int cmd_init(int argc, char **argv) { return cli_fail("init", "not implemented yet"); }
