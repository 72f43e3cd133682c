// projector.c: Gemma 3's multimodal projector (transformers' Gemma3MultiModalProjector): the
// tower's patch rows, laid out as a side x side grid, average-pooled in k x k squares
// (k = side / sqrt(tokens)) to `tokens` rows in row-major order, Gemma's RMSNorm with
// (1 + w) and the vision eps, then soft = normed . W with W [D, C] as stored.
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "vision.h"

int g3_vision_project(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *vis, float *soft) {
    const G3VisionConfig *c = &v->cfg;
    if (!be->host) return g3_errorf("backend %s: the multimodal projector runs on host-memory backends only for now", be->name);
    const int D = c->hidden, side = g3_vision_side(c), T = c->tokens;
    int ts = 1;
    while (ts * ts < T) ts++;
    const int k = side / ts;
    float *pool = g3_malloc((size_t)T * D * sizeof(float));
    if (!pool) return -1;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const int ti = t / ts, tj = t % ts;
        float *o = pool + (long)t * D;
        for (int d = 0; d < D; d++) {
            float s = 0;  // AvgPool2d sums in the input's type
            for (int a = 0; a < k; a++)
                for (int bb = 0; bb < k; bb++) s += vis[((long)(ti * k + a) * side + tj * k + bb) * D + d];
            o[d] = s / (float)(k * k);
        }
    }
    be->rmsnorm(be, pool, NULL, pool, v->soft_norm, T, D, c->eps);
    be->gemm(be, 0, 0, T, c->text_hidden, D, pool, v->proj, soft, 0, mode);  // soft[T, C] = normed[T, D] . W[D, C]
    free(pool);
    return 0;
}

int g3_vision_embed_image(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const G3Image *im, float *soft,
                          const G3VisionHooks *hooks) {
    const G3VisionConfig *c = &v->cfg;
    const long S = c->image_size, NP = g3_vision_patches(c);
    float *px = g3_malloc((size_t)3 * S * S * sizeof(float)), *vis = g3_malloc((size_t)NP * c->hidden * sizeof(float));
    // the projector is small (a pool and one [tokens, D] x [D, C] product): on the host
    int rc = !px || !vis || g3_vision_pixels(c, px, im) || g3_vision_encode(v, be, mode, px, vis, hooks) ||
             g3_vision_project(v, be->host ? be : g3_backend_cpu(), mode, vis, soft);
    if (!rc && g3_vision_hook_wants(hooks, G3_VH_SOFT_TOKENS, -1)) {
        G3VisionHookEvent ev = {G3_VH_SOFT_TOKENS, -1, -1, c->tokens, c->text_hidden, 0, 0, soft};
        hooks->fn(hooks->ctx, &ev);
    }
    free(px);
    free(vis);
    return rc ? -1 : 0;
}
