// main.c: the gemma3 program: one command per file, dispatched from this table.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <unistd.h>

#include "base/base.h"
#include "cli.h"
#include "kernels/kernels.h"

// Set by the Makefile for this file only (git describe at build time; the compiler and flags).
#ifndef G3_GIT_COMMIT
#define G3_GIT_COMMIT "unknown"
#endif
#ifndef G3_BUILD_FLAGS
#define G3_BUILD_FLAGS "unknown"
#endif

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
} commands[] = {
    {"inspect", cmd_inspect, "show a model's architecture, parameter counts and memory"},
    {"forward", cmd_forward, "run a forward pass over token ids; save logits"},
    {"generate", cmd_generate, "continue a prompt (ids or text), or a file of prompts"},
    {"chat", cmd_chat, "talk to a model in the terminal"},
    {"serve", cmd_serve, "an OpenAI-compatible HTTP server with streaming, batching and a chat page"},
    {"tokenize", cmd_tokenize, "text to token ids"},
    {"detokenize", cmd_detokenize, "token ids to text"},
    {"tokenizer", cmd_tokenizer, "tokenizer tools: trim (a smaller vocabulary for one corpus, lossless)"},
    {"init", cmd_init, "write a random-weight checkpoint of a given shape"},
    {"train", cmd_train, "train from scratch or fine-tune"},
    {"report", cmd_report, "an offline HTML page of training runs side by side: losses, learning rate, LoRA / ReLoRA / rank-1 dynamics"},
    {"grad", cmd_grad, "loss and every gradient for one sequence"},
    {"trace", cmd_trace, "record activations at hook sites to NumPy .npz"},
    {"analyze", cmd_analyze, "attention heads, residual stream and logit lens of a prompt; HTML report"},
    {"intervene", cmd_intervene, "ablate heads/MLPs, patch activations, steer; compare with the clean run"},
    {"sae", cmd_sae, "sparse autoencoder features of a prompt (Gemma Scope), spliced-in loss, steering; sae train"},
    {"merge", cmd_merge, "merge a PEFT LoRA adapter into a model's weights; write a Hub folder"},
    {"capacity", cmd_capacity, "memorization capacity in bits per parameter (Morris et al. 2025): one cell or a grid; HTML report"},
    {"sbd", cmd_sbd, "Set Block Decoding experiment (Gat et al. 2025): NTP vs SBD training, accuracy and passes per token; HTML chart"},
    {"perplexity", cmd_perplexity, "a model's perplexity and bits per byte on a text (llama-perplexity's chunks)"},
    {"kl", cmd_kl, "KL divergence and top-1 agreement of a model against a base model on a text"},
    {"convert", cmd_convert, "a GGUF file (F32/F16/BF16) back to a Hub folder (safetensors, config.json, tokenizer.model)"},
    {"quantize", cmd_quantize, "write a model as a GGUF file in Q8_0, Q4_0, Q4_K_M, ... (tokenizer included)"},
};

// `gemma3 --version`: what was built (version, commit, compiler and flags, the SIMD levels
// compiled in) and what this CPU gets (the kernels are chosen at run time, so the binary
// itself is portable x86-64).
static int version(void) {
    printf("gemma3 %s (git %s)\n", G3_VERSION, G3_GIT_COMMIT);
    printf("built with %s %s, flags: %s\n",
#if defined(__clang__)
           "clang",
#elif defined(__GNUC__)
           "gcc",
#else
           "cc",
#endif
           __VERSION__, G3_BUILD_FLAGS);
#if defined(__x86_64__)
    printf("kernels: scalar, avx2, avx512, avx512bf16 compiled in (chosen at run time); this CPU: %s\n",
           g3_isa_name(g3_kernels_init(G3_ISA_AVX512BF16)));
#else
    printf("kernels: scalar only (no SIMD kernels for this architecture)\n");
#endif
#ifdef _OPENMP
    printf("OpenMP %d, %d threads by default\n", _OPENMP, omp_get_max_threads());
#endif
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "gemma3: run, train and look inside Gemma 3 and Gemma 2 models\n\nusage: gemma3 COMMAND [options]   (gemma3 COMMAND --help for its options)\n\n");
    for (size_t i = 0; i < G3_ARRAY_LEN(commands); i++) fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].what);
    fprintf(f, "  %-11s %s\n", "version", "the version, git commit, build flags and SIMD levels (also --version)");
}

// OpenMP's threads wait passively unless the user chose otherwise. libgomp's default has a
// thread that waits for the others spin for up to ~300,000 rounds; when the machine's cores
// are busy with other work, the thread being waited for is off its core and every region's end
// costs a scheduler slice: measured 2026-12-07 (1B Q4_0, 64 prompt ids, 2 threads, with other
// processes making the load 8-14), prefill 2-16 tok/s against 9-82 with passive waits, decode
// timed out (< 0.4 tok/s) at load 12. Decode's ~130 hand-offs a token do not use OpenMP's
// threads (backend/cpu/pool.c: short spins, and a caller that waits only for the threads that
// joined), so on a quiet machine passive waits cost only the few wake-ups of prefill's large
// regions. libgomp reads its settings when it is loaded, before main: the program runs itself
// again with OMP_WAIT_POLICY=passive set, once (not when OMP_WAIT_POLICY or GOMP_SPINCOUNT is
// set already, so a user's own choice stands and there is no loop; if the exec fails, it runs
// on as it is).
static void passive_waits(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    // the path, not /proc/self/exe itself: under valgrind that link is valgrind's own tool
    // (its readlink answers with the program's path)
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k <= 0 || k >= (ssize_t)sizeof exe - 1) return;
    exe[k] = 0;
    if (setenv("OMP_WAIT_POLICY", "passive", 1)) return;
    execv(exe, argv);
    unsetenv("OMP_WAIT_POLICY");  // the exec failed: go on with libgomp's defaults
}

int main(int argc, char **argv) {
    passive_waits(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
        if (argc > 2) { fprintf(stderr, "gemma3: %s takes no options\n", argv[1]); return 2; }
        return version();
    }
    for (size_t i = 0; i < G3_ARRAY_LEN(commands); i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "gemma3: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
