// base.c: error messages, allocation, files and time for the whole library.
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char err_msg[1024];

int g3_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

int g3_error_prefix(const char *fmt, ...) {
    char prefix[512], old[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old);
    return -1;
}

const char *g3_error(void) { return err_msg[0] ? err_msg : "unknown error"; }
void g3_error_clear(void) { err_msg[0] = 0; }

void *g3_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) g3_errorf("out of memory allocating %zu bytes", n);
    return p;
}

void *g3_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) g3_errorf("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *g3_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) g3_errorf("out of memory growing a buffer to %zu bytes", n);
    return q;
}

char *g3_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = g3_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

void *g3_malloc_aligned(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? (n + 63) / 64 * 64 : 64) != 0) {
        g3_errorf("out of memory allocating %zu bytes", n);
        return NULL;
    }
    return p;
}

void g3_free_aligned(void *p) { free(p); }

char *g3_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        g3_errorf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = g3_realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        g3_errorf("%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else strcpy(dir, ".");
    int fd = open(dir, O_RDONLY);
    if (fd < 0) return 0;  // best effort: some filesystems refuse
    fsync(fd);
    close(fd);
    return 0;
}

int g3_atomic_open(G3AtomicFile *f, const char *path) {
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path ||
        snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof f->tmp)
        return g3_errorf("%s: path too long", path);
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0) return g3_errorf("%s: cannot create: %s", f->tmp, strerror(errno));
    return 0;
}

int g3_atomic_write(G3AtomicFile *f, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return g3_errorf("%s: write failed: %s", f->path, strerror(errno));
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

void g3_atomic_abort(G3AtomicFile *f) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
}

int g3_atomic_commit(G3AtomicFile *f) {
    if (fsync(f->fd) != 0) {
        int e = errno;
        g3_atomic_abort(f);
        return g3_errorf("%s: fsync failed: %s", f->path, strerror(e));
    }
    // A large file just written sits in the page cache in small pages; dropping it (it is on
    // disk now) lets the first reader bring it back in large folios (see safetensors.c).
    off_t size = lseek(f->fd, 0, SEEK_END);
    if (size > (off_t)64 << 20) posix_fadvise(f->fd, 0, 0, POSIX_FADV_DONTNEED);
    close(f->fd);
    f->fd = -1;
    if (rename(f->tmp, f->path) != 0) {
        int e = errno;
        unlink(f->tmp);
        return g3_errorf("%s: rename failed: %s", f->path, strerror(e));
    }
    return fsync_dir_of(f->path);
}

int g3_write_file_atomic(const char *path, const void *data, size_t len) {
    G3AtomicFile f;
    if (g3_atomic_open(&f, path)) return -1;
    if (g3_atomic_write(&f, data, len)) { g3_atomic_abort(&f); return -1; }
    return g3_atomic_commit(&f);
}

int g3_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int g3_mkdir_p(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return g3_errorf("%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return g3_errorf("%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return g3_errorf("%s: cannot create folder: %s", buf, strerror(errno));
    return 0;
}

int g3_path_join(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) return g3_errorf("%s/%s: path too long", dir, name);
    return 0;
}

double g3_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
