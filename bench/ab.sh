#!/usr/bin/env bash
# ab.sh: speed of two builds of gemma3.c side by side, interleaved in one run, for a change
# that must not slow anything down (issue 14's redesign: no regression below 0.97x).
#   bench/ab.sh OLD_TREE NEW_TREE [rounds]
# Builds both trees (make -j, their own build/rel), makes one random 1B BF16 checkpoint with the
# new tree's `init`, then for each round runs bench_engine (prefill 512, decode 128, batched
# decode) and bench_train (shapes a and b; f32 and bf16 products) of OLD then NEW, alternating,
# pinned to the same 2 cores (taskset) with 2 OpenMP threads. Prints every run's figures and
# the median ratio NEW/OLD per line. Needs no network.
set -euo pipefail
OLD=$1 NEW=$2 ROUNDS=${3:-3}
CORES=${AB_CORES:-0,1}
for t in "$OLD" "$NEW"; do (cd "$t" && make -j"$(nproc)" >/dev/null && make -j"$(nproc)" build/rel/bench/bench_engine build/rel/bench/bench_train >/dev/null); done
MODEL=${AB_MODEL:-/tmp/ab-1b-bf16}
[ -f "$MODEL/config.json" ] || "$NEW/gemma3" init --shape 1b --out "$MODEL" --dtype bf16 --seed 1 >/dev/null
OUT=${AB_OUT:-/tmp/ab}
mkdir -p "$OUT"
run() {  # tree tag round
  (cd "$1" && G3_BENCH_MODEL="$MODEL" G3_BENCH_THREADS=2 G3_BENCH_REPS=3 OMP_NUM_THREADS=2 taskset -c "$CORES" build/rel/bench/bench_engine) > "$OUT/engine-$2-$3.txt" 2>&1
  (cd "$1" && OMP_NUM_THREADS=2 taskset -c "$CORES" build/rel/bench/bench_train 5 a 0 && OMP_NUM_THREADS=2 taskset -c "$CORES" build/rel/bench/bench_train 5 a 3 &&
     OMP_NUM_THREADS=2 taskset -c "$CORES" build/rel/bench/bench_train 5 b 0 && OMP_NUM_THREADS=2 taskset -c "$CORES" build/rel/bench/bench_train 5 b 3) > "$OUT/train-$2-$3.txt" 2>&1
}
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then run "$OLD" old "$r"; run "$NEW" new "$r"; else run "$NEW" new "$r"; run "$OLD" old "$r"; fi
  echo "round $r done" >&2
done
python3 - "$OUT" "$ROUNDS" <<'PY'
import re, sys, statistics as st
out, rounds = sys.argv[1], int(sys.argv[2])
def figs(kind, tag, r):
    d, shape = {}, ""
    for line in open(f"{out}/{kind}-{tag}-{r}.txt"):
        m = re.match(r"^(\(\w\))", line)
        if m: shape = m.group(1) + " "
        m = re.match(r"\s*(prefill \d+ tokens|decode\s+\d+ tokens \S*|batch\s+\d+)\s+([\d.]+) tok/s", line)
        if m: d[re.sub(r"\s+", " ", m.group(1))] = float(m.group(2))
        m = re.match(r"\s+(\S.*?)\s+(\d+) tok/s\s+[\d.]+ GFLOP/s", line)
        if m: d[shape + m.group(1)] = float(m.group(2))
    return d
for kind in ("engine", "train"):
    keys = list(figs(kind, "new", 1))
    for k in keys:
        o = [figs(kind, "old", r).get(k) for r in range(1, rounds + 1)]
        n = [figs(kind, "new", r).get(k) for r in range(1, rounds + 1)]
        if None in o or None in n: continue
        ratios = [b / a for a, b in zip(o, n)]
        print(f"{kind:6s} {k:40s} old {st.median(o):9.1f}  new {st.median(n):9.1f} tok/s   new/old median x{st.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")
PY
