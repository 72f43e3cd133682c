// cmd_chat.c: `gemma3 chat`: a conversation in the terminal. The KV cache holds exactly the
// ids fed so far (answers are kept as the ids the model produced, never re-tokenized), so
// each turn only prefills the new user text. Ctrl-C stops the current answer, not the
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
    G3Sampler *smp;
    Turn *turns;
    int nturns, cap;
    char *system;
    int32_t *fed;      // ids in the cache, in order
    int nfed;
    int max_tokens, drop_oldest;
} Chat;

// ids of one user turn (with the system text folded into the first), ending with the
// generation prompt "<start_of_turn>model\n"; with <bos> only for the first turn.
static int user_ids(Chat *c, const char *text, int first, int32_t **out) {
    G3ChatTurn t = {"user", text};
    int n = g3_chat_encode(c->tok, &t, 1, first ? c->system : NULL, 1, out);
    if (n > 0 && !first && (*out)[0] == g3_tok_bos(c->tok)) memmove(*out, *out + 1, (size_t)--n * sizeof **out);
    return n;
}

static int push_ids(Chat *c, const int32_t *ids, int n) {
    int32_t *nf = g3_realloc(c->fed, (size_t)(c->nfed + n) * sizeof *nf);
    if (!nf) return -1;
    c->fed = nf;
    memcpy(c->fed + c->nfed, ids, (size_t)n * sizeof *ids);
    c->nfed += n;
    return 0;
}

// The ids that close a model turn: <end_of_turn> "\n".
static int closing_ids(Chat *c, int32_t *out) {
    int32_t *nl;
    int n = g3_tok_encode(c->tok, "\n", 1, 0, 0, &nl);
    if (n != 1) { free(nl); return g3_errorf("cannot encode a newline"); }
    out[0] = g3_tok_end_of_turn(c->tok);
    out[1] = nl[0];
    free(nl);
    return 2;
}

// Rebuilds the whole conversation's ids from turn first on (after dropping older turns).
static int rebuild(Chat *c, int from) {
    c->nfed = 0;
    for (int i = from; i < c->nturns; i++) {
        int32_t *u, close[2];
        int n = user_ids(c, c->turns[i].user, i == from, &u);
        if (n < 0 || push_ids(c, u, n)) { free(u); return -1; }
        free(u);
        if (i + 1 < c->nturns || c->turns[i].answer) {
            if (push_ids(c, c->turns[i].answer, c->turns[i].nanswer) || closing_ids(c, close) < 0 || push_ids(c, close, 2)) return -1;
        }
    }
    return 0;
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

// One exchange: feed the user's turn, stream the answer.
static int turn(Chat *c, const char *text) {
    int32_t *u, close[2];
    int first = c->nturns == 0;
    int n = user_ids(c, text, first, &u);
    if (n < 0) return -1;
    int extra = first ? 0 : 2;  // the previous answer's closing ids
    while (c->nfed + extra + n + 1 > c->s->ctx) {
        if (!c->drop_oldest || c->nturns == 0) {
            free(u);
            fprintf(stderr, "[context full: %d of %d positions used, this message needs %d more; /reset to start over, or run with --drop-oldest]\n",
                    c->nfed, c->s->ctx, extra + n + 1);
            return 0;
        }
        // forget the oldest turn and re-read the rest (the system text moves to the new first turn)
        free_turn(&c->turns[0]);
        memmove(c->turns, c->turns + 1, (size_t)--c->nturns * sizeof *c->turns);
        fprintf(stderr, "[context full: dropped the oldest turn; %d turns kept]\n", c->nturns);
        free(u);
        first = c->nturns == 0;
        extra = first ? 0 : 2;
        if ((n = user_ids(c, text, first, &u)) < 0 || rebuild(c, 0)) return -1;
        g3_state_reset(c->s, 0);
        if (c->nfed && g3_prefill(c->s, 0, c->fed, c->nfed, NULL)) { free(u); return -1; }
    }
    int start = c->nfed;
    if (!first && (closing_ids(c, close) < 0 || push_ids(c, close, 2))) { free(u); return -1; }
    if (push_ids(c, u, n)) { free(u); return -1; }
    free(u);
    if (g3_prefill(c->s, 0, c->fed + start, c->nfed - start, NULL)) return -1;
    if (c->nturns == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        Turn *nt = g3_realloc(c->turns, (size_t)c->cap * sizeof *nt);
        if (!nt) return -1;
        c->turns = nt;
    }
    Turn *t = &c->turns[c->nturns++];
    memset(t, 0, sizeof *t);
    t->user = g3_strdup(text);
    t->answer = g3_malloc((size_t)(c->max_tokens + 1) * sizeof(int32_t));
    G3TextStream ts;
    g3_ts_init(&ts, NULL, 0, 1);
    const int V = c->m->cfg.vocab;
    interrupted = 0;
    double t0 = g3_now();
    const char *why = "max tokens";
    for (;;) {
        int32_t tok = g3_sampler_sample(c->smp, c->s->logits, c->fed, c->nfed);
        if (tok < 0) return -1;
        if (g3_tok_is_stop(c->tok, tok)) { why = NULL; break; }
        t->answer[t->nanswer++] = tok;
        g3_ts_push(&ts, c->tok, tok);
        const char *out;
        size_t k = g3_ts_take(&ts, &out);
        fwrite(out, 1, k, stdout);
        fflush(stdout);
        if (push_ids(c, &tok, 1)) return -1;
        if (interrupted) { why = "stopped"; break; }
        if (t->nanswer >= c->max_tokens) break;
        if (c->nfed + 2 >= c->s->ctx) { why = "context full"; break; }
        G3Segment sg = {0, c->nfed - 1, 1};
        if (g3_forward(c->s, &tok, &sg, 1, G3_LOGITS_LAST)) return -1;
        (void)V;
    }
    // the last sampled token is in fed[] but was not run through the model: the closing
    // ids of the next turn follow it, so feed it now to keep cache == fed
    if (t->nanswer > 0 && c->s->len[0] < c->nfed) {
        G3Segment sg = {0, c->nfed - 1, 1};
        if (g3_forward(c->s, &c->fed[c->nfed - 1], &sg, 1, G3_LOGITS_NONE)) return -1;
    }
    g3_ts_finish(&ts);
    const char *out;
    size_t k = g3_ts_take(&ts, &out);
    fwrite(out, 1, k, stdout);
    t->answer_text = g3_strdup(ts.text);
    g3_ts_free(&ts);
    double dt = g3_now() - t0;
    printf("\n");
    fprintf(stderr, "[%d tokens, %.1f tok/s%s%s; context %d/%d]\n", t->nanswer, dt > 0 ? t->nanswer / dt : 0, why ? ", " : "", why ? why : "", c->nfed, c->s->ctx);
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
    Chat c = {&m, NULL, NULL, NULL};
    c.max_tokens = (int)max_tokens;
    c.drop_oldest = drop;
    c.system = system ? g3_strdup(system) : NULL;
    int rc = 1;
    if (ctx > m.cfg.max_pos) ctx = m.cfg.max_pos;
    if (!(c.tok = cli_load_tokenizer(tok_path, dir, &m)) || !(c.s = g3_state_new(&m, 1, (int)ctx, 512, !exact, NULL)) ||
        !(c.smp = g3_sampler_new(&sc, m.cfg.vocab))) {
        cli_fail("chat", "%s", g3_error());
        goto out;
    }
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
            c.nfed = 0;
            g3_state_reset(c.s, 0);
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
    free(c.turns); free(c.fed); free(c.system);
    g3_sampler_free(c.smp);
    g3_state_free(c.s);
    g3_tok_free((G3Tokenizer *)c.tok);
    g3_model_free(&m);
    return rc;
}
