#!/usr/bin/env bash
# quant_sqerr.sh: squared error of our max rule, our search and (given llama.cpp's build
# folder with libggml-base.so) ggml's reference quantizers over a model's matrices, per block
# type (bench/quant_sqerr.c; docs/quantization.md, "The plain quantizers' search").
# Usage: quant_sqerr.sh [MODEL] [LLAMA_BIN_DIR]   (MODEL default models/default)
set -eu
MODEL=${1:-models/default} LB=${2:-}
BUILD=${BUILD:-build/rel}
make -s "$BUILD/libgemma3.a"
out=$BUILD/bench/quant_sqerr
mkdir -p "$BUILD/bench"
flags=(-std=c11 -D_GNU_SOURCE -O2 -fopenmp -Isrc -Iinclude)
if [ -n "$LB" ] && [ -f "$LB/libggml-base.so" ]; then
  cc "${flags[@]}" -DWITH_GGML bench/quant_sqerr.c "$BUILD/libgemma3.a" -L"$LB" -lggml-base -Wl,-rpath,"$(realpath "$LB")" \
    -lm -lpthread -lz -lpng -ljpeg -o "$out"
else
  echo "quant_sqerr: no libggml-base.so given: our two quantizers only" >&2
  cc "${flags[@]}" bench/quant_sqerr.c "$BUILD/libgemma3.a" -lm -lpthread -lz -lpng -ljpeg -o "$out"
fi
nice "$out" "$MODEL"
