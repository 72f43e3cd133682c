#!/usr/bin/env bash
# dm_call.sh: one device call that trains the default model (scripts/gpu_default_model.sh, its
# environment passed through) and, beside it once the CUDA build exists, builds and runs
# GPU tests (their logs and last lines in $OUT/tests.txt): a call whose tree carries .gpudata has
# room for the fixtures those tests read and little else.
#   TESTS      the GPU tests to run (default: test_cuda_attn test_cuda_train)
#   SAN_TESTS  tests to run again under compute-sanitizer memcheck after them (default: none)
# A tree that carries .devmodel/model.safetensors.xz (scripts/device_tree.sh model) gets the
# default model's weights unpacked first, for test_cuda_model's default-model cases.
set -u
TESTS=${TESTS:-test_cuda_attn test_cuda_train}
SAN_TESTS=${SAN_TESTS:-}
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
cd "$(dirname "$0")/../.."
scripts/gpu_default_model.sh > "$O/dm.txt" 2>&1 &
DM=$!
( # after the script's own build (its "built" line), so that two makes never share build/cuda
  until grep -q "built" "$O/dm.txt" 2>/dev/null || ! kill -0 $DM 2>/dev/null; do sleep 2; done
  if [ -f .devmodel/model.safetensors.xz ] && [ ! -f models/default/model.safetensors ]; then
    python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.devmodel/model.safetensors.xz'), open('models/default/model.safetensors','wb'), 1<<24)" \
      && echo "default model unpacked"
  fi
  make -j8 CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" $(for t in $TESTS $SAN_TESTS; do echo build/cuda/tests/$t; done | sort -u) \
    > "$O/tests_build.log" 2>&1 || { echo "test build failed"; tail -20 "$O/tests_build.log"; }
  for t in $TESTS; do
    t1=$(date +%s)
    timeout 300 build/cuda/tests/$t > "$O/$t.log" 2>&1
    echo "== $t: exit $? in $(( $(date +%s) - t1 )) s -- $(tail -1 "$O/$t.log")"
    grep -E "FAIL|check failed" "$O/$t.log" | head -20
  done
  for t in $SAN_TESTS; do
    t1=$(date +%s)
    CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
    timeout ${SAN_S:-240} "${CS:-compute-sanitizer}" --tool memcheck --leak-check no --error-exitcode 9 build/cuda/tests/$t > "$O/san-$t.log" 2>&1
    echo "== memcheck $t: exit $? in $(( $(date +%s) - t1 )) s -- $(grep -m1 'ERROR SUMMARY' "$O/san-$t.log") -- $(grep -v '^=========' "$O/san-$t.log" | tail -1)"
  done
) > "$O/tests.txt" 2>&1 &
wait  # both: the tests are bounded by their timeouts
cat "$O/tests.txt"
tail -30 "$O/dm.txt"
