#!/usr/bin/env bash
# decode_sampling.sh: 1B batch-1 decode speed on the GPU, greedy against sampled (temperature
# 0.8, top-p 0.95, Gemma's default top-k 64), with the sampler's heavy part on the device
# (backend.h sample_top_k: only 64 candidates cross back) and with G3_HOST_SAMPLER=1 (the
# 262,144 logits copied back and sampled on the host, as before), plus top-p alone (top-k 0:
# always the host path). Runs interleaved, three of each; the median is printed. A random
# bf16 1B from `gemma3 init` (made once in /tmp/g3-1b). With BUILD=1 it first builds the CUDA
# gemma3 and runs test_cuda_sampler; the sampler op's own timings come from bench_cuda
# --sampler. Logs under $OUT (default /tmp/gpu_out). About 1 minute after the build.
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
if [ "${BUILD:-0}" = 1 ]; then
    make -j"$(nproc)" CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" ./gemma3 build/cuda/tests/test_cuda_sampler \
        build/cuda/tests/cuda/bench_cuda >"$O/build.log" 2>&1 ||
        { grep -E "error" "$O/build.log" | head -20; tail -5 "$O/build.log"; exit 1; }
    timeout 300 build/cuda/tests/test_cuda_sampler >"$O/test_cuda_sampler.log" 2>&1
    echo "test_cuda_sampler: exit $? -- $(grep -E 'draws equal' "$O/test_cuda_sampler.log") $(tail -1 "$O/test_cuda_sampler.log")"
    grep -E "check failed" "$O/test_cuda_sampler.log" | head -10
fi
# the op alone: argmax, sample_top_k (k 64, with and without penalties), the host path
[ -x build/cuda/tests/cuda/bench_cuda ] && timeout 120 build/cuda/tests/cuda/bench_cuda --sampler 2>&1 | tail -5
nvidia-smi --query-gpu=name --format=csv,noheader
M=${MODEL:-/tmp/g3-1b}
[ -f "$M/config.json" ] || ./gemma3 init --shape 1b --out "$M" >"$O/init.log" 2>&1 || { tail -3 "$O/init.log"; exit 1; }
IDS=$(python3 -c "import random; random.seed(3); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(31)]))")
N=${TOKENS:-256}
run() {  # name, env, options: prints decode tok/s
    local name=$1 env=$2; shift 2
    env $env ./gemma3 generate --model "$M" --ids "$IDS" --max-tokens "$N" --device cuda "$@" 2>>"$O/decode_$name.err" >>"$O/decode_$name.ids"
    tail -1 "$O/decode_$name.err" | sed -n 's/.*decode \([0-9.]*\) tok\/s.*/\1/p'
}
declare -A R
CASES="greedy sampled_device sampled_host topp_only_host"
for rep in 1 2 3; do
    for c in $CASES; do
        case $c in
        greedy) v=$(run $c "" --temperature 0) ;;
        sampled_device) v=$(run $c "" --temperature 0.8 --top-p 0.95 --seed 1) ;;
        sampled_host) v=$(run $c "G3_HOST_SAMPLER=1" --temperature 0.8 --top-p 0.95 --seed 1) ;;
        topp_only_host) v=$(run $c "" --temperature 0.8 --top-p 0.95 --top-k 0 --seed 1) ;;
        esac
        R[$c]="${R[$c]:-} $v"
    done
done
med() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : "?")}'; }
echo "1B batch-1 decode, $N tokens after a 32-token prompt (tok/s, median of 3; all runs):"
for c in $CASES; do printf '  %-16s %8s   (%s)\n' "$c" "$(med "${R[$c]}")" "${R[$c]# }"; done
# the device and host samplers must have drawn the same tokens (same seed)
if cmp -s <(head -1 "$O/decode_sampled_device.ids") <(head -1 "$O/decode_sampled_host.ids"); then
    echo "sampled tokens: device sampler == host sampler (seed 1, $N tokens)"
else
    echo "sampled tokens DIFFER between the device and host samplers (see $O/decode_sampled_*.ids)"
fi
