# default_model_lib.sh: the pieces that scripts/train_default_model.sh (CPU or GPU, the shipped
# recipe) and scripts/gpu_data_pack.sh + scripts/gpu_default_model.sh (the one-call GPU recipe)
# share, sourced by them, so that the held-out books and the model folder are the same in both.
# Needs BOOKS, WORK and TOKENIZER set; run from the repository root.

# Gemma 3's tokenizer.json: $TOKENIZER, else the test copy unpacked into $WORK.
dm_tokenizer() {
  if [ ! -f "$TOKENIZER" ]; then
    TOKENIZER=$WORK/gemma3-tokenizer.json
    [ -f "$TOKENIZER" ] || gzip -dc tests/data/tokenizer/tokenizer.json.gz > "$TOKENIZER"
  fi
}

# The split: the shards unpacked and cut into books (a `<|endoftext|>` line ends each); book i
# with i % 50 == 25 is held out (12 books, listed in models/default/README.md). Writes
# $WORK/train.txt, $WORK/heldout.txt and $WORK/trim_sample.txt (every 10th training paragraph,
# what `tokenizer trim` counts pieces on).
dm_split() {
  [ -f "$WORK/heldout.txt" ] && return 0
  for f in "$BOOKS"/books-0*.txt.xz; do xz -dc "$f"; done > "$WORK/all.txt"
  awk -v tr="$WORK/train.txt" -v ho="$WORK/heldout.txt" '
    { out = (b % 50 == 25) ? ho : tr; print > out; if ($0 == "<|endoftext|>") b++ }' "$WORK/all.txt"
  awk 'NR % 10 == 0' "$WORK/train.txt" > "$WORK/trim_sample.txt"
  rm "$WORK/all.txt"
}

# The model folder DEST from a training run RUN and a trimmed tokenizer TOKDIR: config,
# weights, metrics, tokenizer and the sampling defaults the README's story uses.
dm_folder() {  # RUN TOKDIR DEST
  mkdir -p "$3"
  cp "$1/config.json" "$1/model.safetensors" "$1/metrics.jsonl" "$3/"
  cp "$2/tokenizer.json" "$2/tokenizer_config.json" "$3/"
  cat > "$3/generation_config.json" <<JSON
{
  "bos_token_id": 2,
  "eos_token_id": 1,
  "pad_token_id": 0,
  "do_sample": true,
  "temperature": 0.8,
  "top_k": 40,
  "top_p": 0.95
}
JSON
}
