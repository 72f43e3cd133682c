// test_vision.c: Gemma 3's image input against Hugging Face transformers (float64) on
// tests/fixtures/gemma3-tiny-vision: the decoded picture (image_uint8), the processor's
// pixel_values (Pillow's resize must agree to the byte: 1e-6), the tower's output, the soft
// tokens, the text embeddings with the soft tokens in place, the logits (1e-5, exact mode) and
// the greedy continuation (exactly). Also the name variants of the loader and the prompt helpers.
#include "check.h"
#include "fixtures.h"
#include <unistd.h>

#include "base/json.h"
#include "model/forward.h"
#include "model/init.h"
#include "vision/vision.h"

static const char *DIR_ = "tests/fixtures/gemma3-tiny-vision";

static void vis_hook(void *ctx, const G3VisionHookEvent *ev) {
    const STSet *exp = ctx;
    const int n = ev->rows, cols = ev->cols;
    const float *rows = ev->data;
    if (ev->site != G3_VH_POST_NORM) return;
    const STTensor *t = fixture_get(exp, "vision_tower_out");
    CHECK(st_numel(t) == (int64_t)n * cols, "vision_tower_out has %lld values, the tower %d x %d", (long long)st_numel(t), n, cols);
    double e = rel_err(rows, t->data, (long)n * cols);
    CHECK(e <= 1e-5, "vision_tower_out rel err %.3g", e);
    printf("vision_tower_out rel err %.3g\n", e);
}

static void test_pixels_and_tower(void) {
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-vision");
    G3Image im;
    char p[512];
    snprintf(p, sizeof p, "%s/image.png", DIR_);
    if (g3_image_load(&im, p)) { CHECK(0, "%s", g3_error()); return; }
    const STTensor *u8 = fixture_get(&exp, "image_uint8");
    CHECK(im.h == u8->shape[0] && im.w == u8->shape[1], "decoded %dx%d", im.w, im.h);
    CHECK(!memcmp(im.rgb, u8->data, (size_t)im.w * im.h * 3), "decoded pixels differ from Pillow's");

    G3Model m;
    if (g3_model_load(&m, DIR_)) { CHECK(0, "%s", g3_error()); return; }
    G3Vision v;
    if (g3_vision_load(&v, &m)) { CHECK(0, "%s", g3_error()); g3_model_free(&m); return; }
    const G3VisionConfig *c = &v.cfg;
    CHECK(c->hidden == 32 && c->layers == 2 && c->heads == 2 && c->image_size == 56 && c->patch == 14 && c->tokens == 4,
          "vision config %d %d %d %d %d %d", c->hidden, c->layers, c->heads, c->image_size, c->patch, c->tokens);
    CHECK(c->image_token == 1002 && c->boi == 1000 && c->eoi == 1001 && c->text_hidden == 64, "ids %d %d %d", c->image_token, c->boi, c->eoi);

    const int S = c->image_size;
    float *px = malloc((size_t)3 * S * S * sizeof(float));
    CHECK(g3_vision_pixels(c, px, &im) == 0, "%s", g3_error());
    const STTensor *pv = fixture_get(&exp, "pixel_values");
    double maxd = 0;
    for (long i = 0; i < 3L * S * S; i++) maxd = fmax(maxd, fabs(px[i] - ((const float *)pv->data)[i]));
    CHECK(maxd <= 1e-6, "pixel_values max abs diff %.3g", maxd);
    printf("pixel_values max abs diff %.3g\n", maxd);

    G3Backend *be = g3_backend_cpu();
    const int NP = g3_vision_patches(c);
    float *vis = malloc((size_t)NP * c->hidden * sizeof(float)), *soft = malloc((size_t)c->tokens * c->text_hidden * sizeof(float));
    // the tower from the reference's own pixels, so that its check is independent of the resize
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, pv->data, vis, &(G3VisionHooks){vis_hook, &exp, 1u << G3_VH_POST_NORM, ~0ull}) == 0, "%s", g3_error());
    CHECK(g3_vision_project(&v, be, G3_MM_EXACT, vis, soft) == 0, "%s", g3_error());
    double e = rel_err(soft, fixture_get(&exp, "soft_tokens")->data, (long)c->tokens * c->text_hidden);
    CHECK(e <= 1e-5, "soft_tokens rel err %.3g", e);
    printf("soft_tokens rel err %.3g\n", e);
    // and end to end from the picture
    CHECK(g3_vision_embed_image(&v, be, G3_MM_EXACT, &im, soft, NULL) == 0, "%s", g3_error());
    e = rel_err(soft, fixture_get(&exp, "soft_tokens")->data, (long)c->tokens * c->text_hidden);
    CHECK(e <= 1e-5, "soft_tokens from image.png rel err %.3g", e);

    free(px);
    free(vis);
    free(soft);
    g3_vision_free(&v);
    g3_model_free(&m);
    g3_image_free(&im);
    st_close(&exp);
}

typedef struct {
    const STSet *exp;
    int seen;
} EmbObs;

static void on_embed(void *ctx, const G3HookEvent *ev) {
    EmbObs *o = ctx;
    const STTensor *t = fixture_get(o->exp, "text_input_embeds");
    double e = rel_err(ev->data, t->data, (long)ev->rows * ev->cols);
    CHECK(ev->rows * ev->cols == st_numel(t) && e <= 1e-5, "text_input_embeds rel err %.3g (%d rows)", e, ev->rows);
    printf("text_input_embeds rel err %.3g\n", e);
    o->seen++;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

// The text model reading the image: the embeddings with soft tokens in place, logits of every
// position (image tokens attend both ways in their run), then greedy decoding from the cache.
static void test_text_model(void) {
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-vision");
    G3Model m;
    G3Vision v;
    G3Image im;
    if (g3_model_load(&m, DIR_) || g3_vision_load(&v, &m) || g3_image_load(&im, "tests/fixtures/gemma3-tiny-vision/image.png")) {
        CHECK(0, "%s", g3_error());
        return;
    }
    const int C = m.cfg.hidden, V = m.cfg.vocab;
    float *soft = malloc((size_t)v.cfg.tokens * C * sizeof(float));
    CHECK(g3_vision_embed_image(&v, g3_backend_cpu(), G3_MM_EXACT, &im, soft, NULL) == 0, "%s", g3_error());
    int32_t *ids, *greedy;
    const int T = fixture_ids(&exp, "input_ids", &ids), N = fixture_ids(&exp, "greedy_ids", &greedy);
    G3State *s = g3_state_new(&m, 1, T + N, T, 0, NULL);
    CHECK(g3_vision_attach(&v.cfg, s, 0, 0, ids, T, &soft, 1) == 0, "%s", g3_error());
    EmbObs o = {&exp, 0};
    g3_state_set_hook(s, on_embed, &o, 1u << G3_HOOK_EMBED, ~0ull);
    float *logits = malloc((size_t)T * V * sizeof(float));
    CHECK(g3_prefill(s, 0, ids, T, logits) == 0, "%s", g3_error());
    CHECK(o.seen == 1, "embed hook fired %d times", o.seen);
    double e = rel_err(logits, fixture_get(&exp, "logits")->data, (long)T * V);
    CHECK(e <= 1e-5, "logits rel err %.3g", e);
    printf("logits rel err %.3g\n", e);
    g3_state_set_hook(s, NULL, NULL, 0, 0);
    int ok = 1;
    int32_t tok = argmax(s->logits, V);
    for (int i = 0; i < N; i++) {
        ok &= tok == greedy[i];
        G3Segment sg = {0, T + i, 1};
        if (i + 1 < N) {
            CHECK(g3_forward(s, &tok, &sg, 1, G3_LOGITS_LAST) == 0, "%s", g3_error());
            tok = argmax(s->logits, V);
        }
    }
    CHECK(ok, "greedy ids differ from the reference");

    // in chunks: a chunk boundary before the run (rows 0..3, then 4..16) gives the same
    // logits; one inside the run (0..5) is refused, naming the positions
    float *chunk = malloc((size_t)T * V * sizeof(float));
    G3State *s4 = g3_state_new(&m, 1, T, 13, 0, NULL);
    CHECK(g3_vision_attach(&v.cfg, s4, 0, 0, ids, T, &soft, 1) == 0, "%s", g3_error());
    G3Segment a = {0, 0, 4}, b = {0, 4, 13};
    CHECK(g3_forward(s4, ids, &a, 1, G3_LOGITS_ALL) == 0, "%s", g3_error());
    memcpy(chunk, s4->logits, (size_t)4 * V * sizeof(float));
    CHECK(g3_forward(s4, ids + 4, &b, 1, G3_LOGITS_ALL) == 0, "%s", g3_error());
    memcpy(chunk + (long)4 * V, s4->logits, (size_t)13 * V * sizeof(float));
    e = rel_err(chunk, logits, (long)T * V);
    CHECK(e <= 1e-6, "logits in two calls differ from one call: %.3g", e);
    g3_state_reset(s4, 0);
    G3Segment c6 = {0, 0, 6};
    CHECK(g3_forward(s4, ids, &c6, 1, G3_LOGITS_LAST) != 0 && strstr(g3_error(), "positions 4..7"), "a call cutting the run: %s", g3_error());
    g3_state_free(s4);
    free(chunk);
    // the prompt's runs and the images must agree in number
    G3State *s2 = g3_state_new(&m, 1, T, T, 0, NULL);
    float *two[2] = {soft, soft};
    CHECK(g3_vision_attach(&v.cfg, s2, 0, 0, ids, T, two, 2) != 0 && strstr(g3_error(), "1 image placeholder run"), "%s", g3_error());
    CHECK(g3_vision_attach(&v.cfg, s2, 0, 0, ids, 3, two, 1) != 0 && strstr(g3_error(), "0 image placeholder runs"), "%s", g3_error());
    CHECK(g3_vision_attach(&v.cfg, s2, 0, 0, ids, 6, two, 1) != 0 && strstr(g3_error(), "has 2 image tokens"), "%s", g3_error());
    g3_state_free(s2);
    g3_state_free(s);
    free(logits);
    free(soft);
    free(ids);
    free(greedy);
    g3_vision_free(&v);
    g3_model_free(&m);
    g3_image_free(&im);
    st_close(&exp);
}

static int add_vision(void *ctx, STWriter *w) { return g3_vision_write(ctx, w); }

// A random tower written beside a text model (what `gemma3 init --shape 4b` does at full
// size), here at the fixture's shapes: the folder loads as a vision model with the same tensors.
static void test_init_round_trip(void) {
    G3Config c;
    CHECK(g3_config_preset(&c, "tiny") == 0, "%s", g3_error());
    G3VisionConfig vc;
    g3_vision_preset(&vc, c.hidden);
    vc.hidden = 32; vc.inter = 48; vc.layers = 2; vc.heads = 2; vc.image_size = 56; vc.tokens = 4;
    vc.image_token = 1002; vc.boi = 1000; vc.eoi = 1001;
    G3Vision v, back;
    CHECK(g3_vision_random(&v, &vc, G3_BF16, 3, 0.02f) == 0, "%s", g3_error());
    char dir[256], cfg[300];
    snprintf(dir, sizeof dir, "/tmp/g3_vision_init_%d", (int)getpid());
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    CHECK(g3_init_checkpoint_ex(&c, dir, G3_BF16, 1, 0.02f, (size_t)1 << 30, 0, add_vision, &v) == 0, "%s", g3_error());
    CHECK(g3_vision_config_wrap(cfg, &vc) == 0, "%s", g3_error());
    G3Model m;
    if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); g3_vision_free(&v); return; }
    CHECK(m.cfg.multimodal && m.cfg.layers == c.layers, "text config nested");
    CHECK(g3_vision_load(&back, &m) == 0, "%s", g3_error());
    CHECK(back.cfg.hidden == 32 && back.cfg.tokens == 4 && back.nparams == v.nparams, "params %lld vs %lld", (long long)back.nparams, (long long)v.nparams);
    CHECK(back.layer && !memcmp(back.layer[1].fc2.data, v.layer[1].fc2.data, (size_t)g3_type_bytes(G3_BF16, 32 * 48)), "fc2 bytes");
    CHECK(back.proj && !memcmp(back.proj, v.proj, 32 * 96 * sizeof(float)), "projection");
    g3_vision_free(&back);
    g3_model_free(&m);
    g3_vision_free(&v);
    sh("rm -rf %s", dir);
}

// Text prompts: runs at the markers between "\n\n"s, images first without a marker, and a
// count mismatch refused (Gemma's real tokenizer, the 4B's ids).
static void test_text_prompt(void) {
    G3Tokenizer *tok = g3_tok_load("tests/data/tokenizer/tokenizer.model");
    if (!tok) { CHECK(0, "%s", g3_error()); return; }
    G3VisionConfig vc;
    g3_vision_preset(&vc, 2560);
    int32_t *ids = NULL, *a = NULL, *b = NULL, *nn = NULL;
    int n = g3_vision_encode_text(&vc, tok, "Look: <start_of_image> What is it?", 1, 1, 0, &ids);
    int na = g3_tok_encode(tok, "Look: ", 6, 1, 0, &a), nb = g3_tok_encode(tok, " What is it?", 12, 0, 0, &b), nnn = g3_tok_encode(tok, "\n\n", 2, 0, 0, &nn);
    CHECK(nnn == 1 && nn[0] == 108, "\\n\\n is one token (108)");
    CHECK(n == na + nb + 2 * nnn + 258, "length %d", n);
    if (n == na + nb + 2 * nnn + 258) {
        CHECK(!memcmp(ids, a, (size_t)na * 4) && ids[na] == 108 && ids[na + 1] == 255999 && ids[na + 2] == 262144 && ids[na + 257] == 262144 &&
                  ids[na + 258] == 256000 && ids[na + 259] == 108 && !memcmp(ids + na + 260, b, (size_t)nb * 4),
              "layout of the run");
        int starts[4], count;
        CHECK(g3_vision_find_runs(&vc, ids, n, starts, 4, &count) == 0 && count == 1 && starts[0] == na + 2, "run found at %d", starts[0]);
    }
    free(ids);
    // no marker: the images first. The processor tokenizes each run's "\n\n"s with the text
    // beside them: between two runs "\n\n\n\n" is one token (110), before "two" "\n\ntwo".
    int32_t *t2 = NULL;
    int nt2 = g3_tok_encode(tok, "\n\ntwo", 5, 0, 0, &t2);
    n = g3_vision_encode_text(&vc, tok, "two", 2, 1, 0, &ids);
    CHECK(n == 1 + 1 + 258 + 1 + 258 + nt2 && ids[0] == 2 && ids[1] == 108 && ids[2] == 255999 && ids[260] == 110 && ids[261] == 255999 &&
              !memcmp(ids + n - nt2, t2, (size_t)nt2 * 4),
          "images first: %d ids", n);
    free(ids);
    free(t2);
    // in a chat turn the template's "user\n" and the run's "\n\n" make one "\n\n\n" (109)
    G3ChatTurn it = {"user", "<start_of_image>Describe."};
    char *itext = g3_chat_format(&it, 1, NULL, 1);
    n = itext ? g3_vision_encode_text(&vc, tok, itext, 1, 0, 1, &ids) : -1;
    int at = -1;
    for (int i = 0; i < n && at < 0; i++)
        if (ids[i] == 255999) at = i;
    CHECK(at > 0 && ids[at - 1] == 109 && ids[at + 257] == 256000, "chat turn: %d ids, the run at %d after %d", n, at, at > 0 ? ids[at - 1] : -1);
    if (n > 0) free(ids);
    free(itext);
    CHECK(g3_vision_encode_text(&vc, tok, "<start_of_image> and <start_of_image>", 1, 1, 0, &ids) < 0 && strstr(g3_error(), "2 <start_of_image> markers but 1 image"),
          "%s", g3_error());
    // generate --chat --image formats the chat as text and cuts it at the markers: without
    // images that gives exactly the chat encoder's ids
    G3ChatTurn turn = {"user", "Describe the picture."};
    char *full = g3_chat_format(&turn, 1, "Be brief.", 1);
    int32_t *c1 = NULL, *c2 = NULL;
    int n1 = full ? g3_vision_encode_text(&vc, tok, full, 0, 0, 1, &c1) : -1, n2 = g3_chat_encode(tok, &turn, 1, "Be brief.", 1, &c2);
    CHECK(n1 > 0 && n1 == n2 && !memcmp(c1, c2, (size_t)n1 * 4), "chat text cut at markers: %d vs %d ids", n1, n2);
    free(full); free(c1); free(c2);
    free(a); free(b); free(nn);
    g3_tok_free(tok);
}

// tests/fixtures/image_prompt_ids.json (tests/ref/gen_image_prompt_ids.py, from Gemma3Processor):
// the processor's ids for text prompts and chat turns with images. Skipped, and said, where absent.
static void test_processor_ids(void) {
    const char *path = "tests/fixtures/image_prompt_ids.json";
    if (!g3_file_exists(path)) {
        printf("no %s (tests/ref/gen_image_prompt_ids.py writes it): the processor's ids are not compared\n", path);
        return;
    }
    G3Tokenizer *tok = g3_tok_load("tests/data/tokenizer/tokenizer.model");
    Json j;
    if (!tok || json_parse_file(&j, path)) { CHECK(0, "%s", g3_error()); g3_tok_free(tok); return; }
    G3VisionConfig vc;
    g3_vision_preset(&vc, 2560);
    int k = 0;
    JSON_FOREACH(cs, json_get(json_root(&j), "cases")) {
        const JsonNode *text = json_get(cs, "text"), *want = json_get(cs, "ids"), *chat = json_get(cs, "chat");
        const int nimg = (int)json_int(json_get(cs, "images")), is_chat = chat && chat->type == JSON_TRUE;
        int32_t *ids = NULL;
        int n;
        if (is_chat) {  // as chat and the server write a message with image parts before its text
            char *marked = g3_malloc(strlen(text->str) + 16 * (size_t)nimg + 1);
            marked[0] = 0;
            for (int i = 0; i < nimg; i++) strcat(marked, "<start_of_image>");
            strcat(marked, text->str);
            G3ChatTurn t = {"user", marked};
            char *full = g3_chat_format(&t, 1, NULL, 1);
            n = full ? g3_vision_encode_text(&vc, tok, full, nimg, 0, 1, &ids) : -1;
            free(full);
            free(marked);
        } else {
            n = g3_vision_encode_text(&vc, tok, text->str, nimg, 1, 0, &ids);
        }
        int same = n == (int)want->count;
        for (int i = 0; same && i < n; i++) same = ids[i] == json_int(json_at(want, (size_t)i));
        CHECK(same, "processor case %d (%s%s): %d ids, the processor's %u", k, is_chat ? "chat: " : "", text->str, n, want->count);
        if (n > 0) free(ids);
        k++;
    }
    printf("processor ids: %d cases compared\n", k);
    json_free(&j);
    g3_tok_free(tok);
}

int main(void) {
    test_pixels_and_tower();
    test_text_prompt();
    test_processor_ids();
    test_init_round_trip();
    test_text_model();
    return check_done();
}
