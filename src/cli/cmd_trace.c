// cmd_trace.c: `gemma3 trace`: runs one prompt, a batch of prompts, and optionally N greedy
// tokens after them, through the model with the recording hook (model/record.h) on the sites
// chosen by --hooks, and writes every array to a NumPy .npz with a JSON sidecar that names
// the tokens, the arrays and the model. Layout (docs/hooks.md): arrays [batch, pos, ...]
// by absolute position, generated tokens continuing their prompt's positions.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "cli_gen.h"
#include "cli_image.h"
#include "gen/engine.h"
#include "gen/prompts.h"
#include "io/npz.h"
#include "model/forward.h"
#include "model/record.h"

typedef struct {
    int B;
    int32_t **ids;  // [B][P_b + N] prompt, then the generated tokens
    int *plen;      // [B] prompt lengths
    char **text;    // [B] prompt text, or NULL for ids
} Seqs;

static void seqs_free(Seqs *q) {
    for (int b = 0; b < q->B; b++) { free(q->ids[b]); free(q->text[b]); }
    free(q->ids); free(q->plen); free(q->text);
}

static int seqs_add(Seqs *q, int32_t *ids, int n, const char *text) {
    int32_t **ni = g3_realloc(q->ids, (size_t)(q->B + 1) * sizeof *ni);
    if (ni) q->ids = ni;
    int *np = g3_realloc(q->plen, (size_t)(q->B + 1) * sizeof *np);
    if (np) q->plen = np;
    char **nt = g3_realloc(q->text, (size_t)(q->B + 1) * sizeof *nt);
    if (nt) q->text = nt;
    if (!ni || !np || !nt) { free(ids); return -1; }
    q->ids[q->B] = ids;
    q->plen[q->B] = n;
    q->text[q->B] = text ? g3_strdup(text) : NULL;
    q->B++;
    return 0;
}

// --ids "2,17,300" or several sequences "2,17,300;2,45".
static int parse_id_lists(Seqs *q, const char *s) {
    char *copy = g3_strdup(s);
    if (!copy) return -1;
    int rc = 0;
    for (char *save = NULL, *part = strtok_r(copy, ";", &save); part; part = strtok_r(NULL, ";", &save)) {
        int32_t *ids;
        int n = cli_parse_ids(part, &ids);
        if (n < 0) { rc = -1; break; }
        if (n == 0) { free(ids); rc = g3_errorf("sequence %d has no ids", q->B + 1); break; }
        if (seqs_add(q, ids, n, NULL)) { rc = -1; break; }
    }
    free(copy);
    if (!rc && q->B == 0) rc = g3_errorf("no ids given");
    return rc;
}

static const char *sidecar_path(char *buf, size_t cap, const char *out) {
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".npz")) snprintf(buf, cap, "%.*s.json", (int)(n - 4), out);
    else snprintf(buf, cap, "%s.json", out);
    return buf;
}

// The sidecar: tokens (ids and pieces), every array's name/shape/dtype, the model config.
static int write_sidecar(const char *path, const char *model_dir, const G3Config *c, const Seqs *q, int N, int T, const G3Recorder *r,
                         const CliVisRec *vr, const G3Tokenizer *tok, int exact) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return g3_errorf("%s: out of memory", path);
    fprintf(f, "{\n  \"model\": ");
    json_write_str(f, model_dir, strlen(model_dir));
    fprintf(f, ",\n  \"config\": {\"family\": \"gemma%d\", \"architecture\": ", (int)c->family);
    json_write_str(f, c->arch, strlen(c->arch));
    fprintf(f, ", \"vocab\": %d, \"hidden\": %d, \"intermediate\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, "
               "\"head_dim\": %d, \"query_pre_attn_scalar\": %g, \"sliding_window\": %d, \"attn_softcap\": %g, \"final_softcap\": %g, "
               "\"rope_global_base\": %g, \"rope_local_base\": %g, \"rope_global_scale\": %g, \"qk_norm\": %s, \"sliding\": [",
            c->vocab, c->hidden, c->inter, c->layers, c->heads, c->kv_heads, c->head_dim, c->query_pre_attn_scalar, c->sliding_window,
            c->attn_softcap, c->final_softcap, c->rope_global_base, c->rope_local_base, c->rope_global_scale, c->qk_norm ? "true" : "false");
    for (int l = 0; l < c->layers; l++) fprintf(f, "%s%s", l ? ", " : "", c->sliding[l] ? "true" : "false");
    fprintf(f, "]},\n  \"activations\": \"%s\",\n  \"batch\": %d,\n  \"positions\": %d,\n  \"generated\": %d,\n  \"sequences\": [\n",
            exact ? "f32 (exact)" : "fast (bf16 in matrix products)", q->B, T, N);
    for (int b = 0; b < q->B; b++) {
        int n = q->plen[b] + N;
        size_t bad = 0;  // bytes that were not UTF-8, written as U+FFFD (the ids are exact)
        fprintf(f, "    {\"prompt\": ");
        if (q->text[b]) bad += json_write_str(f, q->text[b], strlen(q->text[b]));
        else fprintf(f, "null");
        fprintf(f, ", \"prompt_length\": %d, \"length\": %d,\n     \"ids\": [", q->plen[b], n);
        for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? ", " : "", q->ids[b][i]);
        fprintf(f, "],\n     \"pieces\": ");
        if (!tok) fprintf(f, "null");
        else {
            fprintf(f, "[");
            for (int i = 0; i < n; i++) {
                const char *p = g3_tok_piece(tok, q->ids[b][i]);
                fprintf(f, "%s", i ? ", " : "");
                if (p) bad += json_write_str(f, p, strlen(p));
                else fprintf(f, "null");
            }
            fprintf(f, "]");
        }
        if (bad) fprintf(f, ",\n     \"invalid_utf8\": %zu", bad);
        fprintf(f, "}%s\n", b + 1 < q->B ? "," : "");
    }
    fprintf(f, "  ],\n  \"arrays\": [\n    {\"name\": \"ids\", \"shape\": [%d, %d], \"dtype\": \"int32\"},\n"
               "    {\"name\": \"lengths\", \"shape\": [%d], \"dtype\": \"int32\"},\n"
               "    {\"name\": \"prompt_lengths\", \"shape\": [%d], \"dtype\": \"int32\"}%s\n",
            q->B, T, q->B, q->B, r->narr || vr->narr ? "," : "");
    for (int i = 0; i < r->narr; i++) {
        const G3RecArray *a = &r->arr[i];
        fprintf(f, "    {\"name\": \"%s\", \"shape\": [", a->name);
        for (int d = 0; d < a->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)a->shape[d]);
        fprintf(f, "], \"dtype\": \"float32\", \"site\": \"%s\", \"layer\": %d}%s\n", g3_hook_site_suffix(a->site), a->layer,
                i + 1 < r->narr || vr->narr ? "," : "");
    }
    for (int i = 0; i < vr->narr; i++) {
        const CliVisArr *a = &vr->arr[i];
        G3VisionSite site;
        int layer = -1;
        g3_vision_hook_parse(a->name, &site, &layer);
        fprintf(f, "    {\"name\": \"%s\", \"shape\": [", a->name);
        for (int d = 0; d < a->ndim; d++) fprintf(f, "%s%d", d ? ", " : "", a->shape[d]);
        fprintf(f, "], \"dtype\": \"float32\", \"site\": \"vision.%s\", \"layer\": %d}%s\n", g3_vision_site_suffix(site), layer,
                i + 1 < vr->narr ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    if (fclose(f)) { free(buf); return g3_errorf("%s: out of memory", path); }
    int rc = g3_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static int write_npz(const char *path, int compress, const Seqs *q, int N, int T, const G3Recorder *r, const CliVisRec *vr) {
    G3Npz z;
    if (g3_npz_open(&z, path, compress)) return -1;
    int32_t *ids = g3_malloc((size_t)q->B * T * sizeof *ids), *lens = g3_malloc((size_t)q->B * 2 * sizeof *lens);
    if (!ids || !lens) { free(ids); free(lens); g3_npz_abort(&z); return -1; }
    for (int b = 0; b < q->B; b++) {
        int n = q->plen[b] + N;
        for (int t = 0; t < T; t++) ids[(long)b * T + t] = t < n ? q->ids[b][t] : -1;  // -1: padding
        lens[b] = n;
        lens[q->B + b] = q->plen[b];
    }
    int64_t sh2[2] = {q->B, T}, sh1[1] = {q->B};
    int rc = g3_npz_add(&z, "ids", G3_NPZ_I32, 2, sh2, ids) || g3_npz_add(&z, "lengths", G3_NPZ_I32, 1, sh1, lens) ||
             g3_npz_add(&z, "prompt_lengths", G3_NPZ_I32, 1, sh1, lens + q->B);
    free(ids);
    free(lens);
    for (int i = 0; i < r->narr && !rc; i++) rc = g3_npz_add(&z, r->arr[i].name, G3_NPZ_F32, r->arr[i].ndim, r->arr[i].shape, r->arr[i].data);
    for (int i = 0; i < vr->narr && !rc; i++) {  // the vision tower's sites: images first (cli_image.h)
        const CliVisArr *a = &vr->arr[i];
        int64_t sh[4];
        for (int d = 0; d < a->ndim; d++) sh[d] = a->shape[d];
        rc = g3_npz_add(&z, a->name, G3_NPZ_F32, a->ndim, sh, a->data);
    }
    if (rc) { g3_npz_abort(&z); return -1; }
    return g3_npz_close(&z);
}

// Runs every sequence through the engine, sequence b in slot b (the recorder's batch index):
// its prompt, then N greedy tokens, each generated token fed back once so that its
// activations sit at its own position (the engine stops before feeding the last one: a
// second turn of no new tokens feeds it). q->ids[b] gets the generated tokens after the prompt.
static int run(G3State *s, Seqs *q, int N, int all) {
    G3EngineOptions eo = {.all_logits = all};
    G3Engine *e = g3_engine_new(s, &eo);
    int *id = g3_malloc((size_t)q->B * sizeof *id);
    int rc = -1, left;
    if (!e || !id) goto out;
    for (int b = 0; b < q->B; b++) {
        G3SeqParams p = {.prompt = q->ids[b], .nprompt = q->plen[b], .max_tokens = N};  // greedy, no stops
        if ((id[b] = g3_engine_add(e, &p)) < 0) goto out;
    }
    for (int turn = 0; turn < (N > 0 ? 2 : 1); turn++) {
        while ((left = g3_engine_step(e)) > 0) {}
        if (left < 0) goto out;
        for (int b = 0; b < q->B; b++) {
            G3SeqInfo info;
            g3_engine_read(e, id[b], &info);
            if (info.stop == G3_STOP_ERROR) { g3_errorf("sequence %d, generated token %d: %s", b + 1, info.n + 1, info.error); goto out; }
            if (info.slot != b) { g3_errorf("sequence %d ran in slot %d", b + 1, info.slot); goto out; }
            if (turn == 1) continue;
            memcpy(q->ids[b] + q->plen[b], info.ids, (size_t)info.n * sizeof(int32_t));
            if (N > 0 && g3_engine_extend(e, id[b], NULL, 0, 0)) goto out;  // feed the last token
        }
    }
    rc = 0;
out:
    g3_engine_free(e);
    free(id);
    return rc;
}

int cmd_trace(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *text = NULL, *ids_s = NULL, *prompts_file = NULL, *hooks = NULL, *out = NULL, *tok_path = NULL;
    long threads = 0, gen = 0;
    int exact = 0, compress = 0;
    CliList images = {{0}};
    int pan_scan = 0;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--prompt", OPT_STR, &text, "prompt text (tokenized with <bos>)"},
        {"--ids", OPT_STR, &ids_s, "token ids, comma-separated; several sequences separated by ';'"},
        {"--prompts-file", OPT_STR, &prompts_file, "a batch: one prompt a line, or a JSON list (or categorized JSON)"},
        {"--hooks", OPT_STR, &hooks, "sites to record, comma-separated names or globs ('blocks.*.hook_resid_post', '*'; the vision tower's: 'vision.*')"},
        CLI_IMAGE_OPT(images),
        CLI_PAN_SCAN_OPT(pan_scan),
        {"--out", OPT_STR, &out, "the .npz to write (a JSON sidecar goes beside it: acts.npz -> acts.json)"},
        {"--generate", OPT_INT, &gen, "greedy-decode N tokens after each prompt, recording every step", 0, 1 << 20},
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere (default: bf16 in matrix products)"},
        {"--compress", OPT_FLAG, &compress, "deflate the arrays (default: stored, faster to write and read)"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("trace", "--model DIR (--prompt TEXT | --ids 2,17,... | --prompts-file FILE) --hooks PATTERN[,PATTERN...] --out acts.npz", argc, argv, opts);
    if (!hooks || !out) return cli_fail("trace", "--hooks and --out are required (see --help)");
    if (cli_model_or_default("trace", &dir)) return 1;
    if (!!text + !!ids_s + !!prompts_file != 1) return cli_fail("trace", "give exactly one of --prompt, --ids and --prompts-file");
    cli_set_threads(threads);
    G3Model m;
    if (cli_model_load(&m, dir, adapter_dir)) return cli_fail("trace", "%s", g3_error());
    const G3Config *c = &m.cfg;
    const int V = c->vocab, N = (int)gen;
    int rc = 1, npat = 0;
    Seqs q = {0};
    G3Tokenizer *tok = NULL;
    G3State *s = NULL;
    G3Recorder r = {0};
    CliImages ci = {0};
    CliVisRec vr = {0};
    int ntext = 0;  // patterns for the text model (the vision tower's start with "vision.")
    char **pats = NULL, *hcopy = g3_strdup(hooks);
    // patterns
    for (char *save = NULL, *p = hcopy ? strtok_r(hcopy, ",", &save) : NULL; p; p = strtok_r(NULL, ",", &save)) {
        char **np = g3_realloc(pats, (size_t)(npat + 1) * sizeof *np);
        if (!np) goto out;
        pats = np;
        pats[npat++] = p;
    }
    if (!npat) { cli_fail("trace", "--hooks: no pattern given"); goto out; }
    // the text model's patterns first (the recorder refuses one that names no text site)
    for (int i = 0; i < npat; i++)
        if (!cli_vision_pattern(pats[i])) {
            char *t = pats[ntext];
            pats[ntext++] = pats[i];
            pats[i] = t;
        }
    if (ntext < npat && !images.n) { cli_fail("trace", "--hooks %s: the vision tower's sites need --image", pats[ntext]); goto out; }
    vr.pats = (const char *const *)pats + ntext;  // the tower's sites are chosen by its own patterns ("vision.*"), never by "*"
    vr.npat = npat - ntext;
    if (cli_images_load(&ci, &m, &images, exact, pan_scan, &vr)) { cli_fail("trace", "%s", g3_error()); goto out; }
    if (vr.failed) { cli_fail("trace", "out of memory recording the vision tower"); goto out; }
    // sequences; the tokenizer is needed for text, and used for the pieces when present
    if (ids_s) {
        if (parse_id_lists(&q, ids_s)) { cli_fail("trace", "--ids: %s", g3_error()); goto out; }
        tok = cli_load_tokenizer(tok_path, dir, &m);
        if (!tok && tok_path) { cli_fail("trace", "%s", g3_error()); goto out; }
        g3_error_clear();
    } else {
        if (!(tok = cli_load_tokenizer(tok_path, dir, &m))) { cli_fail("trace", "%s", g3_error()); goto out; }
        G3Prompts ps = {0};
        if (prompts_file && g3_prompts_load(&ps, prompts_file)) { cli_fail("trace", "%s", g3_error()); goto out; }
        if (prompts_file && ps.n == 0) { g3_prompts_free(&ps); cli_fail("trace", "%s: no prompts", prompts_file); goto out; }
        for (int i = 0; i < (prompts_file ? ps.n : 1); i++) {
            const char *t = prompts_file ? ps.items[i].text : text;
            int32_t *ids;
            int n = ci.n ? g3_vision_encode_text(&ci.v.cfg, tok, t, ci.n, 1, 0, &ids) : g3_tok_encode(tok, t, strlen(t), 1, 0, &ids);
            if (n < 0 || seqs_add(&q, ids, n, t)) { g3_prompts_free(&ps); cli_fail("trace", "%s", g3_error()); goto out; }
        }
        g3_prompts_free(&ps);
    }
    if (ci.n && q.B != 1) { cli_fail("trace", "--image applies to one sequence (%d given)", q.B); goto out; }
    int maxp = 0;
    for (int b = 0; b < q.B; b++) {
        for (int i = 0; i < q.plen[b]; i++)
            if (q.ids[b][i] < 0 || q.ids[b][i] >= V) { cli_fail("trace", "sequence %d: token id %d is outside the vocabulary [0, %d)", b + 1, q.ids[b][i], V); goto out; }
        maxp = G3_MAX(maxp, q.plen[b]);
        int32_t *grown = g3_realloc(q.ids[b], (size_t)(q.plen[b] + N) * sizeof *grown);
        if (!grown) goto out;
        q.ids[b] = grown;
    }
    const int T = maxp + N;
    if (T > c->max_pos) { cli_fail("trace", "%d positions (longest prompt %d + %d generated) exceed the model's context of %d", T, maxp, N, c->max_pos); goto out; }
    if (g3_rec_init(&r, c, q.B, T, (const char *const *)pats, ntext)) { cli_fail("trace", "%s", g3_error()); goto out; }
    const int R = G3_MAX(cli_images_rows(&ci, maxp, G3_MIN(maxp, 512)), q.B);
    if (!(s = g3_state_new(&m, q.B, T, R, !exact, NULL))) { cli_fail("trace", "%s", g3_error()); goto out; }
    if (cli_images_attach(&ci, s, q.ids[0], q.plen[0])) { cli_fail("trace", "%s", g3_error()); goto out; }
    g3_rec_attach(&r, s);
    // every row's logits only when a final site is recorded (the vocabulary is large)
    const int all = (r.sites >> G3_HOOK_LOGITS & 1) || (r.sites >> G3_HOOK_LN_FINAL & 1);
    double t0 = g3_now();
    int frc = run(s, &q, N, all);
    double dt = g3_now() - t0;
    if (frc) {
        const char *err = g3_error();
        if (strstr(err, "non-finite logits")) cli_fail("trace", "%s; the model in %s produces them (do its weights hold NaN or inf?)", err, dir);
        else cli_fail("trace", "%s", err);
        goto out;
    }
    char side[4200];
    sidecar_path(side, sizeof side, out);
    if (write_npz(out, compress, &q, N, T, &r, &vr) || write_sidecar(side, dir, c, &q, N, T, &r, &vr, tok, exact)) {
        cli_fail("trace", "%s", g3_error());
        goto out;
    }
    double mib = 0;
    for (int i = 0; i < r.narr; i++) {
        double n = 4;
        for (int d = 0; d < r.arr[i].ndim; d++) n *= (double)r.arr[i].shape[d];
        mib += n / 1048576;
    }
    for (int i = 0; i < vr.narr; i++) mib += 4.0 * vr.arr[i].shape[0] * (double)vr.arr[i].one / 1048576;
    fprintf(stderr, "trace: %d sequence%s x %d positions (%d generated) in %.3f s; %d arrays (%.1f MiB) to %s, sidecar %s\n", q.B, q.B > 1 ? "s" : "", T, N,
            dt, r.narr + vr.narr + 3, mib, out, side);
    rc = 0;
out:
    g3_state_free(s);
    g3_rec_free(&r);
    cli_images_free(&ci);
    cli_vision_rec_free(&vr);
    g3_tok_free(tok);
    seqs_free(&q);
    free(pats);
    free(hcopy);
    cli_model_free(&m);
    return rc;
}
