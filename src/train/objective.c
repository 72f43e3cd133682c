// objective.c: the DPO loss and its gradient in closed form (objective.h).
#include "objective.h"

#include <math.h>

// log(1 + e^x) without overflow, and exact log 2 at x = 0.
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

void g3_dpo(const double *pol, const double *ref, int n, double beta, double *dlogp, G3DpoStats *st) {
    G3DpoStats s = {0};
    for (int i = 0; i < n; i++) {
        double c = beta * (pol[2 * i] - ref[2 * i]), r = beta * (pol[2 * i + 1] - ref[2 * i + 1]), z = c - r;
        s.loss += softplus(-z);
        s.chosen += c;
        s.rejected += r;
        s.margin += z;
        s.accuracy += c > r;
        if (dlogp) {
            double g = beta * sigmoid(-z) / n;
            dlogp[2 * i] = -g;
            dlogp[2 * i + 1] = g;
        }
    }
    if (n > 0) {
        s.loss /= n;
        s.chosen /= n;
        s.rejected /= n;
        s.margin /= n;
        s.accuracy /= n;
    }
    *st = s;
}
