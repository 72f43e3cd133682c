#!/bin/sh
# The ReLoRA / rank-1 experiment of issue 19 (docs/lora.md), at a size one CPU thread runs in
# about 20 minutes: the 9.7M training shape (hidden 256, 8 layers, vocab 8192) on the
# TinyStories slice, every arm from the same seed on the same batches (equal tokens).
#   sh bench/relora_experiment.sh OUT [ARM...]     arms: full lora relora relora_warm rank1_svd rank1_random rank1_lora
# Env: GEMMA3 (binary, ./gemma3), TINYSTORIES (/work/shared/data/tinystories), TOKENIZER,
# STEPS (240), BATCH (4), SEQ (128), EVERY (60: ReLoRA merge period), REWARM (10), LR (1e-3), THREADS (1).
# Then: gemma3 report OUT/* --html OUT/report.html
set -e
OUT=${1:?usage: relora_experiment.sh OUT [ARM...]}; shift
G=${GEMMA3:-./gemma3}
TS=${TINYSTORIES:-/work/shared/data/tinystories}
TOK=${TOKENIZER:-/work/shared/tokenizers/gemma3/tokenizer.json}
STEPS=${STEPS:-240}; B=${BATCH:-4}; T=${SEQ:-128}; EVERY=${EVERY:-60}; LR=${LR:-1e-3}; TH=${THREADS:-1}; REWARM=${REWARM:-10}
ARMS=${*:-full lora relora relora_warm rank1_svd rank1_random rank1_lora}
mkdir -p "$OUT"
[ -f "$OUT/data/train.bin" ] || python3 "$(dirname "$0")/relora_data.py" "$G" "$TOK" "$TS" "$OUT/data"
D="$OUT/data"
COMMON="--init $D/config.json --data $D/train.bin --val $D/val.bin --batch $B --seq $T --steps $STEPS --warmup 20 --lr $LR
 --eval-every $((STEPS / 6)) --eval-batches 16 --save-every 0 --threads $TH --seed 1 --erank $((STEPS / 4))"
for arm in $ARMS; do
  case $arm in
    full)         X="" ;;
    lora)         X="--lora r=32,alpha=32" ;;
    relora)       X="--lora r=32,alpha=32 --relora-every $EVERY --relora-rewarm $REWARM --relora-prune 0.99" ;;
    relora_warm)  X="--lora r=32,alpha=32 --relora-every $EVERY --relora-rewarm $REWARM --relora-prune 0.99 --relora-warm-start $EVERY" ;;
    rank1_svd)    X="--rank1 svd,every=10" ;;
    rank1_random) X="--rank1 random,every=10" ;;
    rank1_lora)   X="--lora r=1,alpha=1 --relora-every 10 --relora-rewarm 0 --relora-prune 1" ;;
    *) echo "unknown arm $arm" >&2; exit 1 ;;
  esac
  rm -rf "$OUT/$arm"
  /usr/bin/time -f "$arm: %e s, peak RSS %M KiB" $G train $COMMON $X --out "$OUT/$arm" 2> "$OUT/$arm.log" || { tail -3 "$OUT/$arm.log"; exit 1; }
  tail -1 "$OUT/$arm.log"
  grep -E "^train: (memory|LoRA|rank-1)" "$OUT/$arm.log" || true
done
