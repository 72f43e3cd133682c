// test_trace.c: the .npz writer and `gemma3 trace`, read back by numpy (tests/check_npz.py,
// with Debian's python3 and python3-numpy, which scripts/deps.sh installs: without numpy this
// test fails, it does not skip). The writer: shapes, dtypes and values, stored, deflated and
// in zip64 form, streamed in pieces, and an unfinished archive that leaves no file. trace: a
// batch of the fixture's prompt and a prefix of it, against the reference within 1e-5 (stored
// and --compress), with --generate against the greedy ids; text prompts from a prompts file
// on a model with Gemma's real vocabulary; unknown sites.
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "fixtures.h"
#include "io/npz.h"
#include "model/init.h"

static const char *python(void) { return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3"; }

static int write_unit(const char *path, int compress, int zip64) {
    G3Npz z;
    if (g3_npz_open(&z, path, compress)) return -1;
    z.force_zip64 = zip64;
    float a[60], *big = malloc(300000 * sizeof(float));
    int32_t ids[7];
    for (int i = 0; i < 60; i++) a[i] = i * 0.5f - 3;
    for (int i = 0; i < 7; i++) ids[i] = i * 7 - 100;
    for (int i = 0; i < 300000; i++) big[i] = (float)(i % 1000);
    int64_t sa[3] = {3, 4, 5}, si[1] = {7}, se[2] = {0, 3}, sb[2] = {1000, 300};
    float sc = 2.5f;
    int rc = g3_npz_add(&z, "a", G3_NPZ_F32, 3, sa, a) || g3_npz_add(&z, "ids", G3_NPZ_I32, 1, si, ids) ||
             g3_npz_add(&z, "empty", G3_NPZ_F32, 2, se, a) || g3_npz_add(&z, "scalar", G3_NPZ_F32, 0, NULL, &sc);
    // streamed in uneven pieces
    rc = rc || g3_npz_begin(&z, "big", G3_NPZ_F32, 2, sb);
    for (long off = 0, k = 1; !rc && off < 300000; off += k, k = k * 3 + 1)
        rc = g3_npz_write(&z, big + off, (size_t)G3_MIN(k, 300000 - off) * sizeof(float));
    rc = rc || g3_npz_end(&z);
    free(big);
    if (rc) { g3_npz_abort(&z); return -1; }
    return g3_npz_close(&z);
}

static void test_writer(const char *tmp) {
    char p[512];
    const char *kinds[] = {"stored", "deflated", "zip64"};
    for (int k = 0; k < 3; k++) {
        snprintf(p, sizeof p, "%s/unit_%s.npz", tmp, kinds[k]);
        CHECK(write_unit(p, k == 1, k == 2) == 0, "%s: %s", kinds[k], g3_error());
        CHECK(sh("%s tests/check_npz.py unit %s", python(), p) == 0, "numpy cannot read the %s .npz", kinds[k]);
    }
    // misuse is an error, and an aborted or failed archive leaves nothing behind
    snprintf(p, sizeof p, "%s/bad.npz", tmp);
    G3Npz z;
    float x[4] = {0};
    int64_t s2[1] = {2};
    CHECK(g3_npz_open(&z, p, 0) == 0, "%s", g3_error());
    CHECK(g3_npz_begin(&z, "x", G3_NPZ_F32, 1, s2) == 0, "%s", g3_error());
    CHECK(g3_npz_write(&z, x, sizeof x) == -1, "more bytes than the shape accepted");
    CHECK(g3_npz_close(&z) == -1 && !g3_file_exists(p), "a failed archive was committed");
    CHECK(g3_npz_open(&z, "/nonexistent-dir/x.npz", 0) == -1, "opened in a missing folder");
}

int main(void) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    CHECK(sh("%s -c 'import numpy' 2>/dev/null", python()) == 0, "%s lacks numpy: run scripts/deps.sh (apt-get install python3-numpy)", python());
    char tmp[] = "/tmp/g3traceXXXXXX";
    if (!mkdtemp(tmp)) return 2;
    test_writer(tmp);

    // trace of the fixture's prompt and of its first 17 tokens, as one batch
    const char *fx = "tests/fixtures/gemma3-tiny-f32";
    STSet exp;
    fixture_open(&exp, "gemma3-tiny-f32");
    int32_t *ids, *greedy;
    int T = fixture_ids(&exp, "input_ids", &ids), N = fixture_ids(&exp, "greedy_ids", &greedy);
    char list[4096];
    int n = 0;
    for (int i = 0; i < T; i++) n += snprintf(list + n, sizeof list - (size_t)n, "%s%d", i ? "," : "", ids[i]);
    n += snprintf(list + n, sizeof list - (size_t)n, ";");
    for (int i = 0; i < 17; i++) n += snprintf(list + n, sizeof list - (size_t)n, "%s%d", i ? "," : "", ids[i]);
    const char *hooks = "hook_embed,blocks.*.attn.hook_pattern,blocks.*.attn.hook_attn_scores,blocks.*.hook_attn_out,"
                        "blocks.*.hook_mlp_out,blocks.*.hook_resid_post,ln_final.hook_normalized,logits";
    const char *modes[] = {"", "--compress"};
    for (int k = 0; k < 2; k++)
        for (int g = 0; g < 2; g++) {
            int ngen = g ? G3_MIN(N, 4) : 0;
            char out[600];
            snprintf(out, sizeof out, "%s/acts_%d_%d.npz", tmp, k, g);
            CHECK(sh("%s trace --model %s --ids '%s' --hooks '%s' --out %s --exact --generate %d %s 2>/dev/null", bin, fx, list, hooks, out, ngen, modes[k]) == 0,
                  "trace %s --generate %d failed", modes[k], ngen);
            CHECK(sh("%s tests/check_npz.py trace %s %s %d", python(), out, fx, ngen) == 0, "trace %s --generate %d: the .npz is wrong", modes[k], ngen);
        }
    // the sidecar is JSON that names the tokens and arrays
    char side[600];
    snprintf(side, sizeof side, "%s/acts_0_1.json", tmp);
    Json j;
    if (json_parse_file(&j, side) == 0) {
        const JsonNode *seqs = json_get(json_root(&j), "sequences"), *arrs = json_get(json_root(&j), "arrays");
        CHECK(seqs && seqs->count == 2 && arrs && arrs->count == 3 + 3 + 6 * 5, "sidecar: %zu sequences, %zu arrays", seqs ? (size_t)seqs->count : 0,
              arrs ? (size_t)arrs->count : 0);
        CHECK(json_get(json_root(&j), "config") && json_is_number(json_get(json_get(json_root(&j), "config"), "layers")), "sidecar: no config");
        json_free(&j);
    } else {
        CHECK(0, "sidecar: %s", g3_error());
    }
    // unknown sites: exit 1 with the valid names; nothing written
    CHECK(sh("%s trace --model %s --ids 2,5 --hooks 'blocks.*.hook_resid_post,blocks.9.hook_z' --out %s/x.npz 2>&1 | grep -q 'valid names: hook_embed, blocks.{0..5}'",
             bin, fx, tmp) == 0, "an unknown pattern is not explained");
    char xp[600];
    snprintf(xp, sizeof xp, "%s/x.npz", tmp);
    CHECK(sh("%s trace --model %s --ids 2,5 --hooks 'hook_zzz' --out %s 2>/dev/null", bin, fx, xp) != 0 && !g3_file_exists(xp), "unknown site accepted");
    CHECK(sh("%s trace --model %s --ids 2,5 --out %s/x.npz 2>/dev/null", bin, fx, tmp) != 0, "--hooks not required");
    CHECK(sh("%s trace --help | grep -q -- --prompts-file", bin) == 0, "trace --help");

    // text prompts from a prompts file, on a tiny model with Gemma's vocabulary and tokenizer
    char md[600], pf[600], out[600];
    snprintf(md, sizeof md, "%s/model", tmp);
    snprintf(pf, sizeof pf, "%s/prompts.txt", tmp);
    snprintf(out, sizeof out, "%s/text.npz", tmp);
    G3Config c;
    g3_config_preset(&c, "tiny");
    c.vocab = 262144;
    c.hidden = 32; c.inter = 64; c.layers = 2; c.heads = 2; c.kv_heads = 1; c.head_dim = 16; c.query_pre_attn_scalar = 16;
    CHECK(g3_init_checkpoint(&c, md, G3_BF16, 1, 0.5f, 1 << 30, 0) == 0, "%s", g3_error());
    CHECK(sh("cp tests/data/tokenizer/tokenizer.model %s/ && printf 'Hello world\\nThe sky is blue because\\n' > %s", md, pf) == 0, "setup");
    CHECK(sh("%s trace --model %s --prompts-file %s --hooks 'blocks.1.hook_resid_post,blocks.0.attn.hook_z' --out %s --generate 3 2>/dev/null", bin, md, pf, out) == 0,
          "trace --prompts-file failed");
    CHECK(sh("%s -c \"import numpy as np, json; z = np.load('%s'); s = json.load(open('%s/text.json')); "
             "L = [len(q['ids']) for q in s['sequences']]; "
             "assert list(z['lengths']) == L and z['blocks.1.hook_resid_post'].shape == (2, max(L), 32), (z['lengths'], L); "
             "assert z['blocks.0.attn.hook_z'].shape == (2, max(L), 2, 16); "
             "assert s['sequences'][0]['pieces'][:3] == ['<bos>', 'Hello', '\u2581world'], s['sequences'][0]['pieces']; "
             "assert s['sequences'][1]['prompt'] == 'The sky is blue because' and s['generated'] == 3\"",
             python(), out, tmp) == 0, "trace --prompts-file: wrong arrays or sidecar");
    CHECK(sh("%s trace --model %s --prompt 'Hi' --hooks logits --out %s/p.npz 2>/dev/null && %s -c \"import numpy as np; "
             "assert np.load('%s/p.npz')['logits'].shape == (1, 2, 262144)\"", bin, md, tmp, python(), tmp) == 0, "trace --prompt");
    sh("rm -rf %s", tmp);
    free(ids); free(greedy);
    st_close(&exp);
    return check_done();
}
