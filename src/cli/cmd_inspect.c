// cmd_inspect.c: `gemma3 inspect` (not built yet).
#include "cli.h"

int cmd_inspect(int argc, char **argv) { return cli_fail("inspect", "not implemented yet"); }
