#!/usr/bin/env bash
# train_peers.sh: bench_train beside PyTorch in the same run: bench/train_torch.py (the same
# Gemma 3 step for the issue's two shapes, f32 and bf16 autocast, AdamW, 2 threads) on Debian's
# python3-torch (installed if missing and possible), then bench_train: f32 against f32, bf16
# autocast against gemma3.c's bf16 products (bench_train mode 3).
#
# The machine is shared, and its speed drifts over minutes, so the two are interleaved: each
# round runs PyTorch and then gemma3.c on shape (a), in each precision, then both on (b), and
# the ratio is taken within the round; the summary is the median of the rounds' ratios. A last bench_train run
# prints every mode (checkpointing, 8-bit AdamW) with memory, its ratios against PyTorch's
# median (G3_TORCH_TRAIN). A PyTorch that cannot be had is reported and skipped (bench_train
# still runs), never failing `make bench`.
# PyTorch runs at its best: malloc tuned, and OpenBLAS's AVX-512 kernels where the CPU has them.
# Usage: train_peers.sh [steps [rounds]]   (defaults 5 and 3; G3_TORCH_DTYPES=f32 or f32,bf16;
#        G3_TORCH_CORETYPE=NAME sets OpenBLAS's kernels, empty for its own choice)
set -u
BUILD=${BUILD:-build/rel}
BENCH=$BUILD/bench/bench_train
STEPS=${1:-5}
ROUNDS=${2:-3}
# bf16 autocast against gemma3.c's bf16 products where the CPU has AVX512-BF16 (without it
# both emulate bf16 slowly, and the comparison says little); G3_TORCH_DTYPES overrides.
if [ -z "${G3_TORCH_DTYPES:-}" ] && grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then DTYPES=f32,bf16; else DTYPES=${G3_TORCH_DTYPES:-f32}; fi
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
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "train_peers: no PyTorch; bench_train runs alone"
  OMP_NUM_THREADS=$THREADS "$BENCH" "$STEPS"
  exit 0
fi

# PyTorch at its best: glibc's malloc hands its large activation buffers back to the kernel
# after every step and page-faults them in again on the next; keeping them (no mmap'd chunks,
# no trimming) made PyTorch 10-20% faster here on both shapes.
TORCH_ENV="MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824"
# And its AVX-512 kernels where the CPU has them: Debian's OpenBLAS 0.3.21 does not know Zen 5
# and runs its AVX2 (Haswell) kernels there (as it does when OPENBLAS_CORETYPE=Haswell comes
# from the environment, as it did here); SkylakeX's made PyTorch 1.4-1.6x faster on Zen 5.
# G3_TORCH_CORETYPE picks another (empty: OpenBLAS's own choice).
if [ -z "${G3_TORCH_CORETYPE+set}" ] && grep -qw avx512f /proc/cpuinfo 2>/dev/null; then G3_TORCH_CORETYPE=SkylakeX; fi
if [ -n "${G3_TORCH_CORETYPE:-}" ]; then TORCH_ENV="$TORCH_ENV OPENBLAS_CORETYPE=$G3_TORCH_CORETYPE"; fi
echo "train_peers: PyTorch runs with $TORCH_ENV"
median() { sort -g | awk '{v[NR] = $1} END {if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}'; }
declare -A TORCH OURS RATIO
IFS=, read -r -a DTL <<< "$DTYPES"
for r in $(seq 1 "$ROUNDS"); do
  for s in a b; do
    for d in "${DTL[@]}"; do
      # f32 against gemma3.c's f32 (mode 0), bf16 autocast against its bf16 products (mode 3)
      if [ "$d" = bf16 ]; then mode=3 what="bf16 products, AdamW"; else mode=0 what="all activations, AdamW"; fi
      t=$(env $TORCH_ENV OMP_NUM_THREADS=$THREADS "$PY" bench/train_torch.py "$STEPS" "$THREADS" "$d" "$s" |
          sed -n "s/^TORCH shape=$s dtype=$d .*tok_s=\([0-9.]*\).*/\1/p")
      g=$(OMP_NUM_THREADS=$THREADS "$BENCH" "$STEPS" "$s" "$mode" 2>/dev/null | sed -n "s/^ *$what *\([0-9.]*\) tok\/s.*/\1/p")
      [ -n "$t" ] && [ -n "$g" ] || { echo "train_peers: round $r shape $s $d: no figure (PyTorch '$t', gemma3.c '$g')"; continue; }
      ratio=$(awk -v g="$g" -v t="$t" 'BEGIN {printf "%.2f", g / t}')
      printf 'round %d (%s): PyTorch %-4s %7.1f tok/s, gemma3.c %-4s %7.1f tok/s: x%s\n' "$r" "$s" "$d" "$t" "$d" "$g" "$ratio"
      k=$s.$d
      TORCH[$k]="${TORCH[$k]:-} $t"; OURS[$k]="${OURS[$k]:-} $g"; RATIO[$k]="${RATIO[$k]:-} $ratio"
    done
  done
done
for s in a b; do
  for d in "${DTL[@]}"; do
    k=$s.$d
    [ -n "${RATIO[$k]:-}" ] || continue
    printf 'shape (%s) %s, %d rounds: PyTorch median %s tok/s, gemma3.c median %s tok/s; ratio median x%s (rounds:%s)\n' "$s" "$d" \
      "$ROUNDS" "$(echo ${TORCH[$k]} | tr ' ' '\n' | median)" "$(echo ${OURS[$k]} | tr ' ' '\n' | median)" \
      "$(echo ${RATIO[$k]} | tr ' ' '\n' | median)" "${RATIO[$k]}"
  done
done
ta=$(echo ${TORCH[a.f32]:-0} | tr ' ' '\n' | median) tb=$(echo ${TORCH[b.f32]:-0} | tr ' ' '\n' | median)
ba=$(echo ${TORCH[a.bf16]:-0} | tr ' ' '\n' | median) bb=$(echo ${TORCH[b.bf16]:-0} | tr ' ' '\n' | median)
OMP_NUM_THREADS=$THREADS G3_TORCH_TRAIN="$ta $tb" G3_TORCH_TRAIN_BF16="$ba $bb" "$BENCH" "$STEPS"
