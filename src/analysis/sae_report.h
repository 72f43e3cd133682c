// sae_report.h: what `gemma3 sae` shows of one prompt, as JSON and as an offline HTML page
// (sae_html.c): per token, its top features; per feature that made some token's top list, its
// activation at every token; the reconstruction's MSE, FVU and L0, and the loss with the
// reconstruction spliced in.
#ifndef G3_SAE_REPORT_H
#define G3_SAE_REPORT_H

#include <stdint.h>

#include "report.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    const char *model, *sae, *site, *format, *kind;
    int d_model, d_sae, T;
    const int32_t *ids;       // [T]
    const G3Tokenizer *tok;   // NULL: tokens shown by id
    const float *F;           // [T, d_sae] feature activations
    int top;                  // features listed per token (<= 0: 10)
    double mse, fvu, l0, loss_clean, loss_spliced;  // NaN where not measured
} G3SaeReport;

int g3_sae_json(G3Str *s, const G3SaeReport *r);
// Writes the page atomically. 0 or -1 with the message set.
int g3_sae_write_html(const char *path, const G3SaeReport *r);

#endif
