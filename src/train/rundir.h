// rundir.h: the run folder of `gemma3 train` as a thing one run owns: made (remembering what
// was made, so that a run that fails before its first checkpoint leaves nothing behind),
// locked against a second run (flock: released by the kernel when the holder dies, so a lock
// is never stale), swept of the temporaries that killed writes left, and given a copy of the
// tokenizer the run used (so later commands on it need no --tokenizer).
// Not here: what a checkpoint holds (checkpoint.h), the data (data.h).
#ifndef G3_RUNDIR_H
#define G3_RUNDIR_H

typedef struct {
    char dir[4096];
    char top[4096];        // the highest folder this run created; "" when dir already existed
    char lock_path[4200];  // dir/train.lock
    int lock_fd;           // -1 when not held
} G3RunDir;

// 1 when dir holds a model in the Hub layout (config.json, model.safetensors or
// model.safetensors.index.json).
int g3_dir_holds_model(const char *dir);
// Makes dir (and missing parents), takes its lock and removes temporaries of writers that are
// gone. -1 with a message naming the holder's pid when another run holds the folder.
int g3_rundir_open(G3RunDir *r, const char *dir);
// Releases the lock. discard = 1 also removes the folder when this run created it (its files,
// then the folders it made): for a run that failed before it saved anything.
void g3_rundir_close(G3RunDir *r, int discard);
// Copies the tokenizer file tok (a tokenizer.json / tokenizer.model, or a folder holding one,
// json first as g3_tok_load picks) into dir under its canonical name (by content: JSON or the
// SentencePiece model), unless dir already holds the same bytes there. *copied (may be NULL)
// tells whether it wrote. When a tokenizer.model is copied, a tokenizer.json already in dir
// would shadow it (loaders take the JSON first), so that is removed, and *removed_other says so.
int g3_rundir_copy_tokenizer(const char *dir, const char *tok, int *copied, int *removed_other);

#endif
