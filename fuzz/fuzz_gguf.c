// fuzz_gguf.c: libFuzzer harness for the GGUF reader (io/gguf.c) and what the weight source
// builds on it (the config from the metadata): any bytes must parse cleanly or fail with a
// message; every KV and tensor handed out must lie inside the input; the config text, when
// one comes out, must parse or fail cleanly.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/gguf.h"
#include "io/gguf_gemma.h"
#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a private copy, so that a read one byte past the input is ASan's to see
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    GGUFFile g;
    if (gguf_parse(&g, copy, size, "fuzz.gguf") == 0) {
        const uint8_t *end = copy + size;
        for (int i = 0; i < g.nkv; i++) {
            const GGUFKV *kv = &g.kv[i];
            if (kv->value < copy || kv->value > end) abort();
            if (kv->type == GGUF_STRING && kv->str_len > (uint64_t)(end - kv->value)) abort();
            if (gguf_kv(&g, kv->key) == NULL) abort();
        }
        for (int i = 0; i < g.ntensors; i++) {
            const GGUFTensor *t = &g.tensors[i];
            const uint8_t *p = t->data;
            if (p < copy || t->nbytes < 0 || (uint64_t)t->nbytes > (uint64_t)(end - p)) abort();
            volatile uint8_t sum = 0;
            for (int64_t k = 0; k < t->nbytes; k++) sum ^= p[k];
            if (gguf_tensor(&g, t->name) == NULL) abort();
        }
        char arch[16];
        char *text;
        size_t len;
        if (gguf_gemma_arch(&g, arch, sizeof arch) == 0 && gguf_gemma_config_json(&g, arch, 1000, G3_F32, &text, &len) == 0) {
            G3Config c;
            g3_config_parse(&c, text, len, "fuzz.gguf");
            free(text);
        }
        gguf_close(&g);
    }
    free(copy);
    return 0;
}
