// sbd.h: Set Block Decoding's training layout (Gat et al. 2025, arXiv:2509.04185). Each
// sequence x[0, L) of a micro-batch becomes 2L rows [clean x ; noisy copy of x] with the noisy
// copy at the same positions 0..L-1: each eligible token of the copy is replaced by <mask>
// with probability eta, eta ~ U(0, 1) drawn per sequence. The L positions are cut into blocks
// of k tokens (k drawn from [kmin, kmax] each step, the same for the whole micro-batch), and
// attention follows backend.h's G3AttnMask: clean rows causal, a noisy row sees its own block's
// noisy rows (both ways) and the clean rows of strictly earlier blocks. The loss is next-token
// cross-entropy on the clean half (the targets the batch had) plus cross-entropy on the masked
// noisy positions against the token they hide (same position), one mean over all those targets
// (the paper's sum of the two, normalised once).
//
// Eligible: a position i >= 1 whose token was itself a loss target (targets[i - 1] >= 0): the
// completion of a prompt/completion example with its <eos>, every token of a text window after
// its first; and the padding after an example's last target (target: the padding id), so that
// a block reaching past <eos> at decoding time has seen such positions. The token at position i
// is targets[i - 1] where that is a target (an example's <eos> is a target, never an input),
// else inputs[i]. Position 0 and prompt tokens are never masked (decoding starts after a clean
// prompt).
//
// Draws are a pure function of (seed, step, micro-step), so a resumed run masks as it would have.
#ifndef G3_SBD_H
#define G3_SBD_H

#include <stdint.h>

#ifndef G3_SBD_MASK_ID
#define G3_SBD_MASK_ID 4  // <mask> in Gemma 3's vocabulary, when no tokenizer names it
#endif

#include "../backend/backend.h"


typedef struct {
    int L;                 // tokens per sequence (the clean half); rows per sequence 2L
    int kmin, kmax;        // block sizes drawn from [kmin, kmax]
    int mask_id;
    int block;             // the last batch's block size
    int32_t *pos, *blk;    // [2L]
    uint8_t *noisy;        // [2L]
    G3AttnMask mask;       // over pos/blk/noisy
    int64_t masked;        // the last batch's masked (noisy-target) positions, and NTP targets
    int64_t ntp;
} G3Sbd;

// L >= 1, 1 <= kmin <= kmax, mask_id >= 0. 0 or -1 (message).
int g3_sbd_init(G3Sbd *s, int L, int kmin, int kmax, int mask_id);
void g3_sbd_free(G3Sbd *s);
// The mask for blocks of k: rows [0, L) clean, [L, 2L) noisy, block of position p = p / k.
void g3_sbd_layout(G3Sbd *s, int k);
// One micro-batch: in/tg [B, L] (inputs and next-token targets as data.h / examples.h make
// them) -> in2/tg2 [B, 2L] in the doubled layout, block size drawn (s->block) and the mask laid
// out. eta_fixed in [0, 1] forces eta (validation), < 0 draws it.
void g3_sbd_batch(G3Sbd *s, uint64_t seed, int64_t step, int micro, const int32_t *in, const int32_t *tg, int B, double eta_fixed,
                  int32_t *in2, int32_t *tg2);

#endif
