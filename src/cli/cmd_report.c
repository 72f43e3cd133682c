// cmd_report.c: `gemma3 report RUN_DIR... --html report.html`: the training report page of
// one or several runs (train/train_report.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "cli.h"
#include "train/train_report.h"

#define CMD "report"

int cmd_report(int argc, char **argv) {
    const char *html = NULL;
    // the run folders are the arguments that are not options (any position)
    const char *dirs[64], *names[64];
    char *rest[256];
    int nd = 0, nr = 0;
    for (int i = 0; i < argc && nr < 256; i++) {
        if (i > 0 && argv[i][0] != '-' && strcmp(argv[i - 1], "--html")) {
            if (nd == 64) return cli_fail(CMD, "at most 64 run folders");
            dirs[nd++] = argv[i];
        } else {
            rest[nr++] = argv[i];
        }
    }
    CliOpt opts[] = {
        {"--html", OPT_STR, &html, "write the offline HTML page here: losses by step / tokens / time, learning rate, gradient norms, "
                                   "and per layer the LoRA, ReLoRA and rank-1 dynamics of every run side by side"},
    };
    CLI_PARSE(CMD, "RUN_DIR [RUN_DIR...] --html report.html", nr, rest, opts);
    if (!nd || !html) return cli_fail(CMD, "give one or more training run folders and --html FILE (see --help)");
    for (int i = 0; i < nd; i++) {  // each run labelled by its folder's last component
        size_t n = strlen(dirs[i]);
        while (n > 1 && dirs[i][n - 1] == '/') n--;
        const char *b = dirs[i] + n;
        while (b > dirs[i] && b[-1] != '/') b--;
        char *nm = g3_malloc(n - (size_t)(b - dirs[i]) + 1);
        if (!nm) return cli_fail(CMD, "out of memory");
        memcpy(nm, b, n - (size_t)(b - dirs[i]));
        nm[n - (size_t)(b - dirs[i])] = 0;
        names[i] = nm;
    }
    int rc = g3_train_report_html(html, dirs, names, nd);
    for (int i = 0; i < nd; i++) free((char *)names[i]);
    if (rc) return cli_fail(CMD, "%s", g3_error());
    fprintf(stderr, "report: %d run%s -> %s\n", nd, nd > 1 ? "s" : "", html);
    return 0;
}
