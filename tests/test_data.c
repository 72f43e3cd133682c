// test_data.c: token files (round trip, validation, staleness), the validation split, batch
// sampling (deterministic in (seed, step, micro), windows are T+1 consecutive tokens), and text
// preparation with the real tokenizer when it is present (documents as <bos> text <eos>).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "base/base.h"
#include "train/data.h"

int main(void) {
    char dir[] = "/tmp/g3_data_XXXXXX", p[256], q[256];
    if (!mkdtemp(dir)) return 1;
    enum { N = 5000 };
    static uint32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = i % 100 == 0 ? 2 : (uint32_t)(i * 7 % 50) + 3;
    snprintf(p, sizeof p, "%s/t.bin", dir);
    G3DataSource src = {"/nonexistent/source.txt", 123, 456};
    CHECK(g3_tokfile_write(p, ids, N, 64, 2, 1, &src, 1) == 0, "%s", g3_error());
    CHECK(g3_tokfile_is(p), "magic");
    CHECK(g3_tokfile_fresh(p, &src, 1), "same sources: fresh");
    src.mtime_ns++;
    CHECK(!g3_tokfile_fresh(p, &src, 1), "changed mtime: stale");
    G3TokenFile f;
    CHECK(g3_tokfile_open(&f, p) == 0, "%s", g3_error());
    CHECK(f.ntok == N && f.vocab == 64 && f.bos == 2 && f.max_id == 52 && !memcmp(f.tok, ids, sizeof ids), "round trip");
    int64_t split = g3_data_split(&f, 0.1);
    CHECK(split == 4500 && f.tok[split] == 2, "split at a <bos>: %lld", (long long)split);
    // Batches: deterministic, T+1 consecutive tokens, different across steps and micro-steps.
    enum { B = 3, T = 16 };
    int32_t in[B * T], tg[B * T], in2[B * T], tg2[B * T];
    g3_data_batch(f.tok, split, B, T, 5, 10, 1, in, tg);
    g3_data_batch(f.tok, split, B, T, 5, 10, 1, in2, tg2);
    CHECK(!memcmp(in, in2, sizeof in) && !memcmp(tg, tg2, sizeof tg), "same (seed, step, micro): same batch");
    int shifted = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t + 1 < T; t++) shifted &= tg[b * T + t] == in[b * T + t + 1];
    CHECK(shifted, "targets are inputs shifted by one");
    g3_data_batch(f.tok, split, B, T, 5, 11, 1, in2, tg2);
    CHECK(memcmp(in, in2, sizeof in), "another step: another batch");
    g3_data_batch(f.tok, split, B, T, 5, 10, 0, in2, tg2);
    CHECK(memcmp(in, in2, sizeof in), "another micro-step: another batch");
    g3_data_val_batch(f.tok + split, N - split, B, T, 0, in, tg);
    CHECK(in[0] == (int32_t)ids[split] && in[T] == (int32_t)ids[split + T], "validation windows are consecutive");
    g3_tokfile_close(&f);
    // A token outside the vocabulary is refused.
    ids[7] = 64;
    CHECK(g3_tokfile_write(p, ids, N, 64, 2, 1, NULL, 0) == 0, "write");
    CHECK(g3_tokfile_open(&f, p) != 0 && strstr(g3_error(), "token 7"), "bad token: %s", g3_error());
    // Text -> tokens with the real tokenizer, when this checkout has it.
    const char *tokp = "/work/shared/tokenizers/gemma3/tokenizer.json";
    if (access(tokp, R_OK) == 0) {
        snprintf(q, sizeof q, "%s/text.txt", dir);
        const char *text = "Once upon a time.\n<|endoftext|>\n\nThe end <eos> here.\n<|endoftext|>\n";
        CHECK(g3_write_file_atomic(q, text, strlen(text)) == 0, "%s", g3_error());
        snprintf(p, sizeof p, "%s/text.bin", dir);
        CHECK(g3_data_prepare(q, tokp, p, 0) == 0, "%s", g3_error());
        CHECK(g3_tokfile_open(&f, p) == 0, "%s", g3_error());
        int bos = 0, eos = 0;
        for (int64_t i = 0; i < f.ntok; i++) bos += (int)f.tok[i] == f.bos, eos += (int)f.tok[i] == f.eos;
        CHECK(f.ntok > 8 && (int)f.tok[0] == f.bos && (int)f.tok[f.ntok - 1] == f.eos && bos == 2 && eos == 2,
              "two documents as <bos> text <eos> (a literal <eos> stays text): %lld tokens, %d bos, %d eos", (long long)f.ntok, bos, eos);
        printf("prepared 2 documents: %lld tokens\n", (long long)f.ntok);
        g3_tokfile_close(&f);
    } else printf("tokenizer not found: text preparation not tested\n");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {}
    return check_done();
}
