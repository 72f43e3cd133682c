#!/usr/bin/env bash
# speed_call.sh: one device call for the speed issues (16, 17), most telling first, each step
# only while BUDGET (seconds from the start, default 560) leaves room:
#  1. bench/gpu/gemm_shapes.cu: the head's products with the vocabulary odd / pitch-padded /
#     dimension-padded (what bf16_product takes);
#  2. bench/gpu/train_profile.sh with PEER=1: the build, test_cuda_train and test_cuda_attn, the
#     GemmaZero step plain and under the profiler, PyTorch eager and compiled in the same call;
#  3. perplexity on the GPU (the default model, 8 chunks of 512) plain and under the profiler;
#  4. 4B batch-1 decode (random bf16, greedy, 128 tokens after 32) plain and under
#     G3_CUDA_PROFILE=1 (no graph: every op timed).
# Everything lands in $OUT/speed.tar.gz; the summary on stdout.
set -u
T0=$(date +%s)
BUDGET=${BUDGET:-560}
O=${OUT:-/tmp/gpu_out}
W=$O/speed
mkdir -p "$W"
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
cd "$(dirname "$0")/../.."
nvcc -O2 -arch=sm_90 bench/gpu/gemm_shapes.cu -lcublas -o /tmp/gemm_shapes 2>"$W/gemm_shapes.build" && timeout 60 /tmp/gemm_shapes | tee "$W/gemm_shapes.txt"
say "gemm_shapes done"
AB=${AB:-0} PEER=${PEER:-1} OUT=$W timeout $(( $(left) - 60 )) bench/gpu/train_profile.sh > "$W/train_profile.txt" 2>&1
grep -E "^==|OURS|TORCH|exit|FAIL" "$W/train_profile.txt" | head -40
say "train profile done"
# 4. why perplexity on the GPU was slower than the 2-core CPU (0.8 s a 512-token chunk, 16:00 UTC)
if [ "$(left)" -gt 150 ]; then
    # (5 query heads on one kv head: the decode kernel's group sizes 3, 5, 6, 7 are new since
    # the 16:00 UTC call, and test_cuda_attn above checks them; the two devices must agree here)
    say "perplexity on the GPU: $(timeout 60 ./gemma3 perplexity --device cuda --data tests/data/books_sample.txt --ctx 512 --chunks 8 2>&1 | tr '\n' ' ')"
    say "perplexity on the CPU: $(timeout 60 ./gemma3 perplexity --device cpu --data tests/data/books_sample.txt --ctx 512 --chunks 8 2>&1 | tr '\n' ' ')"
    G3_CUDA_PROFILE=1 timeout 60 ./gemma3 perplexity --device cuda --data tests/data/books_sample.txt --ctx 512 --chunks 8 > "$W/ppl_prof.txt" 2>&1
    sed -n '/== G3_CUDA_PROFILE/,$p' "$W/ppl_prof.txt" | head -30
fi
if [ "$(left)" -gt 90 ]; then
    M=/tmp/g3-4b
    timeout $(( $(left) - 50 )) ./gemma3 init --shape 4b --out $M > "$W/init4b.log" 2>&1 || tail -2 "$W/init4b.log"
    IDS=$(python3 -c "import random; random.seed(3); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(31)]))")
    for rep in 1 2; do
        [ "$(left)" -gt 30 ] && say "4B decode: $(timeout 40 ./gemma3 generate --model $M --ids "$IDS" --max-tokens 128 --temperature 0 --device cuda 2>&1 >/dev/null | tail -1)"
    done
    [ "$(left)" -gt 30 ] && G3_CUDA_PROFILE=1 timeout $(( $(left) - 10 )) ./gemma3 generate --model $M --ids "$IDS" --max-tokens 128 \
        --temperature 0 --device cuda > /dev/null 2> "$W/decode4b_prof.txt"
    say "4B decode under the profiler: $(grep -m1 decode "$W/decode4b_prof.txt")"
    sed -n '/== G3_CUDA_PROFILE/,$p' "$W/decode4b_prof.txt" | head -40
fi
(cd "$O" && tar czf speed.tar.gz speed && rm -rf speed)
say "done"
