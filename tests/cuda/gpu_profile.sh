#!/usr/bin/env bash
# gpu_profile.sh: where the GPU time goes, per kernel: nsys's CUDA kernel summary (graph nodes
# traced one by one), or without nsys, ncu's gpu__time_duration of every kernel summed by name.
# Runs `train --device cuda` on the GemmaZero shape (B16 x T1024, bf16 products) and a 1B
# prefill + batch-1 decode (`generate`). Needs ./gemma3 built with CUDA. Reports go to $OUT
# (or /tmp/gpu_out); the top kernels are printed.
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
NCU=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
# ncu: every kernel's GPU time (serialized, one metric), summed by name; $1 report name, rest: command
ncu_top() {
    local name=$1; shift
    timeout ${NCU_TIMEOUT:-150} "$NCU" --csv --metrics gpu__time_duration.sum --launch-count ${NCU_COUNT:-3000} "$@" >"$O/$name.csv" 2>"$O/$name.err"
    python3 - "$O/$name.csv" <<'PY'
import csv, sys, collections
lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = list(csv.DictReader(lines))
scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "second": 1e6}
tot, cnt = collections.Counter(), collections.Counter()
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum": continue
    v = float(r["Metric Value"].replace(",", "")) * scale.get(r["Metric Unit"], 1.0)
    tot[r["Kernel Name"][:100]] += v; cnt[r["Kernel Name"][:100]] += 1
T = sum(tot.values())
print(f"# {sum(cnt.values())} kernels, {T/1e3:.2f} ms of GPU time in all")
for k, v in tot.most_common(30):
    print(f"# {100*v/T:5.1f}% {v/1e3:8.2f} ms {cnt[k]:6d}x avg {v/cnt[k]:8.1f} us  {k}")
PY
}
if [ -z "$NSYS" ] && [ -z "$NCU" ]; then echo "== neither nsys nor ncu here"; else
    [ -n "$NSYS" ] && TSTEPS=6 DTOK=128 || TSTEPS=3 DTOK=4
    python3 - <<'PY'
import struct, random
random.seed(1)
n = 600_000
with open('/tmp/gz-tok.bin', 'wb') as f:
    f.write(b'G3TOKENS' + struct.pack('<IIiiQII', 1, 50257, 2, 1, n, 0, 64) + bytes(24))
    f.write(struct.pack('<%dI' % n, *[random.randrange(3, 50257) for _ in range(n)]))
PY
    rm -rf /tmp/gz-prof
    prof() { local n=$1; shift; if [ -n "$NSYS" ]; then "$NSYS" profile -t cuda --cuda-graph-trace=node -f true -o /tmp/$n "$@"; top $n; else ncu_top $n "$@"; fi; }
    echo "== profiler: ${NSYS:-$NCU}"
    prof train_prof ./gemma3 train --init bench/gpu/gemmazero.json \
        --data /tmp/gz-tok.bin --out /tmp/gz-prof --steps $TSTEPS --batch 16 --seq 1024 --matmul bf16 --warmup 2 --eval-every 0 \
        --eval-batches 1 --save-every 0 --log-every 1 --device cuda
    echo "== train GemmaZero B16xT1024 bf16, $TSTEPS steps (above: the kernels' GPU time)"
    M=/tmp/g3-1b; [ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null 2>&1
    P=$(python3 -c "import random; random.seed(1); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(31)]))")
    prof decode_prof ./gemma3 generate --model $M --ids $P --max-tokens $DTOK --temperature 0 --device cuda
    echo "== 1B prefill of 32 + decode of $DTOK tokens (above: the kernels' GPU time)"
fi
