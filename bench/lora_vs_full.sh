#!/bin/sh
# lora_vs_full.sh: LoRA fine-tuning against full fine-tuning of the same bf16 base: steps/s
# (median step time over the run's steps after the first) and peak memory (max RSS).
#   sh bench/lora_vs_full.sh [SHAPE=270m] [STEPS=6] [SEQ=128]
# Env: BIN (./gemma3), THREADS (all), ARMS ("full lora_all lora_qv"), FULL_ARGS (extra options
# of the full run, e.g. "--optim adamw8bit"). More arms: qlora_q4 (the base quantized to Q4_0, GGUF,
# --lora r=16; exact mode: f32 activations against the blocks), qlora_q4_bf16 and lora_all_bf16
# (--matmul bf16: int8 activations against the blocks / bf16 operands).
# Makes a random bf16 base of SHAPE with `gemma3 init` and random {"ids"} examples, then runs
# `gemma3 train` three ways: full (the f32 master copy, grads and AdamW state of every weight),
# --lora r=16 on all seven linear layers, and --lora r=16,targets=q,v. Numbers depend on the
# machine and its load: say which and how loaded next to any you quote.
set -e
BIN=${BIN:-./gemma3}
SHAPE=${1:-270m}; STEPS=${2:-6}; SEQ=${3:-128}
W=$(mktemp -d)
$BIN init --shape "$SHAPE" --dtype bf16 --out "$W/base" >/dev/null 2>&1
python3 - "$W/d.jsonl" "$SEQ" "$W/base/config.json" <<'PY'
import json, random, sys
cfg = json.load(open(sys.argv[3]))
V = cfg.get("vocab_size") or cfg["text_config"]["vocab_size"]
random.seed(1)
with open(sys.argv[1], "w") as f:
    for _ in range(16):
        f.write(json.dumps({"ids": [random.randrange(3, V) for _ in range(int(sys.argv[2]) + 1)]}) + "\n")
PY
run() {
    name=$1; shift
    /usr/bin/time -f "%M" -o "$W/rss" $BIN train --model "${MODEL:-$W/base}" --data "$W/d.jsonl" --val "$W/d.jsonl" --batch 1 --seq "$SEQ" \
        --steps "$STEPS" --warmup 1 --lr 1e-4 --eval-every 0 --eval-batches 1 --save-every 0 ${THREADS:+--threads $THREADS} \
        --out "$W/$name" "$@" 2>"$W/$name.log"
    python3 - "$W/$name/metrics.jsonl" "$(cat "$W/rss")" "$name" "$SEQ" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tps = statistics.median(r["tokens_per_s"] for r in rows[1:])
print(f"{sys.argv[3]:>12}: {tps / int(sys.argv[4]):.3f} steps/s ({tps:.0f} tok/s, median of {len(rows) - 1}), peak RSS {int(sys.argv[2]) / 1024:.0f} MiB")
PY
    grep -E "^train: (memory|LoRA)" "$W/$name.log" | sed 's/^/              /'
}
echo "base: random $SHAPE, bf16; batch 1 x $SEQ tokens; $(nproc) cores"
for arm in ${ARMS:-full lora_all lora_qv}; do
    case $arm in
        full) run full $FULL_ARGS ;;
        lora_all) run lora_all --lora r=16,alpha=32,targets=all ;;
        lora_qv) run lora_qv --lora r=16,alpha=32,targets=q,v ;;
        lora_all_bf16) run lora_all_bf16 --lora r=16,alpha=32,targets=all --matmul bf16 ;;
        qlora_q4|qlora_q4_bf16)
            [ -f "$W/q4.gguf" ] || $BIN quantize --model "$W/base" --out "$W/q4.gguf" --type Q4_0 --quiet >/dev/null 2>&1
            if [ $arm = qlora_q4 ]; then MODEL="$W/q4.gguf" run $arm --lora r=16,alpha=32,targets=all
            else MODEL="$W/q4.gguf" run $arm --lora r=16,alpha=32,targets=all --matmul bf16; fi
            MODEL="$W/base" ;;
    esac
done
rm -rf "$W"
