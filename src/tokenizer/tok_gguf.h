// tok_gguf.h: the tokenizer into a GGUF file's metadata (the reading side is g3_tok_load, which
// takes a .gguf model file like a tokenizer file).
#ifndef G3_TOK_GGUF_H
#define G3_TOK_GGUF_H

struct GGUFWriter;

// Writes tokenizer.ggml.* for the tokenizer at path (a file or a model folder, as g3_tok_load
// takes them) the way llama.cpp's converter does for Gemma: model "llama", tokens, scores,
// token types, the bos/eos/unknown/padding ids. From a tokenizer.model the scores and types are
// SentencePiece's own; from a tokenizer.json (no scores) the merges are written too, in rank
// order, with scores that rank the merged pieces alike, so either file loads back to the same
// encodings. rows: the model's embedding rows; a tokenizer with fewer pieces gets unused
// "[PADi]" tokens up to it (llama.cpp sizes the vocabulary by the token list; 0: none). A GGUF
// model file's tokenizer is copied. 0, or -1 with the reason.
int g3_tok_write_gguf_meta(struct GGUFWriter *w, const char *path, int32_t rows);

// A GGUF model file's tokenizer (tokens, scores, types; no merge list) as a SentencePiece
// tokenizer.model at out, which g3_tok_load reads back to the same encodings. 0 or -1.
int g3_tok_gguf_to_spm(const char *gguf, const char *out);

#endif
