// srv_internal.h: what the server's files share: a growable byte buffer, the checked form of
// an OpenAI request (api.c), and tool calling (tools.c). Not a public API.
#ifndef G3_SRV_INTERNAL_H
#define G3_SRV_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../base/json.h"
#include "../io/image.h"
#include "../vision/vision.h"
#include "../sampler/sampler.h"
#include "../tokenizer/tokenizer.h"

// ---- bytes ----
typedef struct {
    char *p;
    size_t n, cap;
} SBuf;
int sb_put(SBuf *b, const void *s, size_t n);  // 0, or -1 out of memory
int sb_puts(SBuf *b, const char *s);
int sb_printf(SBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sb_json_str(SBuf *b, const char *s, size_t n);  // a JSON string literal (valid UTF-8 always)
void sb_free(SBuf *b);

// ---- errors, as OpenAI returns them ----
typedef struct {
    int status;          // 400, 401, 404, ...
    const char *type;    // "invalid_request_error", "authentication_error", "server_error", ...
    char param[64];      // the request field at fault, or ""
    char message[512];
} SrvError;
int srv_err(SrvError *e, int status, const char *param, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
// {"error": {"message", "type", "param", "code"}}
int srv_error_json(SBuf *b, const SrvError *e);

// ---- tools (tools.c) ----
enum { SRV_MAX_TOOLS = 64, SRV_MAX_CALLS = 16 };
typedef struct {
    char *name[SRV_MAX_TOOLS];
    int n;
    int choice;          // 0 auto, 1 none, 2 required
    char *prompt;        // the tools' description for the prompt (malloc'd), NULL without tools
} SrvTools;
typedef struct {
    char *name;
    char *args;          // the arguments as a JSON object text
} SrvToolCall;
// Reads "tools" and "tool_choice". 0, or -1 with e filled.
int srv_tools_parse(const JsonNode *req, SrvTools *t, SrvError *e);
void srv_tools_free(SrvTools *t);
// The model's answer as tool calls: the whole (trimmed) text must be one ```tool_code (or
// ```json, ```python, ```) fenced block, a [...] list, or a JSON object, holding calls of
// tools in t, in python style (name(a=1, b="x")) or JSON ({"name": ..., "arguments": {...}}).
// Returns the number of calls (> 0) into calls[SRV_MAX_CALLS] (free with srv_calls_free),
// or 0: not tool calls (the text is the answer). Never fails otherwise.
int srv_tool_calls(const SrvTools *t, const char *text, size_t n, SrvToolCall *calls);
void srv_calls_free(SrvToolCall *calls, int n);
// Whether text so far (a stream's beginning) could still become tool calls: held back.
int srv_tool_prefix(const SrvTools *t, const char *text, size_t n);
// One call as the prompt shows it to the model: name(a=1, b="x") from JSON args text.
int srv_call_render(SBuf *b, const char *name, const char *args_json, size_t args_len);

// ---- the example tools of `gemma3 chat --tools` (localtools.c) ----
// Arithmetic: + - * / % ** (^) ( ), unary signs, numbers, a few functions and pi, e; depth
// and length limited. 0 with *out, or -1 with *err.
int srv_calc(const char *text, double *out, const char **err);
// The tools' definitions as an OpenAI "tools" list (JSON text): calc; list_dir and read_file.
const char *srv_local_tools_json(int calc, int files);
// Runs one call (calc, list_dir, read_file; files confined to root, read-only) and appends its
// result, or "error: ...", to out. -1 only when out of memory.
int srv_local_tool(const char *root, const SrvToolCall *call, SBuf *out);

// ---- a generation request, checked (api.c) ----
enum { SRV_CHAT, SRV_COMPLETION };
enum { SRV_MAX_STOPS = 16, SRV_MAX_N = 16, SRV_MAX_TOP_LOGPROBS = 20 };
typedef struct {
    int kind;                 // SRV_CHAT, SRV_COMPLETION
    int32_t *prompt;          // [nprompt] malloc'd
    int nprompt;
    int max_tokens;
    G3SamplerConfig sc;
    int seeded;               // a seed was given
    int n, stream, include_usage;
    int ignore_eos;           // llama.cpp's extension: <eos>/<end_of_turn> do not stop (benchmarks)
    char *stops[SRV_MAX_STOPS];
    int nstops;
    int logprobs;             // return logprobs
    int top_logprobs;         // alternatives per token
    SrvTools tools;
    // image parts of the messages, in prompt order (their runs are in prompt); the engine
    // thread fills soft (each [tokens][C], through the vision tower) before the sequences start
    G3Image *images;
    int nimages;
    float **soft;
} SrvGen;
enum { SRV_MAX_IMAGES = 8 };  // image parts per request

typedef struct {
    const G3Tokenizer *tok;
    int vocab, ctx, max_tokens;
    G3SamplerConfig sampling;
    const G3VisionConfig *vision;  // the model's, NULL: text only (image parts are refused)
} SrvLimits;

// Parses a /v1/chat/completions or /v1/completions body. 0, or -1 with e filled (4xx).
int srv_gen_parse(const SrvLimits *l, int kind, const char *body, size_t len, SrvGen *g, SrvError *e);
void srv_gen_free(SrvGen *g);
// The chat template over OpenAI messages (system/developer folded into the first user turn,
// tool results as ```tool_output blocks in a user turn, assistant tool calls as ```tool_code
// blocks), ending with the model's turn: as ids (*ids malloc'd, count returned) or -1. Image
// parts ({"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}, PNG or
// JPEG) are decoded into g->images and become their runs where they stand, as Gemma 3's
// template and processor write them (g NULL or no vision in l: refused).
int srv_chat_ids(const SrvLimits *l, const JsonNode *messages, const SrvTools *tools, int32_t **ids, SrvGen *g, SrvError *e);
// The same as text (POST /apply-template).
char *srv_chat_text(const JsonNode *messages, const SrvTools *tools, SrvError *e);

// Parses a JSON body with the server's limits (1 object at the root). 0, or -1 with e (400).
int srv_json_body(Json *j, const char *body, size_t len, SrvError *e);

#endif
