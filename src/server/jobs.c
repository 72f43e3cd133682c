// jobs.c: the server's engine thread: takes submitted jobs, adds their sequences to the
// engine, steps it, and turns each new token into response bytes (OpenAI's JSON, or its
// server-sent-event chunks) appended to the job for the I/O thread to send. A job whose
// client went away is cancelled before the next step, which frees its slots at once.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <unistd.h>

#include "base/base.h"
#include "model/record.h"
#include "srv_job.h"

// ---- jobs ----

void srv_job_free(Job *j) {
    if (!j) return;
    if (j->ch)
        for (int i = 0; i < j->g.n; i++) {
            Choice *c = &j->ch[i];
            g3_sampler_free(c->smp);
            if (c->ts_ok) g3_ts_free(&c->ts);
            free(c->lp);
            free(c->scratch);
        }
    free(j->ch);
    srv_gen_free(&j->g);
    free(j->act_ids);
    for (int i = 0; i < j->act_npat; i++) free(j->act_pat[i]);
    free(j->act_pat);
    sb_free(&j->out);
    free(j);
}

void srv_job_unref(Srv *v, Job *j) {
    (void)v;
    if (--j->refs == 0) srv_job_free(j);
}

// Appends bytes to the job's output for the I/O thread.
static void emit(Srv *v, Job *j, const SBuf *b) {
    pthread_mutex_lock(&v->mu);
    if (!j->cancel) sb_put(&j->out, b->p, b->n);
    pthread_mutex_unlock(&v->mu);
    v->dirty = 1;
}

// ---- JSON pieces ----

static const char *finish_name(const Choice *c, int calls) {
    if (calls) return "tool_calls";
    return c->stop == G3_STOP_MAX_TOKENS || c->stop == G3_STOP_CONTEXT ? "length" : "stop";
}

static void head(Srv *v, Job *j, SBuf *b, int chunk) {
    int chat = j->g.kind == SRV_CHAT;
    sb_printf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", j->id,
              chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion", j->created);
    sb_json_str(b, v->o.model_name, strlen(v->o.model_name));
}

static void token_text(Srv *v, SBuf *b, int32_t id) {
    size_t n;
    char *s = g3_tok_decode(v->tok, &id, 1, 0, &n);
    sb_json_str(b, s ? s : "", s ? n : 0);
    free(s);
}

// Logprob records [from, to) in the chat format ("content": [...]) or the completions one.
static void logprobs_json(Srv *v, Job *j, const Choice *c, int from, int to, SBuf *b) {
    if (!j->g.logprobs) { sb_puts(b, "null"); return; }
    if (j->g.kind == SRV_CHAT) {
        sb_puts(b, "{\"content\":[");
        for (int k = from; k < to; k++) {
            const SrvLogprob *l = &c->lp[k];
            sb_puts(b, k > from ? ",{\"token\":" : "{\"token\":");
            token_text(v, b, l->id);
            sb_printf(b, ",\"logprob\":%.9g,\"bytes\":null,\"top_logprobs\":[", l->lp);
            for (int t = 0; t < l->ntop; t++) {
                sb_puts(b, t ? ",{\"token\":" : "{\"token\":");
                token_text(v, b, l->top[t]);
                sb_printf(b, ",\"logprob\":%.9g,\"bytes\":null}", l->toplp[t]);
            }
            sb_puts(b, "]}");
        }
        sb_puts(b, "]}");
        return;
    }
    sb_puts(b, "{\"tokens\":[");
    for (int k = from; k < to; k++) { if (k > from) sb_puts(b, ","); token_text(v, b, c->lp[k].id); }
    sb_puts(b, "],\"token_logprobs\":[");
    for (int k = from; k < to; k++) sb_printf(b, "%s%.9g", k > from ? "," : "", c->lp[k].lp);
    sb_puts(b, "],\"top_logprobs\":[");
    for (int k = from; k < to; k++) {
        sb_puts(b, k > from ? ",{" : "{");
        for (int t = 0; t < c->lp[k].ntop; t++) {
            if (t) sb_puts(b, ",");
            token_text(v, b, c->lp[k].top[t]);
            sb_printf(b, ":%.9g", c->lp[k].toplp[t]);
        }
        sb_puts(b, "}");
    }
    sb_puts(b, "]}");
}

static void tool_calls_json(SBuf *b, const Job *j, int index, const SrvToolCall *calls, int n, int delta) {
    sb_puts(b, "[");
    for (int k = 0; k < n; k++) {
        if (k) sb_puts(b, ",");
        if (delta) sb_printf(b, "{\"index\":%d,", k);
        else sb_puts(b, "{");
        sb_printf(b, "\"id\":\"call_%s_%d_%d\",\"type\":\"function\",\"function\":{\"name\":", j->id + 9, index, k);
        sb_json_str(b, calls[k].name, strlen(calls[k].name));
        sb_puts(b, ",\"arguments\":");
        sb_json_str(b, calls[k].args, strlen(calls[k].args));
        sb_puts(b, "}}");
    }
    sb_puts(b, "]");
}

static void usage_json(SBuf *b, const Job *j) {
    int out = 0;
    for (int i = 0; i < j->g.n; i++) out += j->ch[i].ntok;
    // cached: of the prompt tokens, those the first choice found in a slot's cache
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":%d}}",
              j->g.nprompt, out, j->g.nprompt + out, j->g.n ? G3_MIN(j->ch[0].cached, j->g.nprompt) : 0);
}

// One streamed chunk of choice c: text (may be empty), tool calls, finish reason (NULL: none).
static void chunk(Srv *v, Job *j, Choice *c, const char *text, size_t n, const SrvToolCall *calls, int ncalls, const char *finish, int role) {
    SBuf b = {0};
    sb_puts(&b, "data: ");
    head(v, j, &b, 1);
    sb_printf(&b, ",\"choices\":[{\"index\":%d,", c->index);
    if (j->g.kind == SRV_CHAT) {
        sb_puts(&b, "\"delta\":{");
        int k = 0;
        if (role) { sb_puts(&b, "\"role\":\"assistant\""); k++; }
        if (n || (role && !ncalls)) { sb_puts(&b, k++ ? ",\"content\":" : "\"content\":"); sb_json_str(&b, text ? text : "", n); }
        if (ncalls) { sb_puts(&b, k++ ? ",\"tool_calls\":" : "\"tool_calls\":"); tool_calls_json(&b, j, c->index, calls, ncalls, 1); }
        sb_puts(&b, "}");
    } else {
        sb_puts(&b, "\"text\":");
        sb_json_str(&b, text ? text : "", n);
    }
    sb_puts(&b, ",\"logprobs\":");
    logprobs_json(v, j, c, c->lpsent, c->nlp, &b);
    c->lpsent = c->nlp;
    if (finish) sb_printf(&b, ",\"finish_reason\":\"%s\"}]}\n\n", finish);
    else sb_puts(&b, ",\"finish_reason\":null}]}\n\n");
    emit(v, j, &b);
    sb_free(&b);
}

// Streams what the text stream has ready, unless tools may still make it a call.
static void stream_ready(Srv *v, Job *j, Choice *c) {
    const char *out;
    g3_ts_take(&c->ts, &out);
    size_t shown = c->ts.shown;
    if (c->holding && srv_tool_prefix(&j->g.tools, c->ts.text, shown)) return;
    c->holding = 0;
    if (shown > c->sent || (j->g.logprobs && c->nlp > c->lpsent)) chunk(v, j, c, c->ts.text + c->sent, shown - c->sent, NULL, 0, NULL, 0);
    c->sent = shown;
}

// ---- the whole response ----

static void complete(Srv *v, Job *j) {
    SBuf b = {0};
    int status = 200;
    if (j->err.status) {
        status = j->err.status;
        if (j->g.stream) sb_puts(&b, "data: ");
        srv_error_json(&b, &j->err);
        if (j->g.stream) sb_puts(&b, "\n\ndata: [DONE]\n\n");
    } else if (j->kind == JOB_ACT) {  // its body is out already (run_act)
    } else if (j->g.stream) {
        if (j->g.include_usage) {
            sb_puts(&b, "data: ");
            head(v, j, &b, 1);
            sb_puts(&b, ",\"choices\":[],");
            usage_json(&b, j);
            sb_puts(&b, "}\n\n");
        }
        sb_puts(&b, "data: [DONE]\n\n");
    } else {
        head(v, j, &b, 0);
        sb_puts(&b, ",\"choices\":[");
        for (int i = 0; i < j->g.n; i++) {
            Choice *c = &j->ch[i];
            const char *text = c->ts_ok && c->ts.text ? c->ts.text : "";
            size_t n = c->ts_ok ? c->ts.len : 0;
            SrvToolCall calls[SRV_MAX_CALLS];
            int nc = j->g.kind == SRV_CHAT ? srv_tool_calls(&j->g.tools, text, n, calls) : 0;
            sb_printf(&b, "%s{\"index\":%d,", i ? "," : "", i);
            if (j->g.kind == SRV_CHAT) {
                sb_puts(&b, "\"message\":{\"role\":\"assistant\",\"content\":");
                if (nc) {
                    sb_puts(&b, "null,\"tool_calls\":");
                    tool_calls_json(&b, j, i, calls, nc, 0);
                } else {
                    sb_json_str(&b, text, n);
                }
                sb_puts(&b, "}");
            } else {
                sb_puts(&b, "\"text\":");
                sb_json_str(&b, text, n);
            }
            sb_puts(&b, ",\"logprobs\":");
            logprobs_json(v, j, c, 0, c->nlp, &b);
            sb_printf(&b, ",\"finish_reason\":\"%s\"}", finish_name(c, nc));
            srv_calls_free(calls, nc);
        }
        sb_puts(&b, "],");
        usage_json(&b, j);
        sb_puts(&b, "}");
    }
    pthread_mutex_lock(&v->mu);
    if (!j->cancel) sb_put(&j->out, b.p, b.n);
    j->status = status;
    j->done = 1;
    v->inflight -= j->nseq;
    j->nseq = 0;
    pthread_mutex_unlock(&v->mu);
    sb_free(&b);
    j->eng_done = 1;
    v->dirty = 1;
}

// ---- engine callbacks ----

static void push_release(Srv *v, int id) {
    if (v->nrelease == v->caprelease) {
        int cap = v->caprelease ? 2 * v->caprelease : 64;
        int *r = realloc(v->release, (size_t)cap * sizeof *r);
        if (!r) return;  // the id stays in the engine's table: a small leak, not a fault
        v->release = r;
        v->caprelease = cap;
    }
    v->release[v->nrelease++] = id;
}

// Logprobs of the raw model distribution (before penalties and temperature) into the
// choice's next record (committed by on_token, so a stop token leaves none), then the
// sampler's (or greedy) choice.
static int32_t choose(void *user, int id, float *logits, const int32_t *hist, int nhist) {
    Choice *c = user;
    Job *j = c->job;
    Srv *v = j->srv;
    const int V = v->m->cfg.vocab, K = j->g.top_logprobs;
    (void)id;
    if (c->nlp == c->caplp) {
        int cap = c->caplp ? 2 * c->caplp : 64;
        SrvLogprob *l = g3_realloc(c->lp, (size_t)cap * sizeof *l);
        if (!l) return -1;
        c->lp = l;
        c->caplp = cap;
    }
    const float *raw = logits;
    const G3SamplerConfig *sc = &j->g.sc;
    if (c->smp && (sc->repeat_penalty != 1 || sc->presence_penalty != 0 || sc->frequency_penalty != 0)) {
        if (!c->scratch && !(c->scratch = g3_malloc((size_t)V * sizeof(float)))) return -1;
        memcpy(c->scratch, logits, (size_t)V * sizeof(float));
        raw = c->scratch;
    }
    SrvLogprob *l = &c->lp[c->nlp];
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = raw[i] > mx ? raw[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)raw[i] - mx);
    const double lse = mx + log(sum);
    l->ntop = 0;
    for (int i = 0; i < V && K > 0; i++) {  // the K best, kept sorted (ties: lower id first)
        float x = raw[i];
        if (l->ntop == K && x <= l->toplp[K - 1]) continue;
        int p = l->ntop < K ? l->ntop++ : K - 1;
        while (p > 0 && l->toplp[p - 1] < x) { l->top[p] = l->top[p - 1]; l->toplp[p] = l->toplp[p - 1]; p--; }
        l->top[p] = i;
        l->toplp[p] = x;
    }
    for (int t = 0; t < l->ntop; t++) l->toplp[t] = (float)(l->toplp[t] - lse);
    int32_t tok = c->smp ? g3_sampler_sample(c->smp, logits, hist, nhist) : g3_argmax(logits, V);
    if (tok >= 0 && tok < V) {
        l->id = tok;
        l->lp = (float)(raw[tok] - lse);
    }
    return tok;
}

static int on_token(void *user, int id, int32_t tok, G3StopReason *why) {
    Choice *c = user;
    Job *j = c->job;
    Srv *v = j->srv;
    (void)id;
    c->ntok++;
    if (j->g.logprobs) c->nlp++;
    int st = g3_ts_push(&c->ts, v->tok, tok);
    if (j->g.stream && !j->eng_cancel) stream_ready(v, j, c);
    if (st) {
        *why = G3_STOP_STRING;
        return 1;
    }
    return 0;
}

static void on_done(void *user, int id) {
    Choice *c = user;
    Job *j = c->job;
    Srv *v = j->srv;
    G3SeqInfo info;
    g3_engine_read(v->e, id, &info);
    if (!v->o.quiet && info.stop != G3_STOP_ABORT && info.stop != G3_STOP_ERROR) {
        // the forward passes' share of the request (the rest is queueing, sampling and HTTP)
        const int out = c->ntok;
        fprintf(stderr, "serve: choice %d: %d prompt tokens (%d cached) read in %.1f ms; %d new in %.1f ms of forward passes (%.1f tok/s)\n",
                c->index, info.prompt_tokens, info.cached_tokens, 1e3 * info.prefill_s, out, 1e3 * info.decode_s,
                info.decode_s > 0 ? out / info.decode_s : 0.0);
    }
    c->stop = info.stop;
    c->cached = info.cached_tokens;
    c->seq = -1;
    c->done = 1;
    push_release(v, id);
    if (info.stop == G3_STOP_ERROR && !j->err.status) srv_err(&j->err, 500, NULL, "generation failed: %s", info.error);
    g3_ts_finish(&c->ts);
    if (info.stop != G3_STOP_ABORT && info.stop != G3_STOP_ERROR && j->g.stream && !j->eng_cancel) {
        const char *out;
        g3_ts_take(&c->ts, &out);
        SrvToolCall calls[SRV_MAX_CALLS];
        int nc = c->holding && j->g.kind == SRV_CHAT ? srv_tool_calls(&j->g.tools, c->ts.text, c->ts.len, calls) : 0;
        if (nc) chunk(v, j, c, NULL, 0, calls, nc, finish_name(c, 1), 0);
        else chunk(v, j, c, c->ts.text + c->sent, c->ts.len - c->sent, NULL, 0, finish_name(c, 0), 0);
        c->sent = c->ts.len;
        srv_calls_free(calls, nc);
    }
    if (++j->ndone == j->g.n) complete(v, j);
}

// ---- starting a job ----

static uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// The request's images through the vision tower (loaded at the first), on this thread with
// the engine's OpenMP team, and where their runs are in the prompt: *runs [g->nimages]
// (malloc'd) for the engine. 0, or -1 with e (500: the tower failed; the prompt's runs were
// checked against the images when it was parsed).
static int encode_images(Srv *v, SrvGen *g, G3StateImage **runs, SrvError *e) {
    if (!v->vis_loaded) {
        if (g3_vision_load(&v->vis, v->m)) return srv_err(e, 500, NULL, "the vision tower: %s", g3_error());
        v->vis_loaded = 1;
    }
    const G3VisionConfig *c = &v->vis.cfg;
    int *starts = g3_calloc((size_t)g->nimages, sizeof *starts), count = 0;
    *runs = g3_calloc((size_t)g->nimages, sizeof **runs);
    if (!g->soft) g->soft = g3_calloc((size_t)g->nimages, sizeof *g->soft);
    if (!starts || !*runs || !g->soft || g3_vision_find_runs(c, g->prompt, g->nprompt, starts, g->nimages, &count) || count != g->nimages) {
        free(starts);
        free(*runs);
        *runs = NULL;
        return srv_err(e, 500, NULL, "images: %s", count != g->nimages ? "the prompt's runs do not match its images" : g3_error());
    }
    for (int i = 0; i < g->nimages; i++) {
        if (!(g->soft[i] = g3_malloc((size_t)c->tokens * c->text_hidden * sizeof(float))) ||
            g3_vision_embed_image(&v->vis, g3_backend_cpu(), v->o.fast ? G3_MM_FAST : G3_MM_EXACT, &g->images[i], g->soft[i], NULL)) {
            free(starts);
            free(*runs);
            *runs = NULL;
            return srv_err(e, 500, NULL, "image %d: %s", i + 1, g3_error());
        }
        (*runs)[i] = (G3StateImage){-1, starts[i], c->tokens, g->soft[i]};
    }
    free(starts);
    return 0;
}

static void add_job(Srv *v, Job *j) {
    SrvGen *g = &j->g;
    if (!(j->ch = g3_calloc((size_t)g->n, sizeof *j->ch))) {
        srv_err(&j->err, 500, NULL, "out of memory");
        complete(v, j);
        return;
    }
    if (!g->seeded) g->sc.seed = mix64((uint64_t)(g3_now() * 1e9) ^ mix64(++v->seed_ctr));
    const int sample = g->sc.temperature > 0 || g->sc.repeat_penalty != 1 || g->sc.presence_penalty != 0 || g->sc.frequency_penalty != 0;
    int i;
    for (i = 0; i < g->n; i++) {
        Choice *c = &j->ch[i];
        c->job = j;
        c->index = i;
        c->seq = -1;
        c->holding = g->kind == SRV_CHAT && g->tools.n > 0 && g->tools.choice != 1;
        if (g3_ts_init(&c->ts, (const char *const *)g->stops, g->nstops, 1)) break;
        c->ts_ok = 1;
        if (sample) {
            G3SamplerConfig sc = g->sc;
            sc.seed += (uint64_t)i;  // choice i gets seed + i, as the batch commands do
            if (!(c->smp = g3_sampler_new(&sc, v->m->cfg.vocab))) break;
        }
    }
    if (i < g->n) {
        srv_err(&j->err, 500, NULL, "%s", g3_error());
        complete(v, j);
        return;
    }
    G3StateImage *runs = NULL;
    if (g->nimages && encode_images(v, g, &runs, &j->err)) {
        complete(v, j);
        return;
    }
    if (g->stream && g->kind == SRV_CHAT)
        for (i = 0; i < g->n; i++) chunk(v, j, &j->ch[i], NULL, 0, NULL, 0, NULL, 1);
    for (i = 0; i < g->n; i++) {
        Choice *c = &j->ch[i];
        G3SeqParams p = {g->prompt, g->nprompt, g->max_tokens, v->stop_ids, g->ignore_eos ? 0 : v->nstop_ids, g->logprobs ? choose : NULL, c->smp, on_token, on_done, c,
                         runs, g->nimages};
        if ((c->seq = g3_engine_add(v->e, &p)) < 0) break;
    }
    free(runs);
    if (i < g->n) {  // the others are cancelled; the last on_done completes the job
        srv_err(&j->err, 400, NULL, "%s", g3_error());
        for (int k = i; k < g->n; k++) j->ch[k].done = 1;
        j->ndone += g->n - i;
        if (i == 0) { complete(v, j); return; }
        for (int k = 0; k < i; k++) g3_engine_cancel(v->e, j->ch[k].seq);
    }
}

// ---- activations ----

static void base64(SBuf *b, const unsigned char *p, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char q[4096];
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t x = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        q[k++] = tab[x >> 18 & 63];
        q[k++] = tab[x >> 12 & 63];
        q[k++] = i + 1 < n ? tab[x >> 6 & 63] : '=';
        q[k++] = i + 2 < n ? tab[x & 63] : '=';
        if (k == sizeof q) { sb_put(b, q, k); k = 0; }
    }
    sb_put(b, q, k);
}

// Floats as little-endian bytes whatever the host's order, in blocks.
static void base64_f32le(SBuf *b, const float *x, size_t n) {
    unsigned char buf[3 * 1024];
    size_t k = 0;
    SBuf tmp = {0};
    // base64 of the concatenation must not pad between blocks: blocks of 3*1024 bytes (768 floats)
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        buf[k++] = (unsigned char)u;
        buf[k++] = (unsigned char)(u >> 8);
        buf[k++] = (unsigned char)(u >> 16);
        buf[k++] = (unsigned char)(u >> 24);
        if (k == sizeof buf) { base64(b, buf, k); k = 0; }
    }
    if (k) base64(b, buf, k);
    sb_free(&tmp);
}

enum { ACT_MAX_BYTES = 256 << 20 };

static void run_act(Srv *v, Job *j) {
    const G3Config *cfg = &v->m->cfg;
    G3Recorder r = {0};
    float *all = NULL;
    if (g3_rec_init(&r, cfg, 1, j->act_n, (const char *const *)j->act_pat, j->act_npat)) {
        srv_err(&j->err, 400, "hooks", "%s", g3_error());
        goto out;
    }
    double bytes = 0;
    for (int a = 0; a < r.narr; a++) {
        double n = 4;
        for (int d = 0; d < r.arr[a].ndim; d++) n *= (double)r.arr[a].shape[d];
        bytes += n;
    }
    const int need_logits = (r.sites & (1u << G3_HOOK_LOGITS | 1u << G3_HOOK_LN_FINAL)) != 0;
    if (need_logits) bytes += 4.0 * j->act_n * cfg->vocab;
    if (bytes > ACT_MAX_BYTES) {
        srv_err(&j->err, 400, "hooks", "these sites over %d tokens make %.0f MiB; at most %d MiB per request (ask for fewer sites or a shorter prompt)", j->act_n,
                bytes / (1 << 20), ACT_MAX_BYTES >> 20);
        goto out;
    }
    if (!v->act_s && !(v->act_s = g3_state_new(v->m, 1, v->o.ctx, G3_MIN(512, v->o.ctx), v->o.fast, NULL))) {
        srv_err(&j->err, 500, NULL, "%s", g3_error());
        goto out;
    }
    if (need_logits && !(all = g3_malloc((size_t)j->act_n * cfg->vocab * sizeof(float)))) {
        srv_err(&j->err, 500, NULL, "%s", g3_error());
        goto out;
    }
    g3_state_reset(v->act_s, 0);
    g3_rec_attach(&r, v->act_s);
    int rc = g3_prefill(v->act_s, 0, j->act_ids, j->act_n, all);
    g3_state_set_hook(v->act_s, NULL, NULL, 0, 0);
    if (rc) {
        srv_err(&j->err, 500, NULL, "%s", g3_error());
        goto out;
    }
    SBuf b = {0};
    sb_puts(&b, "{\"object\":\"activations\",\"model\":");
    sb_json_str(&b, v->o.model_name, strlen(v->o.model_name));
    sb_puts(&b, ",\"tokens\":[");
    for (int i = 0; i < j->act_n; i++) sb_printf(&b, "%s%d", i ? "," : "", j->act_ids[i]);
    sb_puts(&b, "],\"dtype\":\"float32\",\"byteorder\":\"little\",\"activations\":[");
    for (int a = 0; a < r.narr; a++) {
        const G3RecArray *x = &r.arr[a];
        size_t n = 1;
        sb_printf(&b, "%s{\"name\":", a ? "," : "");
        sb_json_str(&b, x->name, strlen(x->name));
        sb_puts(&b, ",\"shape\":[");
        for (int d = 1; d < x->ndim; d++) {  // without the batch dimension (one prompt)
            sb_printf(&b, "%s%lld", d > 1 ? "," : "", (long long)x->shape[d]);
            n *= (size_t)x->shape[d];
        }
        sb_puts(&b, "],\"data\":\"");
        base64_f32le(&b, x->data, n);
        sb_puts(&b, "\"}");
    }
    sb_puts(&b, "]}");
    pthread_mutex_lock(&v->mu);
    if (!j->cancel) sb_put(&j->out, b.p, b.n);
    pthread_mutex_unlock(&v->mu);
    sb_free(&b);
out:
    free(all);
    g3_rec_free(&r);
    complete(v, j);
}

// ---- the thread ----

static void release_all(Srv *v) {
    for (int i = 0; i < v->nrelease; i++) g3_engine_release(v->e, v->release[i]);
    v->nrelease = 0;
}

void *srv_engine_main(void *arg) {
    Srv *v = arg;
    omp_set_num_threads(v->threads);  // a new thread starts from the default, not from --threads
    Job **tail = &v->active;
    for (;;) {
        int live, queued;
        pthread_mutex_lock(&v->mu);
        for (;;) {
            g3_engine_counts(v->e, &live, &queued);
            if (v->quit || v->submit || live + queued > 0) break;
            pthread_cond_wait(&v->cv, &v->mu);
        }
        int quit = v->quit;
        Job *nw = v->submit;
        v->submit = v->submit_tail = NULL;
        for (Job *j = v->active; j; j = j->next) j->eng_cancel = j->cancel || quit;
        for (Job *j = nw; j; j = j->next) j->eng_cancel = j->cancel || quit;
        pthread_mutex_unlock(&v->mu);
        while (nw) {
            Job *j = nw;
            nw = nw->next;
            j->next = NULL;
            if (j->eng_cancel) {
                srv_err(&j->err, 503, NULL, "cancelled");
                complete(v, j);
            } else if (j->kind == JOB_ACT) {
                run_act(v, j);
            } else {
                add_job(v, j);
            }
            *tail = j;
            tail = &j->next;
        }
        for (Job *j = v->active; j; j = j->next)
            if (j->eng_cancel && !j->eng_done)
                for (int i = 0; i < j->g.n; i++)
                    if (j->ch[i].seq >= 0) g3_engine_cancel(v->e, j->ch[i].seq);
        release_all(v);
        g3_engine_counts(v->e, &live, &queued);
        if (!quit && live + queued > 0 && g3_engine_step(v->e) < 0 && !v->o.quiet) fprintf(stderr, "serve: a forward pass failed: %s\n", g3_error());
        release_all(v);
        pthread_mutex_lock(&v->mu);
        for (Job **p = &v->active; *p;) {
            Job *j = *p;
            if (j->eng_done) {
                *p = j->next;
                srv_job_unref(v, j);
            } else {
                p = &j->next;
            }
        }
        tail = &v->active;
        while (*tail) tail = &(*tail)->next;
        pthread_mutex_unlock(&v->mu);
        if (v->dirty) {
            v->dirty = 0;
            uint64_t one = 1;
            if (write(v->wake_fd, &one, sizeof one) < 0) {}  // a full counter already wakes it
        }
        if (quit) break;
    }
    return NULL;
}
