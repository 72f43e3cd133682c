#!/usr/bin/env bash
# Times `gemma3 analyze` (forward pass with hooks, induction run, every metric, logit lens at
# every position, JSON + HTML) on the tiny Gemma 3 fixture's 40-token prompt, then renders the
# HTML report in headless Chromium (scripts/render_report.sh) so the page can be looked at.
# Figures: docs/analyze.md.
set -e
BIN=${BIN:-./gemma3}
BUILD=${BUILD:-build/rel}
out="$BUILD/bench/analyze"
mkdir -p "$out"
fx=tests/fixtures/gemma3-tiny-f32
ids=$(python3 - "$fx/expected.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
t = json.loads(b[8:8 + n])['input_ids']
s, e = t['data_offsets']
print(','.join(map(str, struct.unpack('<%dq' % ((e - s) // 8), b[8 + n + s:8 + n + e]))))
PY
)
times=()
for i in 1 2 3 4 5; do
  t0=$EPOCHREALTIME
  "$BIN" analyze --model "$fx" --ids "$ids" --exact --quiet --json "$out/analysis.json" --html "$out/report.html" 2>/dev/null
  times+=("$(awk "BEGIN{printf \"%.3f\", $EPOCHREALTIME-$t0}")")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "analyze gemma3-tiny-f32 T=40 (+ induction T=65), exact, JSON + HTML: median $(echo $sorted | cut -d' ' -f3) s over 5 runs (all: $sorted)"
echo "  report $(stat -c %s "$out/report.html") bytes, analysis.json $(stat -c %s "$out/analysis.json") bytes"
if scripts/render_report.sh "$out/report.html" "$out/report.png" 1400,2600 >/dev/null 2>&1; then
  echo "  screenshot: $out/report.png"
else
  echo "  (no chromium: report not rendered)"
fi
