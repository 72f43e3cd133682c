// batch.h: a file of categorized prompts run through the model together, with results that
// survive interruption. Every finished prompt is appended at once to OUT/results.jsonl
// (flushed and fsynced, one JSON object per line): that journal is the record, so a crash or
// Ctrl-C loses at most the prompts still running, and resume skips what the journal holds.
// results.json (all results in prompt order), prompt_metadata.json and summary.json are
// (re)written atomically from it.
#ifndef G3_BATCH_H
#define G3_BATCH_H

#include "../model/forward.h"
#include "../sampler/sampler.h"
#include "../tokenizer/tokenizer.h"

typedef struct {
    const char *prompts_path;
    const char *out_dir;
    const char *model_dir;     // recorded in the metadata
    int batch_size;            // sequences decoded together
    int chat;                  // wrap each prompt as a user turn
    const char *system;        // system message (chat only)
    int max_tokens;
    int ctx;                   // 0: longest prompt + max_tokens (capped by the model)
    G3SamplerConfig sampling;  // sequence i samples with seed sampling.seed + i
    const char *const *stops;  // stop strings
    int nstops;
    int resume;
    int fast;
    int progress;              // progress bar on stderr
} G3BatchJob;

// Runs the job. Returns 0 when every prompt has a result (some may be errors), 1 if it was
// interrupted through *abort (resume continues it), -1 on an error that stops the job.
int g3_batch_run(const G3Model *m, const G3Tokenizer *tok, const G3BatchJob *job, volatile int *abort);

#endif
