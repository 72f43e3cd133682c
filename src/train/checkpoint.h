// checkpoint.h: training checkpoints that lose nothing. In the run's folder DIR:
//   DIR/train_state.safetensors  the commit point: f32 master weights ("master.<tensor>"),
//                                AdamW moments ("adam_m.<tensor>", "adam_v.<tensor>": f32, or
//                                u8 codes plus "adam_m_absmax.<tensor>" ... for 8-bit), the
//                                counters ("state": step, adam t, seed) and the run's settings
//                                ("run.json", the JSON text as u8).
//   DIR/config.json + DIR/model.safetensors   the weights in the Hub format (transformers
//                                loads them), exported from the master weights; a sharded
//                                layout (index + shards) left there by an earlier writer is
//                                removed once model.safetensors is in place (safetensors.h).
//   DIR/checkpoint.json          {"step": N, ...}: says which state the export matches.
// A save writes the state to train_state.next.safetensors (temporary name, fsync, rename: one
// atomic file), renames it over train_state.safetensors (the commit), then exports the model,
// then writes checkpoint.json. A crash before the commit leaves the previous checkpoint whole;
// a crash after it leaves a complete new state whose export may lag, which g3_ckpt_load notices
// (checkpoint.json's step differs) and the caller repairs by exporting again. Batches are
// drawn from (seed, step, micro-step), so the state needs no data cursor besides the step.
#ifndef G3_CHECKPOINT_H
#define G3_CHECKPOINT_H

#include <stdint.h>

#include "optim.h"
#include "train.h"

typedef struct {
    int64_t step;      // optimizer steps completed = the index of the next step = data position
    uint64_t seed;
    double loss;       // the last step's training loss (informative)
    char *run_json;    // the run's settings (JSON object text); malloc'd by g3_ckpt_load
} G3CkptInfo;

// 1 if DIR holds a committed training state.
int g3_ckpt_exists(const char *dir);
// Saves as described above; the Hub export in dt (F32 or BF16). Weights that are not all
// finite (a diverged run) are refused: nothing is written.
int g3_ckpt_save(const char *dir, const G3TrainModel *tm, const G3AdamW *o, const G3CkptInfo *info, G3DType dt);
// Loads master weights into tm and moments into o (both already built for the same shape and
// optimizer bits: any mismatch is an error naming the tensor). *export_current is set to 1
// when DIR's model.safetensors matches this state.
int g3_ckpt_load(const char *dir, G3TrainModel *tm, G3AdamW *o, G3CkptInfo *info, int *export_current);
// Exports the model and writes checkpoint.json for step (the tail of a save).
int g3_ckpt_export(const char *dir, const G3TrainModel *tm, const G3CkptInfo *info, G3DType dt);

#endif
