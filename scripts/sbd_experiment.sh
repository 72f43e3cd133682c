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
# Text: TinyStories with the real Gemma 3 tokenizer (the `stories` shape: 262,144-token vocabulary,
# 4 x 128), both objectives with the same steps; next-token validation loss, then passes per
# token of set block decoding on a few prompts (no exact answer exists for text).
TS=${TS:-/work/shared/data/tinystories}
TOK=${TOK:-/work/shared/tokenizers/gemma3}
TS_STEPS=${TS_STEPS:-200}
if [ -d "$TS" ] && [ -d "$TOK" ]; then
    for obj in lm sbd; do
        OMP_NUM_THREADS=1 nice ./gemma3 train --init stories --tokenizer "$TOK" --data "$TS/train.txt" --val "$TS/valid.txt" \
            --out "$OUT/tinystories-$obj" --objective "$obj" --steps "$TS_STEPS" --batch 8 --seq 128 --lr 2e-3 --warmup 20 \
            --eval-every "$TS_STEPS" --eval-batches 8 --save-every 0 --log-every 50 --threads 1
    done
    for g in 0 0.1 0.35 0.8 1.5; do
        for p in "Once upon a time" "Tom had a red ball." "The little cat was sad because"; do
            OMP_NUM_THREADS=1 ./gemma3 generate --model "$OUT/tinystories-sbd" --sbd --block 16 --gamma "$g" --prompt "$p" \
                --max-tokens 64 --exact 2>&1 >/dev/null | grep 'generate: sbd' | sed "s/^/gamma $g: /"
        done
    done | tee "$OUT/tinystories-sbd-nfe.txt"
fi
if [ "${DOCS:-0}" = 1 ]; then
    for task in copy reverse add random; do
        mkdir -p docs/sbd
        cp "$OUT/$task/results.json" "docs/sbd/$task.json"
        cp "$OUT/$task/results.html" "docs/sbd/$task.html"
    done
fi
