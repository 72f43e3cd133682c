// rank1.c: dynamic rank-1 updates (rank1.h).
#include "rank1.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/rng.h"
#include "../io/safetensors.h"
#include "../backend/backend.h"

static const G3LayerRole LINEAR[] = {W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN};

int g3_rank1_parse(G3Rank1Spec *s, const char *text) {
    *s = (G3Rank1Spec){.every = 1, .iters = 2};
    char buf[256];
    if (strlen(text) >= sizeof buf) return g3_errorf("--rank1: spec too long");
    strcpy(buf, text);
    int first = 1;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), first = 0) {
        if (first) {
            if (!strcmp(tok, "svd")) s->mode = G3_RANK1_SVD;
            else if (!strcmp(tok, "random")) s->mode = G3_RANK1_RANDOM;
            else if (!strcmp(tok, "lora")) s->mode = G3_RANK1_LORA;
            else return g3_errorf("--rank1: the variant is svd, random or lora, not '%s'", tok);
            continue;
        }
        if (!strcmp(tok, "keep")) { s->keep = 1; continue; }
        char *eq = strchr(tok, '='), *end;
        if (!eq) return g3_errorf("--rank1: '%s' is not every=T, iters=N or keep", tok);
        *eq = 0;
        long x = strtol(eq + 1, &end, 10);
        if (*end || !eq[1] || x < 1 || x > (1L << 30)) return g3_errorf("--rank1: %s must be an integer >= 1, not '%s'", tok, eq + 1);
        if (!strcmp(tok, "every")) s->every = (int)x;
        else if (!strcmp(tok, "iters")) s->iters = (int)x;
        else return g3_errorf("--rank1: unknown key '%s' (every, iters, keep)", tok);
    }
    if (first) return g3_errorf("--rank1: empty spec (svd, random or lora)");
    return 0;
}

void g3_rank1_free(G3Rank1 *r) {
    if (r->dbe && r->dbuf) r->dbe->free(r->dbe, r->dbuf);
    for (int k = 0; k < r->n; k++) {
        if (r->d) free(r->d[k]);
        if (r->m) free(r->m[k]);
        if (r->v) free(r->v[k]);
    }
    free(r->param); free(r->layer); free(r->left); free(r->dim); free(r->len);
    free(r->d); free(r->m); free(r->v); free(r->t); free(r->cos);
    memset(r, 0, sizeof *r);
}

int g3_rank1_init(G3Rank1 *r, const G3Rank1Spec *s, const G3TrainModel *tm, G3AdamW *o, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->spec = *s;
    r->seed = seed;
    const int L = tm->m.cfg.layers, cap = L * (int)G3_ARRAY_LEN(LINEAR);
    r->param = g3_calloc((size_t)cap, sizeof *r->param);
    r->layer = g3_calloc((size_t)cap, sizeof *r->layer);
    r->left = g3_calloc((size_t)cap, 1);
    r->dim = g3_calloc((size_t)cap, sizeof *r->dim);
    r->len = g3_calloc((size_t)cap, sizeof *r->len);
    r->d = g3_calloc((size_t)cap, sizeof *r->d);
    r->m = g3_calloc((size_t)cap, sizeof *r->m);
    r->v = g3_calloc((size_t)cap, sizeof *r->v);
    r->t = g3_calloc((size_t)cap, sizeof *r->t);
    r->cos = g3_calloc((size_t)cap, sizeof *r->cos);
    if (!r->param || !r->layer || !r->left || !r->dim || !r->len || !r->d || !r->m || !r->v || !r->t || !r->cos) goto fail;
    for (int l = 0; l < L; l++)
        for (size_t q = 0; q < G3_ARRAY_LEN(LINEAR); q++) {
            int ti = tm->m.layer_idx[l][LINEAR[q]], j = -1;
            for (int e = 0; e < tm->np && ti >= 0; e++)
                if (tm->p[e].tensor == ti) j = e;
            if (j < 0) continue;
            const int k = r->n++;
            const int64_t out = tm->p[j].shape[0], in = tm->p[j].shape[1];
            r->param[k] = j;
            r->layer[k] = l;
            r->left[k] = out <= in;
            r->dim[k] = r->left[k] ? out : in;
            r->len[k] = r->left[k] ? in : out;
            r->cos[k] = NAN;
            r->d[k] = g3_calloc((size_t)r->dim[k], sizeof(float));
            r->m[k] = g3_calloc((size_t)r->len[k], sizeof(float));
            r->v[k] = g3_calloc((size_t)r->len[k], sizeof(float));
            if (!r->d[k] || !r->m[k] || !r->v[k]) goto fail;
            if (o && j < o->nseg) o->seg_skip[j] = 1;  // updated here, not by AdamW
        }
    return 0;
fail:
    g3_rank1_free(r);
    return g3_errorf("--rank1: out of memory");
}

static void normalize(float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    float inv = s > 0 ? (float)(1 / sqrt(s)) : 0;
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

static void gaussian(float *x, int64_t n, uint64_t seed, uint64_t a, uint64_t b) {
    G3Rng rng;
    g3_rng_seed3(&rng, seed, a, b);
    for (int64_t i = 0; i < n; i++) {
        double u1 = g3_rng_uniform(&rng), u2 = g3_rng_uniform(&rng);
        x[i] = (float)(sqrt(-2.0 * log(u1 > 0 ? u1 : 1e-300)) * cos(6.283185307179586 * u2));
    }
}

// r = d^T G (left, [in]) or G d (right, [out]), in double sums, times sc.
static void project(const float *G, int64_t out, int64_t in, int left, const float *d, float sc, float *res) {
    if (left) {
        double *acc = calloc((size_t)in, sizeof *acc);
        if (!acc) return;
        for (int64_t o = 0; o < out; o++) {
            const double w = d[o];
            if (w == 0) continue;
            for (int64_t i = 0; i < in; i++) acc[i] += w * G[o * in + i];
        }
        for (int64_t i = 0; i < in; i++) res[i] = (float)(acc[i] * sc);
        free(acc);
    } else {
        for (int64_t o = 0; o < out; o++) {
            double s = 0;
            for (int64_t i = 0; i < in; i++) s += (double)G[o * in + i] * d[i];
            res[o] = (float)(s * sc);
        }
    }
}

// The other side's product: left: y[out] = G z (z [in]); right: y[in] = G^T z (z [out]).
static void back(const float *G, int64_t out, int64_t in, int left, const float *z, float *y) {
    project(G, out, in, !left, z, 1.0f, y);
}

static void new_direction(G3Rank1 *r, int k, const float *G, int64_t out, int64_t in, int64_t step) {
    const int64_t dim = r->dim[k], len = r->len[k];
    float *prev = malloc(sizeof(float) * (size_t)dim), *d = r->d[k];
    float *z = malloc(sizeof(float) * (size_t)len);
    if (!prev || !z) { free(prev); free(z); return; }
    memcpy(prev, d, sizeof(float) * (size_t)dim);
    const int fresh = step == 0;
    if (r->spec.mode == G3_RANK1_RANDOM || fresh) gaussian(d, dim, r->seed, (uint64_t)(step / r->spec.every), 0x72616e6b31ull + (uint64_t)k);
    normalize(d, dim);
    if (r->spec.mode == G3_RANK1_SVD)
        for (int it = 0; it < r->spec.iters; it++) {  // d <- G G^T d (left) or G^T G d (right)
            project(G, out, in, r->left[k], d, 1.0f, z);
            back(G, out, in, r->left[k], z, d);
            normalize(d, dim);
        }
    if (!fresh) {
        double c = 0;
        for (int64_t i = 0; i < dim; i++) c += (double)d[i] * prev[i];
        r->cos[k] = fabs(c);
    }
    if (!r->spec.keep) {
        memset(r->m[k], 0, sizeof(float) * (size_t)len);
        memset(r->v[k], 0, sizeof(float) * (size_t)len);
        r->t[k] = 0;
    }
    free(prev);
    free(z);
}

void g3_rank1_step(G3Rank1 *r, G3TrainModel *tm, const G3AdamWConfig *c, int64_t step, double lr, float grad_scale) {
    const int change = step % r->spec.every == 0;
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < r->n; k++) {
        const G3Param *p = &tm->p[r->param[k]];
        const int64_t out = p->shape[0], in = p->shape[1], len = r->len[k];
        float *W = tm->params + p->off;
        const float *G = tm->grads + p->off;
        if (change) new_direction(r, k, G, out, in, step);
        float *res = malloc(sizeof(float) * (size_t)len);
        if (!res) continue;
        project(G, out, in, r->left[k], r->d[k], grad_scale, res);
        const int64_t t = ++r->t[k];
        const double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
        float *m = r->m[k], *v = r->v[k];
        for (int64_t i = 0; i < len; i++) {
            m[i] = (float)(c->beta1 * m[i] + (1 - c->beta1) * res[i]);
            v[i] = (float)(c->beta2 * v[i] + (1 - c->beta2) * (double)res[i] * res[i]);
            res[i] = (float)((m[i] / bc1) / (sqrt(v[i] / bc2) + c->eps));  // the normalised step n
        }
        const float decay = p->decay ? (float)(1 - lr * c->weight_decay) : 1.0f, a = (float)lr;
        const float *d = r->d[k];
        for (int64_t o = 0; o < out; o++)
            for (int64_t i = 0; i < in; i++) {
                float u = r->left[k] ? d[o] * res[i] : res[o] * d[i];
                W[o * in + i] = W[o * in + i] * decay - a * u;
            }
        free(res);
    }
}

// ---- on a device (g3_rank1_step_ctx) ----

// y[1, len] = x . G (left: x [out], y [in]) or x . G^T (right: x [in], y [out]): the projection
// and, with left flipped, its other side, as gemms over G [out, in] in backend memory.
static void dev_project(G3Backend *be, const float *G, int64_t out, int64_t in, int left, const float *x, float *y) {
    if (left) be->gemm(be, 0, 0, 1, (int)in, (int)out, x, G, y, 0, G3_MM_EXACT);
    else be->gemm(be, 0, 1, 1, (int)out, (int)in, x, G, y, 0, G3_MM_EXACT);
}

int g3_rank1_step_ctx(G3Rank1 *r, G3TrainModel *tm, G3TrainCtx *cx, const G3AdamWConfig *c, int64_t step, double lr,
                      float grad_scale) {
    float *P, *Gd;
    G3Backend *be;
    if (!g3_train_ctx_device_arrays(cx, &P, &Gd, &be)) {
        g3_rank1_step(r, tm, c, step, lr, grad_scale);
        return isfinite(g3_grad_norm(tm->params, tm->n)) ? 0 : 1;
    }
    if (G3_NEED(be, dropout) || G3_NEED(be, sumsq)) return -1;
    int64_t most = 1;
    for (int k = 0; k < r->n; k++) most = G3_MAX(most, G3_MAX(r->dim[k], r->len[k]));
    if (!r->dbuf) {  // device scratch, kept for the run: a direction and two vectors
        if (!(r->dbuf = be->alloc(be, sizeof(float) * 3 * (size_t)most))) return -1;
        r->dbe = be;
    }
    float *dd = r->dbuf, *dz = dd + most, *dn = dz + most;
    float *z = malloc(sizeof(float) * (size_t)most), *prev = malloc(sizeof(float) * (size_t)most);
    if (!z || !prev) { free(z); free(prev); return g3_errorf("--rank1: out of memory"); }
    const int change = step % r->spec.every == 0;
    int rc = 0;
    for (int k = 0; k < r->n && !rc; k++) {
        const G3Param *p = &tm->p[r->param[k]];
        const int64_t out = p->shape[0], in = p->shape[1], len = r->len[k], dim = r->dim[k];
        const int left = r->left[k];
        float *W = P + p->off, *d = r->d[k];
        const float *G = Gd + p->off;
        if (change) {  // new_direction's steps, the products on the device
            memcpy(prev, d, sizeof(float) * (size_t)dim);
            const int fresh = step == 0;
            if (r->spec.mode == G3_RANK1_RANDOM || fresh) gaussian(d, dim, r->seed, (uint64_t)(step / r->spec.every), 0x72616e6b31ull + (uint64_t)k);
            normalize(d, dim);
            for (int it = 0; r->spec.mode == G3_RANK1_SVD && it < r->spec.iters && !rc; it++) {  // d <- G G^T d (left)
                rc = be->to_device(be, dd, d, sizeof(float) * (size_t)dim);
                dev_project(be, G, out, in, left, dd, dz);                                   // z [len]
                dev_project(be, G, out, in, !left, dz, dd);                                  // d [dim]
                rc = rc || be->to_host(be, d, dd, sizeof(float) * (size_t)dim);
                normalize(d, dim);
            }
            if (!fresh) {
                double cs = 0;
                for (int64_t i = 0; i < dim; i++) cs += (double)d[i] * prev[i];
                r->cos[k] = fabs(cs);
            }
            if (!r->spec.keep) {
                memset(r->m[k], 0, sizeof(float) * (size_t)len);
                memset(r->v[k], 0, sizeof(float) * (size_t)len);
                r->t[k] = 0;
            }
        }
        // r = d^T G (or G d), times the clip scale; Adam on the host
        if (rc || be->to_device(be, dd, d, sizeof(float) * (size_t)dim)) { rc = -1; break; }
        dev_project(be, G, out, in, left, dd, dz);
        if (be->to_host(be, z, dz, sizeof(float) * (size_t)len)) { rc = -1; break; }
        const int64_t t = ++r->t[k];
        const double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
        float *m = r->m[k], *v = r->v[k];
        const float a = (float)lr;
        for (int64_t i = 0; i < len; i++) {
            const float ri = z[i] * grad_scale;
            m[i] = (float)(c->beta1 * m[i] + (1 - c->beta1) * ri);
            v[i] = (float)(c->beta2 * v[i] + (1 - c->beta2) * (double)ri * ri);
            z[i] = -a * (float)((m[i] / bc1) / (sqrt(v[i] / bc2) + c->eps));  // -lr n
        }
        if (be->to_device(be, dn, z, sizeof(float) * (size_t)len)) { rc = -1; break; }
        const float decay = p->decay ? (float)(1 - lr * c->weight_decay) : 1.0f;
        if (decay != 1.0f) be->dropout(be, W, W, (long)(out * in), 0.0f, decay, 0, 0, 0);  // W *= decay
        if (left) be->gemm(be, 0, 0, (int)out, (int)in, 1, dd, dn, W, 1, G3_MM_EXACT);    // W += d (-lr n)^T
        else be->gemm(be, 0, 0, (int)out, (int)in, 1, dn, dd, W, 1, G3_MM_EXACT);         // W += (-lr n) d^T
    }
    free(z);
    free(prev);
    if (rc) return -1;
    const double ss = be->sumsq(be, P, (long)tm->n);
    return ss < 0 ? -1 : isfinite(ss) ? 0 : 1;
}

int64_t g3_rank1_state_bytes(const G3Rank1 *r) {
    int64_t b = 0;
    for (int k = 0; k < r->n; k++) b += (int64_t)sizeof(float) * (r->dim[k] + 2 * r->len[k]);
    return b;
}

void g3_rank1_layer_cos(const G3Rank1 *r, int layers, double *per_layer) {
    for (int l = 0; l < layers; l++) {
        double s = 0;
        int n = 0;
        for (int k = 0; k < r->n; k++)
            if (r->layer[k] == l && !isnan(r->cos[k])) s += r->cos[k], n++;
        per_layer[l] = n ? s / n : NAN;
    }
}

int g3_rank1_save(const G3Rank1 *r, const G3TrainModel *tm, const char *dir, int64_t step) {
    STWriter w = {0};
    char path[4200], tmp[4300], nm[200];
    int rc = -1;
    int64_t one = 1, n = r->n;
    double *cs = malloc(sizeof(double) * (size_t)(r->n ? r->n : 1));
    if (!cs) return -1;
    for (int k = 0; k < r->n; k++) cs[k] = r->cos[k];
    if (st_writer_add(&w, "step", G3_I64, 1, &one, &step) || st_writer_add(&w, "t", G3_I64, 1, &n, r->t) ||
        st_writer_add(&w, "cos", G3_F64, 1, &n, cs))
        goto out;
    for (int k = 0; k < r->n; k++) {
        const char *name = tm->p[r->param[k]].name;
        snprintf(nm, sizeof nm, "d.%s", name);
        if (st_writer_add(&w, nm, G3_F32, 1, &r->dim[k], r->d[k])) goto out;
        snprintf(nm, sizeof nm, "m.%s", name);
        if (st_writer_add(&w, nm, G3_F32, 1, &r->len[k], r->m[k])) goto out;
        snprintf(nm, sizeof nm, "v.%s", name);
        if (st_writer_add(&w, nm, G3_F32, 1, &r->len[k], r->v[k])) goto out;
    }
    if (g3_path_join(path, sizeof path, dir, "rank1_state.safetensors")) goto out;
    snprintf(tmp, sizeof tmp, "%s.next", path);
    if (st_writer_write(&w, tmp, NULL)) goto out;
    if (rename(tmp, path) != 0) { g3_errorf("%s: rename failed", path); goto out; }
    rc = 0;
out:
    free(cs);
    st_writer_free(&w);
    return rc ? g3_error_prefix("saving the rank-1 state") : 0;
}

static int take(const STSet *st, const char *name, G3DType dt, int64_t n, void *dst) {
    const STTensor *t = st_find(st, name);
    if (!t || t->dtype != dt || st_numel(t) != n) return g3_errorf("%s missing or of another shape", name);
    memcpy(dst, t->data, (size_t)g3_type_bytes(dt, n));
    return 0;
}

int g3_rank1_load(G3Rank1 *r, const G3TrainModel *tm, const char *dir, int64_t step) {
    char path[4200], nm[200];
    STSet st;
    if (g3_path_join(path, sizeof path, dir, "rank1_state.safetensors")) return -1;
    if (!g3_file_exists(path)) return g3_errorf("%s is missing: the checkpoint's rank-1 state is lost", path);
    if (st_open(&st, path)) return -1;
    int rc = -1;
    int64_t s = -1;
    double *cs = malloc(sizeof(double) * (size_t)(r->n ? r->n : 1));
    if (!cs || take(&st, "step", G3_I64, 1, &s)) goto out;
    if (s != step) {
        g3_errorf("it holds step %lld, the checkpoint step %lld (interrupted between the two saves?)", (long long)s, (long long)step);
        goto out;
    }
    if (take(&st, "t", G3_I64, r->n, r->t) || take(&st, "cos", G3_F64, r->n, cs)) goto out;
    for (int k = 0; k < r->n; k++) {
        r->cos[k] = cs[k];
        const char *name = tm->p[r->param[k]].name;
        snprintf(nm, sizeof nm, "d.%s", name);
        if (take(&st, nm, G3_F32, r->dim[k], r->d[k])) goto out;
        snprintf(nm, sizeof nm, "m.%s", name);
        if (take(&st, nm, G3_F32, r->len[k], r->m[k])) goto out;
        snprintf(nm, sizeof nm, "v.%s", name);
        if (take(&st, nm, G3_F32, r->len[k], r->v[k])) goto out;
    }
    rc = 0;
out:
    free(cs);
    st_close(&st);
    return rc ? g3_error_prefix("%s", path) : 0;
}
