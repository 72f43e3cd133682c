// fuzz_tok_json.c: libFuzzer harness for the tokenizer.json loader: any bytes load into a
// consistent tokenizer or fail with a message; a loaded one encodes and decodes safely.
#include <stdlib.h>

#include "fuzz_tok_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    G3Tokenizer t;
    memset(&t, 0, sizeof t);
    if (tok_load_json_mem(&t, (const char *)data, size) == 0 && tok_index_rest(&t) == 0)
        fuzz_tok_exercise(&t, "Hello  world <b>x</b>\n\n\xE2\x96\x81\xE2\x96\x81 caf\xC3\xA9 \xFF", 36);
    tok_free_contents(&t);
    return 0;
}
