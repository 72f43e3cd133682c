// hooks.c: the names of the hook sites (TransformerLens spelling), parsing them back, and
// the '*' glob that selects sites by pattern. The hooks themselves fire in pass.c.
#include "hooks.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/base.h"

// In G3HookSite order. Layered sites are spelt without their "blocks.{i}." prefix.
static const char *const SUFFIX[G3_HOOK_NSITES] = {
    "hook_embed",           "hook_resid_pre",      "ln1.hook_normalized", "attn.hook_q",       "attn.hook_k",
    "attn.hook_v",          "attn.hook_rot_q",     "attn.hook_rot_k",     "attn.hook_attn_scores",
    "attn.hook_pattern",    "attn.hook_z",         "hook_attn_out",       "hook_resid_mid",    "ln2.hook_normalized",
    "mlp.hook_pre",         "mlp.hook_pre_linear", "mlp.hook_post",       "hook_mlp_out",      "hook_resid_post",
    "ln_final.hook_normalized", "logits",  "ln1_post.hook_normalized", "ln2_post.hook_normalized",
};

const char *g3_hook_site_suffix(G3HookSite site) {
    return (unsigned)site < G3_HOOK_NSITES ? SUFFIX[site] : "?";
}

int g3_hook_site_layered(G3HookSite site) {
    return (unsigned)site < G3_HOOK_NSITES && site != G3_HOOK_EMBED && site != G3_HOOK_LN_FINAL && site != G3_HOOK_LOGITS;
}

char *g3_hook_name(char *buf, int cap, G3HookSite site, int layer) {
    if (g3_hook_site_layered(site)) snprintf(buf, (size_t)cap, "blocks.%d.%s", layer, g3_hook_site_suffix(site));
    else snprintf(buf, (size_t)cap, "%s", g3_hook_site_suffix(site));
    return buf;
}

int g3_hook_parse(const char *name, G3HookSite *site, int *layer) {
    const char *rest = name;
    int l = -1;
    if (!strncmp(name, "blocks.", 7)) {
        const char *p = name + 7;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || *p == '-' || *p == '+' || errno || v > INT_MAX || *end != '.')
            return g3_errorf("hook name '%s': expected blocks.<layer>.<site>", name);
        l = (int)v;
        rest = end + 1;
    }
    for (int i = 0; i < G3_HOOK_NSITES; i++)
        if (!strcmp(rest, SUFFIX[i]) && g3_hook_site_layered((G3HookSite)i) == (l >= 0)) {
            *site = (G3HookSite)i;
            *layer = l;
            return 0;
        }
    return g3_errorf("unknown hook name '%s' (sites: hook_embed, blocks.<i>.{hook_resid_pre, ln1.hook_normalized, "
                     "attn.hook_{q,k,v,rot_q,rot_k,attn_scores,pattern,z}, hook_attn_out, hook_resid_mid, "
                     "ln1_post.hook_normalized, ln2.hook_normalized, mlp.hook_{pre,pre_linear,post}, hook_mlp_out, "
                     "ln2_post.hook_normalized, hook_resid_post}, "
                     "ln_final.hook_normalized, logits)", name);
}

// Iterative glob with one backtrack point (the last '*'): linear in practice, no recursion.
int g3_hook_match(const char *pattern, const char *name) {
    const char *p = pattern, *n = name, *star = NULL, *resume = NULL;
    while (*n) {
        if (*p == '*') { star = p++; resume = n; }
        else if (*p == *n) { p++; n++; }
        else if (star) { p = star + 1; n = ++resume; }
        else return 0;
    }
    while (*p == '*') p++;
    return *p == 0;
}
