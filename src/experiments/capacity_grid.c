// capacity_grid.c: a grid's cells gathered into one results.json, and the capacity fit:
// per model (layers x width x precision) the capacity is the plateau of total memorized bits
// as N grows, taken as the most memorized over its converged cells (a lower bound, and left
// out of the fit, when that cell memorized >= 99% of its data: no plateau was reached); bits per parameter is
// capacity / params, and the paper's 3.6 is the slope of capacity against params (fitted here
// through the origin and, with two models or more, with an intercept).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "capacity_grid.h"

static double num(const JsonNode *o, const char *k) {
    const JsonNode *n = json_get(o, k);
    return json_is_number(n) ? n->num : NAN;
}

static int truth(const JsonNode *o, const char *k) {
    const JsonNode *n = json_get(o, k);
    return n && n->type == JSON_TRUE;
}

int g3_cap_summarize(const JsonNode *cells, G3CapSummary *sum) {
    memset(sum, 0, sizeof *sum);
    if (!cells || cells->type != JSON_ARRAY) return g3_errorf("capacity: results have no cells array");
    sum->m = g3_calloc(cells->count ? cells->count : 1, sizeof *sum->m);
    if (!sum->m) return -1;
    double *peak_loss = g3_calloc(cells->count ? cells->count : 1, sizeof(double));
    if (!peak_loss) { g3_cap_summary_free(sum); return -1; }
    JSON_FOREACH(c, cells) {
        const JsonNode *prec = json_get(c, "precision");
        const int L = (int)num(c, "layers"), D = (int)num(c, "width");
        const int bf = json_is_string(prec) && !strcmp(prec->str, "bf16-mixed");
        const double mem = num(c, "memorized_bits"), held = num(c, "heldout_loss"), P = num(c, "params"), N = num(c, "sequences");
        if (!(P > 0) || !(N > 0) || !isfinite(mem) || !isfinite(held)) {
            free(peak_loss);
            g3_cap_summary_free(sum);
            return g3_errorf("capacity: a cell lacks params, sequences, memorized_bits or heldout_loss");
        }
        int i = 0;
        while (i < sum->nm && !(sum->m[i].layers == L && sum->m[i].width == D && sum->m[i].bf16 == bf)) i++;
        G3CapModel *m = &sum->m[i];
        if (i == sum->nm) {
            sum->nm++;
            *m = (G3CapModel){.layers = L, .width = D, .bf16 = bf, .params = (int64_t)P, .bits_per_sequence = num(c, "bits_per_sequence")};
            peak_loss[i] = -INFINITY;
        }
        m->ncells++;
        if (truth(c, "converged")) {
            m->nconverged++;
            if (mem > m->capacity) {
                m->capacity = mem;
                m->data_limited = mem >= 0.99 * N * num(c, "bits_per_sequence");
            }
        }
        if (held > peak_loss[i]) {
            peak_loss[i] = held;
            m->observed_peak_n = (int64_t)N;
        }
    }
    free(peak_loss);
    double sxy = 0, sxx = 0, sx = 0, sy = 0;
    for (int i = 0; i < sum->nm; i++) {
        G3CapModel *m = &sum->m[i];
        m->bits_per_param = m->capacity / (double)m->params;
        m->predicted_peak_n = m->bits_per_sequence > 0 ? m->capacity / m->bits_per_sequence : NAN;
        if (!m->nconverged || m->data_limited) continue;
        const double x = (double)m->params, y = m->capacity;
        sxy += x * y, sxx += x * x, sx += x, sy += y;
        sum->nfit++;
    }
    sum->slope0 = sxx > 0 ? sxy / sxx : NAN;
    sum->slope = sum->intercept = NAN;
    const double k = sum->nfit, den = k * sxx - sx * sx;
    if (sum->nfit >= 2 && den > 0) {
        sum->slope = (k * sxy - sx * sy) / den;
        sum->intercept = (sy - sum->slope * sx) / k;
    }
    return 0;
}

void g3_cap_summary_free(G3CapSummary *sum) {
    free(sum->m);
    memset(sum, 0, sizeof *sum);
}

static void jnum(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.9g", v);
    else fputs("null", f);
}

void g3_cap_summary_json(FILE *f, const G3CapSummary *sum) {
    fputs("{\"capacity\": \"most total memorized bits over a model's converged cells (the plateau as N grows)\", \"models\": [", f);
    for (int i = 0; i < sum->nm; i++) {
        const G3CapModel *m = &sum->m[i];
        fprintf(f, "%s{\"layers\": %d, \"width\": %d, \"precision\": \"%s\", \"params\": %lld, \"cells\": %d, \"converged_cells\": %d, \"capacity_bits\": ",
                i ? ", " : "", m->layers, m->width, m->bf16 ? "bf16-mixed" : "f32", (long long)m->params, m->ncells, m->nconverged);
        jnum(f, m->nconverged ? m->capacity : NAN);
        fputs(", \"bits_per_param\": ", f);
        jnum(f, m->nconverged ? m->bits_per_param : NAN);
        fputs(", \"predicted_peak_sequences\": ", f);
        jnum(f, m->nconverged ? m->predicted_peak_n : NAN);
        fprintf(f, ", \"observed_peak_sequences\": %lld, \"capacity_data_limited\": %s}", (long long)m->observed_peak_n,
                m->nconverged && m->data_limited ? "true" : "false");
    }
    fprintf(f, "], \"fit_models\": %d, \"slope_through_origin\": ", sum->nfit);
    jnum(f, sum->slope0);
    fputs(", \"slope\": ", f);
    jnum(f, sum->slope);
    fputs(", \"intercept\": ", f);
    jnum(f, sum->intercept);
    fprintf(f, ", \"paper_bits_per_param\": {\"overall\": 3.6, \"bf16\": 3.51, \"fp32\": 3.83}}");
}

// The cell object inside a cell's results.json, which write_cell (cmd_capacity.c) writes as
// {"cells": [OBJECT]}\n: validated by parsing, then cut out as text.
static char *cell_text(const char *dir, size_t *len) {
    char path[4300];
    snprintf(path, sizeof path, "%s/results.json", dir);
    size_t n;
    char *t = g3_read_file(path, &n);
    if (!t) return NULL;
    Json j;
    static const char pre[] = "{\"cells\": [", post[] = "]}\n";
    const size_t np = sizeof pre - 1, nq = sizeof post - 1;
    if (json_parse(&j, t, n)) { free(t); g3_error_prefix("%s", path); return NULL; }
    const JsonNode *c = json_get(json_root(&j), "cells");
    int ok = c && c->type == JSON_ARRAY && c->count == 1 && n > np + nq && !memcmp(t, pre, np) && !memcmp(t + n - nq, post, nq);
    json_free(&j);
    if (!ok) { free(t); g3_errorf("%s: not one cell as gemma3 capacity writes it", path); return NULL; }
    memmove(t, t + np, n - np - nq);
    *len = n - np - nq;
    return t;
}

int g3_cap_grid_collect(const char *out, const char *const *dirs, int n, int html) {
    char *buf = NULL, path[4300];
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) return g3_errorf("out of memory");
    fputs("{\"cells\": [\n", f);
    for (int i = 0; i < n; i++) {
        size_t len;
        char *t = cell_text(dirs[i], &len);
        if (!t) { fclose(f); free(buf); return -1; }
        if (i) fputs(",\n", f);
        fwrite(t, 1, len, f);
        free(t);
    }
    fputs("\n]", f);
    fflush(f);
    // the summary from the cells just written
    Json j;
    char *tmp = g3_malloc(blen + 2);
    if (!tmp) { fclose(f); free(buf); return -1; }
    memcpy(tmp, buf, blen);
    memcpy(tmp + blen, "}", 2);
    int rc = json_parse(&j, tmp, blen + 1);
    free(tmp);
    if (rc) { fclose(f); free(buf); return g3_error_prefix("capacity: the grid's results"); }
    G3CapSummary sum;
    rc = g3_cap_summarize(json_get(json_root(&j), "cells"), &sum);
    json_free(&j);
    if (rc) { fclose(f); free(buf); return -1; }
    fputs(",\n\"summary\": ", f);
    g3_cap_summary_json(f, &sum);
    fputs("}\n", f);
    fclose(f);
    g3_cap_summary_free(&sum);
    rc = g3_path_join(path, sizeof path, out, "results.json") || g3_write_file_atomic(path, buf, blen);
    if (!rc && html) rc = g3_path_join(path, sizeof path, out, "report.html") || g3_cap_html_write(path, buf, blen);
    free(buf);
    return rc ? -1 : 0;
}
