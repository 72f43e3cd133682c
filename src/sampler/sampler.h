// sampler.h: choosing the next token from a vector of V logits, as a chain of small steps
// that each work on a candidate list and are tested on their own:
//
//   penalties (repetition, presence, frequency over the last repeat_window tokens)
//   -> greedy argmax if temperature == 0
//   -> top-k -> temperature -> softmax -> top-p -> min-p -> draw
//
// The order and definitions follow Hugging Face transformers (its logits processors, then its
// warpers in the order temperature, top-k, top-p, min-p), so a generation_config.json means
// here what it means there. One G3Sampler serves one sequence: it owns its random stream and
// all scratch memory (about 16 bytes per vocabulary entry, allocated once), so sampling a token
// allocates nothing and the same seed gives the same tokens whatever the thread count or batch.
//
// Not here: beam search, grammars, stop strings (callers look at the chosen tokens).
#ifndef G3_SAMPLER_H
#define G3_SAMPLER_H

#include <stdint.h>

#include "../base/rng.h"

typedef struct {
    float temperature;        // logits / T; 0 = greedy (argmax, ties to the lowest id)
    int top_k;                // keep the k most likely tokens; 0 = no limit
    float top_p;              // keep the smallest most-likely set with mass >= top_p; 1 = off
    float min_p;              // drop tokens with p < min_p * p(most likely); 0 = off
    float repeat_penalty;     // CTRL/HF: positive logits / r, negative logits * r; 1 = off
    int repeat_window;        // the penalties look at the last N tokens of history; 0 = all
    float presence_penalty;   // OpenAI: logit -= presence_penalty if the token is in the window
    float frequency_penalty;  // OpenAI: logit -= frequency_penalty * (its count in the window)
    uint64_t seed;            // a batch gives sequence i the seed (seed + i)
} G3SamplerConfig;

// Gemma 3's published settings: temperature 1, top_k 64, top_p 0.95; no min-p, no penalties
// (window 64 once one is turned on), seed 0.
G3SamplerConfig g3_sampler_defaults(void);
// Checks ranges (temperature >= 0, top_k >= 0, 0 <= top_p <= 1, 0 <= min_p <= 1,
// repeat_penalty > 0, repeat_window >= 0, finite penalties). Returns 0, or -1 with a message.
int g3_sampler_config_check(const G3SamplerConfig *cfg);
// Overrides cfg's fields with those set in a generation_config.json: temperature, top_k, top_p,
// min_p, repetition_penalty, and do_sample (false => temperature 0, greedy). path is the file
// or the model folder holding it. A missing file leaves cfg as it is and returns 0 (Gemma 2
// ships none); a malformed one returns -1 with a message naming the file and the field.
// Unlike transformers, a file without do_sample keeps sampling: our default is to sample.
int g3_sampler_config_from_generation_config(G3SamplerConfig *cfg, const char *path);

// ---- the steps, on a candidate list ----

typedef struct {
    int32_t id;   // token id
    float logit;  // after penalties and temperature
    float p;      // probability, once a softmax step has run
} G3Candidate;

typedef struct {
    G3Candidate *c;  // (cap) the first n are live
    int n, cap;
    int sorted;      // c[0..n) is in descending logit order, equal logits by ascending id
} G3Candidates;

// Applies the penalties in place to the tokens of window[0..n) (ids outside [0, vocab) are
// skipped). Repetition first, once per distinct token; then presence and frequency.
// counts: (vocab) scratch that must be all zero on entry; it is left all zero.
void g3_sample_penalties(float *logits, int vocab, const int32_t *window, int n, float repeat,
                         float presence, float frequency, int32_t *counts);
// Index of the largest logit, the lowest index among equals: the one argmax of the project
// (greedy decoding, the engine, trace, intervene). NaN logits are never chosen over a number
// (the engine refuses non-finite logits before choosing).
int g3_argmax(const float *logits, int vocab);
// Fills out with the k best of logits[0..vocab), sorted, without sorting the rest: one pass that
// keeps a heap of the k best seen so far and skips, 64 at a time, logits that cannot enter it.
// k is clamped to [1, min(vocab, out->cap)]. p is left 0.
void g3_sample_select_top_k(G3Candidates *out, const float *logits, int vocab, int k);
// Sorts the live candidates (descending logit, ties by ascending id); no-op if already sorted.
void g3_sample_sort(G3Candidates *c);
// Keeps the k best candidates (k <= 0: all); the list ends up sorted. For lists already cut
// down (the full vocabulary goes through g3_sample_select_top_k instead).
void g3_sample_top_k(G3Candidates *c, int k);
// Divides every logit by t (t > 0). The order is unchanged.
void g3_sample_temperature(G3Candidates *c, float t);
// p = softmax(logit) over the live candidates.
void g3_sample_softmax(G3Candidates *c);
// Keeps the smallest set of most likely candidates whose mass reaches top_p (the candidate that
// crosses top_p stays; at least one stays). Sorts first if needed. p need not sum to 1 over
// the list (it may be a slice of a larger distribution): returns 1 if the cut fell inside the
// list, 0 if the list's whole mass is below top_p (the list is then left as it was).
int g3_sample_top_p(G3Candidates *c, float top_p);
// Drops candidates with p < min_p * max p (order kept; the most likely always stays).
void g3_sample_min_p(G3Candidates *c, float min_p);
// Rescales p to sum to 1 over the live candidates.
void g3_sample_normalize(G3Candidates *c);
// Draws by inverse CDF with u in [0, 1): the first candidate whose cumulative p exceeds
// u * (sum of p). Returns its token id.
int32_t g3_sample_pick(const G3Candidates *c, double u);

// ---- random numbers: G3Rng from base/rng.h (xoshiro256** seeded through splitmix64) ----

// ---- the sampler: the whole chain with its scratch and random stream ----

typedef struct G3Sampler G3Sampler;

// NULL with a message if cfg is out of range or memory is short.
G3Sampler *g3_sampler_new(const G3SamplerConfig *cfg, int vocab);
void g3_sampler_free(G3Sampler *s);
// Restarts the random stream (e.g. to reuse one sampler for another sequence).
void g3_sampler_reseed(G3Sampler *s, uint64_t seed);
// Picks the next token. logits: (vocab), modified in place (penalties). history: the sequence's
// tokens so far (prompt included), of which the penalties see the last repeat_window.
// Returns the token id, or -1 with a message if a history token is outside the vocabulary or
// the logits are not finite ("non-finite logits": any NaN or +inf, or all -inf).
int g3_sampler_sample(G3Sampler *s, float *logits, const int32_t *history, int nhistory);
// The distribution the next draw would use, without drawing: the surviving candidates with p
// summing to 1 (sorted unless a very flat nucleus made sorting not worth it; see ->sorted).
// Valid until the next call on s. NULL with a message as for g3_sampler_sample.
const G3Candidates *g3_sampler_distribution(G3Sampler *s, float *logits, const int32_t *history,
                                            int nhistory);

// ---- the heavy part on a device (backend.h sample_top_k), the rest here ----
//
// With top-k (the usual case, Gemma's default 64) everything after the selection of the k
// best works on k candidates, so a device that holds the logits applies the penalties and
// selects the k best (ties to the lowest id: the same set, in the same order, as
// g3_sample_select_top_k); only those k (id, logit) pairs cross to the host, and
// g3_sampler_finish runs this file's own temperature, softmax, top-p, min-p and draw on them.
// Selection is comparisons only and the penalties are the same IEEE operations in the same
// order (no fused multiply-add), so the tokens are the host path's bit for bit, whatever the
// seed. Greedy is the top-1. Configurations without top-k (top-p alone, or the whole
// vocabulary) need the softmax normaliser over every logit, a sum whose rounding depends on
// its order: they stay on the host path (the logits are copied), see g3_sampler_device_k.

const G3SamplerConfig *g3_sampler_config(const G3Sampler *s);
// 1 when s is greedy with every penalty off: its choice is g3_argmax of the logits (a device's
// argmax serves), and it draws nothing.
int g3_sampler_plain_greedy(const G3Sampler *s);
// How many candidates a device must select for s: 1 for greedy (temperature 0), top_k when
// 1 <= top_k < vocab and top_k <= kmax, else 0 (the host path: the logits must come back).
int g3_sampler_device_k(const G3Sampler *s, int kmax);
// The tokens the penalties look at (the last repeat_window of history), or none when every
// penalty is off: returns their count (0: no penalties) with *win pointing into history, or -1
// with g3_sampler_sample's message for an id outside the vocabulary.
int g3_sampler_window(const G3Sampler *s, const int32_t *history, int nhistory, const int32_t **win);
// The rest of the chain from a device's selection: ids[n] / logits[n], the n =
// g3_sampler_device_k(s, n) best after the penalties, best first (equal logits by ascending
// id). Draws from the random stream exactly as g3_sampler_sample would have on the whole
// logits (nothing for greedy). Returns the token, or -1 with a message (n not what s needs).
int g3_sampler_finish(G3Sampler *s, const int32_t *ids, const float *logits, int n);

#endif
