#!/usr/bin/env bash
# capacity_tiny.sh (~60 s): checks the GPU capacity path works and measures its speed.
# 1. the probe the lead ran before (2 x 64, N = 2000, V = 2048), 1000 steps: steps/s of one cell;
# 2. capacity_grid.sh with a 35 s budget (calibration + a short full grid, threads, report);
# 3. the 16-cell grid at 300 steps as threads and as child processes (which way is faster).
# Writes into $OUT (or /tmp/g3cap-tiny). Needs ./gemma3 built with CUDA=1.
set -u
DEST=${OUT:-/tmp/g3cap-tiny}
mkdir -p "$DEST"
T0=$(date +%s.%N)
./gemma3 capacity --layers 2 --width 64 --sequences 2000 --max-steps 1000 --device cuda --quiet --out "$DEST/probe" > "$DEST/probe.txt" 2>&1
RC=$?
T1=$(date +%s.%N)
echo "probe (L2 D64 N2000 V2048, 1000 steps, one cell, exit $RC): $(python3 -c "print('%.1f s, %.0f steps/s' % ($T1 - $T0, 1000 / ($T1 - $T0)))") | $(tail -1 "$DEST/probe.txt")"
OUT="$DEST" BUDGET=${BUDGET:-35} CAL=${CAL:-100} bash bench/gpu/capacity_grid.sh
# threads against child processes: the same 16-cell grid at 300 steps a cell each way
for wk in threads processes; do
    T0=$(date +%s.%N)
    timeout 60 ./gemma3 capacity --grid --layers 1,2 --width 32,64 --multiples 0.25,0.5,1,2 --schedule cosine --device cuda \
        --eval-steps 500 --quiet --workers $wk --max-steps 300 --out "$DEST/cmp-$wk" 2> "$DEST/cmp-$wk.log"
    RC=$?
    echo "grid of 16 cells x 300 steps as $wk: exit $RC, $(python3 -c "print('%.1f s' % ($(date +%s.%N) - $T0))")"
done
