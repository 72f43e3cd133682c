// tokenizer.h: Gemma's tokenizer (Gemma 3: 262,144 pieces; Gemma 2: 256,000), read from either
// tokenizer.json (Hugging Face) or tokenizer.model (SentencePiece protobuf, parsed here without
// the SentencePiece library), encoding and decoding exactly as Hugging Face `tokenizers` does:
// added/special tokens matched in the raw text first (leftmost, longest), spaces become `▁`,
// no dummy prefix, BPE merges by rank, byte fallback for characters outside the vocabulary.
//
// A loaded G3Tokenizer is immutable: any number of threads may encode and decode with it at
// once. Encoding scratch (and a cache of already-merged words) lives in a G3TokEncoder, one per
// thread; g3_tok_encode makes a temporary one for callers who do not care.
//
// Not here: training a tokenizer, Unigram models, normalizers other than Gemma's.
#ifndef G3_TOKENIZER_H
#define G3_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct G3Tokenizer G3Tokenizer;
typedef struct G3TokEncoder G3TokEncoder;

// ---- loading ----
// path: a tokenizer.json, a tokenizer.model, a model folder holding either (json preferred), or a
// GGUF model file (its tokenizer.ggml.* metadata; load_gguf.c).
// A binary cache (under $XDG_CACHE_HOME/gemma3, by default ~/.cache/gemma3; none if that is not
// writable) makes later loads fast; it is rebuilt when the source's size or mtime changes.
// Returns NULL with the reason in g3_error().
G3Tokenizer *g3_tok_load(const char *path);
enum { G3_TOK_LOAD_NO_CACHE = 1 };  // neither read nor write the cache
G3Tokenizer *g3_tok_load_ex(const char *path, int flags);
void g3_tok_free(G3Tokenizer *tok);

// ---- the vocabulary ----
int g3_tok_vocab_size(const G3Tokenizer *tok);          // highest id + 1
const char *g3_tok_piece(const G3Tokenizer *tok, int id);  // as stored (`▁` for space); NULL if no such id
int g3_tok_id_of(const G3Tokenizer *tok, const char *piece);  // exact piece -> id, or -1
int g3_tok_bos(const G3Tokenizer *tok);          // <bos>
int g3_tok_eos(const G3Tokenizer *tok);          // <eos>
int g3_tok_pad(const G3Tokenizer *tok);          // <pad>
int g3_tok_start_of_turn(const G3Tokenizer *tok);  // <start_of_turn>, -1 if the vocabulary lacks it
int g3_tok_end_of_turn(const G3Tokenizer *tok);    // <end_of_turn>, -1 if the vocabulary lacks it
int g3_tok_is_special(const G3Tokenizer *tok, int id);  // control tokens (<bos>, <end_of_turn>, ...)
int g3_tok_is_stop(const G3Tokenizer *tok, int id);     // <eos> or <end_of_turn>

// ---- encoding ----
// parse_special=1 recognises special-token text such as "<start_of_turn>" as the token (the
// reference's default); parse_special=0 spells it out as ordinary characters, which is what
// untrusted user text must get. Non-special added tokens (newline/tab/space runs, HTML tags)
// are recognised either way, as in the reference. Invalid UTF-8 bytes are encoded as their
// byte-fallback tokens (<0xNN>), so nothing is lost and nothing fails.
// Returns the number of ids written to a malloc'd *ids_out (free it), or -1.
int g3_tok_encode(const G3Tokenizer *tok, const char *text, size_t len, int add_bos, int parse_special,
                  int32_t **ids_out);
// The same, splitting a long text at word boundaries over nthreads OpenMP threads (0: all).
// Gives exactly the ids of g3_tok_encode.
int g3_tok_encode_parallel(const G3Tokenizer *tok, const char *text, size_t len, int add_bos, int parse_special,
                           int nthreads, int32_t **ids_out);

// Reusable per-thread encoder for many calls (batches, data sets): keeps its buffers and a cache
// of merged words. *ids points into the encoder and stays valid until its next call.
G3TokEncoder *g3_tok_encoder_new(const G3Tokenizer *tok);
void g3_tok_encoder_free(G3TokEncoder *enc);
int g3_tok_encoder_run(G3TokEncoder *enc, const char *text, size_t len, int add_bos, int parse_special,
                       const int32_t **ids);

// ---- decoding ----
// Streaming: feed ids one at a time; bytes of byte-fallback pieces are held until they form a
// whole UTF-8 character, so printing each step's output never splits a character. A byte
// sequence that cannot become valid UTF-8 comes out as U+FFFD per byte.
typedef struct {
    uint8_t pending[4];
    int npending;      // bytes held
    int need;          // bytes the held character has in all
    int skip_special;  // emit nothing for control tokens (<bos>, <eos>, <end_of_turn>, ...)
} G3TokDecoder;
enum { G3_TOK_DECODE_MAX = 512 };  // out must hold this many bytes for one step or flush
void g3_tok_decoder_init(G3TokDecoder *dec, int skip_special);
// Writes the text now complete to out (not NUL-terminated); returns its length, or -1 for an id
// outside the vocabulary or cap < G3_TOK_DECODE_MAX.
int g3_tok_decode_step(const G3Tokenizer *tok, G3TokDecoder *dec, int id, char *out, size_t cap);
// Ends the stream: held bytes that never completed a character come out as U+FFFD each.
int g3_tok_decode_flush(G3TokDecoder *dec, char *out, size_t cap);
// Whole sequence to a malloc'd NUL-terminated string (*len_out, if given, excludes the NUL).
char *g3_tok_decode(const G3Tokenizer *tok, const int32_t *ids, int n, int skip_special, size_t *len_out);

// ---- chat ----
// Gemma's chat format:
//   <bos><start_of_turn>user\n{system}\n\n{text}<end_of_turn>\n<start_of_turn>model\n{text}<end_of_turn>\n
//   ... and, with add_generation_prompt, a final <start_of_turn>model\n.
// Turns alternate "user" / "model" ("assistant" is accepted for "model"), starting with the
// user; each text is trimmed of surrounding whitespace, as the reference template does. system
// may be NULL.
typedef struct {
    const char *role;
    const char *text;
} G3ChatTurn;
// The formatted prompt as text (for display and for tools that tokenize themselves).
char *g3_chat_format(const G3ChatTurn *turns, int n, const char *system, int add_generation_prompt);
// The formatted prompt as ids, with every turn's text encoded as plain text (parse_special=0), so
// a user cannot forge "<end_of_turn>" or a model turn. Returns the count (malloc'd *ids_out) or -1.
int g3_chat_encode(const G3Tokenizer *tok, const G3ChatTurn *turns, int n, const char *system,
                   int add_generation_prompt, int32_t **ids_out);

#endif
