#!/usr/bin/env bash
# `make run`: the default model (models/default, a small Gemma 3 trained here from scratch on
# public-domain children's books; its README is the model card) at work: its architecture, a
# story streamed from a prompt, and an analysis of a sentence (attention heads, residual stream,
# logit lens) written to an HTML report. Then three lines of what to try next.
set -e
BIN=${BIN:-./gemma3}
OUT=${OUT:-build}
mkdir -p "$OUT"
PROMPT='Once upon a time there was a king who had three daughters. The youngest'
SENTENCE='The cat sat on the mat. The dog sat on the rug. The cat sat on the mat.'
echo "\$ gemma3 inspect"
$BIN inspect
echo
echo "\$ gemma3 generate --prompt '$PROMPT' --max-tokens 160 --seed 2"
$BIN generate --prompt "$PROMPT" --max-tokens 160 --seed 2
echo
echo
echo "\$ gemma3 analyze --prompt '$SENTENCE' --html $OUT/analyze.html --lens-last 4"
$BIN analyze --prompt "$SENTENCE" --html "$OUT/analyze.html" --lens-last 4
echo
echo "report: $OUT/analyze.html (open it in a browser)"
echo
echo "Try next:"
echo "  ./gemma3 chat                                   # talk to it (a storyteller, not an assistant: it was trained on books only)"
echo "  ./gemma3 trace --prompt 'Once upon a time' --hooks 'blocks.*.hook_resid_post' --out acts.npz   # activations to NumPy"
echo "  ./gemma3 train --model models/default --data my.txt --out my-run --steps 200   # fine-tune it on your own text"
