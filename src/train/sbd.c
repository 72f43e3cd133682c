// sbd.c: Set Block Decoding's doubled training layout and masking (sbd.h).
#include "sbd.h"

#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/rng.h"

int g3_sbd_init(G3Sbd *s, int L, int kmin, int kmax, int mask_id) {
    memset(s, 0, sizeof *s);
    if (L < 1 || kmin < 1 || kmax < kmin) return g3_errorf("sbd: block sizes [%d, %d] over %d tokens: need 1 <= min <= max", kmin, kmax, L);
    if (mask_id < 0) return g3_errorf("sbd: no <mask> token id");
    s->L = L;
    s->kmin = kmin;
    s->kmax = kmax;
    s->mask_id = mask_id;
    s->pos = g3_malloc(sizeof *s->pos * 2 * (size_t)L);
    s->blk = g3_malloc(sizeof *s->blk * 2 * (size_t)L);
    s->noisy = g3_malloc(2 * (size_t)L);
    if (!s->pos || !s->blk || !s->noisy) { g3_sbd_free(s); return -1; }
    s->mask = (G3AttnMask){s->pos, s->blk, s->noisy};
    g3_sbd_layout(s, kmin);
    return 0;
}

void g3_sbd_free(G3Sbd *s) {
    free(s->pos);
    free(s->blk);
    free(s->noisy);
    memset(s, 0, sizeof *s);
}

void g3_sbd_layout(G3Sbd *s, int k) {
    s->block = k;
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < s->L; p++) {
            s->pos[h * s->L + p] = p;
            s->blk[h * s->L + p] = p / k;
            s->noisy[h * s->L + p] = (uint8_t)h;
        }
}

void g3_sbd_batch(G3Sbd *s, uint64_t seed, int64_t step, int micro, const int32_t *in, const int32_t *tg, int B, double eta_fixed,
                  int32_t *in2, int32_t *tg2) {
    const int L = s->L;
    G3Rng r;
    // a stream of its own: the data order's streams use (seed, step, micro) too
    g3_rng_seed3(&r, g3_mix64(seed ^ 0x5bd5bd5bd5bd5bdull), (uint64_t)step, (uint64_t)micro);
    g3_sbd_layout(s, s->kmin + (int)g3_rng_below(&r, (uint64_t)(s->kmax - s->kmin + 1)));
    s->masked = s->ntp = 0;
    for (int b = 0; b < B; b++) {
        const int32_t *x = in + (long)b * L, *y = tg + (long)b * L;
        int32_t *xi = in2 + (long)b * 2 * L, *yi = tg2 + (long)b * 2 * L;
        memcpy(xi, x, sizeof *xi * (size_t)L);  // clean half: as given
        memcpy(yi, y, sizeof *yi * (size_t)L);
        const double eta = eta_fixed >= 0 ? eta_fixed : g3_rng_uniform(&r);
        int last = -1;  // the last target (an example's <eos>): positions after it are padding
        for (int i = 0; i < L; i++)
            if (y[i] >= 0) last = i;
        for (int i = 0; i < L; i++) {
            s->ntp += y[i] >= 0;
            // the token at position i: the target predicted from position i - 1 where there is
            // one (an example's <eos> is never an input, only a target), else the input
            const int32_t tok = i >= 1 && y[i - 1] >= 0 ? y[i - 1] : x[i];
            const int eligible = i >= 1 && (y[i - 1] >= 0 || (last >= 0 && i > last + 1));
            const int m = eligible && g3_rng_uniform(&r) < eta;
            xi[L + i] = m ? s->mask_id : tok;
            yi[L + i] = m ? tok : -1;
            s->masked += m;
        }
    }
}
