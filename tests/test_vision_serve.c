// test_vision_serve.c: image parts in `gemma3 serve`'s chat messages. A small random vision
// model with Gemma's real vocabulary (as test_vision_chat.c) is served on a free port and
// tests/vision_serve_client.py checks, with data: URLs of PNGs: answers equal `generate --chat
// --image` (exact mode, greedy), a request with another image between two with the first does
// not change the first's, n = 2, and 400s that say what is wrong (bad base64, a GIF, a
// truncated PNG, a remote URL, a part without a URL, 9 images, a marker without an image).
// Then, at the library level: image parts on a text-only model and on /v1/activations.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "model/config.h"
#include "model/init.h"
#include "server/srv_internal.h"
#include "vision/vision.h"

static char tmp[64], md[128];

static int add_vision(void *ctx, STWriter *w) { return g3_vision_write(ctx, w); }

static int make_model(void) {
    G3Config c;
    if (g3_config_preset(&c, "tiny")) return -1;
    c.vocab = 262208;
    G3VisionConfig vc;
    g3_vision_preset(&vc, c.hidden);
    vc.hidden = 32, vc.inter = 48, vc.layers = 2, vc.heads = 2, vc.image_size = 28, vc.tokens = 4;
    G3Vision v;
    char cfg[200];
    snprintf(cfg, sizeof cfg, "%s/config.json", md);
    int rc = g3_vision_random(&v, &vc, G3_BF16, 5, 0.2f) || g3_init_checkpoint_ex(&c, md, G3_BF16, 7, 0.05f, (size_t)1 << 30, 0, add_vision, &v) ||
             g3_vision_config_wrap(cfg, &vc) || sh("cp tests/data/tokenizer/tokenizer.model %s/", md);
    g3_vision_free(&v);
    return rc ? -1 : 0;
}

static pid_t start(const char *bin, int *port) {
    char out[256], err[256];
    snprintf(out, sizeof out, "%s/serve.out", tmp);
    snprintf(err, sizeof err, "%s/serve.err", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        char cmd[2048];
        snprintf(cmd, sizeof cmd, "exec %s serve --model %s --port 0 --ctx 256 --parallel 2 --exact --threads 1 > %s 2> %s", bin, md, out, err);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    *port = 0;
    for (int i = 0; i < 1200 && !*port; i++) {
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

// generate --chat --image's answer text (its stdout's first line) into buf.
static void want(const char *bin, const char *img, char *buf, size_t cap) {
    char p[256];
    snprintf(p, sizeof p, "%s/want.txt", tmp);
    CHECK(sh("%s generate --model %s --chat --prompt 'Describe it.' --image %s --max-tokens 4 --temperature 0 --exact --threads 1 > %s 2>/dev/null", bin, md,
             img, p) == 0, "generate --chat --image %s", img);
    char *t = g3_read_file(p, NULL);
    snprintf(buf, cap, "%s", t ? t : "");
    free(t);
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[n - 1] = 0;  // generate ends the text with one newline
}

// Image parts where they cannot be read: a text-only model, /v1/activations.
static void test_refused_here(void) {
    G3Tokenizer *tok = g3_tok_load("tests/data/tokenizer/tokenizer.model");
    if (!tok) { CHECK(0, "%s", g3_error()); return; }
    SrvLimits l = {tok, 262208, 256, 16, g3_sampler_defaults(), NULL};
    const char *body = "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": "
                       "\"data:image/png;base64,iVBORw0KGgo=\"}}]}]}";
    SrvGen g = {0};
    SrvError e = {0};
    CHECK(srv_gen_parse(&l, SRV_CHAT, body, strlen(body), &g, &e) < 0 && e.status == 400, "status %d", e.status);  // (a PNG signature only)
    CHECK(strstr(e.message, "truncated") || strstr(e.message, "PNG"), "%s", e.message);
    const char *ok = "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,";
    size_t n;
    char *png = g3_read_file("tests/fixtures/gemma3-tiny-vision/image.png", &n);
    SBuf b = {0};
    static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    sb_puts(&b, ok);
    for (size_t i = 0; png && i < n; i += 3) {
        uint32_t x = (uint32_t)(uint8_t)png[i] << 16 | (i + 1 < n ? (uint32_t)(uint8_t)png[i + 1] << 8 : 0) | (i + 2 < n ? (uint8_t)png[i + 2] : 0);
        char q[4] = {B64[x >> 18 & 63], B64[x >> 12 & 63], i + 1 < n ? B64[x >> 6 & 63] : '=', i + 2 < n ? B64[x & 63] : '='};
        sb_put(&b, q, 4);
    }
    sb_puts(&b, "\"}}, {\"type\": \"text\", \"text\": \"hi\"}]}]}");
    memset(&e, 0, sizeof e);
    CHECK(srv_gen_parse(&l, SRV_CHAT, b.p, b.n, &g, &e) < 0 && e.status == 400 && strstr(e.message, "no vision tower"), "text-only model: %d %s", e.status,
          e.message);
    G3VisionConfig vc;
    g3_vision_preset(&vc, 96);
    vc.tokens = 4;
    l.vision = &vc;
    memset(&e, 0, sizeof e);
    CHECK(srv_gen_parse(&l, SRV_CHAT, b.p, b.n, &g, &e) == 0, "%s", e.message);
    CHECK(g.nimages == 1 && g.images[0].w > 0 && g.images[0].h > 0, "one image decoded: %d", g.nimages);
    int starts[2], cnt = 0;
    CHECK(g3_vision_find_runs(&vc, g.prompt, g.nprompt, starts, 2, &cnt) == 0 && cnt == 1, "one run in the prompt");
    srv_gen_free(&g);
    // /v1/activations reads no images
    Json j;
    const char *msgs = strstr(b.p, "[{\"role\"");
    if (msgs && json_parse(&j, msgs, strlen(msgs) - 1) == 0) {
        int32_t *ids = NULL;
        memset(&e, 0, sizeof e);
        CHECK(srv_chat_ids(&l, json_root(&j), NULL, &ids, NULL, &e) < 0 && strstr(e.message, "/v1/chat/completions only"), "%s", e.message);
        free(ids);
        json_free(&j);
    } else {
        CHECK(0, "messages JSON");
    }
    sb_free(&b);
    free(png);
    g3_tok_free(tok);
}

int main(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    test_refused_here();
    snprintf(tmp, sizeof tmp, "/tmp/g3visXXXXXX");
    if (!mkdtemp(tmp)) return 2;
    snprintf(md, sizeof md, "%s/model", tmp);
    if (sh("mkdir -p %s", md) || make_model()) { CHECK(0, "model: %s", g3_error()); return check_done(); }
    // a second picture: the first, flipped (any other pixels)
    char img2[256], w1[512], w2[512];
    snprintf(img2, sizeof img2, "%s/flip.png", tmp);
    G3Image im;
    uint8_t *png = NULL;
    size_t n = 0;
    if (g3_image_load(&im, "tests/fixtures/gemma3-tiny-vision/image.png") == 0) {
        for (int y = 0; y < im.h / 2; y++)
            for (int x = 0; x < im.w * 3; x++) {
                uint8_t *a = im.rgb + (size_t)y * im.w * 3 + x, *c = im.rgb + (size_t)(im.h - 1 - y) * im.w * 3 + x, t = *a;
                *a = *c, *c = t;
            }
        if (g3_image_encode_png(&im, &png, &n) == 0) g3_write_file_atomic(img2, png, n);
        free(png);
        g3_image_free(&im);
    }
    want(bin, "tests/fixtures/gemma3-tiny-vision/image.png", w1, sizeof w1);
    want(bin, img2, w2, sizeof w2);
    int port;
    pid_t pid = start(bin, &port);
    CHECK(pid > 0 && port > 0, "the server did not start (see %s/serve.err)", tmp);
    if (pid > 0 && port > 0) {
        CHECK(sh("/usr/bin/python3 tests/vision_serve_client.py %d tests/fixtures/gemma3-tiny-vision/image.png %s '%s' '%s'", port, img2, w1, w2) == 0,
              "client checks failed (server log: %s/serve.err)", tmp);
        int st;
        CHECK(waitpid(pid, &st, WNOHANG) == 0, "the server died during the checks");
        kill(pid, SIGTERM);
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit after SIGTERM: %d (log: %s/serve.err)", st, tmp);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && check_failures == 0) sh("rm -rf %s", tmp);
    }
    return check_done();
}
