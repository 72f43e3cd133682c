#!/usr/bin/env bash
# Runs each test binary given; prints one line per test and the closing
# "N passed, N failed" line. The exit code is the verdict.
pass=0; fail=0; failed=()
for t in "$@"; do
  name=$(basename "$t")
  start=$EPOCHREALTIME
  if out=$("$t" 2>&1); then
    pass=$((pass+1)); st=ok
  else
    fail=$((fail+1)); st=FAIL; failed+=("$name")
  fi
  dt=$(awk "BEGIN{print $EPOCHREALTIME-$start}")
  printf '%-28s %-4s %6.2fs  %s\n' "$name" "$st" "$dt" "$(echo "$out" | tail -1)"
  if [ $st = FAIL ]; then echo "$out" | tail -30 | sed 's/^/    /'; fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
