#!/usr/bin/env bash
# Runs every benchmark binary (build/*/bench/bench_*) and every bench/*.sh script (other than
# this one). Each prints its own figures; see docs/benchmarks.md for what they mean.
# bench_train runs from train_peers.sh, beside PyTorch measured in the same run; bench_engine
# from engine_peers.sh, beside llama.cpp.
set -e
BUILD=${BUILD:-build/rel}
for b in "$BUILD"/bench/bench_*; do
  [ "$(basename $b)" = bench_train ] && [ -f bench/train_peers.sh ] && continue
  [ "$(basename $b)" = bench_engine ] && [ -f bench/engine_peers.sh ] && continue
  [ -x "$b" ] && { echo "== $(basename $b)"; "$b"; }
done
for s in bench/*.sh; do [ "$(basename $s)" = run.sh ] && continue; echo "== $(basename $s)"; bash "$s"; done
