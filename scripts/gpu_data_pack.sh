#!/usr/bin/env bash
# gpu_data_pack.sh: the data that scripts/gpu_default_model.sh trains on, packed to travel to the
# GPU machine (64 MiB for the whole working tree, the repository included): .gpudata/ (ignored by
# git; name it in the device call's `carry`).
#
#   scripts/gpu_data_pack.sh            (~12 minutes on a busy 2-core machine; WORK=build/gpudata holds the unpacked text)
#
# Environment:
#   BOOKS      the corpus folder (books-0*.txt.xz)                 ../shared/data/books
#   TOKENIZER  Gemma 3's full tokenizer.json                         ../shared/tokenizers/gemma3/tokenizer.json
#   VOCAB      trimmed vocabulary                                    8192
#   TEXT_MB    MB of training text to pack (whole books)            400: all 567 (194 MB; the
#              second model had 80, when the call carried the whole tree)
#   CAP_MIB    the largest the tree that travels may be with the pack 62 (the tree counted as
#              `scripts/device_tree.sh slim` leaves it for that call, ~16 MiB)
#   PACK       where the pack goes                                   .gpudata
#
# What it holds:
#   tokenizer/          Gemma 3's tokenizer trimmed to VOCAB pieces, the same trim as
#                       scripts/train_default_model.sh (every 10th paragraph of all 567 training
#                       books): the tokenizer the model ships with
#   train.tok.xz        a gemma3 token file (`gemma3 train --data` reads it; data.h has the format)
#                       of the training books (all of them by default): whole books drawn in a
#                       fixed random order (seed 21) until TEXT_MB of text; each book <bos> text <eos>
#   heldout.txt.xz      the 12 held-out books (every 50th, i % 50 == 25), 3.0 MB of text
#   MANIFEST            vocabulary, books, tokens, sizes
# Why tokens and not text: xz stores these token ids in 1.88-1.91 bits per byte of the text they
# encode (one block / two), the text itself in 2.06. Made on 2026-12-07 18:00 UTC (the third
# default model): 567 books, 194.1 MB of text, 51,667,740 tokens, the pack 43.7 MiB; with the
# slim tree 59.6 MiB. (The second model's pack: 238 books, 80.0 MB, 21,368,233 tokens, 18.8 MB.)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=../shared; [ -d $SHARED/data ] || SHARED=../../shared  # beside the checkout, or beside a worktree's folder
BOOKS=${BOOKS:-$SHARED/data/books}
TOKENIZER=${TOKENIZER:-$SHARED/tokenizers/gemma3/tokenizer.json}
VOCAB=${VOCAB:-8192}
TEXT_MB=${TEXT_MB:-400}  # all the books: 43.7 MiB packed, with the slim tree (~16 MiB) under 62
CAP_MIB=${CAP_MIB:-62}
WORK=${WORK:-build/gpudata}
PACK=${PACK:-.gpudata}
BIN=${BIN:-./gemma3}
[ -x "$BIN" ] || make -j2
mkdir -p "$WORK"
. scripts/default_model_lib.sh
dm_tokenizer

# 1. the split of scripts/train_default_model.sh
dm_split

# 2. the tokenizer
rm -rf "$PACK" && mkdir -p "$PACK"
$BIN tokenizer trim --tokenizer "$TOKENIZER" --data "$WORK/trim_sample.txt" --vocab "$VOCAB" --out "$PACK/tokenizer" --threads 2 \
  | tee "$WORK/trim.log" | tail -2

# 3. the subset of training books
python3 - "$WORK/train.txt" "$WORK/subset.txt" "$TEXT_MB" > "$WORK/subset.log" <<'PY'
import random, sys
src, dst, mb = sys.argv[1], sys.argv[2], float(sys.argv[3])
books, cur = [], []
with open(src, 'rb') as f:
    for line in f:
        cur.append(line)
        if line == b'<|endoftext|>\n':
            books.append(b''.join(cur)); cur = []
order = list(range(len(books)))
random.Random(21).shuffle(order)
take, size = [], 0
for i in order:
    if size >= mb * 1e6: break
    take.append(i); size += len(books[i])
take.sort()  # corpus order (author, title); the trainer samples windows anywhere anyway
with open(dst, 'wb') as f:
    for i in take: f.write(books[i])
print(f"books {len(take)} of {len(books)} training books, {size} bytes of text")
print("training-book indices (0-based, in train.txt order):", ",".join(map(str, take)))
PY
head -1 "$WORK/subset.log"
cat > "$WORK/tiny.json" <<JSON
{"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "vocab_size": $VOCAB, "hidden_size": 32,
 "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 32,
 "query_pre_attn_scalar": 32, "sliding_window": 64, "max_position_embeddings": 512, "rms_norm_eps": 1e-06,
 "rope_theta": 1000000, "rope_local_base_freq": 10000, "layer_types": ["full_attention"],
 "hidden_activation": "gelu_pytorch_tanh", "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0, "tie_word_embeddings": true}
JSON
# the trainer's own tokenization (documents as <bos> text <eos>) into its token file: one
# throwaway step of a 1-layer model
rm -rf "$WORK/tokrun"
$BIN train --init "$WORK/tiny.json" --tokenizer "$PACK/tokenizer/tokenizer.json" --data "$WORK/subset.txt" --val "$WORK/heldout.txt" \
  --out "$WORK/tokrun" --steps 1 --batch 1 --seq 64 --eval-batches 1 --threads 2 --device cpu 2>&1 | grep "^data:" || true
[ -f "$WORK/tokrun/tokens-train.bin" ] || { echo "gpu_data_pack: no token file was written" >&2; exit 1; }
echo "compressing (xz -9 on 2 threads: ~10 minutes on a busy 2-core machine)..."
# lp=2 pb=2 lc=0: the data is 4-byte ids; two blocks of half the file each, for 2 threads
BLOCK=$(( $(stat -c %s "$WORK/tokrun/tokens-train.bin") / 2 + 4096 ))
xz --lzma2=preset=9,lc=0,lp=2,pb=2 -T2 --block-size=$BLOCK -c "$WORK/tokrun/tokens-train.bin" > "$PACK/train.tok.xz"
xz -9 -T1 -c "$WORK/heldout.txt" > "$PACK/heldout.txt.xz"

# 4. the manifest and the size of the tree that travels with it
NTOK=$(python3 -c "import struct,sys; print(struct.unpack_from('<Q', open(sys.argv[1],'rb').read(64), 24)[0])" "$WORK/tokrun/tokens-train.bin")
{
  echo "vocab $VOCAB"
  head -1 "$WORK/subset.log"
  echo "train tokens $NTOK"
  grep -E "bytes/token" "$WORK/trim.log" || true
  ( cd "$PACK" && sha256sum train.tok.xz heldout.txt.xz tokenizer/tokenizer.json )
  sed -n 2p "$WORK/subset.log"
} > "$PACK/MANIFEST"
PACK_B=$(du -cb "$PACK" | tail -1 | cut -f1)
# (the tree as scripts/device_tree.sh slim leaves it: the call that carries the pack is made
# with the default model's weights, the tokenizer test data and most fixtures moved out of the
# working tree, which then do not travel, and put back after)
TREE_B=$(scripts/device_tree.sh slimsize | awk '{ printf "%d", $1 * 1048576 }')
python3 - "$PACK_B" "$TREE_B" "$CAP_MIB" "$NTOK" <<'PY'
import sys
p, t, cap, n = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
mib = 1 << 20
print(f"pack {p / mib:.1f} MiB ({n} training tokens); tree {t / mib:.1f} MiB; together {(p + t) / mib:.1f} MiB of 64")
if (p + t) / mib > cap:
    sys.exit(f"gpu_data_pack: over {cap} MiB: lower TEXT_MB")
PY
echo "before the device call: scripts/device_tree.sh slim  (and restore after: the tree must not travel whole with the pack)"
