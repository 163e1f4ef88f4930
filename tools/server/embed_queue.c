/* embed_queue.c - the embedding batcher: handlers queue jobs (one request's
 * token ids each); one thread takes as many as fit in --max-batch texts
 * and runs them through clattn_embedder_embed_ids in one call. Requests
 * that arrive while a batch runs form the next one; with --max-wait-ms N
 * the thread also waits up to N ms for a batch to fill (by default it
 * does not: under light load a wait only adds latency). Jobs with
 * different normalisation are not mixed. Each text's vector depends only
 * on its own tokens (padded keys are masked out), so a request gets the
 * vectors it would get alone. */
#include "server.h"

#include "cli_args.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct embed_queue {
    clattn_ctx *ctx;
    clattn_embedder *e;
    int32_t max_batch, max_wait_ms, max_queue, max_length;
    char name[256];
    pthread_mutex_t mu;
    pthread_cond_t work;         /* a job arrived, or stop */
    pthread_cond_t done;         /* a job finished */
    embed_job *head, *tail;
    int32_t queued;              /* jobs waiting */
    bool stop;
    pthread_t thread;
};

static struct timespec deadline_after_ms(int32_t ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L)
        t.tv_sec++, t.tv_nsec -= 1000000000L;
    return t;
}

static int32_t total_texts(const embed_job *j, int32_t normalize)
{
    int32_t n = 0;
    for (; j && j->normalize == normalize; j = j->next)
        n += j->n;
    return n;
}

/* Takes the head job and those after it with the same normalisation, while
 * the texts fit in max_batch (the head always goes, however large). */
static embed_job *take_batch(embed_queue *q, int32_t *n_jobs)
{
    embed_job *first = q->head, *last = first;
    int32_t texts = first->n, count = 1;
    while (last->next && last->next->normalize == first->normalize &&
           texts + last->next->n <= q->max_batch) {
        last = last->next;
        texts += last->n;
        count++;
    }
    q->head = last->next;
    if (!q->head)
        q->tail = NULL;
    last->next = NULL;
    q->queued -= count;
    *n_jobs = count;
    return first;
}

/* One pass over the jobs of a batch: their ids back to back. */
static void run_batch(embed_queue *q, embed_job *jobs)
{
    int32_t n = 0;
    size_t n_ids = 0;
    for (embed_job *j = jobs; j; j = j->next)
        for (int32_t i = 0; i < j->n; i++)
            n++, n_ids += (size_t)j->lens[i];
    int64_t *ids = malloc(n_ids * sizeof *ids);
    int32_t *lens = malloc((size_t)n * sizeof *lens);
    int32_t dim = clattn_embedder_dim(q->e);
    float *out = malloc((size_t)n * (size_t)dim * sizeof *out);
    clattn_status st = CLATTN_ERR_OUT_OF_MEMORY;
    char error[512] = "out of host memory for the batch";
    if (ids && lens && out) {
        size_t at = 0;
        int32_t row = 0;
        for (embed_job *j = jobs; j; j = j->next) {
            size_t count = 0;
            for (int32_t i = 0; i < j->n; i++)
                lens[row++] = j->lens[i], count += (size_t)j->lens[i];
            memcpy(ids + at, j->ids, count * sizeof *ids);
            at += count;
        }
        clattn_embed_params p = clattn_embed_params_default();
        p.batch_size = q->max_batch;
        p.normalize = jobs->normalize;
        st = clattn_embedder_embed_ids(q->e, ids, lens, n, out, &p);
        if (st != CLATTN_OK)
            snprintf(error, sizeof error, "%s", clattn_last_error());
    }
    pthread_mutex_lock(&q->mu);
    int32_t row = 0;
    for (embed_job *j = jobs, *next; j; j = next) {
        next = j->next;
        j->status = st;
        if (st == CLATTN_OK)
            memcpy(j->out, out + (size_t)row * (size_t)dim,
                   (size_t)j->n * (size_t)dim * sizeof *out);
        else
            snprintf(j->error, sizeof j->error, "%s", error);
        row += j->n;
        j->next = NULL;
        j->done = true;
    }
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
    free(ids);
    free(lens);
    free(out);
}

static void *worker(void *arg)
{
    embed_queue *q = arg;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        while (!q->head && !q->stop)
            pthread_cond_wait(&q->work, &q->mu);
        if (!q->head)
            break; /* stopping, nothing left */
        /* Let the batch fill: up to max_wait_ms after the head was seen. */
        struct timespec until = deadline_after_ms(q->max_wait_ms);
        while (!q->stop && total_texts(q->head, q->head->normalize) < q->max_batch &&
               pthread_cond_timedwait(&q->work, &q->mu, &until) != ETIMEDOUT)
            ;
        int32_t n_jobs;
        embed_job *jobs = take_batch(q, &n_jobs);
        pthread_mutex_unlock(&q->mu);
        run_batch(q, jobs);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

bool embed_queue_run(embed_queue *q, embed_job *job)
{
    pthread_mutex_lock(&q->mu);
    if (q->queued >= q->max_queue || q->stop) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    job->done = false;
    job->next = NULL;
    if (q->tail)
        q->tail->next = job;
    else
        q->head = job;
    q->tail = job;
    q->queued++;
    pthread_cond_signal(&q->work);
    while (!job->done)
        pthread_cond_wait(&q->done, &q->mu);
    pthread_mutex_unlock(&q->mu);
    return true;
}

bool embed_queue_start(const server_options *o, embed_queue **out)
{
    *out = NULL;
    embed_queue *q = calloc(1, sizeof *q);
    if (!q)
        return false;
    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = o->device;
    if (clattn_ctx_create(&cp, &q->ctx) != CLATTN_OK ||
        clattn_embedder_load(q->ctx, o->model_dir, &q->e) != CLATTN_OK) {
        fprintf(stderr, "clattn-server: --model %s: %s\n", o->model_dir, clattn_last_error());
        clattn_ctx_destroy(q->ctx);
        free(q);
        return false;
    }
    q->max_batch = o->max_batch;
    q->max_wait_ms = o->max_wait_ms;
    q->max_queue = o->max_queue;
    clattn_embedder_defaults(q->e, NULL, NULL, &q->max_length);
    cli_folder_name(o->model_dir, q->name, sizeof q->name);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->done, NULL);
    if (pthread_create(&q->thread, NULL, worker, q) != 0) {
        fprintf(stderr, "clattn-server: cannot start the embedding thread\n");
        clattn_embedder_destroy(q->e);
        clattn_ctx_destroy(q->ctx);
        free(q);
        return false;
    }
    *out = q;
    return true;
}

void embed_queue_stop(embed_queue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->work);
    pthread_cond_destroy(&q->done);
    clattn_embedder_destroy(q->e);
    clattn_ctx_destroy(q->ctx);
    free(q);
}

const clattn_tokenizer *embed_queue_tokenizer(const embed_queue *q)
{
    return clattn_embedder_tokenizer(q->e);
}
int32_t embed_queue_dim(const embed_queue *q) { return clattn_embedder_dim(q->e); }
int32_t embed_queue_max_length(const embed_queue *q) { return q->max_length; }
int32_t embed_queue_vocab(const embed_queue *q)
{
    return clattn_tokenizer_vocab_size(clattn_embedder_tokenizer(q->e));
}
const char *embed_queue_model_name(const embed_queue *q) { return q->name; }
