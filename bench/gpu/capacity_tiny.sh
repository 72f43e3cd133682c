#!/usr/bin/env bash
# capacity_tiny.sh (~60 s): checks the GPU capacity path works and measures its speed.
# 1. the probe the lead ran before (2 x 64, N = 2000, V = 2048), 1000 steps: steps/s of one cell;
# 2. capacity_grid.sh with a 45 s budget (calibration + a short full grid, threads, report).
# Writes into $OUT (or /tmp/g3cap-tiny). Needs ./gemma3 built with CUDA=1.
set -u
DEST=${OUT:-/tmp/g3cap-tiny}
mkdir -p "$DEST"
T0=$(date +%s.%N)
./gemma3 capacity --layers 2 --width 64 --sequences 2000 --max-steps 1000 --device cuda --quiet --out "$DEST/probe" > "$DEST/probe.txt" 2>&1
RC=$?
T1=$(date +%s.%N)
echo "probe (L2 D64 N2000 V2048, 1000 steps, one cell, exit $RC): $(python3 -c "print('%.1f s, %.0f steps/s' % ($T1 - $T0, 1000 / ($T1 - $T0)))") | $(tail -1 "$DEST/probe.txt")"
OUT="$DEST" BUDGET=${BUDGET:-45} CAL=${CAL:-100} bash bench/gpu/capacity_grid.sh
