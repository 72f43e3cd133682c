#!/usr/bin/env bash
# gpu_model.sh: the whole-model GPU run on the GPU machine (docs/gpu-notes.md): builds the
# CUDA gemma3, runs the model tests on both backends (test_forward, test_cuda_model) and the
# kernel tests, then a first speed reading of generate on a random 1B. With PEER=1 it also
# builds llama.cpp's CUDA llama-bench from .cudawt/llama.tar.xz in the background (the
# source bundled in the npm package node-llama-cpp), for gpu_peer.sh. Logs go to $OUT.
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
J=$(nproc)
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
if [ "${PEER:-0}" = 1 ] && [ ! -x build/peers/llama-cuda/bin/llama-bench ]; then
    (mkdir -p build/peers && tar xJf .cudawt/llama.tar.xz -C build/peers &&
     cmake -S build/peers/llama.cpp -B build/peers/llama-cuda -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_CURL=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=ON -DCMAKE_BUILD_TYPE=Release &&
     cmake --build build/peers/llama-cuda --target llama-bench -j $((J - 4))) >"$O/llama_build.log" 2>&1 &
    PEER_PID=$!
fi
time make -j4 CUDA=1 all cuda-build build/cuda/tests/test_forward build/cuda/tests/test_cuda_model >"$O/build.log" 2>&1 ||
    { tail -30 "$O/build.log"; exit 1; }
for t in test_cuda_model test_forward test_cuda_ops test_cuda_linear test_cuda_attn; do
    timeout 300 build/cuda/tests/$t >"$O/$t.log" 2>&1; echo "$t: exit $? -- $(tail -1 "$O/$t.log")"
done
grep -E "cuda|hooks" "$O/test_forward.log" "$O/test_cuda_model.log" | head -40
grep -E "FAIL" "$O"/test_*.log | head -20
M=/tmp/g3-1b
[ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null
ids=$(python3 -c "import random; random.seed(1); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(511)]))")
for dev in cuda cuda; do
    timeout 120 ./gemma3 generate --model $M --ids $ids --max-tokens 256 --temperature 0 --device $dev 2>&1 >/dev/null | tail -1
    timeout 120 ./gemma3 generate --model $M --ids $ids --max-tokens 256 --temperature 0 --device $dev --exact 2>&1 >/dev/null | tail -1
done
if [ -n "${PEER_PID:-}" ]; then
    wait $PEER_PID; echo "llama.cpp build: exit $? -- $(tail -2 "$O/llama_build.log")"
fi
