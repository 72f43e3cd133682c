#!/usr/bin/env bash
# quant_quality.sh: what each quantized type costs in quality on a trained model, measured by
# gemma3.c and (when given) by llama.cpp on the *same* GGUF files.
# Usage: quant_quality.sh [MODEL] [TEXT] [LLAMA_BIN_DIR] [OUTDIR]
#   MODEL  the bf16 reference (default models/default, the trained default model)
#   TEXT   held-out text (default: none; make one as docs/quantization.md says: the first ~30 KB
#          of each held-out book, scripts/train_default_model.sh step 5)
#   LLAMA_BIN_DIR  llama.cpp's build/bin with llama-perplexity and llama-quantize (optional)
# For each type: `gemma3 quantize`, then `gemma3 kl --base MODEL --model FILE` (perplexity of
# both, mean / p99 KL, top-1 agreement; 512-token chunks, second halves scored, as
# llama-perplexity) and, with llama.cpp, `llama-perplexity --kl-divergence` of the same file
# against the BF16 GGUF's logits; llama-quantize's own files of a few types join the table.
# One thread, niced: the numbers are qualities, not speeds. TYPES= and LLAMA_TYPES= override.
set -u
MODEL=${1:-models/default} TEXT=${2:-} LB=${3:-} OUT=${4:-build/quant_quality}
BIN=${BIN:-./gemma3}
TYPES=${TYPES:-"BF16 Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0"}
LLAMA_TYPES=${LLAMA_TYPES:-"Q8_0 Q5_K_M Q4_K_M Q4_0"}
[ -n "$TEXT" ] && [ -f "$TEXT" ] || { echo "quant_quality: no held-out text given (usage: $0 MODEL TEXT [LLAMA_BIN] [OUTDIR])"; exit 0; }
[ -d "$MODEL" ] || [ -f "$MODEL" ] || { echo "quant_quality: no model $MODEL"; exit 0; }
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
RUN="nice -n 10"
have_llama=0
[ -n "$LB" ] && [ -x "$LB/llama-perplexity" ] && have_llama=1
lp() { LD_LIBRARY_PATH="$LB" $RUN "$LB/llama-perplexity" -t 1 -c 512 "$@" 2>&1; }
field() { awk -v k="$1" 'index($0, k) == 1 { sub(/^[^:]*: */, ""); print $1; exit }'; }
lfield() { grep -F "$1" | grep -F ':' | tail -n 1 | sed 's/.*: *//' | awk '{ print $1 }'; }

echo "quant_quality: $MODEL on $TEXT ($(wc -c < "$TEXT") bytes), load average $(cut -d' ' -f1-3 /proc/loadavg)"
$BIN quantize --model "$MODEL" --out "$OUT/BF16.gguf" --type BF16 --force --quiet >/dev/null || exit 1
if [ $have_llama = 1 ]; then
  # the reference logits for llama.cpp's KL mode, from the BF16 file (the same weights as MODEL)
  lp -m "$OUT/BF16.gguf" -f "$TEXT" --kl-divergence-base "$OUT/base.kld" > "$OUT/llama-BF16-base.log"
  echo "llama.cpp BF16: perplexity $(grep 'Final estimate' "$OUT/llama-BF16-base.log" | sed 's/.*PPL = //')"
  for t in $LLAMA_TYPES; do
    LD_LIBRARY_PATH="$LB" $RUN "$LB/llama-quantize" "$OUT/BF16.gguf" "$OUT/llama-$t.gguf" "$t" 1 > "$OUT/llama-quantize-$t.log" 2>&1 \
      || echo "llama-quantize $t failed (see $OUT/llama-quantize-$t.log)"
  done
fi
printf '| file | bits/weight | gemma3.c: perplexity | mean KL | p99 KL | top-1 same | llama.cpp: perplexity | mean KL | p99 KL | top-1 same |\n'
printf '|---|---|---|---|---|---|---|---|---|---|\n'
files=""
for t in $TYPES; do
  [ "$t" = BF16 ] || $BIN quantize --model "$MODEL" --out "$OUT/$t.gguf" --type "$t" --force --quiet >/dev/null || continue
  files="$files $t"
done
[ $have_llama = 1 ] && for t in $LLAMA_TYPES; do [ -f "$OUT/llama-$t.gguf" ] && files="$files llama-$t"; done
base_ppl=$($BIN perplexity --model "$MODEL" --data "$TEXT" | field "perplexity")
echo "| $MODEL (reference) | 16 | $base_ppl | | | | | | | |"
for f in $files; do
  g="$OUT/$f.gguf"
  bpw=$($BIN inspect --model "$g" 2>/dev/null | awk '$1 == "all" { print $NF }')
  $BIN kl --base "$MODEL" --model "$g" --data "$TEXT" > "$OUT/$f.kl" 2>&1
  row="| $f | $bpw | $(field "perplexity model" < "$OUT/$f.kl") | $(field "mean KL" < "$OUT/$f.kl") | $(field "p99 KL" < "$OUT/$f.kl") | $(field "top-1 agreement" < "$OUT/$f.kl" | awk '{ printf "%.2f%%", 100 * $1 }')"
  if [ $have_llama = 1 ]; then
    lp -m "$g" -f "$TEXT" --kl-divergence-base "$OUT/base.kld" --kl-divergence > "$OUT/llama-$f.log"
    row="$row | $(lfield 'Mean PPL(Q) ' < "$OUT/llama-$f.log") | $(lfield 'Mean    KLD' < "$OUT/llama-$f.log") | $(lfield '99.0%   KLD' < "$OUT/llama-$f.log") | $(lfield 'Same top p' < "$OUT/llama-$f.log")% |"
  else
    row="$row | | | | |"
  fi
  echo "$row"
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
