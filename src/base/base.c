// base.c: error messages, allocation, files and time for the whole library.
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
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
int g3_error_is_set(void) { return err_msg[0] != 0; }
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

// The one folder-fsync of the project (atomic writes, checkpoints, layout changes); -1 with
// errno set if the folder cannot be opened.
static int sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    fsync(fd);  // some filesystems refuse to sync a folder; what they refuse they cannot lose
    close(fd);
    return 0;
}

int g3_fsync_dir(const char *dir) {
    if (sync_dir(dir)) return g3_errorf("%s: cannot open the folder to sync it: %s", dir, strerror(errno));
    return 0;
}

// Splits path into its folder (".") and base name.
static void split_path(const char *path, char *dir, size_t cap, const char **base) {
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) { dir[1] = 0; *base = path + 1; }
    else if (slash) { *slash = 0; *base = path + (slash - dir) + 1; }
    else { snprintf(dir, cap, "."); *base = path; }
}

// The writer's pid if name is "<target>.tmp.<pid>" (any target when target is NULL), else 0.
static long tmp_owner(const char *name, const char *target) {
    const char *t = NULL;
    if (target) {
        size_t n = strlen(target);
        if (strncmp(name, target, n) || strncmp(name + n, ".tmp.", 5)) return 0;
        t = name + n + 5;
    } else {
        for (const char *p = strstr(name, ".tmp."); p; p = strstr(p + 1, ".tmp.")) t = p + 5;
        if (!t || t == name + 5) return 0;
    }
    if (!*t || strlen(t) > 9) return 0;
    for (const char *d = t; *d; d++)
        if (*d < '0' || *d > '9') return 0;
    return atol(t);
}

int g3_tmp_clean(const char *dir, const char *target) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long pid = tmp_owner(e->d_name, target);
        // kill(pid, 0) fails with ESRCH only when no such process exists: a live writer's
        // temporary (this process's, another run's) is never touched.
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[4400];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p && unlink(p) == 0) n++;
    }
    closedir(d);
    return n;
}

int g3_atomic_open(G3AtomicFile *f, const char *path) {
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path ||
        snprintf(f->tmp, sizeof f->tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof f->tmp)
        return g3_errorf("%s: path too long", path);
    // What an earlier writer of this file left when it was killed mid-write goes now.
    char dir[4096];
    const char *base;
    split_path(path, dir, sizeof dir, &base);
    g3_tmp_clean(dir, base);
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
    char dir[4096];
    const char *base;
    split_path(f->path, dir, sizeof dir, &base);
    sync_dir(dir);  // best effort: the file is whole either way
    return 0;
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

int g3_lock_file(const char *path, int *fd_out) {
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return g3_errorf("%s: cannot create the lock file: %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char buf[32] = "";
            ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
            close(fd);
            if (e != EWOULDBLOCK) return g3_errorf("%s: cannot lock: %s", path, strerror(e));
            long pid = n > 0 ? atol(buf) : 0;
            if (pid > 0) return g3_errorf("%s: held by another process (pid %ld)", path, pid);
            return g3_errorf("%s: held by another process", path);
        }
        // The holder before us may have unlinked the file after we opened it (g3_unlock_file):
        // the lock is only ours if the path still names the file we locked.
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            char buf[32];
            int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
                close(fd);
                return g3_errorf("%s: cannot write the lock file: %s", path, strerror(errno));
            }
            *fd_out = fd;
            return 0;
        }
        close(fd);
    }
    return g3_errorf("%s: cannot lock: the file keeps changing", path);
}

void g3_unlock_file(const char *path, int fd) {
    if (fd < 0) return;
    unlink(path);  // while still holding it, so nobody locks a file that is going away
    close(fd);
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
