// vision.h: Gemma 3's image input (issue 23). A SigLIP vision tower turns an image into
// patch embeddings, the multimodal projector pools them to mm_tokens_per_image soft tokens in
// the text model's width, and the text model reads those in place of the image's placeholder
// run (<start_of_image>, mm_tokens_per_image image tokens, <end_of_image>), with bidirectional
// attention inside the run (model/forward.h g3_state_add_image).
//
//   vconfig.c     the vision part of config.json (+ preprocessor_config.json)
//   vmodel.c      the tower's and projector's tensors from the model's weight source
//   preprocess.c  an RGB8 picture -> normalized pixels, as Gemma3ImageProcessor
//   encoder.c     SigLIP: patch embedding, position embeddings, pre-norm blocks, post norm
//   projector.c   average pool, soft-embedding RMSNorm, input projection
//   vattn.c       its attention: blocked over (head, query rows), threaded, no NP x NP matrix
//   vflash.c      the same in bf16 as one fused pass (scores, online softmax, P . V over key
//                 chunks; vflash_avx512bf16.c its kernels): the CPU's fast mode with AVX512-BF16
//   vops.c        the row-wise ops the tower needs that the text model does not (LayerNorm
//                 with bias, bias add, plain GELU, softmax): scalar references, host memory;
//                 vops_avx512.c their vector versions (fast mode); the CPU backend's
//                 layernorm / bias_act / attention_full (backend/cpu/vision_ops.c) run them
//   prompt.c      placeholder runs in token ids: find, expand, check against the images
//   panscan.c     pan and scan: crops of wide or tall pictures, and the processor's text for them
//
//   vhooks.c      the tower's hook sites: names, parsing, selection by glob
//
// The tower runs on the backend's ops (backend.h: linear, layernorm, bias_act, attention_full,
// add), so the same code runs on the CPU and on CUDA; the projector is small and runs on the host.
#ifndef G3_VISION_H
#define G3_VISION_H

#include <stdint.h>

#include "../backend/backend.h"
#include "../io/image.h"
#include "../io/safetensors.h"
#include "../model/forward.h"
#include "../model/model.h"
#include "../tokenizer/tokenizer.h"

typedef struct {
    int hidden;          // D: the tower's width (1152 for 4B+)
    int inter;           // FF: its MLP width (4304)
    int layers;          // LV: encoder layers (27)
    int heads;           // NHV: attention heads (16); head width D / NHV
    int image_size;      // S: the square input (896)
    int patch;           // P: patch side (14); NP = (S / P)^2 patches
    float eps;           // LayerNorm eps, also the soft-embedding RMSNorm's
    int act_erf;         // 1: exact gelu, 0: tanh form (gelu_pytorch_tanh)
    int tokens;          // mm_tokens_per_image (256): soft tokens per image
    int image_token;     // image_token_index (262144): the placeholder id
    int boi, eoi;        // <start_of_image> / <end_of_image> ids (255999 / 256000)
    int text_hidden;     // C: the text model's width (the projection's output)
    // preprocessing (preprocessor_config.json, else the processor's defaults)
    float mean[3], std[3];
    double rescale;      // 1/255
    // pan and scan (preprocessor_config.json's do_pan_and_scan, pan_and_scan_*; else the
    // processor's defaults: off, 256, 4, 1.2)
    int pas_on;          // crops are made (also --pan-and-scan)
    int pas_min_crop;    // pan_and_scan_min_crop_size: no crop narrower than this
    int pas_max_crops;   // pan_and_scan_max_num_crops
    double pas_min_ratio; // pan_and_scan_min_ratio_to_activate: the aspect ratio from which crops are made (a double, as Python compares)
} G3VisionConfig;

// Reads the vision part of the config.json in dir (or the file itself when dir ends in .json):
// 0, 1 when the config has no vision_config (a text-only model), -1 on a bad field (named).
int g3_vision_config_load(G3VisionConfig *vc, const char *dir);
int g3_vision_config_parse(G3VisionConfig *vc, const char *text, size_t len, const char *name);
// Reads preprocessor_config.json in dir when there is one (image_mean, image_std,
// rescale_factor, size); defaults otherwise. 0 or -1.
int g3_vision_preproc_load(G3VisionConfig *vc, const char *dir);
// Patches per side, patches, and the pooling kernel (patches per soft token per side).
static inline int g3_vision_side(const G3VisionConfig *vc) { return vc->image_size / vc->patch; }
static inline int g3_vision_patches(const G3VisionConfig *vc) { return g3_vision_side(vc) * g3_vision_side(vc); }

typedef struct {
    G3Weight q, k, v, o, fc1, fc2;          // [D, D] x4, [FF, D], [D, FF] as stored
    float *qb, *kb, *vb, *ob, *fc1b, *fc2b;  // biases, f32
    float *ln1w, *ln1b, *ln2w, *ln2b;        // LayerNorms, f32 [D]
} G3VisionLayer;

typedef struct {
    G3VisionConfig cfg;
    G3Weight patch;            // [D, 3 * P * P]: the patch convolution as a matrix (c, y, x order)
    float *patch_b;            // [D]
    float *pos;                // [NP, D] position embeddings, f32
    G3VisionLayer *layer;      // [LV]
    float *post_w, *post_b;    // [D]
    float *soft_norm;          // [D] mm_soft_emb_norm (Gemma's 1 + w applied by the op)
    float *proj;               // [D, C] mm_input_projection_weight, f32 (x . W, not W^T)
    int64_t nparams;
    void *owned;               // f32 copies (one allocation list)
    int aligned;               // owned blocks come from g3_malloc_aligned (g3_vision_random)
} G3Vision;

// Loads the tower and projector of a loaded model from its weight source, under each name
// the Hub and transformers use (vision_tower.vision_model., vision_tower., model.vision_tower.
// [vision_model.]; multi_modal_projector., model.multi_modal_projector.). 0, 1 when the model
// has none (no vision_config: a text-only model; message set naming the folder), -1 on a
// missing tensor or wrong shape (named).
int g3_vision_load(G3Vision *v, const G3Model *m);
void g3_vision_free(G3Vision *v);

// ---- looking inside the tower (vhooks.c) ----
// Hook sites of the tower, named like the text model's (model/hooks.h) under "vision.":
//   vision.hook_embed                         [NP][D]       patch embedding + positions
//   vision.blocks.{i}.hook_resid_pre          [NP][D]       residual stream entering layer i
//   vision.blocks.{i}.ln1.hook_normalized     [NP][D]       layer_norm1 output
//   vision.blocks.{i}.attn.hook_q / _k / _v   [NP][NH][HD]  q_proj / k_proj / v_proj outputs (with biases)
//   vision.blocks.{i}.attn.hook_attn_scores   [NP][NP]      ONE head (ev->head): q.k / sqrt(HD)
//   vision.blocks.{i}.attn.hook_pattern       [NP][NP]      ONE head: softmax of the scores (every
//                                                           patch attends to every patch: no mask)
//   vision.blocks.{i}.attn.hook_z             [NP][NH][HD]  per-head weighted values (out_proj input)
//   vision.blocks.{i}.hook_attn_out           [NP][D]       out_proj output (with bias)
//   vision.blocks.{i}.hook_resid_mid          [NP][D]       residual after the attention block
//   vision.blocks.{i}.ln2.hook_normalized     [NP][D]       layer_norm2 output
//   vision.blocks.{i}.mlp.hook_pre            [NP][FF]      fc1 output (with bias), before GELU
//   vision.blocks.{i}.mlp.hook_post           [NP][FF]      after GELU (fc2 input)
//   vision.blocks.{i}.hook_mlp_out            [NP][D]       fc2 output (with bias)
//   vision.blocks.{i}.hook_resid_post         [NP][D]       residual leaving layer i
//   vision.hook_post_norm                     [NP][D]       post_layernorm: the tower's output
//   vision.hook_soft_tokens                   [tokens][C]   the projector's output (what the text reads)
// A callback sees host memory and may edit it in place: what it leaves is what the tower uses
// next (on a device backend the site is copied to the host and back). Patch n is at grid
// row n / side, column n % side. A layer whose scores or pattern are hooked computes its
// attention on the host with f32 products (the NP x NP matrix of one head at a time), whatever the mode.
typedef enum {
    G3_VH_EMBED,
    G3_VH_RESID_PRE,
    G3_VH_LN1,
    G3_VH_Q,
    G3_VH_K,
    G3_VH_V,
    G3_VH_ATTN_SCORES,
    G3_VH_PATTERN,
    G3_VH_Z,
    G3_VH_ATTN_OUT,
    G3_VH_RESID_MID,
    G3_VH_LN2,
    G3_VH_MLP_PRE,
    G3_VH_MLP_POST,
    G3_VH_MLP_OUT,
    G3_VH_RESID_POST,
    G3_VH_POST_NORM,
    G3_VH_SOFT_TOKENS,
    G3_VH_NSITES
} G3VisionSite;

typedef struct {
    G3VisionSite site;
    int layer;            // block index; -1 for the unnumbered sites
    int head;             // scores / pattern: the head; else -1
    int rows, cols;       // data is [rows][cols] (per-head sites: cols = heads * head_dim)
    int heads, head_dim;  // q, k, v, z: NH and HD; else 0
    float *data;          // host memory, editable in place
} G3VisionHookEvent;
typedef void (*G3VisionHookFn)(void *ctx, const G3VisionHookEvent *ev);
// fn is called at the sites whose bit (1u << G3VisionSite) is set in sites, for the layers
// whose bit is set in layers (unnumbered sites ignore it), from the calling thread.
typedef struct {
    G3VisionHookFn fn;
    void *ctx;
    uint32_t sites;
    uint64_t layers;
} G3VisionHooks;

// "hook_embed", "attn.hook_pattern", ... (layered sites without their "blocks.{i}." prefix).
const char *g3_vision_site_suffix(G3VisionSite site);
int g3_vision_site_layered(G3VisionSite site);
// The full name, "vision.blocks.3.attn.hook_pattern"; returns buf.
char *g3_vision_hook_name(char *buf, int cap, G3VisionSite site, int layer);
// Parses a full name: 0, or -1 with g3_error set (the message lists the sites).
int g3_vision_hook_parse(const char *name, G3VisionSite *site, int *layer);
// Sets *sites / *layers to the sites and layers (of a tower of `layers` layers) whose names
// match one of the globs pats[n] (model/hooks.h g3_hook_match); returns how many (site,
// layer) pairs matched.
int g3_vision_hook_select(const char *const *pats, int n, int layers, uint32_t *sites, uint64_t *lmask);
static inline int g3_vision_hook_wants(const G3VisionHooks *h, G3VisionSite site, int layer) {
    return h && h->fn && (h->sites >> site & 1) && (layer < 0 || (layer < 64 ? (h->layers >> layer & 1) : h->layers == ~0ull));
}

// The tower: px [3, S, S] normalized pixels -> out [NP, D] (host memory, after the post
// LayerNorm), on backend be (its ops layernorm, bias_act, attention_full, linear, add; the
// weights' device copies are found by their host addresses, as the text model's). hooks may
// be NULL.
int g3_vision_encode(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *px, float *out, const G3VisionHooks *hooks);
// The tower's attention on the CPU (vattn.c): out[NP, D] from q, k, v [NP, D] (NH heads of D / NH
// columns), every row attending to every row; products through be->gemm (bf16 operands when
// bf16, else f32), the softmax's vector version when fast. scratch holds
// g3_vision_attention_floats(NP, D, threads) floats; threads is the team it uses.
size_t g3_vision_attention_floats(int NP, int D, int threads);
void g3_vision_attention(G3Backend *be, int bf16, int fast, float *out, const float *q, const float *k, const float *v, int NP, int D,
                         int NH, float scale, float *scratch, int threads);
// The same on host memory with the score and pattern hooks of `layer` (f32 products through
// the CPU backend, one head's NP x NP scores at a time; the softmax's vector form when fast,
// else the scalar reference). 0 or -1.
int g3_vision_attention_hooked(float *out, const float *q, const float *k, const float *v, int NP, int D, int NH, float scale,
                               int fast, int layer, const G3VisionHooks *hooks);
// The projector: vis [NP, D] -> soft [tokens, C].
int g3_vision_project(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const float *vis, float *soft);
// Both, from a decoded picture: soft [tokens, C].
// The tower on be, the projector on the host (the CPU backend when be is a device one).
int g3_vision_embed_image(const G3Vision *v, G3Backend *be, G3MatmulMode mode, const G3Image *im, float *soft,
                          const G3VisionHooks *hooks);

// The processor's resize of RGB8 in [ih][iw][3] to out [oh][ow][3]: torchvision's antialiased
// bilinear on uint8 (Pillow's filter, int16 weights; see preprocess.c).
int g3_image_resize(uint8_t *out, int ow, int oh, const uint8_t *in, int iw, int ih);
// im -> px [3, S, S]: resize to S x S, rescale, normalize.
int g3_vision_pixels(const G3VisionConfig *vc, float *px, const G3Image *im);

// ---- pan and scan (panscan.c) ----
// Gemma3ImageProcessor's pan_and_scan: a picture wider (taller) than pas_min_ratio times its
// height (width) is cut into n = clamp(min(round(ratio), side / min_crop), 2, max_crops)
// columns (rows) of ceil(side / n) pixels, the last one cut at the edge; none where a crop
// would be under min_crop. The crops (RGB copies, g3_image_free each) into crops[max_crops];
// returns how many (0: the picture stays whole), or -1.
int g3_vision_pan_and_scan(const G3VisionConfig *vc, const G3Image *im, G3Image *crops);
// The processor's text for images with crops: each image's <start_of_image> (with none in
// text, one per image first) whose image has ncrops[i] > 0 becomes "Here is the original image
// <start_of_image> and here are some crops to help you see better <start_of_image> ..." (one
// marker per crop, joined by spaces). malloc'd, or NULL (a marker count that is not nimages).
char *g3_vision_pan_and_scan_text(const char *text, const int *ncrops, int nimages);

// ---- random towers (vinit.c) ----
// SigLIP So400m/14 at 896 pixels with 256 soft tokens: the tower of Gemma 3 4B, 12B and 27B.
void g3_vision_preset(G3VisionConfig *vc, int text_hidden);
// A random tower + projector of shape vc in memory, matrices of type dt (vectors f32). 0 or -1.
int g3_vision_random(G3Vision *v, const G3VisionConfig *vc, G3DType dt, uint64_t seed, float std);
// Adds v's tensors to a checkpoint being written, under the Hub's names (the writer reads
// them at its write: keep v alive until then). 0 or -1.
int g3_vision_write(const G3Vision *v, STWriter *w);
// Rewrites the text model's config.json at path as a Gemma3ForConditionalGeneration config
// (the text config nested, vision_config and the image ids beside it). 0 or -1.
int g3_vision_config_wrap(const char *path, const G3VisionConfig *vc);

// ---- prompts (prompt.c) ----
// The positions where each image's run of vc->tokens image tokens starts in ids[n]; *count
// gets the number of runs. A run must be exactly vc->tokens image tokens long (a shorter or
// longer one is refused, naming its position). starts has room for max entries. 0 or -1.
int g3_vision_find_runs(const G3VisionConfig *vc, const int32_t *ids, int n, int *starts, int max, int *count);
// Replaces each <start_of_image> in ids that is not already followed by image tokens with the
// full run (boi, tokens x image_token, eoi), as the processor does to its text. out has room
// for cap ids; *nout gets the length. 0 or -1.
int g3_vision_expand(const G3VisionConfig *vc, const int32_t *ids, int n, int32_t *out, int cap, int *nout);
// Registers images with a state (forward.h g3_state_add_image): the i-th placeholder run of
// ids[n], which slot seq reads from position pos0, takes soft[i] ([tokens][C], kept alive by
// the caller). The number of runs must equal nimages (the message says which is more).
int g3_vision_attach(const G3VisionConfig *vc, G3State *s, int seq, int pos0, const int32_t *ids, int n, float *const *soft, int nimages);
// Text with nimages images -> ids, as Gemma3Processor writes them: each "<start_of_image>" (with
// none, the images come first) becomes "\n\n" + the run + "\n\n", the newlines tokenized with
// the text beside them as the processor's tokenizer does (add_bos, parse_special as
// g3_tok_encode). The count of markers must equal nimages. The count of ids (malloc'd *out), or -1.
int g3_vision_encode_text(const G3VisionConfig *vc, const G3Tokenizer *tok, const char *text, int nimages, int add_bos, int parse_special,
                          int32_t **out);

#endif
