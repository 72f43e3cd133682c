// fixtures.h: helpers for tests that compare against tests/fixtures (reference outputs of
// Hugging Face transformers in float64). Header-only; each test includes it once.
#ifndef G3_TEST_FIXTURES_H
#define G3_TEST_FIXTURES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "io/safetensors.h"

__attribute__((unused)) static const char *FIXTURES[] = {"gemma3-tiny-f32", "gemma3-tiny-bf16", "gemma3-tiny-multimodal-layout", "gemma2-tiny-f32"};

// Opens tests/fixtures/NAME/expected.safetensors; exits the test on failure (a missing
// fixture is a broken checkout, not a result).
static inline void fixture_open(STSet *st, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "tests/fixtures/%s/expected.safetensors", name);
    if (st_open(st, p)) { fprintf(stderr, "%s\n", g3_error()); exit(2); }
}

static inline const STTensor *fixture_get(const STSet *st, const char *name) {
    const STTensor *t = st_find(st, name);
    if (!t) { fprintf(stderr, "fixture lacks %s\n", name); exit(2); }
    return t;
}

// Reads an I64 tensor into int32 ids; returns the count.
static inline int fixture_ids(const STSet *st, const char *name, int32_t **out) {
    const STTensor *t = fixture_get(st, name);
    int n = (int)st_numel(t);
    *out = malloc((size_t)n * sizeof **out);
    for (int i = 0; i < n; i++) (*out)[i] = (int32_t)((const int64_t *)t->data)[i];
    return n;
}

#endif
