// encode.c: text -> ids, as Hugging Face `tokenizers` does for Gemma:
//   1. added tokens are found in the raw text, leftmost and longest first (a byte trie);
//   2. between them, spaces become `▁` and BPE merges the characters by rank, characters outside
//      the vocabulary falling back to their UTF-8 bytes (<0xNN>).
// BPE runs on words — the text is cut before each `▁` that follows a character no piece ever
// joins to a `▁` (the glue set, see vocab.c) — so each word merges on its own and repeated words
// come from a cache. A word's merges use a min-heap of candidate pairs over a linked list of
// symbols: O(n log n) in the word's length, so one long unbroken input costs no more per byte
// than prose. Stale heap entries are skipped by checking both symbols' ids, as HF does.
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "base/base.h"
#include "tok_internal.h"

enum {
    WORD_CACHE_MAX_LEN = 64,        // longer words are merged every time
    WORD_CACHE_MAX_SLOTS = 1 << 20, // past half of this, the cache starts over
};

typedef struct {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;
} Sym;

// A candidate merge, (rank << 32 | pos): comparing keys as integers orders by lowest rank, then
// leftmost. Entries go stale as their symbols merge; a popped key is checked against the pair
// now at pos (see bpe_word). 8-byte keys in a 4-ary heap keep a long word's heap cache-friendly.
typedef uint64_t Cand;

typedef struct {
    uint32_t hash;  // 0 = empty
    uint32_t key_len;
    size_t key_off, ids_off;
    uint32_t n_ids;
} WordSlot;

struct G3TokEncoder {
    const G3Tokenizer *tok;
    int32_t *out;  // the ids of the current call
    size_t n_out, cap_out;
    Sym *sym;
    size_t cap_sym;
    Cand *heap;
    size_t n_heap, cap_heap;
    WordSlot *wtab;  // cache of merged words: raw bytes -> ids
    uint32_t wmask, wcount;
    char *wkeys;
    size_t n_wkeys, cap_wkeys;
    int32_t *wids;
    size_t n_wids, cap_wids;
};

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *np = g3_realloc(*p, c * elem);
    if (!np) return -1;
    *p = np;
    *cap = c;
    return 0;
}

static int emit(G3TokEncoder *e, int32_t id) {
    if (e->n_out == e->cap_out && grow((void **)&e->out, &e->cap_out, e->n_out + 1, sizeof *e->out)) return -1;
    e->out[e->n_out++] = id;
    return 0;
}

G3TokEncoder *g3_tok_encoder_new(const G3Tokenizer *tok) {
    G3TokEncoder *e = g3_calloc(1, sizeof *e);
    if (!e) return NULL;
    e->tok = tok;
    e->wmask = 1023;
    e->wtab = g3_calloc(e->wmask + 1, sizeof *e->wtab);
    if (!e->wtab) { free(e); return NULL; }
    return e;
}

void g3_tok_encoder_free(G3TokEncoder *e) {
    if (!e) return;
    free(e->out);
    free(e->sym);
    free(e->heap);
    free(e->wtab);
    free(e->wkeys);
    free(e->wids);
    free(e);
}

// ---- BPE on one word ----

static void heap_push(G3TokEncoder *e, Cand c) {
    Cand *h = e->heap;
    size_t i = e->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 4;
        if (h[p] <= c) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static Cand heap_pop(G3TokEncoder *e) {
    Cand *h = e->heap, top = h[0], last = h[--e->n_heap];
    size_t n = e->n_heap, i = 0;
    for (;;) {
        size_t c = 4 * i + 1, m = c;
        if (c >= n) break;
        for (size_t k = c + 1; k < c + 4 && k < n; k++)
            if (h[k] < h[m]) m = k;
        if (last <= h[m]) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = last;
    return top;
}

static void push_pair(G3TokEncoder *e, int32_t pos) {
    Sym *s = e->sym;
    int32_t nx = s[pos].next;
    if (nx < 0) return;
    const TokMerge *m = tok_find_merge(e->tok, s[pos].id, s[nx].id);
    if (m) heap_push(e, (Cand)(uint32_t)m->rank << 32 | (uint32_t)pos);
}

static int32_t byte_token(const G3Tokenizer *t, uint8_t b) { return t->byte_id[b] >= 0 ? t->byte_id[b] : t->unk_id; }

// Merges w[0..n) (raw text: ' ' stands for `▁`) and appends its ids to e->out.
static int bpe_word(G3TokEncoder *e, const uint8_t *w, size_t n) {
    const G3Tokenizer *t = e->tok;
    if (grow((void **)&e->sym, &e->cap_sym, n, sizeof *e->sym)) return -1;
    Sym *s = e->sym;
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = w[i];
        int32_t id = -1;
        int len = 1;
        if (c == ' ') id = t->space_id;
        else if (c < 0x80) id = t->ascii_id[c];
        else if ((len = tok_utf8_len(w + i, n - i)) > 0) id = tok_lookup(t, (const char *)w + i, (size_t)len);
        else len = 1;  // invalid UTF-8: the byte stands alone
        if (id >= 0) {
            s[ns] = (Sym){id, ns - 1, ns + 1};
            ns++;
        } else {  // byte fallback (a space whose `▁` is missing falls back to `▁`'s bytes)
            const uint8_t *bytes = c == ' ' ? (const uint8_t *)"\xE2\x96\x81" : w + i;
            int nb = c == ' ' ? 3 : len;
            if (grow((void **)&e->sym, &e->cap_sym, (size_t)ns + (size_t)nb + (n - i), sizeof *e->sym)) return -1;
            s = e->sym;
            for (int k = 0; k < nb; k++, ns++) s[ns] = (Sym){byte_token(t, bytes[k]), ns - 1, ns + 1};
        }
        i += (size_t)len;
    }
    if (ns == 0) return 0;
    s[ns - 1].next = -1;
    if (ns > 1) {
        if (grow((void **)&e->heap, &e->cap_heap, 3 * (size_t)ns, sizeof *e->heap)) return -1;
        e->n_heap = 0;
        for (int32_t i = 0; i + 1 < ns; i++) push_pair(e, i);
        while (e->n_heap) {
            Cand c = heap_pop(e);
            int32_t pos = (int32_t)(uint32_t)c, rank = (int32_t)(c >> 32);
            Sym *a = &s[pos];
            // Stale unless the pair now at pos merges with this very rank. (If the pair changed
            // but has the same rank, it is a live candidate with this same key, so merging it
            // now is what its own entry would do.)
            if (a->id < 0 || a->next < 0) continue;
            const TokMerge *m = tok_find_merge(t, a->id, s[a->next].id);
            if (!m || m->rank != rank) continue;
            int32_t gone = a->next;
            a->id = m->result;
            a->next = s[gone].next;
            if (a->next >= 0) s[a->next].prev = pos;
            s[gone].id = -1;
            if (a->prev >= 0) push_pair(e, a->prev);
            push_pair(e, pos);
        }
    }
    if (grow((void **)&e->out, &e->cap_out, e->n_out + (size_t)ns, sizeof *e->out)) return -1;
    for (int32_t i = 0; i >= 0; i = s[i].next) e->out[e->n_out++] = s[i].id;
    return 0;
}

// ---- the word cache ----

static void cache_clear(G3TokEncoder *e) {
    memset(e->wtab, 0, ((size_t)e->wmask + 1) * sizeof *e->wtab);
    e->wcount = 0;
    e->n_wkeys = e->n_wids = 0;
}

static int cache_grow(G3TokEncoder *e) {
    uint32_t cap = (e->wmask + 1) * 2;
    WordSlot *nt = g3_calloc(cap, sizeof *nt);
    if (!nt) return -1;
    for (uint32_t i = 0; i <= e->wmask; i++) {
        if (!e->wtab[i].hash) continue;
        uint32_t j = e->wtab[i].hash & (cap - 1);
        while (nt[j].hash) j = (j + 1) & (cap - 1);
        nt[j] = e->wtab[i];
    }
    free(e->wtab);
    e->wtab = nt;
    e->wmask = cap - 1;
    return 0;
}

static int encode_word(G3TokEncoder *e, const uint8_t *w, size_t n) {
    if (n > WORD_CACHE_MAX_LEN) return bpe_word(e, w, n);
    uint32_t h = tok_hash(w, n), i = h & e->wmask;
    for (; e->wtab[i].hash; i = (i + 1) & e->wmask) {
        WordSlot *ws = &e->wtab[i];
        if (ws->hash == h && ws->key_len == n && !memcmp(e->wkeys + ws->key_off, w, n)) {
            if (grow((void **)&e->out, &e->cap_out, e->n_out + ws->n_ids, sizeof *e->out)) return -1;
            memcpy(e->out + e->n_out, e->wids + ws->ids_off, ws->n_ids * sizeof *e->out);
            e->n_out += ws->n_ids;
            return 0;
        }
    }
    size_t first = e->n_out;
    if (bpe_word(e, w, n)) return -1;
    size_t k = e->n_out - first;
    if (e->wcount + 1 > (e->wmask + 1) / 2) {
        if (e->wmask + 1 >= WORD_CACHE_MAX_SLOTS) cache_clear(e);
        else if (cache_grow(e)) return -1;
        for (i = h & e->wmask; e->wtab[i].hash;) i = (i + 1) & e->wmask;
    }
    if (grow((void **)&e->wkeys, &e->cap_wkeys, e->n_wkeys + n, 1) ||
        grow((void **)&e->wids, &e->cap_wids, e->n_wids + k, sizeof *e->wids))
        return -1;
    memcpy(e->wkeys + e->n_wkeys, w, n);
    if (k) memcpy(e->wids + e->n_wids, e->out + first, k * sizeof *e->wids);
    e->wtab[i] = (WordSlot){h, (uint32_t)n, e->n_wkeys, e->n_wids, (uint32_t)k};
    e->n_wkeys += n;
    e->n_wids += k;
    e->wcount++;
    return 0;
}

// ---- segments and words ----

static int in_glue(const G3Tokenizer *t, uint32_t cp) {
    int32_t lo = 0, hi = t->n_glue;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (t->glue[mid] == cp) return 1;
        if (t->glue[mid] < cp) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int is_ws_at(const uint8_t *s, size_t i, size_t n, int *len) {
    if (s[i] == ' ') { *len = 1; return 1; }
    if (s[i] == 0xE2 && i + 2 < n && s[i + 1] == 0x96 && s[i + 2] == 0x81) { *len = 3; return 1; }
    return 0;
}

// Text between added tokens: cut into words before each `▁` that follows a non-glue character.
static int encode_segment(G3TokEncoder *e, const uint8_t *s, size_t n) {
    const G3Tokenizer *t = e->tok;
    size_t word = 0, i = 0;
    int prev_ws = 1;  // nothing to cut before the first character
    uint32_t prev_cp = 0;
    while (i < n) {
        int len;
        if (is_ws_at(s, i, n, &len)) {
            if (!prev_ws && !in_glue(t, prev_cp)) {
                if (encode_word(e, s + word, i - word)) return -1;
                word = i;
            }
            prev_ws = 1;
        } else {
            uint8_t c = s[i];
            if (c < 0x80) { len = 1; prev_cp = c; }
            else if ((len = tok_utf8_len(s + i, n - i)) > 0) {
                prev_cp = c & (0x7F >> len);
                for (int k = 1; k < len; k++) prev_cp = prev_cp << 6 | (s[i + k] & 0x3F);
            } else { len = 1; prev_cp = 0xDC00u + c; }  // as build_glue names raw bytes
            prev_ws = 0;
        }
        i += (size_t)len;
    }
    return n > word ? encode_word(e, s + word, n - word) : 0;
}

// Longest added token at s[0..n) that may be matched; its id, or -1.
static int32_t match_added(const G3Tokenizer *t, const uint8_t *s, size_t n, int parse_special, size_t *mlen) {
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < n; i++) {
        int32_t c = t->trie[node].child;
        while (c >= 0 && t->trie[c].byte != s[i]) c = t->trie[c].sibling;
        if (c < 0) break;
        node = c;
        int32_t id = t->trie[node].id;
        if (id >= 0 && (parse_special || !(t->flags[id] & TOKF_SPECIAL))) best = id, *mlen = i + 1;
    }
    return best;
}

static int encode_into(G3TokEncoder *e, const uint8_t *s, size_t n, int parse_special) {
    const G3Tokenizer *t = e->tok;
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        size_t mlen;
        int32_t id;
        if (t->added_first[s[i]] && (id = match_added(t, s + i, n - i, parse_special, &mlen)) >= 0) {
            if (i > seg && encode_segment(e, s + seg, i - seg)) return -1;
            if (emit(e, id)) return -1;
            i += mlen;
            seg = i;
        } else {
            i++;
        }
    }
    return n > seg ? encode_segment(e, s + seg, n - seg) : 0;
}

int g3_tok_encoder_run(G3TokEncoder *e, const char *text, size_t len, int add_bos, int parse_special, const int32_t **ids) {
    e->n_out = 0;
    if (!text && len) return g3_errorf("encode: NULL text");
    if (add_bos && e->tok->bos_id >= 0 && emit(e, e->tok->bos_id)) return -1;
    if (len && encode_into(e, (const uint8_t *)text, len, parse_special)) return -1;
    if (e->n_out > INT32_MAX) return g3_errorf("encode: more than 2^31 tokens");
    *ids = e->out;
    return (int)e->n_out;
}

int g3_tok_encode(const G3Tokenizer *t, const char *text, size_t len, int add_bos, int parse_special, int32_t **ids_out) {
    G3TokEncoder *e = g3_tok_encoder_new(t);
    if (!e) return -1;
    const int32_t *ids;
    int n = g3_tok_encoder_run(e, text, len, add_bos, parse_special, &ids);
    if (n >= 0) {
        *ids_out = g3_malloc(((size_t)n + 1) * sizeof **ids_out);
        if (!*ids_out) n = -1;
        else if (n) memcpy(*ids_out, ids, (size_t)n * sizeof **ids_out);
    }
    g3_tok_encoder_free(e);
    return n;
}

// A place to cut the text for parallel encoding: an ASCII space right after an ASCII non-space
// character outside the glue set. No added token holds a space (checked at load), so no match
// spans it, and it is a word boundary, so both halves encode exactly as the whole would.
static size_t cut_after(const G3Tokenizer *t, const uint8_t *s, size_t n, size_t from) {
    for (size_t i = from; i < n; i++)
        if (i > 0 && s[i] == ' ' && s[i - 1] < 0x80 && s[i - 1] != ' ' && !in_glue(t, s[i - 1])) return i;
    return n;
}

int g3_tok_encode_parallel(const G3Tokenizer *t, const char *text, size_t len, int add_bos, int parse_special,
                           int nthreads, int32_t **ids_out) {
    if (nthreads <= 0) nthreads = omp_get_max_threads();
    if (nthreads > 256) nthreads = 256;
    if (nthreads == 1 || len < (size_t)nthreads * 65536 || t->added_has_space)
        return g3_tok_encode(t, text, len, add_bos, parse_special, ids_out);
    const uint8_t *s = (const uint8_t *)text;
    size_t cut[257];
    cut[0] = 0;
    for (int k = 1; k < nthreads; k++) cut[k] = cut_after(t, s, len, G3_MAX(cut[k - 1], len / (size_t)nthreads * (size_t)k));
    cut[nthreads] = len;
    int32_t *part[256] = {0};
    int count[256], failed = 0;
    #pragma omp parallel for num_threads(nthreads) schedule(static, 1)
    for (int k = 0; k < nthreads; k++) {
        count[k] = g3_tok_encode(t, text + cut[k], cut[k + 1] - cut[k], add_bos && k == 0, parse_special, &part[k]);
        if (count[k] < 0) {
            #pragma omp atomic write
            failed = 1;
        }
    }
    size_t total = 0;
    for (int k = 0; k < nthreads; k++) total += count[k] > 0 ? (size_t)count[k] : 0;
    int32_t *ids = failed || total > INT32_MAX ? NULL : g3_malloc((total + 1) * sizeof *ids);
    if (ids) {
        size_t at = 0;
        for (int k = 0; k < nthreads; k++) {
            if (count[k]) memcpy(ids + at, part[k], (size_t)count[k] * sizeof *ids);
            at += (size_t)count[k];
        }
    }
    for (int k = 0; k < nthreads; k++) free(part[k]);
    if (!ids) return failed ? g3_errorf("encode: a thread failed (out of memory?)") : g3_errorf("encode: too many tokens");
    *ids_out = ids;
    return (int)total;
}
