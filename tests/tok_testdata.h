// tok_testdata.h: where the tokenizer tests find Gemma 3's tokenizer. The repository keeps
// tokenizer.json gzipped (33 MB -> 5 MB); the first test to need it unpacks it into the build
// folder (gzip is on every Debian), so a fresh clone tests offline.
#ifndef G3_TOK_TESTDATA_H
#define G3_TOK_TESTDATA_H

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/base.h"

#define TOK_DATA "tests/data/tokenizer"

// Path of the unpacked tokenizer.json (in $BUILD/tokdata), or NULL.
static const char *tok_json_path(void) {
    static char path[512];
    const char *build = getenv("BUILD");
    char dir[400];
    snprintf(dir, sizeof dir, "%s/tokdata", build && *build ? build : "build");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (g3_file_exists(path)) return path;
    if (g3_mkdir_p(dir)) return NULL;
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "gzip -dc %s/tokenizer.json.gz > %s.tmp.%d && mv %s.tmp.%d %s", TOK_DATA, path, (int)getpid(),
             path, (int)getpid(), path);
    if (system(cmd) != 0) { fprintf(stderr, "cannot unpack %s/tokenizer.json.gz\n", TOK_DATA); return NULL; }
    return path;
}

#endif
