#!/usr/bin/env bash
# Runs the libFuzzer harnesses that `make fuzzers` built in $FUZZ_BUILD (default build/fuzz);
# `make fuzz` and `make fuzz-ci` build them first (the library once, for all). One line per
# harness: executions, seconds, executions per second, corpus size, result. See docs/fuzzing.md.
#
#   scripts/fuzz.sh        fuzz each harness FUZZ_SECONDS (default 60), starting from its seeds
#                          (fuzz/corpus/<h>/), its past crashes (fuzz/regress/<h>/) and what earlier
#                          runs found (build/fuzz/corpus/<h>/, where new inputs go)
#   scripts/fuzz.sh --ci   first replay every seed and past crash one by one, then fuzz each
#                          harness FUZZ_SECONDS (default 10) from the seeds alone
#
# FUZZ_ONLY=fuzz_config (a space-separated list) picks harnesses; FUZZ_RUNS=N stops a harness after
# N executions (with FUZZ_SECONDS=0: no time limit), for campaigns. A crash leaves its input in
# build/fuzz/crashes/<h>/ and the log in build/fuzz/<h>.log, prints the sanitizer's summary and
# makes the script fail; once fixed, the input belongs in fuzz/regress/<h>/. fuzz/dict/<h>.dict,
# where there is one, gives libFuzzer the words the parser looks for.
set -u
cd "$(dirname "$0")/.."
B=${FUZZ_BUILD:-build/fuzz}
ci=0
[ "${1:-}" = --ci ] && ci=1
secs=${FUZZ_SECONDS:-$([ $ci = 1 ] && echo 10 || echo 60)}
runs=${FUZZ_RUNS:--1}
export G3_FUZZ_TOKENIZER=${G3_FUZZ_TOKENIZER:-tests/data/tokenizer/tokenizer.model}
# a leak is a finding; a slow input (30 s under the sanitizers) too
opts=(-timeout=30 -print_final_stats=1 -max_total_time="$secs" -runs="$runs")

harnesses=${FUZZ_ONLY:-$(cd fuzz && ls fuzz_*.c | sed 's/\.c$//')}
status=0
for h in $harnesses; do
  bin=$B/$h
  [ -x "$bin" ] || { echo "fuzz: $bin is not built (make fuzzers)"; status=1; continue; }
  log=$B/$h.log
  mkdir -p "$B/crashes/$h" "$B/corpus/$h"
  seeds=(); for d in fuzz/corpus/$h fuzz/regress/$h; do [ -d "$d" ] && seeds+=("$d"); done
  if [ $ci = 1 ]; then
    # every seed and past crash, one execution each, whatever its size
    n=$(find "${seeds[@]}" -type f 2>/dev/null | wc -l)
    if [ "$n" -gt 0 ] && ! find "${seeds[@]}" -type f -print0 | xargs -0 "$bin" -timeout=30 > "$log.replay" 2>&1; then
      echo "fuzz: $h FAILS ON A SAVED INPUT (see $log.replay)"
      grep "Running: " "$log.replay" | tail -1
      grep -E "^SUMMARY|^==[0-9]+==ERROR" "$log.replay" | head -2
      status=1; continue
    fi
    printf '%-18s replayed %d saved inputs\n' "$h" "$n"
    work=$(mktemp -d "$B/corpus/$h.ci.XXXXXX")  # short runs leave the kept corpus alone
  else
    work=$B/corpus/$h
  fi
  start=$(date +%s.%N)
  dict=(); [ -f fuzz/dict/$h.dict ] && dict=(-dict=fuzz/dict/$h.dict)
  "$bin" "${opts[@]}" "${dict[@]}" -artifact_prefix="$B/crashes/$h/" "$work" "${seeds[@]}" > "$log" 2>&1
  rc=$?
  t=$(awk "BEGIN{printf \"%.0f\", $(date +%s.%N) - $start}")
  [ $ci = 1 ] && rm -rf "$work"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corp=$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
  rate=$(awk "BEGIN{t=$t; if (t < 1) t = 1; printf \"%.0f\", ${execs:-0} / t}")
  if [ $rc = 0 ]; then
    printf '%-18s %11s execs %6ss %7s/s  corpus %-12s ok\n' "$h" "${execs:-?}" "$t" "$rate" "${corp:-?}"
  else
    crash=$(ls -t "$B/crashes/$h"/* 2>/dev/null | head -1)
    printf '%-18s %11s execs %6ss %7s/s  corpus %-12s FOUND A CRASH: %s (log %s)\n' "$h" "${execs:-?}" "$t" "$rate" "${corp:-?}" "${crash:-?}" "$log"
    grep -E "^SUMMARY|^==[0-9]+==ERROR|runtime error" "$log" | head -3
    status=1
  fi
done
exit $status
