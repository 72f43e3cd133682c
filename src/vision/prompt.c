// prompt.c: an image's placeholder run in token ids. The Hugging Face processor writes
// <start_of_image>, mm_tokens_per_image image tokens and <end_of_image> where the prompt
// says (its text has "\n\n" around the run; ids given here are taken as they are).
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../tokenizer/tokenizer.h"
#include "vision.h"

int g3_vision_find_runs(const G3VisionConfig *vc, const int32_t *ids, int n, int *starts, int max, int *count) {
    *count = 0;
    for (int i = 0; i < n;) {
        if (ids[i] != vc->image_token) { i++; continue; }
        int j = i;
        while (j < n && ids[j] == vc->image_token) j++;
        if (j - i != vc->tokens)
            return g3_errorf("the image placeholder run at position %d has %d image tokens (id %d); an image takes exactly %d", i, j - i,
                             vc->image_token, vc->tokens);
        if (*count == max) return g3_errorf("more than %d image placeholder runs in the prompt", max);
        starts[(*count)++] = i;
        i = j;
    }
    return 0;
}

int g3_vision_expand(const G3VisionConfig *vc, const int32_t *ids, int n, int32_t *out, int cap, int *nout) {
    int k = 0;
    for (int i = 0; i < n; i++) {
        const int run = ids[i] == vc->boi && (i + 1 >= n || ids[i + 1] != vc->image_token);
        const int need = run ? vc->tokens + 2 : 1;
        if (k + need > cap) return g3_errorf("the prompt with its image runs exceeds %d tokens", cap);
        if (!run) { out[k++] = ids[i]; continue; }
        out[k++] = vc->boi;
        for (int t = 0; t < vc->tokens; t++) out[k++] = vc->image_token;
        out[k++] = vc->eoi;
        if (i + 1 < n && ids[i + 1] == vc->eoi) i++;  // "<start_of_image><end_of_image>" stands for one image too
    }
    *nout = k;
    return 0;
}

int g3_vision_attach(const G3VisionConfig *vc, G3State *s, int seq, int pos0, const int32_t *ids, int n, float *const *soft, int nimages) {
    int *starts = g3_malloc((size_t)(n / vc->tokens + 1) * sizeof *starts), count;
    if (!starts) return -1;
    int rc = g3_vision_find_runs(vc, ids, n, starts, n / vc->tokens + 1, &count);
    if (!rc && count != nimages)
        rc = g3_errorf("the prompt has %d image placeholder run%s (<start_of_image> and %d image tokens) but %d image%s given", count,
                       count == 1 ? "" : "s", vc->tokens, nimages, nimages == 1 ? " was" : "s were");
    for (int i = 0; !rc && i < count; i++) rc = g3_state_add_image(s, seq, pos0 + starts[i], vc->tokens, soft[i]);
    free(starts);
    return rc;
}

// Appends src[k] to the growing ids.
static int push(int32_t **ids, int *n, int *cap, const int32_t *src, int k) {
    if (*n + k > *cap) {
        int nc = G3_MAX(*cap * 2, *n + k + 64);
        int32_t *p = g3_realloc(*ids, (size_t)nc * sizeof *p);
        if (!p) return -1;
        *ids = p;
        *cap = nc;
    }
    memcpy(*ids + *n, src, (size_t)k * sizeof *src);
    *n += k;
    return 0;
}

int g3_vision_encode_text(const G3VisionConfig *c, const G3Tokenizer *tok, const char *text, int nimages, int add_bos, int parse_special,
                          int32_t **out) {
    static const char MARK[] = "<start_of_image>";
    int marks = 0;
    for (const char *p = strstr(text, MARK); p; p = strstr(p + 1, MARK)) marks++;
    if (marks && marks != nimages)
        return g3_errorf("the prompt has %d <start_of_image> marker%s but %d image%s given", marks, marks == 1 ? "" : "s", nimages,
                         nimages == 1 ? " was" : "s were");
    int32_t *ids = NULL, *piece = NULL;
    char *seg = g3_malloc(strlen(text) + 5);
    int n = 0, cap = 0, rc = -1;
    if (!seg) goto out;
    if (add_bos) {
        const int32_t bos = g3_tok_bos(tok);
        if (push(&ids, &n, &cap, &bos, 1)) goto out;
    }
    // The processor writes "\n\n<start_of_image>" + soft tokens + "<end_of_image>\n\n" into the
    // text and then tokenizes it: the special tokens cut it, and each "\n\n" is tokenized with
    // the text beside it (after a chat turn's "user\n" it makes one "\n\n\n" token).
    const char *p = text;
    for (int i = 0; i <= nimages; i++) {
        // the text before the i-th run (everything after the last run for i == n)
        const char *end = i < nimages ? (marks ? strstr(p, MARK) : p) : p + strlen(p);
        size_t k = 0;
        if (i > 0) memcpy(seg, "\n\n", 2), k = 2;
        memcpy(seg + k, p, (size_t)(end - p)), k += (size_t)(end - p);
        if (i < nimages) memcpy(seg + k, "\n\n", 2), k += 2;
        int m = g3_tok_encode(tok, seg, k, 0, parse_special, &piece);
        if (m < 0 || push(&ids, &n, &cap, piece, m)) goto out;
        free(piece);
        piece = NULL;
        if (i == nimages) break;
        if (push(&ids, &n, &cap, &c->boi, 1)) goto out;
        for (int t = 0; t < c->tokens; t++)
            if (push(&ids, &n, &cap, &c->image_token, 1)) goto out;
        if (push(&ids, &n, &cap, &c->eoi, 1)) goto out;
        p = marks ? end + strlen(MARK) : end;
    }
    rc = n;
out:
    free(seg);
    free(piece);
    if (rc < 0) free(ids);
    else *out = ids;
    return rc;
}
