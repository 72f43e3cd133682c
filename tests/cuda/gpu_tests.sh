#!/usr/bin/env bash
# gpu_tests.sh: one device call that builds and runs the GPU test suites and then runs some of
# them again under compute-sanitizer memcheck, each bounded by a timeout; logs in $OUT, the
# verdicts on stdout. For a call with no training beside it (bench/gpu/dm_call.sh runs tests
# beside the default model's training).
#   TESTS      the suites (default: every tests/test_cuda_*.c)
#   SAN_TESTS  the suites to run again under memcheck (default: test_cuda_train test_cuda_model)
#   SAN_S      seconds each memcheck run may take (default 240)
# A tree that carries .devmodel/model.safetensors.xz (scripts/device_tree.sh model) gets the
# default model's weights unpacked first, for test_cuda_model's default-model cases; and a
# .devmodel/tokenizer.model goes where test_cuda_vision reads it (a slim tree lacks tests/data).
set -u
cd "$(dirname "$0")/../.."
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O"
TESTS=${TESTS:-$(ls tests/test_cuda_*.c | sed 's|tests/||; s|\.c$||' | tr '\n' ' ')}
SAN_TESTS=${SAN_TESTS-test_cuda_train test_cuda_model}
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ -f .devmodel/model.safetensors.xz ] && [ ! -f models/default/model.safetensors ]; then
    python3 -c "import lzma,shutil; shutil.copyfileobj(lzma.open('.devmodel/model.safetensors.xz'), open('models/default/model.safetensors','wb'), 1<<24)" \
        && say "default model unpacked"
fi
if [ -f .devmodel/tokenizer.model ] && [ ! -f tests/data/tokenizer/tokenizer.model ]; then
    mkdir -p tests/data/tokenizer && cp .devmodel/tokenizer.model tests/data/tokenizer/
fi
make -j"$(nproc)" CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" all \
    $(for t in $TESTS $SAN_TESTS; do echo build/cuda/tests/$t; done | sort -u) >"$O/build.log" 2>&1 ||
    { say "build failed"; tail -30 "$O/build.log"; exit 1; }
say "built"
fail=0
for t in $TESTS; do
    t1=$(date +%s)
    timeout 300 build/cuda/tests/$t >"$O/$t.log" 2>&1; rc=$?
    [ $rc = 0 ] || fail=1
    echo "== $t: exit $rc in $(( $(date +%s) - t1 )) s -- $(tail -1 "$O/$t.log")"
    grep -E "FAIL|check failed" "$O/$t.log" | head -20
done
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
for t in $SAN_TESTS; do
    t1=$(date +%s)
    timeout "${SAN_S:-240}" "${CS:-compute-sanitizer}" --tool memcheck --leak-check no --error-exitcode 9 build/cuda/tests/$t >"$O/san-$t.log" 2>&1; rc=$?
    [ $rc = 0 ] || fail=1
    echo "== memcheck $t: exit $rc in $(( $(date +%s) - t1 )) s -- $(grep -m1 'ERROR SUMMARY' "$O/san-$t.log") -- $(grep -v '^=========' "$O/san-$t.log" | tail -1)"
done
say "done"
exit $fail
