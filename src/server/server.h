// server.h: `gemma3 serve`: an OpenAI-compatible HTTP/1.1 server over the generation engine
// (gen/engine.h). Two threads: the I/O thread owns every socket (one poll loop: accepting,
// reading and parsing requests, writing responses, timeouts), and the engine thread owns the
// engine (every live request advances in one batched forward pass per step; a new request
// joins at the next step; a client that goes away frees its slot at the next step). They meet
// in a mutex-guarded list of jobs: the I/O thread hands over a request already checked and
// tokenized, the engine thread appends the bytes of the response as tokens come, and wakes
// the I/O thread through an eventfd. See docs/serve.md for the API.
#ifndef G3_SERVER_H
#define G3_SERVER_H

#include <signal.h>
#include <stddef.h>

#include "../model/forward.h"
#include "../sampler/sampler.h"
#include "../tokenizer/tokenizer.h"

typedef struct {
    const char *host;        // address to listen on (default "127.0.0.1")
    int port;                // 0: any free port (printed)
    int parallel;            // sequences decoded together (cache slots)
    int ctx;                 // positions per sequence
    int max_rows;            // rows per forward call (>= parallel)
    int max_queue;           // sequences waiting for a slot at most; beyond: 503 Retry-After
    int max_conns;           // open connections at most; beyond: 503 and close
    size_t max_body;         // request body bytes at most (413 beyond)
    double timeout;          // seconds a request may take to arrive, a client to accept bytes,
                             // an idle keep-alive connection to stay
    const char *api_key;     // NULL: no authentication
    const char *model_name;  // what /v1/models lists
    int fast;                // bf16 activations in the matrix products
    G3SamplerConfig sampling;  // defaults for fields a request leaves out
    int max_tokens;          // default max_tokens (capped by the context left)
    int quiet;               // no per-request log lines on stderr
} G3ServeOptions;

// Serves until *stop becomes non-zero (SIGINT/SIGTERM): prints "listening on http://H:P" on
// stdout once requests are accepted. 0 on a clean stop, -1 with a message.
int g3_serve(const G3Model *m, const G3Tokenizer *tok, const G3ServeOptions *o, volatile sig_atomic_t *stop);

#endif
