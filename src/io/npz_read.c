// npz_read.c: the .npz reader of npz_read.h. A zip archive is read from its end: the end of
// central directory record (and the zip64 one numpy writes past 4 GiB or 65535 members), then
// the central directory, then each member's local header and .npy header. Deflated members
// are inflated with zlib's raw inflate.
#include "npz_read.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../base/base.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }

// Whether [off, off + len) lies inside a buffer of size bytes.
static int inside(uint64_t off, uint64_t len, size_t size) { return off <= size && len <= size - off; }

// Inflates a raw deflate stream src[slen] into dst[dlen] exactly (cap: stop after dlen bytes
// when partial, for reading a header). Returns the bytes produced, or -1.
static int64_t inflate_to(uint8_t *dst, uint64_t dlen, const uint8_t *src, uint64_t slen, int partial, uint32_t *crc) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -15) != Z_OK) return -1;
    uint64_t in = 0, out = 0;
    int rc = Z_OK;
    while (out < dlen && rc == Z_OK) {
        uInt ai = (uInt)G3_MIN(slen - in, (uint64_t)1 << 30), ao = (uInt)G3_MIN(dlen - out, (uint64_t)1 << 30);
        zs.next_in = (Bytef *)(src + in);
        zs.avail_in = ai;
        zs.next_out = dst + out;
        zs.avail_out = ao;
        rc = inflate(&zs, Z_NO_FLUSH);
        in += ai - zs.avail_in;
        out += ao - zs.avail_out;
        if (rc == Z_BUF_ERROR && ai == 0) break;  // input exhausted
        if (rc == Z_BUF_ERROR) rc = Z_OK;
    }
    // a whole member must end exactly where its size says
    if (!partial && rc == Z_OK && out == dlen) {
        uint8_t extra;
        zs.next_out = &extra;
        zs.avail_out = 1;
        zs.next_in = (Bytef *)(src + in);
        zs.avail_in = (uInt)G3_MIN(slen - in, (uint64_t)1 << 30);
        rc = inflate(&zs, Z_FINISH);
        if (zs.avail_out == 0) rc = Z_DATA_ERROR;  // more data than declared
    }
    inflateEnd(&zs);
    if (crc) {
        uLong c = crc32(0L, Z_NULL, 0);
        for (uint64_t o = 0; o < out; o += (uint64_t)1 << 30) c = crc32(c, dst + o, (uInt)G3_MIN(out - o, (uint64_t)1 << 30));
        *crc = (uint32_t)c;
    }
    if (partial) return rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR ? (int64_t)out : -1;
    return rc == Z_STREAM_END && out == dlen ? (int64_t)out : -1;
}

// The value text after 'key': in a .npy header dict, or NULL.
static const char *npy_field(const char *h, const char *key) {
    char pat[32];
    for (int q = 0; q < 2; q++) {
        snprintf(pat, sizeof pat, q ? "\"%s\"" : "'%s'", key);
        const char *p = strstr(h, pat);
        if (!p) continue;
        p += strlen(pat);
        while (*p == ' ') p++;
        if (*p != ':') return NULL;
        p++;
        while (*p == ' ') p++;
        return p;
    }
    return NULL;
}

// Parses the .npy header at b[0..n): sets dtype, shape, numel, nbytes and skip.
static int npy_header(G3NpyArray *a, const uint8_t *b, uint64_t n, uint64_t usize) {
    if (n < 10 || memcmp(b, "\x93NUMPY", 6)) return g3_errorf("not a .npy array (no \\x93NUMPY magic)");
    int major = b[6];
    uint64_t start, hlen;
    if (major == 1) { start = 10; hlen = rd16(b + 8); }
    else if (major == 2 || major == 3) { if (n < 12) return g3_errorf("truncated .npy header"); start = 12; hlen = rd32(b + 8); }
    else return g3_errorf(".npy format version %d is not supported (1, 2 and 3 are)", major);
    if (hlen > 65536 || start + hlen > n) return g3_errorf(".npy header of %llu bytes is truncated or too long", (unsigned long long)hlen);
    char h[65537];
    memcpy(h, b + start, hlen);
    h[hlen] = 0;
    if (strlen(h) != hlen) return g3_errorf(".npy header holds a NUL byte");
    const char *d = npy_field(h, "descr"), *fo = npy_field(h, "fortran_order"), *sh = npy_field(h, "shape");
    if (!d || !fo || !sh) return g3_errorf(".npy header lacks 'descr', 'fortran_order' or 'shape': %.80s", h);
    if (*d != '\'' && *d != '"') return g3_errorf(".npy descr is not a string (structured arrays are not supported)");
    char q = *d++, descr[16];
    size_t dl = 0;
    while (d[dl] && d[dl] != q && dl < sizeof descr - 1) dl++;
    if (d[dl] != q) return g3_errorf(".npy descr is too long or unterminated");
    memcpy(descr, d, dl);
    descr[dl] = 0;
    static const struct { const char *code; G3DType t; int size; } types[] = {
        {"f4", G3_F32, 4}, {"f8", G3_F64, 8}, {"f2", G3_F16, 2}, {"i4", G3_I32, 4}, {"i8", G3_I64, 8}};
    int size = 0;
    if (dl == 3 && (descr[0] == '<' || descr[0] == '|' || descr[0] == '='))
        for (size_t i = 0; i < G3_ARRAY_LEN(types); i++)
            if (!strcmp(descr + 1, types[i].code)) { a->dtype = types[i].t; size = types[i].size; }
    if (!size) return g3_errorf(".npy dtype '%s' is not supported (little-endian f4, f8, f2, i4, i8 are)", descr);
    if (!strncmp(fo, "True", 4)) return g3_errorf("Fortran-order arrays are not supported (save with np.ascontiguousarray)");
    if (strncmp(fo, "False", 5)) return g3_errorf(".npy fortran_order is neither True nor False");
    if (*sh != '(') return g3_errorf(".npy shape is not a tuple");
    sh++;
    a->ndim = 0;
    uint64_t numel = 1;
    for (;;) {
        while (*sh == ' ') sh++;
        if (*sh == ')') break;
        if (*sh < '0' || *sh > '9') return g3_errorf(".npy shape holds something other than integers");
        uint64_t v = 0;
        while (*sh >= '0' && *sh <= '9') {
            if (v > (UINT64_C(1) << 48)) return g3_errorf(".npy shape dimension too large");
            v = v * 10 + (uint64_t)(*sh++ - '0');
        }
        if (a->ndim == G3_NPY_MAX_DIMS) return g3_errorf(".npy array has more than %d dimensions", G3_NPY_MAX_DIMS);
        a->shape[a->ndim++] = (int64_t)v;
        if (v && numel > (UINT64_C(1) << 60) / v) return g3_errorf(".npy array too large");
        numel *= v;
        while (*sh == ' ') sh++;
        if (*sh == ',') sh++;
        else if (*sh != ')') return g3_errorf(".npy shape is malformed");
    }
    if (numel > (UINT64_C(1) << 58)) return g3_errorf(".npy array too large");
    a->numel = (int64_t)numel;
    a->nbytes = numel * (uint64_t)size;
    a->skip = start + hlen;
    if (a->skip + a->nbytes != usize)
        return g3_errorf(".npy data is %llu bytes but dtype and shape need %llu", (unsigned long long)(usize - G3_MIN(usize, a->skip)),
                         (unsigned long long)a->nbytes);
    return 0;
}

// One central-directory entry at p (room bytes left in the directory): fills a, and *len.
static int member(G3NpzFile *z, G3NpyArray *a, const uint8_t *p, uint64_t room, uint64_t *len) {
    if (room < 46 || rd32(p) != 0x02014b50) return g3_errorf("central directory entry is corrupt");
    uint16_t flags = rd16(p + 8), method = rd16(p + 10), nlen = rd16(p + 28), elen = rd16(p + 30), clen = rd16(p + 32);
    uint64_t csize = rd32(p + 20), usize = rd32(p + 24), lho = rd32(p + 42);
    *len = 46ull + nlen + elen + clen;
    if (*len > room) return g3_errorf("central directory entry is truncated");
    const uint8_t *name = p + 46, *ex = name + nlen;
    // zip64 extra field: the 64-bit values of the fields that hold 0xFFFFFFFF, in order
    for (uint64_t e = 0; e + 4 <= elen;) {
        uint16_t id = rd16(ex + e), sz = rd16(ex + e + 2);
        if (e + 4 + sz > elen) return g3_errorf("extra field is truncated");
        if (id == 0x0001) {
            const uint8_t *v = ex + e + 4, *end = v + sz;
            if (usize == 0xFFFFFFFFu) { if (v + 8 > end) return g3_errorf("zip64 field is truncated"); usize = rd64(v); v += 8; }
            if (csize == 0xFFFFFFFFu) { if (v + 8 > end) return g3_errorf("zip64 field is truncated"); csize = rd64(v); v += 8; }
            if (lho == 0xFFFFFFFFu) { if (v + 8 > end) return g3_errorf("zip64 field is truncated"); lho = rd64(v); }
        }
        e += 4ull + sz;
    }
    if (nlen < 5 || (size_t)nlen - 4 >= sizeof a->name || memcmp(name + nlen - 4, ".npy", 4))
        return g3_errorf("member '%.*s' is not a .npy array", (int)G3_MIN(nlen, 200), name);
    memcpy(a->name, name, nlen - 4u);
    a->name[nlen - 4] = 0;
    if (strlen(a->name) != nlen - 4u) return g3_errorf("member name holds a NUL byte");
    if (flags & 1) return g3_errorf("member '%s' is encrypted", a->name);
    if (method != 0 && method != 8) return g3_errorf("member '%s': compression method %u is not supported (stored and deflate are)", a->name, method);
    if (method == 0 && csize != usize) return g3_errorf("member '%s': stored but its sizes differ", a->name);
    a->method = method;
    a->crc = rd32(p + 16);
    if (!inside(lho, 30, z->size) || rd32(z->map + lho) != 0x04034b50) return g3_errorf("member '%s': local header is missing", a->name);
    uint64_t data = lho + 30 + rd16(z->map + lho + 26) + rd16(z->map + lho + 28);
    if (!inside(data, csize, z->size)) return g3_errorf("member '%s': data runs past the end of the file", a->name);
    a->off = data;
    a->csize = csize;
    // the .npy header: in place when stored, else the first bytes inflated
    const uint8_t *h = z->map + data;
    uint64_t hn = usize;
    uint8_t *buf = NULL;
    if (method == 8) {
        hn = G3_MIN(usize, 65536 + 16);
        if (!(buf = g3_malloc(hn ? hn : 1))) return -1;
        int64_t got = inflate_to(buf, hn, h, csize, 1, NULL);
        if (got < 0) { free(buf); return g3_errorf("member '%s': deflate data is corrupt", a->name); }
        hn = (uint64_t)got;
        h = buf;
    }
    int rc = npy_header(a, h, hn, usize);
    free(buf);
    if (rc) return g3_error_prefix("member '%s'", a->name);
    return 0;
}

static int parse(G3NpzFile *z) {
    const uint8_t *m = z->map;
    size_t n = z->size;
    if (n < 22) return g3_errorf("not a zip archive (too short)");
    int64_t eocd = -1;
    for (int64_t i = (int64_t)n - 22; i >= 0 && i >= (int64_t)n - 22 - 65535; i--)
        if (rd32(m + i) == 0x06054b50) { eocd = i; break; }
    if (eocd < 0) return g3_errorf("not a zip archive (no end of central directory)");
    const uint8_t *e = m + eocd;
    if (rd16(e + 4) || rd16(e + 6)) return g3_errorf("split zip archives are not supported");
    uint64_t count = rd16(e + 10), cdsize = rd32(e + 12), cdoff = rd32(e + 16);
    if (count == 0xFFFF || cdsize == 0xFFFFFFFFu || cdoff == 0xFFFFFFFFu) {
        if (eocd < 20 || rd32(e - 20) != 0x07064b50) return g3_errorf("zip64 locator is missing");
        uint64_t z64 = rd64(e - 20 + 8);
        if (!inside(z64, 56, n) || rd32(m + z64) != 0x06064b50) return g3_errorf("zip64 end of central directory is corrupt");
        count = rd64(m + z64 + 32);
        cdsize = rd64(m + z64 + 40);
        cdoff = rd64(m + z64 + 48);
    }
    if (!inside(cdoff, cdsize, n)) return g3_errorf("central directory runs past the end of the file");
    if (count > cdsize / 46) return g3_errorf("central directory claims %llu members in %llu bytes", (unsigned long long)count, (unsigned long long)cdsize);
    if (!(z->a = g3_calloc(count ? count : 1, sizeof *z->a))) return -1;
    uint64_t pos = cdoff, end = cdoff + cdsize;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t len = 0;
        if (member(z, &z->a[i], m + pos, end - pos, &len)) return g3_error_prefix("member %llu", (unsigned long long)i + 1);
        for (int j = 0; j < z->n; j++)
            if (!strcmp(z->a[j].name, z->a[i].name)) return g3_errorf("member '%s' appears twice", z->a[i].name);
        z->n++;
        pos += len;
    }
    return 0;
}

int g3_npz_read_mem(G3NpzFile *z, const void *data, size_t size, const char *name) {
    memset(z, 0, sizeof *z);
    snprintf(z->path, sizeof z->path, "%s", name ? name : "npz");
    z->map = data;
    z->size = size;
    if (parse(z)) {
        free(z->a);
        z->a = NULL;
        z->n = 0;
        return g3_error_prefix("%s", z->path);
    }
    return 0;
}

int g3_npz_read_open(G3NpzFile *z, const char *path) {
    memset(z, 0, sizeof *z);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return g3_errorf("%s: cannot open", path);
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) { close(fd); return g3_errorf("%s: not a regular file", path); }
    size_t size = (size_t)st.st_size;
    void *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (size && map == MAP_FAILED) return g3_errorf("%s: cannot map", path);
    if (g3_npz_read_mem(z, map, size, path)) {
        if (size) munmap(map, size);
        return -1;
    }
    z->mapped = 1;
    return 0;
}

void g3_npz_read_close(G3NpzFile *z) {
    if (z->mapped && z->size) munmap((void *)z->map, z->size);
    free(z->a);
    memset(z, 0, sizeof *z);
}

const G3NpyArray *g3_npz_find(const G3NpzFile *z, const char *name) {
    for (int i = 0; i < z->n; i++)
        if (!strcmp(z->a[i].name, name)) return &z->a[i];
    return NULL;
}

int g3_npz_read_f32(const G3NpzFile *z, const G3NpyArray *a, float *out) {
    if (a->dtype != G3_F32 && a->dtype != G3_F64 && a->dtype != G3_F16)
        return g3_errorf("%s: array '%s' is %s, not floating point", z->path, a->name, g3_dtype_name(a->dtype));
    if (a->method == 0) {
        // a stored member's data sits wherever the zip put it: no alignment to rely on
        const uint8_t *src = z->map + a->off + a->skip;
        if (a->dtype == G3_F32) { memcpy(out, src, a->nbytes); return 0; }
        if ((uintptr_t)src % 8 == 0) { g3_to_f32(out, src, a->dtype, (size_t)a->numel); return 0; }
        void *tmp = g3_malloc(a->nbytes ? a->nbytes : 1);
        if (!tmp) return g3_error_prefix("%s: array '%s'", z->path, a->name);
        memcpy(tmp, src, a->nbytes);
        g3_to_f32(out, tmp, a->dtype, (size_t)a->numel);
        free(tmp);
        return 0;
    }
    uint64_t usize = a->skip + a->nbytes;
    uint8_t *buf = g3_malloc(usize ? usize : 1);
    if (!buf) return g3_error_prefix("%s: array '%s'", z->path, a->name);
    uint32_t crc;
    int64_t got = inflate_to(buf, usize, z->map + a->off, a->csize, 0, &crc);
    int rc = 0;
    if (got < 0) rc = g3_errorf("%s: array '%s': deflate data is corrupt", z->path, a->name);
    else if (crc != a->crc) rc = g3_errorf("%s: array '%s': CRC mismatch (the file is damaged)", z->path, a->name);
    else g3_to_f32(out, buf + a->skip, a->dtype, (size_t)a->numel);
    free(buf);
    return rc;
}
