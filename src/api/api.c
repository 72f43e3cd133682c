// api.c: include/gemma3.h over the library's modules. Each handle wraps the internal
// objects it stands for; nothing here computes anything itself. What this is not: a second
// copy of any logic (the pass, the engine, the trainer all live in their modules).
#include "gemma3.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../base/version.h"
#include "../analysis/intervene.h"
#include "../analysis/sae.h"
#include "../gen/engine.h"
#include "../model/forward.h"
#include "../model/record.h"
#include "../sampler/sampler.h"
#include "../tokenizer/tokenizer.h"
#include "../train/optim.h"
#include "../train/train.h"


const char *gemma3_last_error(void) { return g3_error(); }
const char *gemma3_version(void) { return "gemma3.c " G3_VERSION; }
void gemma3_free(void *p) { free(p); }

// ---- models ----

struct gemma3_model {
    G3Model m;
};

gemma3_model *gemma3_model_open(const char *path) {
    if (!path) { g3_errorf("model path is NULL"); return NULL; }
    gemma3_model *h = g3_calloc(1, sizeof *h);
    if (!h) return NULL;
    if (g3_model_load(&h->m, path)) { free(h); return NULL; }
    return h;
}

void gemma3_model_close(gemma3_model *h) {
    if (!h) return;
    g3_model_free(&h->m);
    free(h);
}

int gemma3_model_get_info(const gemma3_model *h, gemma3_model_info *out) {
    if (!h || !out) return g3_errorf("gemma3_model_get_info: NULL argument");
    const G3Config *c = &h->m.cfg;
    *out = (gemma3_model_info){c->vocab, c->hidden, c->inter, c->layers, c->heads, c->kv_heads, c->head_dim,
                               c->max_pos, c->sliding_window, c->family == G3_GEMMA2, h->m.nparams};
    return 0;
}

int gemma3_model_layer_sliding(const gemma3_model *h, int l) {
    if (!h || l < 0 || l >= h->m.cfg.layers) return -1;
    return h->m.cfg.sliding[l] != 0;
}

// ---- tokenizer ----

struct gemma3_tokenizer {
    G3Tokenizer *t;
};

gemma3_tokenizer *gemma3_tokenizer_open(const char *path) {
    if (!path) { g3_errorf("tokenizer path is NULL"); return NULL; }
    char p[4200];
    const char *file = path;
    static const char *names[] = {"tokenizer.json", "tokenizer.model"};
    for (size_t i = 0; i < G3_ARRAY_LEN(names) && file == path; i++)  // a model folder: its tokenizer
        if (!g3_path_join(p, sizeof p, path, names[i]) && g3_file_exists(p)) file = p;
    gemma3_tokenizer *h = g3_calloc(1, sizeof *h);
    if (!h) return NULL;
    if (!(h->t = g3_tok_load(file))) { free(h); return NULL; }
    return h;
}

void gemma3_tokenizer_close(gemma3_tokenizer *h) {
    if (!h) return;
    g3_tok_free(h->t);
    free(h);
}

int gemma3_tokenize(const gemma3_tokenizer *h, const char *text, size_t len, int add_bos, int32_t *ids, int cap) {
    if (!h || (!text && len)) return g3_errorf("gemma3_tokenize: NULL argument");
    int32_t *all;
    int n = g3_tok_encode(h->t, text ? text : "", len, add_bos, 0, &all);
    if (n < 0) return -1;
    if (ids) memcpy(ids, all, (size_t)G3_MIN(n, G3_MAX(cap, 0)) * sizeof *ids);
    free(all);
    return n;
}

char *gemma3_detokenize(const gemma3_tokenizer *h, const int32_t *ids, int n, int skip_special) {
    if (!h || (!ids && n)) { g3_errorf("gemma3_detokenize: NULL argument"); return NULL; }
    return g3_tok_decode(h->t, ids, n, skip_special, NULL);
}

int gemma3_token_bos(const gemma3_tokenizer *h) { return h ? g3_tok_bos(h->t) : -1; }
int gemma3_token_eos(const gemma3_tokenizer *h) { return h ? g3_tok_eos(h->t) : -1; }
int gemma3_token_end_of_turn(const gemma3_tokenizer *h) { return h ? g3_tok_end_of_turn(h->t) : -1; }

// ---- forward passes and hooks ----

typedef struct {
    G3HookSite site;
    int layer;
} Site;

struct gemma3_state {
    G3State *s;
    gemma3_hook_fn fn;
    void *ctx;
    uint8_t *want;  // [NSITES][layers + 1] sites the patterns select (index layer + 1)
    uint32_t hook_sites;
    uint64_t hook_layers;
    G3Recorder *rec;  // gemma3_state_record's arrays, or NULL
};

static void on_hook(void *ctx, const G3HookEvent *ev);

// The state's one hook serves both the caller's hook and the recorder: its sites and layers
// are the union of theirs.
static void state_attach(gemma3_state *h) {
    uint32_t sites = (h->fn ? h->hook_sites : 0) | (h->rec ? h->rec->sites : 0);
    uint64_t layers = (h->fn ? h->hook_layers : 0) | (h->rec ? h->rec->layers : 0);
    if (sites) g3_state_set_hook(h->s, on_hook, h, sites, layers ? layers : 1);
    else g3_state_set_hook(h->s, NULL, NULL, 0, 0);
}

gemma3_state *gemma3_state_new(const gemma3_model *m, int slots, int ctx, int max_rows, int exact) {
    if (!m) { g3_errorf("gemma3_state_new: NULL model"); return NULL; }
    gemma3_state *h = g3_calloc(1, sizeof *h);
    if (!h) return NULL;
    if (!(h->s = g3_state_new(&m->m, slots, ctx, max_rows, !exact, NULL))) { free(h); return NULL; }
    return h;
}

static void rec_free(gemma3_state *h) {
    if (h->rec) g3_rec_free(h->rec);
    free(h->rec);
    h->rec = NULL;
}

void gemma3_state_free(gemma3_state *h) {
    if (!h) return;
    g3_state_free(h->s);
    free(h->want);
    rec_free(h);
    free(h);
}

int gemma3_state_reset(gemma3_state *h, int slot) {
    if (!h || slot < 0 || slot >= h->s->nslots) return g3_errorf("slot %d outside [0, %d)", slot, h ? h->s->nslots : 0);
    g3_state_reset(h->s, slot);
    return 0;
}

int gemma3_state_length(const gemma3_state *h, int slot) {
    if (!h || slot < 0 || slot >= h->s->nslots) return g3_errorf("slot %d outside [0, %d)", slot, h ? h->s->nslots : 0);
    return h->s->len[slot];
}

int gemma3_forward(gemma3_state *h, int slot, const int32_t *ids, int n, float *logits, int last_only) {
    if (!h || !ids) return g3_errorf("gemma3_forward: NULL argument");
    const int V = h->s->m->cfg.vocab;
    if (logits && !last_only) return g3_prefill(h->s, slot, ids, n, logits);
    if (g3_prefill(h->s, slot, ids, n, NULL)) return -1;
    if (logits) memcpy(logits, h->s->logits, (size_t)V * sizeof(float));
    return 0;
}

static void on_hook(void *ctx, const G3HookEvent *ev) {
    gemma3_state *h = ctx;
    const int L = h->s->m->cfg.layers;
    if (h->fn && h->want[ev->site * (L + 1) + ev->layer + 1]) {
        char name[96];
        g3_hook_name(name, sizeof name, ev->site, ev->layer);
        gemma3_activation a = {name, ev->layer, ev->head, ev->seq, ev->pos0, ev->rows, ev->cols, ev->heads, ev->head_dim,
                               ev->key0, ev->data};
        h->fn(h->ctx, &a);
    }
    if (h->rec) g3_rec_hook(h->rec, ev);  // after the caller's edits
}

int gemma3_state_set_hook(gemma3_state *h, const char *const *patterns, int npat, gemma3_hook_fn fn, void *ctx) {
    if (!h) return g3_errorf("gemma3_state_set_hook: NULL state");
    if (!fn) {
        h->fn = NULL;
        state_attach(h);
        return 0;
    }
    const int L = h->s->m->cfg.layers;
    uint8_t *want = g3_calloc((size_t)G3_HOOK_NSITES * (L + 1), 1);
    if (!want) return -1;
    uint32_t sites = 0;
    uint64_t layers = 0;
    for (int k = 0; k < npat; k++) {
        int hit = 0;
        for (int si = 0; si < G3_HOOK_NSITES; si++)
            for (int l = g3_hook_site_layered((G3HookSite)si) ? 0 : -1; l < (g3_hook_site_layered((G3HookSite)si) ? L : 0); l++) {
                char name[96];
                if (!g3_hook_match(patterns[k], g3_hook_name(name, sizeof name, (G3HookSite)si, l))) continue;
                want[si * (L + 1) + l + 1] = 1;
                sites |= 1u << si;
                if (l >= 0) layers |= l < 64 ? 1ull << l : ~0ull;
                hit = 1;
            }
        if (!hit) {
            free(want);
            return g3_errorf("hook pattern '%s' matches no site of this model (gemma3_site_names lists them)", patterns[k]);
        }
    }
    free(h->want);
    h->want = want;
    h->fn = fn;
    h->ctx = ctx;
    h->hook_sites = sites;
    h->hook_layers = layers;
    state_attach(h);
    return 0;
}

int gemma3_site_width(const gemma3_model *m, const char *name) {
    if (!m || !name) return g3_errorf("gemma3_site_width: NULL argument");
    G3HookSite site;
    int layer;
    if (g3_hook_parse(name, &site, &layer)) return -1;
    if (layer >= m->m.cfg.layers) return g3_errorf("site '%s': the model has %d layers", name, m->m.cfg.layers);
    return g3_site_width(&m->m.cfg, site);
}

int gemma3_state_record(gemma3_state *h, const char *const *patterns, int npat) {
    if (!h || (npat > 0 && !patterns)) return g3_errorf("gemma3_state_record: NULL argument");
    G3Recorder *r = NULL;
    if (npat > 0) {
        if (!(r = g3_calloc(1, sizeof *r))) return -1;
        if (g3_rec_init(r, &h->s->m->cfg, h->s->nslots, h->s->ctx, patterns, npat)) { free(r); return -1; }
    }
    rec_free(h);
    h->rec = r;
    state_attach(h);
    return 0;
}

int gemma3_record_count(const gemma3_state *h) { return h && h->rec ? h->rec->narr : 0; }

const char *gemma3_record_array(gemma3_state *h, int i, int *ndim, int64_t shape[4], float **data) {
    if (!h || !h->rec || i < 0 || i >= h->rec->narr) { g3_errorf("recorded array %d does not exist", i); return NULL; }
    const G3RecArray *a = &h->rec->arr[i];
    if (ndim) *ndim = a->ndim;
    if (shape) for (int d = 0; d < 4; d++) shape[d] = d < a->ndim ? a->shape[d] : 1;
    if (data) *data = a->data;
    return a->name;
}

char *gemma3_site_names(const gemma3_model *m) {
    if (!m) { g3_errorf("gemma3_site_names: NULL model"); return NULL; }
    const int L = m->m.cfg.layers;
    size_t cap = (size_t)G3_HOOK_NSITES * (L + 1) * 64 + 1, n = 0;
    char *out = g3_malloc(cap);
    if (!out) return NULL;
    out[0] = 0;
    for (int si = 0; si < G3_HOOK_NSITES; si++) {
        int layered = g3_hook_site_layered((G3HookSite)si);
        for (int l = layered ? 0 : -1; l < (layered ? L : 0); l++) {
            char name[96];
            n += (size_t)snprintf(out + n, cap - n, "%s\n", g3_hook_name(name, sizeof name, (G3HookSite)si, l));
        }
    }
    return out;
}

// ---- generation ----

gemma3_sampling gemma3_sampling_defaults(void) {
    G3SamplerConfig c = g3_sampler_defaults();
    return (gemma3_sampling){c.temperature, c.top_k, c.top_p, c.min_p, c.repeat_penalty, c.presence_penalty,
                             c.frequency_penalty, c.seed};
}

struct gemma3_generator {
    G3State *s;
    gemma3_state hooks;  // the hook wrapper over s (gemma3_generator_set_hook)
    G3Engine *e;
    G3Sampler **samplers;  // [nsamplers] one per added sequence that samples (freed at the end)
    int nsamplers, capsamplers;
};

gemma3_generator *gemma3_generator_new(const gemma3_model *m, int slots, int ctx, int exact) {
    if (!m) { g3_errorf("gemma3_generator_new: NULL model"); return NULL; }
    gemma3_generator *g = g3_calloc(1, sizeof *g);
    if (!g) return NULL;
    // prefill chunks of up to 256 rows; decode steps take one row per live sequence
    if (!(g->s = g3_state_new(&m->m, slots, ctx, G3_MAX(slots, 256), !exact, NULL)) || !(g->e = g3_engine_new(g->s, NULL))) {
        gemma3_generator_free(g);
        return NULL;
    }
    g->hooks.s = g->s;
    return g;
}

void gemma3_generator_free(gemma3_generator *g) {
    if (!g) return;
    g3_engine_free(g->e);
    g3_state_free(g->s);
    free(g->hooks.want);
    for (int i = 0; i < g->nsamplers; i++) g3_sampler_free(g->samplers[i]);
    free(g->samplers);
    free(g);
}

int gemma3_generator_add(gemma3_generator *g, const int32_t *prompt, int n, int max_tokens, const int32_t *stop_ids, int nstop,
                         const gemma3_sampling *sp) {
    if (!g || !prompt) return g3_errorf("gemma3_generator_add: NULL argument");
    G3Sampler *smp = NULL;
    if (sp && sp->temperature > 0) {
        G3SamplerConfig c = {sp->temperature, sp->top_k, sp->top_p, sp->min_p, sp->repeat_penalty, 64, sp->presence_penalty,
                             sp->frequency_penalty, sp->seed};
        if (g3_sampler_config_check(&c)) return -1;
        if (g->nsamplers == g->capsamplers) {
            int cap = g->capsamplers ? 2 * g->capsamplers : 8;
            G3Sampler **ns = g3_realloc(g->samplers, (size_t)cap * sizeof *ns);
            if (!ns) return -1;
            g->samplers = ns;
            g->capsamplers = cap;
        }
        if (!(smp = g3_sampler_new(&c, g->s->m->cfg.vocab))) return -1;
        g->samplers[g->nsamplers++] = smp;
    }
    G3SeqParams p = {.prompt = prompt, .nprompt = n, .max_tokens = max_tokens, .stop_ids = stop_ids, .nstop = nstop,
                     .sampler = smp};
    return g3_engine_add(g->e, &p);
}

int gemma3_generator_step(gemma3_generator *g) {
    if (!g) return g3_errorf("gemma3_generator_step: NULL generator");
    return g3_engine_step(g->e);
}

int gemma3_generator_read(gemma3_generator *g, int id, const int32_t **ids, int *n, int *done) {
    if (!g || !ids || !n) return g3_errorf("gemma3_generator_read: NULL argument");
    G3SeqInfo info;
    if (g3_engine_read(g->e, id, &info)) return -1;
    *ids = info.ids;
    *n = info.n;
    if (done) *done = info.stop != G3_STOP_NONE;
    return 0;
}

int gemma3_generator_cancel(gemma3_generator *g, int id) {
    if (!g) return g3_errorf("gemma3_generator_cancel: NULL generator");
    return g3_engine_cancel(g->e, id);
}

int gemma3_generator_set_hook(gemma3_generator *g, const char *const *patterns, int npat, gemma3_hook_fn fn, void *ctx) {
    if (!g) return g3_errorf("gemma3_generator_set_hook: NULL generator");
    return gemma3_state_set_hook(&g->hooks, patterns, npat, fn, ctx);
}

// ---- training ----

gemma3_train_options gemma3_train_defaults(void) {
    G3AdamWConfig a = g3_adamw_defaults();
    return (gemma3_train_options){.batch = 1, .seq = 128, .lr = 1e-4, .weight_decay = a.weight_decay, .beta1 = a.beta1,
                                  .beta2 = a.beta2, .eps = a.eps, .clip = 1.0};
}

struct gemma3_trainer {
    G3TrainModel tm;
    G3TrainCtx *cx;
    G3AdamW opt;
    gemma3_train_options o;
    int have_grad;
};

gemma3_trainer *gemma3_trainer_new(const gemma3_model *m, const gemma3_train_options *o) {
    if (!m) { g3_errorf("gemma3_trainer_new: NULL model"); return NULL; }
    gemma3_train_options d = o ? *o : gemma3_train_defaults();
    if (d.batch < 1 || d.seq < 1) { g3_errorf("trainer: batch %d x seq %d: both must be >= 1", d.batch, d.seq); return NULL; }
    if (!(d.lr >= 0) || !isfinite(d.lr)) { g3_errorf("trainer: lr %g must be finite and >= 0", d.lr); return NULL; }
    gemma3_trainer *t = g3_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->o = d;
    G3AdamWConfig ac = {d.beta1, d.beta2, d.eps, d.weight_decay, 32};
    if (g3_train_model_from(&t->tm, &m->m) || !(t->cx = g3_train_ctx_new(&t->tm, d.batch, d.seq, d.recompute, NULL)) ||
        g3_adamw_init_model(&t->opt, &ac, &t->tm, 0)) {
        gemma3_trainer_free(t);
        return NULL;
    }
    g3_train_ctx_set_bf16(t->cx, d.bf16);
    return t;
}

void gemma3_trainer_free(gemma3_trainer *t) {
    if (!t) return;
    g3_train_ctx_free(t->cx);
    if (t->opt.n) g3_adamw_free(&t->opt);
    if (t->tm.m.t) g3_train_model_free(&t->tm);
    free(t);
}

double gemma3_trainer_loss(gemma3_trainer *t, const int32_t *inputs, const int32_t *targets) {
    if (!t || !inputs || !targets) { g3_errorf("gemma3_trainer_loss: NULL argument"); return NAN; }
    return g3_train_loss(&t->tm, t->cx, inputs, targets);
}

double gemma3_trainer_grad(gemma3_trainer *t, const int32_t *inputs, const int32_t *targets) {
    if (!t || !inputs || !targets) { g3_errorf("gemma3_trainer_grad: NULL argument"); return NAN; }
    g3_train_zero_grads(&t->tm);
    double loss = g3_train_forward_backward(&t->tm, t->cx, inputs, targets, 1.0f);
    t->have_grad = !isnan(loss);
    return loss;
}

const float *gemma3_trainer_tensor_grad(const gemma3_trainer *t, const char *name, int64_t *numel) {
    if (!t || !name) { g3_errorf("gemma3_trainer_tensor_grad: NULL argument"); return NULL; }
    for (int j = 0; j < t->tm.np; j++)
        if (!strcmp(t->tm.p[j].name, name)) {
            if (numel) *numel = t->tm.p[j].numel;
            return t->tm.grads + t->tm.p[j].off;
        }
    g3_errorf("no trainable tensor named '%s'", name);
    return NULL;
}

double gemma3_trainer_step(gemma3_trainer *t) {
    if (!t) return g3_errorf("gemma3_trainer_step: NULL trainer");
    if (!t->have_grad) return g3_errorf("gemma3_trainer_step: no gradient (call gemma3_trainer_grad first)");
    double norm = g3_grad_norm(t->tm.grads, t->tm.n);
    if (!isfinite(norm)) return g3_errorf("training diverged: the gradient norm is %g", norm);
    g3_adamw_step(&t->opt, t->tm.params, t->tm.grads, t->o.lr, g3_clip_scale(norm, t->o.clip));
    t->have_grad = 0;
    return norm;
}

int gemma3_trainer_save(const gemma3_trainer *t, const char *dir, int bf16) {
    if (!t || !dir) return g3_errorf("gemma3_trainer_save: NULL argument");
    return g3_train_model_save(&t->tm, dir, bf16 ? G3_BF16 : G3_F32);
}

int gemma3_trainer_tensor_count(const gemma3_trainer *t) { return t ? t->tm.np : g3_errorf("gemma3_trainer_tensor_count: NULL trainer"); }

const char *gemma3_trainer_tensor_info(const gemma3_trainer *t, int i, int *ndim, int64_t shape[2]) {
    if (!t || i < 0 || i >= t->tm.np) { g3_errorf("trainable tensor %d does not exist", i); return NULL; }
    const G3Param *p = &t->tm.p[i];
    if (ndim) *ndim = p->ndim;
    if (shape) { shape[0] = p->shape[0]; shape[1] = p->ndim > 1 ? p->shape[1] : 1; }
    return p->name;
}

// ---- sparse autoencoders ----

struct gemma3_sae {
    G3Sae s;
};

gemma3_sae *gemma3_sae_open(const char *path) {
    if (!path) { g3_errorf("SAE path is NULL"); return NULL; }
    gemma3_sae *h = g3_calloc(1, sizeof *h);
    if (!h) return NULL;
    if (g3_sae_load(&h->s, path)) { free(h); return NULL; }
    return h;
}

void gemma3_sae_close(gemma3_sae *h) {
    if (!h) return;
    g3_sae_free(&h->s);
    free(h);
}

int gemma3_sae_dims(const gemma3_sae *h, int *d_model, int *d_sae) {
    if (!h) return g3_errorf("gemma3_sae_dims: NULL SAE");
    if (d_model) *d_model = h->s.d_model;
    if (d_sae) *d_sae = h->s.d_sae;
    return 0;
}

const char *gemma3_sae_site(const gemma3_sae *h) { return h ? h->s.site : ""; }

int gemma3_sae_encode(const gemma3_sae *h, const float *x, int n, float *f) {
    if (!h || (n > 0 && (!x || !f)) || n < 0) return g3_errorf("gemma3_sae_encode: NULL argument or negative count");
    return g3_sae_encode(&h->s, x, n, f);
}

int gemma3_sae_decode(const gemma3_sae *h, const float *f, int n, float *x) {
    if (!h || (n > 0 && (!x || !f)) || n < 0) return g3_errorf("gemma3_sae_decode: NULL argument or negative count");
    g3_sae_decode(&h->s, f, n, x);
    return 0;
}
