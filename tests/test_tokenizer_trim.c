// test_tokenizer_trim.c: `gemma3 tokenizer trim` (src/tokenizer/trim.c). Gemma 3's tokenizer is
// trimmed to 1,024 pieces for a sample of the books corpus, then:
//   - every text of the tokenizer reference vectors and every line and word of the corpus sample comes
//     back byte for byte from the trimmed tokenizer (as it does from the full one);
//   - wherever the full tokenizer's encoding uses only kept pieces, the trimmed one gives the
//     same pieces; and every kept piece's own text (as stored, and with spaces for its `▁`)
//     encodes to that piece in both (Gemma's runs of `▁` are formed by BPE from raw spaces);
//   - the closure: every kept piece's merges pass only through kept pieces;
//   - the command writes a tokenizer.json and tokenizer_config.json, reports a lossless round
//     trip, and refuses a --vocab below the pieces always kept and a tokenizer that is not JSON.
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "check.h"
#include "tok_testdata.h"
#include "tokenizer/tok_internal.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trim.h"

#define SAMPLE "tests/data/books_sample.txt"
enum { VOCAB = 1024 };

typedef struct {
    char *text;
    size_t len;
} Text;

// The texts: the reference vectors' and the sample's lines.
static int load_texts(Text **out) {
    int n = 0, cap = 1024;
    Text *t = malloc((size_t)cap * sizeof *t);
    size_t len;
    char *data = g3_read_file(TOK_DATA "/vectors_public.jsonl", &len);
    for (char *line = data, *nl; data && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        Json j;
        if (nl > line && json_parse(&j, line, (size_t)(nl - line)) == 0) {
            const JsonNode *s = json_get(json_root(&j), "text");
            if (json_is_string(s)) {
                t[n].text = malloc(s->str_len + 1);
                memcpy(t[n].text, s->str, s->str_len + 1);
                t[n++].len = s->str_len;
            }
            json_free(&j);
        }
        if (!*nl) break;
    }
    free(data);
    data = g3_read_file(SAMPLE, &len);
    for (char *line = data, *nl; data && *line; line = nl + 1) {
        nl = strchr(line, '\n');
        if (!nl) nl = line + strlen(line);
        if (n == cap) t = realloc(t, (size_t)(cap *= 2) * sizeof *t);
        t[n].len = (size_t)(nl - line);
        t[n].text = malloc(t[n].len + 1);
        memcpy(t[n].text, line, t[n].len);
        t[n].text[t[n].len] = 0;
        n++;
        // and each word of the line with the space before it: short texts, mostly of kept pieces
        for (char *w = line; w < nl;) {
            char *e = w + 1;
            while (e < nl && *e != ' ') e++;
            if (n == cap) t = realloc(t, (size_t)(cap *= 2) * sizeof *t);
            t[n].len = (size_t)(e - w);
            t[n].text = malloc(t[n].len + 1);
            memcpy(t[n].text, w, t[n].len);
            t[n].text[t[n].len] = 0;
            n++;
            w = e;
        }
        if (!*nl) break;
    }
    free(data);
    *out = t;
    return n;
}

static int same_text(const char *a, size_t an, const char *b, size_t bn) { return an == bn && !memcmp(a, b, an); }

int main(void) {
    const char *json = tok_json_path();
    CHECK(json != NULL, "tokenizer.json available");
    if (!json) return check_done();
    G3Tokenizer *full = g3_tok_load(json);
    CHECK(full != NULL, "load %s: %s", json, full ? "" : g3_error());
    if (!full) return check_done();
    Text *tx;
    int nt = load_texts(&tx);
    CHECK(nt > 5000, "texts: %d (237 vectors, the sample's lines and words)", nt);

    // counts over the sample, selection, writing
    size_t slen;
    char *sample = g3_read_file(SAMPLE, &slen);
    CHECK(sample != NULL, "%s", SAMPLE);
    int V = g3_tok_vocab_size(full);
    int64_t *counts = calloc((size_t)V, sizeof *counts);
    uint8_t *keep = malloc((size_t)V);
    CHECK(g3_tok_trim_count(full, sample, slen, 1, counts) == 0, "count");
    // Gemma's runs of `▁` are added tokens that BPE also forms from spaces (raw spaces never match
    // them): a corpus of indented text keeps the longest, which must bring its way along.
    char run31[31 * 3 + 1] = "";
    for (int i = 0; i < 31; i++) strcat(run31, "\xE2\x96\x81");
    int id31 = g3_tok_id_of(full, run31);
    CHECK(id31 >= 0, "a run of 31 `\xE2\x96\x81` is a piece");
    if (id31 >= 0) counts[id31] += 1000000000;
    int kept = g3_tok_trim_select(full, counts, VOCAB, keep);
    CHECK(kept == VOCAB, "kept %d pieces, want %d", kept, VOCAB);
    CHECK(g3_tok_trim_select(full, counts, 100, keep) < 0, "--vocab below the pieces always kept is refused");
    kept = g3_tok_trim_select(full, counts, VOCAB, keep);
    static const char *must[] = {"<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<0x00>", "<0xFF>", "\xE2\x96\x81the"};
    for (size_t i = 0; i < sizeof must / sizeof must[0]; i++) {
        int id = g3_tok_id_of(full, must[i]);
        CHECK(id >= 0 && keep[id], "'%s' kept", must[i]);
    }
    // the closure: every kept piece's way is kept
    int32_t way[4096];
    int open_ways = 0;
    for (int id = 0; id < V; id++) {
        if (!keep[id]) continue;
        int nw = g3_tok_trim_closure(full, id, way, 4096);
        for (int k = 0; k < nw; k++) open_ways += !keep[way[k]];
    }
    CHECK(open_ways == 0, "%d pieces on the way to kept pieces are not kept", open_ways);

    system("mkdir -p build/trim-test");
    const char *out = "build/trim-test/tokenizer.json";
    CHECK(g3_tok_trim_write_json(json, full, keep, out) == 0, "write: %s", g3_error());
    G3Tokenizer *small = g3_tok_load_ex(out, G3_TOK_LOAD_NO_CACHE);
    CHECK(small != NULL, "the trimmed tokenizer loads: %s", small ? "" : g3_error());
    if (!small) return check_done();
    CHECK(g3_tok_vocab_size(small) == VOCAB, "trimmed vocabulary %d", g3_tok_vocab_size(small));
    CHECK(g3_tok_bos(small) == 2 && g3_tok_eos(small) == 1 && g3_tok_pad(small) == 0, "bos/eos/pad ids kept");
    CHECK(g3_tok_start_of_turn(small) >= 0 && g3_tok_end_of_turn(small) >= 0, "chat tokens kept");
    // the kept pieces in their original order
    int order_ok = 1, prev = -1;
    for (int i = 0; i < VOCAB; i++) {
        int id = g3_tok_id_of(full, g3_tok_piece(small, i));
        order_ok &= id > prev && keep[id];
        prev = id;
    }
    CHECK(order_ok, "trimmed ids are the kept pieces in their original order");

    // round trips and same pieces where kept
    int lossy = 0, differ = 0, all_kept = 0, full_lossy = 0;
    for (int i = 0; i < nt; i++) {
        for (int ps = 0; ps <= 1; ps++) {
            int32_t *a, *b;
            int na = g3_tok_encode(full, tx[i].text, tx[i].len, 0, ps, &a);
            int nb = g3_tok_encode(small, tx[i].text, tx[i].len, 0, ps, &b);
            size_t la, lb;
            char *da = g3_tok_decode(full, a, na, 0, &la), *db = g3_tok_decode(small, b, nb, 0, &lb);
            // The full tokenizer maps a literal `▁` in the text to a space (as the reference
            // does): the trimmed one must give back what the full one gives back, and the text
            // itself whenever the full one does.
            if (!same_text(da, la, db, lb)) lossy++, fprintf(stderr, "not as the full tokenizer: \"%.60s\"\n", tx[i].text);
            if (!same_text(da, la, tx[i].text, tx[i].len)) full_lossy++;
            int ok = 1;
            for (int k = 0; k < na; k++) ok &= g3_tok_id_of(small, g3_tok_piece(full, a[k])) >= 0;
            if (ok) {
                all_kept++;
                int same = na == nb;
                for (int k = 0; same && k < na; k++) same = !strcmp(g3_tok_piece(full, a[k]), g3_tok_piece(small, b[k]));
                if (!same) differ++, fprintf(stderr, "other pieces for \"%.60s\"\n", tx[i].text);
            }
            free(a), free(b), free(da), free(db);
        }
    }
    CHECK(lossy == 0, "%d texts do not come back as from the full tokenizer", lossy);
    CHECK(full_lossy < 12, "%d texts with a literal `\xE2\x96\x81` (the only lossy case of the full tokenizer)", full_lossy);
    CHECK(differ == 0, "%d of %d texts whose pieces are all kept encode differently", differ, all_kept);
    CHECK(all_kept > 5000, "texts whose pieces are all kept: %d", all_kept);
    // each kept piece's own text, as stored and with its `▁` as the spaces of raw text
    int own_differ = 0, own = 0;
    for (int id = 0; id < VOCAB; id++) {
        const char *p = g3_tok_piece(small, id);
        if (!strncmp(p, "<0x", 3) || !strcmp(p, "<unk>") || !strcmp(p, "<mask>")) continue;
        char raw[1024];
        size_t rn = 0;
        for (const char *q = p; *q && rn < sizeof raw - 1;) {
            if (!strncmp(q, "\xE2\x96\x81", 3)) raw[rn++] = ' ', q += 3;
            else raw[rn++] = *q++;
        }
        raw[rn] = 0;
        for (int form = 0; form < 2; form++) {
            const char *x = form ? raw : p;
            int32_t *a, *b;
            int na = g3_tok_encode(full, x, strlen(x), 0, 1, &a), nb = g3_tok_encode(small, x, strlen(x), 0, 1, &b);
            if (na == 1 && !strcmp(g3_tok_piece(full, a[0]), p)) {
                own++;
                if (nb != 1 || b[0] != id) own_differ++, fprintf(stderr, "piece %d '%s' (%s) encodes otherwise\n", id, p, form ? "spaces" : "as stored");
            }
            free(a), free(b);
        }
    }
    CHECK(own > 600 && own_differ == 0, "%d of %d kept pieces' own texts encode otherwise", own_differ, own);

    // the command
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    CHECK(sh("%s tokenizer trim --tokenizer %s --data %s --vocab 512 --out build/trim-test/cmd --threads 1 > build/trim-test/cmd.out", bin,
             json, SAMPLE) == 0, "gemma3 tokenizer trim");
    CHECK(sh("grep -q '^round trip: lossless$' build/trim-test/cmd.out && grep -q '^kept 512 of 262145 pieces' build/trim-test/cmd.out") == 0,
          "the command reports 512 pieces and a lossless round trip");
    CHECK(sh("test -s build/trim-test/cmd/tokenizer_config.json") == 0, "tokenizer_config.json written");
    CHECK(sh("%s tokenizer trim --tokenizer %s --data %s --vocab 100 --out build/trim-test/cmd2 2>/dev/null", bin, json, SAMPLE) == 1,
          "--vocab 100 (below the 263 pieces always kept) is refused");
    CHECK(sh("%s tokenizer trim --tokenizer %s/tokenizer.model --data %s --out build/trim-test/cmd3 2>/dev/null", bin, TOK_DATA, SAMPLE) == 1,
          "a tokenizer.model is refused");
    CHECK(sh("%s tokenizer trim --tokenizer %s --data build/no-such-file --out build/trim-test/cmd4 2>/dev/null", bin, json) == 1,
          "a missing corpus is refused");

    for (int i = 0; i < nt; i++) free(tx[i].text);
    free(tx), free(sample), free(counts), free(keep);
    g3_tok_free(small);
    g3_tok_free(full);
    return check_done();
}
