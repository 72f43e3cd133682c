// test_capacity.c: `gemma3 capacity` (issue 20) on tiny cells (vocab 64, 16 tokens: 96 bits a
// sequence), through the library and the built binary (env BIN, default ./gemma3):
//  - the parameter count of a shape is the trainable model's; the data are uniform ids in
//    [0, V), a pure function of the seed; memorized bits are clamped per sequence to [0, bits];
//  - an untrained model memorizes ~0 bits; a model trained on a handful of sequences
//    memorizes ~all of their bits; memorized bits are never negative nor above N x bits at any
//    evaluation;
//  - the memorized bits the tool reports equal a direct recomputation from the log-probabilities
//    of `gemma3 forward --exact` on the saved model;
//  - membership inference F1: 1 for separated losses, 0.5 for identical ones;
//  - the CLI writes results.json with the fields outside checks read; --device cuda fails
//    clearly; a grid is resumable (a removed cell is the only one run again), refuses cells of
//    other settings, and writes results.json with the fit and report.html.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "check.h"
#include "base/base.h"
#include "base/json.h"
#include "experiments/capacity.h"
#include "experiments/capacity_grid.h"
#include "io/safetensors.h"
#include "train/train.h"

static const char *bin;
static char dir[256];

static void test_shapes_and_data(void) {
    const int shapes[][3] = {{1, 32, 2048}, {2, 64, 2048}, {3, 256, 100}, {1, 8, 64}, {7, 40, 64}};
    for (size_t i = 0; i < G3_ARRAY_LEN(shapes); i++) {
        G3Config c;
        CHECK(g3_cap_config(&c, shapes[i][0], shapes[i][1], shapes[i][2], 64) == 0, "config %s", g3_error());
        G3TrainModel tm;
        CHECK(g3_train_model_new(&tm, &c) == 0, "model %s", g3_error());
        CHECK(tm.n == g3_cap_params(shapes[i][0], shapes[i][1], shapes[i][2], 64), "L%d D%d: params %lld vs %lld", shapes[i][0],
              shapes[i][1], (long long)tm.n, (long long)g3_cap_params(shapes[i][0], shapes[i][1], shapes[i][2], 64));
        CHECK(c.kv_heads == 1 && c.vocab == shapes[i][2] + 1 && c.bos == shapes[i][2] && c.heads * c.head_dim <= c.hidden,
              "shape L%d D%d", shapes[i][0], shapes[i][1]);
        g3_train_model_free(&tm);
    }
    // 1 layer x 32 wide over 2048 ids: the paper's smallest model is ~80K parameters too
    CHECK(g3_cap_params(1, 32, 2048, 64) > 70000 && g3_cap_params(1, 32, 2048, 64) < 90000, "L1 D32 %lld", (long long)g3_cap_params(1, 32, 2048, 64));

    enum { N = 200, T = 64, V = 2048 };
    int32_t *a = malloc(sizeof(int32_t) * N * T), *b = malloc(sizeof(int32_t) * N * T), *c = malloc(sizeof(int32_t) * N * T);
    g3_cap_tokens(a, N, T, V, 7);
    g3_cap_tokens(b, N, T, V, 7);
    g3_cap_tokens(c, N, T, V, 8);
    int same = !memcmp(a, b, sizeof(int32_t) * N * T), inrange = 1, eq = 0;
    double mean = 0;
    for (int i = 0; i < N * T; i++) {
        inrange &= a[i] >= 0 && a[i] < V;
        eq += a[i] == c[i];
        mean += a[i];
    }
    mean /= N * T;
    CHECK(same, "tokens are a function of the seed");
    CHECK(inrange, "tokens in [0, V)");
    CHECK(eq < 50, "another seed, other tokens (%d equal of %d)", eq, N * T);
    CHECK(fabs(mean - (V - 1) / 2.0) < 30, "uniform: mean %g", mean);
    free(a), free(b), free(c);

    const double nll[] = {0, 50, 96, 200, 1e9};
    CHECK(g3_cap_memorized(nll, 5, 96) == 96 + 46, "clamped per sequence: %g", g3_cap_memorized(nll, 5, 96));
    const double m[] = {1, 2, 3, 4}, h[] = {5, 6, 7, 8}, hh[] = {1, 2, 3, 4};
    CHECK(fabs(g3_cap_mia_f1(m, 4, h, 4) - 1) < 1e-12, "separated: F1 1");
    CHECK(fabs(g3_cap_mia_f1(m, 4, hh, 4) - 0.5) < 1e-12, "identical: F1 0.5, %g", g3_cap_mia_f1(m, 4, hh, 4));
}

static G3CapSpec tiny(int64_t n) {
    G3CapSpec s;
    g3_cap_spec_defaults(&s);
    s.layers = 1, s.width = 32, s.vocab = 64, s.seq_len = 16, s.nseq = n, s.nheld = 8, s.batch = 4;
    s.lr = 1e-2, s.warmup = 10, s.max_steps = 600, s.eval_steps = 25, s.window_min = 100;
    return s;
}

static void test_untrained(void) {
    G3CapSpec s = tiny(16);
    s.max_steps = 1;  // the first evaluation is of the untrained model
    G3CapResult r;
    CHECK(g3_cap_run(&s, &r, NULL, NULL) == 0, "run %s", g3_error());
    CHECK(r.ncurve >= 1 && r.curve[0].step == 0, "first evaluation at step 0");
    const double total = 16 * 96.0;
    CHECK(r.ncurve >= 1 && r.curve[0].memorized_bits >= 0 && r.curve[0].memorized_bits < 0.01 * total,
          "untrained memorizes ~0: %g of %g bits", r.ncurve ? r.curve[0].memorized_bits : -1, total);
    CHECK(!r.converged, "one step is not convergence");
    g3_cap_result_free(&r);
}

static void test_overfit_and_forward(void) {
    G3CapSpec s = tiny(4);
    char model[300];
    snprintf(model, sizeof model, "%s/model", dir);
    s.save_dir = model;
    G3CapResult r;
    CHECK(g3_cap_run(&s, &r, NULL, NULL) == 0, "run %s", g3_error());
    const double total = 4 * 96.0;
    CHECK(r.memorized_bits > 0.95 * total, "a handful overfit memorizes ~all: %g of %g bits (%s)", r.memorized_bits, total, r.stop_reason);
    CHECK(r.converged, "converged: %s", r.stop_reason);
    int inside = 1;
    for (int i = 0; i < r.ncurve; i++) inside &= r.curve[i].memorized_bits >= 0 && r.curve[i].memorized_bits <= total;
    CHECK(inside, "memorized bits in [0, N x 96] at every evaluation");
    CHECK(r.heldout_loss > log(64.0), "held-out loss above uniform after memorizing: %g", r.heldout_loss);
    CHECK(!r.grokking, "no grokking on random data");

    // the same bits from `gemma3 forward --exact` log-probabilities on the saved model
    int32_t seqs[4 * 16];
    g3_cap_tokens(seqs, 4, 16, 64, s.seed);
    double direct = 0;
    for (int i = 0; i < 4; i++) {
        char ids[512], path[300];
        int n = snprintf(ids, sizeof ids, "64");  // the start token, id V
        for (int t = 0; t < 15; t++) n += snprintf(ids + n, sizeof ids - (size_t)n, ",%d", seqs[i * 16 + t]);
        snprintf(path, sizeof path, "%s/logits%d.safetensors", dir, i);
        CHECK(sh("%s forward --model %s --ids %s --exact --device cpu --threads 1 --save %s > /dev/null 2>&1", bin, model, ids, path) == 0, "forward");
        STSet st;
        if (st_open(&st, path)) { CHECK(0, "%s", g3_error()); continue; }
        const STTensor *lt = st_find(&st, "logits");
        CHECK(lt && lt->ndim == 2 && lt->shape[0] == 16 && lt->shape[1] == 65, "logits [16, 65]");
        if (lt && lt->shape[0] == 16 && lt->shape[1] == 65) {
            const float *z = lt->data;
            double nll = 0;
            for (int t = 0; t < 16; t++) {
                double mx = -INFINITY, se = 0;
                for (int v = 0; v < 65; v++) mx = fmax(mx, z[t * 65 + v]);
                for (int v = 0; v < 65; v++) se += exp(z[t * 65 + v] - mx);
                nll += (mx + log(se) - z[t * 65 + seqs[i * 16 + t]]) / M_LN2;
            }
            direct += fmax(0.0, 96 - nll);
        }
        st_close(&st);
    }
    CHECK(fabs(direct - r.memorized_bits) < 0.01, "tool %.6f bits vs gemma3 forward %.6f", r.memorized_bits, direct);
    g3_cap_result_free(&r);
}

static void test_bounds_mid_training(void) {
    // more data than the model can hold: every evaluation stays inside [0, N x 96]
    G3CapSpec s = tiny(64);
    s.width = 8, s.max_steps = 120;
    G3CapResult r;
    CHECK(g3_cap_run(&s, &r, NULL, NULL) == 0, "run %s", g3_error());
    int inside = 1;
    for (int i = 0; i < r.ncurve; i++) inside &= r.curve[i].memorized_bits >= 0 && r.curve[i].memorized_bits <= 64 * 96.0;
    CHECK(inside && r.ncurve > 1, "bounds at %d evaluations", r.ncurve);
    g3_cap_result_free(&r);
}

static void test_summary(void) {
    // two models, capacity exactly 3.5 and 3.7 bits a parameter: slope through 0 between them;
    // a third whose best converged cell memorized all its data (a lower bound): not in the fit
    const char *txt = "[{\"layers\":1,\"width\":8,\"precision\":\"f32\",\"params\":1000,\"sequences\":100,\"bits_per_sequence\":96,"
                      "\"memorized_bits\":3500,\"heldout_loss\":5,\"converged\":true},"
                      "{\"layers\":1,\"width\":8,\"precision\":\"f32\",\"params\":1000,\"sequences\":400,\"bits_per_sequence\":96,"
                      "\"memorized_bits\":3000,\"heldout_loss\":4.5,\"converged\":true},"
                      "{\"layers\":1,\"width\":8,\"precision\":\"f32\",\"params\":1000,\"sequences\":800,\"bits_per_sequence\":96,"
                      "\"memorized_bits\":9000,\"heldout_loss\":4.4,\"converged\":false},"
                      "{\"layers\":2,\"width\":8,\"precision\":\"f32\",\"params\":2000,\"sequences\":100,\"bits_per_sequence\":96,"
                      "\"memorized_bits\":7400,\"heldout_loss\":5,\"converged\":true},"
                      "{\"layers\":3,\"width\":8,\"precision\":\"f32\",\"params\":3000,\"sequences\":10,\"bits_per_sequence\":96,"
                      "\"memorized_bits\":955,\"heldout_loss\":5,\"converged\":true}]";
    Json j;
    CHECK(json_parse(&j, txt, strlen(txt)) == 0, "parse");
    G3CapSummary sum;
    CHECK(g3_cap_summarize(json_root(&j), &sum) == 0, "summary %s", g3_error());
    CHECK(sum.nm == 3 && sum.nfit == 2, "three models, two in the fit (%d)", sum.nfit);
    CHECK(sum.nm == 3 && sum.m[0].capacity == 3500 && sum.m[1].capacity == 7400, "capacity: the most over converged cells only");
    CHECK(sum.nm == 3 && !sum.m[0].data_limited && !sum.m[1].data_limited && sum.m[2].data_limited, "data-limited capacity flagged");
    CHECK(fabs(sum.slope - 3.9) < 1e-9 && fabs(sum.intercept + 400) < 1e-6, "OLS slope %g intercept %g", sum.slope, sum.intercept);
    CHECK(fabs(sum.slope0 - (1000 * 3500.0 + 2000 * 7400.0) / (1000 * 1000.0 + 2000 * 2000.0)) < 1e-9, "slope through 0 %g", sum.slope0);
    CHECK(sum.m[0].observed_peak_n == 100, "peak of held-out loss at N=100");
    g3_cap_summary_free(&sum);
    json_free(&j);
}

static double field(const JsonNode *o, const char *k) {
    const JsonNode *n = json_get(o, k);
    return json_is_number(n) ? n->num : NAN;
}

static void test_cli(void) {
    const char *common = "--vocab 64 --seq-len 16 --batch 4 --lr 0.01 --warmup 10 --max-steps 60 --eval-steps 20 --heldout 8 --threads 1 --quiet";
    CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 %s --out %s/one > /dev/null 2>&1", bin, common, dir) == 0, "one cell");
    char p[400];
    snprintf(p, sizeof p, "%s/one/results.json", dir);
    Json j;
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *cells = json_get(json_root(&j), "cells"), *c = cells ? json_at(cells, 0) : NULL;
        CHECK(c && cells->count == 1, "one cell in results.json");
        if (c) {
            CHECK(field(c, "params") == (double)g3_cap_params(1, 16, 64, 16), "params");
            CHECK(field(c, "sequences") == 8, "sequences");
            CHECK(field(c, "bits_per_sequence") == 96, "bits_per_sequence %g", field(c, "bits_per_sequence"));
            double mb = field(c, "memorized_bits");
            CHECK(mb >= 0 && mb <= 8 * 96, "memorized_bits %g", mb);
            CHECK(field(c, "heldout_loss") > 0, "heldout_loss");
            CHECK(json_is_bool(json_get(c, "converged")) && json_is_bool(json_get(c, "grokking")), "converged, grokking flags");
        }
        json_free(&j);
    } else CHECK(0, "%s", g3_error());
    // --device cuda: trains where a GPU is (the GPU tests compare it with the CPU), else says why
    if (g3_backend_cuda_devices() > 0) {
        CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 --max-steps 30 --device cuda --out %s/cuda 2> %s/cuda.err", bin, dir, dir) == 0,
              "cuda: capacity on the GPU failed");
        // the evaluation on the GPU (the backend's loss op) against the CPU's: the untrained
        // model's code lengths at step 0, and after 20 steps (f32 sums in another order)
        double at[2][2];
        for (int d = 0; d < 2; d++) {
            CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 %s --device %s --out %s/ev%d > /dev/null 2>&1", bin, common,
                     d ? "cuda" : "cpu", dir, d) == 0, "eval cell on %s", d ? "cuda" : "cpu");
            snprintf(p, sizeof p, "%s/ev%d/results.json", dir, d);
            at[d][0] = at[d][1] = NAN;
            if (json_parse_file(&j, p) == 0) {
                const JsonNode *cells = json_get(json_root(&j), "cells"), *c = cells ? json_at(cells, 0) : NULL;
                const JsonNode *curve = c ? json_get(c, "curve") : NULL;
                if (curve && curve->count >= 2 && json_at(curve, 0)->count == 6) {
                    at[d][0] = json_at(json_at(curve, 0), 2)->num;  // train loss at step 0
                    at[d][1] = json_at(json_at(curve, 1), 4)->num;  // memorized bits at the next evaluation
                }
                json_free(&j);
            }
        }
        CHECK(fabs(at[0][0] - at[1][0]) <= 1e-5 * fabs(at[0][0]), "cuda: untrained loss %.9g vs cpu %.9g", at[1][0], at[0][0]);
        CHECK(fabs(at[0][1] - at[1][1]) <= 0.02 * fabs(at[0][1]) + 1, "cuda: memorized bits %.6g vs cpu %.6g", at[1][1], at[0][1]);
        // a GPU grid: cells as threads of one process, a backend (stream) each
        CHECK(sh("%s capacity --grid --layers 1,2 --width 16 --sequences 4,8 %s --device cuda --jobs 4 --out %s/gridc 2> %s/gridc.err", bin,
                 common, dir, dir) == 0, "cuda grid as threads");
        CHECK(sh("grep -q 'as threads of this process' %s/gridc.err && test $(ls %s/gridc/cells | wc -l) = 4", dir, dir) == 0, "cuda grid: 4 cells");
    } else {
        CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 --device cuda --out %s/cuda 2> %s/cuda.err", bin, dir, dir) == 1, "cuda: exit 1");
        CHECK(sh("grep -q -e 'without the CUDA backend' -e 'no GPU' %s/cuda.err", dir) == 0, "cuda: says why");
    }
    // --schedule cosine: exactly --max-steps steps, the rate decayed to ~0 by the last one
    CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 %s --schedule cosine --out %s/cos > /dev/null 2>&1", bin, common, dir) == 0, "cosine cell");
    snprintf(p, sizeof p, "%s/cos/results.json", dir);
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *cells = json_get(json_root(&j), "cells"), *c = cells ? json_at(cells, 0) : NULL;
        const JsonNode *sc = c ? json_get(c, "schedule") : NULL, *sr = c ? json_get(c, "stop_reason") : NULL;
        CHECK(sc && sc->str && !strcmp(sc->str, "cosine") && field(c, "cosine") == 1, "cosine: schedule recorded");
        CHECK(c && field(c, "steps") == 60, "cosine: %g steps (60: --max-steps)", c ? field(c, "steps") : NAN);
        CHECK(sr && sr->str && strstr(sr->str, "cosine decay over 60 steps ended"), "cosine: stop reason '%s'", sr && sr->str ? sr->str : "");
        const JsonNode *curve = c ? json_get(c, "curve") : NULL, *last = curve && curve->count ? json_at(curve, curve->count - 1) : NULL;
        const double lr_end = last && last->count == 6 ? json_at(last, 5)->num : NAN;
        CHECK(lr_end >= 0 && lr_end < 1e-3 * 0.01, "cosine: learning rate at the end %g", lr_end);
        json_free(&j);
    } else CHECK(0, "%s", g3_error());
    CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 --schedule steps --out %s/bad 2> /dev/null", bin, dir) == 1, "--schedule steps refused");
    CHECK(sh("%s capacity --layers 1 --width 16 --sequences 8 --seed 3 --heldout-seed 3 --out %s/same 2> /dev/null", bin, dir) == 1, "same seeds refused");
    CHECK(sh("%s capacity --layers 1,2 --width 16 --sequences 8 --out %s/list 2> /dev/null", bin, dir) == 1, "a list without --grid refused");

    // a grid of 2 x 2 cells; one removed, and only that one runs again
    CHECK(sh("%s capacity --grid --layers 1,2 --width 16 --sequences 4,8 %s --jobs 2 --html --out %s/grid > /dev/null 2>&1", bin, common, dir) == 0, "grid");
    CHECK(sh("test $(ls %s/grid/cells | wc -l) = 4", dir) == 0, "4 cells");
    CHECK(sh("rm %s/grid/cells/L2-D16-N8-f32-s1/results.json", dir) == 0, "remove one cell");
    CHECK(sh("%s capacity --grid --layers 1,2 --width 16 --sequences 4,8 %s --jobs 2 --html --out %s/grid 2> %s/grid.err", bin, common, dir, dir) == 0, "grid again");
    CHECK(sh("grep -q '3 done already, 1 to run' %s/grid.err", dir) == 0, "resumed: only the missing cell ran");
    snprintf(p, sizeof p, "%s/grid/results.json", dir);
    if (json_parse_file(&j, p) == 0) {
        const JsonNode *cells = json_get(json_root(&j), "cells"), *sum = json_get(json_root(&j), "summary");
        CHECK(cells && cells->count == 4, "4 cells in the grid's results.json");
        CHECK(sum && json_get(sum, "models") && json_get(sum, "models")->count == 2, "2 models in the summary");
        json_free(&j);
    } else CHECK(0, "%s", g3_error());
    // --workers threads (the GPU's default: one backend per cell thread): the same cells, bit for bit
    CHECK(sh("%s capacity --grid --layers 1,2 --width 16 --sequences 4,8 %s --jobs 3 --workers threads --out %s/gridt 2> %s/gridt.err", bin,
             common, dir, dir) == 0, "grid as threads");
    CHECK(sh("grep -q 'as threads of this process' %s/gridt.err", dir) == 0, "threads: said so");
    Json jt;
    snprintf(p, sizeof p, "%s/gridt/results.json", dir);
    if (json_parse_file(&jt, p) == 0) {
        snprintf(p, sizeof p, "%s/grid/results.json", dir);
        if (json_parse_file(&j, p) == 0) {
            const JsonNode *a = json_get(json_root(&j), "cells"), *b = json_get(json_root(&jt), "cells");
            CHECK(a && b && a->count == 4 && b->count == 4, "threads: 4 cells");
            int same = 0;
            for (uint32_t i = 0; a && b && i < a->count; i++)
                for (uint32_t k = 0; k < b->count; k++) {
                    const JsonNode *x = json_at(a, i), *y = json_at(b, k);
                    if (field(x, "layers") == field(y, "layers") && field(x, "sequences") == field(y, "sequences"))
                        same += field(x, "memorized_bits") == field(y, "memorized_bits") && field(x, "heldout_loss") == field(y, "heldout_loss") &&
                                field(x, "steps") == field(y, "steps");
                }
            CHECK(same == 4, "threads: %d of 4 cells equal the processes' results", same);
            json_free(&j);
        } else CHECK(0, "%s", g3_error());
        json_free(&jt);
    } else CHECK(0, "%s", g3_error());
    CHECK(sh("%s capacity --grid --layers 1 --width 16 --sequences 4 %s --workers fibers --out %s/gridf 2> /dev/null", bin, common, dir) == 1,
          "--workers fibers refused");
    const char *other = "--vocab 64 --seq-len 16 --batch 4 --lr 0.02 --warmup 10 --max-steps 60 --eval-steps 20 --heldout 8 --threads 1 --quiet";
    CHECK(sh("%s capacity --grid --layers 1,2 --width 16 --sequences 4,8 %s --out %s/grid 2> %s/grid.err", bin, other, dir, dir) == 1,
          "a grid over cells of other settings is refused");
    CHECK(sh("grep -q 'was run with lr 0.01' %s/grid.err", dir) == 0, "... naming the setting");
    CHECK(sh("grep -q 'id=\"g3data\">{\"cells\"' %s/grid/report.html && ! grep -q 'G3DATA' %s/grid/report.html", dir, dir) == 0, "report.html holds the data");
}

int main(void) {
    bin = getenv("BIN") ? getenv("BIN") : "./gemma3";
    snprintf(dir, sizeof dir, "/tmp/g3_capacity_%d", (int)getpid());
    if (g3_mkdir_p(dir)) { fprintf(stderr, "%s\n", g3_error()); return 1; }
    test_shapes_and_data();
    test_summary();
    test_untrained();
    test_overfit_and_forward();
    test_bounds_mid_training();
    test_cli();
    if (!check_failures) sh("rm -rf %s", dir);
    return check_done();
}
