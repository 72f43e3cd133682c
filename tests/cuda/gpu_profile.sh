#!/usr/bin/env bash
# gpu_profile.sh: where the GPU time goes, per kernel (nsys's CUDA kernel summary, graph nodes
# traced one by one): a `train --device cuda` run on the GemmaZero shape (B16 x T1024, bf16
# products, 6 steps) and a 1B batch-1 decode (`generate`, 128 new tokens). Then one
# `capacity` cell on the GPU, timed (issue 20's grid is sized from it). Needs ./gemma3 built
# with CUDA. Reports go to $OUT (or /tmp/gpu_out); the top kernels are printed.
set -u
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
NSYS=$(command -v nsys || ls /usr/local/cuda*/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
top() {  # $1: report base name; prints the 25 kernels with the most total time
    "$NSYS" stats --report cuda_gpu_kern_sum --format csv --output "$O/$1" "/tmp/$1.nsys-rep" >/dev/null 2>&1
    f=$(ls "$O/$1"*kern_sum*.csv 2>/dev/null | head -1)
    [ -n "$f" ] && python3 - "$f" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tot = sum(float(r['Total Time (ns)']) for r in rows)
print(f"# total GPU kernel time {tot/1e6:.1f} ms over {sum(int(r['Instances']) for r in rows)} launches")
for r in rows[:25]:
    print(f"# {float(r['Time (%)']):5.1f}% {float(r['Total Time (ns)'])/1e6:8.2f} ms {int(r['Instances']):6d}x avg {float(r['Avg (ns)'])/1e3:8.1f} us  {r['Name'][:110]}")
PY
}
if [ -z "$NSYS" ]; then echo "== no nsys on this machine"; else
    echo "== nsys: $NSYS"
    python3 - <<'PY'
import struct, random
random.seed(1)
n = 600_000
with open('/tmp/gz-tok.bin', 'wb') as f:
    f.write(b'G3TOKENS' + struct.pack('<IIiiQII', 1, 50257, 2, 1, n, 0, 64) + bytes(24))
    f.write(struct.pack('<%dI' % n, *[random.randrange(3, 50257) for _ in range(n)]))
PY
    rm -rf /tmp/gz-prof
    "$NSYS" profile -t cuda,nvtx --cuda-graph-trace=node -f true -o /tmp/train_prof ./gemma3 train --init bench/gpu/gemmazero.json \
        --data /tmp/gz-tok.bin --out /tmp/gz-prof --steps 6 --batch 16 --seq 1024 --matmul bf16 --warmup 2 --eval-every 0 \
        --eval-batches 1 --save-every 0 --log-every 1 --device cuda >"$O/train_prof.log" 2>&1
    echo "== train GemmaZero B16xT1024 bf16, 6 steps: $(grep -o '[0-9]* tok/s' "$O/train_prof.log" | tail -1)"
    top train_prof
    M=/tmp/g3-1b; [ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null 2>&1
    P=$(python3 -c "import random; random.seed(1); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(31)]))")
    "$NSYS" profile -t cuda --cuda-graph-trace=node -f true -o /tmp/decode_prof ./gemma3 generate --model $M --ids $P \
        --max-tokens 128 --temperature 0 --device cuda >/dev/null 2>"$O/decode_prof.log"
    echo "== 1B decode, 128 tokens: $(tail -1 "$O/decode_prof.log")"
    top decode_prof
fi
for dev in cuda; do
    rm -rf /tmp/cap-$dev; T0=$(date +%s.%N)
    timeout 90 ./gemma3 capacity --layers 2 --width 64 --sequences 2000 --max-steps 3000 --device $dev --out /tmp/cap-$dev >"$O/capacity_$dev.log" 2>&1
    echo "== capacity L2 D64 N2000 on $dev: rc $? in $(python3 -c "print(round($(date +%s.%N)-$T0,1))") s; $(tail -2 "$O/capacity_$dev.log" | tr '\n' ' ')"
done
