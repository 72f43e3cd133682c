// gemma3.h: the public API of libgemma3, the library behind the gemma3 program.
//
//   model      G3Config, G3Model: config.json in every Hub form, the tensor table, mmapped
//              weights (model/config.h, model/model.h); random checkpoints (model/init.h)
//   inference  G3State, g3_forward, g3_prefill: batched segments, windowed KV cache,
//              hooks at every named site of the pass, editable in place (model/hooks.h),
//              recorded into arrays by slot and position (model/record.h)
//   generation g3_generate: continuous batching with per-sequence stops (gen/generate.h),
//              prompt files (gen/prompts.h), sampling chain (sampler/sampler.h)
//   tokenizer  g3_tok_*: tokenizer.json / tokenizer.model, streaming decode, chat format
//              (tokenizer/tokenizer.h)
//   analysis   interventions: head/MLP ablation, activation patching, steering vectors, and the
//              clean-vs-intervened comparison (analysis/intervene.h)
//   training   G3TrainModel, g3_train_forward_backward, bf16 mode (train/train.h), AdamW and friends
//              (train/optim.h), data (train/data.h), checkpoints (train/checkpoint.h)
//   analysis   g3_analyze_run: per-head attention metrics, residual stream, logit lens
//              (analysis/analyze.h); JSON and self-contained HTML reports (analysis/report.h)
//   kernels    g3_matmul, g3_sgemm, g3_gemm_bf16 with scalar references (kernels/kernels.h)
//   files      safetensors reader/writer (io/safetensors.h), .npz writer (io/npz.h), JSON reader (base/json.h)
//
// Errors: functions return -1 (or NULL) and g3_error() says what went wrong, naming the
// file, tensor or field. The library never exits or prints on its own.
// Build: link build/rel/libgemma3.a with -fopenmp -lm -lz, and add -Iinclude -Isrc.
#ifndef GEMMA3_H
#define GEMMA3_H

#include "../src/analysis/analyze.h"
#include "../src/analysis/report.h"
#include "../src/analysis/intervene.h"
#include "../src/base/base.h"
#include "../src/base/json.h"
#include "../src/gen/generate.h"
#include "../src/gen/prompts.h"
#include "../src/io/npz.h"
#include "../src/io/safetensors.h"
#include "../src/kernels/kernels.h"
#include "../src/model/config.h"
#include "../src/model/forward.h"
#include "../src/model/init.h"
#include "../src/model/model.h"
#include "../src/model/record.h"
#include "../src/sampler/sampler.h"
#include "../src/tokenizer/tokenizer.h"
#include "../src/train/train.h"

#endif
