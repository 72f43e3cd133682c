// capacity.c: one cell of the memorization-capacity experiment (capacity.h): the Gemma 3
// shape, the random data, training on whole sequences epoch after epoch until memorization
// stops growing, and the measures (memorized bits, held-out loss, membership inference F1,
// the grokking flag).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../backend/backend.h"
#include "../base/base.h"
#include "../base/json.h"
#include "../base/rng.h"
#include "../train/optim.h"
#include "capacity.h"

void g3_cap_spec_defaults(G3CapSpec *s) {
    *s = (G3CapSpec){.layers = 1, .width = 32, .vocab = 2048, .seq_len = 64, .nseq = 256, .nheld = 256, .seed = 1,
                     .heldout_seed = 0x5eed0001, .batch = 32, .lr = 1e-2, .wd = 0, .beta1 = 0.9, .beta2 = 0.99,
                     .warmup = 50, .max_steps = 20000, .eval_steps = 250, .min_gain = 0.03, .window_frac = 0.25,
                     .window_min = 500, .lr_drops = 2, .lr_drop_factor = 0.25};
}

int g3_cap_spec_check(const G3CapSpec *s) {
    if (s->layers < 1 || s->layers > G3_MAX_LAYERS) return g3_errorf("capacity: layers must be in [1, %d], not %d", G3_MAX_LAYERS, s->layers);
    if (s->width < 8 || s->width > 65536 || s->width % 8) return g3_errorf("capacity: width must be a multiple of 8 in [8, 65536], not %d", s->width);
    if (s->vocab < 2 || s->vocab > (1 << 20)) return g3_errorf("capacity: vocab must be in [2, 1048576], not %d", s->vocab);
    if (s->seq_len < 1 || s->seq_len > 4096) return g3_errorf("capacity: seq-len must be in [1, 4096], not %d", s->seq_len);
    if (s->nseq < 1 || s->nseq > (1 << 26)) return g3_errorf("capacity: sequences must be in [1, 67108864], not %lld", (long long)s->nseq);
    if (s->nheld < 1 || s->nheld > (1 << 26)) return g3_errorf("capacity: held-out sequences must be in [1, 67108864], not %lld", (long long)s->nheld);
    if (s->batch < 1 || s->batch > 65536) return g3_errorf("capacity: batch must be in [1, 65536], not %d", s->batch);
    if (!(s->lr > 0 && isfinite(s->lr))) return g3_errorf("capacity: lr must be a finite number > 0, not %g", s->lr);
    if (!(s->wd >= 0 && isfinite(s->wd))) return g3_errorf("capacity: wd must be a finite number >= 0, not %g", s->wd);
    if (!(s->beta1 >= 0 && s->beta1 < 1) || !(s->beta2 >= 0 && s->beta2 < 1)) return g3_errorf("capacity: betas must be in [0, 1)");
    if (s->max_steps < 1 || s->eval_steps < 1 || s->warmup < 0 || s->window_min < 1) return g3_errorf("capacity: step counts must be positive");
    if (s->lr_drops < 0 || s->lr_drops > 16 || !(s->lr_drop_factor > 0 && s->lr_drop_factor <= 1))
        return g3_errorf("capacity: lr-drops must be in [0, 16] and the drop factor in (0, 1]");
    if (!(s->min_gain >= 0 && s->min_gain < 10) || !(s->window_frac >= 0 && s->window_frac <= 1))
        return g3_errorf("capacity: min-gain must be in [0, 10) and window-frac in [0, 1]");
    return 0;
}

static int head_dim_of(int width) { return G3_MAX(16, width / 4) > width ? width : G3_MAX(16, width / 4); }

int g3_cap_config(G3Config *c, int layers, int width, int vocab, int seq_len) {
    if (g3_config_preset(c, "1b")) return -1;  // Gemma 3's constants (RoPE bases, eps, QK-norm, gelu-tanh, bos ids)
    const int hd = head_dim_of(width);
    c->vocab = vocab + 1;  // + the start token, id vocab
    c->hidden = width;
    c->inter = 4 * width;
    c->layers = layers;
    c->head_dim = hd;
    c->heads = width / hd;
    c->kv_heads = 1;
    c->query_pre_attn_scalar = (float)hd;
    c->sliding_window = 512;
    c->max_pos = G3_MAX(seq_len, 512);
    c->bos = vocab;
    c->eos = G3_MIN(1, vocab - 1);
    c->pad = 0;
    c->dtype = G3_F32;
    for (int i = 0; i < layers; i++) c->sliding[i] = (i + 1) % 6 != 0;
    return g3_config_validate(c, "capacity");
}

int64_t g3_cap_params(int layers, int width, int vocab, int seq_len) {
    G3Config c;
    if (g3_cap_config(&c, layers, width, vocab, seq_len)) return -1;
    const int64_t C = c.hidden, HD = c.head_dim, QD = (int64_t)c.heads * HD, F = c.inter;
    const int64_t layer = QD * C + 2 * HD * C + C * QD + 2 * HD + 4 * C + 3 * C * F;
    return (int64_t)c.vocab * C + C + layers * layer;
}

void g3_cap_tokens(int32_t *out, int64_t n, int T, int V, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) {
        G3Rng r;
        g3_rng_seed3(&r, seed, 0xda7a, (uint64_t)i);
        for (int t = 0; t < T; t++) out[i * T + t] = (int32_t)g3_rng_below(&r, (uint64_t)V);
    }
}

// Inputs and targets of B rows from sequences idx[0..k) (k <= B): input = start, x_0..x_{T-2};
// target = x_0..x_{T-1}. Rows past k are padding (start tokens, no target).
static void fill_batch(int32_t *in, int32_t *tg, const int32_t *seqs, const int64_t *idx, int k, int B, int T, int V) {
    for (int b = 0; b < B; b++) {
        int32_t *ib = in + (int64_t)b * T, *tb = tg + (int64_t)b * T;
        if (b >= k) {
            for (int t = 0; t < T; t++) ib[t] = V, tb[t] = -1;
            continue;
        }
        const int32_t *x = seqs + idx[b] * T;
        ib[0] = V;
        for (int t = 1; t < T; t++) ib[t] = x[t - 1];
        memcpy(tb, x, (size_t)T * sizeof *tb);
    }
}

int g3_cap_nll_bits(G3TrainModel *tm, G3TrainCtx *ctx, int B, const int32_t *seqs, int64_t n, int T, int V, double *nll_bits) {
    // The loss op of the context's backend gives each sequence's summed cross-entropy (nats,
    // in double, softmax over all V + 1 rows): on a GPU only B doubles a batch come back,
    // never the [B*T, V+1] logits (16 MiB a batch at V = 2048, and ~4M exps on one host core).
    const int64_t BT = (int64_t)B * T;
    int32_t *in = g3_malloc((size_t)BT * sizeof(int32_t)), *tg = g3_malloc((size_t)BT * sizeof(int32_t));
    int64_t *idx = g3_malloc((size_t)B * sizeof(int64_t));
    double *logp = g3_malloc((size_t)B * sizeof(double));
    int rc = -1;
    if (!in || !tg || !idx || !logp) goto out;
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        const int k = (int)G3_MIN((int64_t)B, n - i0);
        for (int b = 0; b < k; b++) idx[b] = i0 + b;
        fill_batch(in, tg, seqs, idx, k, B, T, V);
        if (g3_train_seq_logps(tm, ctx, in, tg, logp)) goto out;
        for (int b = 0; b < k; b++) nll_bits[i0 + b] = -logp[b] / M_LN2;
    }
    rc = 0;
out:
    free(in);
    free(tg);
    free(idx);
    free(logp);
    return rc;
}

double g3_cap_memorized(const double *nll_bits, int64_t n, double bits_per_seq) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += G3_MAX(0.0, bits_per_seq - nll_bits[i]);
    return s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double g3_cap_mia_f1(const double *m, int64_t nm, const double *h, int64_t nh) {
    if (nm < 1 || nh < 1) return NAN;
    double *all = g3_malloc((size_t)(nm + nh) * sizeof(double));
    if (!all) return NAN;
    memcpy(all, m, (size_t)nm * sizeof(double));
    memcpy(all + nm, h, (size_t)nh * sizeof(double));
    qsort(all, (size_t)(nm + nh), sizeof(double), cmp_double);
    const int64_t N = nm + nh;
    const double thr = N % 2 ? all[N / 2] : 0.5 * (all[N / 2 - 1] + all[N / 2]);
    free(all);
    int64_t tp = 0, fp = 0;
    for (int64_t i = 0; i < nm; i++) tp += m[i] <= thr;
    for (int64_t i = 0; i < nh; i++) fp += h[i] <= thr;
    const int64_t fn = nm - tp;
    return tp ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
}

void g3_cap_result_free(G3CapResult *r) {
    free(r->curve);
    memset(r, 0, sizeof *r);
}

static int add_point(G3CapResult *r, const G3CapPoint *p) {
    if (r->ncurve == r->capcurve) {
        int cap = r->capcurve ? 2 * r->capcurve : 64;
        G3CapPoint *c = g3_realloc(r->curve, (size_t)cap * sizeof *c);
        if (!c) return -1;
        r->curve = c;
        r->capcurve = cap;
    }
    r->curve[r->ncurve++] = *p;
    return 0;
}

// Grokking along training time: the held-out loss, at some evaluation at least twice as late
// as the one where the training loss saturated (came within 5% of its total fall), is lower
// by 0.05 nats or more than it was there. On uniform random data no held-out improvement is
// possible (nothing generalizes), so the flag must stay 0; it is there for other data.
static int grokking(const G3CapResult *r) {
    if (r->ncurve < 3) return 0;
    double lo = r->curve[0].train_loss;
    for (int i = 0; i < r->ncurve; i++) lo = G3_MIN(lo, r->curve[i].train_loss);
    const double fall = r->curve[0].train_loss - lo;
    int s = 0;
    while (s < r->ncurve - 1 && r->curve[s].train_loss > lo + 0.05 * fall) s++;
    for (int i = s + 1; i < r->ncurve; i++)
        if (r->curve[i].step >= 2 * G3_MAX(r->curve[s].step, 1) && r->curve[i].heldout_loss < r->curve[s].heldout_loss - 0.05) return 1;
    return 0;
}

typedef struct {
    const G3CapSpec *s;
    G3TrainModel *tm;
    G3TrainCtx *ctx;
    int B;
    const int32_t *train, *held;
    double *nll_train, *nll_held;
} Eval;

static int evaluate(const Eval *e, int64_t step, double epoch, double lr, G3CapPoint *p) {
    const G3CapSpec *s = e->s;
    const double bps = s->seq_len * log2((double)s->vocab);
    if (g3_cap_nll_bits(e->tm, e->ctx, e->B, e->train, s->nseq, s->seq_len, s->vocab, e->nll_train) ||
        g3_cap_nll_bits(e->tm, e->ctx, e->B, e->held, s->nheld, s->seq_len, s->vocab, e->nll_held))
        return -1;
    double st = 0, sh = 0;
    for (int64_t i = 0; i < s->nseq; i++) st += e->nll_train[i];
    for (int64_t i = 0; i < s->nheld; i++) sh += e->nll_held[i];
    *p = (G3CapPoint){.step = step, .epoch = epoch, .train_loss = st * M_LN2 / ((double)s->nseq * s->seq_len),
                      .heldout_loss = sh * M_LN2 / ((double)s->nheld * s->seq_len),
                      .memorized_bits = g3_cap_memorized(e->nll_train, s->nseq, bps), .lr = lr};
    if (!isfinite(p->train_loss) || !isfinite(p->heldout_loss))
        return g3_errorf("capacity: training diverged by step %lld (loss %g)", (long long)step, p->train_loss);
    return 0;
}

// Whether memorization has stopped growing at the newest evaluation (see G3CapSpec): over the
// last max(window_min, window_frac x steps of this learning-rate phase) steps, all inside the
// phase (since start, the step of the last learning-rate drop).
static int stopped_growing(const G3CapSpec *s, const G3CapResult *r, const double *best, int64_t start, int64_t *window) {
    const int k = r->ncurve - 1;
    const int64_t now = r->curve[k].step;
    *window = G3_MAX(s->window_min, (int64_t)(s->window_frac * (double)(now - start)));
    if (now - start < *window) return 0;
    int j = -1;  // the newest evaluation at least `window` steps ago, inside the phase
    for (int i = 0; i < k; i++)
        if (r->curve[i].step <= now - *window && r->curve[i].step >= start) j = i;
    return j >= 0 && best[j] > 0 && best[k] <= (1 + s->min_gain) * best[j];
}

int g3_cap_run(const G3CapSpec *s, G3CapResult *r, G3CapProgress progress, void *user) {
    memset(r, 0, sizeof *r);
    if (g3_cap_spec_check(s)) return -1;
    if (s->seed == s->heldout_seed) return g3_errorf("capacity: the held-out seed must differ from the training seed (%llu)", (unsigned long long)s->seed);
    const double t0 = g3_now();
    const int T = s->seq_len, V = s->vocab;
    const int B = (int)G3_MIN((int64_t)s->batch, s->nseq);
    const double bps = T * log2((double)V);
    G3Config cfg;
    if (g3_cap_config(&cfg, s->layers, s->width, V, T)) return -1;
    G3TrainModel tm = {0};
    G3AdamW opt = {0};
    G3TrainCtx *ctx = NULL;
    G3Backend *be = NULL;
    int rc = -1;
    int32_t *train = g3_malloc((size_t)s->nseq * T * sizeof(int32_t)), *held = g3_malloc((size_t)s->nheld * T * sizeof(int32_t));
    double *nll_train = g3_malloc((size_t)s->nseq * sizeof(double)), *nll_held = g3_malloc((size_t)s->nheld * sizeof(double));
    double *best = NULL;  // [ncurve] running best of memorized bits
    int64_t *perm = g3_malloc((size_t)s->nseq * sizeof(int64_t));
    int32_t *in = g3_malloc((size_t)B * T * sizeof(int32_t)), *tg = g3_malloc((size_t)B * T * sizeof(int32_t));
    if (!train || !held || !nll_train || !nll_held || !perm || !in || !tg) goto out;
    g3_cap_tokens(train, s->nseq, T, V, s->seed);
    g3_cap_tokens(held, s->nheld, T, V, s->heldout_seed);
    if (g3_train_model_new(&tm, &cfg)) goto out;
    g3_train_model_init_random(&tm, g3_mix64(s->seed ^ 0x1417), 0.02f);
    r->params = tm.n;
    r->bits_per_sequence = bps;
    G3AdamWConfig oc = {.beta1 = s->beta1, .beta2 = s->beta2, .eps = 1e-8, .weight_decay = s->wd, .bits = 32};
    if (g3_adamw_init_model(&opt, &oc, &tm, 0)) goto out;
    if (s->device && strcmp(s->device, "cpu") && !(be = g3_backend_open(s->device))) goto out;
    // on a device the parameters, gradients and AdamW moments stay there (resident)
    if (!(ctx = g3_train_ctx_new_on(&tm, be, B, T, 0, NULL)) || g3_train_ctx_resident(ctx)) goto out;
    g3_train_ctx_set_bf16(ctx, s->bf16);
    Eval ev = {s, &tm, ctx, B, train, held, nll_train, nll_held};

    const int64_t steps_per_epoch = (s->nseq + B - 1) / B;
    int64_t step = 0, last_eval = 0, phase_start = 0;
    int drops = 0;
    double lr_scale = 1, last_lr = s->lr;
    snprintf(r->stop_reason, sizeof r->stop_reason, "step cap %lld reached", (long long)s->max_steps);
    for (int64_t epoch = 0;; epoch++) {
        // evaluate at an epoch's end (epoch 0: the untrained model)
        if (epoch == 0 || step - last_eval >= s->eval_steps || step >= s->max_steps) {
            G3CapPoint p;
            if (evaluate(&ev, step, (double)epoch, s->cosine ? last_lr : s->lr * lr_scale, &p) || add_point(r, &p)) goto out;
            double *nb = g3_realloc(best, (size_t)r->ncurve * sizeof *best);
            if (!nb) goto out;
            best = nb;
            best[r->ncurve - 1] = G3_MAX(p.memorized_bits, r->ncurve > 1 ? best[r->ncurve - 2] : 0.0);
            last_eval = step;
            if (progress) progress(user, s, r, &p);
            if (s->cosine && step >= s->max_steps) {  // the decay has ended: did its tail still add bits?
                int j = -1;
                for (int i = 0; i < r->ncurve - 1; i++)
                    if (r->curve[i].step <= step - (int64_t)(s->window_frac * (double)s->max_steps)) j = i;
                const double tail = j >= 0 && best[j] > 0 ? best[r->ncurve - 1] / best[j] - 1 : INFINITY;
                r->converged = tail < s->min_gain;
                snprintf(r->stop_reason, sizeof r->stop_reason, "cosine decay over %lld steps ended; the last %g%% of it added %.2f%% bits",
                         (long long)s->max_steps, 100 * s->window_frac, 100 * tail);
                break;
            }
            if (p.memorized_bits >= 0.999 * bps * (double)s->nseq) {
                r->converged = 1;
                snprintf(r->stop_reason, sizeof r->stop_reason, "all bits memorized (>= 99.9%%)");
                break;
            }
            int64_t window;
            if (!s->cosine && stopped_growing(s, r, best, phase_start, &window)) {
                if (drops < s->lr_drops) {  // lower the learning rate and look again
                    drops++;
                    lr_scale *= s->lr_drop_factor;
                    phase_start = step;
                } else {
                    r->converged = 1;
                    snprintf(r->stop_reason, sizeof r->stop_reason, "memorized bits grew < %g%% over the last %lld steps at lr x%g", 100 * s->min_gain,
                             (long long)window, lr_scale);
                    break;
                }
            }
            if (step >= s->max_steps) break;
        }
        // one epoch: every sequence once, in an order drawn from (seed, epoch)
        G3Rng rng;
        g3_rng_seed3(&rng, s->seed, 0xe90c, (uint64_t)epoch);
        for (int64_t i = 0; i < s->nseq; i++) perm[i] = i;
        for (int64_t i = s->nseq - 1; i > 0; i--) {
            int64_t j = (int64_t)g3_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int64_t b0 = 0; b0 < steps_per_epoch * B; b0 += B) {
            const int k = (int)G3_MIN((int64_t)B, s->nseq - b0);
            fill_batch(in, tg, train, perm + b0, k, B, T, V);
            if (g3_train_ctx_zero_grads(ctx)) goto out;
            g3_error_clear();
            double loss = g3_train_forward_backward(&tm, ctx, in, tg, 1.0f);
            if (isnan(loss) && g3_error_is_set()) goto out;
            double lr = s->lr * lr_scale * (s->warmup > 0 && step < s->warmup ? (double)(step + 1) / (double)s->warmup : 1.0);
            if (s->cosine && step >= s->warmup)
                lr *= 0.5 * (1 + cos(M_PI * G3_MIN(1.0, (double)(step - s->warmup) / (double)G3_MAX(1, s->max_steps - s->warmup))));
            last_lr = lr;
            double norm = NAN;
            const int st = isfinite(loss) ? g3_train_ctx_step(ctx, &opt, lr, 1.0, &norm) : 1;
            if (st < 0) goto out;
            if (st > 0) {
                g3_errorf("capacity: training diverged at step %lld (loss %g, gradient norm %g)", (long long)step + 1, loss, norm);
                goto out;
            }
            step++;
        }
    }
    const G3CapPoint *last = &r->curve[r->ncurve - 1];
    r->memorized_bits = last->memorized_bits;
    r->memorized_fraction = r->memorized_bits / (bps * (double)s->nseq);
    r->bits_per_param = r->memorized_bits / (double)r->params;
    r->train_loss = last->train_loss;
    r->heldout_loss = last->heldout_loss;
    r->steps = step;
    r->epochs = last->epoch;
    const int64_t m = G3_MIN(s->nseq, s->nheld);  // balanced: as many members as non-members
    r->mia_f1 = g3_cap_mia_f1(nll_train, m, nll_held, m);
    r->grokking = grokking(r);
    if (s->save_dir && (g3_train_ctx_sync_host(ctx, &opt) || g3_train_model_save(&tm, s->save_dir, G3_F32))) goto out;
    r->seconds = g3_now() - t0;
    rc = 0;
out:
    if (rc) g3_cap_result_free(r);
    g3_train_ctx_free(ctx);
    g3_backend_free(be);
    g3_adamw_free(&opt);
    if (tm.params) g3_train_model_free(&tm);
    free(train);
    free(held);
    free(nll_train);
    free(nll_held);
    free(best);
    free(perm);
    free(in);
    free(tg);
    return rc;
}

static double best_of(const G3CapResult *r) {
    double b = 0;
    for (int i = 0; i < r->ncurve; i++) b = G3_MAX(b, r->curve[i].memorized_bits);
    return b;
}

void g3_cap_cell_json(FILE *f, const G3CapSpec *s, const G3CapResult *r) {
    G3Config c;
    if (g3_cap_config(&c, s->layers, s->width, s->vocab, s->seq_len)) memset(&c, 0, sizeof c);
    fprintf(f, "{\"layers\": %d, \"width\": %d, \"heads\": %d, \"kv_heads\": 1, \"head_dim\": %d, \"inter\": %d, ", s->layers,
            s->width, c.heads, c.head_dim, c.inter);
    fprintf(f, "\"vocab\": %d, \"seq_len\": %d, \"params\": %lld, \"sequences\": %lld, \"heldout_sequences\": %lld, ", s->vocab,
            s->seq_len, (long long)r->params, (long long)s->nseq, (long long)s->nheld);
    fprintf(f, "\"seed\": %llu, \"heldout_seed\": %llu, ", (unsigned long long)s->seed, (unsigned long long)s->heldout_seed);
    fprintf(f, "\"precision\": \"%s\", ", s->bf16 ? "bf16-mixed" : "f32");
    fprintf(f, "\"bits_per_sequence\": %.17g, \"dataset_bits\": %.17g, \"memorized_bits\": %.17g, \"memorized_bits_best\": %.17g, ",
            r->bits_per_sequence, r->bits_per_sequence * (double)s->nseq, r->memorized_bits, best_of(r));
    fprintf(f, "\"memorized_fraction\": %.9g, \"bits_per_param\": %.9g, \"train_loss\": %.9g, \"heldout_loss\": %.9g, "
               "\"uniform_loss\": %.9g, \"mia_f1\": %.9g, ",
            r->memorized_fraction, r->bits_per_param, r->train_loss, r->heldout_loss, log((double)s->vocab), r->mia_f1);
    fprintf(f, "\"converged\": %s, \"stop_reason\": ", r->converged ? "true" : "false");
    json_write_str(f, r->stop_reason, strlen(r->stop_reason));
    fprintf(f, ", \"grokking\": %s, \"steps\": %lld, \"epochs\": %.17g, \"seconds\": %.3f, ", r->grokking ? "true" : "false",
            (long long)r->steps, r->epochs, r->seconds);
    fprintf(f, "\"schedule\": \"%s\", \"cosine\": %d, ", s->cosine ? "cosine" : "plateau-drops", s->cosine);
    fprintf(f, "\"lr\": %.9g, \"wd\": %.9g, \"batch\": %d, \"warmup\": %lld, \"max_steps\": %lld, \"min_gain\": %.9g, \"lr_drops\": %d, "
               "\"lr_drop_factor\": %.9g, ", s->lr, s->wd, s->batch, (long long)s->warmup, (long long)s->max_steps, s->min_gain, s->lr_drops, s->lr_drop_factor);
    fprintf(f, "\"curve_columns\": [\"step\", \"epoch\", \"train_loss\", \"heldout_loss\", \"memorized_bits\", \"lr\"], \"curve\": [");
    for (int i = 0; i < r->ncurve; i++) {
        const G3CapPoint *p = &r->curve[i];
        fprintf(f, "%s[%lld, %.9g, %.9g, %.9g, %.9g, %.9g]", i ? ", " : "", (long long)p->step, p->epoch, p->train_loss, p->heldout_loss,
                p->memorized_bits, p->lr);
    }
    fprintf(f, "]}");
}
