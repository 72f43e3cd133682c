// tok_internal.h: the tokenizer's data, shared by its files (not part of the public API).
//
// Both loaders (tokenizer.json, tokenizer.model) and the binary cache fill the same three
// arrays — pieces, per-piece flags, merges in rank order — and tok_index() derives every lookup
// structure from them. So there is one encoder, and the cache stores only the three arrays.
#ifndef G3_TOK_INTERNAL_H
#define G3_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

enum {
    TOKF_BYTE = 1,     // <0xNN> byte-fallback piece
    TOKF_ADDED = 2,    // matched in the raw text before BPE (HF added token, SPM user-defined/control)
    TOKF_SPECIAL = 4,  // control token: only matched when parse_special, skippable when decoding
    TOKF_UNUSED = 8,   // no piece has this id (a hole in the vocabulary)
};

typedef struct {
    int32_t left, right;  // the adjacent pair that merges
    int32_t result;       // the merged piece
    int32_t rank;         // lower merges first; equal ranks go leftmost first
} TokMerge;

typedef struct {
    uint32_t hash;  // of the piece bytes (0 = empty slot)
    int32_t id;
} TokPieceSlot;

typedef struct {
    int32_t child, sibling;  // trie over the bytes of added tokens (-1 = none)
    int32_t id;              // token ending here, or -1
    uint8_t byte;
} TokTrieNode;

struct G3Tokenizer {
    // the three arrays every source fills (and the cache stores)
    int32_t n_vocab;
    char *blob;        // piece bytes, each followed by a NUL
    size_t blob_len;
    uint32_t *off;     // [n_vocab+1]: piece i is blob[off[i] .. off[i+1]-1), NUL excluded
    uint8_t *flags;    // [n_vocab] TOKF_*
    TokMerge *merges;  // [n_merges]
    int32_t n_merges;

    // derived by tok_index()
    TokPieceSlot *piece_tab;  // open addressing, piece bytes -> id
    uint32_t piece_mask;
    TokMerge *merge_tab;      // open addressing on (left, right); left = -1 marks empty
    uint32_t merge_mask;
    TokTrieNode *trie;        // node 0 is the root
    int32_t n_trie;
    uint8_t added_first[256]; // 1 if some added token starts with this byte
    int32_t ascii_id[128];    // single-character pieces for ASCII, -1 if none
    int32_t byte_id[256];     // <0xNN>, -1 if none
    int32_t space_id;         // "▁"
    int32_t unk_id, bos_id, eos_id, pad_id, sot_id, eot_id;
    uint32_t *glue;           // sorted code points that some piece has right before a `▁`
    int32_t n_glue;           // (a word boundary is never placed after one of these)
    int added_has_space;      // an added token holds ' ' (then parallel splitting is off)
};

static inline const char *tok_piece_ptr(const G3Tokenizer *t, int id) { return t->blob + t->off[id]; }
static inline uint32_t tok_piece_len(const G3Tokenizer *t, int id) { return t->off[id + 1] - t->off[id] - 1; }

uint32_t tok_hash(const void *p, size_t n);
// Piece bytes -> id, or -1. Needs the piece table (tok_index_pieces).
int32_t tok_lookup(const G3Tokenizer *t, const char *s, size_t n);
// Builds the piece table; the loaders call it before resolving merges by name.
int tok_index_pieces(G3Tokenizer *t);
// Builds everything else (merge table, added-token trie, tables, glue set, special ids).
int tok_index_rest(G3Tokenizer *t);
// Appends piece bytes to a growing blob/off pair (loader helper).
typedef struct {
    char *blob;
    size_t len, cap;
} TokBlob;
int tok_blob_add(TokBlob *b, const char *s, size_t n, uint32_t *off_out);
// Merge table lookup: NULL when the pair never merges.
const TokMerge *tok_find_merge(const G3Tokenizer *t, int32_t left, int32_t right);

// Loaders: fill the three arrays (and call tok_index_pieces). From memory so fuzzers can use them.
int tok_load_json_mem(G3Tokenizer *t, const char *text, size_t len);
int tok_load_spm_mem(G3Tokenizer *t, const uint8_t *data, size_t len);
// SentencePiece's pieces (also what a GGUF's tokenizer.ggml.tokens/scores/token_type hold; the
// type numbers are the same in both): tok_from_spm_pieces fills the arrays from them, deriving
// the merges from the scores. s points into the caller's bytes.
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };
typedef struct {
    const uint8_t *s;
    uint32_t n;
    float score;
    int type;
} TokSpmPiece;
int tok_spm_pieces(const uint8_t *data, size_t len, TokSpmPiece **out, int32_t *n_out);  // *out malloc'd
int tok_from_spm_pieces(G3Tokenizer *t, const TokSpmPiece *pc, int32_t n);
// From a parsed GGUF file's tokenizer.ggml.* metadata (load_gguf.c).
struct GGUFFile;
int tok_load_gguf(G3Tokenizer *t, const struct GGUFFile *g);
// Binary cache (cache.c): serialise / restore the three arrays.
int tok_cache_read_mem(G3Tokenizer *t, const uint8_t *data, size_t len, uint64_t src_size, int64_t src_mtime_ns);
// src: the tokenizer file it caches (its absolute path is recorded, for tok_cache_sweep).
int tok_cache_write(const G3Tokenizer *t, const char *path, const char *src, uint64_t src_size, int64_t src_mtime_ns);
// Removes the caches in dir whose tokenizer file is gone or changed (and any that cannot be
// read as this version's caches): they would never be read again.
void tok_cache_sweep(const char *dir);
// Where the cache of the tokenizer file src lives: $XDG_CACHE_HOME/gemma3/<hash>-<name>.g3tok
// (~/.cache/gemma3 when XDG_CACHE_HOME is unset). -1 when neither variable gives a folder.
int tok_cache_path(char *out, size_t cap, const char *src);
void tok_free_contents(G3Tokenizer *t);

// UTF-8: length of the valid sequence at s[0..n), or 0 if s[0] does not start one.
int tok_utf8_len(const uint8_t *s, size_t n);

#endif
