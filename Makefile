# gemma3.c build. `make` builds ./gemma3 and build/libgemma3.a; `make test` runs every
# tests/test_*.c; `make bench` runs the benchmarks; `make SAN=1 test` runs the suite under
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
LDLIBS   = -fopenmp -lm -lpthread -lz

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

.PHONY: all deps test test-san bench run fuzz fuzz-ci fuzzers clean
all: $(BIN) $(LIB)

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALLFLAGS) -MMD -MP -c $< -o $@

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
test: deps $(BIN) $(TESTS)
	@BIN=$(BIN) BUILD=$(BUILD) tests/run.sh $(TESTS)

test-san:
	$(MAKE) SAN=1 test

bench: deps $(BIN) $(BENCHES)
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
	@$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libgemma3.a -lm -lz -o $@

$(FUZZ_BUILD)/obj/src/analysis/report_html.o: src/analysis/report_template.html

fuzzers: $(FUZZERS)

fuzz fuzz-ci:
	@G3_FUZZ=1 scripts/deps.sh
	@echo "fuzz: building the library once with libFuzzer + ASan + UBSan ($(FUZZ_BUILD))"
	@$(MAKE) --no-print-directory fuzzers
	@FUZZ_BUILD=$(FUZZ_BUILD) scripts/fuzz.sh $(if $(filter fuzz-ci,$@),--ci)

clean:
	rm -rf build gemma3

# the HTML report's page is assembled into its object (.incbin), which -MMD cannot see
$(BUILD)/src/analysis/report_html.o: src/analysis/report_template.html

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(wildcard $(FUZZ_OBJ:.o=.d))
