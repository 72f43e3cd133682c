// http.c: see http.h.
#include "http.h"

#include <string.h>
#include <strings.h>

enum { DEFAULT_HEAD = 16 << 10, DEFAULT_BODY = 1 << 20 };

// RFC 9110 token characters (method and header names).
static int tchar(unsigned char c) {
    if (c >= 'a' && c <= 'z') return 1;
    if (c >= 'A' && c <= 'Z') return 1;
    if (c >= '0' && c <= '9') return 1;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

// A field value's bytes: visible ASCII, space, tab, and obs-text (>= 0x80).
static int vchar(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

static long long fail(HttpRequest *r, int status, const char *why) {
    r->error = why;
    return -status;
}

// The end of the line starting at p (the '\n'), or NULL if there is none before end.
static const char *line_end(const char *p, const char *end) { return memchr(p, '\n', (size_t)(end - p)); }

static int ieq(const char *a, size_t n, const char *b) { return strlen(b) == n && !strncasecmp(a, b, n); }

// Whether the comma-separated list v[0..n) holds token t (case-insensitive).
static int list_has(const char *v, size_t n, const char *t) {
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
        size_t j = i;
        while (j < n && v[j] != ',') j++;
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t')) k--;
        if (ieq(v + i, k - i, t)) return 1;
        i = j;
    }
    return 0;
}

long long http_parse(const char *buf, size_t len, const HttpLimits *lim, HttpRequest *r) {
    memset(r, 0, sizeof *r);
    r->content_length = -1;
    const size_t max_head = lim && lim->max_head ? lim->max_head : DEFAULT_HEAD;
    const size_t max_body = lim && lim->max_body ? lim->max_body : DEFAULT_BODY;
    const char *p = buf, *end = buf + len;
    // RFC 9112 2.2: ignore at least one empty line before the request line
    while (p < end && (*p == '\r' || *p == '\n') && p - buf < 4) p++;
    const char *scan_end = buf + (len < max_head ? len : max_head);
    // the request line
    const char *nl = p < scan_end ? line_end(p, scan_end) : NULL;
    if (!nl) {
        if (len >= max_head) return fail(r, 414, "request line too long");
        return 0;
    }
    const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
    const char *sp1 = memchr(p, ' ', (size_t)(le - p));
    if (!sp1 || sp1 == p) return fail(r, 400, "malformed request line");
    for (const char *q = p; q < sp1; q++)
        if (!tchar((unsigned char)*q)) return fail(r, 400, "malformed method");
    const char *t = sp1 + 1, *sp2 = memchr(t, ' ', (size_t)(le - t));
    if (!sp2 || sp2 == t) return fail(r, 400, "malformed request line");
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f) return fail(r, 400, "malformed request target");
    if (*t != '/' && !(sp2 - t == 1 && *t == '*')) return fail(r, 400, "the request target must be a path");
    const char *v = sp2 + 1;
    if (le - v != 8 || memcmp(v, "HTTP/1.", 7)) {
        if (le - v >= 5 && !memcmp(v, "HTTP/", 5)) return fail(r, 505, "only HTTP/1.0 and HTTP/1.1 are served");
        return fail(r, 400, "malformed HTTP version");
    }
    if (v[7] != '0' && v[7] != '1') return fail(r, 505, "only HTTP/1.0 and HTTP/1.1 are served");
    r->method = p;
    r->method_len = (size_t)(sp1 - p);
    r->target = t;
    r->target_len = (size_t)(sp2 - t);
    r->minor = v[7] - '0';
    int keep = r->minor == 1, close = 0, ka = 0, te = 0;
    // the headers
    p = nl + 1;
    for (;;) {
        nl = p < scan_end ? line_end(p, scan_end) : NULL;
        if (!nl) {
            if (len >= max_head) return fail(r, 431, "request head too large");
            return 0;
        }
        le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == p) { p = nl + 1; break; }  // the blank line
        if (*p == ' ' || *p == '\t') return fail(r, 400, "obsolete header line folding");
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon || colon == p) return fail(r, 400, "malformed header line");
        for (const char *q = p; q < colon; q++)
            if (!tchar((unsigned char)*q)) return fail(r, 400, "malformed header name");
        const char *vb = colon + 1, *ve = le;
        while (vb < ve && (*vb == ' ' || *vb == '\t')) vb++;
        while (ve > vb && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        for (const char *q = vb; q < ve; q++)
            if (!vchar((unsigned char)*q)) return fail(r, 400, "control character in a header value");
        if (r->nhdr == HTTP_MAX_HEADERS) return fail(r, 431, "too many headers");
        HttpHeader *h = &r->hdr[r->nhdr++];
        *h = (HttpHeader){p, vb, (size_t)(colon - p), (size_t)(ve - vb)};
        if (ieq(h->name, h->name_len, "content-length")) {
            if (h->value_len == 0 || h->value_len > 15) return fail(r, h->value_len ? 413 : 400, "bad Content-Length");
            long long n = 0;
            for (size_t i = 0; i < h->value_len; i++) {
                if (h->value[i] < '0' || h->value[i] > '9') return fail(r, 400, "bad Content-Length");
                n = n * 10 + (h->value[i] - '0');
            }
            if (r->content_length >= 0 && r->content_length != n) return fail(r, 400, "conflicting Content-Length headers");
            r->content_length = n;
        } else if (ieq(h->name, h->name_len, "transfer-encoding")) {
            te = 1;
        } else if (ieq(h->name, h->name_len, "connection")) {
            close |= list_has(h->value, h->value_len, "close");
            ka |= list_has(h->value, h->value_len, "keep-alive");
        } else if (ieq(h->name, h->name_len, "expect")) {
            if (!ieq(h->value, h->value_len, "100-continue")) return fail(r, 417, "unsupported Expect");
            r->expect_continue = 1;
        }
        p = nl + 1;
    }
    if (te) return fail(r, 411, "chunked request bodies are not accepted: send Content-Length");
    r->keep_alive = !close && (keep || ka);
    r->head_len = (size_t)(p - buf);
    if (r->content_length > (long long)max_body) return fail(r, 413, "request body too large");
    size_t body = r->content_length > 0 ? (size_t)r->content_length : 0;
    if (len - r->head_len < body) return 0;
    r->body = p;
    r->body_len = body;
    return (long long)(r->head_len + body);
}

const char *http_header(const HttpRequest *r, const char *name, size_t *n) {
    for (int i = 0; i < r->nhdr; i++)
        if (ieq(r->hdr[i].name, r->hdr[i].name_len, name)) {
            if (n) *n = r->hdr[i].value_len;
            return r->hdr[i].value;
        }
    return NULL;
}

int http_path_is(const HttpRequest *r, const char *path) {
    size_t n = 0;
    while (n < r->target_len && r->target[n] != '?') n++;
    return strlen(path) == n && !memcmp(r->target, path, n);
}

int http_method_is(const HttpRequest *r, const char *m) { return strlen(m) == r->method_len && !memcmp(r->method, m, r->method_len); }

const char *http_reason(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
