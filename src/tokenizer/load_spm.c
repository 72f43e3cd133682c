// load_spm.c: reads a SentencePiece tokenizer.model (a serialized ModelProto) without the
// SentencePiece library, into the same arrays as tokenizer.json gives.
//
// SentencePiece BPE has no merge list: two adjacent symbols merge when their concatenation is a
// piece, highest score first, leftmost first among equal scores. So the merges are derived here:
// every split of every piece into two pieces is a pair, ranked by the merged piece's score (equal
// scores share a rank, and the encoder takes equal ranks leftmost first). User-defined and control
// pieces become added tokens matched in the raw text, as tokenizer.json has them, so both files
// encode alike. Only Gemma's settings are accepted (BPE, byte fallback, identity normalizer, no
// dummy prefix, whitespace kept); anything else is refused with a message naming it.
// Gemma 3's image placeholder <image_soft_token> (id 262144) lives only in tokenizer.json, one
// past the SentencePiece vocabulary; it is appended here so that both files give the same ids.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "tok_internal.h"


typedef struct {
    const uint8_t *p, *end;
} Pb;

static int pb_varint(Pb *b, uint64_t *v) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end) return g3_errorf("truncated varint");
        uint8_t c = *b->p++;
        r |= (uint64_t)(c & 0x7F) << shift;
        if (c < 0x80) { *v = r; return 0; }
    }
    return g3_errorf("varint longer than 10 bytes");
}

// Reads one field header and its value: varints into *v, length-delimited into *sub, fixed32
// into *v (raw bits); fixed64 is skipped.
static int pb_field(Pb *b, uint32_t *field, int *wire, uint64_t *v, Pb *sub) {
    uint64_t key;
    if (pb_varint(b, &key)) return -1;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    switch (*wire) {
    case 0: return pb_varint(b, v);
    case 1:
        if (b->end - b->p < 8) return g3_errorf("truncated fixed64");
        b->p += 8;
        return 0;
    case 2:
        if (pb_varint(b, v)) return -1;
        if (*v > (uint64_t)(b->end - b->p)) return g3_errorf("field %u: length %llu runs past the end", *field, (unsigned long long)*v);
        sub->p = b->p;
        sub->end = b->p + *v;
        b->p += *v;
        return 0;
    case 5:
        if (b->end - b->p < 4) return g3_errorf("truncated fixed32");
        *v = (uint64_t)b->p[0] | (uint64_t)b->p[1] << 8 | (uint64_t)b->p[2] << 16 | (uint64_t)b->p[3] << 24;
        b->p += 4;
        return 0;
    default: return g3_errorf("field %u: unsupported wire type %d", *field, *wire);
    }
}


static int parse_piece(Pb b, TokSpmPiece *out) {
    *out = (TokSpmPiece){(const uint8_t *)"", 0, 0.0f, SPM_NORMAL};
    while (b.p < b.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        Pb sub = {0};
        if (pb_field(&b, &f, &w, &v, &sub)) return -1;
        if (f == 1 && w == 2) out->s = sub.p, out->n = (uint32_t)(sub.end - sub.p);
        else if (f == 2 && w == 5) { uint32_t bits = (uint32_t)v; memcpy(&out->score, &bits, 4); }
        else if (f == 3 && w == 0) {
            if (v < SPM_NORMAL || v > SPM_BYTE) return g3_errorf("unknown type %llu", (unsigned long long)v);
            out->type = (int)v;
        }
    }
    // scores rank the merges (a sort): NaN would make the order inconsistent
    if (!isfinite(out->score)) return g3_errorf("score is not a finite number");
    return 0;
}

static int check_trainer(Pb b) {
    uint64_t model_type = 1, byte_fallback = 0;  // proto defaults: UNIGRAM, off
    while (b.p < b.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        Pb sub;
        if (pb_field(&b, &f, &w, &v, &sub)) return -1;
        if (f == 3 && w == 0) model_type = v;
        if (f == 35 && w == 0) byte_fallback = v;
    }
    if (model_type != 2) return g3_errorf("model type %llu is not supported (only BPE, type 2)", (unsigned long long)model_type);
    if (!byte_fallback) return g3_errorf("BPE without byte_fallback is not supported (Gemma has it on)");
    return 0;
}

static int check_normalizer(Pb b) {
    uint64_t dummy = 1, extra_ws = 1, escape_ws = 1;  // proto defaults
    const uint8_t *name = NULL;
    size_t name_n = 0, charsmap_n = 0;
    while (b.p < b.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        Pb sub = {0};
        if (pb_field(&b, &f, &w, &v, &sub)) return -1;
        if (f == 1 && w == 2) name = sub.p, name_n = (size_t)(sub.end - sub.p);
        if (f == 2 && w == 2) charsmap_n = (size_t)(sub.end - sub.p);
        if (f == 3 && w == 0) dummy = v;
        if (f == 4 && w == 0) extra_ws = v;
        if (f == 5 && w == 0) escape_ws = v;
    }
    int identity = name && name_n == 8 && !memcmp(name, "identity", 8);
    if (!identity && charsmap_n) return g3_errorf("normalizer '%.*s' is not supported (only identity)", (int)G3_MIN(name_n, 40), name ? (const char *)name : "");
    if (dummy) return g3_errorf("add_dummy_prefix is not supported (Gemma has it off)");
    if (extra_ws) return g3_errorf("remove_extra_whitespaces is not supported (Gemma has it off)");
    if (!escape_ws) return g3_errorf("escape_whitespaces off is not supported (Gemma turns spaces into U+2581)");
    return 0;
}

// SentencePiece files mark Gemma's turn and image markers USER_DEFINED; Hugging Face's
// tokenizer.json marks them special. Both loaders must agree on what plain text may not produce.
static int gemma_control_name(const uint8_t *s, uint32_t n) {
    static const char *names[] = {"<start_of_turn>", "<end_of_turn>", "<start_of_image>", "<end_of_image>",
                                  "<image_soft_token>"};
    for (size_t i = 0; i < G3_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && !memcmp(names[i], s, n)) return 1;
    return 0;
}

static const float *g_scores;  // qsort has no context argument in C11
static int cmp_score_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (g_scores[x] != g_scores[y]) return g_scores[x] > g_scores[y] ? -1 : 1;
    return x < y ? -1 : x > y;
}

static int mergeable(int type) { return type == SPM_NORMAL || type == SPM_USER_DEFINED; }

static int derive_merges(G3Tokenizer *t, const TokSpmPiece *pc) {
    int32_t n = t->n_vocab;
    float *scores = g3_malloc((size_t)n * sizeof *scores);
    int32_t *order = g3_malloc((size_t)n * sizeof *order);
    int32_t *rank = g3_malloc((size_t)n * sizeof *rank);
    size_t cap = 1024, k = 0;
    TokMerge *m = g3_malloc(cap * sizeof *m);
    int rc = -1;
    if (!scores || !order || !rank || !m) goto out;
    int32_t nm = 0;
    for (int32_t i = 0; i < n; i++) {
        scores[i] = pc[i].score;
        if (mergeable(pc[i].type)) order[nm++] = i;
    }
    g_scores = scores;
    qsort(order, (size_t)nm, sizeof *order, cmp_score_desc);
    for (int32_t i = 0, r = -1; i < nm; i++) {
        if (i == 0 || scores[order[i]] != scores[order[i - 1]]) r++;
        rank[order[i]] = r;
    }
    for (int32_t id = 0; id < n; id++) {
        if (!mergeable(pc[id].type)) continue;
        const uint8_t *s = pc[id].s;
        uint32_t len = pc[id].n;
        for (uint32_t cut = 1; cut < len; cut++) {
            if ((s[cut] & 0xC0) == 0x80) continue;  // split only between characters
            int32_t l = tok_lookup(t, (const char *)s, cut), r = tok_lookup(t, (const char *)s + cut, len - cut);
            if (l < 0 || r < 0 || !mergeable(pc[l].type) || !mergeable(pc[r].type)) continue;
            if (k == cap) {
                cap *= 2;
                TokMerge *nm2 = g3_realloc(m, cap * sizeof *m);
                if (!nm2) goto out;
                m = nm2;
            }
            m[k++] = (TokMerge){l, r, id, rank[id]};
        }
    }
    if (k > INT32_MAX) { g3_errorf("too many merges"); goto out; }
    t->merges = m;
    t->n_merges = (int32_t)k;
    m = NULL;
    rc = 0;
out:
    free(scores);
    free(order);
    free(rank);
    free(m);
    return rc;
}

// Parses a serialized ModelProto into its pieces (pointing into data), checking that it is
// one of Gemma's settings. *out is malloc'd.
int tok_spm_pieces(const uint8_t *data, size_t len, TokSpmPiece **out, int32_t *n_out) {
    Pb b = {data, data + len};
    size_t cap = 1024;
    int32_t n = 0;
    TokSpmPiece *pc = g3_malloc(cap * sizeof *pc);
    if (!pc) return -1;
    int have_trainer = 0, have_norm = 0;
    while (b.p < b.end) {
        uint32_t f;
        int w;
        uint64_t v = 0;
        Pb sub = {0};
        if (pb_field(&b, &f, &w, &v, &sub)) goto fail;
        if (w != 2) continue;
        if (f == 1) {
            if ((size_t)n == cap) {
                if (cap >= (1u << 30)) { g3_errorf("too many pieces"); goto fail; }
                cap *= 2;
                TokSpmPiece *np = g3_realloc(pc, cap * sizeof *pc);
                if (!np) goto fail;
                pc = np;
            }
            if (parse_piece(sub, &pc[n])) { g3_error_prefix("piece %d", n); goto fail; }
            n++;
        } else if (f == 2) {
            if (check_trainer(sub)) { g3_error_prefix("trainer_spec"); goto fail; }
            have_trainer = 1;
        } else if (f == 3) {
            if (check_normalizer(sub)) { g3_error_prefix("normalizer_spec"); goto fail; }
            have_norm = 1;
        }
    }
    if (n == 0) { g3_errorf("no pieces (not a SentencePiece model?)"); goto fail; }
    if (!have_trainer) { g3_errorf("no trainer_spec: cannot tell the model type"); goto fail; }
    if (!have_norm) { g3_errorf("no normalizer_spec (the defaults add a dummy prefix, which Gemma does not)"); goto fail; }
    *out = pc;
    *n_out = n;
    return 0;
fail:
    free(pc);
    return -1;
}

int tok_from_spm_pieces(G3Tokenizer *t, const TokSpmPiece *in, int32_t n) {
    if (n <= 0) return g3_errorf("no pieces");
    for (int32_t i = 0; i < n; i++) {
        if (in[i].type < SPM_NORMAL || in[i].type > SPM_BYTE) return g3_errorf("piece %d: unknown type %d", i, in[i].type);
        if (!isfinite(in[i].score)) return g3_errorf("piece %d: score is not a finite number", i);
    }
    TokSpmPiece *pc = g3_malloc(((size_t)n + 1) * sizeof *pc);
    if (!pc) return -1;
    memcpy(pc, in, (size_t)n * sizeof *pc);
    int rc = -1;

    static const char ist[] = "<image_soft_token>";
    int has_soi = 0, has_ist = 0;
    for (int32_t i = 0; i < n; i++) {
        has_soi |= pc[i].n == 16 && !memcmp(pc[i].s, "<start_of_image>", 16);
        has_ist |= pc[i].n == sizeof ist - 1 && !memcmp(pc[i].s, ist, sizeof ist - 1);
    }
    if (has_soi && !has_ist) pc[n++] = (TokSpmPiece){(const uint8_t *)ist, sizeof ist - 1, 0.0f, SPM_CONTROL};

    TokBlob blob = {0};
    t->n_vocab = n;
    t->off = g3_malloc(((size_t)n + 1) * sizeof *t->off);
    t->flags = g3_malloc((size_t)n);
    if (!t->off || !t->flags) goto out;
    for (int32_t i = 0; i < n; i++) {
        if (tok_blob_add(&blob, (const char *)pc[i].s, pc[i].n, &t->off[i])) { free(blob.blob); goto out; }
        uint8_t fl = 0;
        switch (pc[i].type) {
        case SPM_UNKNOWN:
        case SPM_CONTROL: fl = TOKF_ADDED | TOKF_SPECIAL; break;
        case SPM_USER_DEFINED: fl = TOKF_ADDED | (gemma_control_name(pc[i].s, pc[i].n) ? TOKF_SPECIAL : 0); break;
        case SPM_BYTE: fl = TOKF_BYTE; break;
        }
        t->flags[i] = fl;
    }
    t->off[n] = (uint32_t)blob.len;
    t->blob = blob.blob;
    t->blob_len = blob.len;
    if (tok_index_pieces(t) || derive_merges(t, pc)) goto out;
    rc = 0;
out:
    free(pc);
    return rc;
}

int tok_load_spm_mem(G3Tokenizer *t, const uint8_t *data, size_t len) {
    TokSpmPiece *pc;
    int32_t n;
    if (tok_spm_pieces(data, len, &pc, &n)) return -1;
    int rc = tok_from_spm_pieces(t, pc, n);
    free(pc);
    return rc;
}
