// cmd_train.c: `gemma3 train` (not built yet).
#include "cli.h"

int cmd_train(int argc, char **argv) { return cli_fail("train", "not implemented yet"); }
