#!/usr/bin/env bash
# Builds every fuzz/fuzz_*.c with clang's libFuzzer (plus ASan/UBSan) against the library
# sources and runs each for FUZZ_SECONDS (default 60), starting from fuzz/corpus/<name>/.
# A crash leaves its input in build/fuzz/ and makes this script fail.
set -e
G3_FUZZ=1 scripts/deps.sh
secs=${FUZZ_SECONDS:-60}
mkdir -p build/fuzz
src=$(find src -name '*.c' -not -path 'src/cli/*' | sort)
status=0
for f in fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  bin=build/fuzz/$name
  clang -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -Iinclude -Isrc -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined "$f" $src -lm -lz -o "$bin"
  corpus=build/fuzz/corpus-$name; mkdir -p "$corpus"
  [ -d fuzz/corpus/$name ] && cp -n fuzz/corpus/$name/* "$corpus"/ 2>/dev/null || true
  echo "fuzz: $name for ${secs}s"
  if ! (cd build/fuzz && ./$name -max_total_time=$secs -print_final_stats=1 corpus-$name > $name.log 2>&1); then
    echo "fuzz: $name FOUND A CRASH (see build/fuzz/$name.log)"; tail -40 build/fuzz/$name.log; status=1
  else
    grep -E "stat::number_of_executed_units|Done" build/fuzz/$name.log | tail -2
  fi
done
exit $status
