// fuzz_http.c: libFuzzer harness for the server's HTTP/1.1 request parser (src/server/http.h):
// any bytes must parse into a request that lies inside the buffer, or be "incomplete", or be
// refused with a 4xx/5xx status and a reason. Also: a complete request of n bytes is
// incomplete at n - 1 bytes (the parser never answers before the request has ended), and a
// second parse of the same bytes gives the same answer.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/http.h"

static void inside(const char *p, size_t n, const uint8_t *buf, size_t len) {
    if (n && (p < (const char *)buf || p + n > (const char *)buf + len)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const HttpLimits lim = {512, 2048};  // small, so that the limits are reached
    HttpRequest r, r2;
    const char *buf = (const char *)data;
    long long n = http_parse(buf, size, &lim, &r);
    if (http_parse(buf, size, &lim, &r2) != n) abort();
    if (n < 0) {
        int st = (int)-n;
        if (st < 400 || st > 599 || !r.error) abort();
        return 0;
    }
    if (n == 0) {
        if (r.head_len > size) abort();
        return 0;
    }
    if ((size_t)n > size || r.head_len == 0 || r.head_len > (size_t)n || r.head_len > lim.max_head + 4) abort();
    if (r.body_len != (size_t)(r.content_length > 0 ? r.content_length : 0) || r.head_len + r.body_len != (size_t)n) abort();
    if (r.body_len > lim.max_body || (r.body_len && r.body != buf + r.head_len)) abort();
    inside(r.method, r.method_len, data, size);
    inside(r.target, r.target_len, data, size);
    if (!r.method_len || !r.target_len || (r.minor != 0 && r.minor != 1)) abort();
    for (int i = 0; i < r.nhdr; i++) {
        inside(r.hdr[i].name, r.hdr[i].name_len, data, r.head_len);
        inside(r.hdr[i].value, r.hdr[i].value_len, data, r.head_len);
    }
    (void)http_header(&r, "content-type", NULL);
    (void)http_path_is(&r, "/v1/chat/completions");
    // one byte less is not yet a request
    HttpRequest r3;
    if (http_parse(buf, (size_t)n - 1, &lim, &r3) != 0) abort();
    return 0;
}
