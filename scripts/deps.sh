#!/usr/bin/env bash
# Installs what gemma3.c needs on a fresh Debian machine, and nothing that is already there.
set -e
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
echo 'int main(void){return 0;}' | gcc -fopenmp -x c - -o /dev/null 2>/dev/null || need+=(libgomp1 gcc)
# zlib: --compress of `gemma3 trace` (deflated .npz); numpy: the tests read .npz files back
# (with /usr/bin/python3, the one apt installs numpy for)
[ -f /usr/include/zlib.h ] || need+=(zlib1g-dev)
# --image: PNG and JPEG decoding (libpng, libjpeg-turbo)
[ -f /usr/include/png.h ] || need+=(libpng-dev)
[ -f /usr/include/jpeglib.h ] || need+=(libjpeg62-turbo-dev)
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)  # Debian's python3, not a pyenv one
# the chat page of `gemma3 serve` is tested in headless Chromium (test_serve)
command -v chromium >/dev/null || need+=(chromium)
# make fuzz: clang with libFuzzer and the sanitizers' runtimes (libclang-rt-dev, only a
# Recommends of clang) and LLVM's OpenMP (clang does not link libgomp)
if [ "${G3_FUZZ:-0}" = 1 ]; then
  echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
    clang -fsanitize=fuzzer,address,undefined -fopenmp -x c - -o /dev/null 2>/dev/null ||
    need+=(clang libclang-rt-dev libomp-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
