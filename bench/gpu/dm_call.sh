#!/usr/bin/env bash
# dm_call.sh: one device call that trains the default model (scripts/gpu_default_model.sh, its
# environment passed through) and, beside it once the CUDA build exists, builds and runs
# test_cuda_attn and test_cuda_train (their logs and last lines in $OUT/tests.txt): a call whose
# tree carries .gpudata has room for the fixtures those two tests read and little else.
set -u
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
cd "$(dirname "$0")/../.."
scripts/gpu_default_model.sh > "$O/dm.txt" 2>&1 &
DM=$!
( # after the script's own build (its "built" line), so that two makes never share build/cuda
  until grep -q "built" "$O/dm.txt" 2>/dev/null || ! kill -0 $DM 2>/dev/null; do sleep 2; done
  make -j8 CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" build/cuda/tests/test_cuda_attn build/cuda/tests/test_cuda_train \
    > "$O/tests_build.log" 2>&1 || { echo "test build failed"; tail -20 "$O/tests_build.log"; }
  for t in test_cuda_attn test_cuda_train; do
    t1=$(date +%s)
    timeout 300 build/cuda/tests/$t > "$O/$t.log" 2>&1
    echo "== $t: exit $? in $(( $(date +%s) - t1 )) s -- $(tail -1 "$O/$t.log")"
    grep -E "FAIL|check failed" "$O/$t.log" | head -20
  done
) > "$O/tests.txt" 2>&1 &
wait  # both: the tests are bounded by their timeouts
cat "$O/tests.txt"
tail -30 "$O/dm.txt"
