// hooks.h: hook points at every named site of the model pass (pass.c), with TransformerLens names.
// A hook is a callback that sees an activation as the pass produces it and may edit it in
// place: what the callback leaves in the buffer is what the rest of the pass uses. With no
// hook set, a site costs one predictable branch (a bitmask test).
//
// Sites and the data a callback gets (rows = the segment's tokens; C hidden, NH query heads,
// NKV kv heads, HD head_dim, F intermediate, V vocab):
//   hook_embed                      [rows][C]        embedding x sqrt(C)
//   blocks.{i}.hook_resid_pre       [rows][C]        residual stream entering layer i
//   blocks.{i}.ln1.hook_normalized  [rows][C]        input_layernorm output
//   blocks.{i}.attn.hook_q          [rows][NH][HD]   after QK-norm, before RoPE
//   blocks.{i}.attn.hook_k / hook_v [rows][NKV][HD]  (v: v_proj output)
//   blocks.{i}.attn.hook_rot_q      [rows][NH][HD]   after RoPE
//   blocks.{i}.attn.hook_rot_k      [rows][NKV][HD]
//   blocks.{i}.attn.hook_attn_scores [rows][keys]    ONE head (ev->head): scaled, softcapped,
//                                                    masked (-inf) scores before the softmax
//   blocks.{i}.attn.hook_pattern    [rows][keys]     ONE head: softmax; masked entries 0
//   blocks.{i}.attn.hook_z          [rows][NH][HD]   per-head weighted values (o_proj input)
//   blocks.{i}.hook_attn_out        [rows][C]        o_proj output, BEFORE post_attention_layernorm
//                                                    (TransformerLens's Gemma hook_attn_out is after it:
//                                                    that is ln1_post.hook_normalized below)
//   blocks.{i}.ln1_post.hook_normalized [rows][C]    post_attention_layernorm output (what is added
//                                                    to the residual)
//   blocks.{i}.hook_resid_mid       [rows][C]        residual after the attention block
//   blocks.{i}.ln2.hook_normalized  [rows][C]        pre_feedforward_layernorm output
//   blocks.{i}.mlp.hook_pre         [rows][F]        gate_proj output
//   blocks.{i}.mlp.hook_pre_linear  [rows][F]        up_proj output
//   blocks.{i}.mlp.hook_post        [rows][F]        gelu(gate) * up (down_proj input)
//   blocks.{i}.hook_mlp_out         [rows][C]        down_proj output, BEFORE post_feedforward_layernorm
//                                                    (TransformerLens's is after it: ln2_post below)
//   blocks.{i}.ln2_post.hook_normalized [rows][C]    post_feedforward_layernorm output
//   blocks.{i}.hook_resid_post      [rows][C]        residual leaving layer i
//   ln_final.hook_normalized        [rows][C]        final norm (rows whose logits are computed)
//   logits                          [rows][V]        after the final softcap
// Attention sites give one head per call; key j of the row block is position ev->key0 + j
// (key0 > 0 only on sliding layers whose window has moved past position 0).
// ln_final and logits fire only when the call computes logits: with G3_LOGITS_ALL for every
// row of each segment, with G3_LOGITS_LAST for the segment's last row only (rows 1, pos0 =
// that row's position).
#ifndef G3_HOOKS_H
#define G3_HOOKS_H

#include <stdint.h>

typedef enum {
    G3_HOOK_EMBED,
    G3_HOOK_RESID_PRE,
    G3_HOOK_LN1,
    G3_HOOK_Q,
    G3_HOOK_K,
    G3_HOOK_V,
    G3_HOOK_ROT_Q,
    G3_HOOK_ROT_K,
    G3_HOOK_ATTN_SCORES,
    G3_HOOK_PATTERN,
    G3_HOOK_Z,
    G3_HOOK_ATTN_OUT,
    G3_HOOK_RESID_MID,
    G3_HOOK_LN2,
    G3_HOOK_MLP_PRE,
    G3_HOOK_MLP_PRE_LINEAR,
    G3_HOOK_MLP_POST,
    G3_HOOK_MLP_OUT,
    G3_HOOK_RESID_POST,
    G3_HOOK_LN_FINAL,
    G3_HOOK_LOGITS,
    G3_HOOK_LN1_POST,
    G3_HOOK_LN2_POST,
    G3_HOOK_NSITES
} G3HookSite;

typedef struct {
    G3HookSite site;
    int layer;        // block index; -1 for hook_embed, ln_final, logits
    int head;         // attention score/pattern sites: the query head; else -1
    int seg;          // segment index within this g3_forward call
    int seq;          // the segment's cache slot
    int pos0;         // position of the segment's first row
    int rows;         // rows in data (tokens of this segment)
    int cols;         // floats per row (for per-head [rows][H][HD] sites: H * HD)
    int heads, head_dim;  // per-head sites (q, k, v, rot_q, rot_k, z): H and HD; else 0
    int key0;         // score/pattern sites: position of column 0
    float *data;      // [rows][cols], editable in place
} G3HookEvent;

// Called from the thread that called g3_forward, never concurrently with itself.
typedef void (*G3HookFn)(void *ctx, const G3HookEvent *ev);

// Site names: "hook_embed", "blocks.3.attn.hook_pattern", ... (layer -1 for the unnumbered).
const char *g3_hook_site_suffix(G3HookSite site);  // "hook_embed", "attn.hook_pattern", ...
int g3_hook_site_layered(G3HookSite site);         // 1 for blocks.{i}.* sites
// Writes the full name of (site, layer) into buf; returns buf.
char *g3_hook_name(char *buf, int cap, G3HookSite site, int layer);
// Parses a full name; returns 0 and fills site/layer, or -1 with g3_error set.
int g3_hook_parse(const char *name, G3HookSite *site, int *layer);
// Glob match of a name against a pattern where '*' matches any run of characters
// (so "blocks.*.hook_resid_post" selects that site in every layer).
int g3_hook_match(const char *pattern, const char *name);

#endif
