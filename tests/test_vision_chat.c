// test_vision_chat.c: images in conversations. A small random Gemma 3 with a vision tower and
// Gemma's real 262,208-token vocabulary (so that the real tokenizer's <start_of_image>,
// <end_of_image> and image soft token are its ids) is written to a temporary folder; then
// - `chat --image F` puts the image in the first message: its greedy answer (the ids /save
//   keeps) equals `generate --chat --image F --print-ids` on the same text;
// - `/image F` adds an image to the next message, /save lists each turn's images, /load
//   reads them again through the tower and the conversation goes on;
// - bad images: --image of a GIF stops chat with a message naming it (exit 1); /image of a
//   missing file or on a text-only model is said and the chat goes on; /load says that it
//   drops the images waiting for a message.
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "base/json.h"
#include "model/config.h"
#include "model/init.h"
#include "vision/vision.h"

static const char *bin, *TOK = "tests/data/tokenizer/tokenizer.model", *IMG = "tests/fixtures/gemma3-tiny-vision/image.png";
static char tmp[256], model[300];

static int add_vision(void *ctx, STWriter *w) { return g3_vision_write(ctx, w); }

static int make_model(void) {
    G3Config c;
    if (g3_config_preset(&c, "tiny")) return -1;
    c.vocab = 262208;
    G3VisionConfig vc;
    g3_vision_preset(&vc, c.hidden);
    vc.hidden = 32, vc.inter = 48, vc.layers = 2, vc.heads = 2, vc.image_size = 28, vc.tokens = 4;  // 2 x 2 patches, one a token
    G3Vision v;
    char cfg[400];
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    // and a text-only folder: the same weights under the text config (the vision tensors unread)
    int rc = g3_vision_random(&v, &vc, G3_BF16, 5, 0.2f) || g3_init_checkpoint_ex(&c, model, G3_BF16, 7, 0.05f, (size_t)1 << 30, 0, add_vision, &v) ||
             sh("mkdir -p %s/text && cp %s %s/text/ && ln -s ../model.safetensors %s/text/model.safetensors", model, cfg, model, model) ||
             g3_vision_config_wrap(cfg, &vc);
    g3_vision_free(&v);
    return rc ? -1 : 0;
}

// Runs chat with input on stdin; returns its exit status, stderr into *err (malloc'd).
static int chat(const char *args, const char *input, char **err) {
    char in[400], ep[400];
    snprintf(in, sizeof in, "%s/in.txt", tmp);
    snprintf(ep, sizeof ep, "%s/err.txt", tmp);
    FILE *f = fopen(in, "w");
    if (f) fputs(input, f), fclose(f);
    int rc = sh("%s chat --tokenizer %s --max-tokens 4 --temperature 0 --exact %s < %s > %s/out.txt 2> %s", bin, TOK, args, in, tmp, ep);
    size_t n;
    *err = g3_read_file(ep, &n);
    if (!*err) *err = g3_strdup("");
    return rc;
}

// The ids of the model's turn k of a /save file, comma-separated, into buf.
static int saved_answer(const char *path, int k, char *buf, size_t cap, int *nimages_user) {
    Json j;
    if (json_parse_file(&j, path)) return -1;
    const JsonNode *turns = json_get(json_root(&j), "turns"), *u = json_at(turns, (size_t)(2 * k)), *a = json_at(turns, (size_t)(2 * k + 1));
    const JsonNode *ids = json_get(a, "ids"), *ims = json_get(u, "images");
    *nimages_user = ims ? (int)ims->count : 0;
    size_t o = 0;
    buf[0] = 0;
    JSON_FOREACH(id, ids) o += (size_t)snprintf(buf + o, o < cap ? cap - o : 0, "%s%lld", o ? "," : "", (long long)json_int(id));
    json_free(&j);
    return ids ? 0 : -1;
}

static void test_chat(void) {
    char args[1024], path[400], want[4096], got[4096], *err = NULL;
    // generate's answer to the first message with the image
    snprintf(path, sizeof path, "%s/gen.txt", tmp);
    CHECK(sh("%s generate --model %s --tokenizer %s --chat --prompt 'Describe it.' --image %s --max-tokens 4 --temperature 0 --exact --print-ids > %s 2>/dev/null",
             bin, model, TOK, IMG, path) == 0, "generate --chat --image");
    size_t n;
    char *g = g3_read_file(path, &n);
    snprintf(want, sizeof want, "%s", g ? g : "");
    free(g);
    want[strcspn(want, "\n")] = 0;
    // the same through chat --image, then an image with the second message, saved
    snprintf(path, sizeof path, "%s/s.json", tmp);
    snprintf(args, sizeof args, "--model %s --image %s", model, IMG);
    char input[1024];
    snprintf(input, sizeof input, "Describe it.\n/image %s/missing.png\n/image %s\nAnd this one?\n/save %s\n", tmp, IMG, path);
    int rc = chat(args, input, &err);
    CHECK(rc == 0, "chat --image: exit %d: %s", rc, err);
    CHECK(strstr(err, "missing.png") != NULL, "/image of a missing file is said: %s", err);
    int ni = -1;
    CHECK(saved_answer(path, 0, got, sizeof got, &ni) == 0 && !strcmp(got, want) && ni == 1, "first answer %s (generate: %s), %d image(s)", got, want, ni);
    CHECK(saved_answer(path, 1, got, sizeof got, &ni) == 0 && got[0] && ni == 1, "second turn: answer '%s', %d image(s)", got, ni);
    free(err);
    // /load reads the images again; the conversation goes on
    snprintf(input, sizeof input, "/load %s\nAnd now?\n/save %s.2\n", path, path);
    rc = chat(args + 0, input, &err);
    CHECK(rc == 0 && strstr(err, "loaded 2 turns"), "/load: exit %d: %s", rc, err);
    char p2[420];
    snprintf(p2, sizeof p2, "%s.2", path);
    CHECK(strstr(err, "image waiting for a message is dropped"), "/load drops the --image waiting: %s", err);
    CHECK(saved_answer(p2, 2, got, sizeof got, &ni) == 0 && got[0] && ni == 0, "after /load: answer '%s', %d image(s)", got, ni);
    free(err);
    // a GIF on the command line: refused by name
    char gif[400];
    snprintf(gif, sizeof gif, "%s/x.gif", tmp);
    FILE *f = fopen(gif, "w");
    if (f) fputs("GIF89a....", f), fclose(f);
    snprintf(args, sizeof args, "--model %s --image %s", model, gif);
    rc = chat(args, "hi\n", &err);
    CHECK(rc == 1 && strstr(err, "x.gif") && strstr(err, "unsupported image format"), "chat --image x.gif: exit %d: %s", rc, err);
    free(err);
    // a text-only model: /image is refused, the chat goes on
    snprintf(input, sizeof input, "/image %s\nhello\n", IMG);
    snprintf(args, sizeof args, "--model %s/text", model);
    rc = chat(args, input, &err);
    CHECK(rc == 0 && strstr(err, "image.png") && strstr(err, "vision"), "text-only model: exit %d: %s", rc, err);
    free(err);
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    snprintf(tmp, sizeof tmp, "/tmp/g3_vision_chat_%d", (int)getpid());
    snprintf(model, sizeof model, "%s/model", tmp);
    if (sh("mkdir -p %s", model)) return 2;
    if (make_model()) { CHECK(0, "model: %s", g3_error()); return check_done(); }
    test_chat();
    sh("rm -rf %s", tmp);
    return check_done();
}
