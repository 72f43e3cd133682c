#!/usr/bin/env bash
# serve_gpu.sh: `gemma3 serve --device cuda` on the GPU machine under load (bench/serve_load.py:
# streamed chat requests from 1, 16 and 64 concurrent clients, greedy, 64 tokens each): tokens/s
# summed, time to first token and inter-token latency (p50, p99). A random 1B checkpoint (bf16,
# `gemma3 init`) with the test tokenizer. Needs a CUDA build (./gemma3).
set -u
M=/tmp/g3-1b
[ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null
cp -n tests/data/tokenizer/tokenizer.model $M/ 2>/dev/null
for conc in ${CONCS:-1 16 64}; do
    par=$(( conc < 8 ? 8 : conc ))
    ./gemma3 serve --model $M --port 18089 --parallel $par --ctx 1024 --temperature 0 --device cuda >/tmp/serve.log 2>&1 &
    P=$!
    for _ in $(seq 300); do curl -sf http://127.0.0.1:18089/health >/dev/null 2>&1 && break; sleep 0.2; done
    echo "SERVE cuda 1b conc=$conc: $(python3 bench/serve_load.py http://127.0.0.1:18089 $conc $(( conc * 3 )) 64)"
    kill $P; wait $P 2>/dev/null
done
