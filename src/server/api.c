// api.c: the OpenAI request bodies of `gemma3 serve` checked field by field into SrvGen (a
// wrong type, a value out of range or a missing field is a 400 naming the field), the chat
// template over OpenAI messages, and the byte buffer and error object the server's files share.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "srv_internal.h"

// ---- bytes ----

int sb_put(SBuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

int sb_puts(SBuf *b, const char *s) { return sb_put(b, s, strlen(s)); }

int sb_printf(SBuf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return -1;
    if ((size_t)k < sizeof tmp) return sb_put(b, tmp, (size_t)k);
    char *big = malloc((size_t)k + 1);
    if (!big) return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    int rc = sb_put(b, big, (size_t)k);
    free(big);
    return rc;
}

// As json_write_str, into memory: escapes, and U+FFFD for bytes of no valid UTF-8 character.
int sb_json_str(SBuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    if (sb_put(b, "\"", 1)) return -1;
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t run = i;
        // a run of plain ASCII goes in one copy
        while (run < n && (unsigned char)s[run] >= 0x20 && (unsigned char)s[run] < 0x80 && s[run] != '"' && s[run] != '\\') run++;
        if (run > i) {
            if (sb_put(b, s + i, run - i)) return -1;
            i = run;
            continue;
        }
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; if (sb_put(b, esc, 2)) return -1; i++; continue; }
        if (c == '\n') { if (sb_put(b, "\\n", 2)) return -1; i++; continue; }
        if (c == '\t') { if (sb_put(b, "\\t", 2)) return -1; i++; continue; }
        if (c == '\r') { if (sb_put(b, "\\r", 2)) return -1; i++; continue; }
        if (c < 0x20) {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            if (sb_put(b, esc, 6)) return -1;
            i++;
            continue;
        }
        int l = json_utf8_len(s + i, n - i);
        if (l == 0) {
            if (sb_put(b, "\\ufffd", 6)) return -1;
            i++;
        } else {
            if (sb_put(b, s + i, (size_t)l)) return -1;
            i += (size_t)l;
        }
    }
    return sb_put(b, "\"", 1);
}

void sb_free(SBuf *b) {
    free(b->p);
    *b = (SBuf){0};
}

// ---- errors ----

int srv_err(SrvError *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error" : status == 503 ? "server_busy" : status >= 500 ? "server_error" : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

int srv_error_json(SBuf *b, const SrvError *e) {
    int rc = sb_puts(b, "{\"error\":{\"message\":") | sb_json_str(b, e->message, strlen(e->message)) | sb_puts(b, ",\"type\":") |
             sb_json_str(b, e->type, strlen(e->type)) | sb_puts(b, ",\"param\":");
    if (e->param[0]) rc |= sb_json_str(b, e->param, strlen(e->param));
    else rc |= sb_puts(b, "null");
    rc |= sb_printf(b, ",\"code\":%d}}", e->status);
    return rc ? -1 : 0;
}

int srv_json_body(Json *j, const char *body, size_t len, SrvError *e) {
    if (len == 0) return srv_err(e, 400, NULL, "the request has no body: a JSON object is expected");
    for (size_t i = 0; i < len;) {  // JSON text is UTF-8 (RFC 8259 8.1); the reader lets other bytes through
        if ((unsigned char)body[i] < 0x80) { i++; continue; }
        int k = json_utf8_len(body + i, len - i);
        if (!k) return srv_err(e, 400, NULL, "the body is not valid UTF-8 (byte %zu)", i);
        i += (size_t)k;
    }
    if (json_parse(j, body, len)) return srv_err(e, 400, NULL, "the body is not valid JSON: %s", g3_error());
    if (json_root(j)->type != JSON_OBJECT) {
        json_free(j);
        return srv_err(e, 400, NULL, "the body must be a JSON object");
    }
    return 0;
}

// ---- fields ----

// A number field in [lo, hi] into *out (absent: left as it is). 0, or -1 with e.
static int num_field(const JsonNode *o, const char *key, double lo, double hi, float *out, SrvError *e) {
    const JsonNode *v = json_get(o, key);
    if (json_is_null(v)) return 0;
    if (!json_is_number(v)) return srv_err(e, 400, key, "'%s' must be a number", key);
    if (!(v->num >= lo && v->num <= hi)) return srv_err(e, 400, key, "'%s' is %g; it must lie in [%g, %g]", key, v->num, lo, hi);
    *out = (float)v->num;
    return 0;
}

// An integer field in [lo, hi] (absent: *out as it is, *given 0).
static int int_field(const JsonNode *o, const char *key, long long lo, long long hi, long long *out, int *given, SrvError *e) {
    const JsonNode *v = json_get(o, key);
    if (given) *given = 0;
    if (json_is_null(v)) return 0;
    int64_t x;
    int r = v->type == JSON_NUMBER ? json_int_in(v, lo, hi, &x) : -1;
    if (r == -1) return srv_err(e, 400, key, "'%s' must be an integer", key);
    if (r == -2) return srv_err(e, 400, key, "'%s' is out of range: it must lie in [%lld, %lld]", key, lo, hi);
    *out = x;
    if (given) *given = 1;
    return 0;
}

static int bool_field(const JsonNode *o, const char *key, int *out, SrvError *e) {
    const JsonNode *v = json_get(o, key);
    if (json_is_null(v)) return 0;
    if (!json_is_bool(v)) return srv_err(e, 400, key, "'%s' must be true or false", key);
    *out = v->type == JSON_TRUE;
    return 0;
}

// A string without NUL characters (the tokenizer's texts are C strings).
static int plain_str(const JsonNode *v) { return json_is_string(v) && strlen(v->str) == v->str_len; }

// An image part's picture: {"type": "image_url", "image_url": {"url": "data:image/...;base64,..."}}
// (or "image_url": "data:..."), PNG or JPEG; nothing is fetched. 0, or -1 with e (400).
static int image_part(const JsonNode *part, G3Image *im, const char *param, SrvError *e) {
    const JsonNode *iu = json_get(part, "image_url"), *url = iu && iu->type == JSON_OBJECT ? json_get(iu, "url") : iu;
    if (!plain_str(url)) return srv_err(e, 400, param, "%s: an image_url part needs \"image_url\": {\"url\": \"data:image/png;base64,...\"}", param);
    const char *u = url->str, *comma = strchr(u, ',');
    if (strncmp(u, "data:", 5))
        return srv_err(e, 400, param, "%s: only data: URLs are read (data:image/png;base64,... or image/jpeg); this server fetches nothing", param);
    if (!comma || comma - u < 12 || strncmp(comma - 7, ";base64", 7)) return srv_err(e, 400, param, "%s: the data: URL must be base64 (data:image/png;base64,...)", param);
    static signed char val[256];
    if (!val['B']) {
        memset(val, -1, sizeof val);
        for (int k = 0; k < 64; k++) val[(unsigned char)"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[k]] = (signed char)k;
    }
    const char *p = comma + 1;
    size_t n = strlen(p), o = 0;
    uint8_t *bytes = malloc(n / 4 * 3 + 3);
    if (!bytes) return srv_err(e, 500, NULL, "out of memory");
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (size_t k = 0; k < n; k++) {
        const unsigned char ch = (unsigned char)p[k];
        if (ch == '=') { pad++; continue; }
        if (pad || val[ch] < 0) {
            free(bytes);
            return srv_err(e, 400, param, "%s: the image's base64 data has a bad character at offset %zu", param, k);
        }
        acc = acc << 6 | (uint32_t)val[ch];
        if ((bits += 6) >= 8) bytes[o++] = (uint8_t)(acc >> (bits -= 8));
    }
    char name[80];
    snprintf(name, sizeof name, "%s (image)", param);
    int rc = g3_image_decode(im, bytes, o, name);
    free(bytes);
    return rc ? srv_err(e, 400, param, "%s", g3_error()) : 0;
}

// A message's text: a string, null, or a list of {"type": "text", "text": ...} parts (joined)
// and image parts, each written as <start_of_image> where it stands (Gemma 3's template) and
// decoded into g (NULL: only the marker, for /apply-template).
static int content_text(const JsonNode *c, SBuf *b, int i, SrvGen *g, int *nimg, SrvError *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%d].content", i);
    if (json_is_null(c)) return 0;
    if (json_is_string(c)) {
        if (!plain_str(c)) return srv_err(e, 400, param, "%s holds a NUL character", param);
        return sb_put(b, c->str, c->str_len) ? srv_err(e, 500, NULL, "out of memory") : 0;
    }
    if (c->type != JSON_ARRAY) return srv_err(e, 400, param, "%s must be a string or a list of text and image_url parts", param);
    JSON_FOREACH(part, c) {
        const JsonNode *type = json_get(part, "type"), *text = json_get(part, "text");
        if (part->type != JSON_OBJECT || !json_is_string(type)) return srv_err(e, 400, param, "%s: each part must be an object with a \"type\"", param);
        if (!strcmp(type->str, "image_url")) {
            if (++*nimg > SRV_MAX_IMAGES) return srv_err(e, 400, param, "%s: more than %d images in one request", param, SRV_MAX_IMAGES);
            if (g) {
                G3Image *ni = realloc(g->images, (size_t)(g->nimages + 1) * sizeof *ni);
                if (!ni) return srv_err(e, 500, NULL, "out of memory");
                g->images = ni;
                if (image_part(part, &g->images[g->nimages], param, e)) return -1;
                g->nimages++;
            }
            if (sb_puts(b, "<start_of_image>")) return srv_err(e, 500, NULL, "out of memory");
            continue;
        }
        if (strcmp(type->str, "text")) return srv_err(e, 400, param, "%s: parts of type '%s' are not supported (text and image_url)", param, type->str);
        if (!plain_str(text)) return srv_err(e, 400, param, "%s: a text part needs a \"text\" string without NUL", param);
        if (sb_put(b, text->str, text->str_len)) return srv_err(e, 500, NULL, "out of memory");
    }
    return 0;
}

// ---- the chat template ----

typedef struct {
    SBuf text[2];      // scratch
    G3ChatTurn *turns;
    char **owned;
    int n;
    SBuf system;
} Conv;

static void conv_free(Conv *c) {
    for (int i = 0; i < c->n; i++) free(c->owned[i]);
    free(c->owned);
    free(c->turns);
    sb_free(&c->system);
}

// Appends text to the conversation as role ("user" or "model"): merged into the last turn
// when that has the same role (Gemma's turns must alternate).
static int conv_add(Conv *c, const char *role, const char *text, size_t n, SrvError *e) {
    if (c->n > 0 && !strcmp(c->turns[c->n - 1].role, role)) {
        size_t old = strlen(c->owned[c->n - 1]);
        char *p = realloc(c->owned[c->n - 1], old + 2 + n + 1);
        if (!p) return srv_err(e, 500, NULL, "out of memory");
        memcpy(p + old, "\n\n", 2);
        memcpy(p + old + 2, text, n);
        p[old + 2 + n] = 0;
        c->owned[c->n - 1] = p;
        c->turns[c->n - 1].text = p;
        return 0;
    }
    G3ChatTurn *t = realloc(c->turns, (size_t)(c->n + 1) * sizeof *t);
    if (t) c->turns = t;
    char **o = realloc(c->owned, (size_t)(c->n + 1) * sizeof *o);
    if (o) c->owned = o;
    char *s = malloc(n + 1);
    if (!t || !o || !s) { free(s); return srv_err(e, 500, NULL, "out of memory"); }
    memcpy(s, text, n);
    s[n] = 0;
    c->owned[c->n] = s;
    c->turns[c->n] = (G3ChatTurn){role, s};
    c->n++;
    return 0;
}

static int conv_build(Conv *c, const JsonNode *messages, const SrvTools *tools, SrvGen *g, int *nimg, SrvError *e) {
    if (!messages) return srv_err(e, 400, "messages", "'messages' is required");
    if (messages->type != JSON_ARRAY) return srv_err(e, 400, "messages", "'messages' must be a list");
    if (messages->count == 0) return srv_err(e, 400, "messages", "'messages' is empty");
    if (tools && tools->prompt && sb_puts(&c->system, tools->prompt)) return srv_err(e, 500, NULL, "out of memory");
    int i = 0;
    JSON_FOREACH(m, messages) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        const JsonNode *role = json_get(m, "role");
        if (m->type != JSON_OBJECT) return srv_err(e, 400, param, "%s must be an object", param);
        if (!json_is_string(role)) return srv_err(e, 400, param, "%s needs a \"role\" string", param);
        SBuf *t = &c->text[0];
        t->n = 0;
        const char *r = role->str;
        const JsonNode *content = json_get(m, "content");
        if (!content && strcmp(r, "assistant") && strcmp(r, "model")) return srv_err(e, 400, param, "%s needs a \"content\"", param);
        if (content_text(content, t, i, g, nimg, e)) return -1;
        if (!strcmp(r, "system") || !strcmp(r, "developer")) {
            if ((c->system.n && sb_puts(&c->system, "\n\n")) || sb_put(&c->system, t->p ? t->p : "", t->n)) return srv_err(e, 500, NULL, "out of memory");
        } else if (!strcmp(r, "user")) {
            if (conv_add(c, "user", t->p ? t->p : "", t->n, e)) return -1;
        } else if (!strcmp(r, "assistant") || !strcmp(r, "model")) {
            if (c->n == 0) return srv_err(e, 400, param, "%s: the conversation must start with a user message", param);
            const JsonNode *calls = json_get(m, "tool_calls");
            if (!json_is_null(calls)) {
                if (calls->type != JSON_ARRAY) return srv_err(e, 400, param, "%s.tool_calls must be a list", param);
                SBuf *u = &c->text[1];
                u->n = 0;
                int bad = (t->n && sb_puts(u, "\n")) || sb_puts(u, "```tool_code\n[");
                int k = 0;
                JSON_FOREACH(call, calls) {
                    const JsonNode *fn = json_get(call, "function"), *name = json_get(fn, "name"), *args = json_get(fn, "arguments");
                    if (!fn || fn->type != JSON_OBJECT || !plain_str(name) || (args && !json_is_string(args)))
                        return srv_err(e, 400, param, "%s.tool_calls[%d] needs \"function\": {\"name\": string, \"arguments\": string}", param, k);
                    bad |= (k && sb_puts(u, ", ")) || srv_call_render(u, name->str, args ? args->str : "{}", args ? args->str_len : 2);
                    k++;
                }
                bad |= sb_puts(u, "]\n```");
                if (bad || sb_put(t, u->p, u->n)) return srv_err(e, 500, NULL, "out of memory");
            }
            if (conv_add(c, "model", t->p ? t->p : "", t->n, e)) return -1;
        } else if (!strcmp(r, "tool")) {
            SBuf *u = &c->text[1];
            u->n = 0;
            if (sb_puts(u, "```tool_output\n") || sb_put(u, t->p ? t->p : "", t->n) || sb_puts(u, "\n```")) return srv_err(e, 500, NULL, "out of memory");
            if (conv_add(c, "user", u->p, u->n, e)) return -1;
        } else {
            return srv_err(e, 400, param, "%s: role '%s' is not one of system, developer, user, assistant, tool", param, r);
        }
        i++;
    }
    if (c->n == 0) return srv_err(e, 400, "messages", "'messages' holds no user message");
    if (strcmp(c->turns[c->n - 1].role, "user"))
        return srv_err(e, 400, "messages", "the last message must be from the user or a tool (the model answers it)");
    return 0;
}

int srv_chat_ids(const SrvLimits *l, const JsonNode *messages, const SrvTools *tools, int32_t **ids, SrvGen *g, SrvError *e) {
    Conv c = {0};
    int n = -1, nimg = 0;
    if (conv_build(&c, messages, tools, g, &nimg, e) == 0) {
        if (nimg && !g) {
            srv_err(e, 400, "messages", "image parts are read by /v1/chat/completions only");
        } else if (nimg && !l->vision) {
            srv_err(e, 400, "messages", "this model has no vision tower: image parts need a Gemma 3 4B, 12B or 27B model");
        } else if (nimg) {  // the template's text, each <start_of_image> replaced by the image's run
            char *full = g3_chat_format(c.turns, c.n, c.system.n ? c.system.p : NULL, 1);
            n = full ? g3_vision_encode_text(l->vision, l->tok, full, nimg, 0, 1, ids) : -1;
            free(full);
            if (n < 0) srv_err(e, 400, "messages", "%s", g3_error());
        } else {
            n = g3_chat_encode(l->tok, c.turns, c.n, c.system.n ? c.system.p : NULL, 1, ids);
            if (n < 0) srv_err(e, 400, "messages", "%s", g3_error());
        }
    }
    conv_free(&c);
    sb_free(&c.text[0]);
    sb_free(&c.text[1]);
    return n;
}

char *srv_chat_text(const JsonNode *messages, const SrvTools *tools, SrvError *e) {
    Conv c = {0};
    char *s = NULL;
    int nimg = 0;
    if (conv_build(&c, messages, tools, NULL, &nimg, e) == 0 && !(s = g3_chat_format(c.turns, c.n, c.system.n ? c.system.p : NULL, 1)))
        srv_err(e, 400, "messages", "%s", g3_error());
    conv_free(&c);
    sb_free(&c.text[0]);
    sb_free(&c.text[1]);
    return s;
}

// ---- the request ----

static int parse_stops(const JsonNode *req, SrvGen *g, SrvError *e) {
    const JsonNode *s = json_get(req, "stop");
    if (json_is_null(s)) return 0;
    if (s->type != JSON_STRING && s->type != JSON_ARRAY) return srv_err(e, 400, "stop", "'stop' must be a string or a list of strings");
    if (s->type == JSON_ARRAY && s->count > SRV_MAX_STOPS) return srv_err(e, 400, "stop", "'stop' holds %u strings; at most %d", s->count, SRV_MAX_STOPS);
    const JsonNode *one = s->type == JSON_STRING ? s : json_first(s);
    for (; one; one = s->type == JSON_STRING ? NULL : json_next(s, one)) {
        if (!plain_str(one)) return srv_err(e, 400, "stop", "'stop' entries must be strings without NUL");
        if (!one->str_len) return srv_err(e, 400, "stop", "an empty stop string would stop at once");
        if (one->str_len > 256) return srv_err(e, 400, "stop", "stop strings are at most 256 bytes");
        if (!(g->stops[g->nstops++] = g3_strdup(one->str))) return srv_err(e, 500, NULL, "out of memory");
    }
    return 0;
}

// The prompt of /v1/completions: a string, a list of token ids, or a list of one of either.
static int completion_prompt(const SrvLimits *l, const JsonNode *p, SrvGen *g, SrvError *e) {
    if (!p) return srv_err(e, 400, "prompt", "'prompt' is required");
    if (p->type == JSON_ARRAY && p->count == 1 && (json_first(p)->type == JSON_STRING || json_first(p)->type == JSON_ARRAY)) p = json_first(p);
    if (p->type == JSON_STRING) {
        if (!plain_str(p)) return srv_err(e, 400, "prompt", "'prompt' holds a NUL character");
        int n = g3_tok_encode(l->tok, p->str, p->str_len, 1, 0, &g->prompt);
        if (n < 0) return srv_err(e, 500, NULL, "%s", g3_error());
        g->nprompt = n;
        return 0;
    }
    if (p->type != JSON_ARRAY) return srv_err(e, 400, "prompt", "'prompt' must be a string or a list of token ids");
    if (p->count == 0) return srv_err(e, 400, "prompt", "'prompt' is empty");
    if (p->count > 1 && json_first(p)->type != JSON_NUMBER) return srv_err(e, 400, "prompt", "one prompt per request (send a string or a list of token ids)");
    if (!(g->prompt = g3_malloc(p->count * sizeof *g->prompt))) return srv_err(e, 500, NULL, "out of memory");
    JSON_FOREACH(id, p) {
        int64_t v;
        int r = id->type == JSON_NUMBER ? json_int_in(id, 0, l->vocab - 1, &v) : -1;
        if (r) return srv_err(e, 400, "prompt", "prompt[%d]: token ids must be integers in [0, %d)", g->nprompt, l->vocab);
        g->prompt[g->nprompt++] = (int32_t)v;
    }
    return 0;
}

int srv_gen_parse(const SrvLimits *l, int kind, const char *body, size_t len, SrvGen *g, SrvError *e) {
    memset(g, 0, sizeof *g);
    g->kind = kind;
    g->n = 1;
    g->sc = l->sampling;
    Json j;
    if (srv_json_body(&j, body, len, e)) return -1;
    const JsonNode *r = json_root(&j);
    int rc = -1, given;
    long long v;
    const JsonNode *model = json_get(r, "model");
    if (model && !json_is_string(model)) { srv_err(e, 400, "model", "'model' must be a string"); goto out; }
    // sampling
    if (num_field(r, "temperature", 0, 100, &g->sc.temperature, e) || num_field(r, "top_p", 0, 1, &g->sc.top_p, e) ||
        num_field(r, "min_p", 0, 1, &g->sc.min_p, e) || num_field(r, "presence_penalty", -2, 2, &g->sc.presence_penalty, e) ||
        num_field(r, "frequency_penalty", -2, 2, &g->sc.frequency_penalty, e) ||
        num_field(r, "repetition_penalty", 0.001, 1000, &g->sc.repeat_penalty, e))
        goto out;
    v = g->sc.top_k;
    if (int_field(r, "top_k", 0, l->vocab, &v, NULL, e)) goto out;
    g->sc.top_k = (int)v;
    v = 0;
    if (int_field(r, "seed", INT64_MIN, INT64_MAX, &v, &g->seeded, e)) goto out;
    if (g->seeded) g->sc.seed = (uint64_t)v;
    v = 1;
    if (int_field(r, "n", 1, SRV_MAX_N, &v, NULL, e)) goto out;
    g->n = (int)v;
    if (bool_field(r, "stream", &g->stream, e) || bool_field(r, "ignore_eos", &g->ignore_eos, e)) goto out;
    const JsonNode *so = json_get(r, "stream_options");
    if (!json_is_null(so)) {
        if (so->type != JSON_OBJECT) { srv_err(e, 400, "stream_options", "'stream_options' must be an object"); goto out; }
        if (bool_field(so, "include_usage", &g->include_usage, e)) goto out;
    }
    if (parse_stops(r, g, e)) goto out;
    // logprobs: chat has a boolean and top_logprobs; completions an integer (the alternatives)
    if (kind == SRV_CHAT) {
        if (bool_field(r, "logprobs", &g->logprobs, e)) goto out;
        v = 0;
        if (int_field(r, "top_logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, &given, e)) goto out;
        if (given && !g->logprobs && v > 0) { srv_err(e, 400, "top_logprobs", "'top_logprobs' needs 'logprobs': true"); goto out; }
        g->top_logprobs = (int)v;
    } else {
        v = 0;
        if (int_field(r, "logprobs", 0, SRV_MAX_TOP_LOGPROBS, &v, &given, e)) goto out;
        g->logprobs = given;
        g->top_logprobs = (int)v;
    }
    // the prompt
    if (kind == SRV_CHAT) {
        if (srv_tools_parse(r, &g->tools, e)) goto out;
        int n = srv_chat_ids(l, json_get(r, "messages"), &g->tools, &g->prompt, g, e);
        if (n < 0) goto out;
        g->nprompt = n;
    } else {
        if (json_get(r, "messages")) { srv_err(e, 400, "messages", "/v1/completions takes a 'prompt' (messages go to /v1/chat/completions)"); goto out; }
        if (completion_prompt(l, json_get(r, "prompt"), g, e)) goto out;
    }
    if (g->nprompt >= l->ctx) {
        srv_err(e, 400, kind == SRV_CHAT ? "messages" : "prompt", "the prompt has %d tokens; this server's context holds %d", g->nprompt, l->ctx);
        goto out;
    }
    // max_tokens: what is left of the context unless given; given, it must fit
    const int room = l->ctx - g->nprompt;
    v = 0;
    const char *mt = json_get(r, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    if (int_field(r, mt, 1, INT32_MAX, &v, &given, e)) goto out;
    if (given && v > room) {
        srv_err(e, 400, mt, "'%s' is %lld, but the prompt's %d tokens leave %d of this server's context of %d", mt, v, g->nprompt, room, l->ctx);
        goto out;
    }
    g->max_tokens = given ? (int)v : G3_MIN(room, l->max_tokens);
    if (g3_sampler_config_check(&g->sc)) { srv_err(e, 400, NULL, "%s", g3_error()); goto out; }
    rc = 0;
out:
    json_free(&j);
    if (rc) srv_gen_free(g);
    return rc;
}

void srv_gen_free(SrvGen *g) {
    free(g->prompt);
    for (int i = 0; i < g->nimages; i++) {
        g3_image_free(&g->images[i]);
        if (g->soft) free(g->soft[i]);
    }
    free(g->images);
    free(g->soft);
    for (int i = 0; i < g->nstops; i++) free(g->stops[i]);
    srv_tools_free(&g->tools);
    memset(g, 0, sizeof *g);
}
