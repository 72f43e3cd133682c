#!/usr/bin/env bash
# serve_gpu.sh: `gemma3 serve --device cuda` beside llama.cpp's CUDA llama-server on the GPU
# machine (issue 22), same random 1B checkpoint (bf16, `gemma3 init`, converted to GGUF by
# llama.cpp's own converter: bench/gpu/peer.sh), one slot per stream, every layer on the GPU,
# flash attention on for llama.cpp. bench/serve_load.py sends streamed chat requests (greedy,
# ignore_eos, 64 tokens each, 3 per stream) from 1, 16 and 64 concurrent clients: tokens/s
# summed, time to first token and inter-token latency (p50, p99). Servers alternate, REPS runs
# each (default 2), medians reported. Needs ./gemma3 built with CUDA; PEER=0 runs ours alone.
set -u
M=/tmp/g3-1b G=/tmp/g3-1b.gguf
REPS=${REPS:-2} TOKENS=${TOKENS:-64}
[ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null
cp -n tests/data/tokenizer/tokenizer.model $M/ 2>/dev/null
PEER=${PEER:-1}
if [ "$PEER" = 1 ] && [ ! -f $G ]; then SHAPES=1b bench/gpu/peer.sh >/tmp/peer_1b.log 2>&1 || true; fi
[ -f $G ] && [ -x build/peers/llama-cuda/bin/llama-server ] || { [ "$PEER" = 1 ] && echo "serve_gpu: no llama-server; ours alone"; PEER=0; }
health() { for _ in $(seq 600); do curl -sf http://127.0.0.1:$1/health >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
one() {  # NAME CONC -> a JSON line from serve_load.py
    local port=$((18000 + RANDOM % 1000))
    if [ $1 = gemma3 ]; then
        ./gemma3 serve --model $M --port $port --parallel $2 --ctx 1024 --temperature 0 --device cuda --quiet >/tmp/serve_$1.log 2>&1 &
    else
        build/peers/llama-cuda/bin/llama-server -m $G --host 127.0.0.1 --port $port -ngl 99 -fa on -np $2 -c $((1024 * $2)) \
            >/tmp/serve_$1.log 2>&1 &
    fi
    local p=$!
    if health $port; then python3 bench/serve_load.py http://127.0.0.1:$port $2 $(($2 * 3)) $TOKENS
    else echo "serve_gpu: $1 did not start:" >&2; tail -3 /tmp/serve_$1.log >&2; fi
    kill $p 2>/dev/null; wait $p 2>/dev/null
}
med() { python3 -c 'import json,sys,statistics; v=[json.loads(l)[sys.argv[1]] for l in sys.stdin if l.strip().startswith("{")]; print(round(statistics.median(v),1) if v else "nan")' $1; }
printf '%-10s %5s %9s %9s %9s %9s %9s\n' server streams tok/s ttft_p50 ttft_p99 itl_p50 itl_p99
for conc in ${CONCS:-1 16 64}; do
    : >/tmp/sv_gemma3; : >/tmp/sv_llama
    for _ in $(seq $REPS); do
        one gemma3 $conc >>/tmp/sv_gemma3
        [ $PEER = 1 ] && one llama $conc >>/tmp/sv_llama
    done
    for n in gemma3 llama; do
        [ -s /tmp/sv_$n ] || continue
        printf 'SERVE %-10s %5s %9s %9s %9s %9s %9s\n' $n $conc "$(med tok_s </tmp/sv_$n)" "$(med ttft_p50_ms </tmp/sv_$n)" \
            "$(med ttft_p99_ms </tmp/sv_$n)" "$(med itl_p50_ms </tmp/sv_$n)" "$(med itl_p99_ms </tmp/sv_$n)"
    done
done
