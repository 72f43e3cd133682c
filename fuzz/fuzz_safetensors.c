// fuzz_safetensors.c: libFuzzer harness for the safetensors reader: any bytes as a file must
// open cleanly or fail with a message, and every tensor handed out must lie inside the file.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/fuzz_st_%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    STSet s;
    if (st_open(&s, path) == 0) {
        for (int i = 0; i < s.ntensors; i++) {
            const STTensor *t = &s.tensors[i];
            const char *base = s.maps[t->file];
            if ((const char *)t->data < base || (const char *)t->data + t->nbytes > base + s.map_sizes[t->file]) abort();
            volatile uint8_t sum = 0;
            for (size_t k = 0; k < t->nbytes; k++) sum ^= ((const uint8_t *)t->data)[k];
            if (st_find(&s, t->name) == NULL) abort();
        }
        st_close(&s);
    }
    unlink(path);
    return 0;
}
