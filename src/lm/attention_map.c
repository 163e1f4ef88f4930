/* attention_map.c - the attention weights of a sequence's last position
 * over its whole context, per layer and query head, for looking at
 * (heatmaps). A session made with want_attention keeps, in forward.c,
 * each layer's query of every sequence's last position (after RoPE);
 * clattn_lm_attention_last recomputes that row's probabilities from it
 * and the keys in the cache, with clattn_sdpa's unfused path (the one
 * that outputs weights), so nothing in the prefill or decode attention
 * changes:
 *   per layer l:  K = the cache's keys 0 .. len-1 (float32)
 *                 w[l] = softmax(q_last . K^T / sqrt(D)) over the keys the
 *                        last position sees (causal, the layer's window),
 *                        one row per query head (GQA: query head h reads
 *                        kv head h / (Hq / Hkv)) */
#include "lm/lm.h"

#include <string.h>

clattn_status clattn__lm_keep_query(clattn_lm_session *s, int32_t l, int32_t row, int32_t slot)
{
    if (!s->last_q)
        return CLATTN_OK;
    const clattn__lm_config *c = &s->lm->cfg;
    const size_t bytes = (size_t)c->heads * (size_t)c->head_dim * sizeof(float);
    const size_t dst = ((size_t)slot * (size_t)c->layers + (size_t)l) * bytes;
    cl_int err = clEnqueueCopyBuffer(s->ctx->queue, s->q, s->last_q, (size_t)row * bytes, dst,
                                     bytes, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK
                             : clattn__fail_cl(s->ctx, err, "keeping the last position's queries");
}

/* Layer l's row [Hq, len] of sequence seq into host w. */
static clattn_status layer_row(clattn_lm_session *s, int32_t seq, int32_t l, int32_t len,
                               float *w)
{
    const clattn__lm_config *c = &s->lm->cfg;
    clattn_ctx *ctx = s->ctx;
    const int64_t Hq = c->heads, Hkv = c->kv_heads, D = c->head_dim;
    const size_t qbytes = (size_t)(Hq * D) * sizeof(float);
    clattn_status st = clattn__buffer_reserve(ctx, &s->map_q, qbytes, "attention map query");
    if (st == CLATTN_OK)
        st = clattn__buffer_reserve(ctx, &s->map_out, qbytes, "attention map output");
    if (st == CLATTN_OK)
        st = clattn__buffer_reserve(ctx, &s->map_w, (size_t)(Hq * len) * sizeof(float),
                                    "attention map weights");
    /* Keys then values [2, Hkv, len, D] in float32; only the keys are read
     * for the weights (the values passed are the keys: same shape, and the
     * output, which needs them, is discarded). */
    if (st == CLATTN_OK)
        st = clattn__buffer_reserve(ctx, &s->kv_f32, 2 * (size_t)(Hkv * len * D) * sizeof(float),
                                    "attention map keys");
    if (st == CLATTN_OK)
        st = clattn__lm_cache_gather(ctx, &s->kv[l], s->f16, seq, (int)Hkv, (int)D, s->cap, len,
                                     s->kv_f32.mem);
    if (st != CLATTN_OK)
        return st;
    const size_t src = ((size_t)seq * (size_t)c->layers + (size_t)l) * qbytes;
    cl_int err = clEnqueueCopyBuffer(ctx->queue, s->last_q, s->map_q.mem, src, 0, qbytes, 0, NULL,
                                     NULL);
    if (err != CL_SUCCESS)
        return clattn__fail_cl(ctx, err, "attention map query");
    const int64_t qs[4] = {1, Hq, 1, D}, ks[4] = {1, Hkv, len, D}, ws[4] = {1, Hq, 1, len};
    clattn_tensor q = clattn__tensor_view(ctx, s->map_q.mem, 4, qs);
    clattn_tensor k = clattn__tensor_view(ctx, s->kv_f32.mem, 4, ks);
    clattn_tensor out = clattn__tensor_view(ctx, s->map_out.mem, 4, qs);
    clattn_tensor wt = clattn__tensor_view(ctx, s->map_w.mem, 4, ws);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.causal = true; /* one query row, aligned bottom-right: position len - 1 */
    p.window_left = c->window_left[l];
    p.weights = &wt;
    p.impl = CLATTN_SDPA_UNFUSED;
    st = clattn_sdpa(ctx, &q, &k, &k, &out, &p);
    return st == CLATTN_OK ? clattn_tensor_read(&wt, w) : st;
}

clattn_status clattn_lm_attention_last(clattn_lm_session *s, int32_t seq, float *weights,
                                       int64_t capacity, int32_t *ctx_len)
{
    clattn__clear_thread_error();
    if (!s || !ctx_len)
        return clattn__fail(s ? s->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: s and ctx_len must not be NULL");
    if (seq < 0 || seq >= s->n_seq)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: sequence %d is outside [0, %d)", seq, s->n_seq);
    if (capacity < 0 || (!weights && capacity != 0))
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: capacity %lld must be >= 0, and 0 when weights "
                            "is NULL",
                            (long long)capacity);
    if (!s->has_last_q)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: the session was created without want_attention "
                            "(clattn_lm_session_params)");
    if (!s->has_last_q[seq])
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: sequence %d has no last position to show (it is "
                            "empty, was truncated, or its last call failed)",
                            seq);
    const clattn__lm_config *c = &s->lm->cfg;
    const int32_t len = s->len[seq];
    const int64_t need = (int64_t)c->layers * c->heads * len;
    *ctx_len = len;
    if (!weights)
        return CLATTN_OK;
    if (capacity < need)
        return clattn__fail(s->ctx, CLATTN_ERR_INVALID_ARG,
                            "lm_attention_last: capacity %lld floats is too small for weights "
                            "[n_layers, n_heads, ctx_len] = [%d, %d, %d]: %lld floats needed",
                            (long long)capacity, c->layers, c->heads, len, (long long)need);
    clattn_status st = CLATTN_OK;
    for (int32_t l = 0; st == CLATTN_OK && l < c->layers; l++)
        st = layer_row(s, seq, l, len, weights + (size_t)l * (size_t)c->heads * (size_t)len);
    return st;
}
