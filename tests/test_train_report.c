// test_train_report.c: `gemma3 report RUN_DIR... --html` (train/train_report.h):
//   - the page holds every valid metrics line of each run and counts the torn / damaged ones;
//   - no '<' from the data reaches the page (a run named "</script>" stays inside its string);
//   - a folder without metrics.jsonl is an error naming it; the command's refusals;
//   - rendered in headless Chromium (where installed; skipped with a note otherwise): the
//     script ran and drew its charts (the body's data-charts count).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "train/train_report.h"

static void write_run(const char *dir, int merges) {
    char p[400];
    snprintf(p, sizeof p, "mkdir -p %s", dir);
    sh("%s", p);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "w");
    for (int s = 1; s <= 12; s++) {
        fprintf(f, "{\"step\": %d, \"loss\": %.4f, \"lr\": %.5f, \"grad_norm\": %.3f, \"tokens_per_s\": 1000.0, \"tokens\": %d", s,
                6.0 - 0.1 * s, 1e-3 * (s % 4 + 1) / 4, 1.0 + 0.01 * s, 512 * s);
        if (s % 3 == 0) fprintf(f, ", \"val_loss\": %.4f, \"lora_update_norm\": [0.1, 0.2, %.2f], \"update_erank\": [3, 5, %d]", 6.1 - 0.1 * s, 0.01 * s, s);
        if (merges && s % 4 == 0) fprintf(f, ", \"relora_merge\": %d, \"relora_pruned\": 0.99", s / 4);
        fprintf(f, "}\n");
    }
    fprintf(f, "not json\n{\"step\": 13, \"loss\"");  // a damaged line and a torn last one
    fclose(f);
}

int main(void) {
    char dir[] = "/tmp/g3_train_report_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    char a[300], b[300], out[300], text[300];
    snprintf(a, sizeof a, "%s/relora", dir);
    snprintf(b, sizeof b, "%s/full", dir);
    snprintf(out, sizeof out, "%s/report.html", dir);
    write_run(a, 1);
    write_run(b, 0);
    const char *dirs[] = {a, b}, *names[] = {"</script><b>x", "full"};
    CHECK(g3_train_report_html(out, dirs, names, 2) == 0, "%s", g3_error());
    size_t len = 0;
    char *html = g3_read_file(out, &len);
    CHECK(html && strstr(html, "\"skipped\": 2") && !strstr(html, "<!--G3DATA-->"), "the data is in place; 2 bad lines counted per run");
    int steps = 0;
    for (const char *p = html; p && (p = strstr(p, "\"step\": ")); p++) steps++;
    CHECK(steps == 24, "every valid line of both runs is on the page (%d)", steps);
    const char *data = html ? strstr(html, "id=\"g3data\">") : NULL;
    const char *end = data ? strstr(data, "</script>") : NULL;
    CHECK(data && end && !memchr(data + 12, '<', (size_t)(end - data - 12)) && strstr(html, "\\u003c/script>\\u003cb>x"),
          "no '<' of the data inside the script element (the run's name escaped)");
    free(html);
    const char *none[] = {dir};
    snprintf(text, sizeof text, "%s/nothere.html", dir);
    CHECK(g3_train_report_html(text, none, names, 1) == -1 && strstr(g3_error(), "no metrics.jsonl") && !g3_file_exists(text),
          "a folder without metrics.jsonl is refused by name, nothing written: %s", g3_error());
    // the command
    CHECK(sh("%s report %s %s --html %s/cmd.html 2>/dev/null && grep -q '\"name\": \"relora\"' %s/cmd.html", bin, a, b, dir, dir) == 0,
          "gemma3 report RUN RUN --html FILE, runs named by their folders");
    CHECK(sh("%s report %s 2>/dev/null", bin, a) == 1, "--html is required");
    CHECK(sh("%s report --html %s/x.html 2>/dev/null", bin, dir) == 1, "a run folder is required");
    // headless Chromium: the page's script draws its charts
    if (sh("command -v chromium >/dev/null 2>&1") != 0) {
        printf("skipped: the Chromium rendering (no chromium; scripts/deps.sh installs it)\n");
    } else {
        CHECK(sh("cd %s && timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir=%s/chr --dump-dom file://%s/cmd.html "
                 "2>/dev/null | grep -Eq 'data-charts=\"(9|[1-9][0-9])\"'",
                 dir, dir, dir) == 0,
              "Chromium runs the page's script: 9 or more charts drawn");
    }
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
