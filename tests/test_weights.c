// test_weights.c: weight sources and typed weights. A source enumerates and finds every
// tensor of every fixture (single files, the multimodal layouts, a sharded set), with types,
// shapes and byte counts that agree with the file's own header; the model's tensors carry
// row_bytes / nbytes and a G3Weight handle; and a weight of a type no CPU kernel reads (I32,
// F64, U8 in place of a projection, or of a norm) is refused by the loader, by g3_model_set
// and by the CLI, with a message naming the tensor and the type.
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "check.h"
#include "io/source.h"
#include "model/init.h"
#include "model/model.h"

static char tmpdir[256];

// The tensors a safetensors file's header lists (name -> dtype, element count), read with
// the JSON reader alone: the oracle the source is checked against.
typedef struct { char name[160]; char dtype[8]; int64_t numel; int seen; } HdrEntry;
static int read_header(const char *path, HdrEntry **out) {
    size_t n;
    char *b = g3_read_file(path, &n);
    if (!b) { fprintf(stderr, "%s\n", g3_error()); exit(2); }
    uint64_t hl;
    memcpy(&hl, b, 8);
    Json j;
    if (json_parse(&j, b + 8, hl)) { fprintf(stderr, "%s: %s\n", path, g3_error()); exit(2); }
    const JsonNode *root = json_root(&j);
    HdrEntry *e = calloc(root->count + 1, sizeof *e);
    int k = 0;
    JSON_FOREACH(m, root) {
        if (!strcmp(m->key, "__metadata__")) continue;
        snprintf(e[k].name, sizeof e[k].name, "%s", m->key);
        const JsonNode *dt = json_get(m, "dtype"), *sh = json_get(m, "shape");
        snprintf(e[k].dtype, sizeof e[k].dtype, "%.*s", (int)dt->str_len, dt->str);
        e[k].numel = 1;
        JSON_FOREACH(x, sh) e[k].numel *= (int64_t)x->num;
        k++;
    }
    json_free(&j);
    free(b);
    *out = e;
    return k;
}

// The source of `path` (a folder or a file) against the headers of `files`.
static void check_source(const char *path, const char *const *files, int nfiles) {
    G3WeightSource *s;
    if (g3_source_open(&s, path)) { CHECK(0, "%s: %s", path, g3_error()); return; }
    CHECK(!strcmp(s->kind, "safetensors") && s->nfiles == nfiles, "%s: kind %s, %d files", path, s->kind, s->nfiles);
    HdrEntry *all = NULL;
    int n = 0;
    for (int f = 0; f < nfiles; f++) {
        HdrEntry *e;
        int k = read_header(files[f], &e);
        all = realloc(all, (size_t)(n + k + 1) * sizeof *all);
        memcpy(all + n, e, (size_t)k * sizeof *e);
        n += k;
        free(e);
    }
    CHECK(s->count(s) == n, "%s: %d tensors, the headers list %d", path, s->count(s), n);
    int bad = 0;
    for (int i = 0; i < s->count(s); i++) {
        G3SourceTensor t, u;
        if (s->at(s, i, &t)) { bad++; continue; }
        HdrEntry *h = NULL;
        for (int k = 0; k < n && !h; k++) if (!strcmp(all[k].name, t.name)) h = &all[k];
        int64_t numel = 1;
        for (int d = 0; d < t.ndim; d++) numel *= t.shape[d];
        if (!h || h->seen++ || strcmp(h->dtype, g3_dtype_name(t.type)) || h->numel != numel || t.nbytes != g3_type_bytes(t.type, numel) ||
            !t.data || !t.file) {
            if (bad++ < 3) CHECK(0, "%s: tensor %d '%s' disagrees with the header", path, i, t.name);
            continue;
        }
        // find gives the same tensor back
        if (s->find(s, t.name, &u) != 0 || u.data != t.data || u.type != t.type || u.nbytes != t.nbytes || strcmp(u.name, t.name))
            if (bad++ < 3) CHECK(0, "%s: find('%s') differs from at(%d)", path, t.name, i);
    }
    CHECK(bad == 0, "%s: %d tensors wrong", path, bad);
    G3SourceTensor t;
    CHECK(s->find(s, "no.such.tensor", &t) == 1, "%s: an absent name is not 'absent'", path);
    CHECK(s->at(s, n, &t) == -1 && strstr(g3_error(), s->path), "%s: at(count): %s", path, g3_error());
    g3_source_close(s);
    free(all);
}

static void test_sources(void) {
    const char *fx[] = {"gemma3-tiny-f32", "gemma3-tiny-bf16", "gemma3-tiny-multimodal-layout", "gemma2-tiny-f32", "gemma3-tiny-vision"};
    char dir[256], file[300];
    for (size_t i = 0; i < G3_ARRAY_LEN(fx); i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fx[i]);
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
        const char *files[] = {file};
        check_source(dir, files, 1);   // the folder
        check_source(file, files, 1);  // the file itself
        snprintf(file, sizeof file, "%s/expected.safetensors", dir);
        check_source(file, files, 1);
    }
    const char *lora[] = {"tests/fixtures/gemma3-tiny-f32-lora/adapter_model.safetensors"};
    check_source(lora[0], lora, 1);

    // the multimodal layouts: the text model's tensors under language_model.model.*, and the
    // vision tower's beside them; the model finds its own by the canonical name
    G3Model m;
    CHECK(g3_model_load(&m, "tests/fixtures/gemma3-tiny-vision") == 0, "%s", g3_error());
    G3SourceTensor t;
    CHECK(m.src && m.src->find(m.src, "language_model.model.norm.weight", &t) == 0, "vision: text norm not found");
    int vision = 0;
    for (int i = 0; m.src && i < m.src->count(m.src); i++)
        if (m.src->at(m.src, i, &t) == 0 && strstr(t.name, "vision_tower")) vision++;
    CHECK(vision > 0, "vision: the source does not list the vision tower");
    CHECK(g3_model_source_tensor(&m, "model.layers.1.mlp.down_proj.weight", &t) == 0 &&
              !strcmp(t.name, "language_model.model.layers.1.mlp.down_proj.weight"),
          "vision: stored name of down_proj");
    CHECK(g3_model_source_tensor(&m, "model.nothing.weight", &t) == 1, "an absent tensor is found");
    g3_model_free(&m);

    // a sharded set, as init writes it: one source over several files, each tensor in its shard
    G3Config tiny;
    g3_config_preset(&tiny, "tiny");
    snprintf(dir, sizeof dir, "%s/sharded", tmpdir);
    CHECK(g3_init_checkpoint(&tiny, dir, G3_BF16, 3, 0.02f, 100000, 0) == 0, "%s", g3_error());
    G3WeightSource *s;
    if (g3_source_open(&s, dir) == 0) {
        char *shards[16];
        int ns = 0;
        for (int i = 0; i < s->count(s) && ns < 16; i++) {
            s->at(s, i, &t);
            int seen = 0;
            for (int k = 0; k < ns; k++) seen |= !strcmp(shards[k], t.file);
            if (!seen) shards[ns++] = strdup(t.file);
        }
        CHECK(ns == s->nfiles && ns > 1, "sharded: %d distinct files, source says %d", ns, s->nfiles);
        check_source(dir, (const char *const *)shards, ns);
        for (int k = 0; k < ns; k++) free(shards[k]);
        g3_source_close(s);
    } else {
        CHECK(0, "%s", g3_error());
    }

    // paths that are not sources say which path
    CHECK(g3_source_open(&s, "tests/fixtures/nonexistent") == -1 && s == NULL && strstr(g3_error(), "nonexistent"), "%s", g3_error());
    CHECK(g3_source_open(&s, "model.gguf") == -1 && s == NULL && strstr(g3_error(), "model.gguf"), "%s", g3_error());  // a GGUF path: test_gguf
    g3_source_close(NULL);
}

// Every tensor knows its bytes, and its weight handle is its shape as stored.
static void test_tensor_bytes(void) {
    const char *fx[] = {"gemma3-tiny-f32", "gemma3-tiny-bf16", "gemma3-tiny-multimodal-layout", "gemma2-tiny-f32"};
    for (size_t f = 0; f < G3_ARRAY_LEN(fx); f++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fx[f]);
        G3Model m;
        if (g3_model_load(&m, dir)) { CHECK(0, "%s", g3_error()); continue; }
        int64_t total = 0;
        int bad = 0;
        for (int i = 0; i < m.nt; i++) {
            const G3Tensor *t = &m.t[i];
            int64_t es = g3_dtype_size(t->dtype), cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
            G3Weight w = g3_tensor_weight(t);
            if (t->row_bytes != cols * es || t->nbytes != t->numel * es || w.type != t->dtype || w.data != t->data ||
                w.rows * w.cols != t->numel || w.cols != cols || w.row_bytes != t->row_bytes || w.mem != G3_MEM_HOST ||
                (w.rows > 1 && g3_weight_row(&w, 1) != (const char *)t->data + t->row_bytes))
                if (bad++ < 3) CHECK(0, "%s: tensor %s: row_bytes %lld nbytes %lld", fx[f], t->name, (long long)t->row_bytes, (long long)t->nbytes);
            total += t->nbytes;
        }
        CHECK(bad == 0 && total == g3_model_weight_bytes(&m), "%s: %d tensors wrong; %lld bytes", fx[f], bad, (long long)total);
        g3_model_free(&m);
    }
}

// A copy of gemma3-tiny-f32 with tensor `victim` stored as type dt (values cast from f32).
static const char *rewrite(const char *name, const char *victim, G3DType dt) {
    static char dir[512];
    char p[700];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "cp tests/fixtures/gemma3-tiny-f32/config.json %s/", dir);
    if (system(p)) exit(2);
    STSet st;
    if (st_open(&st, "tests/fixtures/gemma3-tiny-f32/model.safetensors")) { fprintf(stderr, "%s\n", g3_error()); exit(2); }
    STWriter w = {0};
    for (int i = 0; i < st.ntensors; i++) {
        const STTensor *t = &st.tensors[i];
        if (strcmp(t->name, victim)) { st_writer_add(&w, t->name, t->dtype, t->ndim, t->shape, t->data); continue; }
        int64_t n = st_numel(t);
        void *d = malloc((size_t)g3_type_bytes(dt, n));
        const float *x = t->data;
        for (int64_t k = 0; k < n; k++) {
            if (dt == G3_I32) ((int32_t *)d)[k] = (int32_t)(x[k] * 100);
            else if (dt == G3_F64) ((double *)d)[k] = x[k];
            else ((uint8_t *)d)[k] = (uint8_t)k;
        }
        st_writer_add_owned(&w, t->name, dt, t->ndim, t->shape, d);
    }
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    if (st_writer_write(&w, p, NULL)) { fprintf(stderr, "%s\n", g3_error()); exit(2); }
    st_writer_free(&w);
    st_close(&st);
    return dir;
}

static void expect_refused(const char *dir, const char *tensor, const char *type) {
    G3Model m;
    if (g3_model_load(&m, dir) == 0) { g3_model_free(&m); CHECK(0, "%s: a %s %s loaded", dir, type, tensor); return; }
    const char *e = g3_error();
    CHECK(strstr(e, tensor) && strstr(e, type) && strstr(e, "not a weight type") && strstr(e, "model.safetensors"),
          "%s: message '%s' should name the file, %s and %s", dir, e, tensor, type);
    // the CLI: exit status 1 and the same message, no crash
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    if (access(bin, X_OK) != 0) return;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s forward --model %s --ids 2,3 2>&1 | grep -q \"tensor '%s' has type %s\"", bin, dir, tensor, type);
    CHECK(sh("%s forward --model %s --ids 2,3 >/dev/null 2>&1", bin, dir) == 1, "gemma3 forward on a %s %s: not exit 1", type, tensor);
    CHECK(sh("%s", cmd) == 0, "gemma3 forward on a %s %s: message lacks the tensor and type", type, tensor);
}

static void test_refusals(void) {
    const char *q = "model.layers.2.self_attn.q_proj.weight";
    expect_refused(rewrite("i32", q, G3_I32), q, "I32");
    expect_refused(rewrite("f64", q, G3_F64), q, "F64");
    expect_refused(rewrite("u8", "model.layers.0.mlp.down_proj.weight", G3_U8), "model.layers.0.mlp.down_proj.weight", "U8");
    expect_refused(rewrite("norm", "model.norm.weight", G3_F64), "model.norm.weight", "F64");
    expect_refused(rewrite("embed", "model.embed_tokens.weight", G3_I32), "model.embed_tokens.weight", "I32");

    // models built in memory: g3_model_set refuses the same, by name, and changes nothing
    G3Config tiny;
    g3_config_preset(&tiny, "tiny");
    G3Model m;
    CHECK(g3_model_table(&m, &tiny) == 0, "%s", g3_error());
    int i = m.layer_idx[0][W_UP];
    static int64_t ints[1 << 20];
    CHECK(g3_model_set(&m, i, G3_I64, ints) == -1 && strstr(g3_error(), m.t[i].name) && strstr(g3_error(), "I64"), "set I64: %s", g3_error());
    CHECK(m.t[i].data == NULL && m.t[i].nbytes == 0, "a refused set changed the tensor");
    CHECK(g3_model_set(&m, i, G3_DTYPE_COUNT, ints) == -1 && strstr(g3_error(), "unknown"), "set unknown: %s", g3_error());
    float *f = calloc((size_t)m.t[i].numel, sizeof *f);
    CHECK(g3_model_set(&m, i, G3_BF16, f) == 0 && m.t[i].nbytes == m.t[i].numel * 2 && m.t[i].row_bytes == m.t[i].shape[1] * 2,
          "set BF16: %s", g3_error());
    g3_model_free(&m);
    free(f);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/g3wXXXXXX");
    if (!mkdtemp(tmpdir)) return 2;
    test_sources();
    test_tensor_bytes();
    test_refusals();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 2;
    return check_done();
}
