// report_html.c: the interactive report of `gemma3 analyze --html`: the page in
// report_template.html (built into the program with .incbin, so the binary needs no file at
// run time), with the analysis JSON, attention patterns included, in place of its G3DATA
// marker. The JSON's strings escape '<', '>' and '&', so nothing in a token can end the
// <script> element that holds it.
#include <math.h>
#include <string.h>

#include "base/base.h"
#include "report.h"

// The page, NUL-terminated. The path is relative to the folder make runs in (the repository
// root); the Makefile names the template as a prerequisite of this object.
__asm__(".section .rodata\n"
        ".balign 16\n"
        ".type g3_report_template_html, @object\n"
        "g3_report_template_html:\n"
        ".incbin \"src/analysis/report_template.html\"\n"
        ".byte 0\n"
        ".size g3_report_template_html, .-g3_report_template_html\n"
        ".previous\n");
extern const char g3_report_template_html[];

// Pattern values the page may carry in all (~6 bytes each as text): long prompts show their
// first positions only, and the page says so.
enum { MAX_PATTERN_VALUES = 6000000 };

int g3_an_write_html(const char *path, const G3Analysis *a, int n, const G3AnMeta *meta) {
    const char *tpl = g3_report_template_html, *mark = strstr(tpl, "<!--G3DATA-->");
    if (!mark) return g3_errorf("report template lacks its data marker");
    long per = 0;  // values per position^2/2 over all prompts, heads and both sequences
    for (int i = 0; i < n; i++) per += (long)a[i].L * a[i].NH * (a[i].ind_n ? 2 : 1);
    int maxp = (int)floor(sqrt(2.0 * MAX_PATTERN_VALUES / (double)(per > 0 ? per : 1)));
    G3Str s = {0};
    g3_str_put(&s, tpl, (size_t)(mark - tpl));
    g3_str_puts(&s, "<script type=\"application/json\" id=\"g3data\">");
    if (g3_an_json(&s, a, n, meta, 1, G3_MAX(maxp, 8))) { g3_str_free(&s); return -1; }
    g3_str_puts(&s, "</script>");
    g3_str_puts(&s, mark + strlen("<!--G3DATA-->"));
    int rc = s.oom ? g3_errorf("%s: out of memory", path) : g3_write_file_atomic(path, s.p, s.n);
    g3_str_free(&s);
    return rc;
}
