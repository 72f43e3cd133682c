#!/usr/bin/env bash
# repack_ab.sh: decode with and without the load-time repack (G3_REPACK=0; issue 18), and
# optionally a base binary, interleaved on one GGUF file: per round the read bandwidth
# (bench_kernels' 1 GB read-only sum, same threads) and the load average, then each setting's
# `gemma3 generate` in turn; at the end the medians, and decode's bytes per second (the file's
# bytes x tok/s) against the median read bandwidth.
#
#   bench/repack_ab.sh MODEL.gguf [ROUNDS] [PROMPT] [GEN]        (BASE=BINARY adds a third setting)
#
# G3_BENCH_PASSIVE=1: OMP_WAIT_POLICY=passive set for every run and the probe, as
# bench/quant_peers.sh (gemma3 itself now re-executes with it unless told otherwise; a binary
# from before that, as BASE may be, spins in libgomp's waits: 1-2 tok/s at load 10 here,
# against 26 quiet).
#
# Figures of 2026-12-07 in docs/quantization.md (Q8_0 decode, 16-row groups).
set -u
M=${1:?usage: bench/repack_ab.sh MODEL.gguf [ROUNDS] [PROMPT] [GEN]}
ROUNDS=${2:-5} P=${3:-64} N=${4:-128}
BIN=${BIN:-./gemma3} BASE=${BASE:-} T=${G3_BENCH_THREADS:-2}
BW=${BW:-build/rel/bench/bench_kernels}
OMPWAIT=
[ "${G3_BENCH_PASSIVE:-0}" = 1 ] && OMPWAIT="OMP_WAIT_POLICY=passive"
ids=$(awk -v p="$P" 'BEGIN{for(i=0;i<p;i++)printf "%s%d", i?",":"", 1000+37*i}')
out=$(mktemp)
gen() {  # label, env, binary
  local line
  line=$(env OMP_NUM_THREADS=$T $OMPWAIT $2 "$3" generate --model "$M" --ids "$ids" --max-tokens "$N" --temperature 0 2>&1 | grep 'prefill .* tok/s, decode' | tail -1)
  echo "$1 round $r: prefill $(echo "$line" | sed -n 's/.*prefill \([0-9.]*\) tok\/s.*/\1/p') decode $(echo "$line" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p') load $(cut -d' ' -f1 /proc/loadavg)"
}
for r in $(seq "$ROUNDS"); do
  echo "read round $r: $(env OMP_NUM_THREADS=$T $OMPWAIT "$BW" 3 bandwidth | awk '$1 == "read" { print $2 }') GB/s load $(cut -d' ' -f1 /proc/loadavg)"
  gen repack "G3_REPACK=1" "$BIN"
  gen norepack "G3_REPACK=0" "$BIN"
  [ -n "$BASE" ] && gen base "G3_REPACK=1" "$BASE"
done | tee "$out"
med() { sort -g | awk '{a[NR]=$1}END{if(NR)print (NR%2?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2)}'; }
bw=$(awk '$1 == "read" { print $4 }' "$out" | med)
bytes=$(stat -L -c %s "$M")
echo "== medians over $ROUNDS rounds ($P prompt ids, $N new tokens, $T threads${OMPWAIT:+, passive waits}; read bandwidth $bw GB/s; $bytes bytes a token)"
for s in repack norepack ${BASE:+base}; do
  pp=$(awk -v s="$s" '$1 == s { print $5 }' "$out" | med) tg=$(awk -v s="$s" '$1 == s { print $7 }' "$out" | med)
  lo=$(awk -v s="$s" '$1 == s { print $7 }' "$out" | sort -g | head -1) hi=$(awk -v s="$s" '$1 == s { print $7 }' "$out" | sort -g | tail -1)
  awk -v s="$s" -v pp="$pp" -v tg="$tg" -v lo="$lo" -v hi="$hi" -v b="$bytes" -v bw="$bw" \
    'BEGIN { printf "%-9s prefill %6.1f  decode %5.1f tok/s (%s-%s)  %5.1f GB/s = %3.0f%% of the read bandwidth\n", s, pp, tg, lo, hi, tg * b / 1e9, 100 * tg * b / 1e9 / bw }'
done
# per round, decode against the round's own bandwidth (the probe and the runs share the moment)
awk -v b="$bytes" '$1 == "read" { sub(":", "", $3); bw[$3] = $4; next } $2 == "round" { sub(":", "", $3); printf "%s r%s: %.0f%% ", $1, $3, 100 * $7 * b / 1e9 / bw[$3] } END { print "" }' "$out"
rm -f "$out"
