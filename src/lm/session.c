/* session.c - a session's KV cache and its sequences: creation, length,
 * truncation, and the public prefill / decode / logits calls, which check
 * their arguments here and run forward.c. */
#include "lm/lm.h"

#include <stdlib.h>
#include <string.h>

/* Most sequences one session holds (one decode step batches them all). */
#define MAX_SEQ 256

clattn_lm_session_params clattn_lm_session_params_default(void)
{
    clattn_lm_session_params p = {0, 1, CLATTN_CACHE_F32, false};
    return p;
}

void clattn_lm_session_destroy(clattn_lm_session *s)
{
    if (!s)
        return;
    for (int32_t l = 0; s->kv && l < s->lm->cfg.layers; l++) {
        clattn__lm_release_mem(&s->kv[l].k);
        clattn__lm_release_mem(&s->kv[l].v);
    }
    free(s->kv);
    cl_mem *bufs[] = {&s->last_logits, &s->x,      &s->h,      &s->qkv, &s->q,   &s->attn,
                      &s->mlp,         &s->act,    &s->logits, &s->ids, &s->pos, &s->slot,
                      &s->last_q};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        clattn__lm_release_mem(bufs[i]);
    clattn__buffer_release(&s->kv_f32);
    clattn__buffer_release(&s->rows_tmp);
    clattn__buffer_release(&s->rows_out);
    clattn__buffer_release(&s->map_q);
    clattn__buffer_release(&s->map_out);
    clattn__buffer_release(&s->map_w);
    free(s->len);
    free(s->has_logits);
    free(s->has_last_q);
    s->lm->n_sessions--;
    free(s);
}

static clattn_status make(clattn_lm_session *s, size_t elems, size_t esize, const char *what,
                          cl_mem *out)
{
    return clattn__buffer_create(s->ctx, elems * esize, what, out);
}

static clattn_status allocate(clattn_lm_session *s)
{
    const clattn__lm_config *c = &s->lm->cfg;
    const size_t R = (size_t)s->max_rows, E = (size_t)c->hidden, I = (size_t)c->intermediate;
    const size_t D = (size_t)c->head_dim, qd = (size_t)c->heads * D;
    const size_t qkv = qd + 2 * (size_t)c->kv_heads * D, V = (size_t)c->vocab;
    const size_t f = sizeof(float);
    const size_t per_slot = (size_t)c->kv_heads * (size_t)s->cap * D * (s->f16 ? 2 : 4);
    s->kv = calloc((size_t)c->layers, sizeof *s->kv);
    if (!s->kv)
        return clattn__fail(s->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    clattn_status st = CLATTN_OK;
    for (int32_t l = 0; st == CLATTN_OK && l < c->layers; l++) {
        st = make(s, (size_t)s->n_seq, per_slot, "KV cache (keys)", &s->kv[l].k);
        if (st == CLATTN_OK)
            st = make(s, (size_t)s->n_seq, per_slot, "KV cache (values)", &s->kv[l].v);
        s->cache_bytes += 2 * (uint64_t)s->n_seq * per_slot;
    }
    size_t logit_rows = s->n_seq > CLATTN_LM_LOGIT_BLOCK ? (size_t)s->n_seq : CLATTN_LM_LOGIT_BLOCK;
    struct {
        size_t n, esize;
        const char *what;
        cl_mem *out;
    } bufs[] = {
        {(size_t)s->n_seq * V, f, "last logits", &s->last_logits},
        {R * E, f, "hidden rows", &s->x},
        {R * E, f, "normed rows", &s->h},
        {R * qkv, f, "qkv rows", &s->qkv},
        {R * qd, f, "query rows", &s->q},
        {R * qd, f, "attention rows", &s->attn},
        {R * (c->family == CLATTN_LM_GPT2 ? I : 2 * I), f, "mlp rows", &s->mlp},
        {R * I, f, "activation rows", &s->act},
        {logit_rows * V, f, "logit rows", &s->logits},
        {R, sizeof(int32_t), "token ids", &s->ids},
        {R, sizeof(int32_t), "positions", &s->pos},
        {R, sizeof(int32_t), "slots", &s->slot},
    };
    for (size_t i = 0; st == CLATTN_OK && i < sizeof bufs / sizeof bufs[0]; i++)
        st = make(s, bufs[i].n, bufs[i].esize, bufs[i].what, bufs[i].out);
    if (st == CLATTN_OK && s->has_last_q)
        st = make(s, (size_t)s->n_seq * (size_t)c->layers * qd, f, "last queries", &s->last_q);
    return st;
}

clattn_status clattn_lm_session_create(clattn_lm *lm, const clattn_lm_session_params *p,
                                       clattn_lm_session **out)
{
    clattn__clear_thread_error();
    if (!lm || !out)
        return clattn__fail(lm ? lm->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_session_create: lm and out must not be NULL");
    *out = NULL;
    clattn_lm_session_params d = clattn_lm_session_params_default();
    if (!p)
        p = &d;
    clattn_ctx *ctx = lm->ctx;
    const clattn__lm_config *c = &lm->cfg;
    if (p->ctx_size < 0 || p->ctx_size > c->max_pos)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_session_create: ctx_size %d is outside [0, %d] (0: the model's "
                            "max_position_embeddings, %d)",
                            p->ctx_size, c->max_pos, c->max_pos);
    if (p->n_seq < 1 || p->n_seq > MAX_SEQ)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_session_create: n_seq %d is outside [1, %d]", p->n_seq, MAX_SEQ);
    if (p->cache_type != CLATTN_CACHE_F32 && p->cache_type != CLATTN_CACHE_F16)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_session_create: cache_type %d is not CLATTN_CACHE_F32 or _F16",
                            (int)p->cache_type);
    clattn_lm_session *s = calloc(1, sizeof *s);
    if (!s)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    s->lm = lm;
    s->ctx = ctx;
    lm->n_sessions++;
    s->n_seq = p->n_seq;
    s->cap = p->ctx_size ? p->ctx_size : c->max_pos;
    s->f16 = p->cache_type == CLATTN_CACHE_F16;
    s->max_rows = s->cap < CLATTN_LM_CHUNK ? s->cap : CLATTN_LM_CHUNK;
    if (s->max_rows < s->n_seq)
        s->max_rows = s->n_seq;
    s->len = calloc((size_t)s->n_seq, sizeof *s->len);
    s->has_logits = calloc((size_t)s->n_seq, sizeof *s->has_logits);
    if (p->want_attention)
        s->has_last_q = calloc((size_t)s->n_seq, sizeof *s->has_last_q);
    clattn_status st = s->len && s->has_logits && (s->has_last_q || !p->want_attention)
                           ? allocate(s)
                           : clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    if (st != CLATTN_OK) {
        clattn_lm_session_destroy(s);
        return st;
    }
    *out = s;
    return CLATTN_OK;
}

int32_t clattn_lm_session_length(const clattn_lm_session *s, int32_t seq)
{
    return s && seq >= 0 && seq < s->n_seq ? s->len[seq] : 0;
}

static clattn_status check_seq(clattn_lm_session *s, const char *fn, int32_t seq)
{
    if (seq < 0 || seq >= s->n_seq)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: sequence %d is outside [0, %d)", fn, seq, s->n_seq);
    return CLATTN_OK;
}

clattn_status clattn_lm_session_truncate(clattn_lm_session *s, int32_t seq, int32_t n_pos)
{
    clattn__clear_thread_error();
    if (!s)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "lm_session_truncate: s is NULL");
    clattn_status st = check_seq(s, "lm_session_truncate", seq);
    if (st != CLATTN_OK)
        return st;
    if (n_pos < 0 || n_pos > s->len[seq])
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_session_truncate: n_pos %d is outside [0, %d] (the length of "
                            "sequence %d)",
                            n_pos, s->len[seq], seq);
    /* The cache past n_pos is left as it is: nothing reads positions at or
     * after a sequence's length, and the next tokens overwrite them. */
    s->len[seq] = n_pos;
    s->has_logits[seq] = false;
    if (s->has_last_q)
        s->has_last_q[seq] = false;
    return CLATTN_OK;
}

static clattn_status check_ids(clattn_lm_session *s, const char *fn, const int32_t *ids,
                               int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->lm->cfg.vocab)
            return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: id %d (at index %d) is outside the vocabulary [0, %d)", fn,
                                ids[i], i, s->lm->cfg.vocab);
    return CLATTN_OK;
}

static clattn_status read_rows(clattn_lm_session *s, cl_mem buf, int32_t rows, float *dst)
{
    size_t bytes = (size_t)rows * (size_t)s->lm->cfg.vocab * sizeof(float);
    cl_int err = clEnqueueReadBuffer(s->ctx->queue, buf, CL_TRUE, 0, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(s->ctx, err, "reading logits");
}

/* Copies logit row `row` of buf to sequence seq's last-logits row. */
static clattn_status keep_last(clattn_lm_session *s, cl_mem buf, int32_t row, int32_t seq)
{
    size_t bytes = (size_t)s->lm->cfg.vocab * sizeof(float);
    cl_int err = clEnqueueCopyBuffer(s->ctx->queue, buf, s->last_logits, (size_t)row * bytes,
                                     (size_t)seq * bytes, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail_cl(s->ctx, err, "keeping the last logits");
    s->has_logits[seq] = true;
    return CLATTN_OK;
}

/* One chunk of a prefill: rows [0, T) at positions len .. len + T. */
static clattn_status prefill_chunk(clattn_lm_session *s, int32_t seq, const int32_t *ids,
                                   int32_t T, float *logits, bool last_chunk)
{
    int32_t pos[CLATTN_LM_CHUNK], slot[CLATTN_LM_CHUNK];
    for (int32_t t = 0; t < T; t++)
        pos[t] = s->len[seq] + t, slot[t] = seq;
    clattn_status st = clattn__lm_forward(s, T, ids, pos, slot, true);
    if (st != CLATTN_OK)
        return st;
    s->len[seq] += T;
    const size_t V = (size_t)s->lm->cfg.vocab;
    if (logits) {
        for (int32_t r0 = 0; st == CLATTN_OK && r0 < T; r0 += CLATTN_LM_LOGIT_BLOCK) {
            int32_t rows = T - r0 < CLATTN_LM_LOGIT_BLOCK ? T - r0 : CLATTN_LM_LOGIT_BLOCK;
            st = clattn__lm_head(s, r0, rows, s->logits, 0);
            if (st == CLATTN_OK)
                st = read_rows(s, s->logits, rows, logits + (size_t)r0 * V);
            if (st == CLATTN_OK && last_chunk && r0 + rows == T)
                st = keep_last(s, s->logits, rows - 1, seq);
        }
        return st;
    }
    if (!last_chunk)
        return CLATTN_OK;
    st = clattn__lm_head(s, T - 1, 1, s->last_logits, seq);
    if (st == CLATTN_OK)
        s->has_logits[seq] = true;
    return st;
}

clattn_status clattn_lm_prefill(clattn_lm_session *s, int32_t seq, const int32_t *ids, int32_t n,
                                float *logits)
{
    clattn__clear_thread_error();
    if (!s || !ids)
        return clattn__fail(s ? s->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_prefill: s and ids must not be NULL");
    clattn_status st = check_seq(s, "lm_prefill", seq);
    if (st != CLATTN_OK)
        return st;
    if (n < 1)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG, "lm_prefill: n is %d (must be >= 1)",
                            n);
    if ((st = check_ids(s, "lm_prefill", ids, n)) != CLATTN_OK)
        return st;
    if (n > s->cap - s->len[seq])
        return clattn__fail(s->ctx, CLATTN_ERR_CONTEXT_FULL,
                            "lm_prefill: %d positions do not fit sequence %d, which holds %d of "
                            "its %d (ctx_size)",
                            n, seq, s->len[seq], s->cap);
    s->has_logits[seq] = false;
    if (s->has_last_q)
        s->has_last_q[seq] = false;
    const size_t V = (size_t)s->lm->cfg.vocab;
    const int32_t start = s->len[seq];
    for (int32_t done = 0; st == CLATTN_OK && done < n;) {
        int32_t T = n - done < s->max_rows ? n - done : s->max_rows;
        if (T > CLATTN_LM_CHUNK)
            T = CLATTN_LM_CHUNK;
        st = prefill_chunk(s, seq, ids + done, T, logits ? logits + (size_t)done * V : NULL,
                           done + T == n);
        done += T;
    }
    if (st != CLATTN_OK) {
        /* A failed chunk leaves the sequence as it was before the call. */
        s->len[seq] = start;
        s->has_logits[seq] = false;
    } else if (s->has_last_q) {
        s->has_last_q[seq] = true;
    }
    return st;
}

clattn_status clattn_lm_decode(clattn_lm_session *s, int32_t n, const int32_t *seqs,
                               const int32_t *ids, float *logits)
{
    clattn__clear_thread_error();
    if (!s || !seqs || !ids)
        return clattn__fail(s ? s->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_decode: s, seqs and ids must not be NULL");
    if (n < 1 || n > s->n_seq)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_decode: n is %d (must be in [1, %d], the session's sequences)",
                            n, s->n_seq);
    clattn_status st = check_ids(s, "lm_decode", ids, n);
    int32_t pos[MAX_SEQ];
    for (int32_t i = 0; st == CLATTN_OK && i < n; i++) {
        st = check_seq(s, "lm_decode", seqs[i]);
        for (int32_t j = 0; st == CLATTN_OK && j < i; j++)
            if (seqs[j] == seqs[i])
                st = clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                                  "lm_decode: sequence %d is listed twice (at %d and %d)",
                                  seqs[i], j, i);
        if (st == CLATTN_OK && s->len[seqs[i]] >= s->cap)
            st = clattn__fail(s->ctx, CLATTN_ERR_CONTEXT_FULL,
                              "lm_decode: sequence %d holds all %d positions (ctx_size)",
                              seqs[i], s->cap);
        if (st == CLATTN_OK)
            pos[i] = s->len[seqs[i]];
    }
    if (st != CLATTN_OK)
        return st;
    for (int32_t i = 0; i < n; i++) {
        s->has_logits[seqs[i]] = false;
        if (s->has_last_q)
            s->has_last_q[seqs[i]] = false;
    }
    st = clattn__lm_forward(s, n, ids, pos, seqs, false);
    if (st == CLATTN_OK)
        for (int32_t i = 0; i < n; i++) {
            s->len[seqs[i]]++;
            if (s->has_last_q)
                s->has_last_q[seqs[i]] = true;
        }
    if (st == CLATTN_OK)
        st = clattn__lm_head(s, 0, n, s->logits, 0);
    for (int32_t i = 0; st == CLATTN_OK && i < n; i++)
        st = keep_last(s, s->logits, i, seqs[i]);
    if (st == CLATTN_OK && logits)
        st = read_rows(s, s->logits, n, logits);
    return st;
}

clattn_status clattn_lm_logits(clattn_lm_session *s, int32_t seq, float *logits)
{
    clattn__clear_thread_error();
    if (!s || !logits)
        return clattn__fail(s ? s->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_logits: s and logits must not be NULL");
    clattn_status st = check_seq(s, "lm_logits", seq);
    if (st != CLATTN_OK)
        return st;
    if (!s->has_logits[seq])
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_logits: sequence %d has no logits (it is empty, was truncated, "
                            "or its last call failed)",
                            seq);
    size_t bytes = (size_t)s->lm->cfg.vocab * sizeof(float);
    cl_int err = clEnqueueReadBuffer(s->ctx->queue, s->last_logits, CL_TRUE, (size_t)seq * bytes,
                                     bytes, logits, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(s->ctx, err, "reading logits");
}
