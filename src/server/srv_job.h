// srv_job.h: a request in flight between the server's two threads (server.c, engine side in
// jobs.c). The I/O thread fills a job and submits it; from then on the engine thread alone
// touches its choices, and the two meet only in the fields marked "shared", under Srv.mu.
#ifndef G3_SRV_JOB_H
#define G3_SRV_JOB_H

#include <pthread.h>

#include "../gen/engine.h"
#include "../gen/textstream.h"
#include "server.h"
#include "srv_internal.h"

typedef struct {
    int32_t id;
    float lp;
    int ntop;
    int32_t top[SRV_MAX_TOP_LOGPROBS];
    float toplp[SRV_MAX_TOP_LOGPROBS];
} SrvLogprob;

typedef struct Job Job;

typedef struct {
    Job *job;
    int index;
    int seq;               // engine sequence id, -1 when none
    G3Sampler *smp;        // NULL: greedy
    G3TextStream ts;
    int ts_ok;
    int holding;           // tools: the text so far may become calls, so it is not sent yet
    size_t sent;           // bytes of ts.text already sent as deltas
    int ntok;              // tokens generated
    int cached;            // prompt tokens found in the cache (not recomputed)
    int done;
    G3StopReason stop;
    SrvLogprob *lp;        // [nlp] one per generated token (when asked for)
    int nlp, caplp, lpsent;
    float *scratch;        // [V] raw logits kept for logprobs when penalties edit them
} Choice;

enum { JOB_GEN, JOB_ACT };

typedef struct Srv Srv;

struct Job {
    Srv *srv;
    int kind;
    SrvGen g;              // JOB_GEN
    // JOB_ACT: a prompt read through a separate one-slot state with a recorder
    int32_t *act_ids;
    int act_n;
    char **act_pat;
    int act_npat;
    char id[48];
    long created;
    Choice *ch;            // [g.n]
    int ndone;
    int eng_cancel;        // engine thread's copy of cancel
    int eng_done;          // engine thread: completed (output final)
    SrvError err;          // set (status != 0) when the job failed as a whole
    // shared, under Srv.mu
    SBuf out;              // response bytes not yet taken by the I/O thread
    int status;            // HTTP status of a non-streamed response, once done
    int done;              // out is complete
    int cancel;            // the client went away
    int refs;              // I/O thread + engine thread
    int nseq;              // sequences counted in Srv.inflight
    Job *next;
};

struct Srv {
    G3ServeOptions o;
    const G3Model *m;
    const G3Tokenizer *tok;
    G3State *s;
    G3Engine *e;
    int32_t stop_ids[2];
    int nstop_ids;
    SrvLimits lim;
    // between the threads
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int wake_fd;           // eventfd: the engine thread tells the I/O thread that output is ready
    Job *submit, *submit_tail;
    int inflight;          // sequences submitted and not finished
    int quit;
    int threads;           // OpenMP threads of the engine thread (the caller's setting)
    // engine thread only
    Job *active;
    int *release;          // engine ids to release after a step
    int nrelease, caprelease;
    int dirty;             // output appended since the last wake-up
    G3State *act_s;        // the activations' state, made on first use
    G3VisionConfig vcfg;   // the model's vision config (lim.vision points here when it has one)
    G3Vision vis;          // the vision tower, loaded at the first image
    int vis_loaded;
    unsigned long long seed_ctr;
    long job_ctr;
};

// Engine side (jobs.c).
void *srv_engine_main(void *arg);
void srv_job_unref(Srv *v, Job *j);  // under v->mu
void srv_job_free(Job *j);

#endif
