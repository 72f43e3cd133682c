// cli_eval.c: llama-perplexity's chunked evaluation (see cli_eval.h).
#include "cli_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

double cli_logsumexp(const float *x, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, x[i]);
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

enum { PIECE = 64 };  // rows per forward call: the logits of a piece are PIECE x V floats

int cli_eval_chunks(const G3Model *const *models, int nmodels, int fast, const int32_t *tokens, int ntok, int ctx, int bos,
                    int max_chunks, CliEvalFn fn, void *fn_ctx) {
    if (ctx < 4) return g3_errorf("context %d is too short to score (at least 4)", ctx);
    int nchunks = ntok / ctx;
    if (max_chunks > 0 && nchunks > max_chunks) nchunks = max_chunks;
    if (nchunks == 0) return g3_errorf("the text has %d tokens, fewer than one chunk of %d", ntok, ctx);
    G3State *st[2] = {NULL, NULL};
    int32_t *chunk = g3_malloc((size_t)ctx * sizeof *chunk);
    int rc = -1;
    if (!chunk) goto out;
    for (int m = 0; m < nmodels; m++)
        if (!(st[m] = g3_state_new(models[m], 1, ctx, PIECE, fast, NULL))) goto out;
    const int first = ctx / 2;
    for (int c = 0; c < nchunks; c++) {
        memcpy(chunk, tokens + (size_t)c * ctx, (size_t)ctx * sizeof *chunk);
        chunk[0] = bos;
        for (int m = 0; m < nmodels; m++) g3_state_reset(st[m], 0);
        for (int p0 = 0; p0 < ctx; p0 += PIECE) {
            int n = G3_MIN(PIECE, ctx - p0);
            int scored = p0 + n > first && p0 <= ctx - 2;
            G3Segment seg = {0, p0, n};
            for (int m = 0; m < nmodels; m++)
                if (g3_forward(st[m], chunk + p0, &seg, 1, scored ? G3_LOGITS_ALL : G3_LOGITS_NONE)) goto out;
            if (!scored) continue;
            const int V = models[0]->cfg.vocab;
            for (int j = G3_MAX(p0, first); j < p0 + n && j <= ctx - 2; j++) {
                const float *rows[2];
                for (int m = 0; m < nmodels; m++) rows[m] = st[m]->logits + (size_t)(j - p0) * V;
                fn(fn_ctx, rows, nmodels, chunk[j + 1]);
            }
        }
    }
    rc = nchunks;
out:
    for (int m = 0; m < 2; m++) g3_state_free(st[m]);
    free(chunk);
    return rc;
}
