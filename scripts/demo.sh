#!/usr/bin/env bash
# `make run`: the bundled tiny Gemma 3 (random weights, the shape of the test fixtures) at
# work: its architecture, a forward pass with per-layer statistics, a greedy continuation,
# and the real Gemma 3 tokenizer on a sentence. A trained default model will replace it.
set -e
BIN=${BIN:-./gemma3}
M=tests/fixtures/gemma3-tiny-f32
echo "\$ gemma3 inspect --model $M --context 4096"
$BIN inspect --model $M --context 4096
echo
echo "\$ gemma3 forward --model $M --ids 2,17,300,45,99,12,7,8,9,10,11 --stats"
$BIN forward --model $M --ids 2,17,300,45,99,12,7,8,9,10,11 --stats
echo
echo "\$ gemma3 generate --model $M --ids 2,17,300 --max-tokens 16 --temperature 0 --print-ids"
$BIN generate --model $M --ids 2,17,300 --max-tokens 16 --temperature 0 --print-ids
TOK=tests/data/tokenizer/tokenizer.model
if [ -f "$TOK" ]; then
  echo
  echo "\$ gemma3 tokenize --tokenizer $TOK --text 'Once upon a time, a tiny model said hello.'"
  $BIN tokenize --tokenizer $TOK --text 'Once upon a time, a tiny model said hello.'
fi
