// test_serve.c: `gemma3 serve` as clients see it. Starts the server on a free 127.0.0.1 port
// (--port 0: it prints the one it got) over a tiny random Gemma 3 with the real tokenizer,
// runs tests/serve_client.py against it (chat, completions, streaming = non-streamed text,
// stop strings, usage, n > 1, logprobs, activations, tool-call conversations, 32 concurrent
// clients = their solo texts, 503 when full, hostile input, slow-loris, a client vanishing
// mid-stream), then stops it with SIGTERM: it must exit 0 (under SAN=1: without a leak).
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "model/init.h"

static char tmp[64], md[128];

// Starts the server; returns its pid and the port it listens on (0 if it never said).
static pid_t start(const char *bin, const char *extra, int *port) {
    char out[256], err[256];
    snprintf(out, sizeof out, "%s/serve.out", tmp);
    snprintf(err, sizeof err, "%s/serve.err", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s serve --model %s --port 0 --ctx 256 --parallel 4 --queue 40 --timeout 1.5 --max-body 64 --threads 1 %s > %s 2> %s", bin, md,
                 extra, out, err);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    *port = 0;
    for (int i = 0; i < 1200 && !*port; i++) {  // up to 120 s: loading under the sanitizers is slow
        usleep(100000);
        char *t = g3_read_file(out, NULL);
        const char *p = t ? strstr(t, "listening on http://127.0.0.1:") : NULL;
        if (p) *port = atoi(p + strlen("listening on http://127.0.0.1:"));
        free(t);
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) return -1;
    }
    return pid;
}

int main(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) { fprintf(stderr, "no %s: build it first\n", bin); return 1; }
    snprintf(tmp, sizeof tmp, "/tmp/g3serveXXXXXX");
    if (!mkdtemp(tmp)) return 2;
    snprintf(md, sizeof md, "%s/model", tmp);
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 262144;
    c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
    CHECK(g3_init_checkpoint(&c, md, G3_BF16, 3, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
    CHECK(sh("cp tests/data/tokenizer/tokenizer.model %s/", md) == 0, "tokenizer");

    // bad options fail before listening
    CHECK(sh("%s serve --model %s --port 70000 2>/dev/null", bin, md) != 0, "--port 70000 accepted");
    CHECK(sh("GEMMA3_MODEL=build/no-such-model %s serve 2>/dev/null", bin) != 0, "no --model and no default model accepted");
    CHECK(sh("%s serve --help | grep -q -- --api-key", bin) == 0, "--help");

    // chat --tools: the tools' preamble fits, a turn runs; unknown tools and a missing folder are refused
    CHECK(sh("printf 'What is 6*7?\\n' | %s chat --model %s --tools calc,files --tools-dir %s --max-tokens 3 --temperature 0 --threads 1 > %s/tools.out 2> %s/tools.err",
             bin, md, tmp, tmp, tmp) == 0, "chat --tools (see %s/tools.err)", tmp);
    CHECK(sh("%s chat --model %s --tools calc,nope < /dev/null 2>/dev/null", bin, md) == 1, "chat --tools nope accepted");
    CHECK(sh("%s chat --model %s --tools files --tools-dir %s/none < /dev/null 2>/dev/null", bin, md, tmp) == 1, "a missing --tools-dir accepted");

    int port;
    pid_t pid = start(bin, "--api-key sekrit", &port);
    CHECK(pid > 0 && port > 0, "the server did not start (see %s/serve.err)", tmp);
    if (pid > 0 && port > 0) {
        CHECK(sh("/usr/bin/python3 tests/serve_client.py %d sekrit", port) == 0, "client checks failed (server log: %s/serve.err)", tmp);
        // the chat page in headless Chromium (77: no chromium here, said and skipped)
        const char *shot = getenv("G3_SERVE_SHOT");
        char def[256];
        snprintf(def, sizeof def, "%s/page.png", tmp);
        int pr = sh("/usr/bin/python3 tests/serve_page.py %d sekrit %s", port, shot ? shot : def);
        CHECK(pr == 0 || pr == 77, "chat page checks failed (%d)", pr);
        int st;
        CHECK(waitpid(pid, &st, WNOHANG) == 0, "the server died during the checks");
        kill(pid, SIGTERM);
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit after SIGTERM: %d (log: %s/serve.err)", st, tmp);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && check_failures == 0) sh("rm -rf %s", tmp);
    }
    return check_done();
}
