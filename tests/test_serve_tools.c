// test_serve_tools.c: the server's pieces that need no model: the HTTP request parser (what
// it accepts, what it refuses and with which status), the reader of tool calls in answers
// (python and JSON forms, fenced or not, unknown tools and malformed calls left as text), the
// calculator of `chat --tools calc` and the confinement of the file tools.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/base.h"
#include "check.h"
#include "server/http.h"
#include "server/srv_internal.h"

static long long parse(const char *s, HttpRequest *r) {
    HttpLimits lim = {256, 1024};
    return http_parse(s, strlen(s), &lim, r);
}

static void http(void) {
    HttpRequest r;
    const char *ok = "POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    CHECK(parse(ok, &r) == (long long)strlen(ok), "a whole request");
    CHECK(http_method_is(&r, "POST") && http_path_is(&r, "/v1/chat/completions") && r.body_len == 2 && !memcmp(r.body, "{}", 2) && !r.keep_alive,
          "its fields");
    size_t n;
    const char *h = http_header(&r, "HOST", &n);
    CHECK(h && n == 1 && *h == 'a', "case-insensitive header lookup");
    // every proper prefix is incomplete
    int incomplete = 1;
    for (size_t k = 0; k < strlen(ok); k++) {
        HttpLimits lim = {256, 1024};
        incomplete &= http_parse(ok, k, &lim, &r) == 0;
    }
    CHECK(incomplete, "a prefix was taken for a request");
    CHECK(parse("GET /health HTTP/1.1\n\n", &r) > 0 && r.keep_alive, "bare LF, HTTP/1.1 keeps alive");
    CHECK(parse("GET /health HTTP/1.0\r\n\r\n", &r) > 0 && !r.keep_alive, "HTTP/1.0 closes");
    CHECK(parse("POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nab", &r) == 0 && r.head_len > 0 && r.expect_continue, "100-continue");
    struct { const char *req; int status; } bad[] = {
        {"GET / HTTP/2.0\r\n\r\n", 505},
        {"GET / FTP/1.1\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\n\r\n", 400},
        {"GET http://x/ HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nNo colon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA b: c\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n", 413},
        {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411},
        {"POST / HTTP/1.1\r\nExpect: magic\r\n\r\n", 417},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        long long got = parse(bad[i].req, &r);
        CHECK(got == -bad[i].status && r.error, "'%s': %lld, expected -%d", bad[i].req, got, bad[i].status);
    }
    char big[400];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    big[sizeof big - 1] = 0;
    CHECK(parse(big, &r) == -414, "a request line over the head limit");
    snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX: %0300d\r\n", 0);
    CHECK(parse(big, &r) == -431, "headers over the head limit");
}

static SrvTools tools(void) {
    SrvTools t = {{0}};
    t.name[0] = "get_weather";
    t.name[1] = "calc";
    t.n = 2;
    return t;
}

// The calls read from text, as "name args|name args|" (or "" for none).
static char *calls_of(const char *text) {
    SrvTools t = tools();
    SrvToolCall c[SRV_MAX_CALLS];
    int n = srv_tool_calls(&t, text, strlen(text), c);
    SBuf b = {0};
    sb_puts(&b, "");
    for (int i = 0; i < n; i++) sb_printf(&b, "%s %s|", c[i].name, c[i].args);
    srv_calls_free(c, n);
    return b.p;
}

static void tool_calls(void) {
    struct { const char *text, *want; } cases[] = {
        {"```tool_code\n[get_weather(city=\"Paris\", days=3)]\n```", "get_weather {\"city\": \"Paris\", \"days\": 3}|"},
        {"  ```tool_code\nget_weather(city='Oslo')\n```\n", "get_weather {\"city\": \"Oslo\"}|"},
        {"[calc(expression=\"1+2\"), get_weather(city=\"Rome\", units=None, exact=True, hours=[1, 2], opts={'a': (1,)})]",
         "calc {\"expression\": \"1+2\"}|get_weather {\"city\": \"Rome\", \"units\": null, \"exact\": true, \"hours\": [1, 2], \"opts\": {\"a\": [1]}}|"},
        {"{\"name\": \"calc\", \"arguments\": {\"expression\": \"2*3\"}}", "calc {\"expression\": \"2*3\"}|"},
        {"```json\n[{\"name\": \"calc\", \"parameters\": \"{\\\"expression\\\": \\\"4\\\"}\"}]\n```", "calc {\"expression\": \"4\"}|"},
        {"calc(expression=\"caf\\u00e9\")", "calc {\"expression\": \"caf\xc3\xa9\"}|"},
        {"get_weather()", "get_weather {}|"},
        // not calls: plain text, unknown tools, positional arguments, text around a call, other fences, broken syntax
        {"The weather is nice.", ""},
        {"[launch_missiles(target=\"x\")]", ""},
        {"calc(\"1+2\")", ""},
        {"Sure! get_weather(city=\"Paris\")", ""},
        {"```bash\nget_weather(city=\"x\")\n```", ""},
        {"[get_weather(city=\"Paris\"", ""},
        {"get_weather(city=\"Paris\") and more", ""},
        {"{\"name\": \"calc\", \"arguments\": [1]}", ""},
        {"[]", ""},
        {"", ""},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(cases); i++) {
        char *got = calls_of(cases[i].text);
        CHECK(!strcmp(got, cases[i].want), "'%s': got '%s', want '%s'", cases[i].text, got, cases[i].want);
        free(got);
    }
    SrvTools t = tools();
    CHECK(srv_tool_prefix(&t, "", 0) && srv_tool_prefix(&t, " ``", 3) && srv_tool_prefix(&t, "[ca", 3) && srv_tool_prefix(&t, "get_wea", 7) &&
              srv_tool_prefix(&t, "calc(", 5),
          "beginnings of calls are held back");
    CHECK(!srv_tool_prefix(&t, "Hello", 5) && !srv_tool_prefix(&t, "calculate", 9), "text is not held back");
    t.choice = 1;  // tool_choice "none"
    SrvToolCall c[SRV_MAX_CALLS];
    CHECK(srv_tool_calls(&t, "calc(expression=\"1\")", 20, c) == 0 && !srv_tool_prefix(&t, "[", 1), "tool_choice none reads no calls");
    // the prompt's rendering of a call reads back as that call
    SBuf b = {0};
    { const char *a = "{\"city\": \"Z\\u00fcrich\", \"n\": [1, {\"k\": false}]}"; srv_call_render(&b, "get_weather", a, strlen(a)); }
    CHECK(b.p && !strcmp(b.p, "get_weather(city=\"Z\xc3\xbcrich\", n=[1, {\"k\": false}])"), "render: %s", b.p);
    char *back = calls_of(b.p);
    CHECK(!strcmp(back, "get_weather {\"city\": \"Z\xc3\xbcrich\", \"n\": [1, {\"k\": false}]}|"), "render -> read: %s", back);
    free(back);
    sb_free(&b);
}

static void calc(void) {
    struct { const char *e; double v; } ok[] = {
        {"2+3*4", 14}, {"(1+2)/3", 1}, {"2**10", 1024}, {"2^10", 1024}, {"2**3**2", 512}, {"-2**2", -4}, {"-3 - -3", 0},
        {"7 % 3", 1}, {"-7 % 3", 2}, {"sqrt(16) + abs(-2)", 6}, {"1e3 + .5", 1000.5}, {"floor(2.7) + ceil(2.1)", 5}, {" 2 * pi / pi ", 2},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(ok); i++) {
        double v;
        const char *err = NULL;
        CHECK(srv_calc(ok[i].e, &v, &err) == 0 && v == ok[i].v, "%s: %g (%s), want %g", ok[i].e, v, err ? err : "", ok[i].v);
    }
    const char *bad[] = {"1/0", "5 % 0", "import os", "__import__('os')", "2 +", "(1", "1)", "", "x", "sqrt 4", "1e999", "sqrt(-1)", "2 ** 5000"};
    for (size_t i = 0; i < G3_ARRAY_LEN(bad); i++) {
        double v;
        const char *err = NULL;
        CHECK(srv_calc(bad[i], &v, &err) == -1 && err, "'%s' evaluated", bad[i]);
    }
    char deep[3000];
    memset(deep, '(', 1000);
    deep[1000] = '1';
    memset(deep + 1001, ')', 1000);
    deep[2001] = 0;
    double v;
    const char *err;
    CHECK(srv_calc(deep, &v, &err) == -1, "1000 nested parentheses");
    memset(deep, '-', 2000);
    strcpy(deep + 2000, "1");
    CHECK(srv_calc(deep, &v, &err) == -1, "2000 unary minuses");
}

static void files(void) {
    char root[64], p[256];
    snprintf(root, sizeof root, "/tmp/g3toolsXXXXXX");
    if (!mkdtemp(root)) { CHECK(0, "mkdtemp"); return; }
    snprintf(p, sizeof p, "%s/sub", root);
    g3_mkdir_p(p);
    snprintf(p, sizeof p, "%s/sub/a.txt", root);
    FILE *f = fopen(p, "w");
    fputs("hello file", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/escape", root);
    CHECK(symlink("/etc", p) == 0, "symlink");
    struct { const char *name, *args, *want; } cases[] = {
        {"list_dir", "{\"path\": \".\"}", "escape/\nsub/"},
        {"list_dir", "{\"path\": \"sub\"}", "a.txt"},
        {"read_file", "{\"path\": \"sub/a.txt\"}", "hello file"},
        {"read_file", "{\"path\": \"/sub/a.txt\"}", "hello file"},  // absolute paths count from the shared folder
        {"read_file", "{\"path\": \"../../etc/passwd\"}", "error: ../../etc/passwd: "},
        {"read_file", "{\"path\": \"escape/passwd\"}", "error: escape/passwd: outside the folder the tools may read"},
        {"list_dir", "{\"path\": \"escape\"}", "error: escape: outside the folder the tools may read"},
        {"read_file", "{\"path\": \"sub\"}", "error: sub: not a readable file"},
        {"read_file", "{\"path\": 3}", "error: read_file needs {\"path\": string}"},
        {"calc", "{\"expression\": \"6*7\"}", "42"},
        {"calc", "{\"expression\": \"1/0\"}", "error: division by zero"},
        {"rm", "{}", "error: no tool named rm"},
    };
    for (size_t i = 0; i < G3_ARRAY_LEN(cases); i++) {
        SrvToolCall c = {(char *)cases[i].name, (char *)cases[i].args};
        SBuf b = {0};
        sb_puts(&b, "");
        srv_local_tool(root, &c, &b);
        CHECK(!strncmp(b.p, cases[i].want, strlen(cases[i].want)), "%s %s: '%s', want '%s'", cases[i].name, cases[i].args, b.p, cases[i].want);
        sb_free(&b);
    }
    sh("rm -rf %s", root);
}

int main(void) {
    http();
    tool_calls();
    calc();
    files();
    return check_done();
}
