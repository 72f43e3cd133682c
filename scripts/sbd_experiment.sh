#!/bin/sh
# sbd_experiment.sh: the Set Block Decoding experiment of docs/sbd.md, on one CPU thread: for
# each task, a small Gemma 3 model trained with next-token loss and with SBD (same data, steps
# and batch), decoded at every gamma; results.json and results.html per task under OUT, copied
# to docs/sbd/ when DOCS=1. Resumable: a second run reuses finished trainings.
#   scripts/sbd_experiment.sh [OUT] [STEPS]
set -e
OUT=${1:-sbd-experiment}
STEPS=${2:-1000}
for task in copy reverse add random; do
    OMP_NUM_THREADS=1 nice ./gemma3 sbd --task "$task" --out "$OUT/$task" --steps "$STEPS" --test 200 --threads 1 --html
done
if [ "${DOCS:-0}" = 1 ]; then
    mkdir -p docs/sbd
    for task in copy reverse add random; do
        cp "$OUT/$task/results.json" "docs/sbd/$task-$STEPS.json"
        cp "$OUT/$task/results.html" "docs/sbd/$task-$STEPS.html"
    done
fi
