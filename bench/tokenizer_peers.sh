#!/usr/bin/env bash
# tokenizer_peers.sh: gemma3.c's tokenizer against Hugging Face `tokenizers` (its Rust core, via
# the npm package's Node binding) and Debian's SentencePiece (python3-sentencepiece), on the same
# 5 MB of TinyStories and the same 100 KB unbroken input. Installs a missing peer if it can; a
# peer that cannot be had is reported and skipped, never failing `make bench`. Also checks that
# HF's ids for the 5 MB equal ours.
set -u
BUILD=${BUILD:-build/rel}
W=$BUILD/tokpeers
mkdir -p "$W"
TS=${G3_TINYSTORIES:-../shared/data/tinystories}
BENCH=$BUILD/bench/bench_tokenizer
[ -x "$BENCH" ] || { echo "tokenizer_peers: $BENCH not built (make bench builds it)"; exit 0; }

# The texts: TinyStories train+valid alternated up to 5,000,000 bytes (as bench_tokenizer makes
# it), and its first 100,000 non-space, non-newline bytes as one long word.
python3 - "$TS" "$W" <<'EOF' || { echo "tokenizer_peers: no TinyStories at $TS"; exit 0; }
import sys
ts, w = sys.argv[1], sys.argv[2]
a, b = open(ts + "/train.txt", "rb").read(), open(ts + "/valid.txt", "rb").read()
out, i = b"", 0
while len(out) < 5000000:
    out += (b if i % 2 else a)[: 5000000 - len(out)]
    i += 1
open(w + "/text.txt", "wb").write(out)
open(w + "/long.txt", "wb").write(bytes(c for c in out if c not in b" \n")[:100000])
EOF

# ours (this also unpacks tokenizer.json into $BUILD/tokdata)
ours=$(BUILD=$BUILD "$BENCH" "$W/text.txt" "$W/long.txt" | tee /dev/stderr | grep '^RESULT') || { echo "tokenizer_peers: bench_tokenizer failed"; exit 0; }
val() { echo "$ours" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }
JSON=$BUILD/tokdata/tokenizer.json
MODEL=tests/data/tokenizer/tokenizer.model

# --- Hugging Face tokenizers (npm) ---
hf=""
if ! [ -d "$W/node/node_modules/tokenizers" ]; then
  if command -v npm >/dev/null; then
    (cd "$W" && mkdir -p node && cd node && timeout 300 npm install --no-audit --no-fund --silent tokenizers >/dev/null 2>&1) ||
      echo "tokenizer_peers: could not install npm 'tokenizers' (offline?); skipping HF"
  else echo "tokenizer_peers: no npm; skipping HF"; fi
fi
if [ -d "$W/node/node_modules/tokenizers" ]; then
  cat > "$W/node/hf.js" <<'EOF'
const { Tokenizer } = require('tokenizers');
const fs = require('fs');
const [json, textf, longf, idsf] = process.argv.slice(2);
(async () => {
  let t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(json);
  const load = Number(process.hrtime.bigint() - t0) / 1e9;
  const text = fs.readFileSync(textf, 'utf8'), long = fs.readFileSync(longf, 'utf8');
  const mb = Buffer.byteLength(text) / 1e6;
  let best = 1e9, ids;
  for (let r = 0; r < 2; r++) {
    t0 = process.hrtime.bigint();
    const e = await tok.encode(text, null, { addSpecialTokens: true });
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    ids = e.getIds();
  }
  fs.writeFileSync(idsf, ids.join(',') + '\n');
  // batch of lines (HF parallelises batches over RAYON_NUM_THREADS)
  const lines = text.split('\n');
  t0 = process.hrtime.bigint();
  await tok.encodeBatch(lines, { addSpecialTokens: false });
  const batch = Number(process.hrtime.bigint() - t0) / 1e9;
  t0 = process.hrtime.bigint();
  await tok.encode(long, null, { addSpecialTokens: false });
  const tl = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`RESULT load=${load.toFixed(3)} enc=${(mb / best).toFixed(2)} batch=${(mb / batch).toFixed(2)} long=${(Buffer.byteLength(long) / 1e6 / tl).toFixed(2)}`);
})();
EOF
  hf1=$(cd "$W/node" && RAYON_NUM_THREADS=1 timeout 600 node hf.js "$OLDPWD/$JSON" "$OLDPWD/$W/text.txt" "$OLDPWD/$W/long.txt" "$OLDPWD/$W/hf_ids.txt" 2>&1 | grep '^RESULT')
  hf2=$(cd "$W/node" && RAYON_NUM_THREADS=2 timeout 600 node hf.js "$OLDPWD/$JSON" "$OLDPWD/$W/text.txt" "$OLDPWD/$W/long.txt" /dev/null 2>&1 | grep '^RESULT')
  [ -n "$hf1" ] && hf=1 || echo "tokenizer_peers: HF run failed"
fi

# --- SentencePiece (Debian python3-sentencepiece, so Debian's own python3) ---
sp=""
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
if ! $PY -c 'import sentencepiece' 2>/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  ($SUDO apt-get install -y -qq python3-sentencepiece >/dev/null 2>&1) ||
    echo "tokenizer_peers: could not install python3-sentencepiece (needs apt and root); skipping SentencePiece"
fi
if $PY -c 'import sentencepiece' 2>/dev/null; then
  spr=$(timeout 900 $PY - "$MODEL" "$W/text.txt" "$W/long.txt" <<'EOF'
import sys, time, sentencepiece as spm
t0 = time.time(); sp = spm.SentencePieceProcessor(model_file=sys.argv[1]); load = time.time() - t0
text = open(sys.argv[2], encoding='utf-8').read(); long = open(sys.argv[3], encoding='utf-8').read()
mb = len(text.encode()) / 1e6
t0 = time.time(); sp.encode(text); enc = mb / (time.time() - t0)
lines = text.split('\n'); r = {}
for th in (1, 2):
    t0 = time.time(); sp.encode(lines, num_threads=th); r[th] = mb / (time.time() - t0)
t0 = time.time(); sp.encode(long); lg = len(long.encode()) / 1e6 / (time.time() - t0)
print(f"RESULT load={load:.3f} enc={enc:.2f} batch1={r[1]:.2f} batch2={r[2]:.2f} long={lg:.2f}")
EOF
)
  [ -n "$spr" ] && sp=1 || echo "tokenizer_peers: SentencePiece run failed"
fi

g() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.1fx", a / b; else print "-" }'; }
echo
echo "tokenizer: MB/s on 5 MB of TinyStories (higher is better); load in seconds"
printf '%-28s %10s %10s %10s %12s\n' "" "1 thread" "2 threads" "long 100KB" "load"
printf '%-28s %10s %10s %10s %12s\n' "gemma3.c" "$(val enc1)" "$(val enc2)" "$(val long_nospace)" "$(val load_json) json, $(val load_cache) cached"
if [ -n "$hf" ]; then
  printf '%-28s %10s %10s %10s %12s\n' "HF tokenizers (one string)" "$(g "$hf1" enc)" "$(g "$hf2" enc)" "$(g "$hf1" long)" "$(g "$hf1" load)"
  printf '%-28s %10s %10s %10s\n' "HF tokenizers (line batch)" "$(g "$hf1" batch)" "$(g "$hf2" batch)" ""
  echo "  gemma3.c vs HF: $(ratio "$(val enc1)" "$(g "$hf1" enc)") (1 thread), $(ratio "$(val enc2)" "$(g "$hf2" batch)") (2 threads vs HF batch), $(ratio "$(val long_nospace)" "$(g "$hf1" long)") (long input)"
fi
if [ -n "$sp" ]; then
  printf '%-28s %10s %10s %10s %12s\n' "SentencePiece (one string)" "$(g "$spr" enc)" "" "$(g "$spr" long)" "$(g "$spr" load)"
  printf '%-28s %10s %10s %10s\n' "SentencePiece (line batch)" "$(g "$spr" batch1)" "$(g "$spr" batch2)" ""
  echo "  gemma3.c vs SentencePiece: $(ratio "$(val enc1)" "$(g "$spr" enc)") (1 thread), $(ratio "$(val enc2)" "$(g "$spr" batch2)") (2 threads), $(ratio "$(val long_nospace)" "$(g "$spr" long)") (long input)"
fi
# Same ids as HF on all 5 MB?
if [ -n "$hf" ] && [ -n "${BIN:-}" ] && [ -x "$BIN" ]; then
  "$BIN" tokenize --tokenizer "$JSON" --file "$W/text.txt" > "$W/our_ids.txt" 2>/dev/null
  if cmp -s "$W/our_ids.txt" "$W/hf_ids.txt"; then echo "ids: identical to HF on all 5 MB ($(tr ',' '\n' < "$W/hf_ids.txt" | wc -l) tokens)"
  else echo "ids: DIFFER from HF on the 5 MB text (see $W/our_ids.txt, $W/hf_ids.txt)"; fi
fi
exit 0
