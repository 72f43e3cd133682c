// checkpoint.c: see checkpoint.h. The tensor table drives both directions: every tensor i of
// tm->m has its master copy and moments under "<kind>.<name>", sliced from the flat arrays at
// tm->off[i].
#include "checkpoint.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../base/base.h"
#include "../base/json.h"
#include "../io/safetensors.h"

// Test hook: G3_TEST_KILL_IN_SAVE="N:P" kills this process with SIGKILL in its N-th save at
// phase P (1: state written under its temporary name; 2: state committed, export not yet
// written; 3: export written, checkpoint.json not yet). Only tests/test_train_resume.c sets it.
static void test_kill_point(int phase) {
    static int saves = 0;
    if (phase == 1) saves++;
    const char *e = getenv("G3_TEST_KILL_IN_SAVE");
    int n, p;
    if (e && sscanf(e, "%d:%d", &n, &p) == 2 && n == saves && p == phase) raise(SIGKILL);
}

int g3_ckpt_exists(const char *dir) {
    char p[4200];
    return !g3_path_join(p, sizeof p, dir, "train_state.safetensors") && g3_file_exists(p);
}

static int add(STWriter *w, const char *kind, const char *name, G3DType dt, int64_t n, const void *data) {
    char nm[160];
    snprintf(nm, sizeof nm, "%s.%s", kind, name);
    return st_writer_add(w, nm, dt, 1, &n, data);
}

// The schema of a training state, walked by save and load alike: for trainable tensor j, its
// master weights and AdamW moments (f32, or 8-bit codes with their block absmax), each stored
// as "<kind>.<name>".
typedef struct {
    const char *kind;
    G3DType dt;
    int64_t n;
    void *ptr;
} Field;

static int fields(const G3TrainModel *tm, const G3AdamW *o, int j, Field *f) {
    const G3Param *p = &tm->p[j];
    const int64_t off = p->off, n = p->numel, nb = (n + G3_ADAMW8_BLOCK - 1) / G3_ADAMW8_BLOCK;
    f[0] = (Field){"master", G3_F32, n, tm->params + off};
    if (o->cfg.bits == 32) {
        f[1] = (Field){"adam_m", G3_F32, n, o->m + off};
        f[2] = (Field){"adam_v", G3_F32, n, o->v + off};
        return 3;
    }
    f[1] = (Field){"adam_m", G3_U8, n, o->mq + off};
    f[2] = (Field){"adam_v", G3_U8, n, o->vq + off};
    f[3] = (Field){"adam_m_absmax", G3_F32, nb, o->mmax + o->seg_blk[j]};
    f[4] = (Field){"adam_v_absmax", G3_F32, nb, o->vmax + o->seg_blk[j]};
    return 5;
}

int g3_ckpt_export(const char *dir, const G3TrainModel *tm, const G3CkptInfo *info, G3DType dt) {
    if (g3_train_model_save(tm, dir, dt)) return -1;
    test_kill_point(3);
    char p[4200], buf[256];
    int n = snprintf(buf, sizeof buf, "{\"step\": %lld, \"loss\": %.9g, \"dtype\": \"%s\"}\n", (long long)info->step, info->loss,
                     g3_dtype_name(dt));
    if (g3_path_join(p, sizeof p, dir, "checkpoint.json")) return -1;
    return g3_write_file_atomic(p, buf, (size_t)n);
}

int g3_ckpt_save(const char *dir, const G3TrainModel *tm, const G3AdamW *o, const G3CkptInfo *info, G3DType dt) {
    // A diverged state committed would make every resume fail the same way: never save one.
    if (!isfinite(g3_grad_norm(tm->params, tm->n)))
        return g3_errorf("checkpoint %s: the weights at step %lld are not finite (training diverged); nothing saved", dir,
                         (long long)info->step);
    if (g3_mkdir_p(dir)) return -1;
    STWriter w = {0};
    int rc = -1;
    char next[4200], final[4200];
    int64_t state[3] = {info->step, o->t, (int64_t)info->seed};
    int64_t three = 3, jl = (int64_t)strlen(info->run_json);
    if (st_writer_add(&w, "state", G3_I64, 1, &three, state)) goto out;
    if (st_writer_add(&w, "run.json", G3_U8, 1, &jl, info->run_json)) goto out;
    // the loss too: a resume that must redo the export writes the same checkpoint.json
    int64_t one = 1;
    if (st_writer_add(&w, "loss", G3_F64, 1, &one, &info->loss)) goto out;
    for (int j = 0; j < tm->np; j++) {
        Field f[5];
        for (int k = 0, nf = fields(tm, o, j, f); k < nf; k++)
            if (add(&w, f[k].kind, tm->p[j].name, f[k].dt, f[k].n, f[k].ptr)) goto out;
    }
    if (g3_path_join(next, sizeof next, dir, "train_state.next.safetensors") ||
        g3_path_join(final, sizeof final, dir, "train_state.safetensors"))
        goto out;
    if (st_writer_write(&w, next, "\"format\":\"gemma3.c training state\"")) goto out;
    test_kill_point(1);
    if (rename(next, final) != 0) { g3_errorf("%s: rename failed", final); goto out; }
    if (g3_fsync_dir(dir)) goto out;
    test_kill_point(2);
    rc = g3_ckpt_export(dir, tm, info, dt);
out:
    if (rc) g3_error_prefix("checkpoint %s", dir);
    st_writer_free(&w);
    return rc;
}

// Copies tensor "<kind>.<name>" of n elements of type dt into dst.
static int take(const STSet *st, const char *kind, const char *name, G3DType dt, int64_t n, void *dst) {
    char nm[160];
    snprintf(nm, sizeof nm, "%s.%s", kind, name);
    const STTensor *t = st_find(st, nm);
    if (!t) return g3_errorf("%s missing (was the checkpoint written with other settings?)", nm);
    if (t->dtype != dt || st_numel(t) != n)
        return g3_errorf("%s is %s[%lld], expected %s[%lld]", nm, g3_dtype_name(t->dtype), (long long)st_numel(t),
                         g3_dtype_name(dt), (long long)n);
    memcpy(dst, t->data, (size_t)g3_type_bytes(dt, n));
    return 0;
}

int g3_ckpt_load(const char *dir, G3TrainModel *tm, G3AdamW *o, G3CkptInfo *info, int *export_current) {
    char p[4200];
    STSet st;
    memset(info, 0, sizeof *info);
    if (g3_path_join(p, sizeof p, dir, "train_state.safetensors") || st_open(&st, p)) return -1;
    int rc = -1;
    int64_t state[3];
    const STTensor *rj = st_find(&st, "run.json");
    const STTensor *sv = st_find(&st, "state");
    if (!sv || sv->dtype != G3_I64 || st_numel(sv) != 3 || !rj || rj->dtype != G3_U8) {
        g3_errorf("state or run.json missing or malformed");
        goto out;
    }
    memcpy(state, sv->data, sizeof state);
    const STTensor *ls = st_find(&st, "loss");  // absent in older checkpoints
    if (ls && ls->dtype == G3_F64 && st_numel(ls) == 1) memcpy(&info->loss, ls->data, sizeof info->loss);
    g3_error_clear();
    for (int j = 0; j < tm->np; j++) {
        Field f[5];
        for (int k = 0, nf = fields(tm, o, j, f); k < nf; k++)
            if (take(&st, f[k].kind, tm->p[j].name, f[k].dt, f[k].n, f[k].ptr)) goto out;
    }
    info->step = state[0];
    o->t = state[1];
    info->seed = (uint64_t)state[2];
    if (!(info->run_json = g3_malloc(rj->nbytes + 1))) goto out;
    memcpy(info->run_json, rj->data, rj->nbytes);
    info->run_json[rj->nbytes] = 0;
    // Is the Hub export this state's? checkpoint.json says which step it holds.
    *export_current = 0;
    Json j;
    if (!g3_path_join(p, sizeof p, dir, "checkpoint.json") && g3_file_exists(p) && !json_parse_file(&j, p)) {
        const JsonNode *s = json_get(json_root(&j), "step");
        *export_current = json_is_int(s) && json_int(s) == info->step;
        json_free(&j);
    }
    g3_error_clear();
    rc = 0;
out:
    if (rc) g3_error_prefix("%s/train_state.safetensors", dir);
    st_close(&st);
    return rc;
}
