#!/usr/bin/env bash
# Reproduces models/default: gemma3.c's own small Gemma 3, trained from scratch with
# `gemma3 train` on the books corpus (../shared/data/books) with a trimmed Gemma 3 tokenizer.
# models/default/README.md is the model card (recipe, losses, held-out bits per byte, limits).
#
#   scripts/train_default_model.sh [WORK_DIR]       (default: build/default-model)
#
# Environment (defaults are the shipped model's recipe; this first version was trained on a
# shared 2-core CPU, one thread, ~40 minutes):
#   BOOKS      the corpus folder (books-0*.txt.xz, index.tsv)       ../shared/data/books
#   TOKENIZER  Gemma 3's tokenizer.json                               ../shared/tokenizers/gemma3/tokenizer.json
#              (or tests/data/tokenizer/tokenizer.json.gz, unpacked)
#   VOCAB      trimmed vocabulary                                     4096
#   STEPS      optimizer steps (the last DECAY of them decay the LR)  see below
#   THREADS    training threads                                       1
#   MATMUL     bf16 or f32                                            bf16
#   DEVICE     cpu or cuda (gemma3 train --device)                    cpu
#   OUT        where the model folder is written                      models/default
#
# Steps: 1. unpack the shards; split them into books (a `<|endoftext|>` line ends each) and hold
# out every 50th book (book i with i % 50 == 25, 12 books of 11 authors, listed in the model card)
# for evaluation; 2. trim the tokenizer to VOCAB pieces on every 10th paragraph of the training
# books; 3. train from scratch (warmup-stable-decay schedule, so that the run's length can be
# chosen while it trains: only the last DECAY steps depend on STEPS); 4. copy the exported model
# into OUT with the tokenizer and a generation_config.json; 5. held-out bits per byte (--ctx 256,
# the training length, and 512, perplexity's default).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-build/default-model}
BOOKS=${BOOKS:-../shared/data/books}
TOKENIZER=${TOKENIZER:-../shared/tokenizers/gemma3/tokenizer.json}
VOCAB=${VOCAB:-4096}
STEPS=${STEPS:-1700}
DECAY=${DECAY:-300}
THREADS=${THREADS:-1}
MATMUL=${MATMUL:-bf16}
DEVICE=${DEVICE:-cpu}
OUT=${OUT:-models/default}
BIN=${BIN:-./gemma3}
mkdir -p "$WORK"
[ -x "$BIN" ] || make -j2

. scripts/default_model_lib.sh
dm_tokenizer

# 1. data
dm_split

# 2. tokenizer
$BIN tokenizer trim --tokenizer "$TOKENIZER" --data "$WORK/trim_sample.txt" --vocab "$VOCAB" --out "$WORK/tokenizer" --threads "$THREADS"

# 3. the model: Gemma 3's layout at a small size (5 sliding-window layers : 1 global, QK-norm,
# GeGLU, tied embedding, one KV head)
cat > "$WORK/config.json" <<JSON
{
  "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
  "vocab_size": $VOCAB, "hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 6,
  "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 64, "query_pre_attn_scalar": 64,
  "sliding_window": 128, "max_position_embeddings": 2048, "rms_norm_eps": 1e-06,
  "rope_theta": 1000000, "rope_local_base_freq": 10000, "rope_scaling": null,
  "attn_logit_softcapping": null, "final_logit_softcapping": null,
  "layer_types": ["sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "sliding_attention", "full_attention"],
  "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
  "tie_word_embeddings": true, "attention_bias": false, "torch_dtype": "bfloat16"
}
JSON
OMP_NUM_THREADS=$THREADS $BIN train --init "$WORK/config.json" --tokenizer "$WORK/tokenizer/tokenizer.json" \
  --data "$WORK/train.txt" --val "$WORK/heldout.txt" --out "$WORK/run" \
  --steps "$STEPS" --schedule wsd --decay-steps "$DECAY" --batch 8 --seq 256 --lr 0.002 --warmup 100 \
  --matmul "$MATMUL" --device "$DEVICE" --threads "$THREADS" --eval-every 250 --eval-batches 8 --save-every 100 --save-dtype bf16 --log-every 10

# 4. the model folder
dm_folder "$WORK/run" "$WORK/tokenizer" "$OUT"

# 5. held-out bits per byte on the same authors' held-out books: the first ~30 KB (whole
# paragraphs) of each of the 12, 354 KB in all (the whole 3 MB takes long on one core)
LC_ALL=C awk '$0 == "<|endoftext|>" { print; n = 0; next } n < 30000 { print; n += length($0) + 1 }' \
  "$WORK/heldout.txt" > "$WORK/heldout_eval.txt"
for ctx in 256 512; do
  echo "held-out, --ctx $ctx:"
  OMP_NUM_THREADS=$THREADS $BIN perplexity --model "$OUT" --data "$WORK/heldout_eval.txt" --ctx $ctx
done
