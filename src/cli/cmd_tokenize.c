// cmd_tokenize.c: `gemma3 tokenize`: text to token ids, one text (--text, --file) or a JSONL
// batch (--input: one {"text": ..., "add_bos": ...} per line in, one {"ids": [...]} per line
// out, in order). Batches are encoded in blocks of lines, in parallel, one encoder per thread.
#include <errno.h>
#include <fcntl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/base.h"
#include "base/json.h"
#include "cli.h"
#include "tokenizer/tokenizer.h"

enum { BLOCK_LINES = 4096 };

static char *put_int(char *o, int32_t v) {
    char tmp[12];
    int n = 0;
    uint32_t u = (uint32_t)v;
    do tmp[n++] = (char)('0' + u % 10); while (u /= 10);
    while (n) *o++ = tmp[--n];
    return o;
}

typedef struct {
    char *line;     // the input line (owned)
    size_t len;
    long lineno;
    char *out;      // the output line, or NULL with err set
    size_t out_len;
    char err[256];
} Item;

static void encode_item(G3TokEncoder *enc, Item *it, int default_bos, int parse_special) {
    Json j;
    if (json_parse(&j, it->line, it->len)) {
        snprintf(it->err, sizeof it->err, "line %ld: %s", it->lineno, g3_error());
        return;
    }
    const JsonNode *r = json_root(&j), *text = json_get(r, "text"), *bos = json_get(r, "add_bos");
    if (!json_is_string(text)) snprintf(it->err, sizeof it->err, "line %ld: no \"text\" string", it->lineno);
    else if (bos && !json_is_bool(bos)) snprintf(it->err, sizeof it->err, "line %ld: \"add_bos\" must be true or false", it->lineno);
    else {
        const int32_t *ids;
        int add_bos = bos ? bos->type == JSON_TRUE : default_bos;
        int n = g3_tok_encoder_run(enc, text->str, text->str_len, add_bos, parse_special, &ids);
        if (n < 0) snprintf(it->err, sizeof it->err, "line %ld: %s", it->lineno, g3_error());
        else if ((it->out = malloc(16 + (size_t)n * 12))) {
            char *o = it->out;
            memcpy(o, "{\"ids\": [", 9);
            o += 9;
            for (int i = 0; i < n; i++) {
                if (i) *o++ = ',';
                o = put_int(o, ids[i]);
            }
            memcpy(o, "]}\n", 3);
            it->out_len = (size_t)(o + 3 - it->out);
        } else snprintf(it->err, sizeof it->err, "line %ld: out of memory", it->lineno);
    }
    json_free(&j);
}

static int run_batch(const G3Tokenizer *tok, const char *path, int default_bos, int parse_special) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return cli_fail("tokenize", "%s: cannot open", path);
    int nt = omp_get_max_threads();
    G3TokEncoder **enc = calloc((size_t)nt, sizeof *enc);
    Item *items = calloc(BLOCK_LINES, sizeof *items);
    int rc = 0;
    for (int t = 0; t < nt && enc; t++)
        if (!(enc[t] = g3_tok_encoder_new(tok))) rc = 1;
    if (!enc || !items || rc) { rc = cli_fail("tokenize", "out of memory"); goto out; }
    long lineno = 0;
    for (int eof = 0; !eof && !rc;) {
        int n = 0;
        while (n < BLOCK_LINES) {
            char *line = NULL;
            size_t cap = 0;
            ssize_t len = getline(&line, &cap, f);
            if (len < 0) { free(line); eof = 1; break; }
            lineno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            items[n++] = (Item){line, (size_t)len, lineno, NULL, 0, ""};
        }
        #pragma omp parallel for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) encode_item(enc[omp_get_thread_num()], &items[i], default_bos, parse_special);
        for (int i = 0; i < n; i++) {
            if (!rc && items[i].out) fwrite(items[i].out, 1, items[i].out_len, stdout);
            else if (!rc) rc = cli_fail("tokenize", "%s: %s", path, items[i].err);
            free(items[i].line);
            free(items[i].out);
        }
    }
    if (!rc && ferror(f)) rc = cli_fail("tokenize", "%s: read error", path);
out:
    if (f != stdin) fclose(f);
    for (int t = 0; enc && t < nt; t++) g3_tok_encoder_free(enc[t]);
    free(enc);
    free(items);
    return rc;
}

static void print_ids(const int32_t *ids, int n, int pieces, const G3Tokenizer *tok) {
    if (pieces) {
        for (int i = 0; i < n; i++) {
            if (i) fputc(' ', stdout);
            json_write_str(stdout, g3_tok_piece(tok, ids[i]), strlen(g3_tok_piece(tok, ids[i])));
        }
        fputc('\n', stdout);
        return;
    }
    // digits by hand into blocks of 64 KiB: printf("%d") per id took a third of the time of
    // `tokenize --file` on prose (more than the encoding itself)
    char buf[65536 + 16];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (i) buf[at++] = ',';
        at = (size_t)(put_int(buf + at, ids[i]) - buf);
        if (at >= 65536) { fwrite(buf, 1, at, stdout); at = 0; }
    }
    buf[at++] = '\n';
    fwrite(buf, 1, at, stdout);
}

// --file: the file is mapped, not read (a copy and fresh pages fewer), and one thread encodes
// straight from its encoder's buffer; several split the text (g3_tok_encode_parallel).
static int run_file(const G3Tokenizer *tok, const char *path, int add_bos, int parse_special, int pieces) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return cli_fail("tokenize", "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {  // pipes, empty files: read them
        close(fd);
        size_t len;
        char *data = g3_read_file(path, &len);
        if (!data) return cli_fail("tokenize", "%s", g3_error());
        int32_t *ids;
        int n = g3_tok_encode_parallel(tok, data, len, add_bos, parse_special, 0, &ids);
        free(data);
        if (n < 0) return cli_fail("tokenize", "%s: %s", path, g3_error());
        print_ids(ids, n, pieces, tok);
        free(ids);
        return 0;
    }
    size_t len = (size_t)st.st_size;
    const char *data = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (data == MAP_FAILED) return cli_fail("tokenize", "%s: cannot map: %s", path, strerror(errno));
    madvise((void *)data, len, MADV_SEQUENTIAL);
    int rc = 0;
    if (omp_get_max_threads() == 1) {
        G3TokEncoder *enc = g3_tok_encoder_new(tok);
        const int32_t *ids;
        int n = enc ? g3_tok_encoder_run(enc, data, len, add_bos, parse_special, &ids) : -1;
        if (n < 0) rc = cli_fail("tokenize", "%s: %s", path, g3_error());
        else print_ids(ids, n, pieces, tok);
        g3_tok_encoder_free(enc);
    } else {
        int32_t *ids;
        int n = g3_tok_encode_parallel(tok, data, len, add_bos, parse_special, 0, &ids);
        if (n < 0) rc = cli_fail("tokenize", "%s: %s", path, g3_error());
        else { print_ids(ids, n, pieces, tok); free(ids); }
    }
    munmap((void *)data, len);
    return rc;
}

int cmd_tokenize(int argc, char **argv) {
    const char *tpath = NULL, *model = NULL, *text = NULL, *file = NULL, *input = NULL;
    int no_bos = 0, plain = 0, pieces = 0;
    long threads = 0;
    CliOpt opts[] = {
        {"--tokenizer", OPT_STR, &tpath, "tokenizer.json, tokenizer.model or a .gguf model file"},
        {"--model", OPT_STR, &model, "model folder holding the tokenizer (instead of --tokenizer)" CLI_MODEL_HELP},
        {"--text", OPT_STR, &text, "the text to encode; prints its ids comma-separated"},
        {"--file", OPT_STR, &file, "encode a whole text file instead"},
        {"--input", OPT_STR, &input, "JSONL batch: {\"text\": ..., \"add_bos\": true|false} per line ('-' = stdin)"},
        {"--no-bos", OPT_FLAG, &no_bos, "do not start with <bos> (the default for --input lines without add_bos)"},
        {"--plain", OPT_FLAG, &plain, "treat special-token text like <start_of_turn> as plain characters"},
        {"--pieces", OPT_FLAG, &pieces, "print the pieces (as JSON strings) instead of ids"},
        {"--threads", OPT_INT, &threads, "threads for --input and --file (0: all cores)", 0, CLI_MAX_THREADS},
    };
    CLI_PARSE("tokenize", "(--tokenizer FILE | --model DIR) (--text TEXT | --file PATH | --input IN.jsonl) [--no-bos] [--plain]",
              argc, argv, opts);
    if (tpath && model) return cli_fail("tokenize", "give one of --tokenizer FILE and --model DIR");
    if (!tpath && cli_model_or_default("tokenize", &model)) return 1;
    const char *src = tpath ? tpath : model;  // after the default model is looked up
    if (!!text + !!file + !!input != 1) return cli_fail("tokenize", "give exactly one of --text, --file, --input");
    if (input && pieces) return cli_fail("tokenize", "--pieces applies to --text and --file; --input writes {\"ids\": [...]} lines");
    cli_set_threads(threads);
    G3Tokenizer *tok = g3_tok_load(src);
    if (!tok) return cli_fail("tokenize", "%s", g3_error());
    int rc = 0;
    if (input) rc = run_batch(tok, input, !no_bos, !plain);
    else if (file) rc = run_file(tok, file, !no_bos, !plain, pieces);
    else {
        int32_t *ids;
        int n = g3_tok_encode(tok, text, strlen(text), !no_bos, !plain, &ids);
        if (n < 0) rc = cli_fail("tokenize", "%s", g3_error());
        else print_ids(ids, n, pieces, tok);
        if (n >= 0) free(ids);
    }
    g3_tok_free(tok);
    if (fflush(stdout) != 0) rc = cli_fail("tokenize", "cannot write the output");
    return rc;
}
