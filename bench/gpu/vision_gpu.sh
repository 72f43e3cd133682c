#!/bin/sh
# bench/gpu/vision_gpu.sh: seconds per 896x896 image through Gemma 3 4B's SigLIP tower and
# projector (random bf16 weights built in memory: no file needed) on the GPU and on the CPU,
# fast (bf16 products; GPU and CPU) and exact (f32; GPU) modes, medians of REPEATS (default 3). Needs a CUDA build
# (make CUDA=1); builds bench_vision against it (seconds). Prints one summary line per result:
#   vision: cuda fast 0.xxx s/image (median of 3)
#   vision: cpu fast x.xxx s/image (median of 3, 16 threads)
#   vision: fast GPU vs CPU (16 threads): xNN
#   vision: torch bf16 0.xxx s/image (transformers' SiglipVisionModel, the tower alone, when torch is there)
# Under ~90 s on an H100 host with 16 cores. The CPU runs the fast mode only (its exact mode, f32
# products, takes tens of seconds an image).
set -e
cd "$(dirname "$0")/../.."
make CUDA=1 -j"$(nproc)" build/cuda/bench/bench_vision >/dev/null
run() {  # DEVICE EXACT
    G3_BENCH_DEVICE=$1 G3_BENCH_EXACT=$2 G3_BENCH_THREADS="${THREADS:-$(nproc)}" G3_BENCH_REPEATS="${REPEATS:-3}" OMP_WAIT_POLICY=PASSIVE \
        timeout 40 build/cuda/bench/bench_vision > /tmp/vision_gpu.$$ 2>&1 || { cat /tmp/vision_gpu.$$; rm -f /tmp/vision_gpu.$$; return 1; }
    grep -E "^(vision:|  on |  cuda first)" /tmp/vision_gpu.$$ | grep -v "$3" || true
    rm -f /tmp/vision_gpu.$$
}
run both 0 NONE || echo "vision: bench_vision failed (GPU and CPU, fast mode)"
run cuda 1 "cuda fast" || echo "vision: bench_vision failed (GPU, exact mode)"   # the exact mode on the GPU (the CPU's takes minutes)
# the peer: transformers' SiglipVisionModel on the same GPU, when torch and transformers are there
if python3 -c 'import torch, transformers' 2>/dev/null; then
    REPEATS="${REPEATS:-5}" timeout 30 python3 bench/gpu/vision_peer.py || echo "vision: torch peer failed"
else
    echo "vision: torch peer skipped (no torch/transformers)"
fi
