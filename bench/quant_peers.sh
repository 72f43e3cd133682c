#!/usr/bin/env bash
# quant_peers.sh: gemma3.c beside a source-built llama.cpp on the *same* GGUF files, 2 threads,
# interleaved (per round: each type, llama-bench then gemma3 generate), medians over rounds.
# Files: gemma3 quantize's (with a tokenizer in the metadata, so llama.cpp loads them).
# Usage: quant_peers.sh [DIR_OF_GGUF] [LLAMA_BIN_DIR] [ROUNDS] [PROMPT] [GEN]   (make bench: no arguments)
#   DIR_OF_GGUF holds 1b-BF16.gguf 1b-Q8_0.gguf 1b-Q4_0.gguf 1b-Q4_K_M.gguf (any subset; gemma3
#   quantize's), and optionally 1b-llama-Q4_0.gguf 1b-llama-Q4_K_M.gguf (llama-quantize's)
#   LLAMA_BIN_DIR: llama.cpp's build/bin (cmake -DGGML_NATIVE=ON, the source of node-llama-cpp)
# Prints one line per (engine, type, round), the medians, then each round's ratios
# (BASE=BINARY also runs a second gemma3, e.g. main's build, after BIN on each file). gemma3.c's figures are its
# generate report (prefill of PROMPT ids, decode of GEN tokens); llama.cpp's are llama-bench's
# pp PROMPT / tg GEN. Never fails for a missing peer: it reports and goes on.
set -u
DIR=${1:-build/peers/quant} LB=${2:-${LLAMA_BIN:-build/peers/llama.cpp-src/bin}} ROUNDS=${3:-3} P=${4:-512} N=${5:-128}
TYPES=${TYPES:-"BF16 Q8_0 Q4_0 Q4_K_M llama-Q4_0 llama-Q4_K_M"}
# the machine's read bandwidth, measured in every round beside the engines (bench_kernels'
# 1 GB read-only sum, T threads): decode's bytes per token (the file's) x tok/s against it
BW=${BW:-build/rel/bench/bench_kernels}
ls "$DIR"/1b-*.gguf >/dev/null 2>&1 || { echo "quant_peers: no 1b-TYPE.gguf files in $DIR (make them with gemma3 quantize; see the usage line)"; exit 0; }
# LLAMA_BENCH: a command to run instead (e.g. "bash bench/peers/llama_cpp.sh bench": Debian's build)
LLAMA_BENCH=${LLAMA_BENCH:-}
[ -z "$LLAMA_BENCH" ] && [ -x "$LB/llama-bench" ] && LLAMA_BENCH="$LB/llama-bench"
[ -n "$LLAMA_BENCH" ] || echo "quant_peers: no llama-bench in $LB: gemma3.c alone"
BIN=${BIN:-./gemma3}
# BASE: a second gemma3 binary (e.g. main's build) run right after BIN on each file, reported
# as "base": a change measured against its base in the same rounds
BASE=${BASE:-}
T=${G3_BENCH_THREADS:-2}
# G3_BENCH_PASSIVE=1: threads that wait by sleeping in both engines (llama-bench --poll 0,
# OMP_WAIT_POLICY=passive for both, as ggml may use OpenMP): on a machine with more runnable threads than cores, spinning
# waits cost both engines most of their time (measured: 0.3 tok/s against 7)
LPOLL="" OMPWAIT=""
[ "${G3_BENCH_PASSIVE:-0}" = 1 ] && LPOLL="--poll 0" OMPWAIT="OMP_WAIT_POLICY=passive"
ids=$(awk -v p="$P" 'BEGIN{for(i=0;i<p;i++)printf "%s%d", i?",":"", 1000+37*i}')
out=$(mktemp)
for r in $(seq "$ROUNDS"); do
  echo "round $r: load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
  if [ -x "$BW" ]; then
    bw=$(env OMP_NUM_THREADS=$T $OMPWAIT "$BW" 3 bandwidth | awk '$1 == "read" { print $2 }')
    echo "read bandwidth round $r: $bw GB/s" | tee -a "$out"
  fi
  for ty in $TYPES; do
    f=$DIR/1b-$ty.gguf
    [ -f "$f" ] || continue
    if [ -n "$LLAMA_BENCH" ]; then
      csv=$(env $OMPWAIT $LLAMA_BENCH -m "$f" -t "$T" $LPOLL -p "$P" -n "$N" -r 1 -o csv 2>/dev/null)
      col() { echo "$csv" | awk -F, -v want="$1" -v test="$2" 'NR==1{for(i=1;i<=NF;i++){h=$i;gsub(/"/,"",h);c[h]=i}next}
        {p=$c["n_prompt"];g=$c["n_gen"];gsub(/"/,"",p);gsub(/"/,"",g);v=$c[want];gsub(/"/,"",v)
         if((test=="pp"&&p>0&&g==0)||(test=="tg"&&g>0&&p==0))print v}'; }
      pp=$(col avg_ts pp) tg=$(col avg_ts tg)
      echo "llama.cpp $ty round $r: prefill $pp decode $tg" | tee -a "$out"
    fi
    for eb in "gemma3.c $BIN" ${BASE:+"base $BASE"}; do
      line=$(env OMP_NUM_THREADS=$T $OMPWAIT "${eb#* }" generate --model "$f" --ids "$ids" --max-tokens "$N" 2>&1 | grep 'prefill .* tok/s, decode' | tail -1)
      pp=$(echo "$line" | sed -n 's/.*prefill \([0-9.]*\) tok\/s.*/\1/p') tg=$(echo "$line" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
      echo "${eb%% *} $ty round $r: prefill $pp decode $tg" | tee -a "$out"
      # this round's share: the probe moves with the other tenants from round to round
      [ -n "${bw:-}" ] && [ -n "$tg" ] && awk -v e="${eb%% *}" -v t="$ty" -v r="$r" -v v="$tg" -v b="$(stat -L -c %s "$f")" -v bw="$bw" \
        'BEGIN { printf "share %s %s round %d: %.0f%% of this round'"'"'s read bandwidth\n", e, t, r, 100 * v * b / 1e9 / bw }' | tee -a "$out"
    done
  done
done
echo "== medians over $ROUNDS rounds (prefill $P, decode $N, $T threads; load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
for eng in llama.cpp gemma3.c ${BASE:+base}; do
  for ty in $TYPES; do
    for k in prefill decode; do
      v=$(grep "^$eng $ty " "$out" | sed -n "s/.* $k \([0-9.]*\).*/\1/p" | sort -g | awk '{a[NR]=$1}END{if(NR)print (NR%2?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2)}')
      [ -n "$v" ] && printf '%-10s %-7s %-8s %s tok/s\n' "$eng" "$ty" "$k" "$v"
    done
  done
done
bw=$(sed -n 's/^read bandwidth round [0-9]*: \([0-9.]*\) GB\/s/\1/p' "$out" | sort -g | awk '{a[NR]=$1}END{if(NR)print (NR%2?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2)}')
if [ -n "$bw" ]; then
  echo "== decode's share of the read bandwidth (median $bw GB/s; bytes per token: the file's)"
  for eng in llama.cpp gemma3.c ${BASE:+base}; do
    for ty in $TYPES; do
      f=$DIR/1b-$ty.gguf
      [ -f "$f" ] || continue
      v=$(grep "^$eng $ty " "$out" | sed -n "s/.* decode \([0-9.]*\).*/\1/p" | sort -g | awk '{a[NR]=$1}END{if(NR)print (NR%2?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2)}')
      [ -n "$v" ] && awk -v e="$eng" -v t="$ty" -v v="$v" -v b="$(stat -L -c %s "$f")" -v bw="$bw" \
        'BEGIN { printf "%-10s %-13s %6.1f GB/s = %3.0f%% of the read bandwidth\n", e, t, v * b / 1e9, 100 * v * b / 1e9 / bw }'
    done
  done
fi
# per round: gemma3.c against llama.cpp (and against base), same file, back to back
echo "== ratios per round (gemma3.c / llama.cpp${BASE:+; gemma3.c / base}): prefill, decode"
awk '$3 == "round" && $1 != "read" { sub(":", "", $4); v[$1 " " $2 " " $4 " p"] = $6; v[$1 " " $2 " " $4 " d"] = $8; if ($4 > nr) nr = $4; ty[$2] = 1 }
  function q(a, b) { return (a > 0 && b > 0) ? sprintf("x%.2f", a / b) : "-" }
  END { for (t in ty) { line = sprintf("%-13s", t)
          for (r = 1; r <= nr; r++) {
            line = line sprintf(" | r%d %s %s", r, q(v["gemma3.c " t " " r " p"], v["llama.cpp " t " " r " p"]), q(v["gemma3.c " t " " r " d"], v["llama.cpp " t " " r " d"]))
            if (("base " t " " r " d") in v) line = line sprintf(" (base %s %s)", q(v["gemma3.c " t " " r " p"], v["base " t " " r " p"]), q(v["gemma3.c " t " " r " d"], v["base " t " " r " d"])) }
          print line } }' "$out"
rm -f "$out"
