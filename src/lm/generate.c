/* generate.c - clattn_lm_generate: prefill a prompt, then sample and
 * decode one token at a time until an eos id, a stop string, the callback,
 * max_tokens or the end of the cache stops it. Text for the callback and
 * the stop strings comes from the model's tokenizer through an
 * incremental detokenizer, so it never holds half a UTF-8 character. */
#include "lm/lm.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

clattn_generate_params clattn_generate_params_default(void)
{
    clattn_generate_params p;
    memset(&p, 0, sizeof p);
    p.max_tokens = 128;
    p.sampling = clattn_sampler_params_default();
    return p;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool is_eos(const clattn__lm_config *c, int32_t id)
{
    for (int32_t i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return true;
    return false;
}

/* The generated text so far, for the stop strings. */
typedef struct text_buf {
    char *data;
    size_t len, cap;
} text_buf;

static bool text_append(text_buf *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = (t->len + n + 1) * 2;
        char *d = realloc(t->data, cap);
        if (!d)
            return false;
        t->data = d, t->cap = cap;
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    t->data[t->len] = '\0';
    return true;
}

/* Whether a stop string ends within the last `added` bytes of the text
 * (earlier matches were found by earlier calls). */
static bool hits_stop(const text_buf *t, size_t added, const clattn_generate_params *p)
{
    for (int32_t i = 0; i < p->n_stop; i++) {
        size_t n = strlen(p->stop[i]);
        if (n == 0 || n > t->len)
            continue;
        size_t from = t->len - added < n ? 0 : t->len - added - n + 1;
        for (size_t at = from; at + n <= t->len; at++)
            if (memcmp(t->data + at, p->stop[i], n) == 0)
                return true;
    }
    return false;
}

static clattn_status check_params(clattn_lm_session *s, const clattn_generate_params *p,
                                  int32_t n_prompt, int32_t capacity)
{
    if (p->max_tokens < 1)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: max_tokens is %d (must be >= 1)", p->max_tokens);
    if (capacity < p->max_tokens)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: capacity %d is smaller than max_tokens %d", capacity,
                            p->max_tokens);
    if (n_prompt < 1)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: n_prompt is %d (must be >= 1)", n_prompt);
    if (p->n_stop < 0 || (p->n_stop > 0 && !p->stop))
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: n_stop is %d with stop %s", p->n_stop,
                            p->stop ? "set" : "NULL");
    for (int32_t i = 0; i < p->n_stop; i++)
        if (!p->stop[i])
            return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG, "lm_generate: stop[%d] is NULL",
                                i);
    if (p->n_stop > 0 && !s->lm->tokenizer)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: stop strings need text, and the model folder has no "
                            "tokenizer.json");
    if (n_prompt >= s->cap)
        return clattn__fail(s->ctx, CLATTN_ERR_CONTEXT_FULL,
                            "lm_generate: the prompt's %d ids fill ctx_size %d, leaving no room "
                            "to generate",
                            n_prompt, s->cap);
    return CLATTN_OK;
}

/* The state of one generation. */
typedef struct gen {
    clattn_lm_session *s;
    int32_t seq;
    const clattn_generate_params *p;
    clattn_sampler *sampler;
    clattn_detokenizer *detok;
    text_buf text;
    float *row;                 /* [vocab] logits of the last position */
    char piece[4096];           /* one token's text */
} gen;

/* The text id completes, into g->piece (NUL-free, *len bytes). */
static clattn_status token_text(gen *g, int32_t id, size_t *len)
{
    *len = 0;
    if (!g->detok)
        return CLATTN_OK;
    return clattn_detokenizer_push(g->detok, id, g->piece, sizeof g->piece, len);
}

static clattn_status run(gen *g, const int32_t *prompt, int32_t n_prompt, int32_t *out_ids,
                         clattn_generate_result *res)
{
    clattn_lm_session *s = g->s;
    const clattn_generate_params *p = g->p;
    const clattn__lm_config *c = &s->lm->cfg;
    const size_t V = (size_t)c->vocab;
    double t0 = now_seconds();
    clattn_status st = clattn_lm_session_truncate(s, g->seq, 0);
    if (st == CLATTN_OK)
        st = clattn_lm_prefill(s, g->seq, prompt, n_prompt, p->logits);
    if (st == CLATTN_OK)
        st = clattn_lm_logits(s, g->seq, g->row);
    double t1 = now_seconds();
    res->prompt_seconds = t1 - t0;
    res->reason = CLATTN_STOP_MAX_TOKENS;
    for (int32_t i = 0; st == CLATTN_OK && i < n_prompt; i++)
        st = clattn_sampler_accept(g->sampler, prompt[i]);
    while (st == CLATTN_OK) {
        int32_t id;
        st = clattn_sampler_sample(g->sampler, g->row, &id);
        if (st == CLATTN_OK)
            st = clattn_sampler_accept(g->sampler, id);
        if (st != CLATTN_OK)
            break;
        out_ids[res->n_ids++] = id;
        size_t len = 0;
        if ((st = token_text(g, id, &len)) != CLATTN_OK)
            break;
        if (p->n_stop > 0 && !text_append(&g->text, g->piece, len)) {
            st = clattn__fail(s->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        bool go_on = p->on_token ? p->on_token(p->user, id, g->piece, len) : true;
        if (!p->ignore_eos && is_eos(c, id)) {
            res->reason = CLATTN_STOP_EOS;
            break;
        }
        if (p->n_stop > 0 && hits_stop(&g->text, len, p)) {
            res->reason = CLATTN_STOP_STRING;
            break;
        }
        if (!go_on) {
            res->reason = CLATTN_STOP_CALLBACK;
            break;
        }
        if (res->n_ids == p->max_tokens)
            break;
        if (clattn_lm_session_length(s, g->seq) >= s->cap) {
            res->reason = CLATTN_STOP_CONTEXT;
            break;
        }
        /* The logits of this step are row n_prompt - 1 + n_ids of the
         * caller's array (see clattn_generate_params.logits). */
        float *dst = p->logits ? p->logits + ((size_t)n_prompt - 1 + (size_t)res->n_ids) * V
                               : g->row;
        st = clattn_lm_decode(s, 1, &g->seq, &id, dst);
        if (st == CLATTN_OK && p->logits)
            memcpy(g->row, dst, V * sizeof(float));
    }
    /* Text the detokenizer still holds (a byte run or an unfinished
     * character at the end) goes to the callback with id -1. */
    size_t tail = 0;
    if (st == CLATTN_OK && g->detok)
        st = clattn_detokenizer_flush(g->detok, g->piece, sizeof g->piece, &tail);
    if (st == CLATTN_OK && tail > 0 && p->on_token)
        p->on_token(p->user, -1, g->piece, tail);
    res->gen_seconds = now_seconds() - t1;
    return st;
}

clattn_status clattn_lm_generate(clattn_lm_session *s, int32_t seq, const int32_t *prompt,
                                 int32_t n_prompt, const clattn_generate_params *p,
                                 int32_t *out_ids, int32_t capacity, clattn_generate_result *res)
{
    clattn__clear_thread_error();
    if (!s || !prompt || !out_ids || !res)
        return clattn__fail(s ? s->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: s, prompt, out_ids and res must not be NULL");
    clattn_generate_params defaults = clattn_generate_params_default();
    if (!p)
        p = &defaults;
    memset(res, 0, sizeof *res);
    if (seq < 0 || seq >= s->n_seq)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_generate: sequence %d is outside [0, %d)", seq, s->n_seq);
    clattn_status st = check_params(s, p, n_prompt, capacity);
    if (st != CLATTN_OK)
        return st;
    gen g;
    memset(&g, 0, sizeof g);
    g.s = s, g.seq = seq, g.p = p;
    g.row = malloc((size_t)s->lm->cfg.vocab * sizeof(float));
    if (!g.row)
        return clattn__fail(s->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    st = clattn_sampler_create(&p->sampling, s->lm->cfg.vocab, &g.sampler);
    if (st != CLATTN_OK)
        clattn__fail(s->ctx, st, "lm_generate: %s", clattn_last_error());
    if (st == CLATTN_OK && s->lm->tokenizer && (p->on_token || p->n_stop > 0))
        st = clattn_detokenizer_create(s->lm->tokenizer, true, &g.detok);
    if (st == CLATTN_OK)
        st = run(&g, prompt, n_prompt, out_ids, res);
    clattn_detokenizer_destroy(g.detok);
    clattn_sampler_destroy(g.sampler);
    free(g.text.data);
    free(g.row);
    return st;
}
