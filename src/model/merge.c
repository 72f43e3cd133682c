// merge.c: writing a model with a LoRA adapter merged into its weights (adapter.h), as a Hub
// folder that any loader reads (ours, transformers). Each adapted weight is widened to f32,
// gets scale * B . A added and is rounded back to its stored type; every other tensor of the
// checkpoint is copied byte for byte under its stored name. Weights stream through the
// writer one tensor at a time, so a large model never sits in memory whole.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../base/base.h"
#include "../io/safetensors.h"
#include "adapter.h"

typedef struct {
    const G3Model *m;
    const G3Adapter *a;
    G3SourceTensor src;     // the stored tensor
    const G3LoraModule *mod;  // NULL: copied as stored
} MergeItem;

static int fill(void *ctx, const void *out, void *buf) {
    (void)out;
    const MergeItem *it = ctx;
    if (!it->mod) {
        memcpy(buf, it->src.data, (size_t)it->src.nbytes);
        return 0;
    }
    const G3TypeTraits *tt = g3_type(it->src.type);
    if (!tt || !tt->from_f32) return g3_errorf("tensor '%s': no converter back to %s", it->src.name, g3_dtype_name(it->src.type));
    const int64_t n = it->mod->B.rows * it->mod->A.cols;
    float *f = it->src.type == G3_F32 ? buf : g3_malloc((size_t)n * sizeof(float));
    if (!f) return -1;
    g3_to_f32(f, it->src.data, it->src.type, (size_t)n);
    g3_lora_merge_f32(f, it->mod, it->a->scale);
    if (f != buf) {
        tt->from_f32(buf, f, n);
        free(f);
    }
    return 0;
}

// The same folder, by identity (so "m" and "m/" and a symlink are caught alike).
static int same_dir(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

int g3_adapter_merge_save(const G3Model *m, const G3Adapter *a, const char *out_dir, int force) {
    if (!m->src) return g3_errorf("the model has no checkpoint to merge into (built in memory)");
    if (same_dir(m->dir, out_dir)) return g3_errorf("%s is the model's own folder: write the merged model elsewhere", out_dir);
    static const char *held[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    char path[4200];
    for (size_t i = 0; i < G3_ARRAY_LEN(held) && !force; i++)
        if (!g3_path_join(path, sizeof path, out_dir, held[i]) && g3_file_exists(path))
            return g3_errorf("%s already holds a model (%s): give --force to replace it", out_dir, held[i]);
    // config.json as the model has it, so the merged folder keeps every Hub field
    char cfg_in[4200];
    if (g3_path_join(cfg_in, sizeof cfg_in, m->dir, "config.json")) return -1;
    size_t cfg_len;
    char *cfg = g3_read_file(cfg_in, &cfg_len);
    if (!cfg) return -1;
    const G3WeightSource *src = m->src;
    const int n = src->count(src);
    MergeItem *items = g3_calloc((size_t)(n > 0 ? n : 1), sizeof *items);
    STWriter w = {0};
    int rc = -1, merged = 0;
    if (!items || g3_mkdir_p(out_dir)) goto out;
    for (int i = 0; i < n; i++) {
        MergeItem *it = &items[i];
        it->m = m;
        it->a = a;
        if (src->at(src, i, &it->src)) goto out;
        // the adapted weight whose stored name this is, if any
        for (int l = 0; l < m->cfg.layers && !it->mod; l++)
            for (int r = 0; r < W_PER_LAYER && !it->mod; r++) {
                const G3LoraModule *mod = g3_adapter_module(a, l, r);
                G3SourceTensor s;
                if (mod && g3_model_source_tensor(m, m->t[m->layer_idx[l][r]].name, &s) == 0 && !strcmp(s.name, it->src.name))
                    it->mod = mod;
            }
        merged += it->mod != NULL;
        if (st_writer_add_fill(&w, it->src.name, it->src.type, it->src.ndim, it->src.shape, fill, it)) goto out;
    }
    if (merged != a->nmodules) {
        g3_errorf("%d of the adapter's %d modules found in %s", merged, a->nmodules, src->path);
        goto out;
    }
    // weights first, config last: a folder with a config.json is a complete model
    if (st_writer_write_sharded(&w, out_dir, (size_t)5 << 30)) goto out;
    if (g3_path_join(path, sizeof path, out_dir, "config.json") || g3_write_file_atomic(path, cfg, cfg_len)) goto out;
    // what makes the folder usable on its own (generation defaults, tokenizer), when present
    static const char *extras[] = {"generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                   "special_tokens_map.json"};
    for (size_t i = 0; i < G3_ARRAY_LEN(extras); i++) {
        char from[4200];
        if (g3_path_join(from, sizeof from, m->dir, extras[i]) || !g3_file_exists(from)) continue;
        size_t len;
        char *text = g3_read_file(from, &len);
        int bad = !text || g3_path_join(path, sizeof path, out_dir, extras[i]) || g3_write_file_atomic(path, text, len);
        free(text);
        if (bad) goto out;
    }
    rc = 0;
out:
    st_writer_free(&w);
    free(items);
    free(cfg);
    return rc;
}
