// examples.h: training data made of whole examples, read from JSONL (one JSON object a line),
// as opposed to data.h's windows over one packed token stream. Each line is one example:
//   {"ids": [...]}                       the token ids as given (nothing added); loss on every
//                                        token after the first
//   {"text": "..."}                      <bos> text <eos>; loss on every token after <bos>
//   {"prompt": "...", "completion": "..."}  <bos> prompt completion <eos>; loss on the
//                                        completion and <eos> only (TRL's completion-only loss)
//   {"messages": [{"role", "content"}, ...]}  Gemma's chat template (tokenizer.h, g3_chat_encode;
//                                        a first "system" turn is folded into the first user
//                                        turn as the template does); loss on the model turns'
//                                        text and their <end_of_turn> only
//   {"prompt", "chosen", "rejected"}     a preference pair: two sequences, <bos> prompt chosen
//                                        <eos> and <bos> prompt rejected <eos>, loss weights on
//                                        the completions (for DPO)
//   {"text": "...", "label": N}          classification: <bos> text, an integer label >= 0 (at
//                                        most T tokens: all are inputs); {"ids", "label"}: ids as given
// prompt, completion, chosen and rejected may instead be arrays of token ids (all of a line's
// or none): then they are used as given, nothing added (pre-tokenized data).
// Every line of a file must be of one family (language modelling: ids/text/prompt+completion/
// messages; preference; classification). Blank lines are skipped. An example may hold at most
// T+1 tokens (T = --seq): one of exactly T+1 tokens fills a sequence of T inputs and T targets.
// Anything else (malformed JSON, a missing or mistyped field, an empty completion, an unknown
// role, an id outside the vocabulary, an example longer than T+1 tokens) is an error naming
// the file and the line.
//
// Batches are whole examples, padded: example k's tokens x[0..L) become inputs x[0..L-1) and
// targets x[1..L) (a target whose loss weight is 0 is written as -1, ignored), and the rest of
// the row is padding (input <pad> = 0, target -1). Attention is causal, so the padding after an
// example never reaches it. Or packed (below: several examples a row, attention kept within
// each). The order is a seeded permutation of the
// examples drawn afresh for each epoch, and example slot s (= (step * accum + micro) * B + b)
// is example perm_{s / n}[s % n]: a pure function of (seed, slot), so a resumed run sees
// exactly the examples it would have seen.
#ifndef G3_EXAMPLES_H
#define G3_EXAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "../tokenizer/tokenizer.h"

typedef enum { G3_EX_LM, G3_EX_PREF, G3_EX_CLASS } G3ExKind;

typedef struct {
    G3ExKind kind;
    int64_t n;        // sequences (a preference pair is two: 2i chosen, 2i+1 rejected)
    int64_t *off;     // [n + 1]: sequence i is tok[off[i], off[i + 1])
    int32_t *tok;     // [off[n]]
    uint8_t *w;       // [off[n]]: 1 where the token is a loss target (predicted from the one before)
    int32_t *label;   // [n] classification labels, else NULL
    int max_len;      // the longest sequence, in tokens
    int max_id;       // the largest id present
    int nlabels;      // classification: the largest label + 1
    // the permutation of the epoch last asked for (a cache; a pure function of seed and epoch)
    int64_t *perm, perm_epoch;
    uint64_t perm_seed;
    // packing (g3_examples_pack_batch): the packed epoch last asked for (its order, and the
    // start of each row in it), and the cumulative row counts of epochs 0 .. pk_nep - 1
    int64_t *pk_order, *pk_start, pk_rows, pk_epoch;
    uint64_t pk_seed;
    int pk_T;
    int64_t *pk_cum, pk_nep;
    uint64_t pk_cum_seed;
    int pk_cum_T;
} G3Examples;

// 1 if path names a JSONL file (by its extension: .jsonl).
int g3_examples_is(const char *path);
// Parses text[len] (name: the file's name in messages). tok may be NULL when every line is
// {"ids"}; T bounds the length (T + 1 tokens), vocab the ids. 0 or -1 (error names name:line).
int g3_examples_parse(G3Examples *e, const char *text, size_t len, const char *name, const G3Tokenizer *tok, int T, int vocab);
// Reads and parses a file; the tokenizer (tok_path, may be NULL) is loaded only if a line needs it.
int g3_examples_load(G3Examples *e, const char *path, const char *tok_path, int T, int vocab);
void g3_examples_free(G3Examples *e);
// Moves the last ceil(frac * count) examples (at least 1, leaving at least 1) into *val.
int g3_examples_split(G3Examples *e, double frac, G3Examples *val);

// Sequences per epoch unit: n for language modelling and classification, n/2 pairs for preference.
static inline int64_t g3_examples_count(const G3Examples *e) { return e->kind == G3_EX_PREF ? e->n / 2 : e->n; }
// The example in training slot s (see above); -1 if out of memory (the permutation).
int64_t g3_examples_at(G3Examples *e, uint64_t seed, int64_t slot);
// Fills inputs/targets [B*T] with the sequences seq[0..B) (indices into e), padded.
void g3_examples_fill(const G3Examples *e, const int64_t *seq, int B, int T, int32_t *inputs, int32_t *targets);
// A training batch: examples of slots first .. first + B - 1 (language modelling). 0 or -1.
int g3_examples_batch(G3Examples *e, int B, int T, uint64_t seed, int64_t first, int32_t *inputs, int32_t *targets);
// Packing (--pack; language modelling): each epoch's examples, in that epoch's order, are laid
// greedily into rows of T positions, an example of L tokens taking L - 1 (its inputs; its
// targets beside them), a new row started when the next example does not fit; the rest of a
// row is padding (input 0, target -1). Each example keeps its own positions 0 .. L-2 and its
// own segment, so with the attention mask of pos / seg (backend.h G3AttnMask, stride T) it sees
// only itself: the packed row's loss is the sum of its examples' losses computed separately.
// Row slot s (= (step * accum + micro) * B + b) is row s of the epochs' packed rows laid end
// to end, a pure function of (seed, T, s): resume stays exact.
// Fills inputs/targets/pos/seg [B*T] (seg: the example's index in its row, -1 for padding)
// with rows first .. first + B - 1; returns the number of examples in them, or -1.
int64_t g3_examples_pack_batch(G3Examples *e, int B, int T, uint64_t seed, int64_t first, int32_t *inputs, int32_t *targets,
                               int32_t *pos, int32_t *seg);
// One packed row [T] of the sequences seq[0..nseq) (their spans must fit: at most T in all).
void g3_examples_fill_packed(const G3Examples *e, const int64_t *seq, int nseq, int T, int32_t *inputs, int32_t *targets, int32_t *pos,
                             int32_t *seg);
// Packed rows in epochs 0 .. epochs - 1 (for --epochs), or -1.
int64_t g3_examples_pack_rows(G3Examples *e, int T, uint64_t seed, int64_t epochs);
// Classification rows: every token of sequence seq[b] as input (at most T), <pad> after;
// last[b] its last position, labels[b] its label.
void g3_examples_fill_cls(const G3Examples *e, const int64_t *seq, int B, int T, int32_t *inputs, int32_t *last, int32_t *labels);
// Validation batch k: examples k*B .. k*B + B - 1 in file order, wrapping around.
void g3_examples_val_batch(const G3Examples *e, int B, int T, int64_t k, int32_t *inputs, int32_t *targets);

#endif
