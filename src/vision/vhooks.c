// vhooks.c: the names of the vision tower's hook sites (vision.h: the text model's spelling,
// model/hooks.h, under "vision."), parsing them back, and choosing sites by glob.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"
#include "../model/hooks.h"
#include "vision.h"

// In G3VisionSite order; layered sites without their "blocks.{i}." prefix.
static const char *const SUFFIX[G3_VH_NSITES] = {
    "hook_embed",          "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q",     "attn.hook_k",         "attn.hook_v",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z",     "hook_attn_out",   "hook_resid_mid",      "ln2.hook_normalized",
    "mlp.hook_pre",        "mlp.hook_post",  "hook_mlp_out",        "hook_resid_post", "hook_post_norm",      "hook_soft_tokens",
};

const char *g3_vision_site_suffix(G3VisionSite site) { return (unsigned)site < G3_VH_NSITES ? SUFFIX[site] : "?"; }

int g3_vision_site_layered(G3VisionSite site) {
    return (unsigned)site < G3_VH_NSITES && site != G3_VH_EMBED && site != G3_VH_POST_NORM && site != G3_VH_SOFT_TOKENS;
}

char *g3_vision_hook_name(char *buf, int cap, G3VisionSite site, int layer) {
    if (g3_vision_site_layered(site)) snprintf(buf, (size_t)cap, "vision.blocks.%d.%s", layer, SUFFIX[site]);
    else snprintf(buf, (size_t)cap, "vision.%s", g3_vision_site_suffix(site));
    return buf;
}

int g3_vision_hook_parse(const char *name, G3VisionSite *site, int *layer) {
    if (strncmp(name, "vision.", 7)) return g3_errorf("hook name '%s': the vision tower's sites start with 'vision.'", name);
    const char *rest = name + 7;
    int l = -1;
    if (!strncmp(rest, "blocks.", 7)) {
        const char *p = rest + 7;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || errno || v > INT_MAX || *end != '.')
            return g3_errorf("hook name '%s': expected vision.blocks.<layer>.<site>", name);
        l = (int)v;
        rest = end + 1;
    }
    for (int i = 0; i < G3_VH_NSITES; i++)
        if (!strcmp(rest, SUFFIX[i]) && g3_vision_site_layered((G3VisionSite)i) == (l >= 0)) {
            *site = (G3VisionSite)i;
            *layer = l;
            return 0;
        }
    return g3_errorf("unknown vision hook name '%s' (sites: vision.hook_embed, vision.blocks.<i>.{hook_resid_pre, "
                     "ln1.hook_normalized, attn.hook_{q,k,v,attn_scores,pattern,z}, hook_attn_out, hook_resid_mid, "
                     "ln2.hook_normalized, mlp.hook_{pre,post}, hook_mlp_out, hook_resid_post}, vision.hook_post_norm, "
                     "vision.hook_soft_tokens)",
                     name);
}

int g3_vision_hook_select(const char *const *pats, int n, int layers, uint32_t *sites, uint64_t *lmask) {
    char name[96];
    int hits = 0;
    *sites = 0;
    *lmask = 0;
    for (int s = 0; s < G3_VH_NSITES; s++) {
        const int layered = g3_vision_site_layered((G3VisionSite)s);
        for (int l = layered ? 0 : -1; l < (layered ? layers : 0); l++) {
            g3_vision_hook_name(name, sizeof name, (G3VisionSite)s, l);
            int hit = 0;
            for (int p = 0; p < n && !hit; p++) hit = g3_hook_match(pats[p], name);
            if (!hit) continue;
            hits++;
            *sites |= 1u << s;
            if (l >= 0) *lmask |= l < 64 ? 1ull << l : ~0ull;
        }
    }
    return hits;
}
