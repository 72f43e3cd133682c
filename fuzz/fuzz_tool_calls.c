// fuzz_tool_calls.c: libFuzzer harness for the reader of tool calls in model answers
// (src/server/tools.c): any text is either calls of the known tools with arguments that are
// a JSON object, or not calls (0), never a crash; rendering a call back for the prompt and
// reading that again gives the same call.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/srv_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char *names[] = {"get_weather", "calc", "list_dir"};
    SrvTools t = {{0}};
    for (int i = 0; i < 3; i++) t.name[i] = names[i];
    t.n = 3;
    SrvToolCall calls[SRV_MAX_CALLS];
    int n = srv_tool_calls(&t, (const char *)data, size, calls);
    if (n < 0 || n > SRV_MAX_CALLS) abort();
    (void)srv_tool_prefix(&t, (const char *)data, size);
    for (int i = 0; i < n; i++) {
        Json j;
        if (json_parse(&j, calls[i].args, strlen(calls[i].args)) || json_root(&j)->type != JSON_OBJECT) abort();
        json_free(&j);
        int known = 0;
        for (int k = 0; k < 3; k++) known |= !strcmp(calls[i].name, names[k]);
        if (!known) abort();
        // the prompt's form of the call reads back as the same call
        SBuf b = {0};
        if (sb_puts(&b, "[") || srv_call_render(&b, calls[i].name, calls[i].args, strlen(calls[i].args)) || sb_puts(&b, "]")) abort();
        SrvToolCall again[SRV_MAX_CALLS];
        int m = srv_tool_calls(&t, b.p, b.n, again);
        if (m != 1 || strcmp(again[0].name, calls[i].name)) abort();
        Json a, c;
        if (json_parse(&a, again[0].args, strlen(again[0].args)) || json_parse(&c, calls[i].args, strlen(calls[i].args))) abort();
        if (a.n != c.n) abort();
        json_free(&a);
        json_free(&c);
        srv_calls_free(again, m);
        sb_free(&b);
    }
    srv_calls_free(calls, n);
    return 0;
}
