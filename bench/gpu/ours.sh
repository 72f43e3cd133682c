#!/usr/bin/env bash
# ours.sh: gemma3.c on the GPU machine (docs/gpu-notes.md, docs/benchmarks.md): batch-1
# decode and 512-token prefill of random 270M / 1B / 4B checkpoints (bf16, `gemma3 init`),
# fast and exact modes, three runs each (the median is what the notes report); batched
# decode of 16 and 64 sequences through `generate --prompts-file`; time to first token and
# GPU memory for a 32K-token prompt on 1B. Needs a CUDA build (./gemma3) and a GPU.
set -u
SHAPES=${SHAPES:-270m 1b 4b}
ids() { python3 -c "import random; random.seed($2); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range($1-1)]))"; }
P512=$(ids 512 1)
for shape in $SHAPES; do
    M=/tmp/g3-$shape
    [ -f $M/config.json ] || ./gemma3 init --shape $shape --out $M >/dev/null 2>&1
    for mode in fast exact; do
        x=""; [ $mode = exact ] && x=--exact
        for rep in 1 2 3; do
            echo "$shape $mode: $(./gemma3 generate --model $M --ids $P512 --max-tokens 256 --temperature 0 --device cuda $x 2>&1 >/dev/null | tail -1)"
        done
    done
done
M=/tmp/g3-1b
for B in 16 64; do
    python3 -c "
import random, json
random.seed(7)
print(json.dumps([' '.join(random.choice(['the','a','cat','dog','ran','far','and','then','it','was']) for _ in range(24)) for _ in range($B*2)]))" >/tmp/p$B.json
    rm -rf /tmp/out$B
    echo "batch $B: $(./gemma3 generate --model $M --tokenizer tests/data/tokenizer/tokenizer.model --prompts-file /tmp/p$B.json --out-dir /tmp/out$B --batch-size $B --max-tokens 128 --temperature 0 --device cuda 2>&1 | tr '\r' '\n' | grep 'tok/s' | tail -1)"
done
# 32K-token prompt (a prompts file: the ids would not fit on a command line): the run is
# its prefill and one new token, so its time is the time to first token
python3 -c "import json; print(json.dumps([' '.join(['the cat ran far and then it was'] * 4096)]))" >/tmp/p32k.json
( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) >/tmp/mem.log 2>/dev/null &
MP=$!
rm -rf /tmp/out32k
T0=$(date +%s.%N)
./gemma3 generate --model $M --tokenizer tests/data/tokenizer/tokenizer.model --prompts-file /tmp/p32k.json --out-dir /tmp/out32k \
    --max-tokens 1 --temperature 0 --device cuda --quiet
T1=$(date +%s.%N)
kill $MP
echo "32K prompt ($(python3 -c "import json;d=json.load(open('/tmp/out32k/results.json')) if False else 0" 2>/dev/null; ls /tmp/out32k | head -3 | tr '\n' ' ')): load + prefill + 1 token $(python3 -c "print(round($T1-$T0,2))") s; peak GPU memory (nvidia-smi, whole card) $(sort -n /tmp/mem.log | tail -1) MiB"
./gemma3 inspect --model $M | sed -n '/KV cache/,$p'
