#!/usr/bin/env bash
# gpu_train_stories.sh: issue 17's run checks on the GPU machine, on TinyStories (the slice in
# ../shared/data/tinystories, carried as .gpudata/): a 200-step run of the `stories` shape on
# the GPU against the same run on the machine's CPU (validation loss within noise); a GPU run
# killed with SIGKILL mid-run, then resumed by running the same command again; a run of 100
# steps on the GPU continued to 200 on the CPU (the checkpoint format is shared). Needs a CUDA
# build (./gemma3). Prints one line per run with its last validation loss. OPTIM=adamw8bit: all
# of it with 8-bit AdamW (the moments' codes and scales on the GPU, in the checkpoints).
set -u
D=${DATA:-.gpudata}
TOK=tests/data/tokenizer/tokenizer.model
COMMON="--init stories --tokenizer $TOK --data $D/train.txt --val $D/valid.txt --steps 200 --batch 8 --seq 128 --warmup 20 --lr 3e-3 --eval-every 50 --eval-batches 8 --save-every 50 --log-every 50 --seed 3${OPTIM:+ --optim $OPTIM}"
val() { grep -o 'val [0-9.]*' "$1" | tail -1; }
rm -rf /tmp/st-*
T0=$(date +%s.%N); ./gemma3 train $COMMON --out /tmp/st-gpu --device cuda >/tmp/st-gpu.log 2>&1; echo "gpu 200 steps: rc $? $(val /tmp/st-gpu.log) ($(python3 -c "print(round($(date +%s.%N)-$T0,1))") s)"
if [ -z "${GPU_ONLY:-}" ]; then  # GPU_ONLY=1: only the GPU runs (kill/resume, determinism)
T0=$(date +%s.%N); ./gemma3 train $COMMON --out /tmp/st-cpu --device cpu >/tmp/st-cpu.log 2>&1; echo "cpu 200 steps: rc $? $(val /tmp/st-cpu.log) ($(python3 -c "print(round($(date +%s.%N)-$T0,1))") s)"
fi
# SIGKILL mid-run (twice), then the same command resumes from the last checkpoint
( ./gemma3 train $COMMON --out /tmp/st-kill --device cuda >/tmp/st-kill1.log 2>&1 & P=$!; sleep ${KILL_AFTER:-4}; kill -9 $P; wait $P 2>/dev/null )
echo "killed after: $(grep -o 'step [0-9]*/200' /tmp/st-kill1.log | tail -1); checkpoint: $(ls /tmp/st-kill 2>/dev/null | tr '\n' ' ')"
./gemma3 train $COMMON --out /tmp/st-kill --device cuda >/tmp/st-kill2.log 2>&1; echo "resumed: rc $? $(grep -o 'resuming.*' /tmp/st-kill2.log) $(val /tmp/st-kill2.log)"
# the same GPU command twice must train the same bits (the kernels add in a fixed order), and
# the resumed run's losses must equal the uninterrupted run's: the first step where they differ
./gemma3 train $COMMON --out /tmp/st-gpu2 --device cuda >/tmp/st-gpu2.log 2>&1
cmpm() { python3 - "$1" "$2" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(f"{d}/metrics.jsonl")] for d in sys.argv[1:])
a = {r["step"]: r for r in a if "loss" in r}; b = {r["step"]: r for r in b if "loss" in r}
diff = [s for s in sorted(a) if s in b and a[s]["loss"] != b[s]["loss"]]
print(f"{len(a)} / {len(b)} steps logged; " + (f"first differing step {diff[0]}: {a[diff[0]]['loss']} vs {b[diff[0]]['loss']}" if diff else "every loss equal"))
PY
}
echo "gpu run twice: $(cmpm /tmp/st-gpu /tmp/st-gpu2)"
echo "gpu uninterrupted vs killed + resumed: $(cmpm /tmp/st-gpu /tmp/st-kill)"
[ -n "${GPU_ONLY:-}" ] && exit 0
# GPU for 100 steps, then the CPU to 200
./gemma3 train ${COMMON/--steps 200/--steps 100} --out /tmp/st-x --device cuda >/tmp/st-x1.log 2>&1
./gemma3 train $COMMON --out /tmp/st-x --device cpu >/tmp/st-x2.log 2>&1; echo "gpu 100 then cpu to 200: rc $? $(grep -o 'resuming.*' /tmp/st-x2.log) $(val /tmp/st-x2.log)"
# and the other way
./gemma3 train ${COMMON/--steps 200/--steps 100} --out /tmp/st-y --device cpu >/tmp/st-y1.log 2>&1
./gemma3 train $COMMON --out /tmp/st-y --device cuda >/tmp/st-y2.log 2>&1; echo "cpu 100 then gpu to 200: rc $? $(val /tmp/st-y2.log)"
grep -h "train: on\|MFU" /tmp/st-gpu.log | tail -2
