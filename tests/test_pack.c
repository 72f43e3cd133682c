// test_pack.c: packed example batches (examples.h g3_examples_pack_batch; backend.h G3AttnMask
// with segments and per-sequence positions, stride T). On the tiny Gemma 3 fixture (sliding
// window 8, examples longer than it) and the Gemma 2 fixture (attention softcap), in exact mode:
//   - a packed batch's summed loss equals the sum of its examples' losses each computed alone
//     (padded, causal) within 1e-6 relative, and so do the weight gradients (1e-5);
//   - the packing: every example of an epoch lands in exactly one row, in the epoch's order, no
//     row over T positions, positions restart at 0 per example, padding its own segment; rows
//     are a pure function of (seed, T, row), so any order of asking gives the same rows;
//   - the masked attention's fast GEMM path against its scalar reference under a packed mask;
//   - `gemma3 train --pack --epochs`: the step count from the packed rows, and an interrupted
//     run resumed equals the uninterrupted one bit for bit (env BIN).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/base.h"
#include "kernels/train_ops.h"
#include "model/model.h"
#include "train/examples.h"
#include "train/train.h"

enum { T = 16, B = 2, NEX = 9 };

// Examples of 2 .. 14 tokens as {"ids"} lines; every third has loss weight only after a prefix
// (prompt/completion with ids), so masked targets are packed too.
static char *make_jsonl(void) {
    static char buf[8192];
    size_t at = 0;
    for (int i = 0; i < NEX; i++) {
        const int L = 2 + (i * 5) % 13;
        if (i % 3 == 2) {
            at += (size_t)snprintf(buf + at, sizeof buf - at, "{\"prompt\": [");
            for (int k = 0; k < L / 2; k++) at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%d", k ? ", " : "", (k * 37 + i * 11) % 1000 + 3);
            at += (size_t)snprintf(buf + at, sizeof buf - at, "], \"completion\": [");
            for (int k = L / 2; k < L; k++)
                at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%d", k > L / 2 ? ", " : "", (k * 37 + i * 11) % 1000 + 3);
            at += (size_t)snprintf(buf + at, sizeof buf - at, "]}\n");
        } else {
            at += (size_t)snprintf(buf + at, sizeof buf - at, "{\"ids\": [");
            for (int k = 0; k < L; k++) at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%d", k ? ", " : "", (k * 37 + i * 11) % 1000 + 3);
            at += (size_t)snprintf(buf + at, sizeof buf - at, "]}\n");
        }
    }
    return buf;
}

static int64_t nvalid(const int32_t *tg, int n) {
    int64_t c = 0;
    for (int i = 0; i < n; i++) c += tg[i] >= 0;
    return c;
}

static void test_layout(G3Examples *e) {
    int32_t in[B * T], tg[B * T], pos[B * T], seg[B * T];
    const int64_t rows = g3_examples_pack_rows(e, T, 5, 1);
    CHECK(rows > 0 && rows < e->n, "epoch 1: %lld examples in %lld rows", (long long)e->n, (long long)rows);
    // every example exactly once in epoch 0's rows, in the epoch's order
    int seen[NEX] = {0}, ok = 1;
    int64_t total = 0;
    for (int64_t r = 0; r < rows; r++) {
        int64_t k = g3_examples_pack_batch(e, 1, T, 5, r, in, tg, pos, seg);
        total += k;
        for (int t = 0; t < T; t++) {
            if (seg[t] < 0) {
                ok &= tg[t] == -1 && in[t] == 0 && (t == 0 || seg[t - 1] >= 0 ? pos[t] == 0 : pos[t] == pos[t - 1] + 1);
                continue;
            }
            ok &= t == 0 || seg[t - 1] == seg[t] ? (t == 0 ? pos[t] == 0 : pos[t] == pos[t - 1] + 1) : pos[t] == 0;
            ok &= t == 0 || seg[t] >= seg[t - 1];
        }
        for (int s = 0; s < k; s++) {
            int64_t ex = e->pk_order[e->pk_start[r] + s];
            seen[ex]++;
            // the example's tokens are where its segment is
            int t0 = 0;
            while (seg[t0] != s) t0++;
            for (int64_t i = 0; i + 1 < e->off[ex + 1] - e->off[ex]; i++) ok &= in[t0 + i] == e->tok[e->off[ex] + i];
        }
    }
    for (int i = 0; i < NEX; i++) ok &= seen[i] == 1;
    CHECK(ok && total == e->n, "packed epoch: every example once (%lld), positions restart per example, padding its own segment", (long long)total);
    // pure function of the row: rows asked backwards, across epochs, give the same contents
    int32_t in2[B * T], tg2[B * T], pos2[B * T], seg2[B * T];
    const int64_t r3 = g3_examples_pack_rows(e, T, 5, 3);
    int same = 1;
    for (int64_t r = r3 - 1; r >= 0; r -= 3) {
        g3_examples_pack_batch(e, 1, T, 5, r, in2, tg2, pos2, seg2);
        g3_examples_pack_batch(e, 1, T, 5, 0, in, tg, pos, seg);  // move the caches elsewhere
        g3_examples_pack_batch(e, 1, T, 5, r, in, tg, pos, seg);
        same &= !memcmp(in, in2, sizeof in2 / 2) && !memcmp(tg, tg2, sizeof tg2 / 2) && !memcmp(seg, seg2, sizeof seg2 / 2);
    }
    CHECK(same && r3 > 2 * rows - 2, "rows are a pure function of (seed, T, row) over 3 epochs (%lld rows)", (long long)r3);
}

// The packed batch's summed loss and gradient against each example's alone.
static void test_loss(const char *fixture, G3Examples *e) {
    G3Model m;
    G3TrainModel tm;
    CHECK(g3_model_load(&m, fixture) == 0 && g3_train_model_from(&tm, &m) == 0, "%s: %s", fixture, g3_error());
    G3TrainCtx *pc = g3_train_ctx_new(&tm, B, T, 0, NULL), *sc = g3_train_ctx_new(&tm, 1, T, 0, NULL);
    int32_t in[B * T], tg[B * T], pos[B * T], seg[B * T], sin_[T], stg[T];
    const int64_t k = g3_examples_pack_batch(e, B, T, 5, 0, in, tg, pos, seg);
    G3AttnMask mk = {.pos = pos, .seg = seg, .stride = T};
    CHECK(g3_train_ctx_set_mask(pc, &mk) == 0, "set mask: %s", g3_error());
    const int64_t nv = nvalid(tg, B * T);
    g3_train_zero_grads(&tm);
    const double packed = g3_train_forward_backward(&tm, pc, in, tg, (float)nv) * (double)nv;  // summed loss, its gradient
    float *gp = g3_malloc(sizeof(float) * (size_t)tm.n);
    memcpy(gp, tm.grads, sizeof(float) * (size_t)tm.n);
    g3_train_zero_grads(&tm);
    double alone = 0;
    for (int b = 0; b < B; b++)
        for (int64_t s = e->pk_start[b]; s < e->pk_start[b + 1]; s++) {  // row b of epoch 0
            int64_t ex = e->pk_order[s];
            g3_examples_fill(e, &ex, 1, T, sin_, stg);
            const int64_t n1 = nvalid(stg, T);
            if (n1) alone += g3_train_forward_backward(&tm, sc, sin_, stg, (float)n1) * (double)n1;
        }
    const double e_loss = fabs(packed - alone) / fabs(alone);
    double num = 0, den = 0;
    for (int64_t i = 0; i < tm.n; i++) {
        double d = (double)gp[i] - tm.grads[i];
        num += d * d;
        den += (double)tm.grads[i] * tm.grads[i];
    }
    const double e_grad = sqrt(num / den);
    CHECK(e_loss < 1e-6, "%s: packed loss %.9g = sum of %lld examples' losses alone %.9g (rel %.3g)", fixture, packed, (long long)k, alone, e_loss);
    CHECK(e_grad < 1e-5, "%s: packed gradient = sum of the examples' gradients (rel %.3g)", fixture, e_grad);
    printf("%s: %lld examples in %d rows of %d: summed loss rel %.2e, gradient rel %.2e against each example alone\n", fixture,
           (long long)k, B, T, e_loss, e_grad);
    // without the mask the examples would see each other: the loss differs
    g3_train_ctx_set_mask(pc, NULL);
    CHECK(fabs(g3_train_loss(&tm, pc, in, tg) * (double)nv - alone) > 1e-4 * alone, "%s: without the mask the packed loss differs", fixture);
    free(gp);
    g3_train_ctx_free(pc);
    g3_train_ctx_free(sc);
    g3_train_model_free(&tm);
    g3_model_free(&m);
}

// The fast masked attention (GEMMs over the square) against its scalar reference, packed mask.
static void test_kernel(G3Examples *e) {
    enum { NH = 4, NKV = 2, HD = 8 };
    int32_t in[B * T], tg[B * T], pos[B * T], seg[B * T];
    g3_examples_pack_batch(e, B, T, 5, 1, in, tg, pos, seg);
    G3AttnMask mk = {.pos = pos, .seg = seg, .stride = T};
    const long nq = (long)B * T * NH * HD, nk = (long)B * T * NKV * HD;
    float *q = malloc(sizeof(float) * nq), *k = malloc(sizeof(float) * nk), *v = malloc(sizeof(float) * nk), *dout = malloc(sizeof(float) * nq);
    float *o1 = malloc(sizeof(float) * nq), *o2 = malloc(sizeof(float) * nq), *l1 = malloc(sizeof(float) * B * NH * T), *l2 = malloc(sizeof(float) * B * NH * T);
    float *dq[2], *dk[2], *dv[2], *dkh = malloc(sizeof(float) * nq), *dvh = malloc(sizeof(float) * nq);
    float *scratch = malloc(sizeof(float) * 4 * g3_attention_masked_scratch(T));
    uint64_t s = 99;
    for (long i = 0; i < nq; i++) q[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5f, dout[i] = q[i] * 0.7f - 0.1f;
    for (long i = 0; i < nk; i++) k[i] = (float)((s = s * 6364136223846793005ull + 1) >> 40) / (1 << 24) - 0.5f, v[i] = k[i] * 1.3f + 0.2f;
    for (int j = 0; j < 2; j++) dq[j] = malloc(sizeof(float) * nq), dk[j] = malloc(sizeof(float) * nk), dv[j] = malloc(sizeof(float) * nk);
    g3_attention_masked_forward_ref(o1, l1, q, k, v, &mk, B, T, NH, NKV, HD, 5, 0.35f, 0, scratch, 1);
    g3_attention_masked_forward(o2, l2, q, k, v, &mk, B, T, NH, NKV, HD, 5, 0.35f, 0, scratch, 1);
    g3_attention_masked_backward_ref(dq[0], dk[0], dv[0], dkh, dvh, dout, q, k, v, l1, &mk, B, T, NH, NKV, HD, 5, 0.35f, 0, scratch, 1);
    g3_attention_masked_backward(dq[1], dk[1], dv[1], dkh, dvh, dout, q, k, v, l1, &mk, B, T, NH, NKV, HD, 5, 0.35f, 0, scratch, 1);
    double w = 0;
    for (long i = 0; i < nq; i++) w = fmax(w, fmax(fabs(o1[i] - o2[i]), fabs(dq[0][i] - dq[1][i])));
    for (long i = 0; i < nk; i++) w = fmax(w, fmax(fabs(dk[0][i] - dk[1][i]), fabs(dv[0][i] - dv[1][i])));
    CHECK(w < 1e-5, "packed mask: fast masked attention vs scalar reference, forward and backward (max abs %.3g)", w);
    // a query never weighs a key of another example: changing another example's v leaves its output
    memcpy(o2, o1, sizeof(float) * nq);
    for (int t = 0; t < T; t++)
        if (seg[t] != seg[T - 1] || seg[t] < 0)
            for (int j = 0; j < NKV * HD; j++) v[(long)t * NKV * HD + j] += 1.0f;
    g3_attention_masked_forward_ref(o1, l1, q, k, v, &mk, B, T, NH, NKV, HD, 0, 0.35f, 0, scratch, 1);
    g3_attention_masked_forward_ref(o2, l2, q, k, v, &mk, B, T, NH, NKV, HD, 0, 0.35f, 0, scratch, 1);
    int iso = 1;
    for (int t = 0; t < T; t++)
        if (seg[t] == seg[T - 1] && seg[t] >= 0)
            for (int j = 0; j < NH * HD; j++) iso &= o1[(long)t * NH * HD + j] == o2[(long)t * NH * HD + j];
    CHECK(iso, "packed mask: rows see their own example only");
    for (int j = 0; j < 2; j++) free(dq[j]), free(dk[j]), free(dv[j]);
    free(q), free(k), free(v), free(dout), free(o1), free(o2), free(l1), free(l2), free(dkh), free(dvh), free(scratch);
}

static int same_file(const char *a, const char *b) {
    size_t na, nb;
    char *x = g3_read_file(a, &na), *y = g3_read_file(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static void test_cli(const char *dir, const char *jsonl, G3Examples *e) {
    const char *bin = getenv("BIN") ? getenv("BIN") : "./gemma3", *M = "tests/fixtures/gemma3-tiny-f32";
    char data[300], p[400], q[400];
    snprintf(data, sizeof data, "%s/d.jsonl", dir);
    FILE *f = fopen(data, "w");
    fputs(jsonl, f);
    fclose(f);
    const char *common = "--batch 2 --seq 16 --schedule constant --warmup 2 --lr 1e-2 --threads 1 --save-every 0 --eval-every 2 --seed 5 --pack";
    CHECK(sh("%s train --model %s --lora r=4,targets=q,v --data %s --val %s %s --epochs 3 --out %s/a 2>%s/loga", bin, M, data, data, common,
             dir, dir) == 0,
          "train --pack --epochs 3");
    const int64_t rows = g3_examples_pack_rows(e, T, 5, 3), steps = (rows + 1) / 2;
    snprintf(p, sizeof p, "%s/a/metrics.jsonl", dir);
    size_t len;
    char *mt = g3_read_file(p, &len), want[64], beyond[64];
    snprintf(want, sizeof want, "{\"step\": %lld,", (long long)steps);
    snprintf(beyond, sizeof beyond, "{\"step\": %lld,", (long long)steps + 1);
    CHECK(mt && strstr(mt, want) && !strstr(mt, beyond), "--epochs 3 packed: %lld rows, batch 2: %lld steps", (long long)rows, (long long)steps);
    free(mt);
    CHECK(sh("grep -q 'packing 9 examples into' %s/loga", dir) == 0, "the packing is reported");
    CHECK(sh("%s train --model %s --lora r=4,targets=q,v --data %s --val %s %s --steps 3 --out %s/b 2>%s/logb", bin, M, data, data, common,
             dir, dir) == 0 &&
              sh("%s train --model %s --lora r=4,targets=q,v --data %s --val %s %s --epochs 3 --out %s/b 2>>%s/logb", bin, M, data, data,
                 common, dir, dir) == 0,
          "interrupted, then resumed");
    snprintf(p, sizeof p, "%s/a/adapter_model.safetensors", dir);
    snprintf(q, sizeof q, "%s/b/adapter_model.safetensors", dir);
    CHECK(same_file(p, q), "packed: the resumed run equals the uninterrupted one bit for bit");
    CHECK(sh("%s train --model %s --lora r=4,targets=q,v --data %s --val %s --batch 2 --seq 16 --schedule constant --warmup 2 --lr 1e-2 "
             "--threads 1 --save-every 0 --eval-every 2 --seed 5 --steps 40 --out %s/b 2>%s/logc",
             bin, M, data, data, dir, dir) == 1 &&
              sh("grep -q 'pack: 1 in the checkpoint, 0 now' %s/logc", dir) == 0,
          "resuming a packed run without --pack is refused, naming the setting");
    CHECK(sh("%s train --model %s --data %s --pack --objective dpo --lora r=2 --out %s/x 2>/dev/null", bin, M, data, dir) == 1,
          "--pack with --objective dpo: refused");
}

int main(void) {
    char dir[] = "/tmp/g3_pack_XXXXXX";
    if (!mkdtemp(dir)) return 2;
    const char *jsonl = make_jsonl();
    G3Examples e;
    CHECK(g3_examples_parse(&e, jsonl, strlen(jsonl), "pack.jsonl", NULL, T, 1024) == 0, "parse: %s", g3_error());
    test_layout(&e);
    test_kernel(&e);
    test_loss("tests/fixtures/gemma3-tiny-f32", &e);
    test_loss("tests/fixtures/gemma2-tiny-f32", &e);
    test_cli(dir, jsonl, &e);
    g3_examples_free(&e);
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
