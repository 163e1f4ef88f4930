/* forward.c - the whole clattn_llama: ids -> embedding -> layers -> final
 * RMSNorm -> head -> logits, in evaluation or training mode, its backward,
 * and the public calls on one layer. */
#include "lm_train/lm_train.h"

#include <stdlib.h>
#include <string.h>

/* Checks B, T and every id before any device work. */
static clattn_status check_ids(const clattn_llama *m, const char *what, const int64_t *ids,
                               int32_t B, int32_t T)
{
    if (!ids)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: ids is NULL", what);
    if (B < 1 || T < 1 || T > m->cfg.max_position_embeddings)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: B = %d must be >= 1 and T = %d in 1 .. %d "
                            "(max_position_embeddings)",
                            what, (int)B, (int)T, (int)m->cfg.max_position_embeddings);
    size_t n = (size_t)B * (size_t)T;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: ids[%zu] = %lld is outside the vocabulary 0 .. %d", what,
                                i, (long long)ids[i], (int)m->cfg.vocab_size - 1);
    return CLATTN_OK;
}

/* Keeps a copy of the ids for the embedding's gradient. */
static clattn_status keep_ids(clattn_llama *m, const int64_t *ids, size_t n)
{
    if (n > m->ids_cap) {
        int64_t *grown = realloc(m->ids, n * sizeof *grown);
        if (!grown)
            return clattn__fail(m->ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        m->ids = grown;
        m->ids_cap = n;
    }
    memcpy(m->ids, ids, n * sizeof *ids);
    return CLATTN_OK;
}

static clattn_status run_forward(clattn_llama *m, const char *what, const int64_t *ids,
                                 int32_t B, int32_t T, bool train, clattn_tensor *logits)
{
    clattn_ctx *ctx = m->ctx;
    clattn_status st = check_ids(m, what, ids, B, T);
    int64_t logit_shape[3] = {B, T, m->cfg.vocab_size};
    if (st == CLATTN_OK)
        st = clattn__llama_check_shape(m, what, "logits", logits, 3, logit_shape);
    if (st != CLATTN_OK)
        return st;
    m->saved = false;
    size_t n = (size_t)B * (size_t)T;
    int64_t shape[3] = {B, T, m->cfg.hidden_size};
    clattn_tensor stream, final_h;
    if (train)
        st = keep_ids(m, ids, n);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->stream, 3, shape, "residual stream [B, T, E]", &stream);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->final_h, 3, shape, "final norm [B, T, E]", &final_h);
    if (st == CLATTN_OK)
        st = clattn_embedding(ctx, m->embed, ids, n, &stream);
    for (int32_t l = 0; l < m->cfg.num_hidden_layers && st == CLATTN_OK; l++)
        st = clattn__llama_block_forward(m, l, &stream, train, &stream);
    if (st == CLATTN_OK)
        st = clattn_rms_norm(ctx, &stream, m->final_norm, m->cfg.rms_norm_eps, &final_h);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, &final_h, m->head, NULL, CLATTN_ACT_NONE, logits);
    if (st != CLATTN_OK)
        return st;
    m->B = B;
    m->T = T;
    m->saved = train;
    return CLATTN_OK;
}

clattn_status clattn_llama_forward(clattn_llama *m, const int64_t *ids, int32_t B, int32_t T,
                                   clattn_tensor *logits)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_forward: NULL model");
    return run_forward(m, "llama_forward", ids, B, T, false, logits);
}

clattn_status clattn_llama_train_forward(clattn_llama *m, const int64_t *ids, int32_t B,
                                         int32_t T, clattn_tensor *logits)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_train_forward: NULL model");
    return run_forward(m, "llama_train_forward", ids, B, T, true, logits);
}

clattn_status clattn_llama_backward(clattn_llama *m, const clattn_tensor *dlogits)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "llama_backward: NULL model");
    clattn_ctx *ctx = m->ctx;
    if (!m->saved)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "llama_backward: no training forward is kept (call "
                            "clattn_llama_train_forward first)");
    int64_t logit_shape[3] = {m->B, m->T, m->cfg.vocab_size};
    clattn_status st =
        clattn__llama_check_shape(m, "llama_backward", "dlogits", dlogits, 3, logit_shape);
    if (st != CLATTN_OK)
        return st;
    int64_t shape[3] = {m->B, m->T, m->cfg.hidden_size};
    clattn_tensor stream = clattn__tensor_view(ctx, m->stream.mem, 3, shape);
    clattn_tensor final_h = clattn__tensor_view(ctx, m->final_h.mem, 3, shape);
    clattn_tensor d_final, d_stream;
    st = clattn__workspace(ctx, &m->d_h, 3, shape, "final norm gradient [B, T, E]", &d_final);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->d_stream, 3, shape, "stream gradient [B, T, E]",
                               &d_stream);
    /* The head, then the final norm: d_stream = d(last layer's output). */
    clattn_tensor *g_head = clattn__params_grad(ctx, &m->params, m->head, &st);
    clattn_tensor *g_norm = clattn__params_grad(ctx, &m->params, m->final_norm, &st);
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &final_h, m->head, dlogits, &d_final, g_head, NULL, true);
    if (st == CLATTN_OK)
        st = clattn_rms_norm_backward(ctx, &stream, m->final_norm, m->cfg.rms_norm_eps, &d_final,
                                      &d_stream, g_norm, true);
    for (int32_t l = m->cfg.num_hidden_layers - 1; l >= 0 && st == CLATTN_OK; l--)
        st = clattn__llama_block_backward(m, l, &d_stream, &d_stream);
    /* The embedding's rows; a tied table adds them to the head's part. */
    clattn_tensor *g_embed = clattn__params_grad(ctx, &m->params, m->embed, &st);
    if (st == CLATTN_OK)
        st = clattn_embedding_backward(ctx, m->ids, (size_t)m->B * (size_t)m->T, &d_stream,
                                       g_embed, true);
    return st;
}

/* Checks layer and x for the block calls: x [B, T, E] with T within the
 * positions. */
static clattn_status check_block(clattn_llama *m, const char *what, int32_t layer,
                                 const clattn_tensor *x, const char *x_name)
{
    if (layer < 0 || layer >= m->cfg.num_hidden_layers)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: layer %d is not in 0 .. %d",
                            what, (int)layer, (int)m->cfg.num_hidden_layers - 1);
    clattn_status st = clattn__check_tensor(m->ctx, what, x_name, x);
    if (st != CLATTN_OK)
        return st;
    if (x->ndim != 3 || x->shape[2] != m->cfg.hidden_size ||
        x->shape[1] > m->cfg.max_position_embeddings) {
        char s[96];
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: %s is %s, must be [B, T, %d] with T <= %d", what, x_name,
                            clattn__shape_str(x->shape, x->ndim, s, sizeof s),
                            (int)m->cfg.hidden_size, (int)m->cfg.max_position_embeddings);
    }
    return CLATTN_OK;
}

clattn_status clattn_llama_block_train_forward(clattn_llama *m, int32_t layer,
                                               const clattn_tensor *x, clattn_tensor *y)
{
    const char *what = "llama_block_train_forward";
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: NULL model", what);
    clattn_status st = check_block(m, what, layer, x, "x");
    if (st == CLATTN_OK)
        st = clattn__llama_check_shape(m, what, "y", y, 3, x->shape);
    if (st == CLATTN_OK && y->mem == x->mem)
        st = clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: y must not be x", what);
    if (st != CLATTN_OK)
        return st;
    m->saved = false; /* the model's kept forward loses this layer's part */
    return clattn__llama_block_forward(m, layer, x, true, y);
}

clattn_status clattn_llama_block_backward(clattn_llama *m, int32_t layer,
                                          const clattn_tensor *dy, clattn_tensor *dx)
{
    const char *what = "llama_block_backward";
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: NULL model", what);
    clattn_status st = check_block(m, what, layer, dy, "dy");
    if (st != CLATTN_OK)
        return st;
    const clattn__llama_layer *L = &m->layers[layer];
    if (!L->saved)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: layer %d keeps no training forward", what, (int)layer);
    int64_t shape[3] = {L->B, L->T, m->cfg.hidden_size};
    st = clattn__llama_check_shape(m, what, "dy", dy, 3, shape);
    if (st == CLATTN_OK)
        st = clattn__llama_check_shape(m, what, "dx", dx, 3, shape);
    if (st == CLATTN_OK && dx->mem == dy->mem)
        st = clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG, "%s: dx must not be dy", what);
    return st == CLATTN_OK ? clattn__llama_block_backward(m, layer, dy, dx) : st;
}
