// npz.c: the .npz writer of npz.h. The zip layout (PKWARE APPNOTE 6.3): per entry a local
// header, the .npy bytes (stored, or raw deflate), and at the end a central directory
// naming every entry, closed by the end-of-central-directory record (preceded by the zip64
// record and locator when an offset or count does not fit 32/16 bits). The CRC and the
// compressed size are known only after the data, so the local header is written first with
// zeros and patched in place afterwards (pwrite), which every reader accepts, unlike data
// descriptors after stored entries.
#include "npz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

enum { ZBUF = 1 << 18 };
#define U32MAX 0xffffffffull

static void put16(unsigned char *p, unsigned v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }

static int feed(G3Npz *z, const void *data, size_t bytes, int finish);

static int out(G3Npz *z, const void *data, size_t n) {
    if (g3_atomic_write(&z->f, data, n)) { z->failed = 1; return -1; }
    z->pos += n;
    return 0;
}

int g3_npz_open(G3Npz *z, const char *path, int compress) {
    memset(z, 0, sizeof *z);
    z->compress = compress;
    if (g3_atomic_open(&z->f, path)) return -1;
    return 0;
}

// The .npy header (format 1.0): magic, version, header length, then the dict padded with
// spaces and a newline to a multiple of 64 bytes, as numpy writes it.
static int npy_header(unsigned char *buf, size_t cap, G3NpzType type, int ndim, const int64_t *shape) {
    char dict[512];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", type == G3_NPZ_F32 ? "<f4" : "<i4");
    for (int d = 0; d < ndim; d++) n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld%s", (long long)shape[d], ndim == 1 || d < ndim - 1 ? ", " : "");
    n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
    if (ndim == 1) {  // numpy spells a 1-tuple "(5,)"
        char *c = strstr(dict, ", )");
        if (c) memmove(c + 1, c + 2, strlen(c + 2) + 1), n--;
    }
    int total = (10 + n + 1 + 63) / 64 * 64;
    if ((size_t)total > cap) return -1;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    put16(buf + 8, (unsigned)(total - 10));
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', (size_t)(total - 10 - n - 1));
    buf[total - 1] = '\n';
    return total;
}

// Local header with zeroed CRC/sizes (patched by end); zip64 headers carry an extra field
// with both sizes.
static int local_header(G3Npz *z) {
    G3NpzEntry *e = &z->cur;
    size_t nl = strlen(e->name);
    unsigned char h[30 + 256 + 20];
    memset(h, 0, sizeof h);
    put32(h, 0x04034b50);
    put16(h + 4, e->zip64 ? 45 : 20);
    put16(h + 6, 0);
    put16(h + 8, z->compress ? 8 : 0);
    put16(h + 10, 0);       // time 00:00
    put16(h + 12, 0x21);    // date 1980-01-01: a fixed date, so equal inputs give equal files
    put16(h + 26, (unsigned)nl);
    put16(h + 28, e->zip64 ? 20 : 0);
    memcpy(h + 30, e->name, nl);
    if (e->zip64) { put16(h + 30 + nl, 1); put16(h + 32 + nl, 16); }
    return out(z, h, 30 + nl + (e->zip64 ? 20 : 0));
}

int g3_npz_begin(G3Npz *z, const char *name, G3NpzType type, int ndim, const int64_t *shape) {
    if (z->failed) return g3_errorf("%s: an earlier write failed", z->f.path);
    if (z->open) return g3_errorf("npz: %s begun before the previous array ended", name);
    if (ndim < 0 || ndim > 8) return g3_errorf("npz: %s: %d dimensions", name, ndim);
    uint64_t n = 4;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] && n > UINT64_MAX / (uint64_t)shape[d])) return g3_errorf("npz: %s: bad shape", name);
        n *= (uint64_t)shape[d];
    }
    G3NpzEntry *e = &z->cur;
    memset(e, 0, sizeof *e);
    if (snprintf(e->name, sizeof e->name, "%s.npy", name) >= (int)sizeof e->name) return g3_errorf("npz: array name too long: %s", name);
    unsigned char hdr[640];
    int hl = npy_header(hdr, sizeof hdr, type, ndim, shape);
    if (hl < 0) return g3_errorf("npz: %s: header too long", name);
    e->usize = (uint64_t)hl + n;
    e->offset = z->pos;
    // deflate can grow incompressible data by a little: a margin decides zip64 before the data
    e->zip64 = z->force_zip64 || e->usize + e->usize / 1000 + 4096 >= U32MAX;
    if (local_header(z)) return -1;
    e->crc = (uint32_t)crc32(0, NULL, 0);
    if (z->compress) {
        if (!z->zs) {
            z->zs = g3_calloc(1, sizeof(z_stream));
            z->zbuf = g3_malloc(ZBUF);
            if (!z->zs || !z->zbuf) return -1;
        }
        z_stream *zs = z->zs;
        memset(zs, 0, sizeof *zs);
        if (deflateInit2(zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return g3_errorf("npz: zlib init failed");
    }
    z->open = 1;
    int rc = feed(z, hdr, (size_t)hl, 0);  // the header is part of the entry's bytes
    z->left = n;
    return rc;
}

// Feeds bytes to the entry: CRC over the uncompressed bytes, then stored or deflated.
static int feed(G3Npz *z, const void *data, size_t bytes, int finish) {
    G3NpzEntry *e = &z->cur;
    if (bytes) {
        const unsigned char *p = data;
        for (size_t done = 0; done < bytes;) {  // crc32 takes uInt lengths
            size_t k = G3_MIN(bytes - done, (size_t)1 << 30);
            e->crc = (uint32_t)crc32(e->crc, p + done, (uInt)k);
            done += k;
        }
    }
    if (!z->compress) {
        if (bytes && out(z, data, bytes)) return -1;
        e->csize += bytes;
        return 0;
    }
    z_stream *zs = z->zs;
    const unsigned char *p = data;
    size_t left = bytes;
    for (;;) {  // zlib's own pattern (zpipe.c): run deflate until it leaves output room unused
        uInt k = (uInt)G3_MIN(left, (size_t)1 << 30);
        zs->next_in = (Bytef *)p;
        zs->avail_in = k;
        int flush = finish && k == left ? Z_FINISH : Z_NO_FLUSH;
        do {
            zs->next_out = z->zbuf;
            zs->avail_out = ZBUF;
            if (deflate(zs, flush) == Z_STREAM_ERROR) { z->failed = 1; return g3_errorf("npz: deflate failed"); }
            size_t have = ZBUF - zs->avail_out;
            if (have && out(z, z->zbuf, have)) return -1;
            e->csize += have;
        } while (zs->avail_out == 0);
        p += k;
        left -= k;
        if (!left) return 0;
    }
}

int g3_npz_write(G3Npz *z, const void *data, size_t bytes) {
    if (!z->open) return g3_errorf("npz: write outside an array");
    if (z->failed) return -1;
    if (bytes > z->left) { z->failed = 1; return g3_errorf("npz: %s: %zu bytes more than its shape holds", z->cur.name, (size_t)(bytes - z->left)); }
    z->left -= bytes;
    return feed(z, data, bytes, 0);
}

int g3_npz_end(G3Npz *z) {
    G3NpzEntry *e = &z->cur;
    if (!z->open) return g3_errorf("npz: end without begin");
    z->open = 0;
    if (z->failed) return -1;
    if (z->left) { z->failed = 1; return g3_errorf("npz: %s: %llu bytes missing", e->name, (unsigned long long)z->left); }
    if (z->compress) {
        if (feed(z, NULL, 0, 1)) return -1;
        deflateEnd(z->zs);
    }
    if (!e->zip64 && e->csize >= U32MAX) { z->failed = 1; return g3_errorf("npz: %s: compressed beyond 4 GiB", e->name); }
    // patch the local header: CRC and sizes (in the zip64 extra field when zip64)
    unsigned char p[16];
    put32(p, e->crc);
    put32(p + 4, e->zip64 ? (uint32_t)U32MAX : (uint32_t)e->csize);
    put32(p + 8, e->zip64 ? (uint32_t)U32MAX : (uint32_t)e->usize);
    if (pwrite(z->f.fd, p, 12, (off_t)e->offset + 14) != 12) { z->failed = 1; return g3_errorf("%s: write failed: %s", z->f.path, strerror(errno)); }
    if (e->zip64) {
        put64(p, e->usize);
        put64(p + 8, e->csize);
        if (pwrite(z->f.fd, p, 16, (off_t)(e->offset + 30 + strlen(e->name) + 4)) != 16) { z->failed = 1; return g3_errorf("%s: write failed: %s", z->f.path, strerror(errno)); }
    }
    if (z->nent == z->cap) {
        int nc = z->cap ? 2 * z->cap : 64;
        G3NpzEntry *ne = g3_realloc(z->ent, (size_t)nc * sizeof *ne);
        if (!ne) { z->failed = 1; return -1; }
        z->ent = ne;
        z->cap = nc;
    }
    z->ent[z->nent++] = *e;
    return 0;
}

int g3_npz_add(G3Npz *z, const char *name, G3NpzType type, int ndim, const int64_t *shape, const void *data) {
    if (g3_npz_begin(z, name, type, ndim, shape)) return -1;
    uint64_t n = z->left;
    if (g3_npz_write(z, data, (size_t)n)) return -1;
    return g3_npz_end(z);
}

static void npz_free(G3Npz *z) {
    if (z->zs) { if (z->open && z->compress) deflateEnd(z->zs); free(z->zs); }
    free(z->zbuf);
    free(z->ent);
    z->zs = NULL; z->zbuf = NULL; z->ent = NULL;
}

void g3_npz_abort(G3Npz *z) {
    g3_atomic_abort(&z->f);
    npz_free(z);
}

int g3_npz_close(G3Npz *z) {
    if (z->open || z->failed) {
        g3_npz_abort(z);
        return g3_errorf("npz: closed with an array %s", z->failed ? "that failed" : "unfinished");
    }
    const uint64_t cd0 = z->pos;
    for (int i = 0; i < z->nent; i++) {
        const G3NpzEntry *e = &z->ent[i];
        size_t nl = strlen(e->name);
        int big_off = e->offset >= U32MAX || z->force_zip64, z64 = e->zip64 || big_off;
        unsigned char h[46 + 256 + 28];
        memset(h, 0, sizeof h);
        put32(h, 0x02014b50);
        put16(h + 4, 3u << 8 | 45);  // made by: Unix, spec 4.5
        put16(h + 6, z64 ? 45 : 20);
        put16(h + 10, z->compress ? 8 : 0);
        put16(h + 14, 0x21);
        put32(h + 16, e->crc);
        put32(h + 20, e->zip64 ? (uint32_t)U32MAX : (uint32_t)e->csize);
        put32(h + 24, e->zip64 ? (uint32_t)U32MAX : (uint32_t)e->usize);
        put16(h + 28, (unsigned)nl);
        put32(h + 38, 0100644u << 16);  // a regular file, rw-r--r--
        put32(h + 42, big_off ? (uint32_t)U32MAX : (uint32_t)e->offset);
        memcpy(h + 46, e->name, nl);
        // zip64 extra: only the fields saturated above, in the order usize, csize, offset
        size_t x = 46 + nl, xl = 0;
        if (z64) {
            unsigned char *q = h + x + 4;
            if (e->zip64) { put64(q + xl, e->usize); xl += 8; put64(q + xl, e->csize); xl += 8; }
            if (big_off) { put64(q + xl, e->offset); xl += 8; }
            put16(h + x, 1);
            put16(h + x + 2, (unsigned)xl);
            xl += 4;
        }
        put16(h + 30, (unsigned)xl);
        if (out(z, h, x + xl)) { g3_npz_abort(z); return -1; }
    }
    const uint64_t cdsize = z->pos - cd0, n = (uint64_t)z->nent;
    unsigned char t[56 + 20 + 22];
    memset(t, 0, sizeof t);
    size_t tl = 0;
    if (n >= 0xffff || cd0 >= U32MAX || cdsize >= U32MAX || z->force_zip64) {  // zip64 end record + locator
        const uint64_t rec = z->pos;
        put32(t, 0x06064b50);
        put64(t + 4, 44);
        put16(t + 12, 3u << 8 | 45);
        put16(t + 14, 45);
        put64(t + 24, n);
        put64(t + 32, n);
        put64(t + 40, cdsize);
        put64(t + 48, cd0);
        put32(t + 56, 0x07064b50);
        put64(t + 64, rec);
        put32(t + 72, 1);
        tl = 76;
    }
    put32(t + tl, 0x06054b50);
    put16(t + tl + 8, n >= 0xffff ? 0xffff : (unsigned)n);
    put16(t + tl + 10, n >= 0xffff ? 0xffff : (unsigned)n);
    put32(t + tl + 12, cdsize >= U32MAX ? (uint32_t)U32MAX : (uint32_t)cdsize);
    put32(t + tl + 16, cd0 >= U32MAX ? (uint32_t)U32MAX : (uint32_t)cd0);
    tl += 22;
    if (out(z, t, tl)) { g3_npz_abort(z); return -1; }
    int rc = g3_atomic_commit(&z->f);
    npz_free(z);
    return rc;
}
