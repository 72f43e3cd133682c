#!/bin/sh
# check_peft_load.sh: trains a LoRA adapter with gemma3 on the tiny f32 fixture, runs our forward
# with it, then tests/ref/check_peft_load.py loads it in PEFT and compares the logits. Run on
# the GPU machine from the repository root after `make`; writes the result to
# tests/ref/check_peft_load.out (commit that file). Needs python3 with torch, transformers and
# safetensors, and peft for the real check (without it the script says so and applies the
# adapter by hand instead). Exit status: the check's.
set -e
BIN=${BIN:-./gemma3}
W=$(mktemp -d)
M=tests/fixtures/gemma3-tiny-f32
IDS=2,17,300,45,99,12,7,8,9,10,11,500,600,700
python3 - "$W/d.jsonl" <<'PY'
import json, random, sys
random.seed(3)
with open(sys.argv[1], "w") as f:
    for _ in range(8):
        f.write(json.dumps({"ids": [random.randrange(3, 1000) for _ in range(17)]}) + "\n")
PY
$BIN train --model $M --lora r=4,alpha=8,targets=all --data "$W/d.jsonl" --val "$W/d.jsonl" --batch 2 --seq 16 --steps 20 \
    --warmup 2 --lr 1e-2 --out "$W/run"
$BIN forward --model $M --adapter "$W/run" --ids $IDS --exact --save "$W/ours.safetensors" --device cpu
# (no pipe into tee: its exit status would hide the check's)
rc=0
python3 tests/ref/check_peft_load.py $M "$W/run" "$W/ours.safetensors" $IDS > tests/ref/check_peft_load.out 2>&1 || rc=$?
cat tests/ref/check_peft_load.out
rm -rf "$W"
exit $rc
