// chat.c: Gemma's chat format, as the reference chat template (tokenizer_config.json) writes it:
//   <bos><start_of_turn>user\n[{system}\n\n]{text}<end_of_turn>\n<start_of_turn>model\n...
// Turn texts are trimmed (the template's `| trim`, Python's str.strip); the system message is
// not. g3_chat_encode builds the ids directly — markers by id, texts as plain text — which gives
// the ids of tokenizing g3_chat_format's string, except that text cannot smuggle in markers.
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok_internal.h"

// Python's str.isspace for the code point at s (length in *len), as Jinja's trim uses it.
static int space_at(const uint8_t *s, size_t n, int *len) {
    uint8_t c = s[0];
    *len = 1;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    int l = tok_utf8_len(s, n);
    if (l < 2) return 0;
    uint32_t cp = c & (0x7F >> l);
    for (int i = 1; i < l; i++) cp = cp << 6 | (s[i] & 0x3F);
    *len = l;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static void trim(const char *text, const char **b, size_t *n) {
    const uint8_t *s = (const uint8_t *)text;
    size_t len = strlen(text), i = 0, end = 0;
    int l;
    while (i < len && space_at(s + i, len - i, &l)) i += (size_t)l;
    *b = text + i;
    for (size_t j = i; j < len;) {  // end = just past the last non-space character
        int sp = space_at(s + j, len - j, &l);
        j += (size_t)l;
        if (!sp) end = j;
    }
    *n = end > i ? end - i : 0;
}

static int check_roles(const G3ChatTurn *turns, int n) {
    for (int i = 0; i < n; i++) {
        const char *r = turns[i].role ? turns[i].role : "";
        int user = !strcmp(r, "user"), model = !strcmp(r, "model") || !strcmp(r, "assistant");
        if (!user && !model) return g3_errorf("chat turn %d: role '%s' (expected user, model or assistant)", i, r);
        if (user != (i % 2 == 0)) return g3_errorf("chat turn %d: roles must alternate user/model, starting with user", i);
        if (!turns[i].text) return g3_errorf("chat turn %d: no text", i);
    }
    return 0;
}

typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static int put(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *ns = g3_realloc(b->s, cap);
        if (!ns) return -1;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
    return 0;
}
static int puts_(Buf *b, const char *s) { return put(b, s, strlen(s)); }

// "role\n[system\n\n]text" of turn i: the text between <start_of_turn> and <end_of_turn>.
static int turn_body(Buf *b, const G3ChatTurn *turns, int i, const char *system) {
    const char *role = !strcmp(turns[i].role, "user") ? "user" : "model", *t;
    size_t tn;
    trim(turns[i].text, &t, &tn);
    b->n = 0;
    if (puts_(b, role) || puts_(b, "\n")) return -1;
    if (i == 0 && system && (puts_(b, system) || puts_(b, "\n\n"))) return -1;
    return put(b, t, tn);
}

char *g3_chat_format(const G3ChatTurn *turns, int n, const char *system, int add_generation_prompt) {
    if (check_roles(turns, n)) return NULL;
    Buf out = {0}, body = {0};
    int bad = puts_(&out, "<bos>");
    for (int i = 0; i < n && !bad; i++)
        bad = turn_body(&body, turns, i, system) || puts_(&out, "<start_of_turn>") || put(&out, body.s, body.n) ||
              puts_(&out, "<end_of_turn>\n");
    if (!bad && add_generation_prompt) bad = puts_(&out, "<start_of_turn>model\n");
    free(body.s);
    if (bad) { free(out.s); return NULL; }
    return out.s;
}

int g3_chat_encode(const G3Tokenizer *t, const G3ChatTurn *turns, int n, const char *system, int add_generation_prompt,
                   int32_t **ids_out) {
    if (check_roles(turns, n)) return -1;
    if (t->sot_id < 0 || t->eot_id < 0 || t->bos_id < 0)
        return g3_errorf("chat: the vocabulary has no <bos>/<start_of_turn>/<end_of_turn>");
    G3TokEncoder *e = g3_tok_encoder_new(t);
    if (!e) return -1;
    Buf body = {0};
    size_t n_ids = 0, cap = 64;
    int32_t *ids = g3_malloc(cap * sizeof *ids);
    int rc = ids ? 0 : -1;
#define PUSH(x)                                                                          \
    do {                                                                                 \
        if (n_ids == cap) {                                                              \
            int32_t *ni = g3_realloc(ids, (cap *= 2) * sizeof *ids);                     \
            if (!ni) { rc = -1; goto out; }                                              \
            ids = ni;                                                                    \
        }                                                                                \
        ids[n_ids++] = (x);                                                              \
    } while (0)
#define PUSH_TEXT(s, len)                                                                \
    do {                                                                                 \
        const int32_t *tid;                                                              \
        int k = g3_tok_encoder_run(e, (s), (len), 0, 0, &tid);                           \
        if (k < 0) { rc = -1; goto out; }                                                \
        for (int j = 0; j < k; j++) PUSH(tid[j]);                                        \
    } while (0)
    if (rc) goto out;
    PUSH(t->bos_id);
    for (int i = 0; i < n; i++) {
        if (turn_body(&body, turns, i, system)) { rc = -1; goto out; }
        PUSH(t->sot_id);
        PUSH_TEXT(body.s, body.n);
        PUSH(t->eot_id);
        PUSH_TEXT("\n", 1);
    }
    if (add_generation_prompt) {
        PUSH(t->sot_id);
        PUSH_TEXT("model\n", 6);
    }
#undef PUSH
#undef PUSH_TEXT
out:
    free(body.s);
    g3_tok_encoder_free(e);
    if (rc) { free(ids); return -1; }
    if (n_ids > INT32_MAX) { free(ids); return g3_errorf("chat: too many tokens"); }
    *ids_out = ids;
    return (int)n_ids;
}
