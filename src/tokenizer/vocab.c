// vocab.c: the lookup structures derived from a tokenizer's pieces and merges (see
// tok_internal.h): piece -> id hash table, (left, right) -> merge hash table, a byte trie of the
// added tokens, and the small tables the encoder's inner loop reads. Also the vocabulary queries
// of the public API.
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok_internal.h"

// FNV-1a, folded to 32 bits; never returns 0 (0 marks an empty slot).
uint32_t tok_hash(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    uint32_t r = (uint32_t)(h ^ (h >> 32));
    return r ? r : 1;
}

int tok_utf8_len(const uint8_t *s, size_t n) {
    uint8_t c = s[0];
    if (c < 0x80) return 1;
    int len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (no overlongs, no surrogates)
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if ((size_t)len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int i = 2; i < len; i++) if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

int tok_blob_add(TokBlob *b, const char *s, size_t n, uint32_t *off_out) {
    if (b->len + n + 1 > UINT32_MAX) return g3_errorf("vocabulary text over 4 GiB");
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1 << 20;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = g3_realloc(b->blob, cap);
        if (!nb) return -1;
        b->blob = nb;
        b->cap = cap;
    }
    *off_out = (uint32_t)b->len;
    if (n) memcpy(b->blob + b->len, s, n);
    b->blob[b->len + n] = 0;
    b->len += n + 1;
    return 0;
}

static uint32_t pow2_at_least(uint64_t n) {
    uint64_t c = 16;
    while (c < n) c <<= 1;
    return (uint32_t)c;
}

int32_t tok_lookup(const G3Tokenizer *t, const char *s, size_t n) {
    uint32_t h = tok_hash(s, n);
    for (uint32_t i = h & t->piece_mask;; i = (i + 1) & t->piece_mask) {
        const TokPieceSlot *e = &t->piece_tab[i];
        if (!e->hash) return -1;
        if (e->hash == h && tok_piece_len(t, e->id) == n && !memcmp(tok_piece_ptr(t, e->id), s, n)) return e->id;
    }
}

int tok_index_pieces(G3Tokenizer *t) {
    // Pieces are UTF-8 strings in both formats; holding every source to that means decoded text
    // is always valid UTF-8 (bytes come only from <0xNN> pieces, which the decoder checks).
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const uint8_t *s = (const uint8_t *)tok_piece_ptr(t, id);
        for (uint32_t i = 0, n = tok_piece_len(t, id); i < n;) {
            int l = tok_utf8_len(s + i, n - i);
            if (!l) return g3_errorf("piece %d is not valid UTF-8", id);
            i += (uint32_t)l;
        }
    }
    uint32_t cap = pow2_at_least((uint64_t)t->n_vocab * 2 + 1);
    free(t->piece_tab);
    t->piece_tab = g3_calloc(cap, sizeof *t->piece_tab);
    if (!t->piece_tab) return -1;
    t->piece_mask = cap - 1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->flags[id] & TOKF_UNUSED) continue;
        const char *s = tok_piece_ptr(t, id);
        uint32_t n = tok_piece_len(t, id);
        if (tok_lookup(t, s, n) >= 0) continue;  // a duplicate keeps the first (lowest) id
        uint32_t h = tok_hash(s, n), i = h & t->piece_mask;
        while (t->piece_tab[i].hash) i = (i + 1) & t->piece_mask;
        t->piece_tab[i] = (TokPieceSlot){h, id};
    }
    return 0;
}

static uint32_t pair_hash(int32_t l, int32_t r) {
    uint64_t k = ((uint64_t)(uint32_t)l << 32 | (uint32_t)r) * 0x9E3779B97F4A7C15ull;
    return (uint32_t)(k >> 32);
}

const TokMerge *tok_find_merge(const G3Tokenizer *t, int32_t left, int32_t right) {
    for (uint32_t i = pair_hash(left, right) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const TokMerge *m = &t->merge_tab[i];
        if (m->left < 0) return NULL;
        if (m->left == left && m->right == right) return m;
    }
}

static int build_merge_table(G3Tokenizer *t) {
    uint32_t cap = pow2_at_least((uint64_t)t->n_merges * 2 + 1);
    t->merge_tab = g3_malloc((size_t)cap * sizeof *t->merge_tab);
    if (!t->merge_tab) return -1;
    for (uint32_t i = 0; i < cap; i++) t->merge_tab[i].left = -1;
    t->merge_mask = cap - 1;
    for (int32_t k = 0; k < t->n_merges; k++) {
        const TokMerge *m = &t->merges[k];
        if (m->left < 0 || m->right < 0 || m->result < 0 || m->left >= t->n_vocab || m->right >= t->n_vocab ||
            m->result >= t->n_vocab || m->rank < 0)
            return g3_errorf("merge %d refers to a piece outside the vocabulary", k);
        if (tok_find_merge(t, m->left, m->right)) continue;  // a repeated pair keeps its first rank, as HF does
        uint32_t i = pair_hash(m->left, m->right) & t->merge_mask;
        while (t->merge_tab[i].left >= 0) i = (i + 1) & t->merge_mask;
        t->merge_tab[i] = *m;
    }
    return 0;
}

static int trie_child(G3Tokenizer *t, int32_t node, uint8_t b, int create, size_t *cap) {
    for (int32_t c = t->trie[node].child; c >= 0; c = t->trie[c].sibling)
        if (t->trie[c].byte == b) return c;
    if (!create) return -1;
    if ((size_t)t->n_trie == *cap) {
        *cap *= 2;
        TokTrieNode *nt = g3_realloc(t->trie, *cap * sizeof *nt);
        if (!nt) return -2;
        t->trie = nt;
    }
    int32_t c = t->n_trie++;
    t->trie[c] = (TokTrieNode){-1, t->trie[node].child, -1, b};
    t->trie[node].child = c;
    return c;
}

static int build_trie(G3Tokenizer *t) {
    size_t cap = 1024;
    t->trie = g3_malloc(cap * sizeof *t->trie);
    if (!t->trie) return -1;
    t->trie[0] = (TokTrieNode){-1, -1, -1, 0};
    t->n_trie = 1;
    memset(t->added_first, 0, sizeof t->added_first);
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (!(t->flags[id] & TOKF_ADDED) || (t->flags[id] & TOKF_UNUSED)) continue;
        const uint8_t *s = (const uint8_t *)tok_piece_ptr(t, id);
        uint32_t n = tok_piece_len(t, id);
        if (n == 0) continue;
        if (memchr(s, ' ', n)) t->added_has_space = 1;
        t->added_first[s[0]] = 1;
        int32_t node = 0;
        for (uint32_t i = 0; i < n; i++) {
            node = trie_child(t, node, s[i], 1, &cap);
            if (node < 0) return -1;
        }
        if (t->trie[node].id < 0) t->trie[node].id = id;
    }
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint32_t decode_cp(const uint8_t *s, int len) {
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) cp = cp << 6 | (s[i] & 0x3F);
    return cp;
}

// The glue set: code points c such that some piece contains c immediately followed by `▁`.
// Every merge result is a piece, so a boundary between a non-`▁` character outside this set
// and a following `▁` is never crossed by any merge: the text can be cut there and each part
// merged on its own, which is what makes word caching (and parallel encoding) exact.
static int build_glue(G3Tokenizer *t) {
    size_t cap = 16;
    t->n_glue = 0;
    t->glue = g3_malloc(cap * sizeof *t->glue);
    if (!t->glue) return -1;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->flags[id] & TOKF_UNUSED) continue;
        const uint8_t *s = (const uint8_t *)tok_piece_ptr(t, id);
        uint32_t n = tok_piece_len(t, id), i = 0;
        uint32_t prev = 0x2581;
        while (i < n) {
            int l = tok_utf8_len(s + i, n - i);
            uint32_t cp = l ? decode_cp(s + i, l) : 0xDC00u + s[i];  // raw bytes get a private code
            if (cp == 0x2581 && prev != 0x2581) {
                if ((size_t)t->n_glue == cap) {
                    cap *= 2;
                    uint32_t *ng = g3_realloc(t->glue, cap * sizeof *ng);
                    if (!ng) return -1;
                    t->glue = ng;
                }
                t->glue[t->n_glue++] = prev;
            }
            prev = cp;
            i += l ? (uint32_t)l : 1;
        }
    }
    qsort(t->glue, (size_t)t->n_glue, sizeof *t->glue, cmp_u32);
    int32_t k = 0;
    for (int32_t i = 0; i < t->n_glue; i++)
        if (k == 0 || t->glue[k - 1] != t->glue[i]) t->glue[k++] = t->glue[i];
    t->n_glue = k;
    return 0;
}

static int32_t id_of(const G3Tokenizer *t, const char *s) { return tok_lookup(t, s, strlen(s)); }

int tok_index_rest(G3Tokenizer *t) {
    if (t->n_vocab <= 0) return g3_errorf("empty vocabulary");
    if (build_merge_table(t) || build_trie(t) || build_glue(t)) return -1;
    for (int c = 0; c < 128; c++) {
        char s[1] = {(char)c};
        t->ascii_id[c] = tok_lookup(t, s, 1);
    }
    for (int b = 0; b < 256; b++) {
        static const char hex[] = "0123456789ABCDEF";
        char s[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        t->byte_id[b] = id_of(t, s);
    }
    t->space_id = id_of(t, "\xE2\x96\x81");
    t->unk_id = id_of(t, "<unk>");
    t->bos_id = id_of(t, "<bos>");
    t->eos_id = id_of(t, "<eos>");
    t->pad_id = id_of(t, "<pad>");
    t->sot_id = id_of(t, "<start_of_turn>");
    t->eot_id = id_of(t, "<end_of_turn>");
    // Any character must be spellable: byte fallback needs every <0xNN>, else <unk> stands in.
    if (t->unk_id < 0)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0) return g3_errorf("byte fallback: no piece <0x%02X> and no <unk>", b);
    return 0;
}

void tok_free_contents(G3Tokenizer *t) {
    free(t->blob);
    free(t->off);
    free(t->flags);
    free(t->merges);
    free(t->piece_tab);
    free(t->merge_tab);
    free(t->trie);
    free(t->glue);
    memset(t, 0, sizeof *t);
}

// ---- public queries ----

int g3_tok_vocab_size(const G3Tokenizer *t) { return t->n_vocab; }

const char *g3_tok_piece(const G3Tokenizer *t, int id) {
    if (id < 0 || id >= t->n_vocab || (t->flags[id] & TOKF_UNUSED)) return NULL;
    return tok_piece_ptr(t, id);
}

int g3_tok_id_of(const G3Tokenizer *t, const char *piece) { return piece ? tok_lookup(t, piece, strlen(piece)) : -1; }
int g3_tok_bos(const G3Tokenizer *t) { return t->bos_id; }
int g3_tok_eos(const G3Tokenizer *t) { return t->eos_id; }
int g3_tok_pad(const G3Tokenizer *t) { return t->pad_id; }
int g3_tok_start_of_turn(const G3Tokenizer *t) { return t->sot_id; }
int g3_tok_end_of_turn(const G3Tokenizer *t) { return t->eot_id; }

int g3_tok_is_special(const G3Tokenizer *t, int id) {
    return id >= 0 && id < t->n_vocab && (t->flags[id] & TOKF_SPECIAL);
}

int g3_tok_is_stop(const G3Tokenizer *t, int id) { return id >= 0 && (id == t->eos_id || id == t->eot_id); }
