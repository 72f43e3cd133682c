// fuzz_safetensors.c: libFuzzer harness for the safetensors reader: any bytes as a file must
// open cleanly or fail with a message, and every tensor handed out must lie inside the file.
// The file is an in-memory one (memfd) reached by its /proc path: no disk and no directory
// entry per execution.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/safetensors.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    fd = memfd_create("fuzz.safetensors", 0);
    if (fd < 0) { perror("memfd_create"); exit(1); }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) abort();
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
    return 0;
}
