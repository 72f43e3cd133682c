// trim.h: a smaller vocabulary cut out of a BPE tokenizer for one corpus (`gemma3 tokenizer
// trim`). A small model trained on Gemma 3's 262,144 pieces would be mostly embedding; the trimmed
// tokenizer keeps Gemma's pieces, merges and pipeline but only the pieces a corpus uses most.
//
// What is kept (in the source's id order, so <pad> <eos> <bos> <unk> stay 0..3):
//   - the control and chat tokens (<pad> <eos> <bos> <unk> <mask> <start_of_turn> <end_of_turn>),
//   - the 256 byte-fallback pieces <0x00>..<0xFF> (so any text still encodes, and decodes back),
//   - then, most used first (piece counts of the full tokenizer's encoding of the corpus), each
//     piece together with every piece its merges pass through (the pieces BPE forms on the way
//     when it encodes the piece's own text; added tokens too, since Gemma's runs of `▁` are
//     also formed by BPE from spaces) while the total stays within the vocabulary size.
// The merges kept are those whose two parts and result are all kept, in their original order.
// So a text whose full-tokenizer encoding uses only kept pieces encodes to the same pieces: each
// merge that encoding makes is still there, and every merge still there was there before. Any
// other text falls back to shorter pieces or bytes, losslessly.
//
// Not here: training new merges, re-ranking merges, Unigram or WordPiece tokenizers.
#ifndef G3_TOK_TRIM_H
#define G3_TOK_TRIM_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

// Adds to counts[id] (n_vocab entries, zeroed by the caller) how often the tokenizer's encoding
// of text uses each piece (plain text: special-token spellings are not recognised).
int g3_tok_trim_count(const G3Tokenizer *tok, const char *text, size_t len, int nthreads, int64_t *counts);

// Chooses the pieces to keep (keep[id] = 1; n_vocab entries) for a vocabulary of at most
// vocab pieces in all. Returns the number kept, or -1 (vocab smaller than the pieces that
// must be kept).
int g3_tok_trim_select(const G3Tokenizer *tok, const int64_t *counts, int vocab, uint8_t *keep);

// The pieces BPE forms when it encodes piece id's own text (id included), written to out
// (cap entries); returns how many, or -1 if cap is too small. Used by select, and by tests.
int g3_tok_trim_closure(const G3Tokenizer *tok, int id, int32_t *out, int cap);

// Writes the trimmed tokenizer.json to out_path (atomically): src_json is the source
// tokenizer.json's path (its pipeline, added-token fields and merges are copied), tok the same
// file loaded. Kept pieces are renumbered densely in their original order.
int g3_tok_trim_write_json(const char *src_json, const G3Tokenizer *tok, const uint8_t *keep, const char *out_path);

#endif
