// sbd.c: Set Block Decoding's sampler and its exact-cache forward pass (sbd.h).
#include "sbd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../kernels/ops.h"
#include "../model/pass.h"

int g3_sbd_forward(G3State *s, const int32_t *clean, int nc, const int32_t *blk, int K, float *logits) {
    const G3Model *m = s->m;
    const G3Config *c = &m->cfg;
    G3Backend *be = s->be;
    const int rows = nc + K, HD = c->head_dim, C = c->hidden;
    if (!be->host || G3_NEED(be, attention_cache_block))
        return g3_errorf("set block decoding: not supported on %s (the block attention runs on the CPU backend only)", be->name);
    if (K < 1 || nc < 0) return g3_errorf("set block decoding: a block of %d rows after %d clean ones", K, nc);
    if (rows > s->max_rows) return g3_errorf("set block decoding: %d rows exceed the state's %d rows per call", rows, s->max_rows);
    const int pos0 = s->len[0];
    if (pos0 + rows > s->ctx) return g3_errorf("sequence of %d tokens exceeds the context of %d", pos0 + rows, s->ctx);
    for (int r = 0; r < rows; r++) {
        const int32_t id = r < nc ? clean[r] : blk[r - nc];
        if (id < 0 || id >= c->vocab) return g3_errorf("token id %d at row %d is outside the vocabulary [0, %d)", id, r, c->vocab);
        s->ids[r] = id;
    }
    for (int r = 0; r < rows; r++) {  // clean rows and the block's: consecutive positions
        g3_rope_angles(s->cos_l + (long)r * HD / 2, s->sin_l + (long)r * HD / 2, pos0 + r, HD, c->rope_local_base, c->rope_local_scale);
        g3_rope_angles(s->cos_g + (long)r * HD / 2, s->sin_g + (long)r * HD / 2, pos0 + r, HD, c->rope_global_base, c->rope_global_scale);
    }
    G3Segment segs[2] = {{0, pos0, nc}, {0, pos0 + nc, K}};
    const int nseg = nc > 0 ? 2 : 1;
    G3Pass p = {.be = be, .m = m, .mode = s->fast ? G3_MM_FAST : G3_MM_EXACT, .R = rows, .cos_l = s->cos_l, .sin_l = s->sin_l,
                .cos_g = s->cos_g, .sin_g = s->sin_g, .kv = &s->kv, .segs = nc > 0 ? segs : segs + 1, .nseg = nseg,
                .lora_xa = s->lora_xa, .lora_y = s->lora_y, .block_last = 1};
    const G3LayerActs acts = {.xn1 = s->xn, .qraw = s->q, .kraw = s->k, .q = s->q, .k = s->k, .v = s->v, .att = s->att,
                              .ao = s->tmp, .h = s->x, .xn2 = s->xn, .g = s->g, .u = s->u, .a = s->g, .mo = s->tmp, .tmp = s->tmp};
    if (g3_pass_embed(&p, s->x, s->ids)) return -1;
    for (int l = 0; l < c->layers; l++)
        if (g3_layer_forward(&p, l, &acts, s->x, s->x)) return -1;
    s->len[0] += nc;  // the clean rows are in the cache now (every layer appended them)
    g3_pass_final_norm(&p, s->xlast, NULL, s->x + (long)nc * C, K);
    G3Pass ph = p;
    ph.R = K;
    return g3_pass_head(&ph, logits, s->xlast, K, 1);
}

// Entropy (nats) of softmax(z[V] * inv_t) and the argmax of z, in double.
static double entropy(const float *z, int V, double inv_t, int *best) {
    int bi = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > z[bi]) bi = v;
    double sum = 0, ez = 0;
    for (int v = 0; v < V; v++) {
        const double d = ((double)z[v] - z[bi]) * inv_t, e = exp(d);
        sum += e;
        ez += e * d;
    }
    *best = bi;
    return log(sum) - ez / sum;  // H = log Z - E[z - max]
}

static int is_stop(const G3SbdOptions *o, int32_t id) {
    for (int j = 0; j < o->nstop; j++)
        if (id == o->stop_ids[j]) return 1;
    return 0;
}

int g3_sbd_generate(const G3Model *m, const int32_t *prompt, int np, const G3SbdOptions *o, G3SbdResult *r) {
    memset(r, 0, sizeof *r);
    const int V = m->cfg.vocab, K = o->block;
    if (np < 1) return g3_errorf("set block decoding: empty prompt");
    if (K < 1 || !(o->gamma >= 0)) return g3_errorf("set block decoding: the block must be >= 1 and gamma >= 0");
    if (o->mask_id < 0 || o->mask_id >= V) return g3_errorf("set block decoding: <mask> id %d outside the vocabulary [0, %d)", o->mask_id, V);
    const int maxn = G3_MAX(o->max_tokens, 0), ctx = np + maxn;
    if (ctx > m->cfg.max_pos) return g3_errorf("prompt of %d tokens plus %d new exceeds the model's %d positions", np, maxn, m->cfg.max_pos);
    const double t0 = g3_now();
    G3State *s = o->state;
    if (s && (s->m != m || s->ctx < ctx || s->max_rows < ctx + K)) return g3_errorf("set block decoding: the state given is too small or of another model");
    if (s) g3_state_reset(s, 0);
    else s = g3_state_new(m, 1, ctx, ctx + K, o->fast, NULL);
    int32_t *all = g3_malloc(sizeof *all * (size_t)(ctx + K)), *blk = g3_malloc(sizeof *blk * (size_t)K);
    float *logits = g3_malloc(sizeof *logits * (size_t)K * V);
    double *H = g3_malloc(sizeof *H * (size_t)K);
    int *best = g3_malloc(sizeof *best * (size_t)K), *order = g3_malloc(sizeof *order * (size_t)K);
    uint8_t *done = g3_malloc((size_t)K);
    const int sample = o->sampling && o->sampling->temperature > 0;
    const double inv_t = sample ? 1.0 / o->sampling->temperature : 1.0;
    G3Sampler *smp = sample ? g3_sampler_new(o->sampling, V) : NULL;
    float *row = sample ? g3_malloc(sizeof *row * (size_t)V) : NULL;  // the sampler edits its logits
    int rc = -1;
    if (!s || !all || !blk || !logits || !H || !best || !order || !done || (sample && (!smp || !row))) goto out;
    memcpy(all, prompt, sizeof *all * (size_t)np);
    int n = np, pending = np;  // tokens so far; how many at the end are not yet in the cache
    while (n - np < maxn && !r->stopped) {
        const int k = G3_MIN(K, maxn - (n - np));
        for (int i = 0; i < k; i++) { blk[i] = o->mask_id; done[i] = 0; }
        for (int left = k; left > 0;) {
            if (o->recompute) {  // the reference: everything again from an empty cache
                g3_state_reset(s, 0);
                pending = n;
            }
            if (g3_sbd_forward(s, all + n - pending, pending, blk, k, logits)) goto out;
            pending = 0;
            r->nfe++;
            // the masked positions by entropy (insertion sort, stable: ties keep the earlier position first)
            int nm = 0;
            for (int i = 0; i < k; i++) {
                if (done[i]) continue;
                H[i] = entropy(logits + (long)i * V, V, inv_t, &best[i]);
                int j = nm++;
                while (j > 0 && H[order[j - 1]] > H[i]) { order[j] = order[j - 1]; j--; }
                order[j] = i;
            }
            // reveal while the summed entropy stays within gamma; at least one
            double sum = 0;
            int nr = 0;
            for (int j = 0; j < nm; j++) {
                sum += H[order[j]];
                if (j > 0 && sum > o->gamma) break;
                nr++;
            }
            for (int j = 0; j < nr; j++) done[order[j]] = 2;  // revealed by this pass
            // their tokens, in position order (a draw each when sampling)
            for (int i = 0; i < k; i++) {
                if (done[i] != 2) continue;
                done[i] = 1;
                if (!sample) {
                    blk[i] = best[i];
                } else {
                    memcpy(row, logits + (long)i * V, sizeof *row * (size_t)V);
                    const int t = g3_sampler_sample(smp, row, all, n);
                    if (t < 0) goto out;
                    blk[i] = t;
                }
                left--;
            }
            // a revealed stop id with every position before it revealed ends the block (and the
            // generation): what would follow it is never output
            for (int i = 0; i < k && left > 0 && done[i]; i++)
                if (is_stop(o, blk[i])) left = 0;
        }
        // the finished block: its tokens up to a stop id; it enters the cache with the next block
        int take = k;
        for (int i = 0; i < k && take == k; i++)
            if (done[i] && is_stop(o, blk[i])) take = i, r->stopped = 1;
        memcpy(all + n, blk, sizeof *blk * (size_t)take);
        n += take;
        pending = take;
    }
    r->n = n - np;
    if (!(r->ids = g3_malloc(sizeof *r->ids * (size_t)G3_MAX(r->n, 1)))) goto out;
    memcpy(r->ids, all + np, sizeof *r->ids * (size_t)r->n);
    rc = 0;
out:
    r->seconds = g3_now() - t0;
    if (s != o->state) g3_state_free(s);
    g3_sampler_free(smp);
    free(row);
    free(all); free(blk); free(logits); free(H); free(best); free(order); free(done);
    return rc;
}
