// cmd_train.c: `gemma3 train`: from scratch (--init SHAPE) or fine-tuning (--model DIR) on a
// text file, a folder of *.txt files, a prepared token file, or JSONL examples (examples.h);
// all weights, or a LoRA adapter over the frozen base (--lora, lora.c), with next-token loss,
// DPO (--objective dpo, objective.h) or a classification head (--objective classify); AdamW (or 8-bit AdamW) with
// clipping, accumulation and a schedule; validation, metrics.jsonl, checkpoints; and automatic,
// bit-exact resumption when the same command runs again in the same --out folder. One run
// owns its folder (a lock); Ctrl-C saves a checkpoint and stops; a run that diverges says so
// and never saves the diverged weights; a run that fails before saving anything leaves no
// folder behind.
// The pieces live in src/train/ (data.h, optim.h, schedule.h, checkpoint.h, rundir.h,
// train.h); this file only wires them together and talks to the user.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "backend/backend.h"
#include "base/json.h"
#include "base/rng.h"
#include "cli.h"
#include "kernels/kernels.h"
#include "model/adapter.h"
#include "model/config.h"
#include "model/init.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/examples.h"
#include "train/objective.h"
#include "train/optim.h"
#include "train/rank1.h"
#include "train/relora.h"
#include "train/rundir.h"
#include "train/sbd.h"
#include "train/schedule.h"
#include "train/train.h"

#define CMD "train"

typedef struct {
    const char *init, *model, *tokenizer, *data, *val, *out, *schedule, *optim, *save_dtype, *matmul, *lora, *objective, *rank1;
    long epochs, steps, batch, seq, accum, warmup, decay_steps, eval_every, eval_batches, save_every, seed, threads, log_every;
    long relora_every, relora_rewarm, relora_warm;  // ReLoRA (relora.h): merge period, re-warm steps, full-rank warm start
    double lr, min_lr_ratio, wd, beta1, beta2, eps, clip, val_frac, std, beta, relora_prune;
    int ckpt_act, decay_embed, force;
    long erank;  // --erank N: the effective rank of W_t - W_0 every N steps (and at the end)
    int examples;  // --data is JSONL examples (examples.h), not a text stream
    int dpo;       // --objective dpo: micro-batches of --batch preference pairs (2 x batch sequences)
    int cls;       // --objective classify: a head on the last token (lora.c)
    int sbd;       // --objective sbd: Set Block Decoding's doubled layout (train/sbd.h)
    int pack;      // --pack: several whole examples a row, attention kept within each (examples.h)
    long sbd_kmin, sbd_kmax;
} Args;

// The run's settings as JSON, stored in the checkpoint. Keys listed in MAY_CHANGE may differ
// on resume; any other difference is refused, because the continuation would not be the run
// that was started.
static const char *MAY_CHANGE[] = {"steps", "eval_every", "eval_batches", "save_every", "threads", "log_every", "save_dtype", "checkpoint_activations"};

static char *run_json(const Args *a, const G3Config *c, int64_t ntrain, int64_t nval) {
    char *buf = g3_malloc(8192);
    if (!buf) return NULL;
    snprintf(buf, 8192,
             "{\"vocab\": %d, \"hidden\": %d, \"inter\": %d, \"layers\": %d, \"heads\": %d, \"kv_heads\": %d, \"head_dim\": %d, "
             "\"batch\": %ld, \"seq\": %ld, \"accum\": %ld, \"seed\": %ld, \"optim\": \"%s\", \"lr\": %.17g, \"min_lr_ratio\": %.17g, "
             "\"warmup\": %ld, \"schedule\": \"%s\", \"decay_steps\": %ld, \"wd\": %.17g, \"beta1\": %.17g, \"beta2\": %.17g, "
             "\"eps\": %.17g, \"clip\": %.17g, \"decay_embed\": %d, \"std\": %.17g, \"init\": \"%s\", \"train_tokens\": %lld, "
             "\"val_tokens\": %lld, \"steps\": %ld, \"eval_every\": %ld, \"eval_batches\": %ld, \"save_every\": %ld, "
             "\"threads\": %ld, \"log_every\": %ld, \"save_dtype\": \"%s\", \"checkpoint_activations\": %d, \"matmul\": \"%s\", "
             "\"examples\": %d, \"lora\": \"%s\", \"objective\": \"%s\", \"beta\": %.17g, \"relora_every\": %ld, "
             "\"relora_prune\": %.17g, \"relora_rewarm\": %ld, \"relora_warm_start\": %ld, \"rank1\": \"%s\"}",
             c->vocab, c->hidden, c->inter, c->layers, c->heads, c->kv_heads, c->head_dim, a->batch, a->seq, a->accum, a->seed,
             a->optim, a->lr, a->min_lr_ratio, a->warmup, a->schedule, a->decay_steps, a->wd, a->beta1, a->beta2, a->eps, a->clip,
             a->decay_embed, a->std, a->init ? a->init : a->model, (long long)ntrain, (long long)nval, a->steps, a->eval_every,
             a->eval_batches, a->save_every, a->threads, a->log_every, a->save_dtype, a->ckpt_act, a->matmul, a->examples, a->lora ? a->lora : "", a->objective, a->beta,
             a->relora_every, a->relora_prune, a->relora_rewarm, a->relora_warm, a->rank1 ? a->rank1 : "");
    size_t at = strlen(buf);
    if (a->sbd) snprintf(buf + at - 1, 8192 - at + 1, ", \"sbd_block_min\": %ld, \"sbd_block_max\": %ld}", a->sbd_kmin, a->sbd_kmax);
    at = strlen(buf);
    snprintf(buf + at - 1, 8192 - at + 1, ", \"pack\": %d}", a->pack);
    return buf;
}

// Compares the saved settings with this command's; an error lists every difference.
static int check_resume(const char *saved, const char *now, const char *out) {
    Json js, jn;
    if (json_parse(&js, saved, strlen(saved))) return g3_error_prefix("the checkpoint's run.json");
    if (json_parse(&jn, now, strlen(now))) { json_free(&js); return -1; }
    if (json_root(&js)->type != JSON_OBJECT) {
        json_free(&js);
        json_free(&jn);
        return g3_errorf("%s/run.json is not a JSON object of the run's settings (damaged? move it away to start afresh)", out);
    }
    char msg[2048] = "";
    size_t at = 0;
    JSON_FOREACH(m, json_root(&js)) {
        int free_key = 0;
        for (size_t i = 0; i < G3_ARRAY_LEN(MAY_CHANGE); i++) free_key |= !strcmp(m->key, MAY_CHANGE[i]);
        const JsonNode *n = json_get(json_root(&jn), m->key);
        if (free_key) continue;
        int same = n && n->type == m->type && (m->type == JSON_NUMBER ? m->num == n->num : !strcmp(m->str ? m->str : "", n->str ? n->str : ""));
        if (!same && at < sizeof msg - 200)
            at += (size_t)snprintf(msg + at, sizeof msg - at, "\n  %s: %s in the checkpoint, %s now", m->key, m->str ? m->str : "?",
                                   n && n->str ? n->str : "(absent)");
    }
    json_free(&js);
    json_free(&jn);
    if (at) return g3_errorf("%s holds a run with other settings; resume with the same ones (only --steps, --eval-every, "
                             "--save-every, --threads and logging may change), or use another --out:%s", out, msg);
    return 0;
}

// Keeps the lines of DIR/metrics.jsonl up to step `keep` (steps after the checkpoint will be
// logged again by the resumed run; a torn last line is dropped).
static int trim_metrics(const char *path, int64_t keep) {
    if (!g3_file_exists(path)) return 0;
    size_t len;
    char *text = g3_read_file(path, &len);
    if (!text) return -1;
    size_t w = 0;
    for (size_t i = 0; i < len;) {
        char *nl = memchr(text + i, '\n', len - i);
        if (!nl) break;  // torn line
        size_t e = (size_t)(nl - text) + 1;
        long long s;
        if (sscanf(text + i, "{\"step\": %lld", &s) == 1 && s <= keep) {
            memmove(text + w, text + i, e - i);
            w += e - i;
        }
        i = e;
    }
    int rc = g3_write_file_atomic(path, text, w);
    free(text);
    return rc;
}

static void fmt_time(char *buf, size_t cap, double s) {
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%.0fs", s);
}

static double mib(int64_t b) { return b / 1048576.0; }

// Opens (tokenizing first if it is text) the token file for path; cache names the token file
// to build in the run folder.
static int open_tokens(const Args *a, const char *path, const char *cache, G3TokenFile *tf) {
    if (g3_tokfile_is(path)) return g3_tokfile_open(tf, path);
    const char *tok = a->tokenizer ? a->tokenizer : a->model;
    if (!tok) return g3_errorf("%s is text: --tokenizer FILE is needed to tokenize it", path);
    if (g3_data_prepare(path, tok, cache, 1)) return -1;
    return g3_tokfile_open(tf, cache);
}

// Validation: over the token stream tok[n], or over the examples ex when they are given.
// DPO over micro-batch rows in/tg (pairs at 2i, 2i+1): the reference is the base with the
// adapter off. Fills st; with w (rows), w = -d loss / d logp * wscale (the backward's weights).
static int dpo_eval(G3TrainModel *tm, G3TrainCtx *ctx, const int32_t *in, const int32_t *tg, int rows, double beta, float *w, float wscale,
                    G3DpoStats *st) {
    double pol[2 * 512], ref[2 * 512], d[2 * 512];
    if (rows > 2 * 512) return g3_errorf("--objective dpo: at most 512 pairs a micro-batch");
    const struct G3Adapter *keep = tm->m.adapter;
    tm->m.adapter = NULL;
    int rc = g3_train_seq_logps(tm, ctx, in, tg, ref);
    tm->m.adapter = keep;
    if (rc || g3_train_seq_logps(tm, ctx, in, tg, pol)) return -1;
    g3_dpo(pol, ref, rows / 2, beta, d, st);
    if (w)
        for (int r = 0; r < rows; r++) w[r] = (float)(-d[r] * wscale);
    return 0;
}

// DPO validation: pairs k*B.. in file order; returns the loss, *acc the accuracy.
static double eval_dpo(G3TrainModel *tm, G3TrainCtx *ctx, const G3Examples *ex, const Args *a, int32_t *in, int32_t *tg, double *acc) {
    double s = 0;
    *acc = 0;
    int64_t seq[1024], np = g3_examples_count(ex);
    for (long k = 0; k < a->eval_batches; k++) {
        for (int b = 0; b < a->batch; b++) {
            int64_t pr = (k * a->batch + b) % np;
            seq[2 * b] = 2 * pr;
            seq[2 * b + 1] = 2 * pr + 1;
        }
        g3_examples_fill(ex, seq, (int)(2 * a->batch), (int)a->seq, in, tg);
        G3DpoStats st;
        if (dpo_eval(tm, ctx, in, tg, (int)(2 * a->batch), a->beta, NULL, 0, &st)) return NAN;
        s += st.loss;
        *acc += st.accuracy;
    }
    *acc /= (double)a->eval_batches;
    return s / (double)a->eval_batches;
}

// Classification validation: examples k*B.. in file order; returns the loss, *acc the accuracy.
static double eval_cls(G3TrainModel *tm, G3TrainCtx *ctx, const G3Examples *ex, const Args *a, int32_t *in, double *acc) {
    double s = 0;
    int64_t seq[1024], right = 0;
    int32_t last[1024], lab[1024];
    for (long k = 0; k < a->eval_batches; k++) {
        for (int b = 0; b < a->batch; b++) seq[b] = (k * a->batch + b) % ex->n;
        g3_examples_fill_cls(ex, seq, (int)a->batch, (int)a->seq, in, last, lab);
        int ok;
        double l = g3_train_classify(tm, ctx, in, last, lab, tm->lora_spec.classes, tm->params + tm->head_off, NULL, 0, 0, &ok);
        if (isnan(l)) return NAN;
        s += l;
        right += ok;
    }
    *acc = (double)right / (double)(a->eval_batches * a->batch);
    return s / (double)a->eval_batches;
}

static double eval_loss(G3TrainModel *tm, G3TrainCtx *ctx, const uint32_t *tok, int64_t n, const G3Examples *ex, const Args *a,
                        int32_t *in, int32_t *tg, G3Sbd *sbd, int32_t *in2, int32_t *tg2) {
    double s = 0;
    if (a->pack && g3_train_ctx_set_mask(ctx, NULL)) return NAN;  // validation rows are padded, one example each
    for (long k = 0; k < a->eval_batches; k++) {
        if (ex) g3_examples_val_batch(ex, (int)a->batch, (int)a->seq, k, in, tg);
        else g3_data_val_batch(tok, n, (int)a->batch, (int)a->seq, k, in, tg);
        if (sbd) {  // nothing masked: the clean half's next-token loss, exactly the causal model's
            g3_sbd_batch(sbd, 0, k, 0, in, tg, (int)a->batch, 0.0, in2, tg2);
            if (g3_train_ctx_set_mask(ctx, &sbd->mask)) return NAN;
            s += g3_train_loss(tm, ctx, in2, tg2);
        } else {
            s += g3_train_loss(tm, ctx, in, tg);
        }
    }
    return s / (double)a->eval_batches;
}

// Numbers that must be finite and in range; each test is written so that NaN fails it.
static int check_numbers(const Args *a) {
    if (!(a->lr > 0 && isfinite(a->lr))) return cli_fail(CMD, "--lr must be a finite number > 0, not %g", a->lr);
    if (!(a->clip >= 0 && isfinite(a->clip))) return cli_fail(CMD, "--clip must be a finite number >= 0 (0: no clipping), not %g", a->clip);
    if (!(a->std >= 0 && isfinite(a->std))) return cli_fail(CMD, "--std must be a finite number >= 0, not %g", a->std);
    if (!(a->wd >= 0 && isfinite(a->wd))) return cli_fail(CMD, "--wd must be a finite number >= 0, not %g", a->wd);
    if (!(a->eps > 0 && isfinite(a->eps))) return cli_fail(CMD, "--eps must be a finite number > 0, not %g", a->eps);
    if (!(a->beta1 >= 0 && a->beta1 < 1)) return cli_fail(CMD, "--beta1 must be in [0, 1), not %g", a->beta1);
    if (!(a->beta2 >= 0 && a->beta2 < 1)) return cli_fail(CMD, "--beta2 must be in [0, 1), not %g", a->beta2);
    if (!(a->val_frac > 0 && a->val_frac < 1)) return cli_fail(CMD, "--val-frac must be in (0, 1), not %g", a->val_frac);
    if (!(a->min_lr_ratio >= 0 && a->min_lr_ratio <= 1)) return cli_fail(CMD, "--min-lr-ratio must be in [0, 1], not %g", a->min_lr_ratio);
    return 0;
}

static int same_folder(const char *x, const char *y) {
    struct stat a, b;
    return stat(x, &a) == 0 && stat(y, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// The tokenizer this run reads (--tokenizer, else the --model folder's if it has one), or NULL.
static const char *run_tokenizer(const Args *a) {
    if (a->tokenizer) return a->tokenizer;
    char p[4200];
    if (a->model && ((!g3_path_join(p, sizeof p, a->model, "tokenizer.json") && g3_file_exists(p)) ||
                     (!g3_path_join(p, sizeof p, a->model, "tokenizer.model") && g3_file_exists(p))))
        return a->model;
    return NULL;
}

// ---- stopping on Ctrl-C (SIGINT) or SIGTERM ----
// The first signal asks the loop to stop after the step in flight and save; a second one
// kills at once (the checkpoint writes are atomic, so even that loses only the last steps).
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
    static const char msg[] = "\ntrain: stopping: finishing this step, then saving a checkpoint (a second Ctrl-C quits at once)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);  // async-signal-safe, unlike stdio
    (void)w;
}

// Model FLOPs per trained token (forward + backward = 3x the forward's 2 per multiply-add):
// the layers' projections, the tied head, and causal attention's two products (T/2 keys on
// average), as MFU is usually counted (no recomputation counted).
static double train_flops_per_token(const G3Config *c, long T) {
    const double C = c->hidden, F = c->inter, QD = (double)c->heads * c->head_dim, KD = (double)c->kv_heads * c->head_dim;
    const double per_layer = C * QD * 2 + C * KD * 2 + 3 * C * F;
    return 6.0 * (c->layers * per_layer + (double)c->vocab * C) + 6.0 * c->layers * (double)T * QD;
}

// ---- --erank: the effective rank of each layer's total update W_t - W_0 ----
static const G3LayerRole LINEAR[] = {W_Q, W_K, W_V, W_O, W_GATE, W_UP, W_DOWN};

// W_0 of every linear weight, f32 [nt] (NULL elsewhere): the --init draw again, or the source
// model's weights; for a LoRA over a frozen base nothing (the update is s B A itself).
static float **initial_weights(const G3TrainModel *tm, const G3Model *src, const Args *a) {
    float **w0 = g3_calloc((size_t)tm->m.nt, sizeof *w0);
    if (!w0 || (tm->lora && !tm->hybrid)) return w0;
    for (int l = 0; l < tm->m.cfg.layers; l++)
        for (size_t k = 0; k < G3_ARRAY_LEN(LINEAR); k++) {
            int i = tm->m.layer_idx[l][LINEAR[k]];
            if (i < 0) continue;
            const G3Tensor *t = &tm->m.t[i];
            if (!(w0[i] = g3_malloc(sizeof(float) * (size_t)t->numel))) return w0;  // the caller checks
            if (a->init) g3_init_tensor_f32(&tm->m, i, (uint64_t)a->seed, (float)a->std, w0[i]);
            else g3_to_f32(w0[i], src->t[i].data, src->t[i].dtype, (size_t)t->numel);
        }
    return w0;
}

static void free_initial(float **w0, int nt) {
    if (w0)
        for (int i = 0; i < nt; i++) free(w0[i]);
    free(w0);
}

// "update_erank": [per layer, the mean over its linear weights of erank(W_t - W_0)] (relora.h).
static int log_erank(FILE *mf, const G3TrainModel *tm, float **w0) {
    fprintf(mf, ", \"update_erank\": [");
    for (int l = 0; l < tm->m.cfg.layers; l++) {
        double s = 0;
        int n = 0;
        for (size_t k = 0; k < G3_ARRAY_LEN(LINEAR); k++) {
            int i = tm->m.layer_idx[l][LINEAR[k]];
            if (i < 0) continue;
            const G3Tensor *t = &tm->m.t[i];
            const G3LoraModule *md = tm->lora && !tm->hybrid ? g3_adapter_module(tm->lora, l, LINEAR[k]) : NULL;
            if (tm->lora && !tm->hybrid && !md) continue;
            float *d = g3_calloc((size_t)t->numel, sizeof *d);
            if (!d) return -1;
            if (md) {
                g3_lora_merge_f32(d, md, tm->lora->scale);
            } else {
                if (!w0[i] || g3_hybrid_weight(tm, i, d)) { free(d); return g3_errorf("--erank: no W_0 for %s", t->name); }
                for (int64_t e = 0; e < t->numel; e++) d[e] -= w0[i][e];
            }
            s += g3_effective_rank(d, t->shape[0], t->shape[1]);
            n++;
            free(d);
        }
        fprintf(mf, "%s%.4g", l ? ", " : "", n ? s / n : 0.0);
    }
    fprintf(mf, "]");
    return 0;
}

typedef enum { STEP_DONE, STEP_FAILED, STEP_DIVERGED, STEP_STOPPED } StepStatus;

typedef struct {
    const Args *a;
    G3TrainModel *tm;
    G3TrainCtx *ctx;
    G3AdamW *opt;
    const G3Schedule *sch;
    const uint32_t *tok;  // training tokens [n]
    int64_t n;
    G3Examples *ex;       // or the training examples (then tok is NULL)
    int32_t *in, *tg;     // [B*T] batch buffers ([2B*T] for DPO)
    G3DpoStats dpo;       // DPO: the last step's statistics (means over its micro-batches)
    G3Rank1 *r1;          // --rank1 svd|random: the linear weights' rank-1 updates, or NULL
    G3Sbd *sbd;           // --objective sbd: the layout, and the doubled batch [B*2T]
    int32_t *in2, *tg2;
    int32_t *pos, *seg;   // --pack: each row's positions and segments [B*T], the mask over them
    G3AttnMask pmask;
} Loop;

// One optimizer step: the micro-batches' forward/backward passes, then the AdamW update.
// g3_train_forward_backward reports failure in-band (NaN with g3_error() set), so the error is
// cleared before each call to tell a failure (STEP_FAILED) from a NaN loss. A loss or gradient
// norm that is not finite, or weights the update made non-finite, is STEP_DIVERGED (message
// set; the weights are not saved afterwards). A stop request abandons the step before its
// update (STEP_STOPPED: the weights are still the previous step's).
static StepStatus train_step(Loop *L, int64_t step, double *loss, double *norm, double *lr) {
    const Args *a = L->a;
    if (g3_train_ctx_zero_grads(L->ctx)) return STEP_FAILED;
    *loss = 0;
    L->dpo = (G3DpoStats){0};
    const float drop = L->tm->lora ? (float)L->tm->lora_spec.dropout : 0.0f;
    for (int mi = 0; mi < a->accum; mi++) {
        if (stop_signal) return STEP_STOPPED;
        // LoRA dropout: a fresh mask for each micro-batch, a function of (seed, step, micro-step)
        if (drop > 0) g3_train_ctx_set_lora_dropout(L->ctx, drop, g3_mix64(g3_mix64((uint64_t)a->seed ^ 0x64726f70ull) + (uint64_t)(step * a->accum + mi)));
        if (a->dpo) {  // pairs of slots (step * accum + mi) * B + b, sequences 2p and 2p + 1
            int64_t seq[1024];
            float w[1024];
            for (int b = 0; b < a->batch; b++) {
                int64_t pr = g3_examples_at(L->ex, (uint64_t)a->seed, (step * a->accum + mi) * a->batch + b);
                if (pr < 0) return STEP_FAILED;
                seq[2 * b] = 2 * pr;
                seq[2 * b + 1] = 2 * pr + 1;
            }
            g3_examples_fill(L->ex, seq, (int)(2 * a->batch), (int)a->seq, L->in, L->tg);
            G3DpoStats st;
            g3_error_clear();
            if (dpo_eval(L->tm, L->ctx, L->in, L->tg, (int)(2 * a->batch), a->beta, w, (float)(1.0 / (double)a->accum), &st) ||
                (isnan(g3_train_forward_backward_seq(L->tm, L->ctx, L->in, L->tg, w)) && g3_error_is_set()))
                return STEP_FAILED;
            *loss += st.loss / (double)a->accum;
            L->dpo.chosen += st.chosen / (double)a->accum;
            L->dpo.rejected += st.rejected / (double)a->accum;
            L->dpo.margin += st.margin / (double)a->accum;
            L->dpo.accuracy += st.accuracy / (double)a->accum;
            continue;
        }
        if (a->cls) {
            int64_t seq[1024];
            int32_t last[1024], lab[1024];
            for (int b = 0; b < a->batch; b++)
                if ((seq[b] = g3_examples_at(L->ex, (uint64_t)a->seed, (step * a->accum + mi) * a->batch + b)) < 0) return STEP_FAILED;
            g3_examples_fill_cls(L->ex, seq, (int)a->batch, (int)a->seq, L->in, last, lab);
            int ok;
            g3_error_clear();
            G3TrainModel *tm = L->tm;
            double l = g3_train_classify(tm, L->ctx, L->in, last, lab, tm->lora_spec.classes, tm->params + tm->head_off,
                                         tm->grads + tm->head_off, (float)(1.0 / (double)a->accum), 1, &ok);
            if (isnan(l) && g3_error_is_set()) return STEP_FAILED;
            *loss += l / (double)a->accum;
            L->dpo.accuracy += (double)ok / (double)a->batch / (double)a->accum;
            continue;
        }
        if (!L->ex) g3_data_batch(L->tok, L->n, (int)a->batch, (int)a->seq, (uint64_t)a->seed, step, mi, L->in, L->tg);
        else if (a->pack) {  // packed rows, each example attending to itself only
            if (g3_examples_pack_batch(L->ex, (int)a->batch, (int)a->seq, (uint64_t)a->seed, (step * a->accum + mi) * a->batch, L->in, L->tg,
                                       L->pos, L->seg) < 0 ||
                g3_train_ctx_set_mask(L->ctx, &L->pmask))
                return STEP_FAILED;
        } else if (g3_examples_batch(L->ex, (int)a->batch, (int)a->seq, (uint64_t)a->seed, (step * a->accum + mi) * a->batch, L->in, L->tg))
            return STEP_FAILED;
        g3_error_clear();
        const int32_t *fin = L->in, *ftg = L->tg;
        if (L->sbd) {  // [clean ; noisy copy], this step's block size and masks
            g3_sbd_batch(L->sbd, (uint64_t)a->seed, step, mi, L->in, L->tg, (int)a->batch, -1.0, L->in2, L->tg2);
            if (g3_train_ctx_set_mask(L->ctx, &L->sbd->mask)) return STEP_FAILED;
            fin = L->in2;
            ftg = L->tg2;
        }
        double l = g3_train_forward_backward(L->tm, L->ctx, fin, ftg, (float)(1.0 / (double)a->accum));
        if (isnan(l) && g3_error_is_set()) return STEP_FAILED;
        *loss += l / (double)a->accum;
    }
    g3_train_ctx_set_lora_dropout(L->ctx, 0, 0);  // evaluation runs without dropout
    *lr = g3_schedule_lr(L->sch, step);
    int rc = isfinite(*loss) ? g3_train_ctx_step(L->ctx, L->opt, *lr, a->clip, norm) : 1;
    if (rc < 0) return STEP_FAILED;
    if (rc > 0 && (!isfinite(*loss) || !isfinite(*norm))) {
        g3_errorf("training diverged at step %lld (loss %g, gradient norm %g)", (long long)step + 1, *loss, *norm);
        return STEP_DIVERGED;
    }
    if (!rc && L->r1) {  // rank-1 updates of the linear weights (AdamW skipped them), where the weights are
        const int r1 = g3_rank1_step_ctx(L->r1, L->tm, L->ctx, &L->opt->cfg, step, *lr, g3_clip_scale(*norm, a->clip));
        if (r1 < 0) return STEP_FAILED;
        rc = r1;
    }
    if (rc > 0) {  // e.g. a huge --lr: finite loss, then overflow
        g3_errorf("training diverged at step %lld (loss %g; the update made the weights non-finite)", (long long)step + 1, *loss);
        return STEP_DIVERGED;
    }
    return STEP_DONE;
}

int cmd_train(int argc, char **argv) {
    Args a = {.schedule = "cosine", .optim = "adamw", .save_dtype = "f32", .matmul = "f32", .steps = 1000, .batch = 8,
              .seq = 256, .accum = 1, .warmup = 100, .eval_every = 100, .eval_batches = 8, .save_every = 200, .seed = 1,
              .log_every = 1, .lr = 6e-4, .min_lr_ratio = 0.1, .wd = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .clip = 1.0, .val_frac = 0.05, .std = 0.02,
              .objective = "lm", .beta = 0.1, .relora_prune = 0.99, .relora_rewarm = 50, .sbd_kmin = 2, .sbd_kmax = 16};
    CliOpt opts[] = {
        {"--init", OPT_STR, &a.init, "train from scratch: 270m, 1b, 4b, 12b, 27b, tiny, stories (TinyStories on a CPU), or a config.json"},
        {"--model", OPT_STR, &a.model, "fine-tune this model folder instead"},
        {"--lora", OPT_STR, &a.lora, "train a LoRA adapter (with --model: base frozen as stored; with --init or --relora-every: over an f32 base, the rest trained): r=16,alpha=32,targets=all|q,k,v,o,gate,up,down,dropout=0.05,rslora (default r 16, alpha 2r, all, dropout 0); saved in PEFT's format, or as the merged model over an f32 base (docs/lora.md)"},
        {"--tokenizer", OPT_STR, &a.tokenizer, "tokenizer.json/.model (default: the --model folder's) to tokenize text data"},
        {"--data", OPT_STR, &a.data, "training data: a text file, a folder of *.txt, a token file, or examples in a .jsonl file (docs/lora.md)"},
        {"--val", OPT_STR, &a.val, "validation data (default: the last --val-frac of --data, at a document start)"},
        {"--val-frac", OPT_FLOAT, &a.val_frac, "held-out fraction of --data when --val is not given"},
        {"--out", OPT_STR, &a.out, "run folder: checkpoints, metrics.jsonl, token cache; resumes what it holds"},
        {"--steps", OPT_INT, &a.steps, "optimizer steps in all (may be raised to continue a finished run)", 1, 1L << 40},
        {"--pack", OPT_FLAG, &a.pack, "JSONL language-modelling examples: pack whole examples into each row, attention kept within each example (default: one example a row, padded)"},
        {"--epochs", OPT_INT, &a.epochs, "JSONL data: passes over the examples (sets --steps = ceil(epochs * examples / (batch * accum)); 0: use --steps)", 0, 1L << 30},
        {"--batch", OPT_INT, &a.batch, "sequences per micro-batch (B; --objective dpo: preference pairs)", 1, 1 << 20},
        {"--objective", OPT_STR, &a.objective, "lm (next-token cross-entropy), sbd (Set Block Decoding: next-token loss + masked blocks, docs/sbd.md), dpo (preference pairs; needs --lora: the reference is the base with the adapter off), or classify ({\"text\"|\"ids\", \"label\"}; needs --lora: a head on the last token, saved with the adapter)"},
        {"--beta", OPT_FLOAT, &a.beta, "--objective dpo: the DPO temperature beta"},
        {"--relora-every", OPT_INT, &a.relora_every, "ReLoRA (with --lora): merge the adapter into the base (held in f32) and start a fresh one every N steps (0: off; docs/lora.md)", 0, 1L << 40},
        {"--relora-prune", OPT_FLOAT, &a.relora_prune, "ReLoRA: fraction of the adapter's AdamW moments (smallest magnitudes) zeroed at each merge (1: reset)"},
        {"--relora-rewarm", OPT_INT, &a.relora_rewarm, "ReLoRA: steps of linear learning-rate re-warm after each merge (the jagged schedule)", 0, 1L << 40},
        {"--relora-warm-start", OPT_INT, &a.relora_warm, "ReLoRA: train every weight (full rank, adapter off) for the first STEPS steps", 0, 1L << 40},
        {"--rank1", OPT_STR, &a.rank1, "dynamic rank-1 updates of every linear weight: svd|random|lora[,every=T][,iters=2][,keep] (GaLore / Flora / COLA with rank 1; docs/lora.md)"},
        {"--erank", OPT_INT, &a.erank, "log the effective rank of each layer's total update W_t - W_0 every N steps and at the end (0: never; an eigen-decomposition per weight: small models)", 0, 1L << 40},
        {"--sbd-block-min", OPT_INT, &a.sbd_kmin, "--objective sbd: smallest block size drawn each step", 1, 1 << 20},
        {"--sbd-block-max", OPT_INT, &a.sbd_kmax, "--objective sbd: largest block size drawn each step", 1, 1 << 20},
        {"--seq", OPT_INT, &a.seq, "tokens per sequence (T)", 1, 1 << 20},
        {"--accum", OPT_INT, &a.accum, "micro-batches accumulated per step", 1, 1 << 20},
        {"--lr", OPT_FLOAT, &a.lr, "peak learning rate"},
        {"--min-lr-ratio", OPT_FLOAT, &a.min_lr_ratio, "final learning rate as a fraction of --lr (cosine, wsd)"},
        {"--warmup", OPT_INT, &a.warmup, "steps of linear warmup"},
        {"--schedule", OPT_STR, &a.schedule, "cosine, constant or wsd (warmup-stable-decay)"},
        {"--decay-steps", OPT_INT, &a.decay_steps, "wsd: steps of the final decay (0: 20% of --steps)"},
        {"--optim", OPT_STR, &a.optim, "adamw, or adamw8bit (block-wise 8-bit moments: ~2 instead of 8 bytes a parameter)"},
        {"--wd", OPT_FLOAT, &a.wd, "decoupled weight decay (matrices only; norms and embedding never)"},
        {"--decay-embed", OPT_FLAG, &a.decay_embed, "apply weight decay to the embedding too"},
        {"--beta1", OPT_FLOAT, &a.beta1, "AdamW beta1"},
        {"--beta2", OPT_FLOAT, &a.beta2, "AdamW beta2"},
        {"--eps", OPT_FLOAT, &a.eps, "AdamW epsilon"},
        {"--clip", OPT_FLOAT, &a.clip, "clip the global gradient norm to this (0: off)"},
        {"--checkpoint-activations", OPT_FLAG, &a.ckpt_act, "keep only each layer's input; recompute layers in backward"},
        {"--matmul", OPT_STR, &a.matmul, "f32 (exact), or bf16: matrix products of bf16 operands, f32 sums and state (mixed precision; ~1.5x faster with AVX512-BF16)"},
        {"--eval-every", OPT_INT, &a.eval_every, "validation loss every N steps (0: only at the end)"},
        {"--eval-batches", OPT_INT, &a.eval_batches, "batches of validation per evaluation", 1, 1 << 20},
        {"--save-every", OPT_INT, &a.save_every, "checkpoint every N steps (and always at the end; 0: only at the end)"},
        {"--save-dtype", OPT_STR, &a.save_dtype, "dtype of the exported model.safetensors: f32 or bf16 (the f32 master copy is kept either way)"},
        {"--std", OPT_FLOAT, &a.std, "--init: standard deviation of the random weights"},
        {"--seed", OPT_INT, &a.seed, "seed of the initialisation and of the batch order"},
        {"--threads", OPT_INT, &a.threads, "threads (0: all cores)"},
        {"--force", OPT_FLAG, &a.force, "allow --out to be a folder holding a model that is not a training run's (e.g. the --model folder): it is replaced"},
        {"--log-every", OPT_INT, &a.log_every, "progress line every N steps when stderr is not a terminal", 1, 1L << 40},
        CLI_DEVICE_OPT,
    };
    CLI_PARSE(CMD, "--init SHAPE|--model DIR --data PATH --out DIR [--tokenizer FILE] [options]", argc, argv, opts);
    if (!a.out || !a.data) return cli_fail(CMD, "--data and --out are required (see --help)");
    if (!a.init == !a.model) return cli_fail(CMD, "give exactly one of --init SHAPE (from scratch) and --model DIR (fine-tune)");
    a.examples = g3_examples_is(a.data);
    a.dpo = !strcmp(a.objective, "dpo");
    a.cls = !strcmp(a.objective, "classify");
    a.sbd = !strcmp(a.objective, "sbd");
    if (!a.dpo && !a.cls && !a.sbd && strcmp(a.objective, "lm")) return cli_fail(CMD, "--objective must be lm, sbd, dpo or classify, not '%s'", a.objective);
    if (a.sbd_kmin > a.sbd_kmax) return cli_fail(CMD, "--sbd-block-min %ld exceeds --sbd-block-max %ld", a.sbd_kmin, a.sbd_kmax);
    if (!a.sbd && (cli_given("--sbd-block-min") || cli_given("--sbd-block-max")))
        return cli_fail(CMD, "--sbd-block-min and --sbd-block-max are options of --objective sbd");
    if (a.cls && (!a.lora || !a.examples))
        return cli_fail(CMD, "--objective classify needs --lora and JSONL examples {\"text\" or \"ids\", \"label\"} as --data");
    if (a.pack && (!a.examples || a.dpo || a.cls || a.sbd))
        return cli_fail(CMD, "--pack packs JSONL language-modelling examples (--objective lm): text streams are windows already");
    if (a.batch > 1024 && (a.cls || a.dpo)) return cli_fail(CMD, "--objective %s: --batch at most 1024", a.objective);
    if (a.dpo && (!a.lora || !a.examples))
        return cli_fail(CMD, "--objective dpo needs --lora (the reference is the base with the adapter off) and JSONL preference pairs as --data");
    if (a.dpo && (!(a.beta > 0 && isfinite(a.beta)) || a.batch > 512)) return cli_fail(CMD, "--objective dpo: --beta must be > 0 and --batch at most 512");
    G3SchedKind sk;
    if (g3_schedule_parse(a.schedule, &sk)) return cli_fail(CMD, "%s", g3_error());
    int bits = !strcmp(a.optim, "adamw") ? 32 : !strcmp(a.optim, "adamw8bit") ? 8 : 0;
    if (!bits) return cli_fail(CMD, "--optim must be adamw or adamw8bit, not '%s'", a.optim);
    G3DType sdt = !strcmp(a.save_dtype, "f32") ? G3_F32 : !strcmp(a.save_dtype, "bf16") ? G3_BF16 : G3_DTYPE_COUNT;
    if (sdt == G3_DTYPE_COUNT) return cli_fail(CMD, "--save-dtype must be f32 or bf16");
    int bf16 = !strcmp(a.matmul, "bf16");
    if (!bf16 && strcmp(a.matmul, "f32")) return cli_fail(CMD, "--matmul must be f32 or bf16, not '%s'", a.matmul);
    if (check_numbers(&a)) return 1;
    G3LoraSpec lspec = {0};
    G3Rank1Spec r1spec = {0};
    if (a.rank1) {
        if (g3_rank1_parse(&r1spec, a.rank1)) return cli_fail(CMD, "%s", g3_error());
        if (a.lora || a.relora_every > 0) return cli_fail(CMD, "--rank1 replaces --lora / --relora-every (lora,every=T is ReLoRA with r = 1)");
        if (a.dpo || a.cls) return cli_fail(CMD, "--rank1 trains with --objective lm only");
        if (r1spec.mode == G3_RANK1_LORA) {  // COLA / ReLoRA with r = 1: a rank-1 LoRA merged every T steps
            a.lora = "r=1,alpha=1";
            a.relora_every = r1spec.every;
            a.relora_prune = 1;
            a.relora_rewarm = 0;
        }
    }
    const int rank1 = a.rank1 && r1spec.mode != G3_RANK1_LORA;
    if (a.relora_every > 0 || a.relora_warm > 0) {
        if (!a.lora) return cli_fail(CMD, "--relora-every / --relora-warm-start need --lora (the adapter that is merged)");
        if (a.dpo || a.cls) return cli_fail(CMD, "ReLoRA trains with --objective lm only");
        if (bits != 32) return cli_fail(CMD, "ReLoRA prunes 32-bit AdamW moments: use --optim adamw");
        if (!(a.relora_prune >= 0 && a.relora_prune <= 1)) return cli_fail(CMD, "--relora-prune must be in [0, 1], not %g", a.relora_prune);
    }
    const int hybrid = a.lora && (a.init || a.relora_every > 0 || a.relora_warm > 0);  // an f32 base in the table (relora.h)
    if (a.lora) {
        if (hybrid && (a.dpo || a.cls)) return cli_fail(CMD, "--lora with --init: --objective lm only");
        if (g3_lora_spec_parse(&lspec, a.lora)) return cli_fail(CMD, "%s", g3_error());
        if (lspec.dropout > 0 && a.dpo)  // as TRL's DPOTrainer (disable_dropout): the policy and its gradient see one network
            return cli_fail(CMD, "--lora dropout=%g with --objective dpo: DPO trains without dropout (use dropout=0)", lspec.dropout);
    }
    // A folder holding a model but no training state is not this run's to overwrite.
    if (!a.force && g3_dir_holds_model(a.out) && !g3_ckpt_exists(a.out)) {
        if (a.model && same_folder(a.model, a.out))
            return cli_fail(CMD, "--out %s is the --model folder: training would replace the base model there; give --force to allow "
                                 "it, or another --out", a.out);
        return cli_fail(CMD, "--out %s already holds a model (config.json / model.safetensors) and no training run: training would "
                             "replace it; give --force to allow it, or another --out", a.out);
    }
    cli_set_threads(a.threads);

    // ---- the model's shape and starting weights ----
    G3Config cfg;
    G3Model src = {0};
    if (a.init) {
        size_t n = strlen(a.init);
        int rc = n > 5 && !strcmp(a.init + n - 5, ".json") ? g3_config_load(&cfg, a.init) : g3_config_preset(&cfg, a.init);
        if (rc) return cli_fail(CMD, "%s", g3_error());
    } else {
        if (g3_model_load(&src, a.model)) return cli_fail(CMD, "%s", g3_error());
        cfg = src.cfg;
    }
    // ---- the run folder: made, locked against a second run, swept of dead temporaries ----
    G3RunDir rd;
    if (g3_rundir_open(&rd, a.out)) {
        if (src.t) g3_model_free(&src);
        return cli_fail(CMD, "%s", g3_error());
    }

    // ---- data ----
    int ret = 1;
    G3TokenFile tf = {0}, vf = {0};
    G3Examples ex = {0}, vex = {0};
    G3TrainModel tm = {0};
    G3AdamW opt = {0};
    G3TrainCtx *ctx = NULL;
    G3Backend *be = NULL;
    double peak = 0;  // the card's bf16 peak, FLOP/s, for the MFU (0: unknown)
    G3CkptInfo info = {0};
    char *rj = NULL;
    int32_t *in = NULL, *tg = NULL, *in2 = NULL, *tg2 = NULL, *pk_pos = NULL, *pk_seg = NULL;
    G3Sbd sbd = {0};
    FILE *mf = NULL;
    struct sigaction old_int, old_term;
    int handlers = 0;
    float **w0 = NULL;
    G3Rank1 r1 = {0};
    char path[4200], cache[4200];
    const uint32_t *train_tok = NULL, *val_tok = NULL;
    int64_t ntrain = 0, nval = 0;
    if (a.examples) {
        const char *tokp = run_tokenizer(&a);
        if (g3_examples_load(&ex, a.data, tokp, (int)a.seq, cfg.vocab)) goto fail;
        if ((ex.kind == G3_EX_PREF) != a.dpo || (ex.kind == G3_EX_CLASS) != a.cls) {
            if (a.cls) { g3_errorf("--objective classify: %s must hold {\"text\" or \"ids\", \"label\"} examples", a.data); goto fail; }
            if (a.dpo) { g3_errorf("--objective dpo: %s must hold preference pairs {\"prompt\", \"chosen\", \"rejected\"}", a.data); goto fail; }
            g3_errorf("%s holds %s examples: %s", a.data, ex.kind == G3_EX_PREF ? "preference" : "classification",
                      ex.kind == G3_EX_PREF ? "train on them with --objective dpo (and --lora)"
                                            : "train on them with --objective classify (and --lora)");
            goto fail;
        }
        if (a.val) {
            if (!g3_examples_is(a.val)) { g3_errorf("--val %s: with JSONL --data, --val must be a .jsonl file too", a.val); goto fail; }
            if (g3_examples_load(&vex, a.val, tokp, (int)a.seq, cfg.vocab)) goto fail;
            if (vex.kind != ex.kind) { g3_errorf("--val %s holds another kind of examples than --data %s", a.val, a.data); goto fail; }
        } else if (g3_examples_split(&ex, a.val_frac, &vex)) {
            goto fail;
        }
        ntrain = g3_examples_count(&ex);
        nval = g3_examples_count(&vex);
        if (a.cls) lspec.classes = G3_MAX(ex.nlabels, vex.nlabels);
        if (a.epochs > 0) {
            int64_t per = a.batch * a.accum, units = a.pack ? g3_examples_pack_rows(&ex, (int)a.seq, (uint64_t)a.seed, a.epochs) : a.epochs * ntrain;
            if (units < 0) goto fail;
            a.steps = (long)((units + per - 1) / per);
        }
        if (a.pack) {
            int64_t r1 = g3_examples_pack_rows(&ex, (int)a.seq, (uint64_t)a.seed, 1);
            if (r1 < 0) goto fail;
            fprintf(stderr, "train: packing %lld examples into %lld rows of %ld (epoch 1: %.2f examples a row)\n", (long long)ntrain,
                    (long long)r1, a.seq, (double)ntrain / (double)r1);
        }
    } else {
        if (a.epochs > 0) {
            g3_errorf("--epochs needs JSONL examples as --data (a text stream is sampled in windows: use --steps)");
            goto fail;
        }
        if (g3_path_join(cache, sizeof cache, a.out, "tokens-train.bin") || open_tokens(&a, a.data, cache, &tf)) goto fail;
        train_tok = tf.tok;
        ntrain = tf.ntok;
        if (a.val) {
            if (g3_path_join(cache, sizeof cache, a.out, "tokens-val.bin") || open_tokens(&a, a.val, cache, &vf)) goto fail;
            val_tok = vf.tok;
            nval = vf.ntok;
        } else {
            ntrain = g3_data_split(&tf, a.val_frac);
            val_tok = tf.tok + ntrain;
            nval = tf.ntok - ntrain;
        }
        if (tf.max_id >= cfg.vocab || (a.val && vf.max_id >= cfg.vocab)) {
            g3_errorf("the data holds token id %d, outside the model's vocabulary of %d: wrong tokenizer for this model?", G3_MAX(tf.max_id, vf.max_id), cfg.vocab);
            goto fail;
        }
        if (ntrain <= a.seq + 1 || nval <= a.seq + 1) {
            g3_errorf("too little data for --seq %ld: %lld training and %lld validation tokens", a.seq, (long long)ntrain, (long long)nval);
            goto fail;
        }
    }
    // The tokenizer goes with the run, so that generate/chat on it need no --tokenizer.
    const char *tokp = run_tokenizer(&a);
    if (tokp) {
        int copied, removed;
        if (g3_rundir_copy_tokenizer(a.out, tokp, &copied, &removed)) goto fail;
        if (copied) fprintf(stderr, "train: copied the tokenizer %s into %s\n", tokp, a.out);
        if (removed) fprintf(stderr, "train: removed %s/tokenizer.json: it would shadow this run's tokenizer.model\n", a.out);
    }

    // ---- model, optimizer, resume ----
    if (a.init) {
        if (g3_train_model_new(&tm, &cfg)) goto fail;
        g3_train_model_init_random(&tm, (uint64_t)a.seed, (float)a.std);
        if (hybrid && g3_train_model_add_lora(&tm, &lspec, (uint64_t)a.seed)) goto fail;
    } else if (hybrid) {
        if (g3_train_model_from(&tm, &src) || g3_train_model_add_lora(&tm, &lspec, (uint64_t)a.seed)) goto fail;
        tm.base_name = a.model;
    } else if (a.lora) {
        if (g3_train_model_lora(&tm, &src, &lspec, (uint64_t)a.seed, a.model)) goto fail;  // takes src over
    } else if (g3_train_model_from(&tm, &src)) {  // it makes tm itself (making it first leaked one)
        goto fail;
    }
    G3AdamWConfig oc = {.beta1 = a.beta1, .beta2 = a.beta2, .eps = a.eps, .weight_decay = a.wd, .bits = bits};
    if (g3_adamw_init_model(&opt, &oc, &tm, a.decay_embed)) goto fail;
    if (rank1 && g3_rank1_init(&r1, &r1spec, &tm, &opt, (uint64_t)a.seed)) goto fail;
    if (!(rj = run_json(&a, &cfg, ntrain, nval))) goto fail;
    int64_t start = 0;
    if (g3_path_join(path, sizeof path, a.out, "metrics.jsonl")) goto fail;
    if (g3_ckpt_exists(a.out)) {
        int current;
        if (g3_ckpt_load(a.out, &tm, &opt, &info, &current) || check_resume(info.run_json, rj, a.out)) goto fail;
        start = info.step;
        if (rank1 && g3_rank1_load(&r1, &tm, a.out, start)) goto fail;
        fprintf(stderr, "train: resuming %s from step %lld\n", a.out, (long long)start);
        free(info.run_json);
        info.run_json = rj;
        // The state was committed but its Hub export was cut short: redo it.
        if (!current && g3_ckpt_export(a.out, &tm, &info, sdt)) goto fail;
    }
    info.run_json = rj;
    info.seed = (uint64_t)a.seed;
    if (trim_metrics(path, start)) goto fail;
    if (start >= a.steps) {
        fprintf(stderr, "train: %s is already trained to step %lld (raise --steps to continue)\n", a.out, (long long)start);
        ret = 0;
        goto done;
    }

    // ---- memory report ----
    if (tm.hybrid) g3_hybrid_set_full_rank(&tm, &opt, start < a.relora_warm);  // the phase of the next step
    int64_t act = 0, act_other;
    const long rows = a.dpo ? 2 * a.batch : a.batch;  // sequences a micro-batch
    const long ctx_t = a.sbd ? 2 * a.seq : a.seq;      // rows a sequence: SBD doubles them
    int quant_base = 0;  // QLoRA over ggml's blocks: the CUDA backend has no kernels for them yet
    for (int i = 0; i < tm.m.nt; i++) quant_base |= tm.m.t[i].dtype != G3_F32 && tm.m.t[i].dtype != G3_BF16 && tm.m.t[i].dtype != G3_F16;
    if (cli_train_backend(&be, quant_base ? 3 : a.cls ? (a.lora ? 1 : 2) : a.sbd ? 2 : 0, CMD) ||
        !(ctx = g3_train_ctx_new_on(&tm, be, (int)rows, (int)ctx_t, a.ckpt_act, &act)) || g3_train_ctx_resident(ctx))
        goto fail;
    if (a.sbd) {
        // <mask>: the tokenizer's, else Gemma 3's id
        G3Tokenizer *mt = tokp ? g3_tok_load(tokp) : NULL;
        int mask_id = mt ? g3_tok_id_of(mt, "<mask>") : G3_SBD_MASK_ID;
        g3_tok_free(mt);
        if (tokp && !mt) goto fail;
        if (mask_id < 0 || mask_id >= cfg.vocab) {
            g3_errorf("--objective sbd: the tokenizer has no <mask> token inside the model's vocabulary of %d (id %d)", cfg.vocab, mask_id);
            goto fail;
        }
        if (g3_sbd_init(&sbd, (int)a.seq, (int)a.sbd_kmin, (int)a.sbd_kmax, mask_id)) goto fail;
        if (!(in2 = g3_malloc(sizeof *in2 * 2 * (size_t)(rows * a.seq))) || !(tg2 = g3_malloc(sizeof *tg2 * 2 * (size_t)(rows * a.seq)))) goto fail;
        fprintf(stderr, "train: set block decoding: <mask> id %d, blocks of %ld..%ld, rows [clean ; noisy] of 2 x %ld\n", mask_id,
                a.sbd_kmin, a.sbd_kmax, a.seq);
    }
    g3_train_ctx_set_bf16(ctx, bf16);
    if (be) {
        size_t fb = 0, tb = 0;
        g3_backend_cuda_mem(be, &fb, &tb);
        peak = g3_backend_cuda_peak_bf16(be);
        fprintf(stderr, "train: on %s (%s): parameters, gradients, %sAdamW moments and activations in GPU memory%s; %.1f of %.1f GiB free\n",
                be->name, g3_backend_cuda_device(be), bits == 8 ? "8-bit " : "",
                rank1 ? " (the rank-1 directions and moments on the host)" : "", fb / 1073741824.0, tb / 1073741824.0);
    }
    if (bf16 && !be)
        fprintf(stderr, "train: matrix products in bf16 (f32 sums, weights, gradients and optimizer state)%s\n",
                g3_gemm_bf16_native() ? "" : "; this CPU has no AVX512-BF16: they round as in bf16, at the f32 rate");
    act_other = g3_train_ctx_bytes(&tm, (int)rows, (int)ctx_t, !a.ckpt_act);  // the other mode's, sized only
    int64_t np = tm.n;
    fprintf(stderr, "train: %lld parameters (%s %d x %d, vocab %d); %lld train / %lld val %s; %ld x %ld x %ld tokens a step\n",
            (long long)np, a.init ? a.init : a.model, cfg.layers, cfg.hidden, cfg.vocab, (long long)ntrain, (long long)nval,
            a.examples ? "examples" : "tokens", a.batch, a.seq, a.accum);
    if (tm.lora && !tm.hybrid)
        fprintf(stderr, "train: LoRA r=%d alpha=%g%s on %d modules: %lld trainable parameters; the base (%.1f MiB) frozen as stored\n",
                lspec.r, lspec.alpha, lspec.rslora ? " (rsLoRA)" : "", tm.lora->nmodules, (long long)tm.n, mib(g3_model_weight_bytes(&tm.m)));
    if (tm.hybrid) {
        int64_t fro = 0, fac = 0;
        for (int j = 0; j < tm.np; j++) fac += tm.p[j].tensor < 0 ? tm.p[j].numel : 0;
        for (int l = 0; l < cfg.layers; l++)
            for (int r = 0; r < W_PER_LAYER; r++)
                if (g3_adapter_module(tm.lora, l, r)) fro += tm.m.t[tm.m.layer_idx[l][r]].numel;
        fprintf(stderr, "train: LoRA r=%d alpha=%g%s over an f32 base: %lld adapter parameters on %d modules; %lld adapted weights "
                        "frozen in f32 (%.1f MiB; their gradient and moment slots are allocated but unused), %lld other weights trained%s\n",
                lspec.r, lspec.alpha, lspec.rslora ? " (rsLoRA)" : "", (long long)fac, tm.lora->nmodules, (long long)fro, mib(4 * fro),
                (long long)(tm.n - fac - fro), a.relora_every > 0 ? "; ReLoRA merges them into the base" : "");
    }
    fprintf(stderr, "train: memory: %s %.1f MiB + grads %.1f MiB (f32); AdamW state %.1f MiB (%s; %.1f MiB with %s); "
                    "activations %.1f MiB (%.1f MiB %s activation checkpointing)\n",
            tm.lora && !tm.hybrid ? "adapter" : "weights", mib(4 * np), mib(4 * np), mib(g3_adamw_state_bytes(&opt, bits)), bits == 8 ? "8-bit" : "32-bit",
            mib(g3_adamw_state_bytes(&opt, bits == 8 ? 32 : 8)), bits == 8 ? "32-bit" : "8-bit", mib(act), mib(act_other),
            a.ckpt_act ? "without" : "with");

    if (a.erank > 0) {
        if (!(w0 = initial_weights(&tm, &src, &a))) goto fail;
        for (int i = 0; i < tm.m.nt; i++)
            if (!w0[i] && tm.m.t[i].kind != G3_KIND_NORM && (tm.hybrid || !tm.lora) && i != tm.m.embed_idx) {
                int lin = 0;
                for (int l = 0; l < cfg.layers; l++)
                    for (size_t k = 0; k < G3_ARRAY_LEN(LINEAR); k++) lin |= tm.m.layer_idx[l][LINEAR[k]] == i;
                if (lin) { g3_errorf("--erank: out of memory for W_0"); goto fail; }
            }
    }
    if (rank1) {
        int64_t full = 0;
        for (int k = 0; k < r1.n; k++) full += 8 * tm.p[r1.param[k]].numel;
        fprintf(stderr, "train: rank-1 updates (%s, new direction every %d steps%s) of %d linear weights: their optimizer state %.2f MiB "
                        "instead of AdamW's %.1f MiB (AdamW's slots for them stay allocated but untouched)\n",
                r1spec.mode == G3_RANK1_SVD ? "top singular vector of the gradient" : "random direction", r1spec.every,
                r1spec.keep ? ", moments kept" : ", moments reset", r1.n, mib(g3_rank1_state_bytes(&r1)), mib(full));
    }
    // ---- the loop ----
    size_t bt = (size_t)(rows * a.seq);
    in = g3_malloc(bt * sizeof *in);
    tg = g3_malloc(bt * sizeof *tg);
    if (!in || !tg || !(mf = fopen(path, "a"))) { if (in && tg) g3_errorf("%s: cannot append", path); goto fail; }
    G3Schedule sch = {sk, a.lr, a.min_lr_ratio, a.warmup, a.steps, a.decay_steps ? a.decay_steps : a.steps / 5};
    if (a.relora_every > 0 || a.relora_warm > 0) {  // ReLoRA's jagged schedule: a re-warm at the switch and after each merge
        sch.restart_first = a.relora_warm;
        sch.restart_every = a.relora_every > 0 ? a.relora_every : (int64_t)1 << 62;
        sch.restart_warmup = a.relora_rewarm;
    }
    Loop L = {&a, &tm, ctx, &opt, &sch, train_tok, ntrain, a.examples ? &ex : NULL, in, tg, {0}, rank1 ? &r1 : NULL, a.sbd ? &sbd : NULL, in2, tg2};
    if (a.pack) {
        if (!(L.pos = g3_malloc(bt * sizeof *L.pos)) || !(L.seg = g3_malloc(bt * sizeof *L.seg))) goto fail;
        pk_pos = L.pos;
        pk_seg = L.seg;
        L.pmask = (G3AttnMask){.pos = L.pos, .seg = L.seg, .stride = (int)a.seq};
    }
    int tty = isatty(2);
    double t_start = g3_now(), loss = NAN, last_loss = NAN;
    int64_t saved = start, done_steps = start;  // the last committed checkpoint's step; steps completed
    struct sigaction sa = {0};
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    stop_signal = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = 1;
    for (int64_t step = start; step < a.steps && !stop_signal; step++) {
        double t0 = g3_now(), norm = NAN, lr = NAN;
        StepStatus st = train_step(&L, step, &loss, &norm, &lr);
        if (st == STEP_STOPPED) break;
        if (st == STEP_FAILED) goto fail;
        if (st == STEP_DIVERGED) {
            char tail[300];
            if (saved > 0) snprintf(tail, sizeof tail, "; the last checkpoint (step %lld) in %s is intact", (long long)saved, a.out);
            else snprintf(tail, sizeof tail, "; no checkpoint was saved");
            char msg[1024];
            snprintf(msg, sizeof msg, "%s: lower --lr or raise --warmup%s", g3_error(), tail);
            g3_errorf("%s", msg);
            goto fail;
        }
        int64_t s1 = step + 1;
        done_steps = s1;
        last_loss = loss;
        double pruned = NAN;
        if (tm.hybrid && s1 == a.relora_warm) {  // the end of the full-rank warm start: the adapter takes over
            if (g3_train_ctx_sync_host(ctx, &opt)) goto fail;  // a device context's weights and moments, before it goes
            g3_hybrid_set_full_rank(&tm, &opt, 0);
            g3_train_ctx_free(ctx);
            if (!(ctx = L.ctx = g3_train_ctx_new_on(&tm, be, (int)rows, (int)a.seq, a.ckpt_act, NULL)) || g3_train_ctx_resident(ctx)) goto fail;
            g3_train_ctx_set_bf16(ctx, bf16);
            fprintf(stderr, "train: step %lld: full-rank warm start done; training the adapter from here\n", (long long)s1);
        } else if (tm.hybrid && a.relora_every > 0 && s1 > a.relora_warm && (s1 - a.relora_warm) % a.relora_every == 0) {
            // where the weights are (relora.h): on a GPU the merge runs there, only the new
            // factors and their pruned moments cross
            if (g3_train_ctx_relora_merge(ctx, &opt, a.relora_prune, (uint64_t)a.seed, (s1 - a.relora_warm) / a.relora_every, &pruned))
                goto fail;
        }
        double dt = g3_now() - t0, tps = (double)bt * (double)a.accum / dt;
        char mfu[32] = "";
        if (peak > 0) snprintf(mfu, sizeof mfu, " | MFU %.1f%%", 100.0 * tps * train_flops_per_token(&cfg, a.seq) / peak);
        double val = NAN, val_acc = NAN;
        if ((a.eval_every > 0 && s1 % a.eval_every == 0) || s1 == a.steps) {
            val = a.dpo   ? eval_dpo(&tm, ctx, &vex, &a, in, tg, &val_acc)
                  : a.cls ? eval_cls(&tm, ctx, &vex, &a, in, &val_acc)
                          : eval_loss(&tm, ctx, val_tok, nval, a.examples ? &vex : NULL, &a, in, tg, a.sbd ? &sbd : NULL, in2, tg2);
            if (isnan(val) && g3_error_is_set()) goto fail;
        }
        fprintf(mf, "{\"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"tokens\": %lld", (long long)s1,
                loss, lr, norm, tps, (long long)s1 * (long long)bt * a.accum);
        if (a.dpo)
            fprintf(mf, ", \"rewards_chosen\": %.6g, \"rewards_rejected\": %.6g, \"margin\": %.6g, \"accuracy\": %.4g", L.dpo.chosen,
                    L.dpo.rejected, L.dpo.margin, L.dpo.accuracy);
        if (a.cls) fprintf(mf, ", \"accuracy\": %.4g", L.dpo.accuracy);
        if (!isnan(val)) fprintf(mf, ", \"val_loss\": %.6f", val);
        if (!isnan(val_acc)) fprintf(mf, ", \"val_accuracy\": %.4g", val_acc);
        if (!isnan(pruned)) fprintf(mf, ", \"relora_merge\": %lld, \"relora_pruned\": %.6g", (long long)((s1 - a.relora_warm) / a.relora_every), pruned);
        if (rank1 && !isnan(val)) {  // |cos| of successive rank-1 directions, per layer
            double cl[G3_MAX_LAYERS];
            g3_rank1_layer_cos(&r1, cfg.layers, cl);
            if (!isnan(cl[0])) {
                fprintf(mf, ", \"rank1_cos\": [");
                for (int l = 0; l < cfg.layers; l++) fprintf(mf, "%s%.4g", l ? ", " : "", cl[l]);
                fprintf(mf, "]");
            }
        }
        const int erank_now = a.erank > 0 && (s1 % a.erank == 0 || s1 == a.steps);
        if ((erank_now || (tm.lora && tm.m.adapter && !isnan(val))) && g3_train_ctx_sync_host(ctx, NULL)) goto fail;  // host weights
        if (erank_now && log_erank(mf, &tm, w0)) goto fail;
        if (tm.lora && tm.m.adapter && !isnan(val)) {  // the adapter's update ||s B A|| per layer, at evaluations
            double nl[G3_MAX_LAYERS];
            g3_lora_layer_norms(&tm, nl);
            fprintf(mf, ", \"lora_update_norm\": [");
            for (int l = 0; l < cfg.layers; l++) fprintf(mf, "%s%.6g", l ? ", " : "", nl[l]);
            fprintf(mf, "]");
        }
        fprintf(mf, "}\n");
        fflush(mf);
        char eta[32], vs[40] = "";
        double el = g3_now() - t_start;
        fmt_time(eta, sizeof eta, el / (double)(s1 - start) * (double)(a.steps - s1));
        if (!isnan(val)) snprintf(vs, sizeof vs, " | val %.4f", val);
        if (tty || s1 % a.log_every == 0 || s1 == a.steps || !isnan(val))
            fprintf(stderr, "%sstep %lld/%ld | loss %.4f%s | lr %.2e | gnorm %.3f | %.0f tok/s%s | ETA %s%s", tty ? "\r" : "",
                    (long long)s1, a.steps, loss, vs, lr, norm, tps, mfu, eta, tty && isnan(val) ? "   " : "\n");
        if ((a.save_every > 0 && s1 % a.save_every == 0) || s1 == a.steps) {
            info.step = s1;
            info.loss = loss;
            if (g3_train_ctx_sync_host(ctx, &opt) || (rank1 && g3_rank1_save(&r1, &tm, a.out, s1)) || g3_ckpt_save(a.out, &tm, &opt, &info, sdt)) goto fail;
            saved = s1;
        }
    }
    if (tty) fputc('\n', stderr);
    if (stop_signal && done_steps < a.steps) {
        const char *sig = stop_signal == SIGINT ? "Ctrl-C (SIGINT)" : "SIGTERM";
        ret = 128 + stop_signal;
        if (done_steps > saved) {
            info.step = done_steps;
            info.loss = last_loss;
            if (g3_train_ctx_sync_host(ctx, &opt) || (rank1 && g3_rank1_save(&r1, &tm, a.out, done_steps)) || g3_ckpt_save(a.out, &tm, &opt, &info, sdt)) goto fail;
            saved = done_steps;
        }
        if (saved > 0)
            fprintf(stderr, "train: stopped by %s after step %lld; checkpoint of step %lld in %s: run the same command to resume\n", sig,
                    (long long)done_steps, (long long)saved, a.out);
        else
            fprintf(stderr, "train: stopped by %s before the first step completed: nothing to save\n", sig);
        goto done;
    }
    fprintf(stderr, "train: done: step %ld, loss %.4f, %.1f s; model in %s\n", a.steps, loss, g3_now() - t_start, a.out);
    ret = 0;
    goto done;
fail:
    if (isatty(2)) fputc('\n', stderr);
    cli_fail(CMD, "%s", g3_error());
done:
    if (handlers) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (mf) fclose(mf);
    free(in);
    free(tg);
    free(in2);
    free(tg2);
    free(pk_pos);
    free(pk_seg);
    g3_sbd_free(&sbd);
    if (info.run_json != rj) free(info.run_json);
    free(rj);
    g3_train_ctx_free(ctx);
    g3_backend_free(be);
    free_initial(w0, tm.m.nt);
    g3_rank1_free(&r1);
    g3_adamw_free(&opt);
    g3_train_model_free(&tm);
    g3_tokfile_close(&tf);
    g3_tokfile_close(&vf);
    g3_examples_free(&ex);
    g3_examples_free(&vex);
    if (src.t) g3_model_free(&src);
    // A run that failed before any checkpoint leaves no half-made folder (only if it made it).
    g3_rundir_close(&rd, ret == 1 && !g3_ckpt_exists(a.out));
    return ret;
}
