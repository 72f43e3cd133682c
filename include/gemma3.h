// gemma3.h: the public API of libgemma3, the library behind the gemma3 program: run, look
// inside and train Gemma 3 (and Gemma 2) models. Everything is reached through opaque
// handles; no internal header is needed, and the layout of the library's structs may change
// without breaking callers. The Python package (python/gemma3c) binds exactly this header.
//
//   gemma3_model      a checkpoint: a Hub folder (config.json + safetensors), read in place
//   gemma3_tokenizer  tokenizer.json / tokenizer.model: text <-> ids, the chat format
//   gemma3_state      a KV cache for `slots` sequences: forward passes, logits, hooks
//   gemma3_generator  step-based generation: add sequences, step them together, read tokens
//   gemma3_trainer    training: loss, gradients, AdamW steps, saving
//
// Errors: functions return -1 or NULL, and gemma3_last_error() says what went wrong (naming
// the file, tensor, field or argument) in the calling thread. The library never exits or
// prints on its own. Handles may be used from one thread at a time each.
//
// Build: link build/rel/libgemma3.a (or libgemma3.so) with -fopenmp -lm -lpthread -lz.
#ifndef GEMMA3_H
#define GEMMA3_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

const char *gemma3_last_error(void);
const char *gemma3_version(void);

// ---- models ----

typedef struct gemma3_model gemma3_model;

typedef struct {
    int vocab, hidden, intermediate, layers, heads, kv_heads, head_dim;
    int max_positions, sliding_window;
    int gemma2;               // 1 for a Gemma 2 model
    int64_t parameters;
} gemma3_model_info;

// Opens a model folder (config.json + model.safetensors, sharded or not, F32/BF16/F16) or a
// .gguf file (the loader picks the source from the path, as the program does).
gemma3_model *gemma3_model_open(const char *path);
void gemma3_model_close(gemma3_model *m);
int gemma3_model_get_info(const gemma3_model *m, gemma3_model_info *out);
// The layer kind: 1 sliding-window attention, 0 global. -1 if l is out of range.
int gemma3_model_layer_sliding(const gemma3_model *m, int l);

// ---- tokenizer ----

typedef struct gemma3_tokenizer gemma3_tokenizer;

// A tokenizer.json / tokenizer.model file, or a model folder holding one.
gemma3_tokenizer *gemma3_tokenizer_open(const char *path);
void gemma3_tokenizer_close(gemma3_tokenizer *t);
// Encodes text (len bytes; <bos> first when add_bos) into ids[cap]; returns the number of
// ids (which may exceed cap: call again with a larger buffer), or -1.
int gemma3_tokenize(const gemma3_tokenizer *t, const char *text, size_t len, int add_bos, int32_t *ids, int cap);
// Decodes ids into a malloc'd NUL-terminated string (free it with gemma3_free); special
// tokens are skipped when skip_special. NULL on error.
char *gemma3_detokenize(const gemma3_tokenizer *t, const int32_t *ids, int n, int skip_special);
int gemma3_token_bos(const gemma3_tokenizer *t);
int gemma3_token_eos(const gemma3_tokenizer *t);
int gemma3_token_end_of_turn(const gemma3_tokenizer *t);
void gemma3_free(void *p);

// ---- forward passes and hooks ----

typedef struct gemma3_state gemma3_state;

// A KV cache for `slots` sequences of up to ctx positions, running up to max_rows tokens per
// call. exact = 1: f32 activations everywhere; 0: bf16 activations in the matrix products
// where the weights are bf16 (faster, ~1e-2 relative).
gemma3_state *gemma3_state_new(const gemma3_model *m, int slots, int ctx, int max_rows, int exact);
void gemma3_state_free(gemma3_state *s);
// Forgets slot's tokens (a new sequence starts there).
int gemma3_state_reset(gemma3_state *s, int slot);
// Tokens cached in slot.
int gemma3_state_length(const gemma3_state *s, int slot);
// Appends n tokens to slot and runs them (in chunks of max_rows). logits: NULL, or [n][vocab]
// for every token, or with last_only [vocab] for the last one.
int gemma3_forward(gemma3_state *s, int slot, const int32_t *ids, int n, float *logits, int last_only);

// An activation as the pass produces it: rows x cols floats (cols = heads x head_dim for the
// per-head sites), editable in place: what the callback leaves is what the rest of the pass
// uses. name is the TransformerLens-style site name ("blocks.3.hook_resid_post"); rows are
// the positions pos0 .. pos0 + rows - 1 of sequence `slot`. Attention score/pattern sites
// give one head (head >= 0) and keys from position key0.
typedef struct {
    const char *name;
    int layer, head, slot, pos0, rows, cols, heads, head_dim, key0;
    float *data;
} gemma3_activation;
typedef void (*gemma3_hook_fn)(void *ctx, const gemma3_activation *a);
// Calls fn at every site whose name matches one of the glob patterns ('*' matches any run:
// "blocks.*.hook_resid_post"). Replaces an earlier hook; fn NULL removes it. -1 if a pattern
// matches no site of this model.
int gemma3_state_set_hook(gemma3_state *s, const char *const *patterns, int npatterns, gemma3_hook_fn fn, void *ctx);
// Every site name of the model (layers expanded), one per line, in a malloc'd string.
char *gemma3_site_names(const gemma3_model *m);
// Floats per position at a site ("blocks.3.hook_resid_post": hidden; mlp.hook_*: intermediate;
// per-head sites: heads x head_dim; logits: vocab); 0 for attention scores/patterns (their
// width is the number of keys); -1 for a name that is no site of this model.
int gemma3_site_width(const gemma3_model *m, const char *name);

// Recording (run_with_cache): from the next forward call on, every site matching one of the
// glob patterns is copied into an array laid out as `gemma3 trace` writes it, by slot and
// absolute position: [slots][ctx][cols], per-head sites [slots][ctx][heads][head_dim],
// attention scores / patterns [slots][heads][ctx][ctx]. What no call wrote stays 0 (scores:
// -inf, the masked value). Recording runs after the hook of gemma3_state_set_hook, so it sees
// the activation the rest of the pass uses. Replaces an earlier recording (whose arrays are
// freed); npatterns 0 stops recording. -1 if a pattern matches no site.
int gemma3_state_record(gemma3_state *s, const char *const *patterns, int npatterns);
// Arrays recorded, in forward-pass order.
int gemma3_record_count(const gemma3_state *s);
// Array i: returns its site name and fills *ndim (3 or 4), shape[0..ndim) and *data (valid
// until the next gemma3_state_record or gemma3_state_free). NULL if i is out of range.
const char *gemma3_record_array(gemma3_state *s, int i, int *ndim, int64_t shape[4], float **data);

// ---- generation ----

typedef struct gemma3_generator gemma3_generator;

typedef struct {
    float temperature;       // 0: greedy (argmax, ties to the lowest id)
    int top_k;               // 0: off
    float top_p;             // 1: off
    float min_p;             // 0: off
    float repeat_penalty;    // 1: off
    float presence_penalty, frequency_penalty;
    uint64_t seed;
} gemma3_sampling;
// Gemma's published defaults (temperature 1, top-k 64, top-p 0.95).
gemma3_sampling gemma3_sampling_defaults(void);

// Up to `slots` sequences decode together (one batched forward per step); more wait in a queue.
gemma3_generator *gemma3_generator_new(const gemma3_model *m, int slots, int ctx, int exact);
void gemma3_generator_free(gemma3_generator *g);
// Adds a sequence: prompt ids, at most max_tokens new ones, stopping early at any of
// stop_ids (not emitted). Returns its id (>= 0) or -1.
int gemma3_generator_add(gemma3_generator *g, const int32_t *prompt, int n, int max_tokens, const int32_t *stop_ids,
                         int nstop, const gemma3_sampling *sampling);
// Advances every live sequence by one token (admitting waiting ones first). Returns the
// number of sequences still live or waiting (0: all done), or -1.
int gemma3_generator_step(gemma3_generator *g);
// The tokens sequence id has produced so far; *done 1 once it stopped. 0 or -1.
int gemma3_generator_read(gemma3_generator *g, int id, const int32_t **ids, int *n, int *done);
int gemma3_generator_cancel(gemma3_generator *g, int id);
// A hook on the generator's forward passes (as gemma3_state_set_hook): steering or ablation
// while generating. slot in the activation is the sequence's cache slot, not its id.
int gemma3_generator_set_hook(gemma3_generator *g, const char *const *patterns, int npatterns, gemma3_hook_fn fn, void *ctx);

// ---- training ----

typedef struct gemma3_trainer gemma3_trainer;

typedef struct {
    int batch, seq;          // B sequences of T tokens per micro-batch
    double lr, weight_decay, beta1, beta2, eps, clip;  // AdamW (torch's), clip by global norm (0: off)
    int bf16;                // bf16 operands in the matrix products (f32 master weights)
    int recompute;           // activation checkpointing
} gemma3_train_options;
gemma3_train_options gemma3_train_defaults(void);

// A trainer with f32 copies of the model's weights (every tensor trainable).
gemma3_trainer *gemma3_trainer_new(const gemma3_model *m, const gemma3_train_options *o);
void gemma3_trainer_free(gemma3_trainer *t);
// Mean next-token loss of inputs[B*T] against targets[B*T] (target < 0: ignored). With
// gradients: *grads_out (may be NULL) receives a pointer to the flat f32 gradient, valid
// until the next call. NAN with gemma3_last_error() on error.
double gemma3_trainer_loss(gemma3_trainer *t, const int32_t *inputs, const int32_t *targets);
double gemma3_trainer_grad(gemma3_trainer *t, const int32_t *inputs, const int32_t *targets);
// The gradient of one tensor by its checkpoint name ([numel] f32, valid until the next call).
const float *gemma3_trainer_tensor_grad(const gemma3_trainer *t, const char *name, int64_t *numel);
// One optimizer step on the gradient of the last gemma3_trainer_grad (clipped); returns the
// gradient norm before clipping, or -1.
double gemma3_trainer_step(gemma3_trainer *t);
// Writes config.json + model.safetensors (Hub format; bf16 1: BF16 weights, else F32).
int gemma3_trainer_save(const gemma3_trainer *t, const char *dir, int bf16);
// The trainable tensors: how many, and tensor i's checkpoint name with its shape (ndim 1 or
// 2 into shape[2]); NULL if i is out of range.
int gemma3_trainer_tensor_count(const gemma3_trainer *t);
const char *gemma3_trainer_tensor_info(const gemma3_trainer *t, int i, int *ndim, int64_t shape[2]);

// ---- sparse autoencoders (JumpReLU, ReLU, TopK) ----

typedef struct gemma3_sae gemma3_sae;

// Opens an SAE: a folder (or file) in Gemma Scope 2's layout (params.safetensors: w_enc
// [d_model, d_sae], b_enc, threshold, w_dec [d_sae, d_model], b_dec; config.json), Gemma Scope
// 1's (params.npz: W_enc, W_dec, b_enc, b_dec, threshold) or SAELens' (sae_weights.safetensors
// + cfg.json). Every value must be finite; the message names the file and tensor otherwise.
gemma3_sae *gemma3_sae_open(const char *path);
void gemma3_sae_close(gemma3_sae *s);
// d_model and d_sae; the hook site its config names (our TransformerLens name) or "".
int gemma3_sae_dims(const gemma3_sae *s, int *d_model, int *d_sae);
const char *gemma3_sae_site(const gemma3_sae *s);
// features[n][d_sae] = JumpReLU(x W_enc + b_enc) (pre > threshold ? pre : 0), x [n][d_model].
int gemma3_sae_encode(const gemma3_sae *s, const float *x, int n, float *features);
// x[n][d_model] = features W_dec + b_dec.
int gemma3_sae_decode(const gemma3_sae *s, const float *features, int n, float *x);

#ifdef __cplusplus
}
#endif

#endif
