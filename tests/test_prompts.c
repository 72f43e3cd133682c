// test_prompts.c: prompt files in their three shapes, edge cases, malformed files (with the
// message checked), and the sample file reading back.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "check.h"
#include "gen/prompts.h"

static char dir[] = "/tmp/g3_prompts_XXXXXX";

// Writes text to dir/name and loads it; returns the load's status.
static int load(G3Prompts *p, const char *name, const char *text, size_t len) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (g3_write_file_atomic(path, text, len)) return -2;
    int rc = g3_prompts_load(p, path);
    remove(path);
    return rc;
}
#define LOAD(p, name, text) load(p, name, text, sizeof(text) - 1)

static int is(const G3Prompt *it, const char *cat, const char *sub, const char *text, int index) {
    return !strcmp(it->category, cat) && !strcmp(it->subcategory, sub) && !strcmp(it->text, text) &&
           it->index_in_subcategory == index;
}

int main(void) {
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    G3Prompts p;

    CHECK(LOAD(&p, "prompts.json", "{\"math\": {\"algebra\": [\"a1\", \"a2\"], \"geometry\": [\"g1\"]},\n"
                                   " \"code\": [\"c1\", \"c2\\nsecond line\"], \"empty\": {}, \"none\": []}") == 0,
          "%s", g3_error());
    CHECK(p.n == 5 && is(&p.items[0], "math", "algebra", "a1", 0) && is(&p.items[1], "math", "algebra", "a2", 1) &&
              is(&p.items[2], "math", "geometry", "g1", 0) && is(&p.items[3], "code", "default", "c1", 0) &&
              is(&p.items[4], "code", "default", "c2\nsecond line", 1),
          "categorized file, in file order");
    g3_prompts_free(&p);

    CHECK(LOAD(&p, "list.json", "  \n[\"one\", \"\\u00e9t\\u00e9\", \"\"]") == 0 && p.n == 3 &&
              is(&p.items[0], "default", "default", "one", 0) && is(&p.items[1], "default", "default", "\xc3\xa9t\xc3\xa9", 1) &&
              is(&p.items[2], "default", "default", "", 2),
          "list of strings");
    g3_prompts_free(&p);

    CHECK(LOAD(&p, "prompts.txt", "first prompt\n\n   \nsecond {not json}\r\n[third]\nlast without newline") == 0 &&
              p.n == 4 && is(&p.items[0], "default", "default", "first prompt", 0) &&
              is(&p.items[1], "default", "default", "second {not json}", 1) &&
              is(&p.items[2], "default", "default", "[third]", 2) &&
              is(&p.items[3], "default", "default", "last without newline", 3),
          "text file: blank lines skipped, CRLF, a later '[' is text");
    g3_prompts_free(&p);

    CHECK(LOAD(&p, "empty.txt", "") == 0 && p.n == 0, "empty file");
    CHECK(LOAD(&p, "blank.txt", "\n \n\t\n") == 0 && p.n == 0, "blank file");
    CHECK(LOAD(&p, "empty.json", "{}") == 0 && p.n == 0, "empty object");
    CHECK(LOAD(&p, "empty2.json", "[]") == 0 && p.n == 0, "empty list");

    struct { const char *text, *want; } bad[] = {
        {"{\"math\": [\"a\"],\n  \"b\" [\"x\"]}", "prompts.json: line 2, column 7: "},
        {"{\"math\": {\"algebra\": [\"x\", 3]}}", "prompts.json: category 'math' / 'algebra' item 2 is not a string"},
        {"{\"math\": {\"algebra\": \"x\"}}", "prompts.json: category 'math' / 'algebra' is not a list of prompts"},
        {"{\"math\": 5}", "prompts.json: category 'math' is neither a list"},
        {"[\"ok\", null]", "prompts.json: category 'default' / 'default' item 2 is not a string"},
        {"[\"a\\u0000b\"]", "item 1 contains a NUL character"},
        {"[\"unterminated", "prompts.json: line 1"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        int rc = load(&p, "prompts.json", bad[i].text, strlen(bad[i].text));
        CHECK(rc == -1 && strstr(g3_error(), bad[i].want) && p.n == 0 && !p.items, "malformed #%zu: %s", i, g3_error());
    }
    CHECK(load(&p, "nul.txt", "a\nb\0c\n", 6) == -1 && strstr(g3_error(), "nul.txt: line 2 contains a NUL"), "%s", g3_error());
    CHECK(g3_prompts_load(&p, "/nonexistent/prompts.json") == -1 && strstr(g3_error(), "/nonexistent/prompts.json"),
          "missing file: %s", g3_error());

    char path[4200];
    snprintf(path, sizeof path, "%s/sample.json", dir);
    CHECK(g3_prompts_write_sample(path) == 0, "%s", g3_error());
    CHECK(g3_prompts_load(&p, path) == 0 && p.n >= 16, "sample reads back: %s", g3_error());
    int cats = 0;
    for (int i = 0; i < p.n; i++) cats += i == 0 || strcmp(p.items[i].category, p.items[i - 1].category);
    CHECK(cats == 4 && !strcmp(p.items[0].category, "stories") && p.items[p.n - 1].index_in_subcategory == 2,
          "sample: 4 categories");
    g3_prompts_free(&p);
    remove(path);
    remove(dir);
    return check_done();
}
