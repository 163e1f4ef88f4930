/* forward.c - one forward pass of a decoder over a batch of token rows,
 * as transformers' eager forward computes it:
 *   x = embed[ids] (+ wpe[pos] for GPT-2)
 *   per layer:  h = norm1(x); qkv = h Wqkv^T (+ b)
 *               q, k = rope(q, k) (Llama family); k, v -> the KV cache
 *               a = attention(q, cache)   (prefill: fused causal kernel;
 *                                          decode: split-KV kernel pair)
 *               x += a Wo^T (+ b)
 *               h = norm2(x); x += mlp(h) (SwiGLU, or GPT-2's act MLP)
 *   h = final_norm(x)
 * Every buffer is float32 token rows [T, width]; weights are read in the
 * file's precision by weights_lp.c. */
#include "attention/attention.h"
#include "lm/lm.h"

#include <math.h>
#include <string.h>

static clattn_status write_ints(clattn_lm_session *s, cl_mem buf, const int32_t *v, int32_t n,
                                const char *what)
{
    cl_int err = clEnqueueWriteBuffer(s->ctx->queue, buf, CL_TRUE, 0, (size_t)n * sizeof(int32_t),
                                      v, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(s->ctx, err, what);
}

/* Layer norm of rows [T, E] (GPT-2) through the public op on views. */
static clattn_status layer_norm(clattn_lm_session *s, cl_mem x, cl_mem w, cl_mem b, cl_mem y,
                                int32_t T)
{
    const clattn__lm_config *c = &s->lm->cfg;
    int64_t shape[2] = {T, c->hidden}, vshape[1] = {c->hidden};
    clattn_tensor tx = clattn__tensor_view(s->ctx, x, 2, shape);
    clattn_tensor ty = clattn__tensor_view(s->ctx, y, 2, shape);
    clattn_tensor tw = clattn__tensor_view(s->ctx, w, 1, vshape);
    clattn_tensor tb = clattn__tensor_view(s->ctx, b, 1, vshape);
    return clattn_layer_norm(s->ctx, &tx, &tw, &tb, c->norm_eps, &ty);
}

static clattn_status norm(clattn_lm_session *s, cl_mem x, cl_mem w, cl_mem b, cl_mem y,
                          int32_t T)
{
    if (s->lm->cfg.family == CLATTN_LM_GPT2)
        return layer_norm(s, x, w, b, y, T);
    return clattn__lm_rms_norm(s->ctx, x, w, y, (size_t)T, (size_t)s->lm->cfg.hidden,
                               s->lm->cfg.norm_eps);
}

/* Prefill attention of one sequence when the fused kernel cannot take
 * the whole key range (Mesa llvmpipe's loop limit): the split-KV kernel,
 * a block of query rows at a time (each block sees the keys up to its own
 * last position, so causality holds). */
#define FALLBACK_ROWS 8
static clattn_status prefill_attention_split(clattn_lm_session *s, int layer, int32_t T,
                                             int32_t slot, int32_t first_pos)
{
    const clattn__lm_config *c = &s->lm->cfg;
    const size_t row_bytes = (size_t)c->heads * c->head_dim * sizeof(float);
    clattn_status st = clattn__buffer_reserve(s->ctx, &s->rows_tmp, FALLBACK_ROWS * row_bytes,
                                              "prefill query block");
    if (st == CLATTN_OK)
        st = clattn__buffer_reserve(s->ctx, &s->rows_out, FALLBACK_ROWS * row_bytes,
                                    "prefill output block");
    for (int32_t r0 = 0; st == CLATTN_OK && r0 < T; r0 += FALLBACK_ROWS) {
        int32_t rows = T - r0 < FALLBACK_ROWS ? T - r0 : FALLBACK_ROWS;
        cl_int err = clEnqueueCopyBuffer(s->ctx->queue, s->q, s->rows_tmp.mem, r0 * row_bytes, 0,
                                         rows * row_bytes, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            return clattn__fail_cl(s->ctx, err, "prefill query block");
        int32_t len = first_pos + r0 + rows;
        clattn__decode_args a = {1,
                                 rows,
                                 c->heads,
                                 c->kv_heads,
                                 c->head_dim,
                                 s->cap,
                                 s->f16,
                                 &s->kv[layer],
                                 &slot,
                                 &len,
                                 c->window_left[layer],
                                 (float)(1.0 / sqrt((double)c->head_dim)),
                                 s->rows_tmp.mem,
                                 s->rows_out.mem};
        st = clattn__lm_decode_attention(s->ctx, &a);
        if (st == CLATTN_OK) {
            err = clEnqueueCopyBuffer(s->ctx->queue, s->rows_out.mem, s->attn, 0, r0 * row_bytes,
                                      rows * row_bytes, 0, NULL, NULL);
            if (err != CL_SUCCESS)
                st = clattn__fail_cl(s->ctx, err, "prefill output block");
        }
    }
    return st;
}

/* Causal attention of T new rows of sequence slot (positions first_pos ..
 * first_pos + T - 1, already in the cache) with the fused kernel. */
static clattn_status prefill_attention(clattn_lm_session *s, int layer, int32_t T,
                                       int32_t slot, int32_t first_pos)
{
    const clattn__lm_config *c = &s->lm->cfg;
    const int D = c->head_dim, Hq = c->heads, Hkv = c->kv_heads;
    const int M = first_pos + T;
    if (!clattn__sdpa_fused_fits(s->ctx, D, D, M))
        return prefill_attention_split(s, layer, T, slot, first_pos);
    clattn__sdpa_problem pr;
    memset(&pr, 0, sizeof pr);
    pr.B = 1, pr.Hq = Hq, pr.Hkv = Hkv, pr.N = T, pr.M = M, pr.D = D, pr.Dv = D;
    pr.scale = (float)(1.0 / sqrt((double)D));
    pr.wl = c->window_left[layer];
    pr.wr = 0; /* causal, aligned bottom-right: row i is position M - T + i */
    pr.strided = true;
    /* q and out are token rows: head h of row i at i * Hq D + h D. */
    pr.lq = (clattn__sdpa_layout){0, (int64_t)T * Hq * D, D, (int64_t)Hq * D};
    pr.lo = pr.lq;
    pr.q = s->q, pr.out = s->attn;
    if (!s->f16) {
        /* The slot's cache as it is: [Hkv, cap, D], M positions used. */
        int64_t off = (int64_t)slot * Hkv * s->cap * D;
        pr.lk = (clattn__sdpa_layout){off, (int64_t)Hkv * s->cap * D, (int64_t)s->cap * D, D};
        pr.lv = pr.lk;
        pr.k = s->kv[layer].k, pr.v = s->kv[layer].v;
    } else {
        /* The fused kernel reads float32: the slot's M positions first. */
        size_t bytes = 2 * (size_t)Hkv * M * D * sizeof(float);
        clattn_status st = clattn__buffer_reserve(s->ctx, &s->kv_f32, bytes, "prefill K/V");
        if (st == CLATTN_OK)
            st = clattn__lm_cache_gather(s->ctx, &s->kv[layer], true, slot, Hkv, D, s->cap, M,
                                         s->kv_f32.mem);
        if (st != CLATTN_OK)
            return st;
        pr.lk = (clattn__sdpa_layout){0, (int64_t)Hkv * M * D, (int64_t)M * D, D};
        pr.lv = pr.lk;
        pr.lv.off = (int64_t)Hkv * M * D;
        pr.k = pr.v = s->kv_f32.mem;
    }
    clattn_status st = clattn__sdpa_aux_buffers(s->ctx, NULL, NULL, &pr);
    return st == CLATTN_OK ? clattn__sdpa_run(s->ctx, &pr, false, CLATTN_SDPA_FUSED) : st;
}

static clattn_status mlp(clattn_lm_session *s, const clattn__lm_layer *y, int32_t T)
{
    const clattn__lm_config *c = &s->lm->cfg;
    clattn_ctx *ctx = s->ctx;
    clattn_status st = clattn__lm_linear(ctx, &y->gate_up, y->gate_up_b, s->h, 0, T, s->mlp, 0,
                                         false, "mlp up");
    if (st != CLATTN_OK)
        return st;
    cl_mem act = s->act;
    if (c->family == CLATTN_LM_GPT2) {
        int64_t shape[2] = {T, c->intermediate};
        clattn_tensor t = clattn__tensor_view(ctx, s->mlp, 2, shape);
        st = clattn_activation_apply(ctx, &t, c->act, &t);
        act = s->mlp;
    } else {
        st = clattn__lm_swiglu(ctx, s->mlp, s->act, T, c->intermediate);
    }
    if (st == CLATTN_OK)
        st = clattn__lm_linear(ctx, &y->down, y->down_b, act, 0, T, s->x, 0, true, "mlp down");
    return st;
}

clattn_status clattn__lm_forward(clattn_lm_session *s, int32_t T, const int32_t *ids,
                                 const int32_t *pos, const int32_t *slot, bool prefill)
{
    clattn_lm *lm = s->lm;
    const clattn__lm_config *c = &lm->cfg;
    clattn_ctx *ctx = s->ctx;
    clattn_status st = write_ints(s, s->ids, ids, T, "token ids");
    if (st == CLATTN_OK)
        st = write_ints(s, s->pos, pos, T, "positions");
    if (st == CLATTN_OK)
        st = write_ints(s, s->slot, slot, T, "sequence slots");
    if (st == CLATTN_OK)
        st = clattn__lm_gather_rows(ctx, &lm->embed, s->ids, T, s->x, false, "token embedding");
    if (st == CLATTN_OK && c->family == CLATTN_LM_GPT2)
        st = clattn__lm_gather_rows(ctx, &lm->pos_embed, s->pos, T, s->x, true,
                                    "position embedding");
    const float scale = (float)(1.0 / sqrt((double)c->head_dim));
    for (int32_t l = 0; st == CLATTN_OK && l < c->layers; l++) {
        const clattn__lm_layer *y = &lm->layer[l];
        st = norm(s, s->x, y->norm1_w, y->norm1_b, s->h, T);
        if (st == CLATTN_OK)
            st = clattn__lm_linear(ctx, &y->qkv, y->qkv_b, s->h, 0, T, s->qkv, 0, false,
                                   "qkv projection");
        if (st == CLATTN_OK)
            st = clattn__lm_rope_store(ctx, s->qkv, s->q, &s->kv[l], s->f16, s->pos, s->slot,
                                       c->family == CLATTN_LM_LLAMA ? lm->inv_freq : NULL, T,
                                       c->heads, c->kv_heads, c->head_dim, s->cap);
        /* want_attention: the last position's queries of each sequence. */
        for (int32_t t = prefill ? T - 1 : 0; st == CLATTN_OK && s->last_q && t < T; t++)
            st = clattn__lm_keep_query(s, l, t, slot[t]);
        if (st == CLATTN_OK && prefill) {
            st = prefill_attention(s, l, T, slot[0], pos[0]);
        } else if (st == CLATTN_OK) {
            int32_t len[256];
            for (int32_t t = 0; t < T; t++)
                len[t] = pos[t] + 1;
            clattn__decode_args a = {T,      1,      c->heads,   c->kv_heads,        c->head_dim,
                                     s->cap, s->f16, &s->kv[l],  slot,               len,
                                     c->window_left[l], scale,   s->q,               s->attn};
            st = clattn__lm_decode_attention(ctx, &a);
        }
        if (st == CLATTN_OK)
            st = clattn__lm_linear(ctx, &y->o, y->o_b, s->attn, 0, T, s->x, 0, true,
                                   "attention output");
        if (st == CLATTN_OK)
            st = norm(s, s->x, y->norm2_w, y->norm2_b, s->h, T);
        if (st == CLATTN_OK)
            st = mlp(s, y, T);
    }
    if (st == CLATTN_OK)
        st = norm(s, s->x, lm->final_w, lm->final_b, s->h, T);
    return st;
}

clattn_status clattn__lm_head(clattn_lm_session *s, int32_t r0, int32_t rows, cl_mem out,
                              int32_t out_row)
{
    const clattn__lm_config *c = &s->lm->cfg;
    return clattn__lm_linear(s->ctx, s->lm->head, NULL, s->h, (size_t)r0 * c->hidden, rows, out,
                             (size_t)out_row * c->vocab, false, "lm head");
}
