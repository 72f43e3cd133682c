// objective.h: training objectives other than next-token cross-entropy, as functions of
// per-sequence log-probabilities (the model pass gives those: train.h g3_train_seq_logps, and
// takes their gradients back as per-sequence weights: g3_train_forward_backward_seq).
//
// DPO (Rafailov et al. 2023), sigmoid form as TRL's DPOTrainer and Google's gemma library
// define it: for pair i with policy log-probabilities pc, pr of the chosen and rejected
// completions (sums over completion tokens) and the reference's rc, rr,
//   z_i = beta * ((pc - rc) - (pr - rr)),   loss = mean_i -log sigmoid(z_i) = mean softplus(-z_i)
//   rewards: chosen beta * (pc - rc), rejected beta * (pr - rr); margin = their difference;
//   accuracy = the fraction of pairs with chosen reward > rejected reward.
// d loss / d pc = -beta * sigmoid(-z) / n, d loss / d pr = +beta * sigmoid(-z) / n.
#ifndef G3_OBJECTIVE_H
#define G3_OBJECTIVE_H

typedef struct {
    double loss, chosen, rejected, margin, accuracy;  // means over the pairs
} G3DpoStats;

// pol, ref: [2n] log-probabilities, pair i at 2i (chosen) and 2i+1 (rejected). Fills
// dlogp[2n] (may be NULL) with the gradient of the mean loss with respect to pol.
void g3_dpo(const double *pol, const double *ref, int n, double beta, double *dlogp, G3DpoStats *st);

#endif
