#!/usr/bin/env bash
# device_tree.sh: make room in the working tree for a GPU-machine call that carries data.
# What travels to the GPU machine is the working tree (tracked and untracked, not ignored files)
# plus the `carry` paths, 64 MiB in all; a file missing from the working tree does not travel.
# The default model's weights, the tokenizer test data and the fixtures no GPU training call reads
# take ~44 MiB of it, so a call that carries .gpudata (~44 MiB) runs with them moved out:
#
#   scripts/device_tree.sh slim      move them to $HOLD (default /tmp/g3-device-hold)
#   (the device call)
#   scripts/device_tree.sh restore   move them back (git status must then be clean of deletions)
#   scripts/device_tree.sh size      the MiB that would travel now, without the carry
#   scripts/device_tree.sh slimsize  the same once slim
#   scripts/device_tree.sh model     .devmodel/model.safetensors.xz (ignored: carry it) for a slim
#                                    call that needs the default model: bf16 weights compress to
#                                    ~70% (48.6 MB -> 34.3 MB, ~1.5 minutes here); on the device:
#     python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.devmodel/model.safetensors.xz'), open('models/default/model.safetensors','wb'), 1<<24)"
# KEEP="path ..." leaves those of the moved paths in place (test_cuda_model reads the fixtures
# gemma3-tiny-bf16 and gemma3-tiny-multimodal-layout too).
#
# Kept: the fixtures test_cuda_train reads (gemma3-tiny-f32, gemma2-tiny-f32). Never commit
# with `git commit -a` while slim: the moved files would be recorded as deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
HOLD=${HOLD:-/tmp/g3-device-hold}
MOVE=(models/default/model.safetensors tests/data/tokenizer tests/fixtures/gemma3-tiny-bf16 tests/fixtures/gemma3-tiny-f32-lora
      tests/fixtures/gemma3-tiny-multimodal-layout tests/fixtures/gemma3-tiny-vision tests/fixtures/gemma3-tiny-vision-hooks)
size() {  # [slim]: as it would be once slim
  local skip='^$'
  [ "${1:-}" = slim ] && skip="^($(IFS='|'; echo "${MOVE[*]}"))(/|$)"
  { git ls-files; git ls-files --others --exclude-standard; } | grep -Ev "$skip" | while IFS= read -r f; do [ -f "$f" ] && printf '%s\0' "$f"; done |
    xargs -0 -r du -cb | awk '$2 == "total" { s += $1 } END { printf "%.1f MiB travel (without carry)\n", s / 1048576 }'
}
case ${1:-} in
  slim)
    for p in "${MOVE[@]}"; do
      [ -e "$p" ] || continue
      case " ${KEEP:-} " in *" $p "*) continue;; esac
      [ -e "$HOLD/$p" ] && { echo "device_tree: $HOLD/$p already exists: restore first" >&2; exit 1; }
      mkdir -p "$HOLD/$(dirname "$p")" && mv "$p" "$HOLD/$p"
    done
    size;;
  restore)
    for p in "${MOVE[@]}"; do
      [ -e "$HOLD/$p" ] || continue
      [ -e "$p" ] && { echo "device_tree: $p is back already; $HOLD/$p left as it is" >&2; continue; }
      mkdir -p "$(dirname "$p")" && mv "$HOLD/$p" "$p"
    done
    git status --short | grep '^ D' && { echo "device_tree: files still missing (above)" >&2; exit 1; }
    size;;
  size) size;;
  slimsize) size slim;;
  model)
    M=models/default/model.safetensors
    [ -f "$M" ] || M=$HOLD/$M  # slim already: the held copy
    [ -f "$M" ] || { echo "device_tree: models/default/model.safetensors is neither here nor in $HOLD" >&2; exit 1; }
    mkdir -p .devmodel
    [ .devmodel/model.safetensors.xz -nt "$M" ] || xz -T2 -6 -c "$M" > .devmodel/model.safetensors.xz.tmp
    [ -f .devmodel/model.safetensors.xz.tmp ] && mv .devmodel/model.safetensors.xz.tmp .devmodel/model.safetensors.xz
    du -h .devmodel/model.safetensors.xz;;
  *) sed -n 2,21p "$0"; exit 2;;
esac
