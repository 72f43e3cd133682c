// cmd_intervene.c: `gemma3 intervene`: runs a prompt clean and with interventions (head and
// MLP ablation, activation patching from a second prompt, a steering vector) and reports what
// changed: the next-token distribution (top-k, KL, the clean top token's probability), the
// prompt's own next-token loss, and optionally a greedy continuation; --json writes it all.
// The interventions themselves live in analysis/intervene.c.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analysis/intervene.h"
#include "base/base.h"
#include "base/json.h"
#include "cli_gen.h"
#include "gen/prompts.h"

#define CMD "intervene"

typedef struct {
    int32_t **ids;
    int *lens;
    int n;
} PromptSet;

static void set_free(PromptSet *ps) {
    for (int i = 0; i < ps->n; i++) free(ps->ids[i]);
    free(ps->ids);
    free(ps->lens);
    memset(ps, 0, sizeof *ps);
}

// One prompt: "ids: 2,17,300" is token ids, anything else text (tokenized with <bos>).
static int encode_prompt(const char *text, G3Tokenizer *tok, int32_t **out) {
    if (!strncmp(text, "ids:", 4)) return cli_parse_ids(text + 4, out);
    if (!tok) return g3_errorf("'%.30s' is text but there is no tokenizer (give --tokenizer, or write token ids as 'ids: 2,17,300')", text);
    return g3_tok_encode(tok, text, strlen(text), 1, 0, out);
}

// A prompt file (one prompt a line, or a JSON list / categorized object as for generate).
static int set_load(PromptSet *ps, const char *path, G3Tokenizer *tok) {
    G3Prompts p;
    memset(ps, 0, sizeof *ps);
    if (g3_prompts_load(&p, path)) return -1;
    if (p.n == 0) { g3_prompts_free(&p); return g3_errorf("%s: no prompts in the file", path); }
    ps->ids = g3_calloc((size_t)p.n, sizeof *ps->ids);
    ps->lens = g3_calloc((size_t)p.n, sizeof *ps->lens);
    int rc = ps->ids && ps->lens ? 0 : -1;
    for (int i = 0; i < p.n && !rc; i++, ps->n++) {
        int T = encode_prompt(p.items[i].text, tok, &ps->ids[i]);
        if (T < 0) rc = g3_error_prefix("%s: prompt %d", path, i + 1);
        else if (T == 0) rc = g3_errorf("%s: prompt %d is empty", path, i + 1);
        ps->lens[i] = T;
    }
    g3_prompts_free(&p);
    if (rc) set_free(ps);
    return rc;
}

// A token for display: its text when there is a tokenizer (escaped, quoted), else nothing.
static void token_text(char *buf, size_t cap, const G3Tokenizer *tok, int id) {
    buf[0] = 0;
    if (!tok) return;
    int32_t one = id;
    size_t n;
    char *s = g3_tok_decode(tok, &one, 1, 0, &n);
    if (!s) return;
    size_t o = 0;
    if (o + 1 < cap) buf[o++] = '"';
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\n') { buf[o++] = '\\'; buf[o++] = 'n'; }
        else if (ch == '\t') { buf[o++] = '\\'; buf[o++] = 't'; }
        else if (ch < 0x20) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        else buf[o++] = (char)ch;
    }
    if (o + 1 < cap) buf[o++] = '"';
    buf[o] = 0;
    free(s);
}

static double vnorm(const float *v, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)v[i] * v[i];
    return sqrt(s);
}

static const char *kind_name(G3EditKind k) {
    return k == G3_EDIT_ZERO ? "zero" : k == G3_EDIT_SET ? "mean" : k == G3_EDIT_ADD ? "add" : "patch";
}

// One line saying what an edit does (at which site, which positions).
static void describe(char *buf, size_t cap, const G3Intervention *iv, const G3Edit *e, int T) {
    char nm[96], hd[32] = "";
    g3_hook_name(nm, sizeof nm, e->site, e->layer);
    if (e->head >= 0) snprintf(hd, sizeof hd, " head %d", e->head);
    int w = e->head >= 0 ? iv->m->cfg.head_dim : g3_site_width(&iv->m->cfg, e->site);
    switch (e->kind) {
    case G3_EDIT_ZERO: snprintf(buf, cap, "%s%s := 0 at every position", nm, hd); break;
    case G3_EDIT_SET: snprintf(buf, cap, "%s%s := its mean (norm %.4g) at every position", nm, hd, vnorm(e->vec, w)); break;
    case G3_EDIT_ADD: snprintf(buf, cap, "%s += %g x vector (norm %.4g) at every position", nm, e->scale, vnorm(e->vec, w)); break;
    case G3_EDIT_PATCH: {
        int Ts = iv->src[e->src].n;
        if (e->last) snprintf(buf, cap, "%s := source's at position %d (source position %d)", nm, T - 1, Ts - 1);
        else snprintf(buf, cap, "%s := source's at positions 0-%d", nm, G3_MIN(T, Ts) - 1);
        break;
    }
    }
}

static void print_ids_line(const char *label, const int32_t *ids, int n, const G3Tokenizer *tok) {
    printf("  %-11s", label);
    if (tok) {
        char *s = g3_tok_decode(tok, ids, n, 0, NULL);
        if (s) {
            printf(" ");
            json_write_str(stdout, s, strlen(s));
            free(s);
        }
        printf("  ");
    }
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : " ", ids[i]);
    printf("\n");
}

static void json_num(FILE *f, double x) {
    if (isfinite(x)) fprintf(f, "%.9g", x);
    else fprintf(f, "null");
}

static void json_ids(FILE *f, const int32_t *ids, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? "," : "", ids[i]);
    fputc(']', f);
}

static void json_top(FILE *f, const int32_t *ids, const double *p, int k, const G3Tokenizer *tok) {
    fputc('[', f);
    for (int i = 0; i < k; i++) {
        fprintf(f, "%s{\"id\": %d, \"p\": ", i ? ", " : "", ids[i]);
        json_num(f, p[i]);
        if (tok) {
            size_t n;
            char *s = g3_tok_decode(tok, &ids[i], 1, 0, &n);
            if (s) {  // one token may be part of a character: its text then holds U+FFFD, counted
                fprintf(f, ", \"text\": ");
                size_t bad = json_write_str(f, s, n);
                if (bad) fprintf(f, ", \"invalid_utf8\": %zu", bad);
                free(s);
            }
        }
        fputc('}', f);
    }
    fputc(']', f);
}

typedef struct {
    const char *model;
    const int32_t *ids;
    int T, k, exact, ngen;
    const int32_t *top_c, *top_e;
    const double *p_c, *p_e;
    const G3IvResult *r;
    const G3Intervention *iv;
    const int32_t *gen_c, *gen_e;
    const G3Tokenizer *tok;
} Report;

static int write_json(const char *path, const Report *rp) {
    G3AtomicFile af;
    if (g3_atomic_open(&af, path)) return -1;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) { g3_atomic_abort(&af); return g3_errorf("%s: out of memory", path); }
    const G3IvResult *r = rp->r;
    fprintf(f, "{\n  \"model\": ");
    json_write_str(f, rp->model, strlen(rp->model));
    fprintf(f, ",\n  \"exact\": %s,\n  \"prompt_ids\": ", rp->exact ? "true" : "false");
    json_ids(f, rp->ids, rp->T);
    fprintf(f, ",\n  \"interventions\": [");
    for (int i = 0; i < rp->iv->nedit; i++) {
        const G3Edit *e = &rp->iv->edit[i];
        char nm[96], d[256];
        g3_hook_name(nm, sizeof nm, e->site, e->layer);
        describe(d, sizeof d, rp->iv, e, rp->T);
        fprintf(f, "%s\n    {\"kind\": \"%s\", \"site\": \"%s\", \"head\": %d", i ? "," : "", kind_name(e->kind), nm, e->head);
        if (e->kind == G3_EDIT_ADD) { fprintf(f, ", \"scale\": "); json_num(f, e->scale); }
        if (e->kind == G3_EDIT_PATCH) fprintf(f, ", \"positions\": \"%s\"", e->last ? "last" : "all");
        fprintf(f, ", \"what\": ");
        json_write_str(f, d, strlen(d));
        fputc('}', f);
    }
    fprintf(f, "%s],\n  \"next_token\": {\n    \"clean\": ", rp->iv->nedit ? "\n  " : "");
    json_top(f, rp->top_c, rp->p_c, rp->k, rp->tok);
    fprintf(f, ",\n    \"intervened\": ");
    json_top(f, rp->top_e, rp->p_e, rp->k, rp->tok);
    fprintf(f, ",\n    \"kl\": ");
    json_num(f, r->kl);
    fprintf(f, ",\n    \"kl_mean_over_positions\": ");
    json_num(f, r->kl_mean);
    fprintf(f, ",\n    \"clean_top_id\": %d,\n    \"p_clean_top\": {\"clean\": ", r->top);
    json_num(f, r->p_top_clean);
    fprintf(f, ", \"intervened\": ");
    json_num(f, r->p_top_edited);
    fprintf(f, ", \"change\": ");
    json_num(f, r->p_top_edited - r->p_top_clean);
    fprintf(f, "}\n  },\n  \"loss\": {\"positions\": %d, \"clean\": ", rp->T - 1);
    json_num(f, r->loss_clean);
    fprintf(f, ", \"intervened\": ");
    json_num(f, r->loss_edited);
    fprintf(f, ", \"change\": ");
    json_num(f, r->loss_edited - r->loss_clean);
    fprintf(f, "}");
    if (rp->ngen) {
        fprintf(f, ",\n  \"generate\": {\"clean\": ");
        json_ids(f, rp->gen_c, rp->ngen);
        fprintf(f, ", \"intervened\": ");
        json_ids(f, rp->gen_e, rp->ngen);
        fprintf(f, "}");
    }
    fprintf(f, "\n}\n");
    fclose(f);
    int rc = g3_atomic_write(&af, buf, len) || g3_atomic_commit(&af) ? -1 : 0;
    if (rc) g3_atomic_abort(&af);
    free(buf);
    return rc;
}

static void print_report(const Report *rp) {
    const G3IvResult *r = rp->r;
    const G3Intervention *iv = rp->iv;
    printf("intervene: %d prompt tokens, %s\n", rp->T, rp->exact ? "exact (f32 activations)" : "fast (bf16 activations in matrix products)");
    if (!iv->nedit) printf("  (no intervention given: both passes are the clean model)\n");
    int npatch = 0;
    for (int i = 0; i < iv->nedit; i++) npatch += iv->edit[i].kind == G3_EDIT_PATCH;
    for (int i = 0, shown = 0; i < iv->nedit; i++) {
        const G3Edit *e = &iv->edit[i];
        char d[256];
        if (e->kind == G3_EDIT_PATCH && npatch > 8 && shown++ >= 4) continue;  // a glob over every layer: a few and a count
        describe(d, sizeof d, iv, e, rp->T);
        printf("  %s\n", d);
    }
    if (npatch > 8) printf("  ... and %d more patched sites (%d in all)\n", npatch - 4, npatch);
    for (int i = 0; i < iv->nedit; i++) {
        const G3Edit *e = &iv->edit[i];
        if (e->kind != G3_EDIT_PATCH || e->last) continue;
        int Ts = iv->src[e->src].n;
        if (Ts != rp->T)
            printf("  note: the source has %d tokens and the prompt %d: positions %d-%d are patched, the rest run clean\n", Ts, rp->T, 0, G3_MIN(Ts, rp->T) - 1);
        break;
    }
    printf("\nnext token after the prompt\n  %-4s %-30s %s\n", "rank", "clean: id  p", "intervened: id  p");
    for (int i = 0; i < rp->k; i++) {
        char a[64], b[64], ca[96], cb[96];
        token_text(a, sizeof a, rp->tok, rp->top_c[i]);
        token_text(b, sizeof b, rp->tok, rp->top_e[i]);
        snprintf(ca, sizeof ca, "%6d  %-10.4g %s", rp->top_c[i], rp->p_c[i], a);
        snprintf(cb, sizeof cb, "%6d  %-10.4g %s", rp->top_e[i], rp->p_e[i], b);
        char line[256];
        int n = snprintf(line, sizeof line, "  %-4d %-30s %s", i + 1, ca, cb);
        while (n > 0 && line[n - 1] == ' ') line[--n] = 0;  // no trailing blanks when tokens have no text
        printf("%s\n", line);
    }
    printf("\nKL(clean || intervened)  %.6g nats at the next token, %.6g averaged over the %d positions\n", r->kl, r->kl_mean, rp->T);
    printf("p(clean top token %d)    %.6g -> %.6g (%+.6g)\n", r->top, r->p_top_clean, r->p_top_edited, r->p_top_edited - r->p_top_clean);
    if (rp->T >= 2)
        printf("loss                     clean %.6f, intervened %.6f, change %+.6f (mean next-token cross-entropy over %d positions)\n",
               r->loss_clean, r->loss_edited, r->loss_edited - r->loss_clean, rp->T - 1);
    else
        printf("loss                     needs at least two prompt tokens\n");
    if (rp->ngen) {
        printf("\ngreedy continuation (%d tokens)\n", rp->ngen);
        print_ids_line("clean", rp->gen_c, rp->ngen, rp->tok);
        print_ids_line("intervened", rp->gen_e, rp->ngen, rp->tok);
    }
}

// The tokenizer when one is needed (text prompts) or available (for showing tokens).
static int want_tokenizer(const char *tok_path, const char *dir, int needed, const G3Model *m, G3Tokenizer **out) {
    *out = NULL;
    char a[4200], b[4200];
    int present = tok_path || (!g3_path_join(a, sizeof a, dir, "tokenizer.json") && g3_file_exists(a)) ||
                  (!g3_path_join(b, sizeof b, dir, "tokenizer.model") && g3_file_exists(b));
    if (!needed && !present) return 0;
    if (!(*out = cli_load_tokenizer(tok_path, dir, m))) return -1;
    return 0;
}

int cmd_intervene(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *ids_s = NULL, *text = NULL, *tok_path = NULL, *heads = NULL, *mlps = NULL, *ablation = "zero",
               *mean_prompts = NULL, *patch = NULL, *src_text = NULL, *src_ids_s = NULL, *patch_pos = "all", *steer = NULL,
               *steer_from = NULL, *save_vec = NULL, *json = NULL;
    long layer = -1, threads = 0, topk = 5, ngen = 0;
    double scale = 1;
    int exact = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--prompt", OPT_STR, &text, "prompt text (tokenized with <bos>)"},
        {"--ids", OPT_STR, &ids_s, "prompt as token ids, comma-separated (start with 2, <bos>)"},
        {"--ablate-head", OPT_STR, &heads, "heads L.H[,L.H...] (L.* = every head of layer L): blocks.L.attn.hook_z, head H's columns"},
        {"--ablate-mlp", OPT_STR, &mlps, "MLP layers L[,L...] (* = all): blocks.L.hook_mlp_out"},
        {"--ablation", OPT_STR, &ablation, "zero | mean (the mean over the prompt's positions, or --mean-prompts')"},
        {"--mean-prompts", OPT_STR, &mean_prompts, "prompt file whose positions give the means for --ablation mean"},
        {"--patch", OPT_STR, &patch, "hook sites SITE[,SITE...] (globs: blocks.*.hook_resid_post) to copy from the source run"},
        {"--source-prompt", OPT_STR, &src_text, "the patch source as text"},
        {"--source-ids", OPT_STR, &src_ids_s, "the patch source as token ids"},
        {"--patch-pos", OPT_STR, &patch_pos, "all (positions aligned from the start) | last (last from the source's last)"},
        {"--steer", OPT_STR, &steer, "steering vector file (.npy float32/64 1-D, or text floats) added at --layer"},
        {"--steer-from", OPT_STR, &steer_from, "POS_FILE,NEG_FILE: steer by mean resid_post(POS) - mean resid_post(NEG)"},
        {"--layer", OPT_INT, &layer, "steering layer: the vector is added to blocks.L.hook_resid_post", -1, 1 << 20},
        {"--scale", OPT_FLOAT, &scale, "steering scale", 0, 0, -1e6, 1e6},
        {"--save-vector", OPT_STR, &save_vec, "write the --steer-from vector to this .npy file"},
        {"--top-k", OPT_INT, &topk, "next tokens to show", 1, 1000},
        {"--generate", OPT_INT, &ngen, "also show N greedy tokens, clean and intervened", 0, 1 << 20},
        {"--json", OPT_STR, &json, "write the report as JSON to this file"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE(CMD, "--model DIR (--prompt TEXT | --ids 2,17,300) [--ablate-head L.H] [--ablate-mlp L] [--patch SITES --source-ids ...] "
                   "[--steer FILE | --steer-from POS,NEG] [--layer L --scale S] [options]",
              argc, argv, opts);
    if (cli_model_or_default(CMD, &dir)) return 1;
    if (!!ids_s + !!text != 1) return cli_fail(CMD, "give exactly one of --prompt and --ids");
    G3Ablation how = G3_ABLATE_ZERO;
    if (!strcmp(ablation, "mean")) how = G3_ABLATE_MEAN;
    else if (strcmp(ablation, "zero")) return cli_fail(CMD, "--ablation: '%s' is neither zero nor mean", ablation);
    if (mean_prompts && how != G3_ABLATE_MEAN) return cli_fail(CMD, "--mean-prompts needs --ablation mean");
    if (how == G3_ABLATE_MEAN && !heads && !mlps) return cli_fail(CMD, "--ablation mean needs --ablate-head or --ablate-mlp");
    int last = !strcmp(patch_pos, "last");
    if (!last && strcmp(patch_pos, "all")) return cli_fail(CMD, "--patch-pos: '%s' is neither all nor last", patch_pos);
    if (last && !patch) return cli_fail(CMD, "--patch-pos needs --patch SITES");
    if (patch && !!src_text + !!src_ids_s != 1) return cli_fail(CMD, "--patch needs exactly one of --source-prompt and --source-ids");
    if (!patch && (src_text || src_ids_s)) return cli_fail(CMD, "--source-prompt / --source-ids need --patch SITES");
    if (steer && steer_from) return cli_fail(CMD, "give one of --steer and --steer-from, not both");
    if ((steer || steer_from) && layer < 0) return cli_fail(CMD, "--steer / --steer-from need --layer L");
    if (!steer && !steer_from && layer >= 0) return cli_fail(CMD, "--layer is the steering layer: it needs --steer or --steer-from");
    if (scale != 1 && !steer && !steer_from) return cli_fail(CMD, "--scale is the steering scale: it needs --steer or --steer-from");
    if (save_vec && !steer_from) return cli_fail(CMD, "--save-vector needs --steer-from");
    const char *comma = steer_from ? strchr(steer_from, ',') : NULL;
    if (steer_from && (!comma || comma == steer_from || !comma[1])) return cli_fail(CMD, "--steer-from wants POS_FILE,NEG_FILE");
    cli_set_threads(threads);

    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) return cli_fail(CMD, "%s", g3_error());
    const G3Config *c = &m.cfg;
    const int fast = !exact;
    int rc = 1, T = 0, Ts = 0;
    int32_t *ids = NULL, *src_ids = NULL, *top_c = NULL, *top_e = NULL, *gen_c = NULL, *gen_e = NULL;
    double *p_c = NULL, *p_e = NULL;
    float *vec = NULL;
    G3Tokenizer *tok = NULL;
    PromptSet means = {0}, pos = {0}, neg = {0};
    G3Intervention iv;
    G3IvResult r = {0};
    g3_iv_init(&iv, &m);
    // text prompts need the tokenizer; otherwise it is loaded only to show tokens as text (prompt
    // files without one must write their prompts as ids)
    if (want_tokenizer(tok_path, dir, text || src_text, &m, &tok)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    T = ids_s ? cli_parse_ids(ids_s, &ids) : g3_tok_encode(tok, text, strlen(text), 1, 0, &ids);
    if (T < 0) { cli_fail(CMD, "%s%s", ids_s ? "--ids: " : "", g3_error()); goto out; }
    if (T == 0) { cli_fail(CMD, "empty prompt"); goto out; }
    if (layer >= c->layers) { cli_fail(CMD, "--layer %ld is out of range: the model has layers 0-%d", layer, c->layers - 1); goto out; }

    // ablations (the mean comes from --mean-prompts, else from the prompt's own positions)
    if (heads || mlps) {
        if (mean_prompts && set_load(&means, mean_prompts, tok)) { cli_fail(CMD, "--mean-prompts: %s", g3_error()); goto out; }
        const int32_t *const *mp = mean_prompts ? (const int32_t *const *)means.ids : (const int32_t *const *)&ids;
        const int *ml = mean_prompts ? means.lens : &T;
        if (g3_iv_ablate(&iv, heads, mlps, how, mp, ml, mean_prompts ? means.n : 1, fast)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    }
    if (patch) {
        Ts = src_ids_s ? cli_parse_ids(src_ids_s, &src_ids) : g3_tok_encode(tok, src_text, strlen(src_text), 1, 0, &src_ids);
        if (Ts < 0) { cli_fail(CMD, "%s%s", src_ids_s ? "--source-ids: " : "", g3_error()); goto out; }
        if (Ts == 0) { cli_fail(CMD, "empty source prompt"); goto out; }
        if (g3_iv_patch(&iv, patch, src_ids, Ts, last, fast) < 0) { cli_fail(CMD, "%s", g3_error()); goto out; }
    }
    if (steer) {
        int n = g3_vec_load(steer, &vec);
        if (n < 0) { cli_fail(CMD, "--steer: %s", g3_error()); goto out; }
        for (int i = 0; i < n; i++)
            if (!isfinite(vec[i])) { cli_fail(CMD, "--steer %s: value %d of %d is %g; a steering vector must be finite", steer, i + 1, n, vec[i]); goto out; }
        if (g3_iv_steer(&iv, (int)layer, vec, n, (float)scale)) { cli_fail(CMD, "--steer %s: %s", steer, g3_error()); goto out; }
    }
    if (steer_from) {
        char pos_path[4096];
        snprintf(pos_path, sizeof pos_path, "%.*s", (int)(comma - steer_from), steer_from);
        if (set_load(&pos, pos_path, tok) || set_load(&neg, comma + 1, tok)) { cli_fail(CMD, "--steer-from: %s", g3_error()); goto out; }
        if (!(vec = g3_malloc((size_t)c->hidden * sizeof *vec))) { cli_fail(CMD, "%s", g3_error()); goto out; }
        if (g3_steer_from_sets(vec, &m, (int)layer, (const int32_t *const *)pos.ids, pos.lens, pos.n, (const int32_t *const *)neg.ids, neg.lens,
                               neg.n, fast)) { cli_fail(CMD, "--steer-from: %s", g3_error()); goto out; }
        if (save_vec) {
            if (g3_vec_save_npy(save_vec, vec, c->hidden)) { cli_fail(CMD, "--save-vector: %s", g3_error()); goto out; }
            fprintf(stderr, "intervene: wrote the steering vector [%d] (norm %.4g) to %s\n", c->hidden, vnorm(vec, c->hidden), save_vec);
        }
        if (g3_iv_steer(&iv, (int)layer, vec, c->hidden, (float)scale)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    }

    double t0 = g3_now();
    if (g3_iv_compare(&r, &iv, ids, T, fast)) { cli_fail(CMD, "%s", g3_error()); goto out; }
    int k = (int)G3_MIN(topk, (long)c->vocab);
    top_c = g3_malloc((size_t)k * sizeof *top_c);
    top_e = g3_malloc((size_t)k * sizeof *top_e);
    p_c = g3_malloc((size_t)k * sizeof *p_c);
    p_e = g3_malloc((size_t)k * sizeof *p_e);
    if (!top_c || !top_e || !p_c || !p_e) { cli_fail(CMD, "%s", g3_error()); goto out; }
    g3_topk(top_c, p_c, r.clean + (long)(T - 1) * c->vocab, c->vocab, k);
    g3_topk(top_e, p_e, r.edited + (long)(T - 1) * c->vocab, c->vocab, k);
    if (ngen) {
        if (T + ngen > c->max_pos) { cli_fail(CMD, "%d prompt tokens + %ld generated exceed the model's context of %d", T, ngen, c->max_pos); goto out; }
        gen_c = g3_malloc((size_t)ngen * sizeof *gen_c);
        gen_e = g3_malloc((size_t)ngen * sizeof *gen_e);
        if (!gen_c || !gen_e || g3_iv_generate(gen_c, &m, NULL, ids, T, (int)ngen, fast) || g3_iv_generate(gen_e, &m, &iv, ids, T, (int)ngen, fast)) {
            const char *err = g3_error();
            if (strstr(err, "non-finite logits")) cli_fail(CMD, "%s; the model in %s, or the intervention, produces them", err, dir);
            else cli_fail(CMD, "%s", err);
            goto out;
        }
    }
    Report rp = {dir, ids, T, k, exact, (int)ngen, top_c, top_e, p_c, p_e, &r, &iv, gen_c, gen_e, tok};
    print_report(&rp);
    fflush(stdout);
    fprintf(stderr, "intervene: clean and intervened passes in %.3f s\n", g3_now() - t0);
    if (json) {
        if (write_json(json, &rp)) { cli_fail(CMD, "--json: %s", g3_error()); goto out; }
        fprintf(stderr, "intervene: wrote %s\n", json);
    }
    rc = 0;
out:
    g3_iv_result_free(&r);
    g3_iv_free(&iv);
    set_free(&means); set_free(&pos); set_free(&neg);
    free(ids); free(src_ids); free(top_c); free(top_e); free(p_c); free(p_e); free(gen_c); free(gen_e); free(vec);
    g3_tok_free(tok);
    cli_model_free(&m);
    return rc;
}
