// cmd_forward.c: `gemma3 forward` (not built yet).
#include "cli.h"

int cmd_forward(int argc, char **argv) { return cli_fail("forward", "not implemented yet"); }
