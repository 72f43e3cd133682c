// fuzz_hook_names.c: libFuzzer harness for the hook names a user gives `trace --hooks` (and the
// library's parsers): the text model's (model/hooks.c) and the vision tower's (vision/vhooks.c).
// The input's first line is a name, the second a glob pattern. A name that parses has a
// canonical spelling that parses back to the same site and layer; the glob matcher terminates
// and agrees with the obvious cases; choosing vision sites by the pattern stays within the
// tower's (site, layer) pairs and fires only sites whose names the pattern matches.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"
#include "model/hooks.h"
#include "vision/vision.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *name = buf, *nl = strchr(buf, '\n'), *pat = nl ? nl + 1 : buf;
    if (nl) *nl = 0;
    char out[128];
    G3HookSite s, s2;
    int l, l2;
    if (g3_hook_parse(name, &s, &l) == 0) {
        g3_hook_name(out, sizeof out, s, l);
        if (g3_hook_parse(out, &s2, &l2) || s2 != s || l2 != l) abort();
    } else if (!*g3_error()) {
        abort();  // a refusal says why
    }
    G3VisionSite v, v2;
    if (g3_vision_hook_parse(name, &v, &l) == 0) {
        g3_vision_hook_name(out, sizeof out, v, l);
        if (g3_vision_hook_parse(out, &v2, &l2) || v2 != v || l2 != l) abort();
    } else if (!*g3_error()) {
        abort();
    }
    if (!g3_hook_match("*", name)) abort();
    if (!strchr(name, '*') && !g3_hook_match(name, name)) abort();  // a name without '*' matches itself
    const int hit = g3_hook_match(pat, name);
    (void)hit;
    uint32_t sites;
    uint64_t layers;
    const char *pats[1] = {pat};
    const int n = g3_vision_hook_select(pats, 1, 27, &sites, &layers);
    if (n < 0 || n > 3 + 15 * 27 || (n == 0) != (sites == 0) || (layers >> 27) != 0) abort();
    for (int i = 0; i < G3_VH_NSITES; i++)  // every chosen site has a layer (or no layers) whose name the pattern matches
        if (sites >> i & 1) {
            int any = 0;
            for (int k = g3_vision_site_layered((G3VisionSite)i) ? 0 : -1; k < (g3_vision_site_layered((G3VisionSite)i) ? 27 : 0) && !any; k++)
                any = g3_hook_match(pat, g3_vision_hook_name(out, sizeof out, (G3VisionSite)i, k));
            if (!any) abort();
        }
    free(buf);
    return 0;
}
