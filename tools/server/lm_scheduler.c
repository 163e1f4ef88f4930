/* lm_scheduler.c - continuous batching for /v1/completions: one thread
 * owns the language model and a session with --max-batch sequences (the
 * slots). Each turn it admits queued jobs into free slots (prefilling
 * their prompts), samples the next id of every running job from its own
 * sampler, publishes the new text, and runs one clattn_lm_decode for all
 * jobs that go on. A job's ids come from its own prompt, sampler and seed
 * only, so batching does not change what it generates.
 *
 * Stop strings follow OpenAI: the text ends before the first stop string
 * and does not include it; text that could still become a stop string is
 * held back until it cannot. */
#include "server.h"

#include "cli_args.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct lm_job {
    lm_request req;
    int refs;                    /* scheduler + handler */
    bool cancelled;              /* the handler let go early */
    lm_finish finish;
    char error[512];
    int32_t slot;                /* -1 while queued */
    int32_t n_gen;               /* ids sampled */
    clattn_sampler *sampler;
    clattn_detokenizer *detok;
    char *text;                  /* generated text, [len] bytes */
    size_t len, cap;
    size_t published;            /* bytes handlers may see */
    float *row;                  /* [vocab] logits of the last position */
    struct lm_job *next;         /* queue */
};

struct lm_scheduler {
    clattn_ctx *ctx;
    clattn_lm *lm;
    clattn_lm_session *session;
    clattn_lm_info info;
    int32_t n_slots, ctx_size, max_queue, queued;
    char name[256];
    pthread_mutex_t mu;
    pthread_cond_t work;         /* a job arrived, was cancelled, or stop */
    pthread_cond_t progress;     /* some job published text or ended */
    lm_job *head, *tail;
    lm_job **slots;              /* [n_slots] running jobs */
    float *logits;               /* [n_slots, vocab] of a decode step */
    bool stop;
    pthread_t thread;
};

static void job_free(lm_job *j)
{
    free(j->req.prompt);
    for (int32_t i = 0; i < j->req.n_stop; i++)
        free(j->req.stop[i]);
    free(j->req.stop);
    clattn_sampler_destroy(j->sampler);
    clattn_detokenizer_destroy(j->detok);
    free(j->text);
    free(j->row);
    free(j);
}

/* Drops one reference; the caller holds s->mu. */
static void job_unref(lm_job *j)
{
    if (--j->refs == 0)
        job_free(j);
}

static bool text_append(lm_job *j, const char *s, size_t n)
{
    if (j->len + n + 1 > j->cap) {
        size_t cap = (j->len + n + 1) * 2;
        char *t = realloc(j->text, cap);
        if (!t)
            return false;
        j->text = t, j->cap = cap;
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
    j->text[j->len] = '\0';
    return true;
}

/* Where the first stop string starts in the text, or -1. */
static long find_stop(const lm_job *j)
{
    long best = -1;
    for (int32_t i = 0; i < j->req.n_stop; i++) {
        const char *hit = strstr(j->text ? j->text : "", j->req.stop[i]);
        if (hit && (best < 0 || hit - j->text < best))
            best = hit - j->text;
    }
    return best;
}

/* Bytes at the end of the text that begin some stop string: held back. */
static size_t stop_prefix_at_end(const lm_job *j)
{
    size_t hold = 0;
    for (int32_t i = 0; i < j->req.n_stop; i++) {
        size_t n = strlen(j->req.stop[i]); /* >= 1: route_complete refuses "" */
        for (size_t k = n - 1 < j->len ? n - 1 : j->len; k > hold; k--)
            if (memcmp(j->text + j->len - k, j->req.stop[i], k) == 0) {
                hold = k;
                break;
            }
    }
    return hold;
}

static bool is_eos(const lm_scheduler *s, int32_t id)
{
    for (int32_t i = 0; i < s->info.n_eos; i++)
        if (s->info.eos_ids[i] == id)
            return true;
    return false;
}

/* Ends job j (scheduler thread, s->mu held): frees its slot. */
static void job_end(lm_scheduler *s, lm_job *j, lm_finish how)
{
    j->finish = how;
    j->published = j->len; /* a stop string was cut off already */
    if (j->slot >= 0)
        s->slots[j->slot] = NULL;
    j->slot = -1;
    job_unref(j);
    pthread_cond_broadcast(&s->progress);
}

static void job_fail(lm_scheduler *s, lm_job *j, const char *why)
{
    snprintf(j->error, sizeof j->error, "%s", why);
    j->len = j->published; /* what was sent stays; nothing more */
    job_end(s, j, LM_FAILED);
}

/* Prefills j's prompt into its (emptied) slot; scheduler thread, no lock. */
static clattn_status job_begin(lm_scheduler *s, lm_job *j)
{
    clattn_status st = clattn_lm_session_truncate(s->session, j->slot, 0);
    if (st == CLATTN_OK)
        st = clattn_lm_prefill(s->session, j->slot, j->req.prompt, j->req.n_prompt, NULL);
    if (st == CLATTN_OK)
        st = clattn_lm_logits(s->session, j->slot, j->row);
    if (st == CLATTN_OK)
        st = clattn_sampler_create(&j->req.sampling, s->info.vocab_size, &j->sampler);
    for (int32_t i = 0; st == CLATTN_OK && i < j->req.n_prompt; i++)
        st = clattn_sampler_accept(j->sampler, j->req.prompt[i]);
    if (st == CLATTN_OK)
        st = clattn_detokenizer_create(clattn_lm_tokenizer(s->lm), true, &j->detok);
    return st;
}

/* Samples j's next id and its text. Returns LM_RUNNING to go on (then
 * *id is to be decoded), or how the job ends. s->mu not held. */
static lm_finish job_step(lm_scheduler *s, lm_job *j, int32_t *id, char *why, size_t why_size)
{
    char piece[4096];
    size_t n = 0, tail = 0;
    clattn_status st = clattn_sampler_sample(j->sampler, j->row, id);
    if (st == CLATTN_OK)
        st = clattn_sampler_accept(j->sampler, *id);
    if (st == CLATTN_OK)
        st = clattn_detokenizer_push(j->detok, *id, piece, sizeof piece, &n);
    if (st != CLATTN_OK) {
        snprintf(why, why_size, "%s", clattn_last_error());
        return LM_FAILED;
    }
    j->n_gen++;
    lm_finish end = LM_RUNNING;
    if (is_eos(s, *id))
        end = LM_STOP;
    else if (j->n_gen >= j->req.max_tokens ||
             clattn_lm_session_length(s->session, j->slot) >= s->ctx_size)
        end = LM_LENGTH;
    /* At the end, the detokenizer gives what it held back. */
    if (end != LM_RUNNING && clattn_detokenizer_flush(j->detok, piece + n,
                                                      sizeof piece - n, &tail) != CLATTN_OK)
        tail = 0;
    pthread_mutex_lock(&s->mu);
    if (!text_append(j, piece, n + tail)) {
        pthread_mutex_unlock(&s->mu);
        snprintf(why, why_size, "out of host memory for the generated text");
        return LM_FAILED;
    }
    long stop_at = find_stop(j);
    if (stop_at >= 0) {
        j->len = (size_t)stop_at;
        j->text[j->len] = '\0';
        end = LM_STOP;
    }
    if (end == LM_RUNNING) {
        size_t hold = stop_prefix_at_end(j);
        j->published = j->len - hold;
        pthread_cond_broadcast(&s->progress);
    }
    pthread_mutex_unlock(&s->mu);
    return end;
}

static void *worker(void *arg)
{
    lm_scheduler *s = arg;
    const size_t V = (size_t)s->info.vocab_size;
    int32_t *seqs = malloc((size_t)s->n_slots * sizeof *seqs);
    int32_t *ids = malloc((size_t)s->n_slots * sizeof *ids);
    lm_job **batch = malloc((size_t)s->n_slots * sizeof *batch);
    lm_job **fresh = malloc((size_t)s->n_slots * sizeof *fresh);
    char why[512];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int32_t running = 0;
        for (int32_t i = 0; i < s->n_slots; i++)
            running += s->slots[i] != NULL;
        while (!s->head && running == 0 && !s->stop)
            pthread_cond_wait(&s->work, &s->mu);
        if (!s->head && running == 0)
            break;
        if (!seqs || !ids || !batch || !fresh) {
            /* Without its arrays the thread can only fail every job. */
            for (lm_job *j = s->head; j; j = s->head) {
                s->head = j->next, s->queued--;
                job_fail(s, j, "out of host memory in the scheduler");
            }
            s->tail = NULL;
            continue;
        }
        /* Cancelled jobs leave; queued jobs take the free slots. */
        for (int32_t i = 0; i < s->n_slots; i++)
            if (s->slots[i] && s->slots[i]->cancelled)
                job_end(s, s->slots[i], LM_STOP);
        int32_t n_fresh = 0;
        for (int32_t i = 0; i < s->n_slots && s->head; i++)
            if (!s->slots[i]) {
                lm_job *j = s->head;
                s->head = j->next;
                if (!s->head)
                    s->tail = NULL;
                s->queued--;
                j->next = NULL;
                if (j->cancelled) {
                    job_end(s, j, LM_STOP);
                    i--;
                    continue;
                }
                j->slot = i;
                s->slots[i] = j;
                fresh[n_fresh++] = j;
            }
        pthread_mutex_unlock(&s->mu);

        for (int32_t f = 0; f < n_fresh; f++)
            if (job_begin(s, fresh[f]) != CLATTN_OK) {
                snprintf(why, sizeof why, "%s", clattn_last_error());
                pthread_mutex_lock(&s->mu);
                job_fail(s, fresh[f], why);
                pthread_mutex_unlock(&s->mu);
            }
        /* Every running job samples; those that go on decode together. */
        int32_t n = 0;
        for (int32_t i = 0; i < s->n_slots; i++) {
            lm_job *j = s->slots[i];
            if (!j)
                continue;
            int32_t id;
            lm_finish end = job_step(s, j, &id, why, sizeof why);
            if (end == LM_RUNNING) {
                seqs[n] = i, ids[n] = id, batch[n++] = j;
                continue;
            }
            pthread_mutex_lock(&s->mu);
            if (end == LM_FAILED)
                job_fail(s, j, why);
            else
                job_end(s, j, end);
            pthread_mutex_unlock(&s->mu);
        }
        clattn_status st = n > 0 ? clattn_lm_decode(s->session, n, seqs, ids, s->logits)
                                 : CLATTN_OK;
        if (st != CLATTN_OK)
            snprintf(why, sizeof why, "%s", clattn_last_error());
        pthread_mutex_lock(&s->mu);
        for (int32_t b = 0; b < n; b++) {
            if (st == CLATTN_OK)
                memcpy(batch[b]->row, s->logits + (size_t)b * V, V * sizeof(float));
            else
                job_fail(s, batch[b], why);
        }
    }
    pthread_mutex_unlock(&s->mu);
    free(seqs);
    free(ids);
    free(batch);
    free(fresh);
    return NULL;
}

lm_job *lm_scheduler_submit(lm_scheduler *s, lm_request *r)
{
    lm_job *j = calloc(1, sizeof *j);
    float *row = malloc((size_t)s->info.vocab_size * sizeof *row);
    if (!j || !row) {
        free(j);
        free(row);
        return NULL;
    }
    j->row = row;
    j->slot = -1;
    j->refs = 2;
    pthread_mutex_lock(&s->mu);
    if (s->queued >= s->max_queue || s->stop) {
        pthread_mutex_unlock(&s->mu);
        free(row);
        free(j);
        return NULL;
    }
    j->req = *r;
    memset(r, 0, sizeof *r);
    if (s->tail)
        s->tail->next = j;
    else
        s->head = j;
    s->tail = j;
    s->queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return j;
}

lm_finish lm_job_wait(lm_scheduler *s, lm_job *j, size_t from, char **text, size_t *len)
{
    pthread_mutex_lock(&s->mu);
    while (j->published <= from && j->finish == LM_RUNNING)
        pthread_cond_wait(&s->progress, &s->mu);
    *text = NULL;
    *len = 0;
    lm_finish f = LM_RUNNING;
    if (j->published > from) {
        *len = j->published - from;
        *text = malloc(*len + 1);
        if (*text) {
            memcpy(*text, j->text + from, *len);
            (*text)[*len] = '\0';
        } else {
            *len = 0;
        }
    }
    /* The end is reported only once all its text has been handed over. */
    if (j->published <= from + *len)
        f = j->finish;
    pthread_mutex_unlock(&s->mu);
    return f;
}

void lm_job_usage(lm_scheduler *s, lm_job *j, int32_t *prompt_tokens, int32_t *completion_tokens)
{
    pthread_mutex_lock(&s->mu);
    *prompt_tokens = j->req.n_prompt;
    *completion_tokens = j->n_gen;
    pthread_mutex_unlock(&s->mu);
}

const char *lm_job_error(lm_job *j) { return j->error; }

void lm_job_release(lm_scheduler *s, lm_job *j)
{
    pthread_mutex_lock(&s->mu);
    if (j->finish == LM_RUNNING) {
        j->cancelled = true;
        pthread_cond_signal(&s->work);
    }
    job_unref(j);
    pthread_mutex_unlock(&s->mu);
}

bool lm_scheduler_start(const server_options *o, lm_scheduler **out)
{
    *out = NULL;
    lm_scheduler *s = calloc(1, sizeof *s);
    if (!s)
        return false;
    clattn_ctx_params cp = clattn_ctx_params_default();
    cp.device = o->device;
    clattn_status st = clattn_ctx_create(&cp, &s->ctx);
    if (st == CLATTN_OK)
        st = clattn_lm_load(s->ctx, o->lm_dir, &s->lm);
    if (st == CLATTN_OK)
        st = clattn_lm_get_info(s->lm, &s->info);
    if (st == CLATTN_OK && !clattn_lm_tokenizer(s->lm)) {
        fprintf(stderr, "clattn-server: --lm %s: the folder has no tokenizer.json\n", o->lm_dir);
        st = CLATTN_ERR_IO;
    } else if (st != CLATTN_OK) {
        fprintf(stderr, "clattn-server: --lm %s: %s\n", o->lm_dir, clattn_last_error());
    }
    s->n_slots = o->max_batch;
    s->ctx_size = o->ctx_size == 0 || o->ctx_size > s->info.max_positions ? s->info.max_positions
                                                                          : o->ctx_size;
    if (st == CLATTN_OK) {
        clattn_lm_session_params sp = clattn_lm_session_params_default();
        sp.ctx_size = s->ctx_size;
        sp.n_seq = s->n_slots;
        sp.cache_type = o->cache;
        if ((st = clattn_lm_session_create(s->lm, &sp, &s->session)) != CLATTN_OK)
            fprintf(stderr, "clattn-server: --lm %s: KV cache of %d x %d positions: %s\n",
                    o->lm_dir, s->n_slots, s->ctx_size, clattn_last_error());
    }
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    s->logits = malloc((size_t)s->n_slots * (size_t)s->info.vocab_size * sizeof(float));
    if (st == CLATTN_OK && (!s->slots || !s->logits)) {
        fprintf(stderr, "clattn-server: out of host memory\n");
        st = CLATTN_ERR_OUT_OF_MEMORY;
    }
    s->max_queue = o->max_queue;
    cli_folder_name(o->lm_dir, s->name, sizeof s->name);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->progress, NULL);
    if (st == CLATTN_OK && pthread_create(&s->thread, NULL, worker, s) != 0) {
        fprintf(stderr, "clattn-server: cannot start the completion thread\n");
        st = CLATTN_ERR_OUT_OF_MEMORY;
    }
    if (st != CLATTN_OK) {
        s->thread = 0;
        s->stop = true;
        lm_scheduler_stop(s);
        return false;
    }
    *out = s;
    return true;
}

void lm_scheduler_stop(lm_scheduler *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    bool started = !s->stop;
    s->stop = true;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    if (started)
        pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->progress);
    free(s->slots);
    free(s->logits);
    clattn_lm_session_destroy(s->session);
    clattn_lm_destroy(s->lm);
    clattn_ctx_destroy(s->ctx);
    free(s);
}

const clattn_tokenizer *lm_scheduler_tokenizer(const lm_scheduler *s)
{
    return clattn_lm_tokenizer(s->lm);
}
int32_t lm_scheduler_vocab(const lm_scheduler *s) { return s->info.vocab_size; }
int32_t lm_scheduler_ctx_size(const lm_scheduler *s) { return s->ctx_size; }
const char *lm_scheduler_model_name(const lm_scheduler *s) { return s->name; }
