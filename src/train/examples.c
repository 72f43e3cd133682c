// examples.c: JSONL examples, their tokenization and loss weights, and padded batches in a
// seeded per-epoch order. See examples.h.
#include "examples.h"

#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/json.h"
#include "rng.h"

int g3_examples_is(const char *path) {
    size_t n = strlen(path);
    return n > 6 && !strcmp(path + n - 6, ".jsonl");
}

typedef struct {
    G3Examples *e;
    int64_t cap_seq, cap_tok;
    const char *name;
    long line;
    const G3Tokenizer *tok;
    int T, vocab;
} Parser;

static int fail(const Parser *P, const char *fmt, const char *what) {
    return g3_errorf("%s:%ld: %s%s", P->name, P->line, fmt, what ? what : "");
}

// Appends ids[n] with loss weight wt to the sequence being built.
static int push(Parser *P, const int32_t *ids, int64_t n, uint8_t wt) {
    G3Examples *e = P->e;
    int64_t at = e->off[e->n + 1];
    if (at + n > P->cap_tok) {
        int64_t cap = P->cap_tok ? P->cap_tok : 4096;
        while (cap < at + n) cap *= 2;
        int32_t *t = g3_realloc(e->tok, sizeof *t * (size_t)cap);
        if (!t) return -1;
        e->tok = t;
        uint8_t *w = g3_realloc(e->w, (size_t)cap);
        if (!w) return -1;
        e->w = w;
        P->cap_tok = cap;
    }
    memcpy(e->tok + at, ids, sizeof *ids * (size_t)n);
    memset(e->w + at, wt, (size_t)n);
    e->off[e->n + 1] = at + n;  // the open sequence's end, committed by close_seq
    return 0;
}

static int push_text(Parser *P, const char *s, size_t len, uint8_t wt) {
    if (!P->tok) return fail(P, "text needs a tokenizer (--tokenizer FILE, or a --model folder with one)", NULL);
    int32_t *ids;
    int n = g3_tok_encode(P->tok, s, len, 0, 0, &ids);
    if (n < 0) return -1;
    int rc = push(P, ids, n, wt);
    free(ids);
    return rc;
}

static int push_id(Parser *P, int id, uint8_t wt) { return push(P, &id, 1, wt); }

// Room for one more sequence; its tokens start at off[n].
static int open_seq(Parser *P) {
    G3Examples *e = P->e;
    if (e->n + 2 > P->cap_seq) {
        int64_t cap = P->cap_seq ? P->cap_seq * 2 : 1024;
        int64_t *o = g3_realloc(e->off, sizeof *o * (size_t)(cap + 1));
        if (!o) return -1;
        e->off = o;
        int32_t *l = g3_realloc(e->label, sizeof *l * (size_t)cap);
        if (!l) return -1;
        e->label = l;
        P->cap_seq = cap;
    }
    e->off[e->n + 1] = e->off[e->n];
    return 0;
}

// Checks and commits the open sequence (whose tokens are tok[off[n] .. off[n+1])).
static int close_seq(Parser *P, int32_t label) {
    G3Examples *e = P->e;
    int64_t a = e->off[e->n], b = e->off[e->n + 1];
    int64_t len = b - a;
    char msg[200];
    if (len < 2 && e->kind != G3_EX_CLASS) return fail(P, "an example needs at least 2 tokens (an input and a target)", NULL);
    if (len < 1) return fail(P, "an empty example", NULL);
    if (e->kind == G3_EX_CLASS && len > (int64_t)P->T) {
        snprintf(msg, sizeof msg, "%lld tokens, longer than --seq %d", (long long)len, P->T);
        return fail(P, "classification example of ", msg);
    }
    if (len > (int64_t)P->T + 1) {
        snprintf(msg, sizeof msg, "%lld tokens, longer than --seq %d allows (%d tokens: T inputs and T targets)", (long long)len, P->T, P->T + 1);
        return fail(P, "example of ", msg);
    }
    int any = e->kind == G3_EX_CLASS;
    for (int64_t i = a; i < b; i++) {
        if (e->tok[i] < 0 || e->tok[i] >= P->vocab) {
            snprintf(msg, sizeof msg, "%d (position %lld) is outside the model's vocabulary of %d", e->tok[i], (long long)(i - a), P->vocab);
            return fail(P, "token id ", msg);
        }
        if (e->tok[i] > e->max_id) e->max_id = e->tok[i];
        any |= i > a && e->w[i];
    }
    if (!any) return fail(P, "no token of this example is trained on (nothing after the prompt)", NULL);
    e->w[a] = 0;  // the first token is never a target
    if (len > e->max_len) e->max_len = (int)len;
    e->label[e->n] = label;
    e->n++;
    e->off[e->n] = b;
    return 0;
}

static const JsonNode *str_field(const Parser *P, const JsonNode *o, const char *key, int required) {
    const JsonNode *n = json_get(o, key);
    if (!n) {
        if (required) fail(P, "missing field ", key);
        return NULL;
    }
    if (!json_is_string(n)) { fail(P, "this field must be a string: ", key); return NULL; }
    return n;
}

static int nonempty(const Parser *P, const JsonNode *n, const char *key) {
    for (uint32_t i = 0; i < n->str_len; i++)
        if (n->str[i] != ' ' && n->str[i] != '\n' && n->str[i] != '\t' && n->str[i] != '\r') return 0;
    return fail(P, "empty field: ", key);
}

// A prompt/completion/chosen/rejected field: a string (tokenized) or an array of ids (as given).
static const JsonNode *seg_field(const Parser *P, const JsonNode *o, const char *key) {
    const JsonNode *n = json_get(o, key);
    if (!n) { fail(P, "missing field ", key); return NULL; }
    if (!json_is_string(n) && n->type != JSON_ARRAY) { fail(P, "this field must be a string or an array of token ids: ", key); return NULL; }
    if (json_is_string(n) ? nonempty(P, n, key) != 0 : n->count == 0 ? fail(P, "empty field: ", key) != 0 : 0) return NULL;
    return n;
}

static int push_seg(Parser *P, const JsonNode *n, uint8_t wt) {
    if (json_is_string(n)) return push_text(P, n->str, n->str_len, wt);
    for (uint32_t i = 0; i < n->count; i++) {
        int64_t v;
        if (json_int_in(json_at(n, i), 0, INT32_MAX, &v)) return fail(P, "token id arrays must hold integers >= 0", NULL);
        if (push_id(P, (int)v, wt)) return -1;
    }
    return 0;
}

static int set_kind(Parser *P, G3ExKind k) {
    static const char *NAMES[] = {"language modelling (ids, text, prompt/completion, messages)", "preference (prompt, chosen, rejected)",
                                  "classification (text, label)"};
    if (P->e->n == 0) { P->e->kind = k; return 0; }
    if (P->e->kind == k) return 0;
    char msg[300];
    snprintf(msg, sizeof msg, "a %s example in a file of %s examples", NAMES[k], NAMES[P->e->kind]);
    return fail(P, msg, NULL);
}

static int parse_messages(Parser *P, const JsonNode *ms) {
    int bos = g3_tok_bos(P->tok), eot = g3_tok_end_of_turn(P->tok);
    if (ms->type != JSON_ARRAY || ms->count == 0) return fail(P, "\"messages\" must be a non-empty array of {\"role\", \"content\"}", NULL);
    if (eot < 0) return fail(P, "the tokenizer has no <end_of_turn>: no chat template", NULL);
    int n = (int)ms->count;
    G3ChatTurn *t = g3_malloc(sizeof *t * (size_t)n);
    if (!t) return -1;
    int nt = 0, rc = -1;
    const char *system = NULL;
    char msg[200];
    for (int i = 0; i < n; i++) {
        const JsonNode *m = json_at(ms, (size_t)i), *r = m && m->type == JSON_OBJECT ? json_get(m, "role") : NULL,
                       *c = m && m->type == JSON_OBJECT ? json_get(m, "content") : NULL;
        if (!json_is_string(r) || !json_is_string(c)) {
            snprintf(msg, sizeof msg, "%d must be {\"role\": string, \"content\": string}", i);
            fail(P, "message ", msg);
            goto out;
        }
        if (!strcmp(r->str, "system") && i == 0) { system = c->str; continue; }
        int user = !strcmp(r->str, "user"), model = !strcmp(r->str, "model") || !strcmp(r->str, "assistant");
        if (!user && !model) {
            snprintf(msg, sizeof msg, "%d has role '%.60s' (expected user, model or assistant; system only first)", i, r->str);
            fail(P, "message ", msg);
            goto out;
        }
        if (user != (nt % 2 == 0)) {
            snprintf(msg, sizeof msg, "%d: roles must alternate user/model, starting with user", i);
            fail(P, "message ", msg);
            goto out;
        }
        t[nt++] = (G3ChatTurn){r->str, c->str};
    }
    if (nt < 2) { fail(P, "\"messages\" needs a model turn to train on", NULL); goto out; }
    // The ids of turns [0, k) with the model's header are a prefix of the ids of turns [0, k],
    // as g3_chat_encode builds them piece by piece: what lies between is the model's text, its
    // <end_of_turn> and "\n"; the loss covers the text and <end_of_turn>.
    int64_t done = 0;
    for (int k = 1; k < nt; k += 2) {
        int32_t *pre = NULL, *full = NULL;
        int np = g3_chat_encode(P->tok, t, k, system, 1, &pre);
        int nf = np < 0 ? -1 : g3_chat_encode(P->tok, t, k + 1, system, 0, &full);
        int ok = nf >= 0 && np <= nf && !memcmp(pre, full, sizeof *pre * (size_t)np) && full[0] == bos;
        int end = nf;  // the model turn's end: just after its <end_of_turn>
        while (ok && end > np && full[end - 1] != eot) end--;
        if (ok) ok = !push(P, full + done, np - done, 0) && !push(P, full + np, end - np, 1) && !push(P, full + end, nf - end, 0);
        free(pre);
        free(full);
        if (!ok) {
            if (np >= 0 && nf >= 0) fail(P, "the chat template's ids are not a prefix of the next turn's (tokenizer?)", NULL);
            goto out;
        }
        done = nf;
    }
    rc = 0;
out:
    if (rc && !g3_error_is_set()) fail(P, "cannot format the chat", NULL);
    free(t);
    return rc;
}

static int parse_line(Parser *P, const JsonNode *o) {
    if (!o || o->type != JSON_OBJECT) return fail(P, "a line must be a JSON object", NULL);
    const JsonNode *ids = json_get(o, "ids"), *text = json_get(o, "text"), *prompt = json_get(o, "prompt"),
                   *msgs = json_get(o, "messages"), *chosen = json_get(o, "chosen"), *label = json_get(o, "label");
    if (open_seq(P)) return -1;
    if (ids && label) {  // classification of pre-tokenized text: the ids as given
        int64_t v;
        if (set_kind(P, G3_EX_CLASS)) return -1;
        if (json_int_in(label, 0, 1 << 20, &v)) return fail(P, "\"label\" must be an integer in [0, 2^20]", NULL);
        if (ids->type != JSON_ARRAY || ids->count == 0) return fail(P, "\"ids\" must be a non-empty array of token ids", NULL);
        if (push_seg(P, ids, 0)) return -1;
        if ((int)v + 1 > P->e->nlabels) P->e->nlabels = (int)v + 1;
        return close_seq(P, (int32_t)v);
    }
    if (ids) {
        if (set_kind(P, G3_EX_LM)) return -1;
        if (!(ids->type == JSON_ARRAY)) return fail(P, "\"ids\" must be an array of token ids", NULL);
        for (uint32_t i = 0; i < ids->count; i++) {
            int64_t v;
            if (json_int_in(json_at(ids, i), 0, INT32_MAX, &v)) return fail(P, "\"ids\" must hold integers >= 0", NULL);
            if (push_id(P, (int)v, 1)) return -1;
        }
        return close_seq(P, -1);
    }
    if (!P->tok && (text || msgs || (prompt && prompt->type != JSON_ARRAY)))
        return fail(P, "text needs a tokenizer (--tokenizer FILE, or a --model folder with one)", NULL);
    int bos = P->tok ? g3_tok_bos(P->tok) : 0, eos = P->tok ? g3_tok_eos(P->tok) : 0;
    if (msgs) {
        if (set_kind(P, G3_EX_LM) || parse_messages(P, msgs)) return -1;
        return close_seq(P, -1);
    }
    if (label) {
        int64_t v;
        if (set_kind(P, G3_EX_CLASS)) return -1;
        if (json_int_in(label, 0, 1 << 20, &v)) return fail(P, "\"label\" must be an integer in [0, 2^20]", NULL);
        const JsonNode *t = str_field(P, o, "text", 1);
        if (!t || nonempty(P, t, "text") || push_id(P, bos, 0) || push_text(P, t->str, t->str_len, 0)) return -1;
        if ((int)v + 1 > P->e->nlabels) P->e->nlabels = (int)v + 1;
        return close_seq(P, (int32_t)v);
    }
    if (chosen) {
        if (set_kind(P, G3_EX_PREF)) return -1;
        const JsonNode *p = seg_field(P, o, "prompt"), *c = p ? seg_field(P, o, "chosen") : NULL, *r = c ? seg_field(P, o, "rejected") : NULL;
        if (!r) return -1;
        int text = json_is_string(p);  // ids: given as they are, nothing added
        if (json_is_string(c) != text || json_is_string(r) != text) return fail(P, "prompt, chosen and rejected must all be text or all be ids", NULL);
        const JsonNode *two[2] = {c, r};
        for (int k = 0; k < 2; k++) {
            if ((k && open_seq(P)) || (text && push_id(P, bos, 0)) || push_seg(P, p, 0) || push_seg(P, two[k], 1) ||
                (text && push_id(P, eos, 1)) || close_seq(P, -1))
                return -1;
        }
        return 0;
    }
    if (prompt) {
        if (set_kind(P, G3_EX_LM)) return -1;
        const JsonNode *p = seg_field(P, o, "prompt"), *c = p ? seg_field(P, o, "completion") : NULL;
        if (!c) return -1;
        int text = json_is_string(p);
        if (json_is_string(c) != text) return fail(P, "prompt and completion must both be text or both be ids", NULL);
        if ((text && push_id(P, bos, 0)) || push_seg(P, p, 0) || push_seg(P, c, 1) || (text && push_id(P, eos, 1))) return -1;
        return close_seq(P, -1);
    }
    if (text) {
        if (set_kind(P, G3_EX_LM)) return -1;
        const JsonNode *t = str_field(P, o, "text", 1);
        if (!t || nonempty(P, t, "text") || push_id(P, bos, 1) || push_text(P, t->str, t->str_len, 1) || push_id(P, eos, 1)) return -1;
        return close_seq(P, -1);
    }
    return fail(P, "no known fields: expected ids, text, prompt+completion, messages, prompt+chosen+rejected, or text+label", NULL);
}

int g3_examples_parse(G3Examples *e, const char *text, size_t len, const char *name, const G3Tokenizer *tok, int T, int vocab) {
    memset(e, 0, sizeof *e);
    e->perm_epoch = -1;
    Parser P = {.e = e, .name = name, .tok = tok, .T = T, .vocab = vocab};
    if (!(e->off = g3_calloc(1, sizeof *e->off))) return -1;
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        P.line++;
        size_t a = i, b = end;
        while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r')) a++;
        i = end + 1;
        if (a == b) continue;
        Json j;
        if (json_parse(&j, text + a, b - a)) {
            char why[512];
            snprintf(why, sizeof why, "%s", g3_error());
            g3_examples_free(e);
            return g3_errorf("%s:%ld: not valid JSON: %s", name, P.line, why);
        }
        int rc = parse_line(&P, json_root(&j));
        json_free(&j);
        if (rc) { g3_examples_free(e); return -1; }
    }
    if (e->n == 0) { g3_examples_free(e); return g3_errorf("%s: no examples", name); }
    if (e->kind != G3_EX_CLASS) { free(e->label); e->label = NULL; }
    return 0;
}

int g3_examples_load(G3Examples *e, const char *path, const char *tok_path, int T, int vocab) {
    memset(e, 0, sizeof *e);
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    // The tokenizer only if some line is not {"ids"} (a cheap test: a key other than "ids").
    G3Tokenizer *tok = NULL;
    int need = strstr(text, "\"text\"") || strstr(text, "\"prompt\"") || strstr(text, "\"messages\"");
    if (need && tok_path && !(tok = g3_tok_load(tok_path))) { free(text); return g3_error_prefix("tokenizer"); }
    int rc = g3_examples_parse(e, text, len, path, tok, T, vocab);
    g3_tok_free(tok);
    free(text);
    return rc;
}

void g3_examples_free(G3Examples *e) {
    free(e->off);
    free(e->tok);
    free(e->w);
    free(e->label);
    free(e->perm);
    free(e->pk_order);
    free(e->pk_start);
    free(e->pk_cum);
    memset(e, 0, sizeof *e);
}

// Fisher-Yates over 0..n-1 from a generator seeded by (seed, epoch).
static void draw_perm(int64_t *perm, int64_t n, uint64_t seed, int64_t epoch) {
    G3Rng r;
    g3_rng_seed3(&r, seed, (uint64_t)epoch, 0x6578616d706c6573ull);  // "examples"
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)g3_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t g3_examples_at(G3Examples *e, uint64_t seed, int64_t slot) {
    int64_t n = g3_examples_count(e), epoch = slot / n;
    if (!e->perm && !(e->perm = g3_malloc(sizeof *e->perm * (size_t)n))) return -1;
    if (epoch != e->perm_epoch || seed != e->perm_seed) {
        draw_perm(e->perm, n, seed, epoch);
        e->perm_epoch = epoch;
        e->perm_seed = seed;
    }
    return e->perm[slot % n];
}

// ---- packing ----

// Positions an example takes in a packed row: L - 1 (inputs x[0..L-1), targets x[1..L)).
static int64_t span(const G3Examples *e, int64_t i) { return e->off[i + 1] - e->off[i] - 1; }

// Packs epoch ep (for seed, rows of T) into e->pk_*: its order, and where each row starts in it.
static int pack_epoch(G3Examples *e, uint64_t seed, int T, int64_t ep) {
    const int64_t n = e->n;
    if (e->pk_order && e->pk_epoch == ep && e->pk_seed == seed && e->pk_T == T) return 0;
    if (!e->pk_order) {
        e->pk_order = g3_malloc(sizeof *e->pk_order * (size_t)n);
        e->pk_start = g3_malloc(sizeof *e->pk_start * (size_t)(n + 1));
        if (!e->pk_order || !e->pk_start) return -1;
    }
    draw_perm(e->pk_order, n, seed, ep);
    int64_t rows = 0, used = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t len = span(e, e->pk_order[i]);  // <= T (checked at parse)
        if (i == 0 || used + len > T) {
            e->pk_start[rows++] = i;
            used = 0;
        }
        used += len;
    }
    e->pk_start[rows] = n;
    e->pk_rows = rows;
    e->pk_epoch = ep;
    e->pk_seed = seed;
    e->pk_T = T;
    return 0;
}

// Rows of epochs 0 .. ep - 1 (ep <= pk_nep: cumulative counts kept in pk_cum), computing the
// packings of the epochs not yet counted.
static int64_t rows_before(G3Examples *e, uint64_t seed, int T, int64_t ep) {
    if (ep <= 0) return 0;
    if (e->pk_cum_seed != seed || e->pk_cum_T != T) e->pk_nep = 0;
    if (ep > e->pk_nep) {
        int64_t *c = g3_realloc(e->pk_cum, sizeof *c * (size_t)(ep + 1));
        if (!c) return -1;
        e->pk_cum = c;
        c[0] = 0;
        for (int64_t k = e->pk_nep; k < ep; k++) {
            if (pack_epoch(e, seed, T, k)) return -1;
            c[k + 1] = c[k] + e->pk_rows;
        }
        e->pk_nep = ep;
        e->pk_cum_seed = seed;
        e->pk_cum_T = T;
    }
    return e->pk_cum[ep];
}

int64_t g3_examples_pack_rows(G3Examples *e, int T, uint64_t seed, int64_t epochs) { return rows_before(e, seed, T, epochs); }

void g3_examples_fill_packed(const G3Examples *e, const int64_t *seq, int nseq, int T, int32_t *inputs, int32_t *targets, int32_t *pos,
                             int32_t *seg) {
    int t = 0;
    for (int k = 0; k < nseq; k++) {
        const int64_t a = e->off[seq[k]], L = e->off[seq[k] + 1] - a;
        for (int64_t i = 0; i < L - 1 && t < T; i++, t++) {
            inputs[t] = e->tok[a + i];
            targets[t] = e->w[a + i + 1] ? e->tok[a + i + 1] : -1;
            pos[t] = (int32_t)i;
            seg[t] = k;
        }
    }
    for (int p = 0; t < T; t++, p++) {  // padding: a segment of its own, no targets
        inputs[t] = 0;
        targets[t] = -1;
        pos[t] = p;
        seg[t] = -1;
    }
}

int64_t g3_examples_pack_batch(G3Examples *e, int B, int T, uint64_t seed, int64_t first, int32_t *inputs, int32_t *targets,
                               int32_t *pos, int32_t *seg) {
    if (e->kind != G3_EX_LM) return g3_errorf("packing: language-modelling examples only"), -1;
    int64_t count = 0;
    for (int b = 0; b < B; b++) {
        const int64_t row = first + b;
        // the epoch holding this row: the first whose cumulative count passes it
        int64_t ep = 0, r0;
        for (;;) {
            const int64_t before = rows_before(e, seed, T, ep + 1);
            if (before < 0) return -1;
            if (row < before) break;
            ep++;
        }
        if ((r0 = rows_before(e, seed, T, ep)) < 0 || pack_epoch(e, seed, T, ep)) return -1;
        const int64_t r = row - r0, s0 = e->pk_start[r], s1 = e->pk_start[r + 1];
        const size_t o = (size_t)b * T;
        g3_examples_fill_packed(e, e->pk_order + s0, (int)(s1 - s0), T, inputs + o, targets + o, pos + o, seg + o);
        count += s1 - s0;
    }
    return count;
}

void g3_examples_fill(const G3Examples *e, const int64_t *seq, int B, int T, int32_t *inputs, int32_t *targets) {
    for (int b = 0; b < B; b++) {
        int64_t a = e->off[seq[b]], L = e->off[seq[b] + 1] - a;  // L <= T + 1 (checked at parse)
        for (int t = 0; t < T; t++) {
            int in = t < L - 1;
            inputs[b * T + t] = in ? e->tok[a + t] : 0;  // <pad> past the example
            targets[b * T + t] = in && e->w[a + t + 1] ? e->tok[a + t + 1] : -1;
        }
    }
}

int g3_examples_batch(G3Examples *e, int B, int T, uint64_t seed, int64_t first, int32_t *inputs, int32_t *targets) {
    int64_t *seq = g3_malloc(sizeof *seq * (size_t)B);
    if (!seq) return -1;
    for (int b = 0; b < B; b++)
        if ((seq[b] = g3_examples_at(e, seed, first + b)) < 0) { free(seq); return -1; }
    g3_examples_fill(e, seq, B, T, inputs, targets);
    free(seq);
    return 0;
}

void g3_examples_val_batch(const G3Examples *e, int B, int T, int64_t k, int32_t *inputs, int32_t *targets) {
    int64_t seq[64];
    for (int b0 = 0; b0 < B; b0 += 64) {
        int nb = B - b0 < 64 ? B - b0 : 64;
        for (int b = 0; b < nb; b++) seq[b] = (k * B + b0 + b) % e->n;
        g3_examples_fill(e, seq, nb, T, inputs + (size_t)b0 * T, targets + (size_t)b0 * T);
    }
}

int g3_examples_split(G3Examples *e, double frac, G3Examples *val) {
    memset(val, 0, sizeof *val);
    val->perm_epoch = -1;
    int per = e->kind == G3_EX_PREF ? 2 : 1;
    int64_t units = g3_examples_count(e), k = (int64_t)(frac * (double)units + 0.999999);
    if (units < 2) return g3_errorf("one example cannot be split into training and validation: give --val FILE");
    if (k < 1) k = 1;
    if (k >= units) k = units - 1;
    int64_t s0 = e->n - k * per, t0 = e->off[s0], nt = e->off[e->n] - t0;
    val->kind = e->kind;
    val->n = k * per;
    val->off = g3_malloc(sizeof *val->off * (size_t)(val->n + 1));
    val->tok = g3_malloc(sizeof *val->tok * (size_t)nt);
    val->w = g3_malloc((size_t)nt);
    val->label = e->label ? g3_malloc(sizeof *val->label * (size_t)val->n) : NULL;
    if (!val->off || !val->tok || !val->w || (e->label && !val->label)) { g3_examples_free(val); return -1; }
    for (int64_t i = 0; i <= val->n; i++) val->off[i] = e->off[s0 + i] - t0;
    memcpy(val->tok, e->tok + t0, sizeof *val->tok * (size_t)nt);
    memcpy(val->w, e->w + t0, (size_t)nt);
    if (e->label) memcpy(val->label, e->label + s0, sizeof *val->label * (size_t)val->n);
    val->max_len = e->max_len;
    val->max_id = e->max_id;
    val->nlabels = e->nlabels;
    e->n = s0;
    free(e->perm);
    e->perm = NULL;
    e->perm_epoch = -1;
    free(e->pk_order);  // the packings were of the examples before the split
    free(e->pk_start);
    e->pk_order = e->pk_start = NULL;
    e->pk_nep = 0;
    return 0;
}

void g3_examples_fill_cls(const G3Examples *e, const int64_t *seq, int B, int T, int32_t *inputs, int32_t *last, int32_t *labels) {
    for (int b = 0; b < B; b++) {
        int64_t a = e->off[seq[b]], L = e->off[seq[b] + 1] - a;  // 1 <= L <= T (checked at parse)
        for (int t = 0; t < T; t++) inputs[b * T + t] = t < L ? e->tok[a + t] : 0;
        last[b] = (int32_t)(L - 1);
        labels[b] = e->label[seq[b]];
    }
}
