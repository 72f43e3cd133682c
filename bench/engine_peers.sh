#!/usr/bin/env bash
# engine_peers.sh: bench_engine beside llama.cpp in the same run, on the same random Gemma 3
# 1B checkpoint, 2 threads: prefill of 512 tokens and decode of 128, in BF16 and in F16.
# llama.cpp is Debian's build (bench/peers/llama_cpp.sh: downloaded once, no root needed),
# run through llama-bench (-p 512 -n 128, median of its repetitions); its tok/s are handed to
# bench_engine (G3_PEER_TOKS), which prints the ratios beside its own figures and the
# bandwidth ceiling it samples. A llama.cpp that cannot be had is reported and bench_engine
# runs alone; `make bench` never fails for a peer. Usage: engine_peers.sh [bf16,f16]
set -u
BUILD=${BUILD:-build/rel}
BENCH=$BUILD/bench/bench_engine
DTYPES=${1:-bf16,f16}
THREADS=${G3_BENCH_THREADS:-2}
REPS=${G3_BENCH_REPS:-3}
BIN=${BIN:-./gemma3}
[ -x "$BENCH" ] || { echo "engine_peers: $BENCH not built (make bench builds it)"; exit 0; }
peer=1
bash bench/peers/llama_cpp.sh setup || { echo "engine_peers: no llama.cpp; bench_engine runs alone"; peer=0; }

for dt in ${DTYPES//,/ }; do
  model=models/bench-1b-$dt
  [ -f "$model/config.json" ] || "$BIN" init --shape 1b --dtype "$dt" --out "$model" || exit 1
  toks="" name=""
  if [ $peer = 1 ]; then
    gguf=build/peers/gguf/bench-1b-$dt.gguf
    echo "== llama.cpp, $dt"
    if bash bench/peers/llama_cpp.sh convert "$model" "$gguf" "$dt"; then
      # csv: the header names the columns; avg_ts is the mean over -r repetitions
      out=$(bash bench/peers/llama_cpp.sh bench -m "$gguf" -t "$THREADS" -p 512 -n 128 -r "$REPS" -o csv 2>/dev/null)
      ver=$(bash bench/peers/llama_cpp.sh bench --version 2>&1 | sed -n 's/^version: \([^ ]*\) (build \([0-9]*\).*/\1 b\2/p')
      col() { echo "$out" | awk -F, -v want="$1" -v test="$2" 'NR==1{for(i=1;i<=NF;i++){h=$i;gsub(/"/,"",h);c[h]=i}next}
        {p=$c["n_prompt"];g=$c["n_gen"];gsub(/"/,"",p);gsub(/"/,"",g);v=$c[want];gsub(/"/,"",v)
         if((test=="pp"&&p>0&&g==0)||(test=="tg"&&g>0&&p==0))print v}'; }
      pp=$(col avg_ts pp) tg=$(col avg_ts tg) pps=$(col stddev_ts pp) tgs=$(col stddev_ts tg)
      if [ -n "$pp" ] && [ -n "$tg" ]; then
        printf 'llama.cpp %s (Debian), %s: prefill 512 %.1f tok/s (sd %.1f), decode 128 %.2f tok/s (sd %.2f)\n' "$ver" "$dt" "$pp" "$pps" "$tg" "$tgs"
        toks="$pp $tg" name="llama.cpp $ver $dt"
      else
        echo "engine_peers: llama-bench gave no figures"
      fi
    else
      echo "engine_peers: could not convert $model to GGUF"
    fi
  fi
  echo "== bench_engine, $dt"
  batch=0; [ "$dt" = bf16 ] && batch=1  # batched decode once, on the BF16 model
  G3_BENCH_MODEL=$model G3_BENCH_BATCH=$batch G3_PEER="$name" G3_PEER_TOKS="$toks" "$BENCH" || exit 1
done
