// sfp8.c: the scalar reference codec of gemma.cpp's SFP (see sfp8.h). Plain arithmetic from the
// definition, no bit tricks: the fast kernels (kernels/cpu/sfp8_dot_*.c) are held against it.
#include "sfp8.h"

#include <math.h>

float g3_sfp8_decode(uint8_t b) {
    const int c = b & 0x7f;
    float v;
    if (c == 0) v = 0.0f;
    else if (c < 64) v = ldexpf(1.0f + (float)(c & 3) / 4.0f, (c >> 2) - 23);
    else v = ldexpf(1.0f + (float)(c & 7) / 8.0f, (c >> 3) - 15);
    return (b & 0x80) && c ? -v : v;
}

// The 128 magnitudes in code order (ascending), from the definition.
static void mag_table(float mag[128]) {
    for (int c = 0; c < 128; c++) mag[c] = g3_sfp8_decode((uint8_t)c);
}

static uint8_t encode(const float mag[128], float x) {
    if (isnan(x)) return 0;
    const float a = fabsf(x);
    int c;
    if (a >= G3_SFP8_MAX) c = 127;
    else {
        int lo = 0, hi = 127;  // mag[lo] <= a < mag[hi]
        while (hi - lo > 1) {
            const int mid = (lo + hi) / 2;
            if (mag[mid] <= a) lo = mid;
            else hi = mid;
        }
        const double dlo = (double)a - mag[lo], dhi = (double)mag[hi] - a;  // exact in double
        c = dlo < dhi ? lo : dhi < dlo ? hi : (lo & 1 ? hi : lo);
    }
    return c == 0 ? 0 : (uint8_t)(c | (signbit(x) ? 0x80 : 0));
}

uint8_t g3_sfp8_encode(float x) {
    float mag[128];
    mag_table(mag);
    return encode(mag, x);
}

void g3_sfp8_to_f32(float *dst, const void *src, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = g3_sfp8_decode(s[i]);
}

void g3_sfp8_from_f32(void *dst, const float *src, int64_t n) {
    uint8_t *d = dst;
    float mag[128];
    mag_table(mag);
    for (int64_t i = 0; i < n; i++) d[i] = encode(mag, src[i]);
}
