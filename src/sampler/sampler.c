// sampler.c: the sampling chain (see sampler.h). The steps are plain loops over a candidate
// list; the only cleverness is in never sorting the whole vocabulary: with top-k we keep a
// heap of k while reading the logits once, and for top-p alone we compute the softmax
// normaliser in one vectorised pass, try the best 64, and otherwise gather only the tokens that
// a bound allows into the nucleus and find its edge by quickselect on probability mass.
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/base.h"
#include "base/json.h"

struct G3Sampler {
    G3SamplerConfig cfg;
    int vocab;          // V
    G3Rng rng;
    G3Candidates cand;  // (V) scratch, reused for every token
    int32_t *counts;    // (V) penalty counts, all zero between calls
};

// ---- configuration ----

G3SamplerConfig g3_sampler_defaults(void) {
    return (G3SamplerConfig){.temperature = 1.0f, .top_k = 64, .top_p = 0.95f, .min_p = 0.0f,
                             .repeat_penalty = 1.0f, .repeat_window = 64, .presence_penalty = 0.0f,
                             .frequency_penalty = 0.0f, .seed = 0};
}

int g3_sampler_config_check(const G3SamplerConfig *c) {
    if (!(c->temperature >= 0 && isfinite(c->temperature)))
        return g3_errorf("sampler: temperature %g must be a finite number >= 0", c->temperature);
    if (c->top_k < 0) return g3_errorf("sampler: top_k %d must be >= 0 (0 = no limit)", c->top_k);
    if (!(c->top_p >= 0 && c->top_p <= 1)) return g3_errorf("sampler: top_p %g is outside [0, 1]", c->top_p);
    if (!(c->min_p >= 0 && c->min_p <= 1)) return g3_errorf("sampler: min_p %g is outside [0, 1]", c->min_p);
    if (!(c->repeat_penalty > 0 && isfinite(c->repeat_penalty)))
        return g3_errorf("sampler: repeat_penalty %g must be > 0 (1 = off)", c->repeat_penalty);
    if (c->repeat_window < 0) return g3_errorf("sampler: repeat_window %d must be >= 0 (0 = all)", c->repeat_window);
    if (!isfinite(c->presence_penalty) || !isfinite(c->frequency_penalty))
        return g3_errorf("sampler: presence and frequency penalties must be finite");
    return 0;
}

// Reads an optional number field into *out, checking [lo, hi]. null counts as absent.
static int read_number(const JsonNode *root, const char *file, const char *key, double lo, double hi,
                       double *out) {
    const JsonNode *n = json_get(root, key);
    if (json_is_null(n)) return 0;
    if (!json_is_number(n)) return g3_errorf("%s: field '%s' must be a number", file, key);
    if (!(n->num >= lo && n->num <= hi))
        return g3_errorf("%s: field '%s' = %g is outside [%g, %g]", file, key, n->num, lo, hi);
    *out = n->num;
    return 0;
}

int g3_sampler_config_from_generation_config(G3SamplerConfig *cfg, const char *path) {
    char file[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        if (g3_path_join(file, sizeof file, path, "generation_config.json"))
            return g3_errorf("%s: path too long", path);
    } else if (snprintf(file, sizeof file, "%s", path) >= (int)sizeof file) {
        return g3_errorf("%s: path too long", path);
    }
    if (!g3_file_exists(file)) return 0;  // nothing to override
    Json j;
    if (json_parse_file(&j, file)) return -1;
    const JsonNode *root = json_root(&j);
    G3SamplerConfig c = *cfg;
    double t = c.temperature, k = c.top_k, p = c.top_p, mp = c.min_p, rp = c.repeat_penalty;
    int rc = -1;
    if (root->type != JSON_OBJECT) { g3_errorf("%s: expected a JSON object", file); goto done; }
    if (read_number(root, file, "temperature", 0, 1e6, &t) || read_number(root, file, "top_p", 0, 1, &p) ||
        read_number(root, file, "min_p", 0, 1, &mp) ||
        read_number(root, file, "repetition_penalty", 1e-6, 1e6, &rp) ||
        read_number(root, file, "top_k", 0, 1 << 30, &k))
        goto done;
    const JsonNode *kn = json_get(root, "top_k");
    if (!json_is_null(kn) && !json_is_int(kn)) { g3_errorf("%s: field 'top_k' must be an integer", file); goto done; }
    c.temperature = (float)t;
    c.top_k = (int)k;
    c.top_p = (float)p;
    c.min_p = (float)mp;
    c.repeat_penalty = (float)rp;
    const JsonNode *ds = json_get(root, "do_sample");
    if (!json_is_null(ds)) {
        if (!json_is_bool(ds)) { g3_errorf("%s: field 'do_sample' must be true or false", file); goto done; }
        if (ds->type == JSON_FALSE) c.temperature = 0;  // transformers' greedy search
    }
    *cfg = c;
    rc = 0;
done:
    json_free(&j);
    return rc;
}

// ---- random numbers: src/base/rng.h (xoshiro256**, splitmix64 seeding) ----

// ---- numeric helpers ----

// e^x for x <= 0, within 2e-7 relative. glibc's expf is not vectorised at -O2, and the
// softmax normaliser over 262k logits (top-p without top-k) would cost a millisecond with it;
// this one is plain arithmetic that `omp simd` turns into vector code.
static inline float exp_le0(float x) {
    // Clamp to [-87, 0] on the bit pattern: float compares would keep gcc from vectorising.
    // Below -87, -inf and negative NaN become -87 (e^-87 ~ 1.6e-38 counts as 0 here);
    // zero, positive values and positive NaN become 0.
    union { float f; uint32_t u; } b = {.f = x};
    uint32_t u = b.u > 0x80000000u ? b.u : 0x80000000u;
    b.u = u < 0xC2AE0000u ? u : 0xC2AE0000u;
    x = b.f;
    float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round(x / ln 2), in [-126, 0]
    float r = x - n * 0.693359375f - n * -2.12194440e-4f;     // two-part ln 2 keeps r exact
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720))))));
    union { int32_t i; float f; } scale = {.i = ((int32_t)n + 127) << 23};  // 2^n
    return p * scale.f;
}

static inline float max_of(const float *x, int n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

// The largest of x[0..BLOCK): a constant trip count lets gcc keep the maxima in registers.
enum { BLOCK = 64 };
static inline float block_max(const float *x) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int i = 0; i < BLOCK; i++) m = x[i] > m ? x[i] : m;
    return m;
}

static float vocab_max(const float *x, int n) {
    float m = -INFINITY;
    int i = 0;
    for (; i + BLOCK <= n; i += BLOCK) m = G3_MAX(m, block_max(x + i));
    return i < n ? G3_MAX(m, max_of(x + i, n - i)) : m;
}

// sum over i of e^((x[i] - m) * inv_t) for one block of BLOCK logits.
static inline float block_sum_exp(const float *x, float m, float inv_t) {
    float z = 0;
#pragma omp simd reduction(+ : z)
    for (int i = 0; i < BLOCK; i++) z += exp_le0((x[i] - m) * inv_t);
    return z;
}

// The same over x[0..n), any n: blocks, then the tail; blocks add up in double. This pass over
// all V logits is most of the cost of top-p without top-k, so it is compiled for AVX-512 and
// AVX2 as well, picked when the program loads (gcc's target_clones).
__attribute__((target_clones("avx512f", "avx2", "default"))) static double sum_exp(const float *x, int n, float m, float inv_t) {
    double z = 0;
    int i = 0;
    for (; i + BLOCK <= n; i += BLOCK) z += block_sum_exp(x + i, m, inv_t);
    for (; i < n; i++) z += exp_le0((x[i] - m) * inv_t);
    return z;
}

// a ranks below b: a lower logit, or the same logit and a higher id.
static inline int worse(const G3Candidate *a, const G3Candidate *b) {
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static int cmp_better_first(const void *pa, const void *pb) {
    const G3Candidate *a = pa, *b = pb;
    return worse(a, b) ? 1 : worse(b, a) ? -1 : 0;
}

// ---- the steps ----

void g3_sample_penalties(float *logits, int vocab, const int32_t *window, int n, float repeat,
                         float presence, float frequency, int32_t *counts) {
    for (int i = 0; i < n; i++)
        if (window[i] >= 0 && window[i] < vocab) counts[window[i]]++;
    for (int i = 0; i < n; i++) {
        int t = window[i];
        if (t < 0 || t >= vocab || counts[t] == 0) continue;  // seen already: once per token
        float x = logits[t];
        if (repeat != 1.0f) x = x > 0 ? x / repeat : x * repeat;
        x -= (float)counts[t] * frequency + presence;
        logits[t] = x;
        counts[t] = 0;
    }
}

int g3_argmax(const float *logits, int vocab) {
    // Block maxima are vector code; a block is only searched when it beats the best so far.
    int best = 0;
    float bv = -INFINITY;
    for (int i = 0; i < vocab; i += BLOCK) {
        int n = G3_MIN(BLOCK, vocab - i);
        if (!((n == BLOCK ? block_max(logits + i) : max_of(logits + i, n)) > bv)) continue;
        for (int j = i; j < i + n; j++)
            if (logits[j] > bv) { bv = logits[j]; best = j; }
    }
    return best;
}

// Restores the heap order (worst at the root) below position i.
static void sift_down(G3Candidate *h, int n, int i) {
    G3Candidate x = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && worse(&h[c + 1], &h[c])) c++;
        if (!worse(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

void g3_sample_select_top_k(G3Candidates *out, const float *logits, int vocab, int k) {
    k = G3_MAX(1, G3_MIN(k, G3_MIN(vocab, out->cap)));
    G3Candidate *h = out->c;  // (k) heap whose root is the worst kept candidate
    for (int i = 0; i < k; i++) h[i] = (G3Candidate){i, logits[i] == logits[i] ? logits[i] : -INFINITY, 0};
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(h, k, i);
    // Later ids lose ties, so a logit must beat the root strictly to enter.
    for (int i = k; i < vocab; i += BLOCK) {
        int n = G3_MIN(BLOCK, vocab - i);
        if (!((n == BLOCK ? block_max(logits + i) : max_of(logits + i, n)) > h[0].logit)) continue;
        for (int j = i; j < i + n; j++)
            if (logits[j] > h[0].logit) {
                h[0] = (G3Candidate){j, logits[j], 0};
                sift_down(h, k, 0);
            }
    }
    for (int n = k; n > 1; n--) {  // heap sort: the worst goes last, so the best ends first
        G3Candidate t = h[0];
        h[0] = h[n - 1];
        h[n - 1] = t;
        sift_down(h, n - 1, 0);
    }
    out->n = k;
    out->sorted = 1;
}

void g3_sample_sort(G3Candidates *c) {
    if (!c->sorted) qsort(c->c, (size_t)c->n, sizeof *c->c, cmp_better_first);
    c->sorted = 1;
}

void g3_sample_top_k(G3Candidates *c, int k) {
    if (k <= 0 || k >= c->n) return;
    g3_sample_sort(c);
    c->n = k;
}

void g3_sample_temperature(G3Candidates *c, float t) {
    for (int i = 0; i < c->n; i++) c->c[i].logit /= t;
}

void g3_sample_softmax(G3Candidates *c) {
    float m = -INFINITY;
    for (int i = 0; i < c->n; i++) m = G3_MAX(m, c->c[i].logit);
    double z = 0;
    for (int i = 0; i < c->n; i++) z += c->c[i].p = exp_le0(c->c[i].logit - m);
    for (int i = 0; i < c->n; i++) c->c[i].p = (float)(c->c[i].p / z);
}

int g3_sample_top_p(G3Candidates *c, float top_p) {
    if (top_p >= 1.0f || c->n == 0) return 1;
    g3_sample_sort(c);
    double cum = 0;
    for (int i = 0; i < c->n; i++) {
        if (i > 0 && cum >= top_p) { c->n = i; return 1; }
        cum += c->c[i].p;
    }
    return cum >= top_p;
}

void g3_sample_min_p(G3Candidates *c, float min_p) {
    if (min_p <= 0.0f || c->n == 0) return;
    float pmax = 0;
    for (int i = 0; i < c->n; i++) pmax = G3_MAX(pmax, c->c[i].p);
    float thr = min_p * pmax;
    int n = 0;
    for (int i = 0; i < c->n; i++)
        if (c->c[i].p >= thr) c->c[n++] = c->c[i];
    c->n = n;
}

void g3_sample_normalize(G3Candidates *c) {
    double z = 0;
    for (int i = 0; i < c->n; i++) z += c->c[i].p;
    if (z > 0)
        for (int i = 0; i < c->n; i++) c->c[i].p = (float)(c->c[i].p / z);
}

int32_t g3_sample_pick(const G3Candidates *c, double u) {
    if (c->n == 0) return -1;
    double total = 0, cum = 0;
    for (int i = 0; i < c->n; i++) total += c->c[i].p;
    double target = u * total;
    for (int i = 0; i < c->n; i++) {
        cum += c->c[i].p;
        if (target < cum) return c->c[i].id;
    }
    return c->c[c->n - 1].id;  // u * total rounded up to the total
}

// ---- the chain ----

G3Sampler *g3_sampler_new(const G3SamplerConfig *cfg, int vocab) {
    if (g3_sampler_config_check(cfg)) return NULL;
    if (vocab <= 0) { g3_errorf("sampler: vocabulary size %d must be positive", vocab); return NULL; }
    G3Sampler *s = g3_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->cfg = *cfg;
    s->vocab = vocab;
    s->cand.c = g3_malloc((size_t)vocab * sizeof *s->cand.c);
    s->cand.cap = vocab;
    s->counts = g3_calloc((size_t)vocab, sizeof *s->counts);
    if (!s->cand.c || !s->counts) { g3_sampler_free(s); return NULL; }
    g3_rng_seed(&s->rng, cfg->seed);
    return s;
}

void g3_sampler_free(G3Sampler *s) {
    if (!s) return;
    free(s->cand.c);
    free(s->counts);
    free(s);
}

void g3_sampler_reseed(G3Sampler *s, uint64_t seed) { g3_rng_seed(&s->rng, seed); }

static int apply_penalties(G3Sampler *s, float *logits, const int32_t *history, int nhistory) {
    const G3SamplerConfig *c = &s->cfg;
    if (c->repeat_penalty == 1.0f && c->presence_penalty == 0.0f && c->frequency_penalty == 0.0f) return 0;
    if (!history || nhistory <= 0) return 0;
    int w = c->repeat_window > 0 ? G3_MIN(c->repeat_window, nhistory) : nhistory;
    const int32_t *win = history + nhistory - w;
    for (int i = 0; i < w; i++)
        if (win[i] < 0 || win[i] >= s->vocab)
            return g3_errorf("sampler: history token %d at position %d is outside the vocabulary (%d)",
                             (int)win[i], nhistory - w + i, s->vocab);
    g3_sample_penalties(logits, s->vocab, win, w, c->repeat_penalty, c->presence_penalty, c->frequency_penalty,
                        s->counts);
    return 0;
}

// Every token as a candidate, with p unnormalised; for the rare configurations that keep the
// whole vocabulary or a very flat nucleus.
static void all_candidates(G3Sampler *s, const float *logits, float m, float inv_t) {
    G3Candidates *c = &s->cand;
    for (int i = 0; i < s->vocab; i++)
        c->c[i] = (G3Candidate){i, logits[i] * inv_t, exp_le0((logits[i] - m) * inv_t)};
    c->n = s->vocab;
    c->sorted = 0;
}

// Nucleus of a whole-vocabulary list (p = probabilities) by quickselect on mass: partition
// around a pivot, keep the better side whole if its mass is short of top_p, else descend
// into it. Expected O(V), and the nucleus comes out unsorted.
static void nucleus_by_selection(G3Candidates *c, float top_p) {
    G3Candidate *a = c->c, t;
    int lo = 0, hi = c->n;  // a[0..lo) is in the nucleus; the crossing candidate is in a[lo..hi)
    double acc = 0;         // mass of a[0..lo)
#define SWAP(i, j) (t = a[i], a[i] = a[j], a[j] = t)
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, last = hi - 1;  // median of three as the pivot, kept at last
        if (worse(&a[mid], &a[lo])) SWAP(mid, lo);
        if (worse(&a[last], &a[lo])) SWAP(last, lo);
        if (worse(&a[mid], &a[last])) SWAP(mid, last);
        int j = lo;
        double mass = 0;
        for (int i = lo; i < last; i++)
            if (worse(&a[last], &a[i])) { mass += a[i].p; SWAP(i, j); j++; }
        SWAP(j, last);
        if (acc + mass >= top_p) { hi = j; continue; }
        acc += mass + a[j].p;
        if (acc >= top_p) { hi = j + 1; break; }
        lo = j + 1;
    }
#undef SWAP
    c->n = hi;
}

// The chain after the top-k selection (s->cand holds the k best, sorted): temperature, softmax,
// top-p, min-p. One function for the host's selection and a device's (g3_sampler_finish), so
// the two cannot drift apart.
static void after_top_k(G3Sampler *s) {
    const G3SamplerConfig *cfg = &s->cfg;
    G3Candidates *c = &s->cand;
    g3_sample_temperature(c, cfg->temperature);
    g3_sample_softmax(c);
    g3_sample_top_p(c, cfg->top_p);
    g3_sample_min_p(c, cfg->min_p);
}

// Builds the final candidate list for temperature > 0 (p unnormalised).
static void build(G3Sampler *s, const float *logits) {
    const G3SamplerConfig *cfg = &s->cfg;
    G3Candidates *c = &s->cand;
    int V = s->vocab;
    float inv_t = 1.0f / cfg->temperature;
    if (cfg->top_k > 0 && cfg->top_k < V) {  // the usual case: at most k candidates from here on
        g3_sample_select_top_k(c, logits, V, cfg->top_k);
        after_top_k(s);
        return;
    }
    if (cfg->top_p < 1.0f) {
        // The nucleus needs the normaliser of the whole softmax. A peaked distribution puts it
        // among the best 64; otherwise, every token with p < (1 - top_p) / V is outside it
        // (the tokens at or below it weigh less than 1 - top_p in all), so only the tokens
        // above that bound are gathered and searched.
        float m = vocab_max(logits, V);
        double z = sum_exp(logits, V, m, inv_t);
        g3_sample_select_top_k(c, logits, V, 64);
        for (int i = 0; i < c->n; i++) {
            c->c[i].p = (float)(exp_le0((c->c[i].logit - m) * inv_t) / z);
            c->c[i].logit *= inv_t;
        }
        if (!g3_sample_top_p(c, cfg->top_p) && c->n < V) {
            float bound = m + cfg->temperature * logf((float)((1.0 - cfg->top_p) * z / V));
            int n = 0;
            for (int i = 0; i < V; i++)
                if (logits[i] >= bound)
                    c->c[n++] = (G3Candidate){i, logits[i] * inv_t, (float)(exp_le0((logits[i] - m) * inv_t) / z)};
            c->n = n;
            c->sorted = 0;
            nucleus_by_selection(c, cfg->top_p);
        }
    } else {
        all_candidates(s, logits, vocab_max(logits, V), inv_t);
    }
    g3_sample_min_p(c, cfg->min_p);
}

// NaN weights (or an overflow) make the logits NaN or inf: greedy would then pick id 0 for
// ever and sampling something meaningless, with nothing said. One read of the logits, small
// beside the forward pass that made them. -inf alone is allowed (a masked token), not all of them.
static int check_finite(const float *x, int n) {
    int ok = 1;
    float mx = -INFINITY;
    for (int i = 0; i < n; i++) {
        ok &= x[i] < INFINITY;  // false for NaN and +inf
        mx = x[i] > mx ? x[i] : mx;
    }
    return ok && mx > -INFINITY ? 0 : g3_errorf("non-finite logits (NaN or inf)");
}

const G3Candidates *g3_sampler_distribution(G3Sampler *s, float *logits, const int32_t *history, int nhistory) {
    if (check_finite(logits, s->vocab)) return NULL;
    if (apply_penalties(s, logits, history, nhistory)) return NULL;
    G3Candidates *c = &s->cand;
    if (s->cfg.temperature <= 0) {
        int id = g3_argmax(logits, s->vocab);
        c->c[0] = (G3Candidate){id, logits[id], 1.0f};
        c->n = 1;
        c->sorted = 1;
        return c;
    }
    build(s, logits);
    g3_sample_normalize(c);
    return c;
}

// Plain sampling from the whole softmax without building a candidate list: the normaliser,
// then a walk over block sums to the block where the cumulative mass passes u * z.
static int sample_whole_vocab(const float *logits, int V, float inv_t, double u) {
    float m = vocab_max(logits, V);
    double target = u * sum_exp(logits, V, m, inv_t), cum = 0;
    int i = 0;
    for (; i + BLOCK <= V; i += BLOCK) {
        double b = block_sum_exp(logits + i, m, inv_t);
        if (cum + b > target) break;
        cum += b;
    }
    int last = 0;
    for (; i < V; i++) {
        float e = exp_le0((logits[i] - m) * inv_t);
        if (e > 0) last = i;
        cum += e;
        if (cum > target) return i;
    }
    return last;  // u * z rounded up to the total
}

int g3_sampler_sample(G3Sampler *s, float *logits, const int32_t *history, int nhistory) {
    if (check_finite(logits, s->vocab)) return -1;
    if (apply_penalties(s, logits, history, nhistory)) return -1;
    const G3SamplerConfig *c = &s->cfg;
    if (c->temperature <= 0) return g3_argmax(logits, s->vocab);
    double u = g3_rng_uniform(&s->rng);  // exactly one draw per sampled token
    if ((c->top_k == 0 || c->top_k >= s->vocab) && c->top_p >= 1.0f && c->min_p <= 0.0f)
        return sample_whole_vocab(logits, s->vocab, 1.0f / c->temperature, u);
    build(s, logits);
    return g3_sample_pick(&s->cand, u);
}

// ---- a device's selection, finished here (sampler.h) ----

const G3SamplerConfig *g3_sampler_config(const G3Sampler *s) { return &s->cfg; }

int g3_sampler_plain_greedy(const G3Sampler *s) {
    const G3SamplerConfig *c = &s->cfg;
    return c->temperature <= 0 && c->repeat_penalty == 1.0f && c->presence_penalty == 0.0f && c->frequency_penalty == 0.0f;
}

int g3_sampler_device_k(const G3Sampler *s, int kmax) {
    const G3SamplerConfig *c = &s->cfg;
    if (c->temperature <= 0) return 1;  // greedy: the best after the penalties is the top-1
    return c->top_k > 0 && c->top_k < s->vocab && c->top_k <= kmax ? c->top_k : 0;
}

int g3_sampler_window(const G3Sampler *s, const int32_t *history, int nhistory, const int32_t **win) {
    const G3SamplerConfig *c = &s->cfg;
    *win = NULL;
    // the conditions of apply_penalties, which the host path runs
    if (c->repeat_penalty == 1.0f && c->presence_penalty == 0.0f && c->frequency_penalty == 0.0f) return 0;
    if (!history || nhistory <= 0) return 0;
    int w = c->repeat_window > 0 ? G3_MIN(c->repeat_window, nhistory) : nhistory;
    *win = history + nhistory - w;
    for (int i = 0; i < w; i++)
        if ((*win)[i] < 0 || (*win)[i] >= s->vocab)
            return g3_errorf("sampler: history token %d at position %d is outside the vocabulary (%d)", (int)(*win)[i],
                             nhistory - w + i, s->vocab);
    return w;
}

int g3_sampler_finish(G3Sampler *s, const int32_t *ids, const float *logits, int n) {
    const G3SamplerConfig *c = &s->cfg;
    const int k = g3_sampler_device_k(s, n);
    if (k <= 0 || n != k) return g3_errorf("sampler: %d device candidates for a configuration that needs %d", n, k);
    if (c->temperature <= 0) return ids[0];
    double u = g3_rng_uniform(&s->rng);  // the one draw, as g3_sampler_sample makes it
    G3Candidates *cd = &s->cand;
    for (int i = 0; i < n; i++) cd->c[i] = (G3Candidate){ids[i], logits[i], 0};
    cd->n = n;
    cd->sorted = 1;
    after_top_k(s);
    return g3_sample_pick(cd, u);
}
