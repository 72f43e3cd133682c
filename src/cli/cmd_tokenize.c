// cmd_tokenize.c: `gemma3 tokenize` (not built yet).
#include "cli.h"

int cmd_tokenize(int argc, char **argv) { return cli_fail("tokenize", "not implemented yet"); }
