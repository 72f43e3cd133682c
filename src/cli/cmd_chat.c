// cmd_chat.c: `gemma3 chat` (not built yet).
#include "cli.h"

int cmd_chat(int argc, char **argv) { return cli_fail("chat", "not implemented yet"); }
