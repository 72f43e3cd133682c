# gemma3.c build. `make` builds ./gemma3, build/rel/libgemma3.a and build/rel/libgemma3.so (the
# Python package's library); `make test` runs every tests/test_*.c; `make bench` runs the benchmarks; `make SAN=1 test` runs the suite under
# AddressSanitizer + UndefinedBehaviorSanitizer; `make fuzz` runs the fuzzers for a while.
# Sources are found by pattern: a new src/**/*.c joins the library, a new tests/test_*.c
# becomes a test, with no edit here.
CC      ?= gcc
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# SIMD kernels select instructions per function (target attributes) and are chosen at run
# time from the CPU's features, so the binary itself stays portable x86-64.
# -fno-math-errno: nothing here reads errno after libm calls; with it gcc may inline sqrt
# and vectorize loops that use it (AdamW), with the same correctly rounded results.
ALLFLAGS = -std=c11 -D_GNU_SOURCE -fopenmp -fno-math-errno -Wall -Wextra -Wno-unused-parameter -Wno-format-truncation -Wno-missing-field-initializers -Werror=implicit-function-declaration -Iinclude -Isrc $(CFLAGS)
LDLIBS   = -fopenmp -lm -lpthread -lz -lpng -ljpeg

# CUDA (issue 16): `make CUDA=1` also compiles src/backend/cuda/*.cu with nvcc into the same
# library (objects under build/cuda, so a CPU build and a CUDA build share a checkout) and
# links cudart, cuBLAS and cuBLASLt; G3_CUDA is then defined for every C file. Off unless
# asked for: nothing calls the GPU kernels yet, and nvcc would slow every build where it is
# installed. `make cuda-check` (CI) compiles them and runs the GPU tests, which say
# "skipped: no GPU" where there is none; `make CUDA=1 cuda-bench` measures on a GPU.
CUDA      ?= 0
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(firstword $(shell command -v nvcc 2>/dev/null) $(wildcard /usr/local/cuda/bin/nvcc)))
NVCC      ?= $(CUDA_HOME)/bin/nvcc
# sm_90 machine code for Hopper (H100/H200), and PTX of sm_80 that the driver compiles for
# any other card from Ampere on.
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
NVCCFLAGS  = -O3 -std=c++17 -lineinfo $(CUDA_ARCH) -DG3_CUDA=1 -Iinclude -Isrc -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter \
             -Werror all-warnings
ifeq ($(CUDA),1)
ifeq ($(SAN),1)
BUILD   ?= build/cuda-san
else
BUILD   ?= build/cuda
endif
endif

# BUILD and BIN may be overridden so that several builds can share one checkout.
ifeq ($(SAN),1)
BUILD   ?= build/san
ALLFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS   += -fsanitize=address,undefined
BIN     ?= $(BUILD)/gemma3
else
BUILD   ?= build/rel
BIN     ?= ./gemma3
endif

LIB_SRC  := $(shell find src -name '*.c' -not -path 'src/cli/*' | sort)
CLI_SRC  := $(shell find src/cli -name '*.c' | sort)
TEST_SRC := $(sort $(wildcard tests/test_*.c))
BENCH_SRC:= $(sort $(wildcard bench/bench_*.c))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TESTS    := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCHES  := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB      := $(BUILD)/libgemma3.a
# The shared library (issue 24): the Python package (python/gemma3c) loads it through ctypes.
# The same sources compiled a second time with -fPIC into $(BUILD)/pic, so the static
# library's objects (and the speed of ./gemma3) stay as they are; only the public API
# (gemma3_*) is exported (src/api/libgemma3.map).
SO       := $(BUILD)/libgemma3.so
PIC_OBJ  := $(LIB_SRC:%.c=$(BUILD)/pic/%.o)
ifeq ($(CUDA),1)
CU_SRC   := $(sort $(wildcard src/backend/cuda/*.cu))
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
LIB_OBJ  += $(CU_OBJ)
ALLFLAGS += -DG3_CUDA=1 -I$(CUDA_HOME)/include
# the runtime linked statically (one library less to find at run time); cuBLAS found by rpath
LDLIBS   += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart_static -ldl -lrt -lstdc++
endif
CUDA_TESTS := $(filter $(BUILD)/tests/test_cuda_%,$(TESTS))

.PHONY: all deps test test-san bench run fuzz fuzz-ci fuzzers clean cuda-check cuda-build cuda-test cuda-bench
all: $(BIN) $(LIB) $(SO)

# `gemma3 --version` names the git commit and the flags of the build: main.o alone gets them,
# and is rebuilt when they change (build_info is rewritten only then).
GIT_COMMIT := $(shell git describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)
BUILD_FLAGS = $(CC) $(CFLAGS)$(if $(filter 1,$(SAN)), -fsanitize=address$(comma)undefined)
comma := ,
$(shell mkdir -p $(BUILD) && (echo '$(GIT_COMMIT) $(BUILD_FLAGS)' | cmp -s - $(BUILD)/build_info || echo '$(GIT_COMMIT) $(BUILD_FLAGS)' > $(BUILD)/build_info))
$(BUILD)/src/cli/main.o: $(BUILD)/build_info
$(BUILD)/src/cli/main.o: ALLFLAGS += -DG3_GIT_COMMIT='"$(GIT_COMMIT)"' -DG3_BUILD_FLAGS='"$(BUILD_FLAGS)"'

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/pic/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -fPIC -MMD -MP -c $< -o $@

$(SO): $(PIC_OBJ) $(filter %.o,$(CU_OBJ)) src/api/libgemma3.map
	$(CC) $(ALLFLAGS) -shared -Wl,--version-script=src/api/libgemma3.map -Wl,-soname,libgemma3.so $(PIC_OBJ) $(CU_OBJ) $(LDLIBS) -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(ALLFLAGS) $(CLI_OBJ) $(LIB) $(LDLIBS) -o $@

$(BUILD)/tests/%: tests/%.c tests/check.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: bench/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) $< $(LIB) $(LDLIBS) -o $@

# The test command of the README: installs what is missing, builds, runs every test.
test: deps $(BIN) $(SO) $(TESTS)
	@BIN=$(BIN) BUILD=$(BUILD) tests/run.sh $(TESTS)

test-san:
	$(MAKE) SAN=1 test

bench: deps $(BIN) $(SO) $(BENCHES)
	@BIN=$(BIN) BUILD=$(BUILD) bench/run.sh

run: deps $(BIN)
	@scripts/demo.sh

# Fuzzing (docs/fuzzing.md): the library is built once with clang, libFuzzer's coverage
# instrumentation, ASan and UBSan into $(FUZZ_BUILD)/libgemma3.a, and every fuzz/fuzz_*.c links
# against it. `make fuzz` fuzzes each harness FUZZ_SECONDS (default 60); `make fuzz-ci` replays
# every corpus entry and past crash, then fuzzes each harness briefly.
FUZZ_BUILD ?= build/fuzz
FUZZ_CC    ?= clang
FUZZ_FLAGS  = -std=c11 -D_GNU_SOURCE -g -O1 -fopenmp -Iinclude -Isrc -fno-omit-frame-pointer \
              -fsanitize=address,undefined -fno-sanitize-recover=undefined -Wno-pass-failed
FUZZ_OBJ   := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZERS    := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(sort $(wildcard fuzz/fuzz_*.c)))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libgemma3.a: $(FUZZ_OBJ)
	@rm -f $@
	@ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(FUZZ_BUILD)/libgemma3.a
	@$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libgemma3.a -lm -lz -lpng -ljpeg -o $@

$(FUZZ_BUILD)/obj/src/analysis/report_html.o: src/analysis/report_template.html
$(FUZZ_BUILD)/obj/src/analysis/sae_html.o: src/analysis/sae_template.html
$(FUZZ_BUILD)/obj/src/train/train_report.o: src/train/train_report.html
$(FUZZ_BUILD)/obj/src/server/page.o: src/server/page.html

fuzzers: $(FUZZERS)

fuzz fuzz-ci:
	@G3_FUZZ=1 scripts/deps.sh
	@echo "fuzz: building the library once with libFuzzer + ASan + UBSan ($(FUZZ_BUILD))"
	@$(MAKE) --no-print-directory fuzzers
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(if $(filter fuzz-ci,$@),--ci)

# The GPU tests alone (with CUDA=1; each prints "skipped: no GPU" where there is none).
cuda-test: $(CUDA_TESTS)
	@test "$(CUDA)" = 1 || { echo "cuda-test: needs CUDA=1"; exit 1; }
	@BIN=$(BIN) BUILD=$(BUILD) tests/run.sh $(CUDA_TESTS)

# CI's check that the CUDA code still compiles (nvcc present, no GPU needed).
cuda-check:
	@test -x "$(NVCC)" || { echo "cuda-check: nvcc not found (put it on PATH or set CUDA_HOME)"; exit 1; }
	$(MAKE) CUDA=1 cuda-build
	$(MAKE) CUDA=1 cuda-test

cuda-build: $(CUDA_TESTS) $(BUILD)/tests/cuda/bench_cuda
$(CUDA_TESTS) $(BUILD)/tests/cuda/bench_cuda: tests/cuda/cuda_test.h

# GEMV bandwidth against the card's copy bandwidth, and the other kernels' speeds (a GPU run).
$(BUILD)/tests/cuda/bench_cuda: tests/cuda/bench_cuda.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -Itests $< $(LIB) $(LDLIBS) -o $@

cuda-bench: $(BUILD)/tests/cuda/bench_cuda
	@test "$(CUDA)" = 1 || { echo "cuda-bench: needs CUDA=1"; exit 1; }
	$(BUILD)/tests/cuda/bench_cuda

clean:
	rm -rf build gemma3

# the HTML report's page, the server's chat page and the capacity report's page are assembled
# into their objects (.incbin), which -MMD cannot see
$(BUILD)/src/analysis/report_html.o $(BUILD)/pic/src/analysis/report_html.o: src/analysis/report_template.html
$(BUILD)/src/analysis/sae_html.o $(BUILD)/pic/src/analysis/sae_html.o: src/analysis/sae_template.html
$(BUILD)/src/server/page.o $(BUILD)/pic/src/server/page.o: src/server/page.html
$(BUILD)/src/experiments/capacity_html.o $(BUILD)/pic/src/experiments/capacity_html.o: src/experiments/capacity_template.html
$(BUILD)/src/train/train_report.o $(BUILD)/pic/src/train/train_report.o: src/train/train_report.html

-include $(LIB_OBJ:.o=.d) $(PIC_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(wildcard $(FUZZ_OBJ:.o=.d))
