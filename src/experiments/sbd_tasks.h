// sbd_tasks.h: the tasks of `gemma3 sbd` (the Set Block Decoding experiment): examples as token
// ids in a small vocabulary of its own, so that a tiny model learns them on a CPU in minutes.
//   0 <pad>  1 <eos>  2 <bos>  3 <unk>  4 <mask> (Gemma 3's ids)  5..14 the digits 0..9
//   15 '='  16 '+'  17.. a tag per task (the prompt's second token)
// copy:    <bos> C d1..dn =   ->  d1..dn <eos>          n in [8, 16]
// reverse: <bos> R d1..dn =   ->  dn..d1 <eos>          n in [8, 16]
// add:     <bos> A a + b =    ->  a + b <eos>           a, b of 3..7 significant digits, all three
//          written least significant digit first and zero-padded to a fixed width (a, b: 7
//          digits, the sum: 8): the usual form that lets a small transformer learn addition
//          (Lee et al. 2023, "Teaching arithmetic to small transformers"): each sum digit then
//          sits at a fixed distance from the two digits it adds, and with the low digits first
//          the carry into it comes from digits already written. Unpadded operands of varying
//          length (the first form) left sum digit i at a distance that depends on both lengths:
//          the NTP model needed 3000 steps, the SBD model never learned it.
// random:  <bos> X d1..dn =   ->  12 uniform digits <eos>  (n in [4, 8]): not determined by the
//          prompt, so no sampler can reveal several tokens a pass with confidence
// Every answer ends with <eos>; an example fits G3_SBD_TASK_SEQ + 1 tokens.
#ifndef G3_SBD_TASKS_H
#define G3_SBD_TASKS_H

#include <stdint.h>

#include "../base/rng.h"

enum { G3_SBD_TASK_VOCAB = 32, G3_SBD_TASK_SEQ = 40, G3_SBD_TASK_MAXANS = 18, G3_SBD_ADD_DIGITS = 7 };

typedef enum { G3_TASK_COPY, G3_TASK_REVERSE, G3_TASK_ADD, G3_TASK_RANDOM, G3_TASK_COUNT } G3SbdTask;

// The task named name ("copy", "reverse", "add", "random"), or -1.
int g3_sbd_task_parse(const char *name);
const char *g3_sbd_task_name(G3SbdTask t);
// One example from r: prompt[*np] and answer[*na] (its <eos> included); buffers of
// G3_SBD_TASK_SEQ + 1 ids each.
void g3_sbd_task_example(G3SbdTask t, G3Rng *r, int32_t *prompt, int *np, int32_t *answer, int *na);

#endif
