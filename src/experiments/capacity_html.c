// capacity_html.c: the offline report of `gemma3 capacity --grid --html`: the page in
// capacity_template.html (built into the program with .incbin, as the analysis report is),
// with the grid's results.json in place of its G3DATA marker; the page's script draws the
// charts (SVG) and tables from it, with nothing fetched from anywhere.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "capacity_grid.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".type g3_capacity_template_html, @object\n"
        "g3_capacity_template_html:\n"
        ".incbin \"src/experiments/capacity_template.html\"\n"
        ".byte 0\n"
        ".size g3_capacity_template_html, .-g3_capacity_template_html\n"
        ".previous\n");
extern const char g3_capacity_template_html[];

int g3_cap_html_write(const char *path, const char *json, size_t len) {
    const char *tpl = g3_capacity_template_html, *mark = strstr(tpl, "<!--G3DATA-->");
    if (!mark) return g3_errorf("capacity report template lacks its data marker");
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return g3_errorf("%s: out of memory", path);
    fwrite(tpl, 1, (size_t)(mark - tpl), f);
    fputs("<script type=\"application/json\" id=\"g3data\">", f);
    // '<' can only stand inside a JSON string: written as \u003c, no text can end the element
    for (size_t i = 0; i < len; i++)
        if (json[i] == '<') fputs("\\u003c", f);
        else fputc(json[i], f);
    fputs("</script>", f);
    fputs(mark + strlen("<!--G3DATA-->"), f);
    if (fclose(f)) { free(buf); return g3_errorf("%s: out of memory", path); }
    int rc = g3_write_file_atomic(path, buf, n);
    free(buf);
    return rc;
}
