// fuzz_gguf_tok.c: libFuzzer harness for the tokenizer from GGUF metadata (tokenizer/load_gguf.c
// on io/gguf.c): any bytes parse and load into a consistent tokenizer or fail with a message; a
// loaded one encodes and decodes safely.
#include <stdlib.h>

#include "fuzz_tok_common.h"
#include "io/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);  // private, so reads past the end are ASan's to see
    if (!copy) return 0;
    memcpy(copy, data, size);
    GGUFFile g;
    if (gguf_parse(&g, copy, size, "fuzz.gguf") == 0) {
        G3Tokenizer t;
        memset(&t, 0, sizeof t);
        if (tok_load_gguf(&t, &g) == 0 && tok_index_rest(&t) == 0)
            fuzz_tok_exercise(&t, "Hello  world <b>x</b>\n\n\xE2\x96\x81\xE2\x96\x81 caf\xC3\xA9 \xFF", 36);
        tok_free_contents(&t);
        gguf_close(&g);
    }
    free(copy);
    return 0;
}
