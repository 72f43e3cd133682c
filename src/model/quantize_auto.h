// quantize_auto.h: `gemma3 quantize --auto BITS --calibrate FILE`: a type per matrix chosen to
// meet an average bits-per-weight budget with the least KL divergence on calibration text.
//
// How: the unquantized model's next-token distributions on the calibration tokens are the
// reference. Each matrix alone is quantized to the lowest type of the ladder (Q4_K, or its
// fallback Q5_0 where rows are not whole super-blocks) and the mean KL(reference || model) on
// the same tokens measured: its sensitivity. The KL of the other types is estimated from it by
// the ratio of their weight-space squared errors on that matrix (KL grows with the squared
// perturbation for small ones). Then, from every matrix at the lowest type, the upgrade with
// the largest estimated KL saved per added bit is taken while the budget allows (greedy on a
// knapsack). Norms stay F32 and count in the average as llama.cpp counts them: not at all
// (the budget is over the matrices). One forward pass per matrix: minutes for 1B on 2 cores.
#ifndef G3_QUANTIZE_AUTO_H
#define G3_QUANTIZE_AUTO_H

#include "model.h"

// types[m->nt] out: the chosen type of each tensor (norms G3_F32). ids[n] the calibration
// tokens (ids[0] is taken as the BOS position), n >= 2. bits: the budget over the matrices,
// between the ladder's lowest and highest average. The model's tensors are swapped and
// restored during the call. Reports each matrix's sensitivity and choice on stderr when
// verbose. 0, or -1 (message).
int g3_quant_auto(G3Model *m, const int32_t *ids, int n, double bits, G3DType *types, int verbose);

#endif
