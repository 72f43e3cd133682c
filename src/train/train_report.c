// train_report.c: the training report page (train_report.h): the runs' metrics lines, checked
// one by one, gathered into {"runs": [{"name", "skipped", "metrics": [...]}]} and put in
// place of the template's G3DATA marker, with every '<' written as \u003c so that no text in
// the data can end the script element.
#include "train_report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".type g3_train_report_template, @object\n"
        "g3_train_report_template:\n"
        ".incbin \"src/train/train_report.html\"\n"
        ".byte 0\n"
        ".size g3_train_report_template, .-g3_train_report_template\n"
        ".previous\n");
extern const char g3_train_report_template[];

// Writes s[len] to f with '<' escaped (inside JSON strings only could it appear).
static void put_safe(FILE *f, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] == '<') fputs("\\u003c", f);
        else fputc(s[i], f);
}

int g3_train_report_html(const char *out, const char *const *dirs, const char *const *names, int n) {
    const char *tpl = g3_train_report_template, *mark = strstr(tpl, "<!--G3DATA-->");
    if (!mark) return g3_errorf("the report template lacks its data marker");
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) return g3_errorf("%s: out of memory", out);
    fwrite(tpl, 1, (size_t)(mark - tpl), f);
    fputs("<script type=\"application/json\" id=\"g3data\">{\"runs\": [", f);
    int rc = -1;
    for (int r = 0; r < n; r++) {
        char path[4200];
        size_t len;
        if (g3_path_join(path, sizeof path, dirs[r], "metrics.jsonl")) goto out;
        if (!g3_file_exists(path)) { g3_errorf("%s: no metrics.jsonl (is it a training run's folder?)", dirs[r]); goto out; }
        char *text = g3_read_file(path, &len);
        if (!text) goto out;
        char *name = NULL;
        size_t nlen = 0;
        FILE *nf = open_memstream(&name, &nlen);
        if (!nf) { free(text); g3_errorf("out of memory"); goto out; }
        json_write_str(nf, names[r], strlen(names[r]));
        fclose(nf);
        fputs(r ? ", {\"name\": " : "{\"name\": ", f);
        put_safe(f, name, nlen);
        free(name);
        fputs(", \"metrics\": [", f);
        int kept = 0, skipped = 0;
        for (size_t i = 0; i < len;) {
            char *nl = memchr(text + i, '\n', len - i);
            size_t e = nl ? (size_t)(nl - text) : len;
            Json j;
            if (e > i) {
                if (!json_parse(&j, text + i, e - i)) {
                    if (json_root(&j)->type == JSON_OBJECT) {
                        fputs(kept++ ? ", " : "", f);
                        put_safe(f, text + i, e - i);
                    } else {
                        skipped++;
                    }
                    json_free(&j);
                } else {
                    skipped++;
                }
            }
            i = e + 1;
        }
        g3_error_clear();
        fprintf(f, "], \"skipped\": %d}", skipped);
        free(text);
    }
    fputs("]}</script>", f);
    fputs(mark + strlen("<!--G3DATA-->"), f);
    rc = 0;
out:
    if (fclose(f) && !rc) rc = g3_errorf("%s: out of memory", out);
    if (!rc) rc = g3_write_file_atomic(out, buf, blen);
    free(buf);
    return rc;
}
