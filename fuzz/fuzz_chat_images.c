// fuzz_chat_images.c: libFuzzer harness for the server's chat requests with image parts
// (src/server/api.c: content parts, data: URLs, base64, then the image decoders and the
// prompt's image runs): any body is a checked request or a 4xx/5xx with a message, never a
// crash; an accepted request holds one decoded picture per image run of its prompt.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "server/srv_internal.h"
#include "vision/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static G3Tokenizer *tok;
    static G3VisionConfig vc;
    if (!tok) {  // Gemma's tokenizer (run from the repository's root, as make fuzz does)
        if (!(tok = g3_tok_load("tests/data/tokenizer/tokenizer.model"))) abort();
        g3_vision_preset(&vc, 64);
        vc.tokens = 4;  // short runs: the fuzzer's time goes to the parsing
    }
    SrvLimits l = {tok, 262208, 4096, 16, g3_sampler_defaults(), &vc};
    SrvGen g = {0};
    SrvError e = {0};
    if (srv_gen_parse(&l, SRV_CHAT, (const char *)data, size, &g, &e) == 0) {
        int starts[SRV_MAX_IMAGES + 1], n = 0;
        if (g3_vision_find_runs(&vc, g.prompt, g.nprompt, starts, SRV_MAX_IMAGES + 1, &n) || n != g.nimages) abort();
        for (int i = 0; i < g.nimages; i++)
            if (g.images[i].w < 1 || g.images[i].h < 1 || !g.images[i].rgb) abort();
        srv_gen_free(&g);
    } else if (e.status < 400 || !e.message[0]) {
        abort();
    }
    g3_error_clear();
    return 0;
}
