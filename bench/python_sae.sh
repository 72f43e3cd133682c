#!/usr/bin/env bash
# The Python package's overhead and SAE encoding speed (issue 24; figures in docs/python.md
# and docs/sae.md):
#  1. run_with_cache from Python (gemma3c over libgemma3.so) against `gemma3 trace` from the
#     shell, on a random-weight Gemma 3 1B (made once with `gemma3 init --shape 1b`, 2 GB, in
#     $G3_BENCH_1B, default /tmp/gemma3-1b-random), 64 tokens, every layer's hook_resid_post.
#     The shell figure includes starting the process and mapping the model; Python's is shown
#     both ways (model already loaded, and with the load).
#  2. SAE encoding (x W_enc + b_enc, JumpReLU) of 1152-wide rows (the 1B's hidden size) with a
#     16384-wide SAE, random weights (thresholds 2.5: about 100 of 16384 features active, a
#     Gemma Scope L0): tokens per second, and decoding of the sparse features.
# Medians of 5 runs; the machine's other load shows in them.
set -e
BIN=${BIN:-./gemma3}
BUILD=${BUILD:-build/rel}
PY=/usr/bin/python3; [ -x $PY ] || PY=python3
$PY -c 'import numpy' 2>/dev/null || { echo "python_sae: skipped (no numpy for $PY)"; exit 0; }
M=${G3_BENCH_1B:-/tmp/gemma3-1b-random}
if [ ! -f "$M/config.json" ]; then
  echo "python_sae: writing a random Gemma 3 1B to $M (2 GB, once)"
  "$BIN" init --shape 1b --out "$M" >/dev/null
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ids=$($PY -c 'import random; random.seed(1); print(",".join(["2"] + [str(random.randrange(3, 262144)) for _ in range(63)]))')
times=()
for i in 1 2 3 4 5; do
  t0=$EPOCHREALTIME
  "$BIN" trace --model "$M" --ids "$ids" --hooks 'blocks.*.hook_resid_post' --exact --out "$out/t.npz" 2>/dev/null
  times+=("$(awk "BEGIN{printf \"%.3f\", $EPOCHREALTIME-$t0}")")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "gemma3 trace, 1B random, T=64, 26 x hook_resid_post, exact (process + load + pass + .npz): median $(echo $sorted | cut -d' ' -f3) s (all: $sorted)"
GEMMA3_LIB=${GEMMA3_LIB:-$PWD/$BUILD/libgemma3.so} PYTHONPATH=python $PY - "$M" "$ids" "$out" <<'PY'
import sys, time
import numpy as np
import gemma3c

path, ids, out = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], sys.argv[3]
names = ["blocks.*.hook_resid_post"]
t0 = time.perf_counter(); m = gemma3c.Model(path, exact=True); load = time.perf_counter() - t0
run = []
for _ in range(5):
    t0 = time.perf_counter(); logits, cache = m.run_with_cache(ids, names=names); run.append(time.perf_counter() - t0)
    del logits, cache
run.sort()
fwd = []
for _ in range(5):
    t0 = time.perf_counter(); m.forward(ids); fwd.append(time.perf_counter() - t0)
fwd.sort()
print(f"python run_with_cache, same: median {run[2]:.3f} s (all: {' '.join(f'{x:.3f}' for x in run)}); model load {load:.3f} s; "
      f"forward alone {fwd[2]:.3f} s; so {run[2] - fwd[2]:+.3f} s for recording 26 sites")

# SAE: 16384 x 1152 random JumpReLU, Gemma Scope 2 layout
D, S, N = 1152, 16384, 1024
rng = np.random.default_rng(0)
import json, os, struct
d = os.path.join(out, "sae16k")
os.makedirs(d)
t = {"w_enc": (rng.standard_normal((D, S), dtype=np.float32) / np.float32(np.sqrt(D))),
     "b_enc": np.zeros(S, np.float32), "threshold": np.full(S, 2.5, np.float32),
     "w_dec": (rng.standard_normal((S, D), dtype=np.float32) / np.float32(np.sqrt(D))), "b_dec": np.zeros(D, np.float32)}
head, off, blobs = {}, 0, []
for k, a in t.items():
    b = a.tobytes(); head[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}; off += len(b); blobs.append(b)
h = json.dumps(head).encode(); h += b" " * (-len(h) % 8)
with open(os.path.join(d, "params.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
del t, blobs
sae = gemma3c.Sae(d)
x = rng.standard_normal((N, D), dtype=np.float32)
enc, dec = [], []
for _ in range(5):
    t0 = time.perf_counter(); f = sae.encode(x); enc.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); sae.decode(f); dec.append(time.perf_counter() - t0)
enc.sort(); dec.sort()
l0 = float((f != 0).sum(1).mean())
print(f"SAE encode 16384 x 1152, {N} rows: median {enc[2]*1e3:.1f} ms = {N/enc[2]:.0f} tokens/s "
      f"({2*N*D*S/enc[2]/1e9:.1f} GFLOP/s); decode (L0 {l0:.0f}) {dec[2]*1e3:.1f} ms = {N/dec[2]:.0f} tokens/s")
PY
