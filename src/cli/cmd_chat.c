// cmd_chat.c: `gemma3 chat`: a conversation in the terminal, one engine sequence (gen/engine.h)
// continued turn after turn. The KV cache holds exactly the ids fed so far (answers are kept
// as the ids the model produced, never re-tokenized), so each turn only reads the new user text. Ctrl-C stops the current answer, not the
// program; the context limit is said openly, and --drop-oldest makes room by forgetting the
// oldest turns (re-reading the rest).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "cli_gen.h"
#include "gen/engine.h"
#include "gen/textstream.h"
#include "model/forward.h"

static volatile sig_atomic_t interrupted = 0;
static void on_sigint(int sig) { (void)sig; interrupted = 1; }

typedef struct {
    char *user;        // the user's text
    int32_t *answer;   // the model's ids (without <end_of_turn>)
    int nanswer;
    char *answer_text;
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
    int seq;           // the conversation's engine sequence (its history is what the cache holds), -1: none yet
    int32_t stops[2];  // <eos>, <end_of_turn>
    int nstops;
    G3TextStream ts;   // the answer being streamed
    int max_tokens, drop_oldest;
} Chat;

typedef struct { int32_t *v; int n; } Ids;

static int push_ids(Ids *d, const int32_t *ids, int n) {
    int32_t *nv = g3_realloc(d->v, (size_t)(d->n + n + 1) * sizeof *nv);
    if (!nv) return -1;
    d->v = nv;
    memcpy(d->v + d->n, ids, (size_t)n * sizeof *ids);
    d->n += n;
    return 0;
}

// ids of one user turn (with the system text folded into the first), ending with the
// generation prompt "<start_of_turn>model\n"; with <bos> only for the first turn.
static int push_user(Chat *c, Ids *d, const char *text, int first) {
    int32_t *u;
    G3ChatTurn t = {"user", text};
    int n = g3_chat_encode(c->tok, &t, 1, first ? c->system : NULL, 1, &u);
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

// The whole conversation's ids, every turn answered and closed (after dropping older turns).
static int rebuild(Chat *c, Ids *d) {
    d->n = 0;
    for (int i = 0; i < c->nturns; i++)
        if (push_user(c, d, c->turns[i].user, i == 0) || push_ids(d, c->turns[i].answer, c->turns[i].nanswer) || push_closing(c, d)) return -1;
    return 0;
}

// Positions the conversation holds so far.
static int history(const Chat *c) {
    G3SeqInfo info;
    return c->seq >= 0 && g3_engine_read(c->e, c->seq, &info) == 0 ? info.nhist : 0;
}

static void free_turn(Turn *t) {
    free(t->user);
    free(t->answer);
    free(t->answer_text);
    memset(t, 0, sizeof *t);
}

static int save(Chat *c, const char *path) {
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    fprintf(f, "{\"system\": ");
    if (c->system) json_write_str(f, c->system, strlen(c->system)); else fprintf(f, "null");
    fprintf(f, ", \"turns\": [\n");
    for (int i = 0; i < c->nturns; i++) {
        fprintf(f, "  {\"role\": \"user\", \"text\": ");
        json_write_str(f, c->turns[i].user, strlen(c->turns[i].user));
        fprintf(f, "},\n  {\"role\": \"model\", \"text\": ");
        const char *a = c->turns[i].answer_text ? c->turns[i].answer_text : "";
        json_write_str(f, a, strlen(a));
        fprintf(f, "}%s\n", i + 1 < c->nturns ? "," : "");
    }
    fprintf(f, "]}\n");
    fclose(f);
    int rc = g3_write_file_atomic(path, buf, n);
    free(buf);
    return rc;
}

// Streams each new token's text as it comes (never half a UTF-8 character).
static int on_token(void *user, int id, int32_t tok, G3StopReason *why) {
    Chat *c = user;
    g3_ts_push(&c->ts, c->tok, tok);
    const char *out;
    size_t k = g3_ts_take(&c->ts, &out);
    fwrite(out, 1, k, stdout);
    fflush(stdout);
    return 0;
}

// One exchange: queue the user's turn (after the previous answer's closing ids: the engine
// reads only those and the new text, the rest of the conversation is in its cache), stream
// the answer. With --drop-oldest, a full context drops turns and starts a sequence over the
// rest of the conversation (read again as one prompt).
static int turn(Chat *c, const char *text) {
    Ids feed = {0};
    int first = c->seq < 0, fresh = first, hist = history(c);
    if ((!first && push_closing(c, &feed)) || push_user(c, &feed, text, first)) { free(feed.v); return -1; }
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
        if (rebuild(c, &feed) || push_user(c, &feed, text, c->nturns == 0)) { free(feed.v); return -1; }
        hist = 0;
        fresh = 1;
    }
    int rc;
    if (fresh) {
        if (c->seq >= 0) g3_engine_release(c->e, c->seq);
        G3SeqParams p = {feed.v, feed.n, c->max_tokens, c->stops, c->nstops, NULL, c->smp, on_token, NULL, c};
        rc = (c->seq = g3_engine_add(c->e, &p)) < 0 ? -1 : 0;
    } else {
        rc = g3_engine_extend(c->e, c->seq, feed.v, feed.n, c->max_tokens);
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
    t->user = g3_strdup(text);
    g3_ts_init(&c->ts, NULL, 0, 1);
    interrupted = 0;
    double t0 = g3_now();
    int left;
    while ((left = g3_engine_step(c->e)) > 0)
        if (interrupted) g3_engine_cancel(c->e, c->seq);
    G3SeqInfo info;
    if (left < 0 || g3_engine_read(c->e, c->seq, &info)) { g3_ts_free(&c->ts); return -1; }
    if (info.stop == G3_STOP_ERROR) { g3_ts_free(&c->ts); return g3_errorf("%s", info.error); }
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
    const char *why = info.stop == G3_STOP_ABORT ? "stopped" : info.stop == G3_STOP_CONTEXT ? "context full" : info.stop == G3_STOP_MAX_TOKENS ? "max tokens" : NULL;
    printf("\n");
    fprintf(stderr, "[%d tokens, %.1f tok/s%s%s; context %d/%d]\n", t->nanswer, dt > 0 ? t->nanswer / dt : 0, why ? ", " : "", why ? why : "", info.nhist, c->s->ctx);
    return 0;
}

int cmd_chat(int argc, char **argv) {
    const char *dir = NULL, *tok_path = NULL, *system = NULL;
    long max_tokens = 512, ctx = 4096, threads = 0;
    int exact = 0, drop = 0;
    CliSampling cs = CLI_SAMPLING_INIT;
    CliOpt opts[] = {
        {"--model", OPT_STR, &dir, "model folder"},
        {"--tokenizer", OPT_STR, &tok_path, "tokenizer.json or tokenizer.model (default: from the model folder)"},
        {"--system", OPT_STR, &system, "system message, folded into the first user turn"},
        {"--max-tokens", OPT_INT, &max_tokens, "longest answer", 1, 1 << 24},
        {"--context", OPT_INT, &ctx, "positions kept for the conversation", 16, 1 << 30},
        {"--drop-oldest", OPT_FLAG, &drop, "when the context is full, forget the oldest turns instead of refusing"},
        CLI_SAMPLING_OPTS(cs),
        {"--exact", OPT_FLAG, &exact, "f32 activations everywhere"},
        {"--threads", OPT_INT, &threads, "threads (0: all cores)"},
    };
    CLI_PARSE("chat", "--model DIR [--system TEXT] [options]\n\nIn the chat: /reset, /system TEXT, /save FILE, /quit (or Ctrl-D); Ctrl-C stops an answer.", argc, argv, opts);
    if (!dir) return cli_fail("chat", "--model DIR is required (see --help)");
    cli_set_threads(threads);
    G3SamplerConfig sc;
    if (cli_sampling_resolve(&cs, dir, &sc)) return cli_fail("chat", "%s", g3_error());
    G3Model m;
    if (g3_model_load(&m, dir)) return cli_fail("chat", "%s", g3_error());
    Chat c = {&m, NULL, NULL, NULL, NULL};
    c.seq = -1;
    c.max_tokens = (int)max_tokens;
    c.drop_oldest = drop;
    c.system = system ? g3_strdup(system) : NULL;
    int rc = 1;
    if (ctx > m.cfg.max_pos) ctx = m.cfg.max_pos;
    if (!(c.tok = cli_load_tokenizer(tok_path, dir, &m)) || !(c.s = g3_state_new(&m, 1, (int)ctx, 512, !exact, NULL)) ||
        !(c.e = g3_engine_new(c.s, NULL)) ||
        !(c.smp = g3_sampler_new(&sc, m.cfg.vocab))) {
        cli_fail("chat", "%s", g3_error());
        goto out;
    }
    c.stops[0] = g3_tok_eos(c.tok);
    c.stops[1] = g3_tok_end_of_turn(c.tok);
    c.nstops = c.stops[1] >= 0 ? 2 : 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;  // no SA_RESTART: Ctrl-C at the prompt interrupts the read
    sigaction(SIGINT, &sa, NULL);
    int tty = isatty(0);
    if (tty) fprintf(stderr, "gemma3 chat: %s, context %ld. /reset, /system TEXT, /save FILE, /quit; Ctrl-C stops an answer.\n", dir, ctx);
    char *line = NULL;
    size_t cap = 0;
    for (;;) {
        if (tty) { fprintf(stderr, "you> "); fflush(stderr); }
        errno = 0;
        interrupted = 0;
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) {
            if (errno == EINTR || interrupted) { clearerr(stdin); fprintf(stderr, "\n(/quit or Ctrl-D to leave)\n"); continue; }
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/reset") || !strncmp(line, "/system", 7)) {
            if (!strncmp(line, "/system", 7)) {
                free(c.system);
                const char *t = line + 7;
                while (*t == ' ') t++;
                c.system = *t ? g3_strdup(t) : NULL;
            }
            for (int i = 0; i < c.nturns; i++) free_turn(&c.turns[i]);
            c.nturns = 0;
            if (c.seq >= 0) g3_engine_release(c.e, c.seq);
            c.seq = -1;
            fprintf(stderr, "[conversation restarted%s]\n", !strncmp(line, "/system", 7) ? (c.system ? " with the new system message" : " without a system message") : "");
            continue;
        }
        if (!strncmp(line, "/save", 5)) {
            const char *p = line + 5;
            while (*p == ' ') p++;
            if (!*p) fprintf(stderr, "[usage: /save FILE]\n");
            else if (save(&c, p)) fprintf(stderr, "[%s]\n", g3_error());
            else fprintf(stderr, "[saved %d turns to %s]\n", c.nturns, p);
            continue;
        }
        if (line[0] == '/') { fprintf(stderr, "[unknown command %s: /reset, /system TEXT, /save FILE, /quit]\n", line); continue; }
        if (tty) { printf("gemma> "); fflush(stdout); }
        if (turn(&c, line)) { cli_fail("chat", "%s", g3_error()); free(line); goto out; }
    }
    free(line);
    rc = 0;
out:
    for (int i = 0; i < c.nturns; i++) free_turn(&c.turns[i]);
    free(c.turns); free(c.system);
    g3_engine_free(c.e);
    g3_sampler_free(c.smp);
    g3_state_free(c.s);
    g3_tok_free((G3Tokenizer *)c.tok);
    g3_model_free(&m);
    return rc;
}
