#!/usr/bin/env bash
# gpu_session.sh: one call's worth of GPU work when device time is scarce, most valuable
# first, each step only while the deadline ($BUDGET seconds from the start, default 540)
# leaves it room: build; test_cuda_train; the training benchmark (ours, then PyTorch's);
# the transformers / PEFT / tokenizers reference checks; compute-sanitizer on test_cuda_train;
# test_cuda_model; the TinyStories run checks. Logs and outputs go to $OUT.
set -u
O=${OUT:-/tmp/gpu_out}
mkdir -p "$O"
T0=$(date +%s)
BUDGET=${BUDGET:-540}
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
room() { [ "$(left)" -gt "$1" ]; }
say() { echo "[$(( $(date +%s) - T0 ))s] $*"; }
# HELPER_TESTS: the helpers' GPU tests the helpers step runs (default: lora pack vision sampler)
# VISION_CPU=0: the vision step makes the reference only, not the 16-core CPU timing
# SKIP="llama servediag vision prefill hf decode resume sae helpers gpustories profile ours peer memcheck model stories": steps to leave out of this call
want() { case " ${SKIP:-} " in *" $1 "*) return 1;; esac; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
want llama && J=10 bench/gpu/peer_build.sh --background  # llama.cpp's CUDA build, meanwhile
make -j$(nproc) CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" all build/cuda/tests/test_cuda_train build/cuda/tests/test_cuda_model build/cuda/tests/test_cuda_attn build/cuda/tests/test_cuda_sae build/cuda/tests/test_cuda_linear build/cuda/tests/test_train_resume build/cuda/tests/cuda/bench_cuda >"$O/build.log" 2>&1 || { tail -30 "$O/build.log"; exit 1; }
say "built"
timeout 60 build/cuda/tests/test_cuda_linear >"$O/test_cuda_linear.log" 2>&1; say "test_cuda_linear: exit $? -- $(tail -1 "$O/test_cuda_linear.log")"
grep -hE "FAIL|failed|not bit" "$O/test_cuda_linear.log" | head -10
timeout 60 build/cuda/tests/test_cuda_attn >"$O/test_cuda_attn.log" 2>&1; say "test_cuda_attn: exit $? -- $(tail -1 "$O/test_cuda_attn.log")"
grep -hE "FAIL|failed" "$O/test_cuda_attn.log" | head -20
timeout 120 build/cuda/tests/test_cuda_train >"$O/test_cuda_train.log" 2>&1; say "test_cuda_train: exit $? -- $(tail -1 "$O/test_cuda_train.log")"
grep -hE "FAIL|failed|attention B|cuda f32|cuda bf16|adamw|resident" "$O/test_cuda_train.log" | head -40
timeout 60 build/cuda/tests/test_cuda_sae >"$O/test_cuda_sae.log" 2>&1; say "test_cuda_sae: exit $? -- $(tail -1 "$O/test_cuda_sae.log")"
grep -hE "FAIL|failed|GPU vs CPU" "$O/test_cuda_sae.log" | head -10
if want prefill && room 150; then
    ./gemma3 init --shape 1b --out /tmp/g3-1b >/dev/null 2>&1
    timeout 60 build/cuda/tests/cuda/bench_cuda --model /tmp/g3-1b >"$O/prefill.log" 2>&1
    say "model prefill (tensor-core attention in fast mode):"; grep -E "T =" "$O/prefill.log"
    room 250 && G3_CUDA_ATTN=f32 timeout 60 build/cuda/tests/cuda/bench_cuda --model /tmp/g3-1b >"$O/prefill_f32.log" 2>&1
    say "model prefill, G3_CUDA_ATTN=f32:"; grep -E "fast  T =" "$O/prefill_f32.log"
fi
if want hf && room 50; then
    mkdir -p tests/ref/out
    timeout 40 python3 tests/ref/check_default_model_hf.py >"$O/check_default_model_hf.txt" 2>&1; say "hf default model: exit $? -- $(tail -2 "$O/check_default_model_hf.txt" | tr '\n' ' ')"
    timeout 30 python3 tests/ref/check_trimmed_tokenizer.py models/default/tokenizer.json >"$O/check_trimmed_tokenizer.txt" 2>&1; say "hf tokenizer: exit $? -- $(tail -1 "$O/check_trimmed_tokenizer.txt")"
    timeout 40 bash tests/ref/check_peft_load.sh >"$O/check_peft_load.out" 2>&1; say "peft: exit $? -- $(tail -1 "$O/check_peft_load.out")"
fi
if want decode && room 120; then  # issue 16: 1B batch-1 decode, fused products and early launches on and off
    M=/tmp/g3-1b; [ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null 2>&1
    P512=$(python3 -c "import random; random.seed(1); print(','.join(['2']+[str(random.randrange(3,262000)) for _ in range(511)]))")
    for rep in 1 2 3; do
        for cfg in "1 1" "0 1" "1 0" "0 0"; do
            set -- $cfg
            echo "fuse $1 pdl $2: $(G3_CUDA_FUSE=$1 G3_CUDA_PDL=$2 ./gemma3 generate --model $M --ids $P512 --max-tokens 256 --temperature 0 --device cuda 2>&1 >/tmp/dec_$1$2.ids | tail -1)"
        done
    done >"$O/decode.log"
    say "1B decode (512-token prompt, 256 new, greedy):"; cat "$O/decode.log"
    cmp -s /tmp/dec_11.ids /tmp/dec_00.ids && say "same ids with and without fusing/PDL" || say "IDS DIFFER with fusing/PDL"
fi
if want servediag && room 60; then  # issue 22: a stream's forward passes against what the client sees
    M=/tmp/g3-1b; [ -f $M/config.json ] || ./gemma3 init --shape 1b --out $M >/dev/null 2>&1
    cp -n tests/data/tokenizer/tokenizer.model $M/ 2>/dev/null
    ./gemma3 serve --model $M --port 18099 --parallel 1 --ctx 1024 --temperature 0 --device cuda >"$O/servediag.log" 2>&1 &
    SP=$!
    for _ in $(seq 300); do curl -sf http://127.0.0.1:18099/health >/dev/null 2>&1 && break; sleep 0.1; done
    say "serve, one stream: $(python3 bench/serve_load.py http://127.0.0.1:18099 1 3 64)"
    kill $SP; wait $SP 2>/dev/null; grep "choice" "$O/servediag.log" | tail -3
fi
if want model && room 60; then
    timeout $(( $(left) - 20 )) build/cuda/tests/test_cuda_model >"$O/test_cuda_model.log" 2>&1; say "test_cuda_model: exit $? -- $(tail -1 "$O/test_cuda_model.log")"
fi
if want resume && room 190; then  # issue 17: SIGKILL in and between checkpoint writes, resumed bit for bit on the GPU
    G3_TEST_DEVICE=cuda BIN=./gemma3 timeout 90 build/cuda/tests/test_train_resume >"$O/test_train_resume.log" 2>&1
    say "test_train_resume --device cuda: exit $? -- $(tail -1 "$O/test_train_resume.log")"; grep -hE "FAIL|uninterrupted" "$O/test_train_resume.log" | head -5
    # the same with 8-bit AdamW: its codes and block scales live on the GPU and go into each checkpoint
    G3_TEST_DEVICE=cuda G3_TEST_OPTIM=adamw8bit BIN=./gemma3 timeout 90 build/cuda/tests/test_train_resume >"$O/test_train_resume8.log" 2>&1
    say "test_train_resume --device cuda --optim adamw8bit: exit $? -- $(tail -1 "$O/test_train_resume8.log")"; grep -hE "FAIL|uninterrupted" "$O/test_train_resume8.log" | head -5
fi
if want sae && room 200; then  # issue 24: sae train end to end on the GPU, and its speed
    [ -f /tmp/g3-1b/config.json ] || ./gemma3 init --shape 1b --out /tmp/g3-1b >/dev/null 2>&1
    T0S=$(date +%s.%N)
    timeout 60 ./gemma3 sae train --model /tmp/g3-1b --site blocks.12.hook_resid_post --random --width 16384 --l0 32 \
        --steps 20 --batch 4096 --seq 256 --log-every 10 --out /tmp/sae-gpu --device cuda >"$O/sae_train.log" 2>&1
    say "sae train (GPU, 20 steps of 4096 rows, width 16384): exit $? in $(python3 -c "print(round($(date +%s.%N)-$T0S,1))") s"
    grep -E "training the SAE|step +20|rror" "$O/sae_train.log" | head -4
fi
if want vision && room 60; then  # issue 23: transformers' per-layer tower values; the 4B tower on this host's CPU cores
    timeout 40 python3 tests/ref/gen_vision_hooks_ref.py "$O/gemma3-tiny-vision-hooks" >"$O/vref.log" 2>&1; say "vision hooks reference: exit $? -- $(tail -1 "$O/vref.log")"
    [ "${VISION_CPU:-1}" = 1 ] && make -j$(nproc) CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" build/cuda/bench/bench_vision >>"$O/build.log" 2>&1 &&
    G3_BENCH_DEVICE=cpu G3_BENCH_THREADS=$(nproc) G3_BENCH_REPEATS=3 OMP_WAIT_POLICY=PASSIVE timeout 60 build/cuda/bench/bench_vision >"$O/vision_cpu.log" 2>&1
    say "vision tower on $(nproc) CPU cores: exit $?"; grep -E "tower \+ projector|TFLOP per image" "$O/vision_cpu.log" | head -4
fi
if want helpers; then  # the helpers' GPU pieces, where their branches brought them
    for t in ${HELPER_TESTS:-test_cuda_lora test_cuda_pack test_cuda_vision test_cuda_sampler}; do
        [ -f tests/$t.c ] && room 60 || continue
        make -j$(nproc) CUDA=1 CUDA_ARCH="-gencode arch=compute_90,code=sm_90" build/cuda/tests/$t >>"$O/build.log" 2>&1
        timeout 90 build/cuda/tests/$t >"$O/$t.log" 2>&1; say "$t: exit $? -- $(tail -1 "$O/$t.log")"; grep -hE "FAIL|failed" "$O/$t.log" | head -8
    done
    for b in ${HELPER_SCRIPTS:-}; do
        [ -x $b ] && room 90 || continue
        HL=${HELPER_LIMIT:-150}
        HT=$(( $(left) - 40 < HL ? $(left) - 40 : HL ))
        # the scripts' own time limits (capacity_grid.sh: BUDGET, lora_experiment.sh: LIMIT) a little inside ours
        BUDGET=$(( HT - 30 )) LIMIT=$(( HT - 30 )) timeout $HT $b >"$O/$(basename $b).log" 2>&1; say "$b: exit $?"; tail -${HELPER_TAIL:-8} "$O/$(basename $b).log"
    done
fi
if want gpustories && room 80 && [ -d .gpudata ]; then
    GPU_ONLY=1 timeout $(( $(left) - 30 < 120 ? $(left) - 30 : 120 )) tests/cuda/gpu_train_stories.sh >"$O/stories.log" 2>&1; say "stories (GPU only):"; cat "$O/stories.log"
fi
if want llama && room 100; then  # llama.cpp's CUDA build as the same-call peer: llama-bench 1B, then the servers
    J=16 timeout $(( $(left) - 90 )) bench/gpu/peer_build.sh >"$O/peer_build.log" 2>&1; say "llama.cpp build: exit $? -- $(tail -1 "$O/peer_build.log")"
    if room 60; then SHAPES=1b timeout $(( $(left) - 40 < 90 ? $(left) - 40 : 90 )) bench/gpu/peer.sh >"$O/peer.log" 2>&1; say "llama-bench:"; cat "$O/peer.log" | tail -6; fi
    if room 60; then CONCS=${SERVE_CONCS:-1 16 64} REPS=${SERVE_REPS:-1} timeout $(( $(left) - 10 )) bench/gpu/serve_gpu.sh >"$O/serve.log" 2>&1; say "serve:"; cat "$O/serve.log"; fi
fi
if want profile && room 150; then
    timeout $(( $(left) - 130 < 200 ? $(left) - 130 : 200 )) tests/cuda/gpu_profile.sh >"$O/profile.log" 2>&1; say "profile:"; grep -E "^(==|#)" "$O/profile.log" | head -30
fi
if want ours && room 160; then
    MODES=bf16 STEPS=${STEPS:-10} T1B=${T1B:-80} STEPS_1B=4 timeout $(( $(left) - 100 )) bench/gpu/train_ours.sh >"$O/train_ours.log" 2>&1
    say "ours:"; grep -E "OURS|rror|train: on" "$O/train_ours.log" | head -8
fi
if want peer && room 120; then
    timeout $(( $(left) - 60 )) python3 bench/gpu/train_peer.py 10 eager,compile >"$O/train_peer.log" 2>&1
    say "peer:"; grep -E "TORCH|Error" "$O/train_peer.log" | head -4
fi
if want memcheck && room 100; then
    timeout $(( $(left) - 40 )) compute-sanitizer --tool memcheck --leak-check no build/cuda/tests/test_cuda_train >"$O/memcheck.log" 2>&1
    say "memcheck test_cuda_train: exit $? -- $(grep -E 'ERROR SUMMARY' "$O/memcheck.log" | tail -1)"
fi
if want stories && room 120 && [ -d .gpudata ]; then
    timeout $(( $(left) - 10 )) tests/cuda/gpu_train_stories.sh >"$O/stories.log" 2>&1; say "stories:"; cat "$O/stories.log" | head -12
fi
say "done"
