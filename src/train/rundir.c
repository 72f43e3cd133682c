// rundir.c: see rundir.h.
#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../base/base.h"

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int g3_dir_holds_model(const char *dir) {
    static const char *names[] = {"config.json", "model.safetensors", "model.safetensors.index.json"};
    char p[4200];
    for (size_t i = 0; i < G3_ARRAY_LEN(names); i++)
        if (!g3_path_join(p, sizeof p, dir, names[i]) && g3_file_exists(p)) return 1;
    return 0;
}

// The highest missing folder on the way to dir (dir itself, a parent, or "" if dir exists).
static void first_missing(const char *dir, char *top, size_t cap) {
    top[0] = 0;
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) return;
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
    if (is_dir(buf)) return;
    snprintf(top, cap, "%s", buf);
    for (;;) {  // climb while the parent is missing too
        char *slash = strrchr(buf, '/');
        if (!slash || slash == buf) return;
        *slash = 0;
        if (is_dir(buf) || g3_file_exists(buf)) return;
        snprintf(top, cap, "%s", buf);
    }
}

int g3_rundir_open(G3RunDir *r, const char *dir) {
    memset(r, 0, sizeof *r);
    r->lock_fd = -1;
    if (snprintf(r->dir, sizeof r->dir, "%s", dir) >= (int)sizeof r->dir || g3_path_join(r->lock_path, sizeof r->lock_path, dir, "train.lock"))
        return g3_errorf("%s: path too long", dir);
    first_missing(dir, r->top, sizeof r->top);
    if (g3_mkdir_p(dir)) { r->top[0] = 0; return -1; }
    if (g3_lock_file(r->lock_path, &r->lock_fd)) {
        r->lock_fd = -1;
        r->top[0] = 0;  // someone else's folder now: never remove it
        return g3_error_prefix("%s is in use by another run (two runs on one folder would overwrite each other's checkpoints)", dir);
    }
    g3_tmp_clean(dir, NULL);
    return 0;
}

// Removes the plain files of dir (a run folder has no subfolders; anything else stays and
// makes the rmdir fail, which is the safe outcome).
static void remove_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4400];
        struct stat st;
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p && lstat(p, &st) == 0 && !S_ISDIR(st.st_mode)) unlink(p);
    }
    closedir(d);
}

void g3_rundir_close(G3RunDir *r, int discard) {
    if (discard && r->top[0] && r->lock_fd >= 0) {
        // Still holding the lock: no other run can be writing here.
        remove_files(r->dir);
        close(r->lock_fd);
        r->lock_fd = -1;
        char buf[4096];
        snprintf(buf, sizeof buf, "%s", r->dir);
        size_t n = strlen(buf), nt = strlen(r->top);
        while (n > 1 && buf[n - 1] == '/') buf[--n] = 0;
        // dir, then each parent this run made, up to top
        while (rmdir(buf) == 0 && strlen(buf) > nt) {
            char *slash = strrchr(buf, '/');
            if (!slash) break;
            *slash = 0;
        }
    }
    if (r->lock_fd >= 0) g3_unlock_file(r->lock_path, r->lock_fd);
    r->lock_fd = -1;
}

// Whether path holds exactly len bytes equal to data.
static int same_bytes(const char *path, const char *data, size_t len) {
    struct stat st;
    if (stat(path, &st) != 0 || (size_t)st.st_size != len) return 0;
    size_t n;
    char *have = g3_read_file(path, &n);
    int same = have && n == len && !memcmp(have, data, len);
    free(have);
    return same;
}

int g3_rundir_copy_tokenizer(const char *dir, const char *tok, int *copied, int *removed_other) {
    if (copied) *copied = 0;
    if (removed_other) *removed_other = 0;
    char src[4200];
    if (is_dir(tok)) {
        if (g3_path_join(src, sizeof src, tok, "tokenizer.json")) return -1;
        if (!g3_file_exists(src) && g3_path_join(src, sizeof src, tok, "tokenizer.model")) return -1;
    } else if (snprintf(src, sizeof src, "%s", tok) >= (int)sizeof src) {
        return g3_errorf("%s: path too long", tok);
    }
    size_t len;
    char *data = g3_read_file(src, &len);
    if (!data) return g3_error_prefix("tokenizer");
    // the format by content, as g3_tok_load tells them apart
    size_t i = 0;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t')) i++;
    int json = i < len && data[i] == '{';
    char dst[4200], other[4200];
    int rc = -1;
    if (g3_path_join(dst, sizeof dst, dir, json ? "tokenizer.json" : "tokenizer.model") ||
        g3_path_join(other, sizeof other, dir, json ? "tokenizer.model" : "tokenizer.json"))
        goto out;
    if (!same_bytes(dst, data, len)) {
        if (g3_write_file_atomic(dst, data, len)) goto out;
        if (copied) *copied = 1;
    }
    // g3_tok_load takes tokenizer.json first: one left here would shadow this run's .model
    if (!json && g3_file_exists(other) && unlink(other) == 0 && removed_other) *removed_other = 1;
    rc = 0;
out:
    free(data);
    return rc;
}
