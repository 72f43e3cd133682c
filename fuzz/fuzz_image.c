// fuzz_image.c: libFuzzer harness for image decoding (io/image.c: PNG through libpng, JPEG
// through libjpeg-turbo, our wrappers' error handling and size checks) and the resize behind
// --image (vision/preprocess.c): any bytes must decode into a consistent picture or fail with
// a message; a decoded picture must be within the size limit, every pixel readable, and its
// resize to the tower's input (and an upscale) must stay in bounds.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "io/image.h"
#include "vision/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // a private copy, so that a read one byte past the input is ASan's to see
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    G3Image im;
    if (g3_image_decode(&im, copy, size, "fuzz.img") == 0) {
        if (im.w < 1 || im.h < 1 || (uint64_t)im.w * im.h > G3_IMAGE_MAX_PIXELS || !im.rgb) abort();
        volatile uint8_t sum = 0;
        for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) sum ^= im.rgb[i];
        // shrink to a small square (the tower's input is 896; 28 keeps the fuzzer fast) and grow
        uint8_t out[28 * 28 * 3], up[3 * 5 * 3];
        if (g3_image_resize(out, 28, 28, im.rgb, im.w, im.h)) abort();
        if (im.w <= 3 && im.h <= 5 && g3_image_resize(up, 3, 5, im.rgb, im.w, im.h)) abort();
        g3_image_free(&im);
    } else if (!g3_error_is_set() || im.rgb) {
        abort();  // a failure always says why, and leaves nothing behind
    }
    g3_error_clear();
    free(copy);
    return 0;
}
