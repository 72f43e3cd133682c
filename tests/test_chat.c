// test_chat.c: `gemma3 chat` as a user drives it. Piped: /save then /load gives back the same
// conversation and the same cache (the next answer and its context count equal those of the
// unbroken session), bad or oversized files are refused without ending the chat, invalid
// UTF-8 is saved as valid JSON and said, --stop ends an answer where its string begins. At a
// terminal (a pseudo-terminal here): the line editor's cursor keys, Backspace over a multi-byte
// character, and the history.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "model/init.h"

static const char *bin;
static char tmp[64], md[128];

static char *slurp(const char *fmt, const char *arg) {
    char p[512];
    snprintf(p, sizeof p, fmt, tmp, arg);
    size_t n;
    char *t = g3_read_file(p, &n);
    return t ? t : g3_strdup("");
}

// Runs a piped chat session (input: printf format, \n-separated lines) with extra options;
// stderr goes to tmp/NAME.err. Returns the exit status.
static int session(const char *name, const char *opts, const char *input) {
    return sh("printf '%s' | %s chat --model %s --max-tokens 5 --temperature 0 %s > %s/%s.out 2> %s/%s.err", input, bin, md, opts, tmp, name, tmp, name);
}

// The last "context N/M" that a session's stderr reports.
static int last_context(const char *name) {
    char *e = slurp("%s/%s.err", name), *at = e, *p;
    int n = -1;
    while ((p = strstr(at, "context ")) != NULL) {
        int v;
        if (sscanf(p, "context %d/", &v) == 1) n = v;
        at = p + 8;
    }
    free(e);
    return n;
}

static const JsonNode *turn_at(const Json *j, int i) { return json_at(json_get(json_root(j), "turns"), (size_t)i); }

static void piped(void) {
    char in[2048];
    // the unbroken session, and the same one saved, reset, loaded in between
    snprintf(in, sizeof in, "Hello there\\nHow are you?\\nMore please\\n/save %s/a.json\\n", tmp);
    CHECK(session("a", "", in) == 0, "session a");
    snprintf(in, sizeof in, "Hello there\\nHow are you?\\n/save %s/b1.json\\n/reset\\n/load %s/b1.json\\n/save %s/b2.json\\nMore please\\n/save %s/b.json\\n",
             tmp, tmp, tmp, tmp);
    CHECK(session("b", "", in) == 0, "session b");
    char *b1 = slurp("%s/%s", "b1.json"), *b2 = slurp("%s/%s", "b2.json"), *a = slurp("%s/%s", "a.json"), *b = slurp("%s/%s", "b.json");
    CHECK(*b1 && !strcmp(b1, b2), "/load then /save changed the conversation:\n%s\n%s", b1, b2);
    CHECK(*a && !strcmp(a, b), "after /load the next answer differs from the unbroken session's:\n%s\n%s", a, b);
    CHECK(last_context("a") > 0 && last_context("a") == last_context("b"), "context after /load: %d, unbroken: %d", last_context("b"), last_context("a"));
    char *err = slurp("%s/%s.err", "b");
    CHECK(strstr(err, "[loaded 2 turns from"), "no load message: %s", err);
    free(err);
    Json j;
    char p[300];
    snprintf(p, sizeof p, "%s/a.json", tmp);
    CHECK(json_parse_file(&j, p) == 0 && json_get(turn_at(&j, 1), "ids") && json_get(turn_at(&j, 1), "ids")->type == JSON_ARRAY, "/save keeps the model's ids");
    json_free(&j);
    free(a); free(b); free(b1); free(b2);

    // bad files: a message, the chat goes on; a conversation too long for the context
    snprintf(p, sizeof p, "%s/odd.json", tmp);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"system\": null, \"turns\": [{\"role\": \"user\", \"text\": \"x\"}]}");
    fclose(f);
    snprintf(in, sizeof in, "/load %s/none.json\\n/load %s/odd.json\\n/load %s/a.json\\nHi\\n", tmp, tmp, tmp);
    CHECK(session("c", "--context 20", in) == 0, "session c ended early");
    err = slurp("%s/%s.err", "c");
    CHECK(strstr(err, "none.json: cannot open") && strstr(err, "a user turn lacks the model's answer") && strstr(err, "not loaded (run with a larger --context"),
          "bad /load messages: %s", err);
    CHECK(strstr(err, "[5 tokens") || strstr(err, "tokens,"), "the chat did not go on after the refused loads: %s", err);
    free(err);
    CHECK(session("d", "--context 24 --drop-oldest", in) == 0, "session d");
    err = slurp("%s/%s.err", "d");
    CHECK(strstr(err, "the oldest dropped to fit"), "--drop-oldest /load: %s", err);
    free(err);

    // text that is not UTF-8: saved as valid JSON, and said; --stop with escapes is accepted
    snprintf(in, sizeof in, "caf\\351 cr\\350me\\n/save %s/u.json\\n", tmp);
    CHECK(session("e", "--stop '\\n\\n' --stop '\\u00e9'", in) == 0, "session e");
    err = slurp("%s/%s.err", "e");
    CHECK(strstr(err, "2 bytes that were not UTF-8 are written as U+FFFD"), "invalid UTF-8 not said: %s", err);
    free(err);
    snprintf(p, sizeof p, "%s/u.json", tmp);
    CHECK(json_parse_file(&j, p) == 0 && !strcmp(json_get(turn_at(&j, 0), "text")->str, "caf\xef\xbf\xbd cr\xef\xbf\xbdme") &&
              json_get(turn_at(&j, 0), "invalid_utf8")->num == 2, "saved invalid UTF-8: %s", g3_error());
    json_free(&j);
    CHECK(sh("python3 -c \"import json; json.load(open('%s', encoding='utf-8'))\"", p) == 0, "python cannot read %s", p);
}

// Reads from the terminal until its output holds want after *pos (where the last match
// ended), or 60 s pass; then *pos is the end of this match.
static int wait_for(int fd, char *buf, size_t cap, size_t *seen, size_t *pos, const char *want) {
    double t0 = g3_now();
    while (g3_now() - t0 < 60) {
        buf[*seen] = 0;
        char *at = strstr(buf + *pos, want);
        if (at) { *pos = (size_t)(at - buf) + strlen(want); return 0; }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 200) > 0) {
            ssize_t r = read(fd, buf + *seen, cap - 1 - *seen);
            if (r <= 0) return -1;
            *seen += (size_t)r;
        }
    }
    return -1;
}

static void terminal(void) {
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    if (m < 0 || grantpt(m) || unlockpt(m)) { CHECK(0, "no pseudo-terminal"); return; }
    struct winsize ws = {24, 80, 0, 0};
    ioctl(m, TIOCSWINSZ, &ws);
    char save[300];
    snprintf(save, sizeof save, "/save %s/tty.json\r", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int s = open(ptsname(m), O_RDWR);
        ioctl(s, TIOCSCTTY, 0);
        dup2(s, 0); dup2(s, 1); dup2(s, 2);
        close(m);
        execl(bin, bin, "chat", "--model", md, "--max-tokens", "3", "--temperature", "0", (char *)NULL);
        _exit(127);
    }
    static char out[1 << 20];
    size_t seen = 0, pos = 0;
    // each step: wait for the prompt, then type (the editor draws "you> " once it reads keys)
    const char *keys[] = {
        "abd\x1b[Dc\x1b[Fx\x7f\r",               // Left, insert, End, Backspace: "abcd"
        "\x1b[A\x01Z\r",                         // Up recalls "abcd", Ctrl-A, insert: "Zabcd"
        "h\xc3\xa9llo\x01\x1b[C\x1b[C\x7f\r",  // Backspace over a 2-byte character: "hllo"
        "one two\x17three\x1b[A\x1b[B\r",       // Ctrl-W; Up then Down comes back to the edited line: "one three"
        save,
        "\x04",                                  // Ctrl-D on an empty line: the end
    };
    // before each step, what ends the previous one (the answer's summary line, or /save's
    // message), then the new prompt: the prompt alone also shows in every redraw of a line
    const char *after[] = {"", "context ", "context ", "context ", "context ", "[saved"};
    for (size_t k = 0; k < G3_ARRAY_LEN(keys); k++) {
        if ((after[k][0] && wait_for(m, out, sizeof out, &seen, &pos, after[k])) || wait_for(m, out, sizeof out, &seen, &pos, "you> ")) {
            CHECK(0, "no prompt before step %zu; the terminal shows:\n%s", k, out);
            break;
        }
        if (write(m, keys[k], strlen(keys[k])) < 0) break;
    }
    int st = 0;
    double t0 = g3_now();
    while (waitpid(pid, &st, WNOHANG) == 0 && g3_now() - t0 < 60) {
        struct pollfd p = {m, POLLIN, 0};
        if (poll(&p, 1, 100) > 0 && read(m, out, sizeof out - 1) < 0) break;  // keep the terminal drained
    }
    if (waitpid(pid, &st, WNOHANG) == 0) { kill(pid, SIGKILL); waitpid(pid, &st, 0); }
    close(m);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "chat at a terminal: status %d", st);
    char p[300];
    snprintf(p, sizeof p, "%s/tty.json", tmp);
    Json j;
    if (json_parse_file(&j, p)) { CHECK(0, "%s", g3_error()); return; }
    const char *want[] = {"abcd", "Zabcd", "hllo", "one three"};
    for (int i = 0; i < 4; i++) {
        const JsonNode *t = json_get(turn_at(&j, 2 * i), "text");
        CHECK(t && !strcmp(t->str, want[i]), "line %d typed at the terminal: '%s', want '%s'", i + 1, t ? t->str : "(none)", want[i]);
    }
    json_free(&j);
}

// --stop on the engine: the answer ends where the string begins (the string not shown), and
// the conversation goes on. The string is the answer's second character, as \xHH escapes.
static void stop_strings(void) {
    CHECK(session("s0", "", "Hello there\\n") == 0, "session s0");
    char *a = slurp("%s/%s.out", "s0");
    size_t n = strlen(a), i1 = 1, i2;
    if (n && a[n - 1] == '\n') a[--n] = 0;
    while (i1 < n && ((unsigned char)a[i1] & 0xC0) == 0x80) i1++;  // end of the first character
    for (i2 = i1 + 1; i2 < n && ((unsigned char)a[i2] & 0xC0) == 0x80;) i2++;
    CHECK(i2 <= n && i1 < n, "the answer '%s' has fewer than 2 characters", a);
    if (i2 > n || i1 >= n) { free(a); return; }
    char stop[64] = "", opt[128];
    for (size_t k = i1; k < i2; k++) snprintf(stop + strlen(stop), sizeof stop - strlen(stop), "\\x%02x", (unsigned char)a[k]);
    a[i2] = 0;
    size_t want = (size_t)(strstr(a, a + i1) - a);  // text before the string's first occurrence
    snprintf(opt, sizeof opt, "--stop '%s'", stop);
    CHECK(session("s1", opt, "Hello there\\nAgain\\n") == 0, "session s1");
    char *b = slurp("%s/%s.out", "s1"), *err = slurp("%s/%s.err", "s1");
    CHECK(!strncmp(b, a, want) && b[want] == '\n', "--stop %s: the answer '%s' does not end before it (unstopped: '%s')", stop, b, a);
    CHECK(strstr(err, "stop string") && strstr(strstr(err, "stop string") + 1, "tokens,"), "no stop, or no second turn: %s", err);
    free(a);
    free(b);
    free(err);
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) { fprintf(stderr, "no %s: build it first\n", bin); return 1; }
    snprintf(tmp, sizeof tmp, "/tmp/g3chatXXXXXX");
    if (!mkdtemp(tmp)) return 2;
    snprintf(md, sizeof md, "%s/model", tmp);
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 262144;
    c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
    CHECK(g3_init_checkpoint(&c, md, G3_BF16, 3, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
    CHECK(sh("cp tests/data/tokenizer/tokenizer.model %s/", md) == 0, "tokenizer");
    piped();
    stop_strings();
    terminal();
    sh("rm -rf %s", tmp);
    return check_done();
}
