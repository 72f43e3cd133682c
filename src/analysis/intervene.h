// intervene.h: causal interventions on the forward pass, built on its hooks (model/hooks.h):
// zero- or mean-ablation of attention heads (blocks.L.attn.hook_z, one head's columns) and of
// MLP layers (blocks.L.hook_mlp_out), activation patching from a second prompt at any named
// site, and steering vectors added to the residual stream (blocks.L.hook_resid_post); and a
// driver that runs a clean and an intervened pass over one prompt and compares them (next-token
// distribution, KL, loss). Not here: gradients (attribution patching), batching of prompts,
// printing (the command does that).
//
// An intervention is a list of edits. Each edit acts on one (site, layer), optionally one head,
// at every position of every forward call it sees, except patches, which only touch positions
// of the prompt the source run also has (see G3_EDIT_PATCH). Edits run in the order they were
// added, so a later edit sees what an earlier one left at the same site.
#ifndef G3_INTERVENE_H
#define G3_INTERVENE_H

#include <stdint.h>

#include "../model/forward.h"
#include "../model/hooks.h"
#include "../model/model.h"

typedef enum {
    G3_EDIT_ZERO,   // write 0 (attention scores: masked -inf entries stay masked)
    G3_EDIT_SET,    // write vec into every row (mean ablation)
    G3_EDIT_ADD,    // add scale x vec to every row (steering)
    G3_EDIT_PATCH,  // copy the source run's activation at the same position
} G3EditKind;

// Activations of one (site, layer) recorded by position. Row sites hold [P][cols] with cols the
// site's width; attention score/pattern sites hold [P][NH][P] (query position, head, key
// position), so a row can be copied whatever window or chunk produced it.
typedef struct {
    G3HookSite site;
    int layer;
    int P;        // positions it has room for; later ones are not recorded
    int cols;     // floats per position
    int n;        // positions recorded (highest position seen + 1)
    float *data;  // [P][cols]; attention sites start as -inf (scores) / 0 (pattern)
} G3Capture;

typedef struct {
    G3EditKind kind;
    G3HookSite site;
    int layer;     // -1 for the unnumbered sites
    int head;      // -1: the whole row; per-head sites (q k v rot_q rot_k z): columns head*HD..;
                   // attention score/pattern sites: only the calls for that head
    float *vec;    // SET / ADD: [width of the edited part] (owned)
    float scale;   // ADD
    int src;       // PATCH: index of the source capture in G3Intervention.src
    int last;      // PATCH: only the prompt's last position, from the source's last position
} G3Edit;

typedef struct {
    const G3Model *m;
    G3Edit *edit;
    int nedit;
    G3Capture *src;   // PATCH sources (owned)
    int nsrc;
    G3Capture *rec;   // recorded during intervened passes, after the edits (owned)
    int nrec;
    int prompt_len;   // set by the runners: generated positions (>= prompt_len) are never patched
} G3Intervention;

typedef enum { G3_ABLATE_ZERO, G3_ABLATE_MEAN } G3Ablation;

// Floats per position at a site for this model (C, F, NH*HD, NKV*HD, V); 0 for the attention
// score/pattern sites, whose width depends on the position.
int g3_site_width(const G3Config *c, G3HookSite site);

void g3_iv_init(G3Intervention *iv, const G3Model *m);
void g3_iv_free(G3Intervention *iv);
// Single edits. Check the site, layer, head and vector size against the model (-1, message).
int g3_iv_zero(G3Intervention *iv, G3HookSite site, int layer, int head);
int g3_iv_set(G3Intervention *iv, G3HookSite site, int layer, int head, const float *vec, int n);
int g3_iv_add(G3Intervention *iv, G3HookSite site, int layer, const float *vec, int n, float scale);

// Ablation of heads ("L.H,L.H", may be NULL) and MLP layers ("L,L", may be NULL) by zero or by
// the mean over every position of the given prompts (one pass over them for all sites).
int g3_iv_ablate(G3Intervention *iv, const char *heads, const char *mlps, G3Ablation how,
                 const int32_t *const *prompts, const int *lens, int nprompts, int fast);
// Activation patching: runs the source prompt, records every site whose name matches one of
// the comma-separated glob patterns (each must match something), and adds a PATCH edit for each.
// last: patch only the prompt's last position. Returns the number of sites, or -1.
int g3_iv_patch(G3Intervention *iv, const char *patterns, const int32_t *src_ids, int Ts, int last, int fast);
// Steering: adds scale x vec (hidden size) to blocks.layer.hook_resid_post at every position.
int g3_iv_steer(G3Intervention *iv, int layer, const float *vec, int n, float scale);
// Records (site, layer) during intervened passes for up to P positions; returns its index.
int g3_iv_record(G3Intervention *iv, G3HookSite site, int layer, int P);

// The hook callback (ctx: the G3Intervention), and attaching it to a state for exactly the sites
// and layers the edits and records need. iv->prompt_len must be set first (the runners do).
void g3_iv_hook(void *ctx, const G3HookEvent *ev);
void g3_iv_attach(G3State *s, G3Intervention *iv);

// Mean over positions of the activation at (site, layer) over the prompts: out[i] gets
// width(sites[i]) floats. skip_bos leaves out positions whose token is <bos>.
int g3_site_means(float *const *out, const G3Model *m, const G3HookSite *sites, const int *layers, int nsites,
                  const int32_t *const *prompts, const int *lens, int nprompts, int skip_bos, int fast);
// Steering vector from two prompt sets: mean resid_post at layer over the positive prompts minus
// the same over the negative ones, <bos> positions left out (they are the same in every prompt
// and dwarf the rest). out: [C].
int g3_steer_from_sets(float *out, const G3Model *m, int layer, const int32_t *const *pos, const int *pos_lens, int npos,
                       const int32_t *const *neg, const int *neg_lens, int nneg, int fast);

// Runs the prompt and writes every position's logits (out [T][V]); iv NULL: the clean model.
int g3_iv_logits(float *out, const G3Model *m, G3Intervention *iv, const int32_t *ids, int T, int fast);
// Greedy continuation of n tokens (out [n]) with the intervention applied at every step.
int g3_iv_generate(int32_t *out, const G3Model *m, G3Intervention *iv, const int32_t *ids, int T, int n, int fast);

typedef struct {
    int T, V;
    float *clean, *edited;   // [T][V] logits at every position
    double loss_clean;       // mean next-token cross-entropy of ids[1..T-1] (NAN when T < 2)
    double loss_edited;
    double kl;               // KL(clean || edited) of the next token after the prompt, nats
    double kl_mean;          // the same, averaged over every position
    int top;                 // clean argmax of the next token
    double p_top_clean, p_top_edited;
} G3IvResult;

// The clean and the intervened pass over ids, compared.
int g3_iv_compare(G3IvResult *r, G3Intervention *iv, const int32_t *ids, int T, int fast);
void g3_iv_result_free(G3IvResult *r);

// Distribution helpers (double precision over float logits).
double g3_kl_logits(const float *p_logits, const float *q_logits, int V);  // KL(softmax p || softmax q)
double g3_loss_logits(const float *logits, const int32_t *ids, int T, int V);  // mean CE of ids[t+1] | row t
void g3_softmax_d(double *out, const float *logits, int V);
// The k most probable tokens of softmax(logits), most probable first. Returns min(k, V).
int g3_topk(int32_t *ids, double *probs, const float *logits, int V, int k);

// A vector from a file: .npy (float32 or float64, 1-D, little-endian) or text (floats separated
// by spaces, commas, newlines; '[' ']' ignored). *out malloc'd. Returns the count or -1 (the
// message names the file).
int g3_vec_load(const char *path, float **out);
// Writes vec as a 1-D float32 .npy file (atomically).
int g3_vec_save_npy(const char *path, const float *vec, int n);

#endif
