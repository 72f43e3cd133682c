#!/usr/bin/env bash
# peer.sh: llama.cpp's CUDA build as the same-run peer on the GPU machine. Builds llama-bench
# from .cudawt/llama.tar.xz (llama.cpp as bundled in the npm package node-llama-cpp 3.22.1;
# the lead packs it: see docs/gpu-notes.md) once per warm machine, converts the same random
# checkpoints with llama.cpp's own converter (bf16) and runs llama-bench: prefill 512 and
# decode 128, flash attention on, every layer on the GPU, 5 repetitions.
set -u
L=build/peers/llama.cpp
bench/gpu/peer_build.sh || exit 1
for shape in ${SHAPES:-270m 1b 4b}; do
    M=/tmp/g3-$shape G=/tmp/g3-$shape.gguf
    [ -f $M/config.json ] || ./gemma3 init --shape $shape --out $M >/dev/null 2>&1
    if [ ! -f $G ]; then
        T=$(mktemp -d); ln -s $M/*.json $M/*.safetensors $T/; cp tests/data/tokenizer/tokenizer.model $T/
        PYTHONPATH=$L/gguf-py python3 $L/convert_hf_to_gguf.py $T --outtype bf16 --outfile $G >/tmp/convert_$shape.log 2>&1 ||
            { tail -8 /tmp/convert_$shape.log; continue; }
    fi
    echo "== llama.cpp CUDA, $shape bf16"
    build/peers/llama-cuda/bin/llama-bench -m $G -ngl 99 -fa 1 -p 512 -n 128 -r 5 2>&1 | grep -E "^\||build"
done
