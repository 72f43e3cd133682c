#!/usr/bin/env bash
# serve_peers.sh: `gemma3 serve` beside llama.cpp's llama-server (Debian sid's build, fetched by
# bench/peers/llama_cpp.sh), same random checkpoint (default the 270m shape, BF16; the GGUF is
# converted from the same folder with the same tokenizer), same threads, one slot per stream,
# greedy, ignore_eos. A load generator on loopback (bench/serve_load.py) runs 1, 8 and 32
# concurrent streams of chat requests: tokens/s summed, time to first token and inter-token
# latency (p50, p99). Each figure is the median of G3_BENCH_REPS runs (default 3), servers
# alternating. A llama-server that cannot be had is said, and gemma3 serve runs alone.
# Env: G3_BENCH_THREADS (2), G3_SERVE_SHAPE (270m), G3_SERVE_TOKENS (32 per request),
# G3_SERVE_CONC (1,8,32), G3_BENCH_REPS (3), G3_SERVE_ROUNDS (2: requests per stream).
set -u
BIN=${BIN:-./gemma3}
THREADS=${G3_BENCH_THREADS:-2}
SHAPE=${G3_SERVE_SHAPE:-270m}
TOKENS=${G3_SERVE_TOKENS:-32}
CONCS=${G3_SERVE_CONC:-1,8,32}
REPS=${G3_BENCH_REPS:-3}
ROUNDS=${G3_SERVE_ROUNDS:-2}
CTX=512
model=models/bench-$SHAPE-bf16
[ -f "$model/config.json" ] || "$BIN" init --shape "$SHAPE" --dtype bf16 --out "$model" >/dev/null || exit 1
[ -f "$model/tokenizer.model" ] || cp tests/data/tokenizer/tokenizer.model "$model/"
peer=1
gguf=build/peers/gguf/bench-$SHAPE-bf16.gguf
{ bash bench/peers/llama_cpp.sh setup && bash bench/peers/llama_cpp.sh convert "$model" "$gguf" bf16; } || { echo "serve_peers: no llama-server; gemma3 serve runs alone"; peer=0; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Starts a server in the background (its pid in $spid), waits for /health; prints its port.
wait_health() {  # PORT
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run_one() {  # NAME CONC -> one JSON line
  local name=$1 conc=$2 port; port=$(free_port)
  if [ "$name" = gemma3 ]; then
    "$BIN" serve --model "$model" --port "$port" --parallel "$conc" --ctx $CTX --threads "$THREADS" --temperature 0 --quiet >"$tmp/s.out" 2>"$tmp/s.err" &
  else
    bash bench/peers/llama_cpp.sh server -m "$gguf" --host 127.0.0.1 --port "$port" -t "$THREADS" -np "$conc" -c $((CTX * conc)) --temp 0 >"$tmp/s.out" 2>"$tmp/s.err" &
  fi
  local spid=$!
  if ! wait_health "$port"; then echo "serve_peers: $name did not start" >&2; tail -5 "$tmp/s.err" >&2; kill $spid 2>/dev/null; wait $spid 2>/dev/null; return 1; fi
  /usr/bin/python3 bench/serve_load.py "http://127.0.0.1:$port" "$conc" $((conc * ROUNDS)) "$TOKENS"
  kill $spid 2>/dev/null
  wait $spid 2>/dev/null
}

median() {  # FIELD, JSON lines on stdin
  /usr/bin/python3 -c 'import json,sys,statistics; v=[json.loads(l)[sys.argv[1]] for l in sys.stdin if l.strip()]; print(statistics.median(v) if v else "nan")' "$1"
}

echo "serve_peers: $SHAPE bf16, $THREADS threads, $TOKENS tokens per request, $ROUNDS requests per stream, median of $REPS runs; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %5s %10s %10s %10s %10s %10s\n' server streams tok/s ttft_p50 ttft_p99 itl_p50 itl_p99
for conc in ${CONCS//,/ }; do
  : >"$tmp/gemma3.$conc"; : >"$tmp/llama.$conc"
  for r in $(seq "$REPS"); do
    run_one gemma3 "$conc" >>"$tmp/gemma3.$conc"
    [ $peer = 1 ] && run_one llama "$conc" >>"$tmp/llama.$conc"
  done
  for name in gemma3 llama; do
    f=$tmp/$name.$conc
    [ -s "$f" ] || continue
    printf '%-10s %5s %10s %10s %10s %10s %10s\n' "$([ $name = llama ] && echo llama.cpp || echo gemma3)" "$conc" "$(median tok_s <"$f")" \
      "$(median ttft_p50_ms <"$f")" "$(median ttft_p99_ms <"$f")" "$(median itl_p50_ms <"$f")" "$(median itl_p99_ms <"$f")"
  done
done
echo "(ms for latencies; the machine is shared: compare rows of one run only)"
