// server.c: the I/O thread of `gemma3 serve` (see server.h; the engine runs on the calling
// thread, the sockets on a thread of their own): one poll loop over the listening
// socket, the engine thread's eventfd and every connection. Requests are parsed (http.h),
// checked and tokenized here; small ones (health, models, tokenize) are answered at once,
// generation is handed to the engine thread as a job (srv_job.h) whose bytes are framed here
// (server-sent events in HTTP/1.1 chunks) as they come. Nothing here blocks: a slow client
// (slow-loris, one that stops reading) costs a buffer and a timeout, never the others' time.
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <omp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"
#include "http.h"
#include "srv_job.h"

const char *srv_page_html(void);  // page.c

typedef struct Conn {
    int fd;
    char *in;               // [incap] bytes received, not yet consumed
    size_t inlen, incap;
    SBuf out;               // bytes to send; out.p[outoff..out.n) still to go
    size_t outoff;
    double t_req;           // when the current request's first byte came (or the connection idled from)
    double t_write;         // last write progress while out had bytes (0: out is empty)
    double t_linger;        // closing: when shutdown(SHUT_WR) was done
    int have_bytes;         // the current request has begun
    int keep_alive;         // of the current request
    int close_after;        // close once out is sent
    int lingering;          // write side shut; reading to EOF before close
    int sent100;
    Job *job;               // the generation in flight, or NULL
    int stream, chunked;    // how job's bytes are framed
    double t0;              // when the request came (log)
    char what[64];          // "POST /v1/chat/completions" (log)
    struct Conn *next;
} Conn;

typedef struct {
    Srv *v;
    int lfd;
    Conn *conns;
    int nconns;
    HttpLimits lim;
    volatile sig_atomic_t *stop;
} Io;

// ---- responses ----

static void conn_log(Io *io, Conn *c, int status) {
    if (io->v->o.quiet) return;
    fprintf(stderr, "serve: %s %d %.3f s\n", c->what[0] ? c->what : "-", status, g3_now() - c->t0);
}

static void respond(Io *io, Conn *c, int status, const char *ctype, const char *body, size_t n, const char *extra) {
    sb_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: %s\r\n\r\n", status, http_reason(status), ctype, n,
              extra ? extra : "", c->keep_alive && !c->close_after ? "keep-alive" : "close");
    sb_put(&c->out, body, n);
    conn_log(io, c, status);
}

static void respond_json(Io *io, Conn *c, int status, const SBuf *b) { respond(io, c, status, "application/json", b->p ? b->p : "", b->n, NULL); }

static void respond_error(Io *io, Conn *c, const SrvError *e) {
    SBuf b = {0};
    srv_error_json(&b, e);
    const char *extra = e->status == 503 ? "Retry-After: 1\r\n" : e->status == 401 ? "WWW-Authenticate: Bearer\r\n" : NULL;
    respond(io, c, e->status, "application/json", b.p ? b.p : "", b.n, extra);
    sb_free(&b);
}

// ---- connections ----

static void conn_close(Io *io, Conn *c) {
    if (c->job) {
        pthread_mutex_lock(&io->v->mu);
        c->job->cancel = 1;  // the engine thread cancels its sequences before its next step
        srv_job_unref(io->v, c->job);
        pthread_cond_signal(&io->v->cv);
        pthread_mutex_unlock(&io->v->mu);
        c->job = NULL;
        conn_log(io, c, 499);  // nginx's "client closed request"
    }
    close(c->fd);
    free(c->in);
    sb_free(&c->out);
    for (Conn **p = &io->conns; *p; p = &(*p)->next)
        if (*p == c) { *p = c->next; break; }
    io->nconns--;
    free(c);
}

static void accept_all(Io *io) {
    for (;;) {
        int fd = accept4(io->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;  // EAGAIN, or an error on one connection: nothing to do
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // streamed tokens go at once
        Conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); continue; }
        c->fd = fd;
        c->t_req = g3_now();
        c->next = io->conns;
        io->conns = c;
        io->nconns++;
        if (io->nconns > io->v->o.max_conns) {  // answer, then close: the client may retry
            SrvError e;
            srv_err(&e, 503, NULL, "too many connections (%d); retry later", io->v->o.max_conns);
            c->close_after = 1;
            respond_error(io, c, &e);
        }
    }
}

// ---- requests ----

static int authorized(const Srv *v, const HttpRequest *r) {
    if (!v->o.api_key) return 1;
    size_t n, k = strlen(v->o.api_key);
    const char *h = http_header(r, "authorization", &n);
    if (h && n > 7 && !strncasecmp(h, "Bearer ", 7)) { h += 7; n -= 7; }
    else h = http_header(r, "x-api-key", &n);
    if (!h || n != k) return 0;
    unsigned char d = 0;  // constant time in the key's bytes
    for (size_t i = 0; i < k; i++) d |= (unsigned char)(h[i] ^ v->o.api_key[i]);
    return d == 0;
}

static Job *new_job(Srv *v, int kind) {
    Job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    j->srv = v;
    j->kind = kind;
    j->created = (long)time(NULL);
    return j;
}

// Hands a job to the engine thread unless the queue is full. 0, or -1 with e (503).
static int submit(Io *io, Conn *c, Job *j, int nseq, SrvError *e) {
    Srv *v = io->v;
    pthread_mutex_lock(&v->mu);
    if (v->inflight + nseq > v->o.parallel + v->o.max_queue) {
        int q = v->inflight;
        pthread_mutex_unlock(&v->mu);
        return srv_err(e, 503, NULL, "the server is busy (%d sequences running or queued); retry later", q);
    }
    v->inflight += nseq;
    j->nseq = nseq;
    j->refs = 2;
    snprintf(j->id, sizeof j->id, "%s-%08lx%06lx", j->kind == JOB_GEN && j->g.kind == SRV_COMPLETION ? "cmpl" : "chatcmpl", (long)time(NULL) & 0xffffffffL,
             ++v->job_ctr & 0xffffff);
    if (v->submit_tail) v->submit_tail->next = j; else v->submit = j;
    v->submit_tail = j;
    pthread_cond_signal(&v->cv);
    pthread_mutex_unlock(&v->mu);
    c->job = j;
    c->stream = j->kind == JOB_GEN && j->g.stream;
    if (c->stream) {
        c->chunked = c->keep_alive;  // an HTTP/1.0 client gets the events until the connection closes
        if (!c->chunked) c->close_after = 1;
        sb_printf(&c->out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n%sConnection: %s\r\n\r\n",
                  c->chunked ? "Transfer-Encoding: chunked\r\n" : "", c->chunked ? "keep-alive" : "close");
    }
    return 0;
}

static void generate(Io *io, Conn *c, const HttpRequest *r, int kind) {
    Srv *v = io->v;
    SrvError e;
    Job *j = new_job(v, JOB_GEN);
    if (!j) { srv_err(&e, 500, NULL, "out of memory"); respond_error(io, c, &e); return; }
    if (srv_gen_parse(&v->lim, kind, r->body, r->body_len, &j->g, &e) || submit(io, c, j, j->g.n, &e)) {
        srv_job_free(j);
        respond_error(io, c, &e);
    }
}

// POST /v1/activations {"prompt": text or ids | "messages": [...], "hooks": ["blocks.*.hook_resid_post", ...]}
static void activations(Io *io, Conn *c, const HttpRequest *r) {
    Srv *v = io->v;
    SrvError e = {0};
    Json js;
    Job *j = NULL;
    if (srv_json_body(&js, r->body, r->body_len, &e)) { respond_error(io, c, &e); return; }
    const JsonNode *root = json_root(&js), *hooks = json_get(root, "hooks"), *p = json_get(root, "prompt"), *msgs = json_get(root, "messages");
    if (!(j = new_job(v, JOB_ACT))) { srv_err(&e, 500, NULL, "out of memory"); goto fail; }
    if (!hooks || hooks->type != JSON_ARRAY || hooks->count == 0 || hooks->count > 256) {
        srv_err(&e, 400, "hooks", "'hooks' must be a list of 1-256 hook names or patterns, e.g. [\"blocks.*.hook_resid_post\"]");
        goto fail;
    }
    if (!(j->act_pat = calloc(hooks->count, sizeof *j->act_pat))) { srv_err(&e, 500, NULL, "out of memory"); goto fail; }
    JSON_FOREACH(h, hooks) {
        if (!json_is_string(h) || h->str_len == 0 || h->str_len > 128) { srv_err(&e, 400, "hooks", "'hooks' entries must be names of 1-128 bytes"); goto fail; }
        if (!(j->act_pat[j->act_npat++] = g3_strdup(h->str))) { srv_err(&e, 500, NULL, "out of memory"); goto fail; }
    }
    if (msgs && p) { srv_err(&e, 400, "prompt", "give 'prompt' or 'messages', not both"); goto fail; }
    if (msgs) {
        int n = srv_chat_ids(&v->lim, msgs, NULL, &j->act_ids, NULL, &e);
        if (n < 0) goto fail;
        j->act_n = n;
    } else if (p && p->type == JSON_STRING) {
        int n = g3_tok_encode(v->tok, p->str, p->str_len, 1, 0, &j->act_ids);
        if (n < 0) { srv_err(&e, 500, NULL, "%s", g3_error()); goto fail; }
        j->act_n = n;
    } else if (p && p->type == JSON_ARRAY && p->count > 0) {
        if (!(j->act_ids = malloc(p->count * sizeof *j->act_ids))) { srv_err(&e, 500, NULL, "out of memory"); goto fail; }
        JSON_FOREACH(id, p) {
            int64_t x;
            if (id->type != JSON_NUMBER || json_int_in(id, 0, v->m->cfg.vocab - 1, &x)) {
                srv_err(&e, 400, "prompt", "prompt[%d]: token ids must be integers in [0, %d)", j->act_n, v->m->cfg.vocab);
                goto fail;
            }
            j->act_ids[j->act_n++] = (int32_t)x;
        }
    } else {
        srv_err(&e, 400, "prompt", "'prompt' (a string or a list of token ids) or 'messages' is required");
        goto fail;
    }
    if (j->act_n > v->o.ctx) { srv_err(&e, 400, "prompt", "the prompt has %d tokens; the context holds %d", j->act_n, v->o.ctx); goto fail; }
    json_free(&js);
    if (submit(io, c, j, 1, &e)) { srv_job_free(j); respond_error(io, c, &e); }
    return;
fail:
    json_free(&js);
    srv_job_free(j);
    respond_error(io, c, &e);
}

// POST /tokenize {"content": text, "add_special": bool} -> {"tokens": [...]}
static void tokenize(Io *io, Conn *c, const HttpRequest *r) {
    SrvError e;
    Json j;
    if (srv_json_body(&j, r->body, r->body_len, &e)) { respond_error(io, c, &e); return; }
    const JsonNode *root = json_root(&j), *t = json_get(root, "content"), *sp = json_get(root, "add_special");
    if (!t) t = json_get(root, "text");
    if (!json_is_string(t)) srv_err(&e, 400, "content", "'content' must be a string");
    else if (sp && !json_is_bool(sp)) srv_err(&e, 400, "add_special", "'add_special' must be true or false");
    else {
        int32_t *ids;
        int n = g3_tok_encode(io->v->tok, t->str, t->str_len, sp && sp->type == JSON_TRUE, 0, &ids);
        if (n < 0) srv_err(&e, 500, NULL, "%s", g3_error());
        else {
            SBuf b = {0};
            sb_puts(&b, "{\"tokens\":[");
            for (int i = 0; i < n; i++) sb_printf(&b, "%s%d", i ? "," : "", ids[i]);
            sb_puts(&b, "]}");
            free(ids);
            json_free(&j);
            respond_json(io, c, 200, &b);
            sb_free(&b);
            return;
        }
    }
    json_free(&j);
    respond_error(io, c, &e);
}

// POST /detokenize {"tokens": [...]} -> {"content": text}
static void detokenize(Io *io, Conn *c, const HttpRequest *r) {
    SrvError e;
    Json j;
    if (srv_json_body(&j, r->body, r->body_len, &e)) { respond_error(io, c, &e); return; }
    const JsonNode *t = json_get(json_root(&j), "tokens");
    int32_t *ids = NULL;
    int n = 0, V = io->v->m->cfg.vocab;
    if (!t || t->type != JSON_ARRAY) { srv_err(&e, 400, "tokens", "'tokens' must be a list of token ids"); goto fail; }
    if (!(ids = malloc((t->count + 1) * sizeof *ids))) { srv_err(&e, 500, NULL, "out of memory"); goto fail; }
    JSON_FOREACH(id, t) {
        int64_t x;
        if (id->type != JSON_NUMBER || json_int_in(id, 0, V - 1, &x)) {
            srv_err(&e, 400, "tokens", "tokens[%d]: token ids must be integers in [0, %d)", n, V);
            goto fail;
        }
        ids[n++] = (int32_t)x;
    }
    size_t len;
    char *s = g3_tok_decode(io->v->tok, ids, n, 0, &len);
    if (!s) { srv_err(&e, 400, "tokens", "%s", g3_error()); goto fail; }
    SBuf b = {0};
    sb_puts(&b, "{\"content\":");
    sb_json_str(&b, s, len);
    sb_puts(&b, "}");
    free(s);
    free(ids);
    json_free(&j);
    respond_json(io, c, 200, &b);
    sb_free(&b);
    return;
fail:
    free(ids);
    json_free(&j);
    respond_error(io, c, &e);
}

// POST /apply-template {"messages": [...], "tools": [...]} -> {"prompt": text}
static void apply_template(Io *io, Conn *c, const HttpRequest *r) {
    SrvError e;
    Json j;
    SrvTools t;
    if (srv_json_body(&j, r->body, r->body_len, &e)) { respond_error(io, c, &e); return; }
    if (srv_tools_parse(json_root(&j), &t, &e)) { json_free(&j); respond_error(io, c, &e); return; }
    char *s = srv_chat_text(json_get(json_root(&j), "messages"), &t, &e);
    srv_tools_free(&t);
    json_free(&j);
    if (!s) { respond_error(io, c, &e); return; }
    SBuf b = {0};
    sb_puts(&b, "{\"prompt\":");
    sb_json_str(&b, s, strlen(s));
    sb_puts(&b, "}");
    free(s);
    respond_json(io, c, 200, &b);
    sb_free(&b);
}

static void models(Io *io, Conn *c) {
    SBuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sb_json_str(&b, io->v->o.model_name, strlen(io->v->o.model_name));
    sb_printf(&b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"gemma3.c\",\"context_length\":%d}]}", (long)time(NULL), io->v->o.ctx);
    respond_json(io, c, 200, &b);
    sb_free(&b);
}

static void health(Io *io, Conn *c) {
    Srv *v = io->v;
    pthread_mutex_lock(&v->mu);
    int busy = v->inflight;
    pthread_mutex_unlock(&v->mu);
    SBuf b = {0};
    sb_printf(&b, "{\"status\":\"ok\",\"sequences\":%d,\"parallel\":%d,\"max_queue\":%d}", busy, v->o.parallel, v->o.max_queue);
    respond_json(io, c, 200, &b);
    sb_free(&b);
}

static void handle(Io *io, Conn *c, const HttpRequest *r) {
    Srv *v = io->v;
    SrvError e;
    c->keep_alive = r->keep_alive;
    c->t0 = g3_now();
    snprintf(c->what, sizeof c->what, "%.*s %.*s", (int)G3_MIN(r->method_len, 8), r->method, (int)G3_MIN(r->target_len, 48), r->target);
    int get = http_method_is(r, "GET") || http_method_is(r, "HEAD"), post = http_method_is(r, "POST");
    static const char *const paths[] = {"/", "/index.html", "/health", "/v1/models", "/models", "/v1/chat/completions", "/chat/completions",
                                        "/v1/completions", "/completions", "/tokenize", "/detokenize", "/apply-template", "/v1/activations"};
    int k = -1;
    for (int i = 0; i < (int)G3_ARRAY_LEN(paths); i++)
        if (http_path_is(r, paths[i])) k = i;
    if (k < 0) { srv_err(&e, 404, NULL, "no such endpoint: %.*s", (int)G3_MIN(r->target_len, 200), r->target); respond_error(io, c, &e); return; }
    // the page and the health check need no key (neither gives anything away)
    if (k > 2 && !authorized(v, r)) { srv_err(&e, 401, NULL, "a valid API key is required (Authorization: Bearer KEY)"); respond_error(io, c, &e); return; }
    int want_get = k <= 4;
    if (want_get ? !get : !post) {
        srv_err(&e, 405, NULL, "%.*s takes %s", (int)r->target_len, r->target, want_get ? "GET" : "POST");
        respond_error(io, c, &e);
        return;
    }
    switch (k) {
    case 0: case 1: respond(io, c, 200, "text/html; charset=utf-8", srv_page_html(), strlen(srv_page_html()), "Cache-Control: no-cache\r\n"); break;
    case 2: health(io, c); break;
    case 3: case 4: models(io, c); break;
    case 5: case 6: generate(io, c, r, SRV_CHAT); break;
    case 7: case 8: generate(io, c, r, SRV_COMPLETION); break;
    case 9: tokenize(io, c, r); break;
    case 10: detokenize(io, c, r); break;
    case 11: apply_template(io, c, r); break;
    case 12: activations(io, c, r); break;
    }
    if (http_method_is(r, "HEAD") && !c->job) {  // the head of the GET answer, without its body
        char *end = c->out.p ? strstr(c->out.p, "\r\n\r\n") : NULL;
        if (end) c->out.n = (size_t)(end + 4 - c->out.p);
    }
}

// Parses and handles what the connection's buffer holds, while no response is in flight.
static void serve_input(Io *io, Conn *c) {
    while (!c->job && !c->close_after && !c->lingering && c->inlen > 0) {
        HttpRequest r;
        long long n = http_parse(c->in, c->inlen, &io->lim, &r);
        if (n == 0) {
            if (r.head_len && r.expect_continue && !c->sent100) {
                sb_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->sent100 = 1;
            }
            return;
        }
        if (n < 0) {
            SrvError e;
            c->close_after = 1;
            c->keep_alive = 0;
            snprintf(c->what, sizeof c->what, "(bad request)");
            c->t0 = g3_now();
            srv_err(&e, (int)-n, NULL, "%s", r.error ? r.error : "bad request");
            respond_error(io, c, &e);
            return;
        }
        if (!r.keep_alive) c->close_after = 1;
        handle(io, c, &r);
        memmove(c->in, c->in + n, c->inlen - (size_t)n);
        c->inlen -= (size_t)n;
        c->sent100 = 0;
        c->have_bytes = c->inlen > 0;
        c->t_req = g3_now();
    }
}

// Moves the job's new bytes into the connection's output (framed), and ends the response
// when the job is done.
static void pump(Io *io, Conn *c) {
    Job *j = c->job;
    if (!j) return;
    Srv *v = io->v;
    SBuf got = {0};
    int done, status;
    pthread_mutex_lock(&v->mu);
    done = j->done;
    status = j->status;
    if (c->stream || done) {
        got = j->out;
        j->out = (SBuf){0};
    }
    if (done) {
        srv_job_unref(v, j);
        c->job = NULL;
    }
    pthread_mutex_unlock(&v->mu);
    if (c->stream) {
        if (got.n) {
            if (c->chunked) sb_printf(&c->out, "%zx\r\n", got.n);
            sb_put(&c->out, got.p, got.n);
            if (c->chunked) sb_puts(&c->out, "\r\n");
        }
        if (done) {
            if (c->chunked) sb_puts(&c->out, "0\r\n\r\n");
            conn_log(io, c, status);
        }
    } else if (done) {
        respond(io, c, status, "application/json", got.p ? got.p : "", got.n, status == 503 ? "Retry-After: 1\r\n" : NULL);
    }
    sb_free(&got);
    if (done) {
        c->t_req = g3_now();
        c->have_bytes = c->inlen > 0;
        serve_input(io, c);  // a request that came while this one ran
    }
}

// Reads what is there. -1: the peer is gone (or broke the protocol); the caller closes.
static int conn_read(Io *io, Conn *c) {
    while (c->lingering) {  // discarding what the client still sends
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof sink);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    for (;;) {
        if (c->inlen == c->incap) {
            size_t max = io->lim.max_head + io->lim.max_body + 4096;
            if (c->incap >= max) return 0;  // full: the parser will have said why
            else {
                size_t cap = c->incap ? G3_MIN(2 * c->incap, max) : 4096;
                char *p = realloc(c->in, cap);
                if (!p) return -1;
                c->in = p;
                c->incap = cap;
            }
        }
        ssize_t n = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (n > 0) {
            if (!c->have_bytes) { c->have_bytes = 1; c->t_req = g3_now(); }
            c->inlen += (size_t)n;
            continue;
        }
        if (n == 0) return -1;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
}

static int conn_write(Conn *c) {
    if (c->out.n > c->outoff && c->t_write == 0) c->t_write = g3_now();  // output waiting: its clock starts now
    while (c->outoff < c->out.n) {
        ssize_t n = send(c->fd, c->out.p + c->outoff, c->out.n - c->outoff, MSG_NOSIGNAL);
        if (n > 0) { c->outoff += (size_t)n; c->t_write = g3_now(); continue; }
        if (n < 0 && errno == EINTR) continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
    }
    c->out.n = c->outoff = 0;
    c->t_write = 0;  // nothing waits
    return 0;
}

// After a response: close if asked (shutting the write side first and reading what the
// client still sends for a moment, so that its unread bytes do not reset the connection
// before it has read our answer).
static void after_write(Conn *c) {
    if (c->out.n || c->job || !c->close_after || c->lingering) return;
    shutdown(c->fd, SHUT_WR);
    c->lingering = 1;
    c->t_linger = g3_now();
}

static int make_listener(const G3ServeOptions *o, int *port) {
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", o->port);
    int rc = getaddrinfo(o->host, ps, &hints, &res);
    if (rc) return g3_errorf("--host %s: %s", o->host, gai_strerror(rc));
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 128) == 0) break;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        int err = errno;
        freeaddrinfo(res);
        return g3_errorf("cannot listen on %s:%d: %s", o->host, o->port, strerror(err));
    }
    freeaddrinfo(res);
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port : ((struct sockaddr_in *)&sa)->sin_port);
    return fd;
}

static void io_loop(Io *io, volatile sig_atomic_t *stop) {
    Srv *v = io->v;
    struct pollfd *pf = NULL;
    Conn **pc = NULL;
    int cap = 0;
    while (!*stop) {
        int need = io->nconns + 2;
        if (need > cap) {
            cap = need * 2;
            struct pollfd *npf = realloc(pf, (size_t)cap * sizeof *pf);
            if (npf) pf = npf;
            Conn **npc = realloc(pc, (size_t)cap * sizeof *pc);
            if (npc) pc = npc;
            if (!npf || !npc) { cap = 0; continue; }
        }
        int n = 0;
        pf[n++] = (struct pollfd){io->lfd, POLLIN, 0};
        pf[n++] = (struct pollfd){v->wake_fd, POLLIN, 0};
        for (Conn *c = io->conns; c; c = c->next) {
            short ev = POLLIN | POLLRDHUP;
            if (c->out.n > c->outoff) ev |= POLLOUT;
            pc[n] = c;
            pf[n++] = (struct pollfd){c->fd, ev, 0};
        }
        int ready = poll(pf, (nfds_t)n, 200);
        if (ready < 0 && errno != EINTR) break;
        if (pf[1].revents & POLLIN) {
            uint64_t x;
            if (read(v->wake_fd, &x, sizeof x) < 0) {}
        }
        double now = g3_now();
        for (int i = 2; i < n; i++) {
            Conn *c = pc[i];
            short re = pf[i].revents;
            int gone = 0;
            if (re & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) gone = conn_read(io, c) < 0;
            if (gone || (re & POLLERR)) { conn_close(io, c); continue; }
            if (c->lingering) {
                if (now - c->t_linger > 2.0) conn_close(io, c);
                continue;
            }
            serve_input(io, c);
            pump(io, c);
            if (conn_write(c)) { conn_close(io, c); continue; }
            after_write(c);
            // timeouts: a request that takes too long to arrive (slow-loris), a client that
            // does not take its bytes, an idle keep-alive connection
            double t = v->o.timeout;
            if (c->out.n > c->outoff && now - c->t_write > t) { conn_close(io, c); continue; }
            if (!c->job && !c->close_after && c->out.n == 0) {
                if (c->have_bytes && now - c->t_req > t) {
                    SrvError e;
                    c->close_after = 1;
                    c->keep_alive = 0;
                    snprintf(c->what, sizeof c->what, "(request timeout)");
                    c->t0 = now;
                    srv_err(&e, 408, NULL, "the request did not arrive within %g s", t);
                    respond_error(io, c, &e);
                    if (conn_write(c)) { conn_close(io, c); continue; }
                    after_write(c);
                } else if (!c->have_bytes && now - c->t_req > 2 * t) {
                    conn_close(io, c);
                    continue;
                }
            }
        }
        // connections without events may have output from the engine thread
        if (pf[1].revents & POLLIN)
            for (Conn *c = io->conns, *next; c; c = next) {
                next = c->next;
                if (!c->job) continue;
                pump(io, c);
                if (conn_write(c)) { conn_close(io, c); continue; }
                after_write(c);
            }
        if (pf[0].revents & POLLIN) accept_all(io);
    }
    free(pf);
    free(pc);
}

// The I/O thread: serves until *stop, then tells the engine thread to finish.
static void *io_main(void *arg) {
    Io *io = arg;
    io_loop(io, io->stop);
    pthread_mutex_lock(&io->v->mu);
    io->v->quit = 1;
    pthread_cond_signal(&io->v->cv);
    pthread_mutex_unlock(&io->v->mu);
    return NULL;
}

int g3_serve(const G3Model *m, const G3Tokenizer *tok, const G3ServeOptions *o, volatile sig_atomic_t *stop) {
    Srv *v = calloc(1, sizeof *v);
    if (!v) return g3_errorf("out of memory");
    v->o = *o;
    if (!v->o.host) v->o.host = "127.0.0.1";
    if (v->o.parallel < 1) v->o.parallel = 1;
    if (v->o.max_rows < v->o.parallel) v->o.max_rows = G3_MAX(v->o.parallel, 512);
    if (v->o.max_conns < 1) v->o.max_conns = 256;
    if (v->o.max_body == 0) v->o.max_body = 1 << 20;
    if (v->o.timeout <= 0) v->o.timeout = 30;
    if (!v->o.model_name) v->o.model_name = "gemma3";
    if (v->o.max_tokens <= 0) v->o.max_tokens = 2048;
    v->m = m;
    v->tok = tok;
    v->threads = omp_get_max_threads();
    v->stop_ids[0] = g3_tok_eos(tok);
    v->stop_ids[1] = g3_tok_end_of_turn(tok);
    v->nstop_ids = v->stop_ids[1] >= 0 ? 2 : 1;
    v->lim = (SrvLimits){tok, m->cfg.vocab, v->o.ctx, v->o.max_tokens, v->o.sampling};
    // a vision model's config says what image parts become (the tower loads at the first image)
    if (m->cfg.multimodal && m->src && !strcmp(m->src->kind, "safetensors")) {
        if (g3_vision_config_load(&v->vcfg, m->dir) == 0) v->lim.vision = &v->vcfg;
        g3_error_clear();
    }
    v->wake_fd = -1;
    Io io = {v, -1, NULL, 0, {16 << 10, v->o.max_body}, NULL};
    int rc = -1, port = 0, started = 0;
    G3EngineOptions eo = {1 << 20, 0};  // the bound is the server's (submit)
    if (!(v->s = g3_state_new(m, v->o.parallel, v->o.ctx, v->o.max_rows, v->o.fast, NULL)) || !(v->e = g3_engine_new(v->s, &eo))) goto out;
    if ((v->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) { g3_errorf("eventfd: %s", strerror(errno)); goto out; }
    if ((io.lfd = make_listener(&v->o, &port)) < 0) goto out;
    pthread_mutex_init(&v->mu, NULL);
    pthread_cond_init(&v->cv, NULL);
    // The engine runs on this thread, the sockets on a new one: the kernels keep per-thread
    // scratch for the thread that calls them (and for its OpenMP team), which a thread that
    // ends would leave behind; the I/O thread calls no kernel.
    io.stop = stop;
    pthread_t th;
    if (pthread_create(&th, NULL, io_main, &io)) { g3_errorf("cannot start the I/O thread"); goto out; }
    started = 1;
    printf("listening on http://%s%s%s:%d\n", strchr(v->o.host, ':') ? "[" : "", v->o.host, strchr(v->o.host, ':') ? "]" : "", port);
    fflush(stdout);
    srv_engine_main(v);  // until the I/O thread sets quit
    pthread_join(th, NULL);
    while (io.conns) conn_close(&io, io.conns);
    rc = 0;
out:
    if (io.lfd >= 0) close(io.lfd);
    if (v->wake_fd >= 0) close(v->wake_fd);
    if (started) {
        pthread_mutex_destroy(&v->mu);
        pthread_cond_destroy(&v->cv);
    }
    for (Job *j = v->active, *n; j; j = n) { n = j->next; srv_job_free(j); }
    free(v->release);
    g3_engine_free(v->e);
    g3_state_free(v->s);
    g3_state_free(v->act_s);
    if (v->vis_loaded) g3_vision_free(&v->vis);
    free(v);
    return rc;
}
