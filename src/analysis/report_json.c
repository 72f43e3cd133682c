// report_json.c: analyses as JSON (the analysis.json of `gemma3 analyze`, and the data the
// HTML report embeds), the string builder both use, and token display text.
// Numbers are printed with %.6g; NaN and infinities (induction without its run, a ratio over a
// zero norm) become null, since JSON has no spelling for them.
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "report.h"

static int grow(G3Str *s, size_t extra) {
    if (s->oom) return -1;
    if (s->n + extra + 1 <= s->cap) return 0;
    size_t cap = s->cap ? s->cap : 4096;
    while (cap < s->n + extra + 1) cap *= 2;
    char *p = realloc(s->p, cap);
    if (!p) { s->oom = 1; return -1; }
    s->p = p;
    s->cap = cap;
    return 0;
}

void g3_str_put(G3Str *s, const char *d, size_t n) {
    if (grow(s, n)) return;
    memcpy(s->p + s->n, d, n);
    s->n += n;
    s->p[s->n] = 0;
}

void g3_str_puts(G3Str *s, const char *z) { g3_str_put(s, z, strlen(z)); }

void g3_str_printf(G3Str *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0 || grow(s, (size_t)k)) return;
    va_start(ap, fmt);
    vsnprintf(s->p + s->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    s->n += (size_t)k;
}

void g3_str_free(G3Str *s) {
    free(s->p);
    memset(s, 0, sizeof *s);
}

void g3_str_json(G3Str *s, const char *zs, size_t n) {
    const unsigned char *z = (const unsigned char *)zs;
    g3_str_put(s, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned c = z[i];
        if (c >= 0x80) {
            int k = json_utf8_len(zs + i, n - i);  // the one UTF-8 check of every JSON writer
            if (k) g3_str_put(s, zs + i, (size_t)k);
            else g3_str_puts(s, "\\ufffd");
            i += k ? (size_t)k : 1;
            continue;
        }
        if (c == '"') g3_str_puts(s, "\\\"");
        else if (c == '\\') g3_str_puts(s, "\\\\");
        else if (c == '\n') g3_str_puts(s, "\\n");
        else if (c == '\t') g3_str_puts(s, "\\t");
        else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7F) g3_str_printf(s, "\\u%04x", c);
        else g3_str_put(s, zs + i, 1);
        i++;
    }
    g3_str_put(s, "\"", 1);
}

void g3_an_token_text(char *buf, size_t cap, const G3Tokenizer *tok, int id) {
    const char *piece = tok ? g3_tok_piece(tok, id) : NULL;
    if (!piece) { snprintf(buf, cap, "%d", id); return; }
    int32_t one = id;
    size_t len = 0;
    char *d = g3_tok_decode(tok, &one, 1, 0, &len);
    // a lone byte of a multi-byte character decodes to U+FFFD: its piece says more
    if (!d || strstr(d, "\xEF\xBF\xBD")) snprintf(buf, cap, "%s", piece);
    else snprintf(buf, cap, "%s", d);
    free(d);
}

static void num(G3Str *s, double x) {
    if (!isfinite(x)) g3_str_puts(s, "null");
    else g3_str_printf(s, "%.6g", x);
}

static void key_num(G3Str *s, const char *k, double x, int comma) {
    g3_str_printf(s, "\"%s\":", k);
    num(s, x);
    if (comma) g3_str_put(s, ",", 1);
}

static void token(G3Str *s, const G3AnMeta *meta, int id) {
    char buf[1024];
    g3_an_token_text(buf, sizeof buf, meta->tok, id);
    g3_str_printf(s, "{\"id\":%d,\"text\":", id);
    g3_str_json(s, buf, strlen(buf));
    g3_str_put(s, "}", 1);
}

// pat [L][NH][T][T] -> [L][NH][rows] lower triangles of the first P positions.
static void patterns(G3Str *s, const float *pat, int L, int NH, int T, int P) {
    g3_str_put(s, "[", 1);
    for (int l = 0; l < L; l++) {
        g3_str_puts(s, l ? ",[" : "[");
        for (int h = 0; h < NH; h++) {
            const float *p = pat + ((long)l * NH + h) * T * T;
            g3_str_puts(s, h ? ",[" : "[");
            for (int q = 0; q < P; q++)
                for (int k = 0; k <= q; k++) {
                    float v = p[(long)q * T + k];
                    if (q || k) g3_str_put(s, ",", 1);
                    if (v == 0) g3_str_put(s, "0", 1);
                    else g3_str_printf(s, "%.4g", v);
                }
            g3_str_put(s, "]", 1);
        }
        g3_str_put(s, "]", 1);
    }
    g3_str_put(s, "]", 1);
}

// Values of the image sections at most (~6 bytes each as text): longer prompts show their
// last positions.
enum { MAX_IMAGE_VALUES = 4000000 };

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void base64(G3Str *s, const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) | (i + 2 < n ? d[i + 2] : 0);
        char q[4] = {B64[v >> 18 & 63], B64[v >> 12 & 63], i + 1 < n ? B64[v >> 6 & 63] : '=', i + 2 < n ? B64[v & 63] : '='};
        g3_str_put(s, q, 4);
    }
}

// The vision tower's attention received per patch (report.h: quantized to bytes per map,
// whose largest value each map keeps; a 4B tower's 27 x 16 maps of 4096 patches are 1.8 MB).
static int tower(G3Str *s, const G3AnImage *im) {
    const int L = im->tower_layers, H = im->tower_heads, n = im->tower_side * im->tower_side;
    uint8_t *b = g3_malloc((size_t)L * H * n);
    if (!b) return -1;
    g3_str_printf(s, ",\"tower\":{\"layers\":%d,\"heads\":%d,\"side\":%d,\"max\":[", L, H, im->tower_side);
    for (int l = 0; l < L; l++) {
        g3_str_puts(s, l ? ",[" : "[");
        for (int h = 0; h < H; h++) {
            const float *v = im->tower[l] + (long)h * n;
            float mx = 0;
            for (int k = 0; k < n; k++) mx = v[k] > mx ? v[k] : mx;
            for (int k = 0; k < n; k++) b[((long)l * H + h) * n + k] = mx > 0 && v[k] > 0 ? (uint8_t)(v[k] / mx * 255.0f + 0.5f) : 0;
            g3_str_printf(s, "%s%.6g", h ? "," : "", mx);
        }
        g3_str_put(s, "]", 1);
    }
    g3_str_puts(s, "],\"u8\":\"");
    base64(s, b, (size_t)L * H * n);
    g3_str_puts(s, "\"}");
    free(b);
    return 0;
}

// The attention from the positions after each image's run to its soft tokens (report.h).
static int images(G3Str *s, const G3Analysis *a, const G3AnMeta *meta, int png) {
    const int T = a->T, L = a->L, NH = a->NH;
    g3_str_puts(s, ",\n\"images\":[");
    for (int i = 0; i < meta->nimages; i++) {
        const G3AnImage *im = &meta->images[i];
        if (im->start < 0 || im->tokens < 1 || im->start + im->tokens > T)
            return g3_errorf("image %d: soft tokens at [%d, %d) outside the prompt's %d positions", i + 1, im->start, im->start + im->tokens, T);
        int side = 1;
        while (side * side < im->tokens) side++;
        const int first = im->start + im->tokens, most = G3_MAX(1, MAX_IMAGE_VALUES / (L * NH * im->tokens));
        const int q0 = G3_MAX(first, T - most);
        g3_str_puts(s, i ? ",\n{\"file\":" : "{\"file\":");
        g3_str_json(s, im->file ? im->file : "", im->file ? strlen(im->file) : 0);
        g3_str_printf(s, ",\"start\":%d,\"tokens\":%d,\"side\":%d,\"queries\":[", im->start, im->tokens, side);
        for (int q = q0; q < T; q++) g3_str_printf(s, "%s%d", q > q0 ? "," : "", q);
        g3_str_puts(s, "],\"attn\":[");
        for (int l = 0; l < L; l++) {
            g3_str_puts(s, l ? ",[" : "[");
            for (int h = 0; h < NH; h++) {
                g3_str_puts(s, h ? ",[" : "[");
                for (int q = q0; q < T; q++) {
                    const float *row = a->pattern + (((long)l * NH + h) * T + q) * T + im->start;
                    g3_str_puts(s, q > q0 ? ",[" : "[");
                    for (int k = 0; k < im->tokens; k++) {
                        if (k) g3_str_put(s, ",", 1);
                        if (row[k] == 0) g3_str_put(s, "0", 1);
                        else g3_str_printf(s, "%.4g", row[k]);
                    }
                    g3_str_put(s, "]", 1);
                }
                g3_str_put(s, "]", 1);
            }
            g3_str_put(s, "]", 1);
        }
        g3_str_put(s, "]", 1);
        if (im->tower && tower(s, im)) return -1;
        if (png && im->pic) {
            uint8_t *p;
            size_t n;
            if (g3_image_encode_png(im->pic, &p, &n)) return g3_error_prefix("image %s", im->file ? im->file : "");
            g3_str_puts(s, ",\"png\":\"data:image/png;base64,");
            base64(s, p, n);
            g3_str_put(s, "\"", 1);
            free(p);
        }
        g3_str_put(s, "}", 1);
    }
    g3_str_put(s, "]", 1);
    return 0;
}

static void kind(G3Str *s, const G3AnKind *k) {
    g3_str_printf(s, "{\"layers\":%d,", k->layers);
    key_num(s, "entropy", k->entropy, 1); key_num(s, "distance", k->distance, 1); key_num(s, "bos", k->bos, 1);
    key_num(s, "prev", k->prev, 1); key_num(s, "induction", k->induction, 1); key_num(s, "js", k->js, 1);
    key_num(s, "resid_ratio", k->resid_ratio, 1); key_num(s, "mlp_sparsity", k->mlp_sparsity, 1);
    key_num(s, "erank", k->erank, 0);
    g3_str_put(s, "}", 1);
}

static int one(G3Str *s, const G3Analysis *a, const G3AnMeta *meta, const char *text, int pats, int maxp, int first) {
    const int T = a->T, L = a->L, NH = a->NH, K = a->K;
    g3_str_puts(s, "{\"prompt\":");
    if (text) g3_str_json(s, text, strlen(text));
    else g3_str_puts(s, "null");
    g3_str_printf(s, ",\"T\":%d,\"seconds\":", T);
    num(s, a->seconds);
    g3_str_puts(s, ",\n\"tokens\":[");
    for (int t = 0; t < T; t++) { if (t) g3_str_put(s, ",", 1); token(s, meta, a->ids[t]); }
    g3_str_puts(s, "],\n\"heads\":[");
    for (int l = 0; l < L; l++) {
        g3_str_puts(s, l ? ",\n[" : "[");
        for (int h = 0; h < NH; h++) {
            const G3AnHead *hd = &a->heads[l * NH + h];
            g3_str_puts(s, h ? ",{" : "{");
            key_num(s, "entropy", hd->entropy, 1); key_num(s, "distance", hd->distance, 1); key_num(s, "bos", hd->bos, 1);
            key_num(s, "prev", hd->prev, 1); key_num(s, "induction", hd->induction, 1);
            int nb = g3_an_bucket(T > 1 ? T - 1 : 0) + 1;
            g3_str_puts(s, "\"hist\":[");
            for (int b = 0; b < nb; b++) { if (b) g3_str_put(s, ",", 1); num(s, hd->hist[b]); }
            g3_str_puts(s, "]}");
        }
        g3_str_put(s, "]", 1);
    }
    g3_str_puts(s, "],\n\"layers\":[");
    for (int l = 0; l < L; l++) {
        const G3AnLayer *y = &a->layers[l];
        g3_str_printf(s, "%s{\"layer\":%d,\"kind\":\"%s\",", l ? ",\n" : "", l, a->sliding[l] ? "sliding" : "global");
        key_num(s, "resid_norm", y->resid_norm, 1); key_num(s, "resid_ratio", y->resid_ratio, 1);
        key_num(s, "bos_norm", y->bos_norm, 1); key_num(s, "mlp_sparsity", y->mlp_sparsity, 1);
        key_num(s, "erank", y->erank, 1); key_num(s, "js", y->js, 1); key_num(s, "entropy", y->entropy, 1);
        key_num(s, "distance", y->distance, 1); key_num(s, "bos", y->bos, 1); key_num(s, "prev", y->prev, 1);
        key_num(s, "induction", y->induction, 0);
        g3_str_put(s, "}", 1);
    }
    g3_str_puts(s, "],\n");
    key_num(s, "embed_norm", a->embed_norm, 1);
    key_num(s, "js_all", a->js_all, 1);
    g3_str_puts(s, "\"kinds\":{\"sliding\":");
    kind(s, &a->kind[0]);
    g3_str_puts(s, ",\"global\":");
    kind(s, &a->kind[1]);
    g3_str_puts(s, "},\n\"js\":[");
    for (int l = 0; l < L; l++) {
        g3_str_puts(s, l ? ",[" : "[");
        for (int h = 0; h < NH; h++) {
            g3_str_puts(s, h ? ",[" : "[");
            for (int g = 0; g < NH; g++) { if (g) g3_str_put(s, ",", 1); num(s, a->js[((long)l * NH + h) * NH + g]); }
            g3_str_put(s, "]", 1);
        }
        g3_str_put(s, "]", 1);
    }
    // logit lens: [L+1][positions from..T-1][K] of {id, text, logit, p}
    g3_str_printf(s, "],\n\"lens\":{\"from\":%d,\"k\":%d,\"rows\":[", a->lens_from, K);
    for (int l = 0; l <= L; l++) {
        g3_str_printf(s, "%s{\"layer\":", l ? ",\n" : "");
        if (l) g3_str_printf(s, "%d", l - 1);
        else g3_str_puts(s, "\"embed\"");
        g3_str_puts(s, ",\"top\":[");
        for (int t = a->lens_from; t < T; t++) {
            g3_str_puts(s, t > a->lens_from ? ",[" : "[");
            for (int k = 0; k < K; k++) {
                const G3AnTop *tp = &a->lens[((long)l * T + t) * K + k];
                char buf[1024];
                g3_an_token_text(buf, sizeof buf, meta->tok, tp->id);
                g3_str_printf(s, "%s{\"id\":%d,\"text\":", k ? "," : "", tp->id);
                g3_str_json(s, buf, strlen(buf));
                g3_str_put(s, ",", 1);
                key_num(s, "logit", tp->logit, 1);
                key_num(s, "p", tp->prob, 0);
                g3_str_put(s, "}", 1);
            }
            g3_str_put(s, "]", 1);
        }
        g3_str_puts(s, "]}");
    }
    g3_str_printf(s, "]},\n\"induction\":{\"n\":%d,\"tokens\":[", a->ind_n);
    for (int t = 0; a->ind_n && t < 2 * a->ind_n + 1; t++) { if (t) g3_str_put(s, ",", 1); token(s, meta, a->ind_ids[t]); }
    g3_str_put(s, "]", 1);
    if (pats) {
        int T2 = 2 * a->ind_n + 1, P2 = G3_MIN(T2, maxp);
        g3_str_printf(s, ",\"shown\":%d,\"patterns\":", a->ind_n ? P2 : 0);
        if (a->ind_n) patterns(s, a->ind_pattern, L, NH, T2, P2);
        else g3_str_puts(s, "null");
    }
    g3_str_put(s, "}", 1);
    if (pats) {
        int P = G3_MIN(T, maxp);
        g3_str_printf(s, ",\n\"shown\":%d,\"patterns\":", P);
        patterns(s, a->pattern, L, NH, T, P);
    }
    if (first && meta->nimages && images(s, a, meta, pats)) return -1;
    g3_str_puts(s, "}");
    return 0;
}

int g3_an_json(G3Str *s, const G3Analysis *a, int n, const G3AnMeta *meta, int pats, int maxp) {
    const G3Config *c = meta->cfg;
    g3_str_puts(s, "{\"model\":");
    g3_str_json(s, meta->model ? meta->model : "", meta->model ? strlen(meta->model) : 0);
    g3_str_printf(s, ",\n\"config\":{\"family\":%d,\"layers\":%d,\"heads\":%d,\"kv_heads\":%d,\"head_dim\":%d,\"hidden\":%d,"
                     "\"intermediate\":%d,\"vocab\":%d,\"sliding_window\":%d,\"final_softcap\":",
                  (int)c->family, c->layers, c->heads, c->kv_heads, c->head_dim, c->hidden, c->inter, c->vocab, c->sliding_window);
    num(s, c->final_softcap);
    g3_str_puts(s, ",\"kinds\":[");
    for (int l = 0; l < c->layers; l++) g3_str_printf(s, "%s\"%s\"", l ? "," : "", c->sliding[l] ? "sliding" : "global");
    g3_str_printf(s, "]},\n\"definitions\":{\"sparsity_rel\":%g,\"hist_buckets\":\"0, 1, 2-3, 4-7, ... (bucket b >= 1 holds distances [2^(b-1), 2^b))\","
                     "\"queries\":\"per-query means run over positions 1..T-1\",\"erank_rows\":\"resid_post rows 1..T-1\"},\n\"results\":[\n",
                  G3_AN_SPARSE_REL);
    for (int i = 0; i < n; i++) {
        if (i) g3_str_puts(s, ",\n");
        if (one(s, &a[i], meta, meta->text ? meta->text[i] : NULL, pats, maxp, i == 0)) return -1;
    }
    g3_str_puts(s, "]}\n");
    if (s->oom) return g3_errorf("analysis JSON: out of memory");
    return 0;
}

int g3_an_write_json(const char *path, const G3Analysis *a, int n, const G3AnMeta *meta) {
    G3Str s = {0};
    int rc = g3_an_json(&s, a, n, meta, 0, 0);
    if (!rc && g3_write_file_atomic(path, s.p, s.n)) rc = -1;
    g3_str_free(&s);
    return rc;
}
