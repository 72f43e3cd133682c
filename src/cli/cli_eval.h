// cli_eval.h: running a text through a model in llama-perplexity's chunks, for `gemma3
// perplexity` and `gemma3 kl`: the tokens are cut into chunks of ctx tokens (the tail that
// does not fill one is dropped), each chunk starts with <bos> in place of its first token and
// runs from an empty cache, and the second half is scored: the logits at positions ctx/2 ..
// ctx-2 predict the tokens at ctx/2+1 .. ctx-1.
#ifndef G3_CLI_EVAL_H
#define G3_CLI_EVAL_H

#include <stdint.h>

#include "model/forward.h"

// Called for each scored position with each model's logits row [V] and the true next token.
typedef void (*CliEvalFn)(void *ctx, const float *const *logits, int nmodels, int32_t next);

// Runs every chunk through the models (1 or 2, same vocabulary) and calls fn per scored
// position. max_chunks 0: all. Returns the number of chunks run, or -1.
int cli_eval_chunks(const G3Model *const *models, int nmodels, int fast, const int32_t *tokens, int ntok, int ctx, int bos,
                    int max_chunks, CliEvalFn fn, void *fn_ctx);

// log-sum-exp of x[0..n) in double
double cli_logsumexp(const float *x, int n);

#endif
