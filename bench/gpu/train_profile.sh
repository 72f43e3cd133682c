#!/usr/bin/env bash
# train_profile.sh: where a training step's GPU time goes (issue 17), in one call on the GPU
# machine: builds the CUDA gemma3, test_cuda_train and test_cuda_attn, runs the tests (their last lines), then
# `gemma3 train --device cuda` on the GemmaZero shape as train_ours.sh does (B16 x T1024, bf16
# products), once plain (tokens/s: the median of the steps after the first three) and once under
# the built-in profiler (G3_CUDA_PROFILE=1, src/backend/cuda/prof.cu: per backend op and per
# cuBLAS shape / rounding pass, GPU ms per step, % of the GPU span, host ms, idle time).
# Logs go to $OUT (or /tmp/gpu_out). About 4-5 minutes with the build on 16 cores.
# bf16 mode also runs once with the reuse of rounded operands off and once with the head's rows
# left unaligned (G3_CUDA_PAD=0) (AB=0 skips both), the A/Bs of backend_cuda.cu's weight copy
# and kept roundings and of its padded pitches; the last step's loss of each run is shown (the
# runs must agree: the padding changes only the order of f32 sums).
# Knobs: STEPS (plain run, 20), PSTEPS (profiled run, 10), SKIP_TEST=1, SKIP_BUILD=1,
# MODES ("bf16"; add f32 for the exact mode's table), PEER=1 (PyTorch eager + compile, ~2 min).
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
echo "== commit $(git rev-parse --short=12 HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (dirty)')"
t0=$(date +%s)
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    make -j"$(nproc)" CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" ./gemma3 build/cuda/tests/test_cuda_train build/cuda/tests/test_cuda_attn \
        >"$O/build.log" 2>&1 || { grep -E "error|Error" "$O/build.log" | head -20; tail -20 "$O/build.log"; exit 1; }
    echo "== build: $(($(date +%s) - t0)) s"
fi
if [ "${SKIP_TEST:-0}" != 1 ]; then
    t1=$(date +%s)
    timeout 300 build/cuda/tests/test_cuda_train >"$O/test_cuda_train.log" 2>&1
    echo "== test_cuda_train: exit $? in $(($(date +%s) - t1)) s -- $(tail -1 "$O/test_cuda_train.log")"
    grep -E "FAIL|check failed" "$O/test_cuda_train.log" | head -20
    t1=$(date +%s)  # the prefill kernels (attn_mma.cu is also inference's tensor-core prefill)
    timeout 300 build/cuda/tests/test_cuda_attn >"$O/test_cuda_attn.log" 2>&1
    echo "== test_cuda_attn: exit $? in $(($(date +%s) - t1)) s -- $(tail -1 "$O/test_cuda_attn.log")"
    grep -E "FAIL|check failed" "$O/test_cuda_attn.log" | head -20
fi
python3 - <<'PY'
import os, struct, random
random.seed(1)
n = 2_000_000
if not os.path.exists('/tmp/gzp-tok.bin'):
    ids = [random.randrange(3, 50257) for _ in range(n)]
    with open('/tmp/gzp-tok.bin', 'wb') as f:
        f.write(b'G3TOKENS' + struct.pack('<IIiiQII', 1, 50257, 2, 1, n, 0, 64) + bytes(24))
        f.write(struct.pack('<%dI' % n, *ids))
PY
med() { grep -o '[0-9]* tok/s' | awk '{print $1}' | tail -n +4 | sort -n |
        awk '{a[NR]=$1} END {if (NR) print "median " a[int((NR+1)/2)] " tok/s over " NR " steps (min " a[1] ", max " a[NR] ")"; else print "no steps"}'; }
run() {  # $1 tag, $2 matmul mode, $3 steps, rest: environment
    local tag=$1 mm=$2 steps=$3; shift 3
    rm -rf /tmp/gzp-run
    env "$@" timeout 240 ./gemma3 train --init bench/gpu/gemmazero.json --data /tmp/gzp-tok.bin --out /tmp/gzp-run --steps "$steps" \
        --batch 16 --seq 1024 --matmul "$mm" --warmup 5 --eval-every 0 --eval-batches 1 --save-every 0 --log-every 1 \
        --device cuda >"$O/$tag.log" 2>&1
    echo "   exit $?; last step: $(grep -E '^step' "$O/$tag.log" | tail -1)"
}
for mm in ${MODES:-bf16}; do
    echo "== train GemmaZero B16 x T1024 --matmul $mm, ${STEPS:-20} steps, no profiler"
    run plain-$mm "$mm" "${STEPS:-20}"
    echo "OURS gemmazero $mm: $(med <"$O/plain-$mm.log"); $(grep -o 'MFU [0-9.]*%' "$O/plain-$mm.log" | tail -1)"
    if [ "$mm" = bf16 ] && [ "${AB:-1}" = 1 ]; then  # the same without reusing rounded operands (what the reuse gains)
        echo "== the same with G3_CUDA_BF16_CACHE=0 G3_CUDA_BF16_SHADOW=0 (every operand rounded at every product)"
        run noreuse-$mm "$mm" "${STEPS:-20}" G3_CUDA_BF16_CACHE=0 G3_CUDA_BF16_SHADOW=0
        echo "OURS gemmazero $mm, no reuse: $(med <"$O/noreuse-$mm.log")"
        echo "== the same with G3_CUDA_PAD=0 (the head's rows of 50,257 values unaligned, as before train18)"
        run nopad-$mm "$mm" "${STEPS:-20}" G3_CUDA_PAD=0
        echo "OURS gemmazero $mm, no padding: $(med <"$O/nopad-$mm.log")"
    fi
    echo "== the same under G3_CUDA_PROFILE=1, ${PSTEPS:-10} steps (the first 2 dropped)"
    run prof-$mm "$mm" "${PSTEPS:-10}" G3_CUDA_PROFILE=1
    echo "   profiled run: $(med <"$O/prof-$mm.log")"
    sed -n '/== G3_CUDA_PROFILE/,$p' "$O/prof-$mm.log" | head -150
done
if [ "${PEER:-0}" = 1 ]; then
    echo "== PyTorch (bench/gpu/train_peer.py 20 eager,compile)"
    timeout 300 python3 bench/gpu/train_peer.py 20 eager,compile 2>&1 | tee "$O/train_peer.log" | grep -E "TORCH|Error" | head
fi
echo "== total $(($(date +%s) - t0)) s"
exit 0
