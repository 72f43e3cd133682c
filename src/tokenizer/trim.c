// trim.c: a corpus-specific subset of a BPE tokenizer (see trim.h for what is kept and why the
// kept pieces encode as before).
#include "trim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "base/json.h"
#include "tok_internal.h"

// Always kept, whatever the corpus: the ids a model and the chat format need.
static const char *const k_always[] = {"<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"};

int g3_tok_trim_count(const G3Tokenizer *tok, const char *text, size_t len, int nthreads, int64_t *counts) {
    int32_t *ids = NULL;
    int n = g3_tok_encode_parallel(tok, text, len, 0, 0, nthreads, &ids);
    if (n < 0) return -1;
    for (int i = 0; i < n; i++) counts[ids[i]]++;
    free(ids);
    return 0;
}

// BPE on the piece's own text, exactly as encode.c merges a word (lowest rank first, leftmost on
// ties), recording every piece formed. The piece's characters (or their bytes) come first.
int g3_tok_trim_closure(const G3Tokenizer *t, int id, int32_t *out, int cap) {
    const uint8_t *w = (const uint8_t *)tok_piece_ptr(t, id);
    uint32_t n = tok_piece_len(t, id);
    int nout = 0;
#define EMIT(x)                                \
    do {                                       \
        if (nout == cap) goto full;            \
        out[nout++] = (x);                     \
    } while (0)
    if (t->flags[id] & TOKF_BYTE) {  // byte fallback: no merges
        EMIT(id);
        return nout;
    }
    int32_t *sym = g3_malloc(((size_t)n * 4 + 1) * sizeof *sym);
    if (!sym) return -1;
    int ns = 0;
    for (uint32_t i = 0; i < n;) {
        int len = w[i] < 0x80 ? 1 : tok_utf8_len(w + i, n - i);
        int32_t pid = len > 0 ? tok_lookup(t, (const char *)w + i, (size_t)len) : -1;
        if (len <= 0) len = 1;
        if (pid >= 0) sym[ns++] = pid;
        else
            for (int k = 0; k < len; k++) sym[ns++] = t->byte_id[w[i + k]] >= 0 ? t->byte_id[w[i + k]] : t->unk_id;
        i += (uint32_t)len;
    }
    for (int i = 0; i < ns; i++) {
        int dup = 0;
        for (int j = 0; j < nout; j++) dup |= out[j] == sym[i];
        if (!dup) {
            if (nout == cap) { free(sym); goto full; }
            out[nout++] = sym[i];
        }
    }
    for (;;) {
        int best = -1;
        int32_t best_rank = 0, best_res = 0;
        for (int i = 0; i + 1 < ns; i++) {
            const TokMerge *m = tok_find_merge(t, sym[i], sym[i + 1]);
            if (m && (best < 0 || m->rank < best_rank)) best = i, best_rank = m->rank, best_res = m->result;
        }
        if (best < 0) break;
        sym[best] = best_res;
        memmove(sym + best + 1, sym + best + 2, (size_t)(ns - best - 2) * sizeof *sym);
        ns--;
        int dup = 0;
        for (int j = 0; j < nout; j++) dup |= out[j] == best_res;
        if (!dup) {
            if (nout == cap) { free(sym); goto full; }
            out[nout++] = best_res;
        }
    }
    // A piece BPE does not reach from its own text (an added token such as <start_of_turn>,
    // only ever matched in the raw text) needs nothing but itself. Added tokens that BPE does
    // reach (Gemma's runs of `▁`, which never match raw spaces) need their way like any piece.
    int reached = ns == 1 && sym[0] == id;
    free(sym);
    if (!reached) {
        out[0] = id;
        return 1;
    }
    return nout;
full:
    return g3_errorf("piece %d: more than %d pieces on its way", id, cap);
#undef EMIT
}

typedef struct {
    int64_t count;
    int32_t id;
} Cand;

static int cand_cmp(const void *a, const void *b) {
    const Cand *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int g3_tok_trim_select(const G3Tokenizer *t, const int64_t *counts, int vocab, uint8_t *keep) {
    int V = t->n_vocab, nkept = 0;
    memset(keep, 0, (size_t)V);
    for (size_t i = 0; i < sizeof k_always / sizeof k_always[0]; i++) {
        int id = g3_tok_id_of(t, k_always[i]);
        if (id >= 0 && !keep[id]) keep[id] = 1, nkept++;
    }
    for (int b = 0; b < 256; b++)
        if (t->byte_id[b] >= 0 && !keep[t->byte_id[b]]) keep[t->byte_id[b]] = 1, nkept++;
    if (nkept > vocab)
        return g3_errorf("--vocab %d is smaller than the %d pieces always kept (control, chat and byte pieces)", vocab, nkept);

    Cand *c = g3_malloc((size_t)V * sizeof *c);
    int32_t *way = g3_malloc(4096 * sizeof *way);
    if (!c || !way) { free(c); free(way); return -1; }
    int nc = 0;
    for (int i = 0; i < V; i++)
        if (counts[i] > 0 && !keep[i] && !(t->flags[i] & (TOKF_UNUSED | TOKF_SPECIAL))) c[nc++] = (Cand){counts[i], i};
    qsort(c, (size_t)nc, sizeof *c, cand_cmp);
    for (int i = 0; i < nc && nkept < vocab; i++) {
        if (keep[c[i].id]) continue;
        int nw = g3_tok_trim_closure(t, c[i].id, way, 4096);
        if (nw < 0) continue;  // an absurdly long way: leave the piece out
        int add = 0;
        for (int k = 0; k < nw; k++) add += !keep[way[k]];
        if (nkept + add > vocab) continue;  // a smaller one may still fit
        for (int k = 0; k < nw; k++) keep[way[k]] = 1;
        nkept += add;
    }
    free(c);
    free(way);
    return nkept;
}

// ---- writing tokenizer.json ----

// Writes a parsed JSON value back as JSON (numbers as their source text).
static void write_node(FILE *f, const JsonNode *n) {
    switch (n->type) {
    case JSON_NULL: fputs("null", f); break;
    case JSON_TRUE: fputs("true", f); break;
    case JSON_FALSE: fputs("false", f); break;
    case JSON_NUMBER: fputs(n->str, f); break;
    case JSON_STRING: json_write_str(f, n->str, n->str_len); break;
    case JSON_ARRAY:
    case JSON_OBJECT: {
        fputc(n->type == JSON_ARRAY ? '[' : '{', f);
        int first = 1;
        for (const JsonNode *c = json_first(n); c; c = json_next(n, c)) {
            if (!first) fputc(',', f);
            first = 0;
            if (n->type == JSON_OBJECT) {
                json_write_str(f, c->key, c->key_len);
                fputc(':', f);
            }
            write_node(f, c);
        }
        fputc(n->type == JSON_ARRAY ? ']' : '}', f);
        break;
    }
    }
}

int g3_tok_trim_write_json(const char *src_json, const G3Tokenizer *t, const uint8_t *keep, const char *out_path) {
    int V = t->n_vocab;
    // Ids are the rows of the model's embedding; the post-processor names <bos> by id, so the
    // first four must stay where they were.
    int32_t *newid = g3_malloc((size_t)V * sizeof *newid);
    if (!newid) return -1;
    int32_t nn = 0;
    for (int i = 0; i < V; i++) newid[i] = keep[i] ? nn++ : -1;
    for (int i = 0; i < 4 && i < V; i++)
        if (newid[i] != i) { free(newid); return g3_errorf("%s: id %d (%s) would move", src_json, i, tok_piece_ptr(t, i)); }

    Json j;
    if (json_parse_file(&j, src_json)) { free(newid); return g3_error_prefix("%s", src_json); }
    const JsonNode *root = json_root(&j);
    char *buf = NULL;
    size_t blen = 0;
    FILE *f = open_memstream(&buf, &blen);
    if (!f) { json_free(&j); free(newid); return g3_errorf("out of memory"); }

    fputs("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[", f);
    const JsonNode *added = json_get(root, "added_tokens");
    int first = 1;
    if (added) JSON_FOREACH(a, added) {
        int64_t id = json_int(json_get(a, "id"));
        if (id < 0 || id >= V || !keep[id]) continue;
        fputs(first ? "\n" : ",\n", f);
        first = 0;
        fputc('{', f);
        int fm = 1;
        JSON_FOREACH(m, a) {
            if (!fm) fputc(',', f);
            fm = 0;
            json_write_str(f, m->key, m->key_len);
            fputc(':', f);
            if (!strcmp(m->key, "id")) fprintf(f, "%d", newid[id]);
            else write_node(f, m);
        }
        fputc('}', f);
    }
    fputs("]", f);
    static const char *const copied[] = {"normalizer", "pre_tokenizer", "post_processor", "decoder"};
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        fprintf(f, ",\n\"%s\":", copied[i]);
        const JsonNode *n = json_get(root, copied[i]);
        if (n) write_node(f, n);
        else fputs("null", f);
    }
    fputs(",\n\"model\":{", f);
    const JsonNode *model = json_get(root, "model");
    JSON_FOREACH(m, model) {
        if (!strcmp(m->key, "vocab") || !strcmp(m->key, "merges")) continue;
        json_write_str(f, m->key, m->key_len);
        fputc(':', f);
        write_node(f, m);
        fputc(',', f);
    }
    fputs("\n\"vocab\":{", f);
    for (int i = 0, w = 0; i < V; i++) {
        if (!keep[i]) continue;
        fputs(w++ ? ",\n" : "\n", f);
        json_write_str(f, tok_piece_ptr(t, i), tok_piece_len(t, i));
        fprintf(f, ":%d", newid[i]);
    }
    fputs("},\n\"merges\":[", f);
    int nm = 0;
    for (int32_t k = 0; k < t->n_merges; k++) {
        const TokMerge *m = &t->merges[k];
        if (!keep[m->left] || !keep[m->right] || !keep[m->result]) continue;
        if (tok_find_merge(t, m->left, m->right)->rank != m->rank) continue;  // a repeated pair: its first rank rules
        fputs(nm++ ? ",\n[" : "\n[", f);
        json_write_str(f, tok_piece_ptr(t, m->left), tok_piece_len(t, m->left));
        fputc(',', f);
        json_write_str(f, tok_piece_ptr(t, m->right), tok_piece_len(t, m->right));
        fputc(']', f);
    }
    fputs("]}}\n", f);
    int err = ferror(f);
    fclose(f);
    json_free(&j);
    free(newid);
    int rc = err ? g3_errorf("out of memory writing %s", out_path) : g3_write_file_atomic(out_path, buf, blen);
    free(buf);
    return rc;
}
