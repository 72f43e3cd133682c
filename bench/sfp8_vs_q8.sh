#!/bin/sh
# sfp8_vs_q8.sh: gemma.cpp's SFP8 against Q8_0 and BF16 on one model (docs/quantization.md,
# "SFP8 against Q8_0"): per-matrix relative RMS error (from `gemma3 convert --type SFP8`'s
# report), KL against the bf16 model on held-out text (`gemma3 kl`), and decode tokens/s on
# 2 threads, the three models interleaved ROUNDS times (medians: the machine is shared).
#   sh bench/sfp8_vs_q8.sh MODEL TEXT [OUTDIR] [ROUNDS]
# TEXT: held-out text (docs/quantization.md, "Quality on the trained model"); "-" skips the KL.
# KLARGS: more `gemma3 kl` options (a model without a tokenizer: --tokenizer FILE; --chunks N).
set -e
MODEL=${1:?usage: $0 MODEL TEXT [OUTDIR] [ROUNDS]}
TEXT=${2:?usage: $0 MODEL TEXT [OUTDIR] [ROUNDS]}
OUT=${3:-/tmp/sfp8_vs_q8}
ROUNDS=${4:-5}
BIN=${BIN:-./gemma3}
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$OUT"
[ -f "$OUT/sfp8/config.json" ] || $BIN convert --model "$MODEL" --type SFP8 --out "$OUT/sfp8" --force 2> "$OUT/convert.log"
[ -f "$OUT/q8_0.gguf" ] || $BIN quantize --model "$MODEL" --type Q8_0 --out "$OUT/q8_0.gguf" --quiet
# the SFP8 folder keeps the embedding (also the output layer) as stored: Q8_0 with the same
[ -f "$OUT/q8_0-emb.gguf" ] || $BIN quantize --model "$MODEL" --type Q8_0 --embedding BF16 --out "$OUT/q8_0-emb.gguf" --quiet
echo "relative RMS error of the linear matrices (SFP8, Q8_0 on the same values):"
grep "SFP8 matrices" "$OUT/convert.log"
awk '/SFP8 rel RMS/ { if ($6 > mx) mx = $6; if (mn == "" || $6 < mn) mn = $6 } END { printf "SFP8 per matrix: %s .. %s\n", mn, mx }' "$OUT/convert.log"
if [ "$TEXT" != "-" ]; then
  for m in "$OUT/sfp8" "$OUT/q8_0.gguf" "$OUT/q8_0-emb.gguf"; do
    echo "KL against $MODEL, $(basename "$m"):"
    OMP_NUM_THREADS=1 $BIN kl --base "$MODEL" --model "$m" --data "$TEXT" $KLARGS | grep -E "perplexity|KL|top-1"
  done
fi
echo "decode tok/s, 2 threads, 128 new tokens, interleaved x$ROUNDS (load: $(cut -d' ' -f1-3 /proc/loadavg)):"
for r in $(seq "$ROUNDS"); do
  for m in "$MODEL" "$OUT/q8_0.gguf" "$OUT/q8_0-emb.gguf" "$OUT/sfp8"; do
    t=$($BIN generate --model "$m" --ids 2,651,1077,3437 --max-tokens 128 --temperature 0 --threads 2 2>&1 >/dev/null |
        sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
    echo "$(basename "$m") $t" >> "$OUT/decode.txt.$$"
  done
done
for m in "$MODEL" "$OUT/q8_0.gguf" "$OUT/q8_0-emb.gguf" "$OUT/sfp8"; do
  b=$(basename "$m")
  grep "^$b " "$OUT/decode.txt.$$" | cut -d' ' -f2 | sort -n | awk -v b="$b" '{ v[NR] = $1 } END { printf "%-12s median %s tok/s (min %s, max %s, n %d)\n", b, v[int((NR + 1) / 2)], v[1], v[NR], NR }'
done
rm -f "$OUT/decode.txt.$$"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
