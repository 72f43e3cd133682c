// base.h: what every module of gemma3.c shares: error reporting, checked allocation,
// time, and small helpers. Library code never exits: it records a message with
// g3_errorf() (which returns -1) and the caller decides what to do with it.
#ifndef G3_BASE_H
#define G3_BASE_H

#include <stddef.h>
#include <stdint.h>

// Records a printf-style message as this thread's last error and returns -1, so that
// `return g3_errorf("%s: truncated", path);` reads as one step.
int g3_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prepends "prefix: " to the last error (to add the file or tensor it concerns). Returns -1.
int g3_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *g3_error(void);
void g3_error_clear(void);
// 1 when a message is recorded (g3_error() would otherwise say "unknown error"): lets a caller
// of a function that reports failure in-band (a NaN) tell a failure from a NaN result.
int g3_error_is_set(void);

// Allocation that records an error instead of returning NULL silently.
void *g3_malloc(size_t n);
void *g3_calloc(size_t count, size_t size);
void *g3_realloc(void *p, size_t n);
char *g3_strdup(const char *s);
// 64-byte aligned memory for SIMD kernels; free with g3_free_aligned.
void *g3_malloc_aligned(size_t n);
void g3_free_aligned(void *p);

// Reads a whole file into a NUL-terminated buffer (*len excludes the NUL).
char *g3_read_file(const char *path, size_t *len);
// Writes a file atomically: temporary file in the same folder, fsync, rename, fsync folder.
// A crash at any moment leaves either the old file or the new one, never a torn one.
int g3_write_file_atomic(const char *path, const void *data, size_t len);
// The same, streamed: open a temporary "<path>.tmp.<pid>" beside path, write pieces, then
// commit (fsync + rename) or abort (unlink). The target is untouched until commit succeeds.
// Opening first removes the temporaries of path that writers killed mid-write left behind
// (g3_tmp_clean), so they never pile up.
typedef struct { int fd; char tmp[4200]; char path[4096]; } G3AtomicFile;
int g3_atomic_open(G3AtomicFile *f, const char *path);
int g3_atomic_write(G3AtomicFile *f, const void *data, size_t len);
int g3_atomic_commit(G3AtomicFile *f);
void g3_atomic_abort(G3AtomicFile *f);
// Removes from dir the files "<target>.tmp.<pid>" (any "<name>.tmp.<pid>" when target is NULL)
// whose writer is gone (no process has that pid). Returns how many it removed.
int g3_tmp_clean(const char *dir, const char *target);
// fsyncs a folder, so that renames and unlinks in it are durable. -1 if it cannot be opened.
int g3_fsync_dir(const char *dir);
// An exclusive lock held as long as the process lives (flock on path, created if needed,
// holding the holder's pid): the kernel releases it when the process dies, so a lock is
// never stale. -1 when another process holds it, with a message naming its pid.
int g3_lock_file(const char *path, int *fd);
// Releases the lock and removes the file.
void g3_unlock_file(const char *path, int fd);
int g3_file_exists(const char *path);
int g3_mkdir_p(const char *path);
// Joins a folder and a file name into out (cap bytes). Returns -1 if it does not fit.
int g3_path_join(char *out, size_t cap, const char *dir, const char *name);

double g3_now(void);  // seconds, monotonic

// Overflow-checked size arithmetic for parsers: returns -1 on overflow.
static inline int g3_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

#define G3_MIN(a, b) ((a) < (b) ? (a) : (b))
#define G3_MAX(a, b) ((a) > (b) ? (a) : (b))
#define G3_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
