// image.h: PNG and JPEG files to 8-bit RGB pixels, through libpng and libjpeg-turbo, decoded
// the way Pillow decodes them (what Hugging Face's image processors see): 16-bit samples keep
// their high byte, palettes and gray expand to RGB, gamma chunks are ignored, and an alpha
// channel is composited onto white with Pillow's integer arithmetic (transformers'
// convert_to_rgb). What this is not: resizing or normalizing (vision/preprocess.h), EXIF
// orientation (not applied, as the processor does not), CMYK JPEGs (refused by name).
#ifndef G3_IMAGE_H
#define G3_IMAGE_H

#include <stddef.h>
#include <stdint.h>

// The largest image accepted, in pixels (Pillow's decompression-bomb threshold, 89,478,485):
// a bigger one is refused before its pixels are allocated.
enum { G3_IMAGE_MAX_PIXELS = 89478485 };

typedef struct {
    int w, h;
    uint8_t *rgb;  // [h][w][3], row-major
} G3Image;

// Decodes a PNG or JPEG held in memory (the format from its first bytes). name is used in
// messages ("photo.jpg: truncated JPEG data"). 0, or -1 with *im zeroed.
int g3_image_decode(G3Image *im, const uint8_t *data, size_t n, const char *name);
// Reads and decodes the file at path; errors name it.
int g3_image_load(G3Image *im, const char *path);
void g3_image_free(G3Image *im);
// The picture as a PNG file in memory (malloc'd *out of *n bytes): the analysis report's
// image view. 0 or -1.
int g3_image_encode_png(const G3Image *im, uint8_t **out, size_t *n);

#endif
