// data.h: training data. Text (a file, or a folder of *.txt files) is tokenized once into a
// binary token file that is memory-mapped for training; batches are random windows of T+1
// tokens whose positions are a pure function of (seed, step, micro-step), so a resumed run
// sees exactly the batches it would have seen.
//
// Documents: a line `<|endoftext|>` (TinyStories' separator) and each file's end close a
// document; each becomes `<bos> text <eos>` (text trimmed of surrounding whitespace), as the
// reference recipes pack pretraining data. Windows may span documents (packing, no masking).
//
// Token file (little-endian): a 64-byte header {magic "G3TOKENS", u32 version 1, u32 vocab,
// i32 bos, i32 eos, u64 ntok, u32 nsrc, u32 data_offset, 24 reserved bytes}, then nsrc source
// records {u64 size, i64 mtime_ns, u32 path_len, path bytes}, zero padding to data_offset (a
// multiple of 64), then u32 tokens[ntok]. The sources (text files and the tokenizer) let a
// stale cache be noticed and rebuilt. Written atomically.
//
// Not here: shuffling whole documents, masking attention across documents, streaming corpora
// larger than memory during preparation (they are tokenized in memory once).
#ifndef G3_DATA_H
#define G3_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "../tokenizer/tokenizer.h"

typedef struct {
    char path[4096];
    uint64_t size;
    int64_t mtime_ns;
} G3DataSource;

typedef struct {
    const uint32_t *tok;  // [ntok], in the mapping
    int64_t ntok;
    int vocab, bos, eos;  // vocab: the tokenizer's (highest id + 1)
    int max_id;           // the largest id present (what the model's embedding must cover)
    void *map;
    size_t map_size;
} G3TokenFile;

// Whether path is a token file (by its magic).
int g3_tokfile_is(const char *path);
// Writes ids[n] (each < vocab) as a token file, atomically.
int g3_tokfile_write(const char *path, const uint32_t *ids, int64_t n, int vocab, int bos, int eos,
                     const G3DataSource *src, int nsrc);
// Maps and validates (sizes, every token < vocab).
int g3_tokfile_open(G3TokenFile *f, const char *path);
void g3_tokfile_close(G3TokenFile *f);
// 1 if the token file at path exists and records exactly these sources (sizes and mtimes).
int g3_tokfile_fresh(const char *path, const G3DataSource *src, int nsrc);

// The sources of data_path (the file, or the folder's *.txt files sorted by name) followed by
// the tokenizer's file. Returns the count (malloc'd *out) or -1.
int g3_data_sources(const char *data_path, const char *tok_path, G3DataSource **out);
// Tokenizes data_path into a token file at out_path unless one built from the same sources is
// already there. Text must be UTF-8 without NUL bytes: anything else (a binary file) is an
// error naming the file and the byte offset. Encodes documents in parallel (one encoder per thread). Progress on stderr if verbose.
int g3_data_prepare(const char *data_path, const char *tok_path, const char *out_path, int verbose);

// Batches. span = tokens [0, n) of a file (training part). Fills inputs/targets [B*T] with B
// windows of T+1 tokens starting at uniform positions drawn from the stream (seed, step, micro).
void g3_data_batch(const uint32_t *tok, int64_t n, int B, int T, uint64_t seed, int64_t step, int micro,
                   int32_t *inputs, int32_t *targets);
// Validation batch k: windows k*B .. k*B+B-1 of the consecutive, non-overlapping windows of
// T+1 tokens (stride T) over tok[0, n), wrapping around. The same every evaluation.
void g3_data_val_batch(const uint32_t *tok, int64_t n, int B, int T, int64_t k, int32_t *inputs, int32_t *targets);
// Where the held-out split begins when one file serves both: the first <bos> at or after
// (1 - frac) * ntok (so no document is cut in two), or ntok - that if no <bos> follows.
int64_t g3_data_split(const G3TokenFile *f, double frac);

#endif
