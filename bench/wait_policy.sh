#!/usr/bin/env bash
# wait_policy.sh: how decode's threads should wait between its ~130 hand-offs a token (issue 18,
# docs/quantization.md "Not yet"): every setting in turn within each round, on a quiet machine
# and then with a shell busy loop beside (another tenant), decode tok/s per run.
#
#   bench/wait_policy.sh MODEL.gguf [ROUNDS] [SETTINGS...]
#
# Default settings: libgomp's default waits, passive waits, the decode pool (pool.h) with 100,
# 20 and 0 us of spinning. Figures of 2026-12-07 in docs/benchmarks.md.
set -u
M=${1:?usage: bench/wait_policy.sh MODEL [ROUNDS] [SETTINGS...]}
ROUNDS=${2:-4}
shift $(( $# >= 2 ? 2 : 1 ))
[ $# -gt 0 ] || set -- "G3_WAIT=default" "OMP_WAIT_POLICY=passive" "G3_POOL=1" "G3_POOL=1 G3_SPIN_US=20" "G3_POOL=1 G3_SPIN_US=0"
BIN=${BIN:-./gemma3}
IDS=2$(for i in $(seq 1 63); do printf ",%d" $((1000 + 37 * i)); done)
run() { env $1 "$BIN" generate --model "$M" --ids "$IDS" --max-tokens 96 --temperature 0 2>&1 > /dev/null | grep -o 'decode [0-9.]*' | awk '{ print $2 }'; }
for cond in quiet busy; do
  BP=
  if [ $cond = busy ]; then ( while :; do :; done ) & BP=$!; fi
  for r in $(seq 1 "$ROUNDS"); do
    for c in "$@"; do echo "$cond	$r	$c	$(run "$c")"; done
  done
  [ -n "$BP" ] && kill $BP
done | tee /dev/stderr | python3 -c '
import statistics, sys
d = {}
for line in sys.stdin:
    f = line.rstrip("\n").split("\t")
    if len(f) == 4 and f[3]: d.setdefault((f[0], f[2]), []).append(float(f[3]))
for (cond, c), v in d.items(): print(f"{cond:6} {c:32} median {statistics.median(v):6.1f}  ({min(v):.1f}-{max(v):.1f}, {len(v)} runs)")'
