#!/usr/bin/env bash
# gpu_train.sh: the GPU training run on the GPU machine (docs/gpu-notes.md): builds the CUDA
# gemma3 and the GPU tests, runs test_cuda_train (and, with MEMCHECK=1, under compute-sanitizer),
# the other GPU tests as a regression check, then the training benchmark (train_ours.sh) and,
# with PEER=1, PyTorch's (train_peer.py). Logs go to $OUT.
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
time make -j$(nproc) CUDA=1 all cuda-build >"$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
for t in ${TESTS:-test_cuda_train test_cuda_model test_cuda_ops}; do
    timeout 300 build/cuda/tests/$t >"$O/$t.log" 2>&1; echo "$t: exit $? -- $(tail -1 "$O/$t.log")"
done
grep -hE "FAIL|attention|cuda f32|cuda bf16|adamw|resident" "$O"/test_cuda_train.log | head -40
if [ "${MEMCHECK:-0}" = 1 ]; then
    timeout 400 compute-sanitizer --tool memcheck --leak-check no build/cuda/tests/test_cuda_train >"$O/memcheck.log" 2>&1
    echo "memcheck test_cuda_train: exit $? -- $(grep -E 'ERROR SUMMARY' "$O/memcheck.log" | tail -1)"
fi
[ "${BENCH:-1}" = 1 ] && timeout 300 bench/gpu/train_ours.sh ${STEPS:-20} 2>&1 | tee "$O/train_ours.log" | grep -E "OURS|error|train:" | head
[ "${PEER:-0}" = 1 ] && timeout 400 python3 bench/gpu/train_peer.py 20 ${PEER_MODES:-eager,compile} 2>&1 | tee "$O/train_peer.log" | grep -E "TORCH|Error" | head
exit 0
