// cmd_analyze.c: `gemma3 analyze`: how a model's heads attend, what each layer does to the
// residual stream, and what the model would predict at every layer (the logit lens), for one
// prompt or a file of prompts. Tables on stdout, all figures in analysis.json, and with
// --html an interactive self-contained report. The metrics are defined in docs/analyze.md.
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/analyze.h"
#include "analysis/report.h"
#include "base/base.h"
#include "cli.h"
#include "cli_gen.h"
#include "cli_image.h"
#include "gen/prompts.h"

static void print_text(const G3Tokenizer *tok, int id) {
    char buf[256];
    g3_an_token_text(buf, sizeof buf, tok, id);
    putchar('\'');
    for (const char *p = buf; *p; p++) {  // control characters shown escaped, the rest as is
        if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\t') fputs("\\t", stdout);
        else if ((unsigned char)*p < 0x20) printf("\\x%02x", (unsigned char)*p);
        else putchar(*p);
    }
    putchar('\'');
}

// The three heads scoring highest on one metric (the field at offset off of G3AnHead).
static void print_top(const G3Analysis *a, const char *name, size_t off) {
    int best[3] = {-1, -1, -1};
    const int n = a->L * a->NH;
#define V(i) (*(const double *)((const char *)&a->heads[i] + off))
    for (int i = 0; i < n; i++) {
        if (isnan(V(i))) continue;
        for (int k = 0; k < 3; k++)
            if (best[k] < 0 || V(i) > V(best[k])) {
                for (int j = 2; j > k; j--) best[j] = best[j - 1];
                best[k] = i;
                break;
            }
    }
    if (best[0] < 0) return;
    printf("  strongest %-15s", name);
    for (int k = 0; k < 3 && best[k] >= 0; k++) printf("  L%dh%d %.3f", best[k] / a->NH, best[k] % a->NH, V(best[k]));
    putchar('\n');
#undef V
}

static void print_analysis(const G3Analysis *a, const G3Tokenizer *tok, const char *text) {
    const int L = a->L, NH = a->NH, T = a->T;
    if (text) printf("prompt  \"%s\"\n", text);
    printf("tokens  %d:", T);
    for (int t = 0; t < T && t < 24; t++) { putchar(' '); print_text(tok, a->ids[t]); }
    printf("%s\n\n", T > 24 ? " ..." : "");
    if (L * NH <= 64) {
        printf("heads          entropy  distance   <bos>    prev  induction   (entropy in nats, distance in positions,\n");
        printf("                                                               the rest attention mass; means over queries 1..T-1)\n");
        for (int l = 0; l < L; l++)
            for (int h = 0; h < NH; h++) {
                const G3AnHead *x = &a->heads[l * NH + h];
                printf("  L%-2d %-7s h%-2d %6.3f  %8.3f  %6.3f  %6.3f  %9.3f\n", l, h ? "" : a->sliding[l] ? "sliding" : "global", h,
                       x->entropy, x->distance, x->bos, x->prev, x->induction);
            }
    } else {  // a big model's heads are in the JSON and the report; here their means per layer
        printf("heads (mean over a layer's %d heads; each head in the JSON)\n", NH);
        printf("  layer kind     entropy  distance   <bos>    prev  induction\n");
        for (int l = 0; l < L; l++) {
            const G3AnLayer *y = &a->layers[l];
            printf("  %5d %-7s  %6.3f  %8.3f  %6.3f  %6.3f  %9.3f\n", l, a->sliding[l] ? "sliding" : "global", y->entropy, y->distance,
                   y->bos, y->prev, y->induction);
        }
    }
    print_top(a, "previous-token", offsetof(G3AnHead, prev));
    print_top(a, "induction", offsetof(G3AnHead, induction));
    print_top(a, "<bos> mass", offsetof(G3AnHead, bos));
    printf("\nlayers  kind     resid norm   ratio  mlp sparse  eff rank  head JS  (JS: mean over head pairs, nats)\n");
    printf("embed            %10.3f\n", a->embed_norm);
    for (int l = 0; l < L; l++) {
        const G3AnLayer *y = &a->layers[l];
        printf("%5d   %-7s  %10.3f  %6.3f  %10.4f  %8.3f  %7.4f\n", l, a->sliding[l] ? "sliding" : "global", y->resid_norm,
               y->resid_ratio, y->mlp_sparsity, y->erank, y->js);
    }
    printf("\nby kind  layers  entropy  distance   <bos>    prev  induction  head JS   ratio  mlp sparse  eff rank\n");
    for (int k = 0; k < 2; k++) {
        const G3AnKind *d = &a->kind[k];
        if (!d->layers) continue;
        printf("%-8s %6d  %7.3f  %8.3f  %6.3f  %6.3f  %9.3f  %7.4f  %6.3f  %10.4f  %8.3f\n", k ? "global" : "sliding", d->layers, d->entropy,
               d->distance, d->bos, d->prev, d->induction, d->js, d->resid_ratio, d->mlp_sparsity, d->erank);
    }
    printf("all heads: mean JS divergence between heads of a layer %.4f\n", a->js_all);
    printf("\nlogit lens at the last position (top %d: token p)\n", G3_MIN(a->K, 3));
    for (int l = 0; l <= L; l++) {
        if (l) printf("%5d  ", l - 1);
        else printf("embed  ");
        for (int k = 0; k < G3_MIN(a->K, 3); k++) {
            const G3AnTop *tp = &a->lens[((long)l * T + T - 1) * a->K + k];
            if (k) printf("  ");
            print_text(tok, tp->id);
            printf(" %.3g", tp->prob);
        }
        putchar('\n');
    }
}

// analyze --image: the prompt's state gets the images' soft tokens (G3AnOptions.prepare).
static int attach_images(void *ctx, G3State *s, const int32_t *ids, int T) { return cli_images_attach(ctx, s, ids, T); }

// The report's picture of an image: the square the model saw, at most 448 pixels a side (a
// soft token's cell is then 28 pixels at 4B's 16 x 16).
// crop >= 0: that pan-and-scan crop of the file's picture.
static int report_picture(G3Image *out, const char *file, const G3VisionConfig *vc, int crop) {
    G3Image im, crops[64];
    if (g3_image_load(&im, file)) return -1;
    int nc = crop >= 0 ? g3_vision_pan_and_scan(vc, &im, crops) : 0;
    const G3Image *src = crop >= 0 && crop < nc ? &crops[crop] : &im;
    const int side = G3_MIN(vc->image_size, 448);
    out->w = out->h = side;
    out->rgb = g3_malloc((size_t)side * side * 3);
    int rc = nc < 0 || !out->rgb || g3_image_resize(out->rgb, side, side, src->rgb, src->w, src->h) ? -1 : 0;
    for (int k = 0; k < nc; k++) g3_image_free(&crops[k]);
    g3_image_free(&im);
    return rc;
}

// Creates the folder a file is to be written into (the outputs may name new folders).
static int make_parent(const char *path) {
    const char *sl = strrchr(path, '/');
    if (!sl || sl == path) return 0;
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(sl - path), path);
    return g3_mkdir_p(dir);
}

// Image i's tower maps (analyze --tower): its rows of each layer's recorded array [images, NH, NP].
static int tower_layers(G3AnImage *im, const float ***tl, const CliVisRec *vr, const CliImages *ci, int i) {
    const G3VisionConfig *c = &ci->v.cfg;
    if (!*tl && !(*tl = g3_calloc((size_t)ci->n * c->layers, sizeof **tl))) return -1;
    const float **rows = *tl + (size_t)i * c->layers;
    for (int l = 0; l < c->layers; l++) {
        char name[96];
        g3_vision_hook_name(name, sizeof name, G3_VH_PATTERN, l);
        const CliVisArr *a = NULL;
        for (int k = 0; k < vr->narr; k++)
            if (!strcmp(vr->arr[k].name, name)) a = &vr->arr[k];
        if (!a || a->ndim != 3 || a->shape[0] <= i || a->shape[1] != c->heads || a->shape[2] != g3_vision_patches(c))
            return g3_errorf("--tower: the vision tower's attention of layer %d, image %d was not recorded", l, i + 1);
        rows[l] = a->data + (size_t)i * a->one;
    }
    im->tower = rows;
    im->tower_layers = c->layers;
    im->tower_heads = c->heads;
    im->tower_side = g3_vision_side(c);
    return 0;
}

int cmd_analyze(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *ids_s = NULL, *text = NULL, *pfile = NULL, *json = NULL, *html = NULL, *tok_path = NULL;
    long threads = 0, top = 5, lens_last = 0, ind_n = 32, seed = 1234;
    int exact = 0, quiet = 0, tower = 0;
    CliList images = {{0}};
    int pan_scan = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--prompt", OPT_STR, &text, "prompt text (tokenized with <bos>)"},
        {"--ids", OPT_STR, &ids_s, "prompt as token ids, comma-separated (start with 2, <bos>)"},
        {"--prompts-file", OPT_STR, &pfile, "one prompt a line, or a JSON list (each analysed on its own)"},
        {"--json", OPT_STR, &json, "write the figures here (default: analysis.json, beside --html if given)"},
        {"--html", OPT_STR, &html, "write the interactive report here (one self-contained file)"},
        {"--top", OPT_INT, &top, "tokens per logit-lens cell", 1, 100},
        {"--lens-last", OPT_INT, &lens_last, "logit lens on the last N positions only (0: every position)", 0, 1 << 30},
        {"--induction-len", OPT_INT, &ind_n, "n of the repeated random sequence [bos, r1..rn, r1..rn] (0: skip)", 0, 1 << 20},
        {"--seed", OPT_INT, &seed, "seed of the random sequence"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        {"--quiet", OPT_FLAG, &quiet, "no tables on stdout"},
        CLI_IMAGE_OPT(images),
        CLI_PAN_SCAN_OPT(pan_scan),
        {"--tower", OPT_FLAG, &tower, "with --image: also the attention inside the vision tower (per layer and head, what each patch receives) in the report (slower: every tower layer's patterns)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("analyze", "--model DIR (--prompt TEXT | --ids 2,17,300 | --prompts-file FILE) [--image FILE] [--json out.json] [--html report.html]",
              argc, argv, opts);
    if (cli_model_or_default("analyze", &dir)) return 1;
    if (!!ids_s + !!text + !!pfile != 1) return cli_fail("analyze", "give exactly one of --prompt, --ids and --prompts-file");
    if (images.n && pfile) return cli_fail("analyze", "--image goes with one prompt (--prompt or --ids), not --prompts-file");
    if (tower && !images.n) return cli_fail("analyze", "--tower shows the attention inside the vision tower: it needs --image");
    if (ind_n == 0 && cli_given("--seed")) return cli_fail("analyze", "--seed draws the induction run's sequence: it does nothing with --induction-len 0");
    cli_set_threads(threads);
    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) return cli_fail("analyze", "%s", g3_error());
    int rc = 1, n = 0;
    G3Tokenizer *tok = NULL;
    G3Prompts pr = {0};
    G3Analysis *an = NULL;
    int32_t **ids = NULL;
    int *lens = NULL;
    uint8_t *skip = NULL;
    const char **texts = NULL;
    char jpath[4096];
    CliImages ci = {0};
    G3AnImage *aim = NULL;
    G3Image *pics = NULL;
    char **labels = NULL;
    int naim = 0;
    // --tower: each tower layer's patterns, kept as the attention each patch receives
    const char *tower_pat = "vision.blocks.*.attn.hook_pattern";
    CliVisRec vr = {&tower_pat, 1, 1};
    const float **tl = NULL;  // [images][tower layers]
    if (text || pfile || tok_path) {
        if (!(tok = cli_load_tokenizer(tok_path, dir, &m))) { cli_fail("analyze", "%s", g3_error()); goto out; }
    } else {
        tok = g3_tok_load(dir);  // only for showing tokens; ids work without one
        if (tok && g3_tok_vocab_size(tok) > m.cfg.vocab + 64) { g3_tok_free(tok); tok = NULL; }
        g3_error_clear();
    }
    if (cli_images_load(&ci, &m, &images, exact, pan_scan, tower ? &vr : NULL)) { cli_fail("analyze", "%s", g3_error()); goto out; }
    if (vr.failed) { cli_fail("analyze", "out of memory keeping the vision tower's attention"); goto out; }
    if (pfile) {
        if (g3_prompts_load(&pr, pfile)) { cli_fail("analyze", "%s", g3_error()); goto out; }
        if (pr.n == 0) { cli_fail("analyze", "%s: no prompts", pfile); goto out; }
        n = pr.n;
    } else {
        n = 1;
    }
    ids = g3_calloc((size_t)n, sizeof *ids);
    lens = g3_calloc((size_t)n, sizeof *lens);
    texts = g3_calloc((size_t)n, sizeof *texts);
    an = g3_calloc((size_t)n, sizeof *an);
    if (!ids || !lens || !texts || !an) { cli_fail("analyze", "%s", g3_error()); goto out; }
    for (int i = 0; i < n; i++) {
        if (ids_s) lens[i] = cli_parse_ids(ids_s, &ids[i]);
        else {
            texts[i] = pfile ? pr.items[i].text : text;
            lens[i] = ci.n ? cli_images_encode_text(&ci, tok, texts[i], 1, 0, &ids[i]) : g3_tok_encode(tok, texts[i], strlen(texts[i]), 1, 0, &ids[i]);
        }
        if (lens[i] < 0) { cli_fail("analyze", "%s", g3_error()); goto out; }
        if (lens[i] < 2) { cli_fail("analyze", "prompt %d has %d token(s); the metrics need at least 2", i + 1, lens[i]); goto out; }
        if (lens[i] > m.cfg.max_pos) { cli_fail("analyze", "prompt %d: %d tokens exceed the model's context of %d", i + 1, lens[i], m.cfg.max_pos); goto out; }
        int64_t b = g3_analyze_bytes(&m.cfg, lens[i], (int)ind_n);
        if (b > ((int64_t)16 << 30)) { cli_fail("analyze", "prompt %d: %d tokens would need %.1f GiB of patterns and residual rows; use a shorter prompt", i + 1, lens[i], b / 1073741824.0); goto out; }
    }
    if (tok) {  // the random sequence avoids control tokens and byte pieces
        skip = g3_calloc((size_t)m.cfg.vocab, 1);
        if (!skip) { cli_fail("analyze", "%s", g3_error()); goto out; }
        for (int id = 0; id < m.cfg.vocab; id++) {
            const char *p = g3_tok_piece(tok, id);
            skip[id] = !p || g3_tok_is_special(tok, id) || (p[0] == '<' && p[strlen(p) - 1] == '>');
        }
    }
    G3AnOptions o = {(int)top, !exact, (int)lens_last, (int)ind_n, (uint64_t)seed, skip, ci.has_cfg ? attach_images : NULL, &ci};
    double t0 = g3_now();
    for (int i = 0; i < n; i++) {
        if (g3_analyze_run(&an[i], &m, ids[i], lens[i], &o)) { cli_fail("analyze", "prompt %d: %s", i + 1, g3_error()); n = i; goto out; }
        if (!quiet) {
            if (n > 1) printf("%s== prompt %d of %d\n", i ? "\n" : "", i + 1, n);
            print_analysis(&an[i], tok, texts[i]);
        }
    }
    double dt = g3_now() - t0;
    fflush(stdout);
    if (ci.n) {  // each image's soft tokens (the analysis checked the runs against the images) and picture
        int *starts = g3_calloc((size_t)lens[0], sizeof *starts), count = 0;
        aim = g3_calloc((size_t)ci.n, sizeof *aim);
        pics = g3_calloc((size_t)ci.n, sizeof *pics);
        labels = g3_calloc((size_t)ci.n, sizeof *labels);
        if (!starts || !aim || !pics || !labels || g3_vision_find_runs(&ci.v.cfg, ids[0], lens[0], starts, lens[0], &count)) {
            free(starts);
            cli_fail("analyze", "%s", g3_error());
            goto out;
        }
        for (int i = 0, f = 0, k = -1; i < count && i < ci.n; i++) {  // run i: file f whole (k = -1), then its crops
            char lab[4200];
            if (k >= 0) snprintf(lab, sizeof lab, "%s (crop %d of %d)", images.v[f], k + 1, ci.ncrops[f]);
            else snprintf(lab, sizeof lab, "%s", images.v[f]);
            if (!(labels[i] = g3_strdup(lab))) { free(starts); cli_fail("analyze", "%s", g3_error()); goto out; }
            aim[i] = (G3AnImage){labels[i], starts[i], ci.v.cfg.tokens, NULL};
            if (tower && tower_layers(&aim[i], &tl, &vr, &ci, i)) { free(starts); cli_fail("analyze", "%s", g3_error()); goto out; }
            if (html && report_picture(&pics[i], images.v[f], &ci.v.cfg, k)) { free(starts); cli_fail("analyze", "%s", g3_error()); goto out; }
            if (html) aim[i].pic = &pics[i];
            if (++k >= ci.ncrops[f]) k = -1, f++;
        }
        naim = G3_MIN(count, ci.n);
        free(starts);
    }

    G3AnMeta meta = {dir, ids_s ? NULL : texts, tok, &m.cfg, aim, naim};
    if (json) snprintf(jpath, sizeof jpath, "%s", json);
    else if (html && strrchr(html, '/')) snprintf(jpath, sizeof jpath, "%.*s/analysis.json", (int)(strrchr(html, '/') - html), html);
    else snprintf(jpath, sizeof jpath, "analysis.json");
    if (make_parent(jpath) || (html && make_parent(html)) || g3_an_write_json(jpath, an, n, &meta)) { cli_fail("analyze", "%s", g3_error()); goto out; }
    fprintf(stderr, "analyze: %d prompt%s in %.3f s; figures in %s\n", n, n > 1 ? "s" : "", dt, jpath);
    if (html) {
        if (g3_an_write_html(html, an, n, &meta)) { cli_fail("analyze", "%s", g3_error()); goto out; }
        fprintf(stderr, "analyze: report in %s\n", html);
    }
    rc = 0;
out:
    for (int i = 0; an && i < n; i++) g3_analysis_free(&an[i]);
    for (int i = 0; ids && i < (pfile ? pr.n : 1); i++) free(ids[i]);
    free(an); free(ids); free(lens); free(texts); free(skip);
    for (int i = 0; pics && i < ci.n; i++) g3_image_free(&pics[i]);
    for (int i = 0; labels && i < ci.n; i++) free(labels[i]);
    free(pics); free(aim); free(labels); free(tl);
    cli_images_free(&ci);
    cli_vision_rec_free(&vr);
    g3_prompts_free(&pr);
    g3_tok_free(tok);
    cli_model_free(&m);
    return rc;
}
