#!/usr/bin/env bash
# decode_shapes.sh: the issue's batch-1 figures on the GPU, compact: decode tok/s of random bf16
# 270M, 1B and 4B checkpoints (`gemma3 init`, made once in /tmp/g3-SHAPE, the paths ours.sh
# uses), greedy, 256 tokens after a 32-token prompt, median of 3; then on 1B the time to first
# token of a 32K-token prompt (its prefill_s in results.json, and the wall time of the whole
# command) with the GPU memory: the peak nvidia-smi saw for the card, and `gemma3 inspect`'s
# weights + KV cache at 32K (sliding layers keep 512 positions: the windowed cache). Needs a
# CUDA ./gemma3 (BUILD=1 builds it). Logs under $OUT. About 2 minutes once the checkpoints
# exist (the first run writes ~11 GB of them: add a minute).
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
if [ "${BUILD:-0}" = 1 ]; then
    make -j"$(nproc)" CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" ./gemma3 >"$O/build.log" 2>&1 ||
        { grep -E "error" "$O/build.log" | head -20; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
IDS=$(python3 -c "import random; random.seed(3); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(31)]))")
med() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "?")}'; }
echo "batch-1 decode, 256 tokens after 32 (tok/s, median of 3; all runs):"
for shape in ${SHAPES:-270m 1b 4b}; do
    M=/tmp/g3-$shape
    [ -f $M/config.json ] || ./gemma3 init --shape $shape --out $M >"$O/init_$shape.log" 2>&1 || { tail -2 "$O/init_$shape.log"; continue; }
    all=""
    for rep in 1 2 3; do
        v=$(./gemma3 generate --model $M --ids "$IDS" --max-tokens 256 --temperature 0 --device cuda 2>&1 >/dev/null | tee -a "$O/decode_$shape.log" |
            tail -1 | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p')
        all="$all ${v:-?}"
    done
    printf '  %-5s %8s   (%s)\n' "$shape" "$(med "$all")" "${all# }"
done
# 32K tokens: a prompts file (the text would not fit one command-line argument), one slot;
# 4095 x 8 tokens + <bos> = 32,761, so that the prompt and its token fit 1B's 32,768 positions
M=/tmp/g3-1b
python3 -c "import json; print(json.dumps([' '.join(['the cat ran far and then it was'] * 4095)]))" >"$O/p32k.json"
(while sleep 0.1; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done) >"$O/mem32k.log" 2>/dev/null &
MP=$!
base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits)
rm -rf "$O/out32k"
T0=$(date +%s.%N)
./gemma3 generate --model $M --tokenizer tests/data/tokenizer/tokenizer.model --prompts-file "$O/p32k.json" --out-dir "$O/out32k" \
    --batch-size 1 --max-tokens 1 --temperature 0 --device cuda --quiet 2>"$O/gen32k.err"
rc=$?
T1=$(date +%s.%N)
kill $MP 2>/dev/null
python3 - "$O/out32k/results.json" "$T0" "$T1" "$base" "$O/mem32k.log" "$rc" <<'PY'
import json, sys
path, t0, t1, base, memlog, rc = sys.argv[1:]
try:
    d = json.load(open(path))
    items = d["results"] if isinstance(d, dict) and "results" in d else d
    it = items[0]
    print(f"1B, 32K prompt: {it['prompt_tokens']} tokens, time to first token (prefill_s) {it['prefill_s']:.3f} s"
          f" = {it['prompt_tokens'] / it['prefill_s']:.0f} tok/s; whole command (load + upload + prefill + 1 token) {float(t1) - float(t0):.2f} s")
except Exception as e:
    print(f"1B, 32K prompt: no result (exit {rc}, {e!r}); see gen32k.err")
mem = [int(x) for x in open(memlog).read().split() if x.strip().isdigit()]
print(f"GPU memory (nvidia-smi, whole card): before {base} MiB, peak {max(mem) if mem else '?'} MiB")
PY
./gemma3 inspect --model $M --context 32768 --device cuda 2>&1 | grep -E "GPU|weights on the GPU|KV cache" | head -6
