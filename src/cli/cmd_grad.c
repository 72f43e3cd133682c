// cmd_grad.c: `gemma3 grad` (not built yet).
#include "cli.h"

int cmd_grad(int argc, char **argv) { return cli_fail("grad", "not implemented yet"); }
