// cmd_chat.c: `gemma3 chat`: a conversation in the terminal, one engine sequence (gen/engine.h)
// continued turn after turn. The KV cache holds exactly the ids fed so far (answers are kept
// as the ids the model produced, never re-tokenized), so each turn only reads the new user
// text. Ctrl-C stops the current answer, not the program; the context limit is said openly,
// and --drop-oldest makes room by forgetting the oldest turns (re-reading the rest). At a
// terminal the line is edited here (cli_line.h: arrow keys, history); /save writes the
// conversation as JSON and /load reads it back. Images (--image, /image) go with the next
// message, placed before its text as Gemma 3's chat template places image parts (or where the
// text says <start_of_image>); their soft tokens are registered with the state at their runs.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "cli_gen.h"
#include "cli_image.h"
#include "cli_line.h"
#include "gen/engine.h"
#include "gen/textstream.h"
#include "model/forward.h"
#include "server/srv_internal.h"  // tool calling, shared with the server

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

typedef struct {
    char *user;        // the user's text
    int32_t *answer;   // the model's ids (without <end_of_turn>)
    int nanswer;
    char *answer_text;
    int img0, nimg;    // its images: ci.soft[img0 .. img0 + nimg)
} Turn;

typedef struct {
    const G3Model *m;
    const G3Tokenizer *tok;
    G3State *s;
    G3Engine *e;
    G3Sampler *smp;
    Turn *turns;
    int nturns, cap;
    char *system;
    int seq;              // the conversation's engine sequence (its history is what the cache holds), -1: none
    int32_t stop_ids[2];  // <eos>, <end_of_turn>
    int nstop_ids;
    G3TextStream ts;      // the answer being streamed
    int ts_status;        // g3_ts_push's last non-zero result: 1 a --stop string, -1 undecodable
    int max_tokens, drop_oldest;
    const char *model_dir;
    const char *const *stops;  // --stop strings
    int nstops;
    SrvTools tools;            // --tools: described in the first turn, calls read from answers
    const char *tools_dir;     // the folder list_dir / read_file may read
    CliImages ci;              // every image of the session, in the order given
    char **img_files;          // [ci.n] their files (for /save)
    int pend0, npend;          // the images waiting for the next message
    int exact;
} Chat;

typedef struct { int32_t *v; int n; } Ids;

static int push_ids(Ids *d, const int32_t *ids, int n) {
    int32_t *nv = g3_realloc(d->v, (size_t)(d->n + n + 1) * sizeof *nv);
    if (!nv) return -1;
    d->v = nv;
    if (n > 0) memcpy(d->v + d->n, ids, (size_t)n * sizeof *ids);
    d->n += n;
    return 0;
}

// ids of one user turn (with the system text folded into the first), ending with the
// generation prompt "<start_of_turn>model\n"; with <bos> only for the first turn. nimg images
// go before the text (Gemma 3's template writes an image part as <start_of_image>, then the
// text part), unless the text places them with <start_of_image> markers; each marker becomes
// the image's run between "\n\n"s, as Gemma3Processor writes it.
static int push_user(Chat *c, Ids *d, const char *text, int first, int nimg) {
    int32_t *u;
    G3ChatTurn t = {"user", text};
    SBuf sys = {0}, txt = {0};  // the tools' description, then the system message; the text with markers
    if (first && c->tools.prompt && (sb_puts(&sys, c->tools.prompt) || (c->system && (sb_puts(&sys, "\n\n") || sb_puts(&sys, c->system)))))
        return g3_errorf("out of memory");
    int n;
    if (nimg) {
        int bad = 0;
        for (int i = 0; i < nimg && !strstr(text, "<start_of_image>"); i++) bad |= sb_puts(&txt, "<start_of_image>");
        bad |= sb_puts(&txt, text);
        t.text = txt.p;
        char *full = bad ? NULL : g3_chat_format(&t, 1, first ? (sys.p ? sys.p : c->system) : NULL, 1);
        n = full ? g3_vision_encode_text(&c->ci.v.cfg, c->tok, full, nimg, 0, 1, &u) : g3_errorf("out of memory");
        free(full);
        sb_free(&txt);
    } else {
        n = g3_chat_encode(c->tok, &t, 1, first ? (sys.p ? sys.p : c->system) : NULL, 1, &u);
    }
    sb_free(&sys);
    if (n < 0) return -1;
    int skip = n > 0 && !first && u[0] == g3_tok_bos(c->tok);
    int rc = push_ids(d, u + skip, n - skip);
    free(u);
    return rc;
}

// The ids that close a model turn: <end_of_turn> "\n".
static int push_closing(Chat *c, Ids *d) {
    int32_t *nl;
    int n = g3_tok_encode(c->tok, "\n", 1, 0, 0, &nl);
    if (n != 1) { free(nl); return g3_errorf("cannot encode a newline"); }
    int32_t close[2] = {g3_tok_end_of_turn(c->tok), nl[0]};
    free(nl);
    return push_ids(d, close, 2);
}

// The whole conversation's ids (after dropping older turns, or loading a conversation). Like
// a sequence's history after a turn, they end with the last answer: its closing ids come
// with the next user turn (turn() adds them).
static int rebuild(Chat *c, Ids *d) {
    d->n = 0;
    for (int i = 0; i < c->nturns; i++)
        if (push_user(c, d, c->turns[i].user, i == 0, c->turns[i].nimg) || push_ids(d, c->turns[i].answer, c->turns[i].nanswer) ||
            (i + 1 < c->nturns && push_closing(c, d)))
            return -1;
    return 0;
}

// The images of a conversation read afresh from position 0 (a new sequence: the first
// message, /load, --drop-oldest): every kept turn's, then the new message's (img0, nimg),
// registered at their runs in d[n]. The engine is made anew, so that no slot's cached prefix
// (read with other images at the same places) is taken for this one.
static int attach_fresh(Chat *c, const int32_t *d, int n, int img0, int nimg) {
    if (!c->ci.has_cfg) return 0;
    g3_state_clear_images(c->s, -1);
    int total = nimg, k = 0;
    for (int i = 0; i < c->nturns; i++) total += c->turns[i].nimg;
    float **soft = g3_calloc((size_t)total + 1, sizeof *soft);
    if (!soft) return -1;
    for (int i = 0; i < c->nturns; i++)
        for (int j = 0; j < c->turns[i].nimg; j++) soft[k++] = c->ci.soft[c->turns[i].img0 + j];
    for (int j = 0; j < nimg; j++) soft[k++] = c->ci.soft[img0 + j];
    int rc = g3_vision_attach(&c->ci.v.cfg, c->s, 0, 0, d, n, soft, total);
    free(soft);
    if (rc || !c->ci.n) return rc;
    g3_engine_free(c->e);
    return (c->e = g3_engine_new(c->s, NULL)) ? 0 : -1;
}

// /image FILE, --image FILE: encodes it for the next message.
static int add_image(Chat *c, const char *file) {
    char **nf = g3_realloc(c->img_files, (size_t)(c->ci.n + 1) * sizeof *nf), *name = g3_strdup(file);
    if (nf) c->img_files = nf;
    if (!nf || !name || cli_images_add(&c->ci, c->m, file, c->exact)) {
        free(name);
        return -1;
    }
    c->img_files[c->ci.n - 1] = name;
    if (!c->npend) c->pend0 = c->ci.n - 1;
    c->npend++;
    return 0;
}

// Positions the conversation holds so far.
static int history(const Chat *c) {
    G3SeqInfo info;
    return c->seq >= 0 && g3_engine_read(c->e, c->seq, &info) == 0 ? info.nhist : 0;
}

// Forgets the conversation's sequence (its slot's cache stays, for a prefix match).
static void release_seq(Chat *c) {
    if (c->seq >= 0) g3_engine_release(c->e, c->seq);
    c->seq = -1;
}

static void free_turn(Turn *t) {
    free(t->user);
    free(t->answer);
    free(t->answer_text);
    memset(t, 0, sizeof *t);
}

// The conversation as JSON: {"system": ..., "turns": [{"role": "user", "text": ...,
// "images": [files] where it had some}, {"role": "model", "text": ..., "ids": [...]}, ...]}. The model's ids make /load exact; text
// that is not valid UTF-8 is written with U+FFFD, counted in "invalid_utf8" and in *nbad.
static int save(Chat *c, const char *path, size_t *nbad) {
    char *buf = NULL;
    size_t n = 0, bad = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return g3_errorf("out of memory");
    fprintf(f, "{\"system\": ");
    if (c->system) bad += json_write_str(f, c->system, strlen(c->system)); else fprintf(f, "null");
    fprintf(f, ", \"turns\": [\n");
    for (int i = 0; i < c->nturns; i++) {
        const Turn *t = &c->turns[i];
        fprintf(f, "  {\"role\": \"user\", \"text\": ");
        size_t k = json_write_str(f, t->user, strlen(t->user));
        if (k) fprintf(f, ", \"invalid_utf8\": %zu", k);
        for (int j = 0; j < t->nimg; j++) {
            fprintf(f, j ? ", " : ", \"images\": [");
            const char *file = c->img_files[t->img0 + j];
            bad += json_write_str(f, file, strlen(file));
        }
        if (t->nimg) fprintf(f, "]");
        fprintf(f, "},\n  {\"role\": \"model\", \"text\": ");
        const char *a = t->answer_text ? t->answer_text : "";
        size_t ka = json_write_str(f, a, strlen(a));
        if (ka) fprintf(f, ", \"invalid_utf8\": %zu", ka);
        fprintf(f, ", \"ids\": [");
        for (int j = 0; j < t->nanswer; j++) fprintf(f, "%s%d", j ? ", " : "", t->answer[j]);
        fprintf(f, "]}%s\n", i + 1 < c->nturns ? "," : "");
        bad += k + ka;
    }
    fprintf(f, "]}\n");
    fclose(f);
    int rc = g3_write_file_atomic(path, buf, n);
    free(buf);
    *nbad = bad;
    return rc;
}

// Reads a /save file into turns[] (the model's ids from "ids", else by tokenizing its text).
static int load_turns(Chat *c, const char *path, Turn **out, int *nout, char **system) {
    Json j;
    if (json_parse_file(&j, path)) return -1;
    const JsonNode *root = json_root(&j), *sys = json_get(root, "system"), *turns = json_get(root, "turns");
    Turn *t = NULL;
    int n = 0, rc = -1;
    *system = NULL;
    if (!turns || turns->type != JSON_ARRAY) { g3_errorf("%s: no \"turns\" list (not a file of /save?)", path); goto out; }
    if (sys && !json_is_null(sys) && !json_is_string(sys)) { g3_errorf("%s: \"system\" must be a string or null", path); goto out; }
    if (turns->count % 2) { g3_errorf("%s: %u turns: a user turn lacks the model's answer", path, turns->count); goto out; }
    if (!(t = g3_calloc(turns->count / 2 + 1, sizeof *t))) goto out;
    int k = 0;
    JSON_FOREACH(e, turns) {
        const JsonNode *role = json_get(e, "role"), *text = json_get(e, "text"), *ids = json_get(e, "ids");
        const char *want = k % 2 ? "model" : "user";
        if (!json_is_string(role) || strcmp(role->str, want) || !json_is_string(text)) {
            g3_errorf("%s: turn %d must be {\"role\": \"%s\", \"text\": ...}", path, k + 1, want);
            goto out;
        }
        Turn *x = &t[k / 2];
        if (k % 2 == 0) {
            if (!(x->user = g3_strdup(text->str))) goto out;
            n++;
            const JsonNode *ims = json_get(e, "images");  // read again through the tower
            if (ims && ims->type != JSON_ARRAY) { g3_errorf("%s: turn %d: \"images\" must be a list of files", path, k + 1); goto out; }
            if (ims) {  // (load() dropped the images waiting for a message: these come after them)
                c->npend = 0;
                JSON_FOREACH(f, ims) {
                    if (!json_is_string(f)) { g3_errorf("%s: turn %d: \"images\" must be a list of files", path, k + 1); goto out; }
                    if (add_image(c, f->str)) { g3_error_prefix("%s: turn %d", path, k + 1); goto out; }
                }
                x->img0 = c->pend0, x->nimg = c->npend;
                c->npend = 0;
            }
        } else if (ids) {
            if (ids->type != JSON_ARRAY || !(x->answer = g3_malloc((ids->count + 1) * sizeof *x->answer))) {
                if (ids->type != JSON_ARRAY) g3_errorf("%s: turn %d: \"ids\" must be a list", path, k + 1);
                goto out;
            }
            JSON_FOREACH(id, ids) {
                if (!json_is_int(id) || id->num < 0 || id->num >= c->m->cfg.vocab) {
                    g3_errorf("%s: turn %d: ids must be integers in [0, %d)", path, k + 1, c->m->cfg.vocab);
                    goto out;
                }
                x->answer[x->nanswer++] = (int32_t)id->num;
            }
        } else {
            int m = g3_tok_encode(c->tok, text->str, text->str_len, 0, 0, &x->answer);
            if (m < 0) goto out;
            x->nanswer = m;
        }
        if (k % 2 && !(x->answer_text = g3_strdup(text->str))) goto out;
        k++;
    }
    if (json_is_string(sys) && !(*system = g3_strdup(sys->str))) goto out;
    rc = 0;
out:
    json_free(&j);
    if (rc) {
        for (int i = 0; t && i < n; i++) free_turn(&t[i]);
        free(t);
        t = NULL;
        n = 0;
    }
    *out = t;
    *nout = n;
    return rc;
}

// Streams each new token's text as it comes (never half a UTF-8 character); a --stop string
// ends the answer (the engine keeps the token, as the text stream hides the string).
static int on_token(void *user, int id, int32_t tok, G3StopReason *why) {
    Chat *c = user;
    (void)id;
    int st = g3_ts_push(&c->ts, c->tok, tok);
    const char *out;
    size_t k = g3_ts_take(&c->ts, &out);
    fwrite(out, 1, k, stdout);
    fflush(stdout);
    if (!st) return 0;
    c->ts_status = st;  // -1 (cannot decode) ends the answer too, not the conversation
    *why = G3_STOP_STRING;
    return 1;
}

// Steps the engine until the conversation's sequence ends (Ctrl-C cancels it) and reads it.
static int run_seq(Chat *c, G3SeqInfo *info) {
    int left;
    while ((left = g3_engine_step(c->e)) > 0)
        if (interrupted) g3_engine_cancel(c->e, c->seq);
    return left < 0 || g3_engine_read(c->e, c->seq, info) ? -1 : 0;
}

// /load: the conversation of a /save file replaces this one (system message included), and
// is read into the cache: a new sequence of the whole history with max_tokens 0 (a slot
// whose cache holds a prefix of it, e.g. the conversation just saved, is reused). One that
// does not fit the context is refused (the current one stays), unless --drop-oldest, which
// forgets its oldest turns. 0 (said on stderr), -1 fatal.
static int load(Chat *c, const char *path) {
    Turn *t;
    int n;
    char *sys;
    if (c->npend) fprintf(stderr, "[the %d image%s waiting for a message %s dropped]\n", c->npend, c->npend > 1 ? "s" : "", c->npend > 1 ? "are" : "is");
    c->npend = 0;
    if (load_turns(c, path, &t, &n, &sys)) { fprintf(stderr, "[%s]\n", g3_error()); return 0; }
    Turn *old = c->turns;
    int nold = c->nturns, capold = c->cap, dropped = 0;
    char *oldsys = c->system;
    Ids d = {0};
    c->turns = t;
    c->nturns = c->cap = n;
    c->system = sys;
    for (;;) {
        if (rebuild(c, &d)) { free(d.v); return -1; }
        if (d.n + 3 <= c->s->ctx || n == 0) break;  // room for the closing ids and one more
        if (!c->drop_oldest) {
            fprintf(stderr, "[%s: the conversation needs %d positions, the context holds %d; not loaded (run with a larger --context, or --drop-oldest)]\n",
                    path, d.n + 3, c->s->ctx);
            for (int i = 0; i < n; i++) free_turn(&t[i]);
            free(t);
            free(sys);
            free(d.v);
            c->turns = old;
            c->nturns = nold;
            c->cap = capold;
            c->system = oldsys;
            return 0;  // the current conversation's sequence is untouched
        }
        free_turn(&c->turns[0]);
        memmove(c->turns, c->turns + 1, (size_t)--n * sizeof *c->turns);
        c->nturns = n;
        dropped++;
    }
    for (int i = 0; i < nold; i++) free_turn(&old[i]);
    free(old);
    free(oldsys);
    release_seq(c);
    int rc = 0;
    if (d.n) {
        G3SeqParams p = {d.v, d.n, 0, c->stop_ids, c->nstop_ids, NULL, c->smp, on_token, NULL, c};
        G3SeqInfo info;
        interrupted = 0;
        if (attach_fresh(c, d.v, d.n, 0, 0) || (c->seq = g3_engine_add(c->e, &p)) < 0 || run_seq(c, &info)) rc = -1;
        else if (info.stop == G3_STOP_ABORT) {  // Ctrl-C while reading it: start over empty
            fprintf(stderr, "[loading stopped; conversation restarted]\n");
            release_seq(c);
            for (int i = 0; i < c->nturns; i++) free_turn(&c->turns[i]);
            c->nturns = 0;
            free(d.v);
            return 0;
        } else if (info.stop == G3_STOP_ERROR) rc = g3_errorf("%s", info.error);
    }
    free(d.v);
    if (rc) return -1;
    fprintf(stderr, "[loaded %d turns from %s%s%s; context %d/%d]\n", n, path, dropped ? ", the oldest dropped to fit" : "",
            c->system ? ", with its system message" : "", history(c), c->s->ctx);
    return 0;
}

// One exchange: queue the user's turn (after the previous answer's closing ids: the engine
// reads only those and the new text, the rest of the conversation is in its cache), stream
// the answer. With --drop-oldest, a full context drops turns and starts a sequence over the
// rest of the conversation (read again as one prompt).
static int turn(Chat *c, const char *text) {
    Ids feed = {0};
    int first = c->seq < 0, fresh = first, hist = history(c);
    const int img0 = c->pend0, nimg = c->npend;
    if ((!first && push_closing(c, &feed)) || push_user(c, &feed, text, first, nimg)) { free(feed.v); return -1; }
    while (hist + feed.n + 1 > c->s->ctx) {
        if (!c->drop_oldest || c->nturns == 0) {
            fprintf(stderr, "[context full: %d of %d positions used, this message needs %d more; /reset to start over, or run with --drop-oldest]\n",
                    hist, c->s->ctx, feed.n + 1);
            free(feed.v);
            return 0;
        }
        // forget the oldest turn (the system text moves to the new first turn)
        free_turn(&c->turns[0]);
        memmove(c->turns, c->turns + 1, (size_t)--c->nturns * sizeof *c->turns);
        fprintf(stderr, "[context full: dropped the oldest turn; %d turns kept]\n", c->nturns);
        if (rebuild(c, &feed) || (c->nturns > 0 && push_closing(c, &feed)) || push_user(c, &feed, text, c->nturns == 0, nimg)) {
            free(feed.v);
            return -1;
        }
        hist = 0;
        fresh = 1;
    }
    int rc;
    if (fresh) {
        release_seq(c);
        G3SeqParams p = {feed.v, feed.n, c->max_tokens, c->stop_ids, c->nstop_ids, NULL, c->smp, on_token, NULL, c};
        rc = attach_fresh(c, feed.v, feed.n, img0, nimg) || (c->seq = g3_engine_add(c->e, &p)) < 0 ? -1 : 0;
    } else {
        rc = (c->ci.has_cfg && g3_vision_attach(&c->ci.v.cfg, c->s, 0, hist, feed.v, feed.n, c->ci.soft + img0, nimg)) ||
                     g3_engine_extend(c->e, c->seq, feed.v, feed.n, c->max_tokens)
                 ? -1
                 : 0;
    }
    free(feed.v);
    if (rc) return -1;
    if (c->nturns == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        Turn *nt = g3_realloc(c->turns, (size_t)c->cap * sizeof *nt);
        if (!nt) return -1;
        c->turns = nt;
    }
    Turn *t = &c->turns[c->nturns++];
    memset(t, 0, sizeof *t);
    t->img0 = img0, t->nimg = nimg;
    c->npend = 0;
    if (!(t->user = g3_strdup(text)) || g3_ts_init(&c->ts, c->stops, c->nstops, 1)) return -1;
    c->ts_status = 0;
    interrupted = 0;
    double t0 = g3_now();
    G3SeqInfo info;
    if (run_seq(c, &info)) { g3_ts_free(&c->ts); return -1; }
    if (info.stop == G3_STOP_ERROR) {
        g3_ts_free(&c->ts);
        if (strncmp(info.error, "non-finite logits", 17)) return g3_errorf("%s at token %d of the answer", info.error, info.n + 1);
        return g3_errorf("%s at token %d of the answer: the model in %s produces them (do its weights hold NaN or inf?)", info.error, info.n + 1,
                         c->model_dir);
    }
    if (!(t->answer = g3_malloc((size_t)(info.n + 1) * sizeof(int32_t)))) { g3_ts_free(&c->ts); return -1; }
    memcpy(t->answer, info.ids, (size_t)info.n * sizeof(int32_t));
    t->nanswer = info.n;
    g3_ts_finish(&c->ts);
    const char *out;
    size_t k = g3_ts_take(&c->ts, &out);
    fwrite(out, 1, k, stdout);
    t->answer_text = g3_strdup(c->ts.text ? c->ts.text : "");
    g3_ts_free(&c->ts);
    double dt = g3_now() - t0 - info.prefill_s;
    const char *why = info.stop == G3_STOP_ABORT          ? "stopped"
                      : info.stop == G3_STOP_CONTEXT      ? "context full"
                      : info.stop == G3_STOP_MAX_TOKENS   ? "max tokens"
                      : info.stop == G3_STOP_STRING       ? (c->ts_status > 0 ? "stop string" : "cannot decode")
                                                          : NULL;
    printf("\n");
    fprintf(stderr, "[%d tokens, %.1f tok/s%s%s; context %d/%d]\n", t->nanswer, dt > 0 ? t->nanswer / dt : 0, why ? ", " : "", why ? why : "", info.nhist,
            c->s->ctx);
    return 0;
}

// --tools: while the last answer is nothing but calls of the tools (tools.c reads them as the
// server does), runs them here and hands their results back as the next user turn, in the
// ```tool_output form the server uses; at most 5 rounds per message.
static int tool_rounds(Chat *c, int tty) {
    for (int round = 0; round < 5 && c->tools.n && c->nturns; round++) {
        const Turn *t = &c->turns[c->nturns - 1];
        SrvToolCall calls[SRV_MAX_CALLS];
        int n = t->answer_text ? srv_tool_calls(&c->tools, t->answer_text, strlen(t->answer_text), calls) : 0;
        if (!n) return 0;
        SBuf out = {0};
        int bad = sb_puts(&out, "```tool_output\n");
        for (int i = 0; i < n; i++) {
            size_t at = out.n;
            bad |= srv_local_tool(c->tools_dir, &calls[i], &out);
            fprintf(stderr, "[tool %s(%s) -> %.*s%s]\n", calls[i].name, calls[i].args, (int)G3_MIN(out.n - at, 200), out.p + at, out.n - at > 200 ? "..." : "");
            bad |= sb_puts(&out, "\n");
        }
        bad |= sb_puts(&out, "```");
        srv_calls_free(calls, n);
        if (bad) { sb_free(&out); return g3_errorf("out of memory"); }
        if (tty) { printf("gemma> "); fflush(stdout); }
        int rc = turn(c, out.p);
        sb_free(&out);
        if (rc) return -1;
    }
    return 0;
}

#define CHAT_COMMANDS "/image FILE, /reset, /system TEXT, /save FILE, /load FILE, /quit (or Ctrl-D)"

// The argument of a chat command ("/save x.json" -> "x.json", "" if none), or NULL if line
// is not that command.
static const char *command(const char *line, const char *name) {
    size_t n = strlen(name);
    if (strncmp(line, name, n) || (line[n] && line[n] != ' ')) return NULL;
    line += n;
    while (*line == ' ') line++;
    return line;
}

// The next line of input, malloc'd, without its newline: from the line editor at a terminal,
// else from stdin as it comes (pipes, files). 1, 0 at the end, -2 if Ctrl-C arrived.
static int next_line(CliLine *le, int edit, int tty, char **line) {
    interrupted = 0;
    if (edit) {
        int r = cli_line_read(le, "you> ", line);
        if (r == CLI_LINE_OK) cli_line_add_history(le, *line);
        return r == CLI_LINE_OK ? 1 : r == CLI_LINE_INTERRUPTED ? -2 : 0;
    }
    if (tty) { fprintf(stderr, "you> "); fflush(stderr); }
    size_t cap = 0;
    *line = NULL;
    errno = 0;
    ssize_t len = getline(line, &cap, stdin);
    if (len < 0) {
        free(*line);
        *line = NULL;
        if (errno == EINTR || interrupted) { clearerr(stdin); fputc('\n', stderr); return -2; }
        return 0;
    }
    while (len > 0 && ((*line)[len - 1] == '\n' || (*line)[len - 1] == '\r')) (*line)[--len] = 0;
    return 1;
}

int cmd_chat(int argc, char **argv) {
    const char *dir = NULL, *adapter_dir = NULL, *tok_path = NULL, *system = NULL, *tools = NULL, *tools_dir = ".";
    CliList stop_opt = {{0}};
    long max_tokens = 512, ctx = 4096, threads = 0;
    int exact = 0, drop = 0;
    CliList images = {{0}};
    CliSampling cs = CLI_SAMPLING_INIT;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder" CLI_MODEL_HELP},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        {"--system", OPT_STR, &system, "system message, folded into the first user turn"},
        {"--max-tokens", OPT_INT, &max_tokens, "longest answer", 1, 1 << 24},
        {"--stop", OPT_LIST, &stop_opt, CLI_STOP_HELP},
        {"--context", OPT_INT, &ctx, "positions kept for the conversation (at most the model's)", 16, 1 << 30},
        {"--drop-oldest", OPT_FLAG, &drop, "when the context is full, forget the oldest turns instead of refusing"},
        {"--tools", OPT_STR, &tools, "let the model call local tools: calc (arithmetic), files (list_dir, read_file, read-only); e.g. calc,files"},
        {"--tools-dir", OPT_STR, &tools_dir, "the only folder the files tools may read"},
        CLI_SAMPLING_OPTS(cs),
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere"},
        {"--image", OPT_LIST, &images, "a PNG or JPEG image for the first message (repeat for several; /image FILE adds one to the next)"},
        CLI_ADAPTER_OPT(adapter_dir),
        CLI_DEVICE_OPT,
        CLI_THREADS_OPT(threads),
    };
    CLI_PARSE("chat", "--model DIR [--system TEXT] [options]\n\n"
              "In the chat: " CHAT_COMMANDS "; Ctrl-C stops an answer.\n"
              "At a terminal the line can be edited: Left/Right, Home/End (Ctrl-A/E), Backspace, Delete,\n"
              "Ctrl-U/Ctrl-K/Ctrl-W (delete to the start / to the end / the word before), Up/Down: history.\n"
              "/save writes {\"system\", \"turns\": [{\"role\", \"text\"}, ...]} (the model's ids too); /load reads it back.",
              argc, argv, opts);
    if (cli_model_or_default("chat", &dir)) return 1;
    int want_calc = 0, want_files = 0;
    for (const char *p = tools; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == 4 && !strncmp(p, "calc", 4)) want_calc = 1;
        else if (n == 5 && !strncmp(p, "files", 5)) want_files = 1;
        else if (n) return cli_fail("chat", "--tools: unknown tool '%.*s' (calc, files)", (int)n, p);
        p += n + (p[n] == ',');
    }
    if (cli_given("--tools-dir") && !want_files) return cli_fail("chat", "--tools-dir needs --tools files");
    if (want_files && !g3_file_exists(tools_dir)) return cli_fail("chat", "--tools-dir %s: no such folder", tools_dir);
    char *stops[CLI_LIST_MAX];
    if (cli_stops(&stop_opt, stops)) return cli_fail("chat", "%s", g3_error());
    cli_set_threads(threads);
    G3SamplerConfig sc;
    G3Model m;
    if (cli_sampling_resolve(&cs, dir, &sc) || cli_model_load(&m, dir, adapter_dir)) {
        cli_stops_free(stops, stop_opt.n);
        return cli_fail("chat", "%s", g3_error());
    }
    Chat c = {&m, NULL, NULL, NULL, NULL};
    c.seq = -1;
    c.max_tokens = (int)max_tokens;
    c.drop_oldest = drop;
    c.system = system ? g3_strdup(system) : NULL;
    c.model_dir = dir;
    c.stops = (const char *const *)stops;
    c.nstops = stop_opt.n;
    c.tools_dir = tools_dir;
    c.exact = exact;
    int rc = 1;
    CliLine le = {0};
    if (want_calc || want_files) {
        char def[2200];
        snprintf(def, sizeof def, "{\"tools\": %s}", srv_local_tools_json(want_calc, want_files));
        Json tj;
        SrvError te = {0};
        if (json_parse(&tj, def, strlen(def))) { cli_fail("chat", "tools: %s", g3_error()); goto out; }
        int bad = srv_tools_parse(json_root(&tj), &c.tools, &te);
        json_free(&tj);
        if (bad) { cli_fail("chat", "tools: %s", te.message); goto out; }
    }
    if (ctx > m.cfg.max_pos) ctx = m.cfg.max_pos;
    if (!(c.tok = cli_load_tokenizer(tok_path, dir, &m)) || !(c.s = g3_state_new(&m, 1, (int)ctx, 512, !exact, NULL)) ||
        !(c.e = g3_engine_new(c.s, NULL)) || !(c.smp = g3_sampler_new(&sc, m.cfg.vocab))) {
        cli_fail("chat", "%s", g3_error());
        goto out;
    }
    if (cli_images_load(&c.ci, &m, &(CliList){{0}}, exact, 0, NULL)) { cli_fail("chat", "%s", g3_error()); goto out; }  // the vision config
    for (int i = 0; i < images.n; i++)
        if (add_image(&c, images.v[i])) { cli_fail("chat", "%s", g3_error()); goto out; }
    c.stop_ids[0] = g3_tok_eos(c.tok);
    c.stop_ids[1] = g3_tok_end_of_turn(c.tok);
    c.nstop_ids = c.stop_ids[1] >= 0 ? 2 : 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;  // no SA_RESTART: Ctrl-C at the prompt interrupts the read
    sigaction(SIGINT, &sa, NULL);
    const int tty = isatty(0), edit = tty && cli_line_usable();
    if (tty) fprintf(stderr, "gemma3 chat: %s, context %ld. " CHAT_COMMANDS "; Ctrl-C stops an answer.\n", dir, ctx);
    for (;;) {
        char *line;
        int got = next_line(&le, edit, tty, &line);
        if (got == -2) { fprintf(stderr, "(/quit or Ctrl-D to leave)\n"); continue; }
        if (got == 0) break;
        const char *arg = NULL;
        int fatal = 0;
        if (!line[0]) {
        } else if (command(line, "/quit") || command(line, "/exit")) {
            free(line);
            break;
        } else if (command(line, "/reset") || (arg = command(line, "/system"))) {
            int sys = !command(line, "/reset");
            if (sys) {
                free(c.system);
                c.system = *arg ? g3_strdup(arg) : NULL;
            }
            for (int i = 0; i < c.nturns; i++) free_turn(&c.turns[i]);
            c.nturns = 0;
            release_seq(&c);
            fprintf(stderr, "[conversation restarted%s]\n", sys ? (c.system ? " with the new system message" : " without a system message") : "");
        } else if ((arg = command(line, "/save"))) {
            size_t bad = 0;
            if (!*arg) fprintf(stderr, "[usage: /save FILE]\n");
            else if (save(&c, arg, &bad)) fprintf(stderr, "[%s]\n", g3_error());
            else if (bad) fprintf(stderr, "[saved %d turns to %s; %zu bytes that were not UTF-8 are written as U+FFFD]\n", c.nturns, arg, bad);
            else fprintf(stderr, "[saved %d turns to %s]\n", c.nturns, arg);
        } else if ((arg = command(line, "/load"))) {
            if (!*arg) fprintf(stderr, "[usage: /load FILE]\n");
            else fatal = load(&c, arg) != 0;
        } else if ((arg = command(line, "/image"))) {
            double t0 = c.ci.seconds;
            if (!*arg) fprintf(stderr, "[usage: /image FILE (a PNG or JPEG for the next message)]\n");
            else if (add_image(&c, arg)) fprintf(stderr, "[%s]\n", g3_error());
            else fprintf(stderr, "[%s: through the vision tower in %.1f s; %d image%s go%s with your next message]\n", arg, c.ci.seconds - t0, c.npend,
                         c.npend > 1 ? "s" : "", c.npend > 1 ? "" : "es");
        } else if (line[0] == '/') {
            fprintf(stderr, "[unknown command %s: " CHAT_COMMANDS "]\n", line);
        } else {
            if (tty) { printf("gemma> "); fflush(stdout); }
            fatal = turn(&c, line) != 0 || tool_rounds(&c, tty) != 0;
        }
        free(line);
        if (fatal) { cli_fail("chat", "%s", g3_error()); goto out; }
    }
    rc = 0;
out:
    cli_line_free(&le);
    cli_stops_free(stops, stop_opt.n);
    for (int i = 0; i < c.nturns; i++) free_turn(&c.turns[i]);
    free(c.turns); free(c.system);
    for (int i = 0; i < c.ci.n; i++) free(c.img_files[i]);
    free(c.img_files);
    cli_images_free(&c.ci);
    srv_tools_free(&c.tools);
    g3_engine_free(c.e);
    g3_sampler_free(c.smp);
    g3_state_free(c.s);
    g3_tok_free((G3Tokenizer *)c.tok);
    cli_model_free(&m);
    return rc;
}
