/* server.h - what the parts of clattn-server share: its options, the
 * embedding batcher (embed_queue.c), the completion scheduler
 * (lm_scheduler.c), the HTTP front end (http.c), the replies (reply.c) and
 * the route handlers (route_embed.c, route_complete.c, route_info.c).
 *
 * Threads: libmicrohttpd runs one thread per connection; a handler parses
 * its request, tokenizes (tokenizers are immutable, so that runs in
 * parallel), hands the work to one of the two worker threads and blocks
 * until it is done. Each worker owns its own clattn context, so the
 * embedding model and the language model never wait for each other, and
 * nothing else touches a context. Not part of libclattn. */
#ifndef CLATTN_SERVER_H
#define CLATTN_SERVER_H

#include <clattn.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct server_options {
    const char *model_dir;       /* --model: embedding model folder, or NULL */
    const char *lm_dir;          /* --lm: decoder folder, or NULL */
    const char *host;            /* --host (default 127.0.0.1) */
    const char *device;          /* --device selector, or NULL */
    const char *api_key;         /* --api-key, or NULL: no authentication */
    int32_t port;                /* --port (default 8080; 0: any free port) */
    int32_t max_batch;           /* --max-batch: texts per embedding pass, and
                                    sequences decoded together (default 32) */
    int32_t max_wait_ms;         /* --max-wait-ms: how long a batch waits to fill (0) */
    int32_t max_inputs;          /* --max-inputs: inputs per request (2048) */
    int32_t threads;             /* --threads: connections served at once (64) */
    int32_t max_queue;           /* --max-queue: requests waiting per model (256) */
    int32_t ctx_size;            /* --ctx-size: positions per sequence (4096) */
    int32_t drain_s;             /* --drain-timeout: seconds to finish on SIGTERM (60) */
    int64_t max_body;            /* --max-body-bytes (default 1 MiB) */
    clattn_cache_type cache;     /* --cache-type */
} server_options;

/* ---- embeddings (embed_queue.c) ----------------------------------------- */

/* One request's inputs as token ids, and where its vectors go. */
typedef struct embed_job {
    const int64_t *ids;          /* text i: ids[off_i .. off_i + lens[i]) */
    const int32_t *lens;         /* [n] */
    int32_t n;
    int32_t normalize;           /* -1: the folder's, 0, 1 */
    float *out;                  /* [n, dim] */
    clattn_status status;        /* set when done */
    char error[512];
    bool done;
    struct embed_job *next;
} embed_job;

typedef struct embed_queue embed_queue;

/* Creates a context (device from o->device) and loads o->model_dir in it,
 * then starts the batching thread. Prints the library's message on
 * failure. */
bool embed_queue_start(const server_options *o, embed_queue **out);
/* Runs job in a batch with whatever else arrives within max_wait_ms.
 * Blocks until it is done (then job->status says how) and returns true;
 * returns false at once when max_queue requests are already waiting. */
bool embed_queue_run(embed_queue *q, embed_job *job);
/* Finishes what is queued, stops the thread, frees everything. NULL: no-op. */
void embed_queue_stop(embed_queue *q);
const clattn_tokenizer *embed_queue_tokenizer(const embed_queue *q);
int32_t embed_queue_dim(const embed_queue *q);
int32_t embed_queue_max_length(const embed_queue *q);
int32_t embed_queue_vocab(const embed_queue *q);
const char *embed_queue_model_name(const embed_queue *q);

/* ---- completions (lm_scheduler.c) --------------------------------------- */

typedef struct lm_request {
    int32_t *prompt;             /* [n_prompt] ids (owned by the job once submitted) */
    int32_t n_prompt;
    int32_t max_tokens;
    clattn_sampler_params sampling;
    char **stop;                 /* [n_stop] strings, owned by the job */
    int32_t n_stop;
} lm_request;

typedef enum lm_finish {
    LM_RUNNING = 0,
    LM_STOP,                     /* eos or a stop string */
    LM_LENGTH,                   /* max_tokens, or the context is full */
    LM_FAILED                    /* a device error: lm_job_error says which */
} lm_finish;

typedef struct lm_job lm_job;
typedef struct lm_scheduler lm_scheduler;

bool lm_scheduler_start(const server_options *o, lm_scheduler **out);
/* Finishes the running and queued jobs, stops the thread, frees the
 * model. Jobs still held by handlers stay valid until released. */
void lm_scheduler_stop(lm_scheduler *s);
const clattn_tokenizer *lm_scheduler_tokenizer(const lm_scheduler *s);
int32_t lm_scheduler_vocab(const lm_scheduler *s);
int32_t lm_scheduler_ctx_size(const lm_scheduler *s);
const char *lm_scheduler_model_name(const lm_scheduler *s);

/* Queues a generation; takes r's arrays on success. NULL when the queue is
 * full (r untouched) or out of memory. */
lm_job *lm_scheduler_submit(lm_scheduler *s, lm_request *r);
/* Blocks until the job has text past byte `from` or has ended; *text gets
 * a malloc'd copy of the new bytes (NULL when none), *len their count.
 * Returns the job's state; text published before the end always comes
 * before the state that ends it. */
lm_finish lm_job_wait(lm_scheduler *s, lm_job *j, size_t from, char **text, size_t *len);
/* Counts after the job ended. */
void lm_job_usage(lm_scheduler *s, lm_job *j, int32_t *prompt_tokens, int32_t *completion_tokens);
const char *lm_job_error(lm_job *j);
/* The handler lets go; a job still running is cancelled. */
void lm_job_release(lm_scheduler *s, lm_job *j);

/* ---- HTTP (http.c) ------------------------------------------------------ */

typedef struct server {
    server_options opt;
    embed_queue *embed;          /* NULL without --model */
    lm_scheduler *lm;            /* NULL without --lm */
} server;

/* A route's answer, filled by the handler; http.c sends it. */
typedef struct http_reply {
    int status;
    char *body;                  /* malloc'd; NULL for an SSE stream */
    const char *content_type;
    int items;                   /* for the log line */
    int retry_after;             /* > 0: a Retry-After header */
    lm_job *stream;              /* set: stream this job as server-sent events */
    json_t *stream_info;         /* the stream's id, created and model */
} http_reply;

typedef struct http_server http_server;
bool http_start(server *srv, http_server **out);
int32_t http_port(const http_server *h);
/* Stops accepting, waits up to drain_s for the requests in flight, then
 * closes every connection. */
void http_stop(http_server *h);

/* ---- replies (reply.c) --------------------------------------------------- */

/* Error replies in OpenAI's shape: {"error": {"message", "type", "code"}}. */
void reply_error(http_reply *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A JSON reply (takes the reference to v). */
void reply_json(http_reply *r, int status, json_t *v);

/* ---- routes ------------------------------------------------------------- */

void route_health(server *srv, http_reply *r);
void route_models(server *srv, http_reply *r);
void route_embeddings(server *srv, const char *body, size_t len, http_reply *r);
void route_tei_embed(server *srv, const char *body, size_t len, http_reply *r);
void route_completions(server *srv, const char *body, size_t len, http_reply *r);
/* The SSE stream of a completion (route_complete.c; http.c drives it). */
typedef struct sse_stream sse_stream;
sse_stream *sse_open(server *srv, lm_job *job, json_t *info);
/* Writes up to max bytes of the stream into buf; 0 < n: bytes, -1: the end. Blocks. */
long sse_read(sse_stream *st, char *buf, size_t max);
void sse_close(sse_stream *st);

/* Parses body as a JSON object into *out, or fills r with a 400. */
bool parse_json_object(const char *body, size_t len, http_reply *r, json_t **out);

#endif
