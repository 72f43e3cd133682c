#!/usr/bin/env bash
# llama_cpp.sh: llama.cpp as a same-machine peer, without building it and without root.
# Debian's llama.cpp (sid) ships llama-bench and libggml with one CPU backend per x86 level
# (haswell = AVX2+FMA+F16C, zen4, sapphirerapids, ...), loaded at start for the CPU it runs
# on: what a user who installs llama.cpp from Debian gets. Bookworm has no llama.cpp, so the
# packages and the newer C library they need are downloaded from sid with a private apt
# configuration, unpacked under $PEER, and run through that C library's own loader.
# The random checkpoints are converted with the converter Debian ships beside it.
#
#   llama_cpp.sh setup                      download and unpack (once); exit 1 if impossible
#   llama_cpp.sh convert DIR OUT.gguf TYPE  Hub checkpoint -> GGUF (TYPE bf16 or f16), once
#   llama_cpp.sh bench ARGS...              llama-bench ARGS...
#   llama_cpp.sh server ARGS...             llama-server ARGS... (bench/serve_peers.sh)
set -eu
PEER=${G3_PEER_DIR:-build/peers/llama}
ROOT=$PEER/root
LIB=$ROOT/usr/lib/x86_64-linux-gnu
PKGS="llama.cpp-tools libllama0 libggml0 python3-gguf libc6 libstdc++6 libgcc-s1 libgomp1 libssl3t64"
TOK=${G3_TOKENIZER_DIR:-tests/data/tokenizer}

setup() {
  [ -x "$ROOT/usr/bin/llama-bench" ] && return 0
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || { echo "llama_cpp: needs apt-get and dpkg" >&2; return 1; }
  local a; a=$(realpath -m "$PEER/apt")
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$PEER/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" >"$a/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$a/sources.list" -o Dir::Etc::SourceParts=/nonexistent
              -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache" -o Debug::NoLocking=1)
  echo "llama_cpp: downloading Debian sid's llama.cpp into $PEER ..." >&2
  apt-get "${opts[@]}" update -qq >/dev/null 2>&1 || { echo "llama_cpp: cannot reach deb.debian.org sid" >&2; return 1; }
  (cd "$PEER/debs" && apt-get "${opts[@]}" download $PKGS >/dev/null 2>&1) || { echo "llama_cpp: download failed" >&2; return 1; }
  rm -rf "$ROOT.tmp" && mkdir -p "$ROOT.tmp"
  for d in "$PEER"/debs/*.deb; do dpkg -x "$d" "$ROOT.tmp"; done
  # ggml looks for its CPU backends beside the executable, which is the loader here
  cp "$ROOT.tmp"/usr/lib/x86_64-linux-gnu/ggml/backends0/*.so "$ROOT.tmp"/usr/lib/x86_64-linux-gnu/
  rm -rf "$ROOT" && mv "$ROOT.tmp" "$ROOT"
}

run() {  # a sid program through sid's loader and libraries
  "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB:$LIB/llama" "$@"
}

convert() {  # DIR OUT TYPE
  local dir=$1 out=$2 type=$3 tmp
  [ -f "$out" ] && return 0
  if ! /usr/bin/python3 -c 'import torch, numpy, sentencepiece' 2>/dev/null && [ "$(id -u)" = 0 ]; then
    echo "llama_cpp: installing Debian's python3-torch and python3-sentencepiece for the converter ..." >&2
    timeout 900 apt-get install -y -qq python3-torch python3-numpy python3-sentencepiece >/dev/null 2>&1 || true
  fi
  /usr/bin/python3 -c 'import torch, numpy, sentencepiece' 2>/dev/null || {
    echo "llama_cpp: the converter needs Debian's python3-torch, python3-numpy and python3-sentencepiece" >&2; return 1; }
  tmp=$(mktemp -d)
  # the converter wants the tokenizer beside the weights
  ln -s "$(realpath "$dir")"/config.json "$(realpath "$dir")"/model.safetensors "$tmp"/
  cp "$TOK"/tokenizer.model "$TOK"/tokenizer_config.json "$tmp"/ 2>/dev/null || cp "$TOK"/tokenizer.model "$tmp"/
  mkdir -p "$(dirname "$out")"
  PYTHONPATH="$(realpath bench/peers/pystub):$ROOT/usr/lib/python3/dist-packages:$ROOT/usr/share/llama.cpp/llama.cpp-tools" \
    /usr/bin/python3 "$ROOT/usr/share/doc/llama.cpp-tools/scripts/convert_hf_to_gguf.py" "$tmp" --outtype "$type" \
    --outfile "$out.tmp" >"$tmp/log" 2>&1 || { tail -5 "$tmp/log" >&2; rm -rf "$tmp"; return 1; }
  mv "$out.tmp" "$out"
  rm -rf "$tmp"
}

case "${1:-}" in
  setup) setup ;;
  convert) shift; setup && convert "$@" ;;
  bench) shift; setup && run "$ROOT/usr/bin/llama-bench" "$@" 2> >(grep -v 'failed to enumerate' >&2) ;;
  server) shift; setup && exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB:$LIB/llama" "$ROOT/usr/bin/llama-server" "$@" ;;
  *) echo "usage: llama_cpp.sh setup | convert DIR OUT.gguf bf16|f16 | bench ARGS... | server ARGS..." >&2; exit 2 ;;
esac
