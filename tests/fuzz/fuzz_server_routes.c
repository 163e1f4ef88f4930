/* fuzz_server_routes.c - libFuzzer target for clattn-server's request
 * handling: the JSON bodies of POST /v1/embeddings, /embed and
 * /v1/completions through the real route handlers (tools/server/
 * route_embed.c, route_complete.c, reply.c), with the SSE stream of a
 * streamed completion read to its end.
 *
 * The two workers are replaced by fakes below, so nothing reaches a
 * device: the embedding queue has the WordPiece tokenizer of
 * tests/fixtures/tokenizer/tiny_vocab and gives fixed vectors; the
 * completion scheduler has the byte-level BPE tokenizer of
 * tests/fixtures/lm/gpt2_f32 and "generates" two pieces of text. The input's
 * byte 0 picks the route (bits 0-1) and what the fake worker does (bits
 * 2-3: succeed; refuse as full; fail; end by length); the rest is the body.
 * Invariants: every reply has a status in [200, 600) and a JSON body (or
 * a stream); every job submitted is released. */
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static clattn_tokenizer *wordpiece, *bpe;
static int outcome;      /* 0 ok, 1 full, 2 failed, 3 length */
static int live_jobs;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    if (clattn_tokenizer_load(FUZZ_FIXTURES "/tokenizer/tiny_vocab", &wordpiece) != CLATTN_OK ||
        clattn_tokenizer_load(FUZZ_FIXTURES "/lm/gpt2_f32", &bpe) != CLATTN_OK) {
        fprintf(stderr, "fuzz_server_routes: %s\n", clattn_last_error());
        abort();
    }
    return 0;
}

/* ---- the fake embedding queue ------------------------------------------- */

#define DIM 4

const clattn_tokenizer *embed_queue_tokenizer(const embed_queue *q) { (void)q; return wordpiece; }
int32_t embed_queue_dim(const embed_queue *q) { (void)q; return DIM; }
int32_t embed_queue_max_length(const embed_queue *q) { (void)q; return 32; }
int32_t embed_queue_vocab(const embed_queue *q)
{
    (void)q;
    return clattn_tokenizer_vocab_size(wordpiece);
}
const char *embed_queue_model_name(const embed_queue *q) { (void)q; return "fuzz-embed"; }

bool embed_queue_run(embed_queue *q, embed_job *job)
{
    (void)q;
    if (outcome == 1)
        return false;
    size_t off = 0;
    for (int32_t i = 0; i < job->n; i++) {
        if (job->lens[i] < 0)
            abort();
        for (int32_t k = 0; k < job->lens[i]; k++)
            if (job->ids[off + (size_t)k] < 0 || job->ids[off + (size_t)k] >= embed_queue_vocab(q))
                abort();
        off += (size_t)job->lens[i];
        for (int32_t d = 0; d < DIM; d++)
            job->out[(size_t)i * DIM + (size_t)d] = (float)(job->lens[i] + d) * 0.125f;
    }
    job->status = outcome == 2 ? CLATTN_ERR_OPENCL : CLATTN_OK;
    snprintf(job->error, sizeof job->error, "%s", outcome == 2 ? "fake device failure" : "");
    job->done = true;
    return true;
}

/* ---- the fake completion scheduler -------------------------------------- */

struct lm_job {
    lm_request req;
    int waits;
};

const clattn_tokenizer *lm_scheduler_tokenizer(const lm_scheduler *s) { (void)s; return bpe; }
int32_t lm_scheduler_vocab(const lm_scheduler *s)
{
    (void)s;
    return clattn_tokenizer_vocab_size(bpe);
}
int32_t lm_scheduler_ctx_size(const lm_scheduler *s) { (void)s; return 64; }
const char *lm_scheduler_model_name(const lm_scheduler *s) { (void)s; return "fuzz-lm"; }

lm_job *lm_scheduler_submit(lm_scheduler *s, lm_request *r)
{
    (void)s;
    if (outcome == 1)
        return NULL;
    if (r->n_prompt < 1 || r->n_prompt >= 64 || r->max_tokens < 1 || r->n_stop < 0)
        abort();
    for (int32_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= lm_scheduler_vocab(s))
            abort();
    lm_job *j = calloc(1, sizeof *j);
    if (!j)
        abort();
    j->req = *r;
    memset(r, 0, sizeof *r); /* the job owns the arrays now */
    live_jobs++;
    return j;
}

lm_finish lm_job_wait(lm_scheduler *s, lm_job *j, size_t from, char **text, size_t *len)
{
    (void)s;
    static const char *const pieces[] = {"Hello", ", w\xc3\xb6rld \"\\\n"};
    size_t at = 0;
    for (int i = 0; i < j->waits && i < 2; i++)
        at += strlen(pieces[i]);
    if (from != at)
        abort(); /* the routes ask for the bytes after those they have */
    *text = NULL;
    *len = 0;
    if (j->waits < 2) {
        *text = strdup(pieces[j->waits]);
        *len = *text ? strlen(*text) : 0;
        j->waits++;
        return LM_RUNNING;
    }
    return outcome == 2 ? LM_FAILED : outcome == 3 ? LM_LENGTH : LM_STOP;
}

void lm_job_usage(lm_scheduler *s, lm_job *j, int32_t *prompt_tokens, int32_t *completion_tokens)
{
    (void)s;
    *prompt_tokens = j->req.n_prompt;
    *completion_tokens = 2;
}

const char *lm_job_error(lm_job *j) { (void)j; return "fake device failure"; }

void lm_job_release(lm_scheduler *s, lm_job *j)
{
    (void)s;
    if (!j)
        return;
    free(j->req.prompt);
    for (int32_t i = 0; i < j->req.n_stop; i++)
        free(j->req.stop[i]);
    free(j->req.stop);
    free(j);
    live_jobs--;
}

/* ---- one request ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static int fake_embed, fake_lm;
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.opt.max_queue = 256;
    srv.embed = (embed_queue *)&fake_embed;
    srv.lm = (lm_scheduler *)&fake_lm;
    outcome = (data[0] >> 2) & 3;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    http_reply r;
    memset(&r, 0, sizeof r);
    switch (data[0] & 3) {
    case 0: route_embeddings(&srv, body, len, &r); break;
    case 1: route_tei_embed(&srv, body, len, &r); break;
    default: route_completions(&srv, body, len, &r); break;
    }
    if (r.status < 200 || r.status >= 600)
        abort();
    if (r.stream) {
        if (r.body)
            abort();
        sse_stream *st = sse_open(&srv, r.stream, r.stream_info);
        char buf[256];
        long n;
        int reads = 0;
        while (st && (n = sse_read(st, buf, sizeof buf)) >= 0)
            if (n == 0 || ++reads > 10000)
                abort(); /* the stream must end */
        sse_close(st);
    } else {
        json_error_t e;
        json_t *v = r.body ? json_loads(r.body, 0, &e) : NULL;
        if (!v)
            abort(); /* every reply is JSON */
        json_decref(v);
        free(r.body);
    }
    if (live_jobs != 0)
        abort();
    return 0;
}
