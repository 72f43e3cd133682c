// batch.c: see batch.h.
#include "batch.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/json.h"
#include "generate.h"
#include "prompts.h"
#include "textstream.h"

typedef struct {
    const G3BatchJob *job;
    const G3Tokenizer *tok;
    const G3Prompts *prompts;
    int *orig;                 // pending index -> prompt index in the file
    G3GenResult *res;          // [npending]
    G3TextStream *ts;          // [npending] (initialised lazily)
    G3Sampler **pool;          // [batch_size]
    int *pool_free, nfree;
    int *sampler_of;           // [npending] pool index or -1
    FILE *journal;
    int done, total, already;
    long new_tokens;
    double t0, last_draw;
    int failed;                // journal write failed: stop
    volatile int *user_abort;  // the caller's flag (Ctrl-C)
    volatile int stop_all;     // what g3_generate watches: user_abort, or a fatal error below
    char fatal[512];           // an error that stops the job (non-finite logits), or ""
} Run;

// A broken model (non-finite logits) would fail every prompt alike: the job stops, naming the
// prompt, the step and the model, and the failed prompts are not journaled (resume reruns them).
static void set_fatal(Run *r, int i, int step, const char *msg) {
    if (!r->fatal[0])
        snprintf(r->fatal, sizeof r->fatal, "prompt %d, step %d: %s; the model in %s produces them (do its weights hold NaN or inf?)",
                 r->orig[i] + 1, step, msg, r->job->model_dir ? r->job->model_dir : "?");
    r->stop_all = 1;
}

// Sequence i's sampler (engine.h: the engine samples with it, on a GPU where the logits are):
// taken from the pool when it first chooses, given back in on_done. Non-finite logits end the
// sequence in the engine, and on_done stops the job.
static G3Sampler *sampler(void *ctx, int i) {
    Run *r = ctx;
    r->stop_all = r->fatal[0] || (r->user_abort && *r->user_abort);
    if (r->sampler_of[i] < 0) {  // first token of this sequence: take a sampler from the pool
        int k = r->pool_free[--r->nfree];
        r->sampler_of[i] = k;
        g3_sampler_reseed(r->pool[k], r->job->sampling.seed + (uint64_t)r->orig[i]);
    }
    return r->pool[r->sampler_of[i]];
}

static int on_token(void *ctx, int i, int32_t id, G3StopReason *why) {
    Run *r = ctx;
    if (r->fatal[0]) { *why = G3_STOP_ABORT; return 1; }
    r->new_tokens++;
    int st = g3_ts_push(&r->ts[i], r->tok, id);
    if (st != 0) { *why = st > 0 ? G3_STOP_STRING : G3_STOP_ERROR; return 1; }
    return 0;
}

static void progress(Run *r, int force) {
    if (!r->job->progress) return;
    double now = g3_now();
    int tty = isatty(2);
    if (!force && now - r->last_draw < (tty ? 0.2 : 10.0)) return;
    r->last_draw = now;
    int total = r->total + r->already, done = r->done + r->already;
    double el = now - r->t0, rate = r->done > 0 ? r->done / el : 0;
    double eta = rate > 0 ? (r->total - r->done) / rate : 0;
    char bar[31];
    int fill = total ? 30 * done / total : 30;
    for (int k = 0; k < 30; k++) bar[k] = k < fill ? '=' : k == fill ? '>' : ' ';
    bar[30] = 0;
    fprintf(stderr, "%s[%s] %d/%d prompts  %ld tokens  %.1f tok/s  ETA %dm%02ds%s", tty ? "\r" : "", bar, done, total,
            r->new_tokens, el > 0 ? r->new_tokens / el : 0, (int)eta / 60, (int)eta % 60, tty ? "  " : "\n");
}

static void write_result(FILE *f, const G3Prompt *p, int index, const G3GenResult *res, const char *text, size_t len) {
    fprintf(f, "{\"index\": %d, \"category\": ", index);
    json_write_str(f, p->category, strlen(p->category));
    fprintf(f, ", \"subcategory\": ");
    json_write_str(f, p->subcategory, strlen(p->subcategory));
    fprintf(f, ", \"prompt\": ");
    size_t bad_prompt = json_write_str(f, p->text, strlen(p->text));
    fprintf(f, ", \"output\": ");
    size_t bad_output = json_write_str(f, text ? text : "", text ? len : 0);
    // bytes that were not UTF-8 are in the text as U+FFFD: say how many (the ids are exact)
    if (bad_prompt || bad_output) fprintf(f, ", \"invalid_utf8\": {\"prompt\": %zu, \"output\": %zu}", bad_prompt, bad_output);
    fprintf(f, ", \"ids\": [");
    for (int k = 0; k < res->new_tokens; k++) fprintf(f, "%s%d", k ? ", " : "", res->ids[k]);
    fprintf(f, "], \"stop_reason\": \"%s\", \"prompt_tokens\": %d, \"new_tokens\": %d, \"prefill_s\": %.4f, \"decode_s\": %.4f, \"decode_tok_s\": %.2f",
            g3_stop_name(res->stop), res->prompt_tokens, res->new_tokens, res->prefill_s, res->decode_s,
            res->decode_s > 0 ? res->new_tokens / res->decode_s : 0.0);
    if (res->stop == G3_STOP_ERROR) {
        fprintf(f, ", \"error\": ");
        json_write_str(f, res->error, strlen(res->error));
    }
    fprintf(f, "}\n");
}

static void on_done(void *ctx, int i) {
    Run *r = ctx;
    G3GenResult *res = &r->res[i];
    if (r->sampler_of[i] >= 0) { r->pool_free[r->nfree++] = r->sampler_of[i]; r->sampler_of[i] = -1; }
    // the engine checks the logits before choose: non-finite ones end the sequence here
    if (res->stop == G3_STOP_ERROR && !strncmp(res->error, "non-finite logits", 17)) set_fatal(r, i, res->new_tokens + 1, res->error);
    if (res->stop == G3_STOP_ABORT || r->fatal[0]) return;  // not journaled: resume runs it again
    G3TextStream *ts = &r->ts[i];
    if (ts->text) g3_ts_finish(ts);
    write_result(r->journal, &r->prompts->items[r->orig[i]], r->orig[i], res, ts->text, ts->len);
    if (fflush(r->journal) != 0 || fsync(fileno(r->journal)) != 0) r->failed = 1;
    r->done++;
    progress(r, 0);
}

// Reads the journal: marks done[] and truncates a torn last line (a crash mid-write).
static int read_journal(const char *path, const G3Prompts *p, char *done, int *ndone) {
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    size_t good = 0;
    int line = 0;
    for (size_t pos = 0; pos < len;) {
        char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl) break;  // torn line: dropped below
        line++;
        Json j;
        if (json_parse(&j, text + pos, (size_t)(nl - (text + pos)))) {
            free(text);
            return g3_errorf("%s: line %d is not valid JSON (%s); move the file away to start over", path, line, g3_error());
        }
        const JsonNode *idx = json_get(json_root(&j), "index"), *pr = json_get(json_root(&j), "prompt");
        int same = 0;
        if (json_is_int(idx) && idx->num >= 0 && idx->num < p->n && json_is_string(pr)) {
            // the journal holds the prompt as json_write_str wrote it (invalid bytes as U+FFFD)
            const char *want = p->items[(int)idx->num].text;
            char *clean = json_utf8_clean(want, strlen(want), NULL, NULL);
            same = clean && !strcmp(pr->str, clean);
            free(clean);
        }
        if (!same) {
            json_free(&j);
            free(text);
            return g3_errorf("%s: line %d belongs to another prompts file (index or prompt text differ); use another --out-dir", path, line);
        }
        if (!done[(int)idx->num]) (*ndone)++;
        done[(int)idx->num] = 1;
        json_free(&j);
        pos = (size_t)(nl - text) + 1;
        good = pos;
    }
    free(text);
    if (good < len && truncate(path, (off_t)good) != 0) return g3_errorf("%s: cannot drop the torn last line: %s", path, strerror(errno));
    return 0;
}

// The shortest text that reads back as the same float (0.95f prints 0.95, not 0.949999988),
// so that settings compare exactly on resume.
static void put_float(FILE *f, float v) {
    char b[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, v);
        if ((float)strtod(b, NULL) == v) break;
    }
    fputs(b, f);
}

// The settings that decide what a prompt's result is, as JSON members (no braces). A resumed
// run must have the same ones (check_settings), or its results would mix two runs under one
// prompt_metadata.json. Not among them: batch_size (batched results equal lone ones), threads.
static void write_settings(FILE *f, const G3BatchJob *job, const G3Model *m) {
    const G3SamplerConfig *s = &job->sampling;
    fprintf(f, "  \"model\": ");
    json_write_str(f, job->model_dir ? job->model_dir : "", job->model_dir ? strlen(job->model_dir) : 0);
    fprintf(f, ",\n  \"architecture\": \"Gemma %d, %d layers, hidden %d, vocab %d\",\n  \"chat\": %s,\n  \"system\": ", m->cfg.family, m->cfg.layers,
            m->cfg.hidden, m->cfg.vocab, job->chat ? "true" : "false");
    if (job->system) json_write_str(f, job->system, strlen(job->system)); else fprintf(f, "null");
    fprintf(f, ",\n  \"max_tokens\": %d,\n  \"context\": %d,\n  \"mode\": \"%s\",\n", job->max_tokens, job->ctx, job->fast ? "fast" : "exact");
    fprintf(f, "  \"sampling\": {\"temperature\": ");
    put_float(f, s->temperature);
    fprintf(f, ", \"top_k\": %d, \"top_p\": ", s->top_k);
    put_float(f, s->top_p);
    fprintf(f, ", \"min_p\": ");
    put_float(f, s->min_p);
    fprintf(f, ", \"repeat_penalty\": ");
    put_float(f, s->repeat_penalty);
    fprintf(f, ", \"repeat_window\": %d, \"presence_penalty\": ", s->repeat_window);
    put_float(f, s->presence_penalty);
    fprintf(f, ", \"frequency_penalty\": ");
    put_float(f, s->frequency_penalty);
    fprintf(f, ", \"seed\": %llu},\n  \"stop_strings\": [", (unsigned long long)s->seed);
    for (int i = 0; i < job->nstops; i++) {
        if (i) fprintf(f, ", ");
        json_write_str(f, job->stops[i], strlen(job->stops[i]));
    }
    fprintf(f, "]");
}

static int write_metadata(const G3BatchJob *job, const G3Model *m, const G3Prompts *p, const char *path) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return g3_errorf("out of memory");
    time_t now = time(NULL);
    char ts[64];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    fprintf(f, "{\n  \"started\": \"%s\",\n", ts);
    write_settings(f, job, m);
    fprintf(f, ",\n  \"prompts_file\": ");
    json_write_str(f, job->prompts_path, strlen(job->prompts_path));
    fprintf(f, ",\n  \"prompts\": %d,\n  \"batch_size\": %d,\n  \"items\": [\n", p->n, job->batch_size);
    for (int i = 0; i < p->n; i++) {
        fprintf(f, "    {\"index\": %d, \"category\": ", i);
        json_write_str(f, p->items[i].category, strlen(p->items[i].category));
        fprintf(f, ", \"subcategory\": ");
        json_write_str(f, p->items[i].subcategory, strlen(p->items[i].subcategory));
        fprintf(f, ", \"index_in_subcategory\": %d}%s\n", p->items[i].index_in_subcategory, i + 1 < p->n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    int rc = g3_write_file_atomic(path, buf, n);
    free(buf);
    return rc;
}

// ---- resume: the same settings or nothing ----

static int same_value(const JsonNode *a, const JsonNode *b) {
    if (a->type != b->type) return 0;
    if (a->type == JSON_NUMBER)  // the same text, or the same value where a double holds it exactly
        return (a->str_len == b->str_len && !memcmp(a->str, b->str, a->str_len)) || (a->num == b->num && fabs(a->num) < 9e15);
    if (a->type == JSON_STRING) return a->str_len == b->str_len && !memcmp(a->str, b->str, a->str_len);
    if (a->type == JSON_ARRAY || a->type == JSON_OBJECT) {
        if (a->count != b->count) return 0;
        for (const JsonNode *x = json_first(a), *y = json_first(b); x && y; x = json_next(a, x), y = json_next(b, y))
            if ((a->type == JSON_OBJECT && strcmp(x->key, y->key)) || !same_value(x, y)) return 0;
    }
    return 1;
}

static void show_value(FILE *f, const JsonNode *n) {
    switch (n->type) {
    case JSON_NUMBER: fwrite(n->str, 1, n->str_len, f); break;
    case JSON_STRING: json_write_str(f, n->str, n->str_len); break;
    case JSON_TRUE: fputs("true", f); break;
    case JSON_FALSE: fputs("false", f); break;
    case JSON_NULL: fputs("null", f); break;
    default:
        fputc(n->type == JSON_ARRAY ? '[' : '{', f);
        JSON_FOREACH(c, n) {
            if (c != json_first(n)) fputs(", ", f);
            show_value(f, c);
        }
        fputc(n->type == JSON_ARRAY ? ']' : '}', f);
    }
}

// The option that sets a metadata key ("sampling.top_p" -> --top-p).
static void option_of(char *buf, size_t cap, const char *key) {
    if (!strcmp(key, "mode")) snprintf(buf, cap, "--exact");
    else if (!strcmp(key, "stop_strings")) snprintf(buf, cap, "--stop");
    else if (!strcmp(key, "architecture")) snprintf(buf, cap, "the model's shape");
    else {
        const char *k = strncmp(key, "sampling.", 9) ? key : key + 9;
        snprintf(buf, cap, "--%s", k);
        for (char *c = buf; *c; c++) if (*c == '_') *c = '-';
    }
}

// Appends to f every setting in now that differs from old (keys old lacks are skipped: files
// written before they were recorded). Returns the number of differences.
static int diff_settings(FILE *f, const char *prefix, const JsonNode *old, const JsonNode *now) {
    int ndiff = 0;
    JSON_FOREACH(n, now) {
        char key[128], opt[128];
        snprintf(key, sizeof key, "%s%s", prefix, n->key);
        const JsonNode *o = json_get(old, n->key);
        if (!o) continue;
        if (n->type == JSON_OBJECT && o->type == JSON_OBJECT) {
            snprintf(opt, sizeof opt, "%s.", key);
            ndiff += diff_settings(f, opt, o, n);
            continue;
        }
        if (same_value(o, n)) continue;
        if (!strcmp(key, "model") && o->type == JSON_STRING) {  // the same folder under another name
            char *a = realpath(o->str, NULL), *b = realpath(n->str, NULL);
            int same = a && b && !strcmp(a, b);
            free(a);
            free(b);
            if (same) continue;
        }
        option_of(opt, sizeof opt, key);
        fprintf(f, "\n  %s (%s): ", opt, key);
        show_value(f, o);
        fprintf(f, " in the first run, ");
        show_value(f, n);
        fprintf(f, " now");
        ndiff++;
    }
    return ndiff;
}

// A resumed run must have the settings the first run recorded in prompt_metadata.json.
static int check_settings(const G3BatchJob *job, const G3Model *m, const char *meta) {
    char *now_txt = NULL, *msg = NULL;
    size_t now_len = 0, msg_len = 0;
    FILE *f = open_memstream(&now_txt, &now_len);
    if (!f) return g3_errorf("out of memory");
    fprintf(f, "{\n");
    write_settings(f, job, m);
    fprintf(f, "\n}\n");
    fclose(f);
    Json old, now;
    if (json_parse_file(&old, meta)) {
        free(now_txt);
        return g3_error_prefix("cannot check the settings of the run to resume (move the file away to start over)");
    }
    if (json_parse(&now, now_txt, now_len)) { free(now_txt); json_free(&old); return -1; }
    free(now_txt);
    int ndiff = -1;
    if ((f = open_memstream(&msg, &msg_len))) {
        ndiff = diff_settings(f, "", json_root(&old), json_root(&now));
        fclose(f);
    }
    json_free(&old);
    json_free(&now);
    int rc = ndiff < 0 ? g3_errorf("out of memory")
             : ndiff   ? g3_errorf("%s holds results made with other settings; resume with the same ones (only --batch-size, --threads and "
                                   "--quiet may change), or use another --out-dir:%s", job->out_dir, msg)
                       : 0;
    free(msg);
    return rc;
}

// results.json (every journaled result in prompt order) and summary.json.
static int write_outputs(const G3BatchJob *job, const G3Prompts *p, const char *journal, double wall, long new_tokens_run) {
    size_t len;
    char *text = g3_read_file(journal, &len);
    if (!text) return -1;
    const char **line_of = g3_calloc((size_t)p->n + 1, sizeof *line_of);
    size_t *len_of = g3_calloc((size_t)p->n + 1, sizeof *len_of);
    int rc = -1;
    if (!line_of || !len_of) goto out;
    // per-category counters
    typedef struct { const char *cat, *sub; int n, errors; double new_tokens, chars; } Cat;
    Cat *cats = g3_calloc((size_t)p->n + 1, sizeof *cats);
    int ncats = 0, nres = 0, nerr = 0;
    int stops[8] = {0};
    double sum_new = 0, sum_prompt = 0, sum_chars = 0;
    if (!cats) goto out;
    for (size_t pos = 0; pos < len;) {
        char *nl = memchr(text + pos, '\n', len - pos);
        if (!nl) break;
        Json j;
        if (json_parse(&j, text + pos, (size_t)(nl - (text + pos))) == 0) {
            const JsonNode *r = json_root(&j);
            const JsonNode *in = json_get(r, "index");
            // a line that is not one of ours (an edited or damaged file) is left out
            if (!in || in->type != JSON_NUMBER || !(in->num >= 0 && in->num < p->n)) { json_free(&j); pos = (size_t)(nl - text) + 1; continue; }
            int idx = (int)in->num;
            if (!line_of[idx]) nres++;
            line_of[idx] = text + pos;
            len_of[idx] = (size_t)(nl - (text + pos));
            json_free(&j);
        }
        pos = (size_t)(nl - text) + 1;
    }
    for (int i = 0; i < p->n; i++) {
        if (!line_of[i]) continue;
        Json j;
        if (json_parse(&j, line_of[i], len_of[i])) continue;
        const JsonNode *r = json_root(&j);
        const JsonNode *err = json_get(r, "error"), *out = json_get(r, "output"), *sr = json_get(r, "stop_reason");
        const JsonNode *ntn = json_get(r, "new_tokens"), *ptn = json_get(r, "prompt_tokens");
        double nt = ntn && ntn->type == JSON_NUMBER ? ntn->num : 0, ptk = ptn && ptn->type == JSON_NUMBER ? ptn->num : 0;
        int c = -1;
        for (int k = 0; k < ncats; k++)
            if (!strcmp(cats[k].cat, p->items[i].category) && !strcmp(cats[k].sub, p->items[i].subcategory)) c = k;
        if (c < 0) { c = ncats++; cats[c].cat = p->items[i].category; cats[c].sub = p->items[i].subcategory; }
        cats[c].n++;
        cats[c].new_tokens += nt;
        cats[c].chars += json_is_string(out) ? out->str_len : 0;
        if (err) { cats[c].errors++; nerr++; }
        for (int s = 0; s < 7; s++)
            if (json_is_string(sr) && !strcmp(sr->str, g3_stop_name((G3StopReason)s))) stops[s]++;
        sum_new += nt;
        sum_prompt += ptk;
        sum_chars += json_is_string(out) ? out->str_len : 0;
        json_free(&j);
    }
    // results.json
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    fprintf(f, "[\n");
    for (int i = 0, first = 1; i < p->n; i++) {
        if (!line_of[i]) continue;
        fprintf(f, "%s  %.*s", first ? "" : ",\n", (int)len_of[i], line_of[i]);
        first = 0;
    }
    fprintf(f, "\n]\n");
    fclose(f);
    char path[4200];
    if (g3_path_join(path, sizeof path, job->out_dir, "results.json") || g3_write_file_atomic(path, buf, n)) { free(buf); free(cats); goto out; }
    free(buf);
    // summary.json
    f = open_memstream(&buf, &n);
    fprintf(f, "{\n  \"prompts\": %d,\n  \"completed\": %d,\n  \"errors\": %d,\n  \"mean_prompt_tokens\": %.2f,\n  \"mean_new_tokens\": %.2f,\n  \"mean_output_chars\": %.1f,\n",
            p->n, nres, nerr, nres ? sum_prompt / nres : 0, nres ? sum_new / nres : 0, nres ? sum_chars / nres : 0);
    fprintf(f, "  \"stop_reasons\": {");
    for (int s = 1, first = 1; s < 7; s++)
        if (stops[s]) { fprintf(f, "%s\"%s\": %d", first ? "" : ", ", g3_stop_name((G3StopReason)s), stops[s]); first = 0; }
    fprintf(f, "},\n  \"this_run\": {\"wall_s\": %.2f, \"new_tokens\": %ld, \"tokens_per_s\": %.2f, \"batch_size\": %d},\n", wall, new_tokens_run,
            wall > 0 ? new_tokens_run / wall : 0, job->batch_size);
    fprintf(f, "  \"categories\": [\n");
    for (int k = 0; k < ncats; k++) {
        fprintf(f, "    {\"category\": ");
        json_write_str(f, cats[k].cat, strlen(cats[k].cat));
        fprintf(f, ", \"subcategory\": ");
        json_write_str(f, cats[k].sub, strlen(cats[k].sub));
        fprintf(f, ", \"count\": %d, \"errors\": %d, \"mean_new_tokens\": %.2f, \"mean_output_chars\": %.1f}%s\n", cats[k].n, cats[k].errors,
                cats[k].new_tokens / cats[k].n, cats[k].chars / cats[k].n, k + 1 < ncats ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
    fclose(f);
    rc = g3_path_join(path, sizeof path, job->out_dir, "summary.json") || g3_write_file_atomic(path, buf, n) ? -1 : 0;
    free(buf);
    free(cats);
out:
    free(text);
    free(line_of);
    free(len_of);
    return rc;
}

int g3_batch_run(const G3Model *m, const G3Tokenizer *tok, const G3BatchJob *job, volatile int *abort) {
    G3Prompts p;
    if (g3_prompts_load(&p, job->prompts_path)) return -1;
    if (p.n == 0) { g3_prompts_free(&p); return g3_errorf("%s: no prompts", job->prompts_path); }
    if (g3_mkdir_p(job->out_dir)) { g3_prompts_free(&p); return -1; }
    char journal[4200], meta[4200];
    g3_path_join(journal, sizeof journal, job->out_dir, "results.jsonl");
    g3_path_join(meta, sizeof meta, job->out_dir, "prompt_metadata.json");
    int rc = -1, npend = 0, ndone = 0;
    char *done = g3_calloc((size_t)p.n, 1);
    Run r = {0};
    G3State *s = NULL;
    int32_t **ids = NULL;
    int *lens = NULL;
    if (!done) goto out;
    if (g3_file_exists(journal)) {
        if (!job->resume) { g3_errorf("%s already holds results: add --resume to continue that run, or choose another --out-dir", job->out_dir); goto out; }
        if (read_journal(journal, &p, done, &ndone)) goto out;
    }
    if (job->resume && g3_file_exists(meta)) {
        if (check_settings(job, m, meta)) goto out;
    } else if (write_metadata(job, m, &p, meta)) {
        goto out;
    }
    r.job = job;
    r.user_abort = abort;
    r.tok = tok;
    r.prompts = &p;
    r.orig = g3_malloc((size_t)p.n * sizeof *r.orig);
    ids = g3_calloc((size_t)p.n, sizeof *ids);
    lens = g3_calloc((size_t)p.n, sizeof *lens);
    if (!r.orig || !ids || !lens) goto out;
    int longest = 0;
    for (int i = 0; i < p.n; i++) {
        if (done[i]) continue;
        int k = npend++;
        r.orig[k] = i;
        if (job->chat) {
            G3ChatTurn turn = {"user", p.items[i].text};
            lens[k] = g3_chat_encode(tok, &turn, 1, job->system, 1, &ids[k]);
        } else {
            lens[k] = g3_tok_encode(tok, p.items[i].text, strlen(p.items[i].text), 1, 0, &ids[k]);
        }
        if (lens[k] < 0) goto out;
        longest = G3_MAX(longest, lens[k]);
    }
    r.already = ndone;
    r.total = npend;
    if (job->progress && ndone) fprintf(stderr, "resume: %d of %d prompts already done\n", ndone, p.n);
    if (npend > 0) {
        int ctx = job->ctx ? job->ctx : G3_MIN(m->cfg.max_pos, longest + job->max_tokens);
        int B = G3_MAX(1, G3_MIN(job->batch_size, npend));
        // rows per call: a prompt chunk, and at least one decoding row per slot
        if (!(s = g3_state_new(m, B, ctx, G3_MAX(B, G3_MIN(512, longest)), job->fast, NULL))) goto out;
        r.res = g3_calloc((size_t)npend, sizeof *r.res);
        r.ts = g3_calloc((size_t)npend, sizeof *r.ts);
        r.sampler_of = g3_malloc((size_t)npend * sizeof *r.sampler_of);
        r.pool = g3_calloc((size_t)B, sizeof *r.pool);
        r.pool_free = g3_malloc((size_t)B * sizeof *r.pool_free);
        if (!r.res || !r.ts || !r.sampler_of || !r.pool || !r.pool_free) goto out;
        for (int i = 0; i < npend; i++) {
            r.sampler_of[i] = -1;
            if (g3_ts_init(&r.ts[i], job->stops, job->nstops, 1)) goto out;
        }
        for (int b = 0; b < B; b++) {
            if (!(r.pool[b] = g3_sampler_new(&job->sampling, m->cfg.vocab))) goto out;
            r.pool_free[r.nfree++] = b;
        }
        r.journal = fopen(journal, "a");
        if (!r.journal) { g3_errorf("%s: cannot open for appending: %s", journal, strerror(errno)); goto out; }
        int32_t stop_ids[2] = {g3_tok_eos(tok), g3_tok_end_of_turn(tok)};
        G3GenOptions o = {.max_tokens = job->max_tokens, .stop_ids = stop_ids, .nstop = stop_ids[1] >= 0 ? 2 : 1,
                          .sampler = sampler, .on_token = on_token, .on_done = on_done, .ctx = &r, .abort = &r.stop_all};
        r.t0 = r.last_draw = g3_now();
        r.last_draw -= 1;
        progress(&r, 1);
        int grc = g3_generate(s, (const int32_t *const *)ids, lens, npend, &o, r.res);
        progress(&r, 1);
        if (job->progress && isatty(2)) fputc('\n', stderr);
        fclose(r.journal);
        r.journal = NULL;
        if (grc) goto out;
        if (r.fatal[0]) { g3_errorf("%s", r.fatal); goto out; }
        if (r.failed) { g3_errorf("%s: writing results failed", journal); goto out; }
    }
    if (write_outputs(job, &p, journal, r.t0 ? g3_now() - r.t0 : 0, r.new_tokens)) goto out;
    rc = abort && *abort ? 1 : 0;
out:
    if (r.journal) fclose(r.journal);
    if (r.res)
        for (int i = 0; i < npend; i++) free(r.res[i].ids);
    if (r.ts)
        for (int i = 0; i < npend; i++) g3_ts_free(&r.ts[i]);
    if (r.pool)
        for (int b = 0; b < (s ? s->nslots : 0); b++) g3_sampler_free(r.pool[b]);
    if (ids)
        for (int i = 0; i < npend; i++) free(ids[i]);
    free(r.res); free(r.ts); free(r.sampler_of); free(r.pool); free(r.pool_free); free(r.orig);
    free(ids); free(lens); free(done);
    g3_state_free(s);
    g3_prompts_free(&p);
    return rc;
}
