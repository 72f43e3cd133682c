// quantize_imatrix.h: `gemma3 quantize --calibrate FILE`: the importance of each input column
// of every linear weight, llama.cpp's imatrix idea: the mean of x^2 of that column's input
// activation over the calibration tokens, which the rounding then weights (quant.h,
// g3_quant_weighted). Why x^2: a weight error e_k in column k changes the output by e_k a_k,
// whose expected square is e_k^2 E[a_k^2] (activations taken uncorrelated across columns), so
// sum_k E[a_k^2] e_k^2 is the output's squared error to minimize.
//
// The inputs each matrix sees, from the pass's hook sites (hooks.h): q/k/v the attention's
// normed input (ln1.hook_normalized), o the attention's per-head values (attn.hook_z), gate/up
// the MLP's normed input (ln2.hook_normalized), down the GeGLU output (mlp.hook_post). The
// embedding (also the output layer) gets none: rounded unweighted.
#ifndef G3_QUANTIZE_IMATRIX_H
#define G3_QUANTIZE_IMATRIX_H

#include "model.h"

// imp[m->nt] out: for each linear weight i a malloc'd [shape[1]] array of mean x^2 over the
// n tokens ids, NULL for the others. The tokens run in chunks of 512 (or the model's context,
// if shorter), each a sequence of its own from position 0 whose first token is bos (bos < 0:
// kept). 0, or -1 (message; imp all NULL). verbose: one line on stderr.
int g3_quant_importance(const G3Model *m, const int32_t *ids, int n, int bos, float **imp, int verbose);
void g3_quant_importance_free(float **imp, int nt);

#endif
