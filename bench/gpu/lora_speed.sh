#!/bin/sh
# lora_speed.sh: issue 19's fine-tuning speed on the GPU: LoRA steps/s on a 1B bf16 base against
# full fine-tuning of the same model, and the peak GPU memory of each (nvidia-smi's per-process
# figure, polled every 0.2 s). A random `gemma3 init --shape 1b --dtype bf16` base (26 layers x
# 1152, vocab 262144) and random {"ids"} examples; each arm `gemma3 train --device cuda`:
#   full      every weight: f32 master copy, gradients and AdamW moments on the GPU
#   lora      --lora r=16,alpha=32 on all seven linear layers, the base frozen in bf16
#   lora_qv   --lora r=16,alpha=32,targets=q,v
# One line per arm: median tokens/s and steps/s over the steps after the first two, peak memory.
#   sh bench/gpu/lora_speed.sh
# Env: GEMMA3 (./gemma3, a CUDA build), STEPS (12), BATCH (4), SEQ (512), MATMUL (bf16: the
# products' operands in bf16, f32 sums), ARMS (full lora lora_qv), SHAPE (1b).
set -u
G=${GEMMA3:-./gemma3}
STEPS=${STEPS:-12}; B=${BATCH:-4}; T=${SEQ:-512}; MM=${MATMUL:-bf16}; SHAPE=${SHAPE:-1b}
ARMS=${ARMS:-full lora lora_qv}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
$G init --shape "$SHAPE" --dtype bf16 --out "$W/base" > /dev/null 2>&1 || { echo "init failed"; exit 1; }
python3 - "$W/d.jsonl" "$T" "$W/base/config.json" <<'PY'
import json, random, sys
cfg = json.load(open(sys.argv[3]))
V = cfg.get("vocab_size") or cfg["text_config"]["vocab_size"]
random.seed(1)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"ids": [random.randrange(3, V) for _ in range(int(sys.argv[2]) + 1)]}) + "\n")
PY
echo "base: random $SHAPE bf16; batch $B x $T tokens; --matmul $MM; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
for arm in $ARMS; do
  case $arm in
    full) X="" ;;
    lora) X="--lora r=16,alpha=32" ;;
    lora_qv) X="--lora r=16,alpha=32,targets=q,v" ;;
    *) echo "unknown arm $arm"; continue ;;
  esac
  $G train --model "$W/base" --data "$W/d.jsonl" --val "$W/d.jsonl" --batch "$B" --seq "$T" --steps "$STEPS" --warmup 1 --lr 1e-4 \
    --eval-every 0 --eval-batches 1 --save-every 0 --matmul "$MM" --device "${DEVICE:-cuda}" --out "$W/$arm" $X > "$W/$arm.log" 2>&1 &
  P=$!
  peak=0
  while kill -0 $P 2>/dev/null; do
    m=$(nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | awk -F', ' -v p=$P '$1 == p {print $2}')
    [ -n "$m" ] && [ "$m" -gt "$peak" ] && peak=$m
    sleep 0.2
  done
  wait $P
  rc=$?
  python3 - "$W/$arm/metrics.jsonl" "$arm" "$T" "$B" "$peak" "$rc" <<'PY'
import json, statistics, sys
path, arm, T, B, peak, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
try:
    rows = [json.loads(l) for l in open(path)]
except OSError:
    rows = []
if len(rows) < 3:
    print(f"{arm:>8}: rc {rc}, {len(rows)} steps logged")
else:
    tps = statistics.median(r["tokens_per_s"] for r in rows[2:])
    print(f"{arm:>8}: {tps / (T * B):.2f} steps/s ({tps:.0f} tok/s, median of {len(rows) - 2}), peak GPU memory {peak} MiB, "
          f"loss {rows[0]['loss']:.3f} -> {rows[-1]['loss']:.3f}")
PY
  grep -E "^train: (memory|LoRA)" "$W/$arm.log" | sed 's/^/          /'
  [ "$rc" = 0 ] || tail -2 "$W/$arm.log"
done
