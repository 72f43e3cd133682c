#!/usr/bin/env bash
# train_peers.sh: bench_train beside PyTorch in the same run: bench/train_torch.py (the same
# Gemma 3 step for the two shapes, f32 (bf16 autocast on request), AdamW, 2 threads) on Debian's
# python3-torch (installed if missing and possible), then bench_train with PyTorch's f32 tok/s
# passed in (G3_TORCH_TRAIN) so it prints the ratios. A PyTorch that cannot be had is reported
# and skipped (bench_train still runs), never failing `make bench`. Usage: train_peers.sh [steps]
set -u
BUILD=${BUILD:-build/rel}
BENCH=$BUILD/bench/bench_train
STEPS=${1:-5}
DTYPES=${G3_TORCH_DTYPES:-f32}  # add bf16 (G3_TORCH_DTYPES=f32,bf16): autocast, slow without AVX512-BF16
THREADS=${OMP_NUM_THREADS:-2}
[ -x "$BENCH" ] || { echo "train_peers: $BENCH not built (make bench builds it)"; exit 0; }
PY=/usr/bin/python3  # Debian's python, which python3-torch installs into (not a pyenv one on PATH)

if ! "$PY" -c 'import torch' 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "train_peers: installing python3-torch (Debian) ..."
    timeout 900 apt-get install -y python3-torch libopenblas0-openmp >/dev/null 2>&1 ||
      echo "train_peers: could not install python3-torch (offline?)"
  fi
fi
torch_a="" torch_b=""
if "$PY" -c 'import torch' 2>/dev/null; then
  out=$(OMP_NUM_THREADS=$THREADS "$PY" bench/train_torch.py "$STEPS" "$THREADS" "$DTYPES" | tee /dev/stderr)
  torch_a=$(echo "$out" | grep '^TORCH shape=a dtype=f32 ' | sed 's/.*tok_s=\([0-9.]*\).*/\1/')
  torch_b=$(echo "$out" | grep '^TORCH shape=b dtype=f32 ' | sed 's/.*tok_s=\([0-9.]*\).*/\1/')
else
  echo "train_peers: no PyTorch; bench_train runs alone"
fi
OMP_NUM_THREADS=$THREADS G3_TORCH_TRAIN="${torch_a:-0} ${torch_b:-0}" "$BENCH" "$STEPS"
