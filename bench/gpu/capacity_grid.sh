#!/usr/bin/env bash
# capacity_grid.sh: the memorization-capacity grid of issue 20 on one GPU (docs/capacity.md):
# Gemma 3 shapes LAYERS x WIDTHS at V = 2048, T = 64 (704 bits a sequence), f32, each trained on
# MULTIPLES of its expected capacity (3.6 bits x params / 704 sequences) with the cosine schedule
# over exactly S steps, converged when the last quarter of the decay added < 3% (the documented
# rule). The multiples span the predicted double-descent peak N* for every model, so the same
# cells give capacity (plateau over N), the fit of capacity against params, and the held-out
# loss against N.
#
# It fits BUDGET seconds of wall clock: first the same grid at CAL steps (calibration: cells
# run as threads of one process, one CUDA stream each, JOBS at a time), then S chosen so the
# full grid takes what is left. Falls back to child processes if the threaded run fails.
# Writes results.json + report.html (+ logs) into $OUT (or /tmp/g3cap); prints one summary line.
# Needs ./gemma3 built with CUDA=1 (make CUDA=1) and python3.
set -u
BUDGET=${BUDGET:-240}
LAYERS=${LAYERS:-1,2}
WIDTHS=${WIDTHS:-32,64}
MULTIPLES=${MULTIPLES:-0.25,0.5,1,2}
CAL=${CAL:-500}
MAX_STEPS_CAP=${MAX_STEPS_CAP:-40000}
NPROC=$(nproc)
JOBS=${JOBS:-$(( NPROC > 16 ? 16 : NPROC ))}   # 4 models x 4 sizes: one wave on 16 cores
PRECISION=${PRECISION:-f32}   # or bf16 (bf16 operands in the products, f32 master weights: docs/capacity.md)
DEVICE=${DEVICE:-cuda}   # cpu: to try this script without a GPU (with a tiny EXTRA)
EXTRA=${EXTRA:-}         # more options for every cell, e.g. "--vocab 64 --seq-len 16"
DEST=${OUT:-/tmp/g3cap}
W=$(mktemp -d /tmp/g3cap-work.XXXX)
mkdir -p "$DEST"
now() { date +%s.%N; }
elapsed() { python3 -c "print(round($2 - $1, 2))"; }
nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader > "$DEST/gpu.txt" 2>&1
G="./gemma3 capacity --grid --layers $LAYERS --width $WIDTHS --multiples $MULTIPLES --schedule cosine --precision $PRECISION --device $DEVICE --jobs $JOBS --eval-steps ${EVAL_STEPS:-500} --quiet $EXTRA"

# calibration: the same grid at CAL and 3 x CAL steps a cell; the difference is the cost of
# 2 x CAL steps (evaluations included), the rest the fixed cost (start, cuBLAS, first calls)
calib() {  # $1: steps; sets CT (seconds); 1 on failure
    rm -rf "$W/calib$1"
    local t0; t0=$(now)
    timeout $CALT $G --workers $WK --max-steps $1 --out "$W/calib$1" 2> "$DEST/calib$1.log" || return 1
    CT=$(elapsed "$t0" "$(now)")
}
CALT=$(( BUDGET / 3 > 60 ? BUDGET / 3 : 60 ))   # a hang must not eat the whole budget
WK=${WORKERS:-threads}   # or processes (capacity_tiny.sh times both)
T0=$(now)
if ! calib $CAL; then
    echo "capacity_grid: calibration as $WK failed ($(grep -m1 -i -e fail -e error "$DEST/calib$CAL.log")); child processes instead"
    WK=processes
    calib $CAL || { echo "capacity_grid: calibration FAILED"; tail -5 "$DEST/calib$CAL.log"; exit 1; }
fi
C1=$CT
calib $((3 * CAL)) || { echo "capacity_grid: calibration FAILED"; tail -5 "$DEST/calib$((3 * CAL)).log"; exit 1; }
C3=$CT
T1=$(now)
LEFT=$(python3 -c "print($BUDGET - ($T1 - $T0) - 10)")
read S RATE FIXED < <(python3 -c "
r = max(($C3 - $C1) / (2 * $CAL), 1e-6); f = max($C1 - r * $CAL, 0.0)
s = int(($LEFT - f) / r * 0.95) // 500 * 500
print(max($CAL, min($MAX_STEPS_CAP, s)), round(1 / r, 1), round(f, 1))")
echo "capacity_grid: calibration $CAL / $((3 * CAL)) steps a cell in $C1 / $C3 s ($WK, $JOBS at a time, $NPROC cores, $(head -1 "$DEST/gpu.txt" | cut -d, -f1)): $RATE steps/s a cell, $FIXED s fixed; full grid: $S steps a cell"
python3 bench/gpu/capacity_summary.py "$W/calib$((3 * CAL))/results.json" "$C3" | sed 's/^/calibration /'

T2=$(now)
timeout $(python3 -c "print(max(int($LEFT) + 20, 30))") $G --workers $WK --max-steps "$S" --html --out "$W/grid" 2> "$DEST/grid.log"
RC=$?
T3=$(now)
if [ $RC = 124 ]; then  # out of time: the cells finished so far
    echo "capacity_grid: the grid ran out of its budget; collecting the finished cells"
    $G --collect --max-steps "$S" --html --out "$W/grid" 2>> "$DEST/grid.log"
fi
cp "$W/grid/results.json" "$W/grid/report.html" "$DEST/" 2>/dev/null
[ $RC = 0 ] || { echo "capacity_grid: grid exit $RC"; grep -i -e fail -e error "$DEST/grid.log" | head -5; }
[ -f "$DEST/results.json" ] && python3 bench/gpu/capacity_summary.py "$DEST/results.json" "$(elapsed "$T2" "$T3")" | sed "s/^/S=$S /"
rm -rf "$W"
exit $RC
