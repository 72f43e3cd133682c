#!/usr/bin/env bash
# train_ours.sh: `gemma3 train --device cuda` on the GemmaZero shape (bench/gpu/gemmazero.json:
# hidden 768, MLP 3072, 6 layers, 6/2 heads of 128, vocab 50,257; window = T so every layer is
# causal, as in train_peer.py), B 16 x T 1024, random tokens, bf16 products; the progress
# lines give tokens/s and MFU per step (the median of the steps after the first few is what
# docs/gpu-notes.md reports). Also f32, and a 1B-shape step with activation checkpointing.
# Needs a CUDA build (./gemma3) and a GPU. Usage: train_ours.sh [steps] [B] [T]
set -u
STEPS=${1:-20}; B=${2:-16}; T=${3:-1024}
python3 - <<PY
import struct, random
random.seed(1)
for path, vocab, n in (('/tmp/gz-tok.bin', 50257, 4_000_000), ('/tmp/1b-tok.bin', 262144, 1_000_000)):
    ids = [random.randrange(3, vocab) for _ in range(n)]
    with open(path, 'wb') as f:
        f.write(b'G3TOKENS' + struct.pack('<IIiiQII', 1, vocab, 2, 1, n, 0, 64) + bytes(24))
        f.write(struct.pack('<%dI' % n, *ids))
PY
med() { grep -o '[0-9]* tok/s' | awk '{print $1}' | tail -n +4 | sort -n | awk '{a[NR]=$1} END {print "median " a[int((NR+1)/2)] " tok/s over " NR " steps (min " a[1] ", max " a[NR] ")"}'; }
for mm in ${MODES:-bf16 f32}; do
    rm -rf /tmp/gz-run
    ./gemma3 train --init bench/gpu/gemmazero.json --data /tmp/gz-tok.bin --out /tmp/gz-run --steps $STEPS --batch $B --seq $T \
        --matmul $mm --warmup 5 --eval-every 0 --eval-batches 1 --save-every 0 --log-every 1 --device cuda 2>&1 | tee /tmp/gz-$mm.log | tail -3
    echo "OURS gemmazero $mm B=$B T=$T: $(med </tmp/gz-$mm.log); $(grep -o 'MFU [0-9.]*%' /tmp/gz-$mm.log | tail -1)"
done
# a 1B-shape step (fine-tuning): activation checkpointing, B 4 x T 1024, bf16 products
( while sleep 0.2; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; done ) >/tmp/mem1b.log 2>/dev/null &
MP=$!
rm -rf /tmp/1b-run
timeout ${T1B:-150} ./gemma3 train --init 1b --data /tmp/1b-tok.bin --out /tmp/1b-run --steps ${STEPS_1B:-6} --batch 4 --seq 1024 --matmul bf16 \
    --checkpoint-activations --warmup 2 --eval-every 0 --eval-batches 1 --save-every 0 --log-every 1 --device cuda 2>&1 >/dev/null | tee /tmp/1b.log | grep -E "memory|train: on" | head -3
kill $MP
echo "OURS 1b ckpt bf16 B=4 T=1024: $(grep -o '[0-9]* tok/s' /tmp/1b.log | tail -n +3 | awk '{print $1}' | sort -n | awk '{a[NR]=$1} END {print "median " a[int((NR+1)/2)] " tok/s over " NR " steps"}'); $(grep -o 'MFU [0-9.]*%' /tmp/1b.log | tail -1); peak GPU memory (nvidia-smi, whole card) $(sort -n /tmp/mem1b.log | tail -1) MiB"
