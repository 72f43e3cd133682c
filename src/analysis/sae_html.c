// sae_html.c: the report of `gemma3 sae --html`: the prompt's tokens with each token's top
// SAE features, the features' activations over the prompt, and the run's reconstruction
// figures, as one offline page (sae_template.html, built into the program with .incbin as
// the analysis report is). Only the features that make some token's top list travel (their
// activation at every token), so the page stays small for any SAE width.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "report.h"
#include "sae_report.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        ".type g3_sae_template_html, @object\n"
        "g3_sae_template_html:\n"
        ".incbin \"src/analysis/sae_template.html\"\n"
        ".byte 0\n"
        ".size g3_sae_template_html, .-g3_sae_template_html\n"
        ".previous\n");
extern const char g3_sae_template_html[];

static void num(G3Str *s, double v) {
    if (isfinite(v)) g3_str_printf(s, "%.5g", v);
    else g3_str_puts(s, "null");
}

// Indices of row f[S]'s top (positive) features, value descending then index ascending.
static int top_of(const float *f, int S, int top, int32_t *best) {
    int nb = 0;
    for (int j = 0; j < S; j++) {
        if (!(f[j] > 0)) continue;
        int k = nb < top ? nb++ : top;
        if (k == top && f[j] <= f[best[top - 1]]) continue;
        if (k == top) k = top - 1;
        while (k > 0 && f[best[k - 1]] < f[j]) { best[k] = best[k - 1]; k--; }
        best[k] = j;
    }
    return nb;
}

int g3_sae_json(G3Str *s, const G3SaeReport *r) {
    const int T = r->T, S = r->d_sae, top = r->top > 0 ? r->top : 10;
    int32_t *best = malloc(sizeof(int32_t) * (size_t)top);
    uint8_t *used = calloc((size_t)S, 1);
    if (!best || !used) { free(best); free(used); return g3_errorf("sae report: out of memory"); }
    g3_str_puts(s, "{\"model\":");
    g3_str_json(s, r->model, strlen(r->model));
    g3_str_puts(s, ",\"sae\":");
    g3_str_json(s, r->sae, strlen(r->sae));
    g3_str_puts(s, ",\"site\":");
    g3_str_json(s, r->site, strlen(r->site));
    g3_str_puts(s, ",\"format\":");
    g3_str_json(s, r->format, strlen(r->format));
    g3_str_puts(s, ",\"kind\":");
    g3_str_json(s, r->kind, strlen(r->kind));
    g3_str_printf(s, ",\"d_model\":%d,\"d_sae\":%d,\"T\":%d,\"mse\":", r->d_model, S, T);
    num(s, r->mse);
    g3_str_puts(s, ",\"fvu\":"), num(s, r->fvu);
    g3_str_puts(s, ",\"l0\":"), num(s, r->l0);
    g3_str_puts(s, ",\"loss_clean\":"), num(s, r->loss_clean);
    g3_str_puts(s, ",\"loss_spliced\":"), num(s, r->loss_spliced);
    g3_str_puts(s, ",\"tokens\":[");
    for (int t = 0; t < T; t++) {
        const float *f = r->F + (size_t)t * S;
        char buf[256];
        g3_an_token_text(buf, sizeof buf, r->tok, r->ids[t]);
        g3_str_printf(s, "%s{\"id\":%d,\"text\":", t ? "," : "", r->ids[t]);
        g3_str_json(s, buf, strlen(buf));
        int l0 = 0;
        for (int j = 0; j < S; j++) l0 += f[j] != 0;
        g3_str_printf(s, ",\"l0\":%d,\"top\":[", l0);
        const int nb = top_of(f, S, top, best);
        for (int k = 0; k < nb; k++) {
            g3_str_printf(s, "%s[%d,", k ? "," : "", best[k]);
            num(s, f[best[k]]);
            g3_str_puts(s, "]");
            used[best[k]] = 1;
        }
        g3_str_puts(s, "]}");
    }
    g3_str_puts(s, "],\"features\":{");
    int first = 1;
    for (int j = 0; j < S; j++) {
        if (!used[j]) continue;
        g3_str_printf(s, "%s\"%d\":[", first ? "" : ",", j);
        first = 0;
        for (int t = 0; t < T; t++) {
            if (t) g3_str_puts(s, ",");
            num(s, r->F[(size_t)t * S + j]);
        }
        g3_str_puts(s, "]");
    }
    g3_str_puts(s, "}}");
    free(best);
    free(used);
    return s->oom ? g3_errorf("sae report: out of memory") : 0;
}

int g3_sae_write_html(const char *path, const G3SaeReport *r) {
    const char *tpl = g3_sae_template_html, *mark = strstr(tpl, "<!--G3DATA-->");
    if (!mark) return g3_errorf("sae report template lacks its data marker");
    G3Str s = {0};
    g3_str_put(&s, tpl, (size_t)(mark - tpl));
    g3_str_puts(&s, "<script type=\"application/json\" id=\"g3data\">");
    if (g3_sae_json(&s, r)) { g3_str_free(&s); return -1; }
    g3_str_puts(&s, "</script>");
    g3_str_puts(&s, mark + strlen("<!--G3DATA-->"));
    int rc = s.oom ? g3_errorf("%s: out of memory", path) : g3_write_file_atomic(path, s.p, s.n);
    g3_str_free(&s);
    return rc;
}
