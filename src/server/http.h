// http.h: the HTTP/1.1 request parser of `gemma3 serve` (RFC 9112), a pure function over the
// bytes received so far, so the server calls it again as bytes arrive and the fuzzer calls it
// on anything. Strict where leniency is a known attack (request smuggling): one Content-Length
// (digits only; copies must agree), no Transfer-Encoding on requests (411: send a length), no
// obsolete line folding, no control bytes in names or values; limits on the head, the number
// of headers and the body. Bare LF line ends are accepted (RFC 9112 section 2.2 allows it).
// Not here: chunked request bodies, pipelining order (the server reads one request at a time),
// HTTP/2, TLS.
#ifndef G3_HTTP_H
#define G3_HTTP_H

#include <stddef.h>

enum { HTTP_MAX_HEADERS = 64 };

typedef struct {
    const char *name, *value;  // point into the buffer (not NUL-terminated)
    size_t name_len, value_len;
} HttpHeader;

typedef struct {
    size_t max_head;     // request line + headers (431 beyond; 0: 16 KiB)
    size_t max_body;     // Content-Length at most (413 beyond; 0: 1 MiB)
} HttpLimits;

typedef struct {
    const char *method, *target;  // "POST", "/v1/chat/completions?x=1" (into the buffer)
    size_t method_len, target_len;
    int minor;                    // HTTP/1.minor (0 or 1)
    HttpHeader hdr[HTTP_MAX_HEADERS];
    int nhdr;
    size_t head_len;              // bytes of request line + headers + blank line; 0 until complete
    long long content_length;     // -1: none
    int keep_alive;               // the connection stays open after the response
    int expect_continue;          // "Expect: 100-continue"
    const char *body;             // [body_len] once complete
    size_t body_len;
    const char *error;            // what was wrong, for the 4xx's message
} HttpRequest;

// Parses buf[0..len). Returns the request's total length (head + body) when it is complete;
// 0 when more bytes are needed (r->head_len > 0 once the head is complete: the caller may
// then answer 100-continue); or minus an HTTP status (-400, -411, -413, -414, -431, -501,
// -505) with r->error saying why.
long long http_parse(const char *buf, size_t len, const HttpLimits *lim, HttpRequest *r);

// A header's value by case-insensitive name (the first), or NULL; *n its length.
const char *http_header(const HttpRequest *r, const char *name, size_t *n);
// Whether the target's path (before any '?') equals path.
int http_path_is(const HttpRequest *r, const char *path);
// Whether the method is m.
int http_method_is(const HttpRequest *r, const char *m);
// "OK", "Bad Request", ... for the status codes the server uses.
const char *http_reason(int status);

#endif
