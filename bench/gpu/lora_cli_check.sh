#!/bin/sh
# lora_cli_check.sh: issue 19's training commands end to end on the GPU against the same
# commands on the CPU (a CUDA build of ./gemma3; about 30 s): each pair of runs starts from the
# same seed on the same data, so their validation losses agree to f32 rounding, amplified a
# little by the steps. One line per run: CPU and GPU validation loss at the end, and the
# relative difference.
#   lora        --lora r=4,dropout=0.1 over the bf16 fixture (base frozen as stored, dropout masks drawn on the GPU)
#   pack        --pack: JSONL examples packed into rows (the masked attention, attn_mask.cu)
#   dpo         --objective dpo on preference pairs (the reference pass with the adapter off)
#   relora      --init tiny --lora r=4 --relora-every 5 (merges on the device)
#   relora_warm the same with --relora-warm-start 5
#   rank1       --rank1 svd,every=3 (weights on the GPU, directions and their Adam state on the host)
#   sh bench/gpu/lora_cli_check.sh
# Env: GEMMA3 (./gemma3), STEPS (20).
set -u
G=${GEMMA3:-./gemma3}
STEPS=${STEPS:-20}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 - "$W" <<'PY'
import json, random, sys
w = sys.argv[1]
random.seed(7)
V = 1024
ids = lambda n: [random.randrange(3, V) for _ in range(n)]
with open(f"{w}/lm.jsonl", "w") as f:
    for _ in range(64):
        f.write(json.dumps({"ids": [2] + ids(random.randrange(6, 30))}) + "\n")
with open(f"{w}/pairs.jsonl", "w") as f:
    for _ in range(32):
        f.write(json.dumps({"prompt": ids(8), "chosen": ids(6), "rejected": ids(7)}) + "\n")
PY
val() { grep -o '"val_loss": [0-9.e+-]*' "$1/metrics.jsonl" 2>/dev/null | tail -1 | awk '{print $2}'; }
run() {  # name, then train's options
  name=$1; shift
  for dev in ${DEVS:-cpu cuda}; do
    $G train "$@" --steps "$STEPS" --warmup 2 --lr 3e-3 --eval-every "$STEPS" --eval-batches 4 --save-every 0 --seed 3 \
      --device $dev --out "$W/$name-$dev" > "$W/$name-$dev.log" 2>&1 || { echo "$name ($dev): FAILED: $(tail -1 "$W/$name-$dev.log")"; return; }
  done
  python3 -c "
import sys
c, g = float(sys.argv[2]), float(sys.argv[3])
print(f'{sys.argv[1]:>12}: val loss cpu {c:.6f}, cuda {g:.6f}, rel diff {abs(c - g) / abs(c):.2e}')" "$name" "$(val "$W/$name-cpu")" "$(val "$W/$name-${GPUDEV:-cuda}")"
}
F=tests/fixtures
run lora --model $F/gemma3-tiny-bf16 --lora r=4,alpha=8,dropout=0.1 --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 4 --seq 32
run pack --model $F/gemma3-tiny-f32 --lora r=4,alpha=8 --pack --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 2 --seq 64
run pack_full --model $F/gemma2-tiny-f32 --pack --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 2 --seq 64
run dpo --model $F/gemma3-tiny-bf16 --lora r=4,alpha=8 --objective dpo --beta 0.1 --data "$W/pairs.jsonl" --val "$W/pairs.jsonl" --batch 2 --seq 32
run relora --init tiny --lora r=4,alpha=8 --relora-every 5 --relora-rewarm 2 --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 4 --seq 32
run relora_warm --init tiny --lora r=4,alpha=8 --relora-every 5 --relora-rewarm 2 --relora-warm-start 5 --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 4 --seq 32
run rank1 --init tiny --rank1 svd,every=3 --data "$W/lm.jsonl" --val "$W/lm.jsonl" --batch 4 --seq 32
