// load_json.c: reads a Hugging Face tokenizer.json (BPE model) into the tokenizer's arrays.
// Only the pipeline Gemma uses is accepted — normalizer Replace(' ' -> '▁'), no pre-tokenizer or
// a Split on ' ' (a no-op once spaces are gone), BPE with byte fallback — and anything else is
// refused with a message naming it, rather than encoded subtly wrong.
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "tok_internal.h"

static int str_is(const JsonNode *n, const char *s) { return json_is_string(n) && !strcmp(n->str, s); }

static int is_space_replace(const JsonNode *n) {
    const JsonNode *pat = json_get(n, "pattern");
    return str_is(json_get(n, "type"), "Replace") && pat && str_is(json_get(pat, "String"), " ") &&
           str_is(json_get(n, "content"), "\xE2\x96\x81");
}

static int check_pipeline(const JsonNode *root) {
    const JsonNode *norm = json_get(root, "normalizer");
    int ok = 0;
    if (norm && is_space_replace(norm)) ok = 1;
    if (norm && str_is(json_get(norm, "type"), "Sequence")) {
        const JsonNode *seq = json_get(norm, "normalizers");
        if (seq && seq->type == JSON_ARRAY && seq->count == 1 && is_space_replace(json_first(seq))) ok = 1;
    }
    if (!ok) return g3_errorf("unsupported normalizer (gemma3.c implements Gemma's: Replace ' ' with '\xE2\x96\x81')");
    const JsonNode *pre = json_get(root, "pre_tokenizer");
    if (!json_is_null(pre)) {
        const JsonNode *pat = json_get(pre, "pattern");
        if (!str_is(json_get(pre, "type"), "Split") || !pat || !str_is(json_get(pat, "String"), " "))
            return g3_errorf("unsupported pre_tokenizer (gemma3.c implements Gemma's: none, or Split on ' ')");
    }
    const JsonNode *model = json_get(root, "model");
    if (!model || model->type != JSON_OBJECT) return g3_errorf("no \"model\" object");
    const JsonNode *type = json_get(model, "type");
    if (type && !str_is(type, "BPE")) return g3_errorf("model type '%s' is not supported (only BPE)", json_is_string(type) ? type->str : "?");
    const JsonNode *bf = json_get(model, "byte_fallback");
    if (!bf || bf->type != JSON_TRUE) return g3_errorf("BPE without byte_fallback is not supported (Gemma has it on)");
    const JsonNode *drop = json_get(model, "dropout");
    if (json_is_number(drop) && drop->num > 0) return g3_errorf("BPE dropout is not supported");
    return 0;
}

static int is_byte_piece(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return 0;
    for (int i = 3; i < 5; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) return 0;
    return 1;
}

typedef struct {
    const char *s;
    uint32_t n;
    uint8_t flags;
    uint8_t set;
} Slot;

// Token ids are rows of a table: integers in [0, 2^30).
static int get_id(const JsonNode *n, int32_t *id) {
    int64_t v;
    int rc = json_int_in(n, 0, (1 << 30) - 1, &v);
    if (rc == -1) return g3_errorf("token id is not an integer (%.40s)", json_is_number(n) ? n->str : "not a number");
    if (rc == -2) return g3_errorf("token id %.40s is outside [0, 2^30)", n->str);
    *id = (int32_t)v;
    return 0;
}

// Splits a merge entry (["a", "b"] or the older "a b") into its two pieces.
static int merge_parts(const JsonNode *m, const char **a, size_t *an, const char **b, size_t *bn) {
    if (m->type == JSON_ARRAY && m->count == 2) {
        const JsonNode *x = json_first(m), *y = json_next(m, x);
        if (!json_is_string(x) || !json_is_string(y)) return -1;
        *a = x->str, *an = x->str_len, *b = y->str, *bn = y->str_len;
        return 0;
    }
    if (json_is_string(m)) {
        const char *sp = memchr(m->str, ' ', m->str_len);
        if (!sp || memchr(sp + 1, ' ', m->str_len - (size_t)(sp + 1 - m->str))) return -1;
        *a = m->str, *an = (size_t)(sp - m->str), *b = sp + 1, *bn = m->str_len - *an - 1;
        return 0;
    }
    return -1;
}

static int load(G3Tokenizer *t, const JsonNode *root) {
    if (!root || root->type != JSON_OBJECT) return g3_errorf("not a JSON object");
    if (check_pipeline(root)) return -1;
    const JsonNode *model = json_get(root, "model");
    const JsonNode *vocab = json_get(model, "vocab");
    const JsonNode *added = json_get(root, "added_tokens");
    if (!vocab || vocab->type != JSON_OBJECT) return g3_errorf("model.vocab is not an object");
    if (added && added->type != JSON_ARRAY) return g3_errorf("added_tokens is not an array");

    int32_t n_vocab = 0, id = 0;
    long entries = 0;
    JSON_FOREACH(v, vocab) {
        if (get_id(v, &id)) return g3_error_prefix("model.vocab[\"%.40s\"]", v->key);
        if (id + 1 > n_vocab) n_vocab = id + 1;
        entries++;
    }
    if (added) JSON_FOREACH(a, added) {
        if (a->type != JSON_OBJECT || !json_is_string(json_get(a, "content"))) return g3_errorf("added_tokens: entry without content");
        if (get_id(json_get(a, "id"), &id)) return g3_error_prefix("added_tokens \"%.40s\"", json_get(a, "content")->str);
        if (id + 1 > n_vocab) n_vocab = id + 1;
        entries++;
    }
    if (n_vocab == 0) return g3_errorf("empty vocabulary");
    // Ids are the rows of a table: a real vocabulary numbers its pieces 0..n-1 (with at most a
    // few holes); one huge id among few pieces would only make us allocate gigabytes.
    if (n_vocab > entries + entries / 2 + 1024)
        return g3_errorf("model.vocab: largest id %d for only %ld pieces (ids must be dense)", n_vocab - 1, entries);

    Slot *slots = g3_calloc((size_t)n_vocab, sizeof *slots);
    if (!slots) return -1;
    int rc = -1;
    JSON_FOREACH(v, vocab) {
        get_id(v, &id);
        if (slots[id].set) { g3_errorf("model.vocab: id %d appears twice", id); goto out; }
        slots[id] = (Slot){v->key, v->key_len, is_byte_piece(v->key, v->key_len) ? TOKF_BYTE : 0, 1};
    }
    if (added) JSON_FOREACH(a, added) {
        const JsonNode *c = json_get(a, "content");
        get_id(json_get(a, "id"), &id);
        if (slots[id].set && (slots[id].n != c->str_len || memcmp(slots[id].s, c->str, c->str_len))) {
            g3_errorf("added token %d \"%.40s\" differs from the vocabulary's piece", id, c->str);
            goto out;
        }
        uint8_t f = slots[id].flags | TOKF_ADDED;
        if (json_get(a, "special") && json_get(a, "special")->type == JSON_TRUE) f |= TOKF_SPECIAL;
        slots[id] = (Slot){c->str, c->str_len, f, 1};
    }

    TokBlob b = {0};
    t->n_vocab = n_vocab;
    t->off = g3_malloc(((size_t)n_vocab + 1) * sizeof *t->off);
    t->flags = g3_malloc((size_t)n_vocab);
    if (!t->off || !t->flags) goto out;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (tok_blob_add(&b, slots[i].s, slots[i].set ? slots[i].n : 0, &t->off[i])) { free(b.blob); goto out; }
        t->flags[i] = slots[i].set ? slots[i].flags : TOKF_UNUSED;
    }
    t->off[n_vocab] = (uint32_t)b.len;
    t->blob = b.blob;
    t->blob_len = b.len;
    if (tok_index_pieces(t)) goto out;

    const JsonNode *merges = json_get(model, "merges");
    if (!merges || merges->type != JSON_ARRAY) { g3_errorf("model.merges is not an array"); goto out; }
    t->merges = g3_malloc((merges->count ? merges->count : 1) * sizeof *t->merges);
    if (!t->merges) goto out;
    char *cat = NULL;
    size_t cat_cap = 0;
    int32_t k = 0;
    JSON_FOREACH(m, merges) {
        const char *a, *bb;
        size_t an, bn;
        if (merge_parts(m, &a, &an, &bb, &bn) || !an || !bn) { g3_errorf("model.merges[%d]: not a pair of pieces", k); break; }
        if (an + bn > cat_cap) {
            cat_cap = (an + bn) * 2;
            char *nc = g3_realloc(cat, cat_cap);
            if (!nc) break;
            cat = nc;
        }
        memcpy(cat, a, an);
        memcpy(cat + an, bb, bn);
        TokMerge tm = {tok_lookup(t, a, an), tok_lookup(t, bb, bn), tok_lookup(t, cat, an + bn), k};
        if (tm.left < 0 || tm.right < 0 || tm.result < 0) {
            g3_errorf("model.merges[%d]: \"%.*s\" + \"%.*s\" is not in the vocabulary", k, (int)G3_MIN(an, 40), a,
                      (int)G3_MIN(bn, 40), bb);
            break;
        }
        t->merges[k++] = tm;
    }
    free(cat);
    if (k != (int32_t)merges->count) goto out;
    t->n_merges = k;
    rc = 0;
out:
    free(slots);
    return rc;
}

int tok_load_json_mem(G3Tokenizer *t, const char *text, size_t len) {
    Json j;
    if (json_parse(&j, text, len)) return -1;
    int rc = load(t, json_root(&j));
    json_free(&j);
    return rc;
}
