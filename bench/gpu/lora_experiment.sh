#!/bin/sh
# lora_experiment.sh: issue 19's experiment on the GPU machine (docs/lora.md "The experiment"):
# the 9.7M training shape (hidden 256, 8 layers, 4 heads / 1 KV head of 64, inter 1024, vocab
# 8192) on the TinyStories slice (bench/gpu/lora_data: bench/relora_data.py's token files,
# gzipped), every arm from the same seed on the same batches, EQUAL TOKENS per arm, ReLoRA
# merging every EVERY (1000) steps with prune 0.99 and a 50-step re-warm:
#   GPU arms (run side by side on the one card: each is bound by kernel launches, not by the card)
#     full          every weight, AdamW
#     lora          r 32, alpha 32, all seven linear layers, from scratch (embedding, norms trained)
#     relora        the same, merged every EVERY steps
#     relora_warm   the same after an EVERY-step full-rank warm start
#     rank1_lora    a rank-1 LoRA merged every 10 steps (COLA / ReLoRA with r = 1)
#   rank-1 arms (`--rank1 svd|random`: the weights on the GPU, each matrix's direction and Adam
#   state on the host; R1DEVICE=cpu runs them on this machine's CPU instead, R1STEPS shortens them):
#     rank1_svd, rank1_random
# Then the summary (one line per arm: device, steps, tokens, validation loss at the half and at
# the end, wall time, effective rank of W_t - W_0 at the last third) into OUT/summary.txt and the report page with
# every arm on one chart, OUT/report.html (`gemma3 report`).
#   sh bench/gpu/lora_experiment.sh [OUT]        (default $OUT/lora_experiment, else /tmp/lora_experiment)
# Env: GEMMA3 (./gemma3, a CUDA build), STEPS (3000), BATCH (4), SEQ (128), EVERY (1000),
# REWARM (50), LR (1e-3), R1STEPS (STEPS), R1DEVICE (cuda), LIMIT (200: seconds the arms may run
# before those still running are stopped, their metrics kept: the summary then shows the steps
# each reached; a SIGTERM to the script does the same at once), ARMS
# (the LoRA-family arms), R1ARMS (the rank-1 arms; "" to skip them),
# DEVICE (cuda; cpu runs the GPU arms on the CPU: a smoke test of the script).
# Defaults: 3000 steps x 4 x 128 = 1.54M tokens an arm (2.7 passes over the 576K-token slice).
set -u
G=${GEMMA3:-./gemma3}
O=${1:-${OUT:-/tmp}/lora_experiment}
STEPS=${STEPS:-3000}; B=${BATCH:-4}; T=${SEQ:-128}; EVERY=${EVERY:-1000}; REWARM=${REWARM:-50}; LR=${LR:-1e-3}
R1STEPS=${R1STEPS:-$STEPS}; LIMIT=${LIMIT:-200}
ARMS=${ARMS:-full lora relora relora_warm rank1_lora}
R1ARMS=${R1ARMS-rank1_svd rank1_random}
HERE=$(dirname "$0")
mkdir -p "$O/data"
D="$O/data"
for f in train val; do [ -f "$D/$f.bin" ] || gunzip -c "$HERE/lora_data/$f.bin.gz" > "$D/$f.bin"; done
cp "$HERE/lora_data/config.json" "$D/config.json"
EV=$((STEPS / 12))
COMMON="--init $D/config.json --data $D/train.bin --val $D/val.bin --batch $B --seq $T --warmup 100 --lr $LR
 --eval-batches 16 --save-every 0 --seed 1 --log-every $EV"
arm_args() {
  case $1 in
    full)         echo "" ;;
    lora)         echo "--lora r=32,alpha=32" ;;
    relora)       echo "--lora r=32,alpha=32 --relora-every $EVERY --relora-rewarm $REWARM --relora-prune 0.99" ;;
    relora_warm)  echo "--lora r=32,alpha=32 --relora-every $EVERY --relora-rewarm $REWARM --relora-prune 0.99 --relora-warm-start $EVERY" ;;
    rank1_lora)   echo "--lora r=1,alpha=1 --relora-every 10 --relora-rewarm 0 --relora-prune 1" ;;
    rank1_svd)    echo "--rank1 svd,every=10" ;;
    rank1_random) echo "--rank1 random,every=10" ;;
    *) echo "unknown arm $1" >&2; exit 1 ;;
  esac
}
run_arm() {  # arm device steps threads
  trap '' TERM INT  # this waiting subshell outlives a signal to the group; the run itself handles it
  rm -rf "$O/$1"
  t0=$(date +%s.%N)
  $G train $COMMON $(arm_args "$1") --device "$2" --steps "$3" --threads "$4" --eval-every "$EV" --erank $(( $3 / 3 )) \
    --out "$O/$1" > "$O/$1.log" 2>&1 &
  echo $! > "$O/$1.pid"
  wait $!
  rc=$?
  rm -f "$O/$1.pid"
  echo "$1: rc $rc, $(python3 -c "import time; print(round(time.time() - $t0, 1))") s on $2" >> "$O/$1.log"
  rm -f "$O/$1"/*.safetensors  # the weights and optimizer state: not needed for the figures (tens of MB an arm)
}
# Past LIMIT seconds, or when this script is asked to stop (SIGTERM: an outer `timeout`), every
# arm still running gets one SIGINT: it finishes its step and stops (metrics.jsonl is written
# step by step), and the summary below still runs.
STOPPED=0
stop_arms() {
  [ $STOPPED = 1 ] && return
  STOPPED=1
  for f in "$O"/*.pid; do [ -f "$f" ] && kill -INT "$(cat "$f")" 2>/dev/null; done
  echo "stopping the arms still running ($(( $(date +%s) - T0 )) s)"
}
trap stop_arms TERM INT
T0=$(date +%s)
ALL=""
for a in $ARMS; do run_arm "$a" "${DEVICE:-cuda}" "$STEPS" 2 & ALL="$ALL $!"; done
for a in $R1ARMS; do run_arm "$a" "${R1DEVICE:-cuda}" "$R1STEPS" 2 & ALL="$ALL $!"; done
while :; do
  alive=0
  for p in $ALL; do kill -0 "$p" 2>/dev/null && alive=1; done
  [ $alive = 0 ] && break
  [ $(( $(date +%s) - T0 )) -ge "$LIMIT" ] && stop_arms
  sleep 1
done
echo "all arms: $(( $(date +%s) - T0 )) s wall"
python3 - "$O" $ARMS $R1ARMS <<'PY' | tee "$O/summary.txt"
import json, os, re, sys
out, arms = sys.argv[1], sys.argv[2:]
print("| arm | device | steps | tokens | val loss (half) | val loss (end) | best val | wall (s) | tokens/s (median) | optimizer state updated | erank W_t - W_0 |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for a in arms:
    mp, lp = os.path.join(out, a, "metrics.jsonl"), os.path.join(out, a + ".log")
    log = open(lp).read() if os.path.exists(lp) else ""
    rows = []
    if os.path.exists(mp):
        for l in open(mp):
            try: rows.append(json.loads(l))
            except ValueError: pass
    end = re.search(r"rc (\d+), ([\d.]+) s on (\w+)", log)
    if not rows:
        print(f"| {a} | {end.group(3) if end else '?'} | failed | | | | | | | |  {log.strip().splitlines()[-2:] if log else ''}")
        continue
    vals = [r for r in rows if "val_loss" in r]
    half = min(vals, key=lambda r: abs(r["step"] - rows[-1]["step"] / 2)) if vals else None
    tps = sorted(r["tokens_per_s"] for r in rows)[len(rows) // 2]
    er = [r for r in rows if "update_erank" in r]
    e = sum(er[-1]["update_erank"]) / len(er[-1]["update_erank"]) if er else float("nan")
    f = lambda r: f"{r['val_loss']:.3f}" if r else "-"
    # what the arm's optimizer reads and writes: AdamW's 8 bytes a trained parameter (the adapter
    # plus the embedding and norms for the LoRA arms), plus the rank-1 state (bench/relora_summary.py)
    n_all = re.search(r"train: (\d+) parameters", log)
    lora = re.search(r"(\d+) adapter parameters .*?(\d+) adapted weights .*?(\d+) other weights trained", log)
    r1 = re.search(r"rank-1 updates .*?of (\d+) linear weights: their optimizer state ([\d.]+) MiB instead of AdamW's ([\d.]+) MiB", log)
    opt = (8 * (int(lora.group(1)) + int(lora.group(3))) / 2**20 if lora else
           8 * int(n_all.group(1)) / 2**20 - float(r1.group(3)) + float(r1.group(2)) if r1 and n_all else
           8 * int(n_all.group(1)) / 2**20 if n_all else float("nan"))
    print(f"| {a} | {end.group(3) if end else '?'} | {rows[-1]['step']} | {rows[-1]['tokens']} | {f(half)} | {f(vals[-1] if vals else None)} | "
          f"{min(r['val_loss'] for r in vals):.3f} | {end.group(2) if end else '?'} | {tps:.0f} | {opt:.1f} MiB | {e:.1f} |")
PY
DIRS=""
for a in $ARMS $R1ARMS; do [ -s "$O/$a/metrics.jsonl" ] && DIRS="$DIRS $O/$a"; done
$G report $DIRS --html "$O/report.html" > /dev/null 2>&1 && echo "report: $O/report.html" || echo "report: failed"
rm -rf "$D"
