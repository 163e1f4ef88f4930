/* mha_backward.c - backward of the attention blocks (MultiheadAttention and
 * the separate-projection self-attention block).
 *
 * Walks the forward of mha.c in reverse from what its training forward
 * kept: output projection -> split the gradient into heads -> fused
 * attention backward (recomputing the probabilities from the saved
 * log-sum-exp) -> add_bias_kv rows -> merge the q/k/v gradients back to
 * [B, rows, width] -> the projections. Parameter gradients are added to the
 * module's (PyTorch accumulates .grad the same way); a packed
 * in_proj_weight gets its three thirds added at their offsets. */
#include "modules/modules.h"

#include <stdio.h>
#include <string.h>

/* The kernels launched here: cl/core/elementwise.cl's add_into and
 * cl/modules/heads.cl's gradient kernels. */
static const clattn__kernel_spec ADD_INTO = {&clattn__elementwise_program, "add_into"};
static const clattn__kernel_spec MERGE_HEADS_INTO = {&clattn__heads_program, "merge_heads_into"};
static const clattn__kernel_spec HEAD_ROW_GRAD = {&clattn__heads_program, "head_row_grad"};

/* dst[offset ..] += src (a slice of a packed gradient). */
static clattn_status add_into(clattn_ctx *ctx, clattn_tensor *dst, size_t offset,
                              const clattn_tensor *src)
{
    cl_kernel k;
    cl_ulong off = offset, n = src->numel;
    clattn_status st = clattn__kernel(ctx, &ADD_INTO, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "add_into", CLATTN_KARG(dst->mem), CLATTN_KARG(off),
                             CLATTN_KARG(src->mem), CLATTN_KARG(n));
    if (st != CLATTN_OK)
        return st;
    size_t global = src->numel;
    return clattn__enqueue(ctx, k, 1, &global, NULL, "add_into");
}

/* out [B, rows, stride] columns col0.. = the first rows rows of heads
 * [B, H, Mt, Dh]. */
static clattn_status merge_into(clattn_ctx *ctx, const clattn_tensor *heads, int64_t rows,
                                int64_t stride, int64_t col0, clattn_tensor *out)
{
    const int64_t *s = heads->shape; /* [B, H, Mt, Dh] */
    cl_int ints[7] = {(cl_int)s[0], (cl_int)s[1], (cl_int)rows, (cl_int)s[2],
                      (cl_int)s[3], (cl_int)stride, (cl_int)col0};
    size_t global[3] = {(size_t)s[3], (size_t)rows, (size_t)(s[0] * s[1])};
    return clattn__heads_kernel(ctx, &MERGE_HEADS_INTO, heads->mem, out->mem, 7, ints, 3, global);
}

/* Gradient of one projection y [B, rows, width] = x W_i^T + b_i, where
 * W_i is either a parameter of its own or third `third` of the packed
 * in_proj_weight (and likewise the bias). dx is overwritten. */
typedef struct proj_grad {
    const clattn_tensor *x, *w;          /* input [B, rows, in], weight [width, in] */
    const clattn_tensor *own_b;          /* the block's bias tensor, or NULL */
    int third;                           /* 0, 1, 2: q, k, v */
} proj_grad;

static clattn_status projection_backward(clattn_ctx *ctx, clattn__attn_block *blk,
                                         clattn__param_set *set, const proj_grad *pg,
                                         const clattn_tensor *dy, clattn_tensor *dx)
{
    clattn_status st = CLATTN_OK;
    clattn_tensor *gw = NULL, *gb = NULL;
    clattn_tensor gw_tmp, gb_tmp;
    bool gb_done = false;
    if (blk->w_qkv) {
        /* The separate copies are not parameters: compute into workspace,
         * then add into the packed gradient's slice. */
        st = clattn__workspace(ctx, &blk->g_tmp, 2, pg->w->shape, "projection weight gradient",
                               &gw_tmp);
        gw = &gw_tmp;
    } else {
        gw = clattn__params_grad(ctx, set, pg->w, &st);
    }
    if (st == CLATTN_OK && pg->own_b) {
        if (blk->b_qkv) {
            st = clattn__workspace(ctx, &blk->g_tmp2, 1, pg->own_b->shape,
                                   "projection bias gradient", &gb_tmp);
            gb = &gb_tmp;
        } else {
            gb = clattn__params_grad(ctx, set, pg->own_b, &st);
        }
    }
    if (st != CLATTN_OK)
        return st;
    /* Own parameters accumulate; workspace slices are overwritten. With an
     * own weight but a packed bias (MultiheadAttention with kdim != E) the
     * two need different modes, so the bias gets a call of its own. */
    bool acc_w = !blk->w_qkv, acc_b = !blk->b_qkv;
    if (gb && acc_w != acc_b) {
        st = clattn_linear_backward(ctx, pg->x, pg->w, dy, NULL, NULL, gb, acc_b);
        gb_done = true;
    }
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, pg->x, pg->w, dy, dx, gw, gb_done ? NULL : gb, acc_w);
    if (st == CLATTN_OK && blk->w_qkv) {
        clattn_tensor *packed = clattn__params_grad(ctx, set, blk->w_qkv, &st);
        if (st == CLATTN_OK)
            st = add_into(ctx, packed, (size_t)pg->third * gw->numel, gw);
    }
    if (st == CLATTN_OK && gb && blk->b_qkv) {
        clattn_tensor *packed = clattn__params_grad(ctx, set, blk->b_qkv, &st);
        if (st == CLATTN_OK)
            st = add_into(ctx, packed, (size_t)pg->third * gb->numel, gb);
    }
    return st;
}

/* The attention core's backward on the heads the forward left in the
 * block: d_heads [B, H, N, Dv] -> dq [B, H, N, Dh], dk [B, H, Mt, Dh],
 * dv [B, H, Mt, Dv]. */
static clattn_status core_backward(clattn_ctx *ctx, clattn__attn_block *blk,
                                   const clattn_tensor *d_heads, clattn_tensor *dq,
                                   clattn_tensor *dk, clattn_tensor *dv)
{
    int64_t B = blk->saved.B, N = blk->saved.N, H = blk->heads;
    int64_t Mt = dk->shape[2], Dh = blk->qk_dim / H, Dv = blk->v_dim / H;
    int64_t sq[4] = {B, H, N, Dh}, sk[4] = {B, H, Mt, Dh}, sv[4] = {B, H, Mt, Dv};
    int64_t so[4] = {B, H, N, Dv}, sl[3] = {B, H, N};
    clattn_tensor q = clattn__tensor_view(ctx, blk->q.mem, 4, sq);
    clattn_tensor k = clattn__tensor_view(ctx, blk->k.mem, 4, sk);
    clattn_tensor v = clattn__tensor_view(ctx, blk->v.mem, 4, sv);
    clattn_tensor out = clattn__tensor_view(ctx, blk->heads_out.mem, 4, so);
    clattn_tensor lse = clattn__tensor_view(ctx, blk->lse.mem, 3, sl);
    clattn_tensor bias;
    clattn_sdpa_params p = clattn_sdpa_params_default();
    p.causal = blk->saved.causal;
    p.kv_len = blk->saved.kv_len;
    if (blk->saved.bias_ndim) {
        bias = clattn__tensor_view(ctx, blk->bias.mem, 4, blk->saved.bias_shape);
        p.bias = &bias;
    }
    clattn_sdpa_grads g = {dq, dk, dv, NULL};
    return clattn_sdpa_backward(ctx, &q, &k, &v, &out, &lse, d_heads, &p, &g);
}

static bool same_data(const clattn_tensor *a, const clattn_tensor *b)
{
    return a->mem == b->mem;
}

clattn_status clattn__attn_block_backward(clattn_ctx *ctx, clattn__attn_block *blk,
                                          clattn__param_set *set, const clattn_tensor *dy,
                                          clattn_tensor *dx_q, clattn_tensor *dx_k,
                                          clattn_tensor *dx_v)
{
    if (!blk->saved.valid)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "attention backward: no training forward was saved");
    int64_t B = blk->saved.B, N = blk->saved.N, M = blk->saved.M, H = blk->heads;
    int64_t E = blk->qk_dim, V = blk->v_dim, Dh = E / H, Dv = V / H;
    int64_t Mt = M + (blk->add_bias_kv ? 1 : 0) + (blk->add_zero_attn ? 1 : 0);
    int64_t out_w = blk->out_dim > 0 ? blk->out_dim : V;
    char s1[96];
    if (!dy || dy->ndim != 3 || dy->shape[0] != B || dy->shape[1] != N || dy->shape[2] != out_w)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "attention backward: output gradient %s must be [%lld, %lld, %lld]",
                            dy ? clattn__shape_str(dy->shape, dy->ndim, s1, sizeof s1) : "NULL",
                            (long long)B, (long long)N, (long long)out_w);

    /* Output projection: d_merged [B, N, V]. */
    clattn_status st = CLATTN_OK;
    clattn_tensor d_merged = *dy;
    if (blk->w_o) {
        int64_t sm[3] = {B, N, V};
        clattn_tensor merged = clattn__tensor_view(ctx, blk->merged.mem, 3, sm);
        st = clattn__workspace(ctx, &blk->d_merged, 3, sm, "merged heads gradient [B, N, V]",
                               &d_merged);
        clattn_tensor *gw = clattn__params_grad(ctx, set, blk->w_o, &st);
        clattn_tensor *gb = blk->b_o ? clattn__params_grad(ctx, set, blk->b_o, &st) : NULL;
        if (st == CLATTN_OK)
            st = clattn_linear_backward(ctx, &merged, blk->w_o, dy, &d_merged, gw, gb, true);
    }

    /* Heads, then the attention core. */
    clattn_tensor d_heads, dq, dk, dv;
    int64_t sq[4] = {B, H, N, Dh}, sk[4] = {B, H, Mt, Dh}, sv[4] = {B, H, Mt, Dv};
    if (st == CLATTN_OK)
        st = clattn__split_heads(ctx, &d_merged, 0, V, B, H, N, Dv, 0, NULL, &blk->d_heads,
                                 &d_heads);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &blk->dq, 4, sq, "query heads gradient", &dq);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &blk->dk, 4, sk, "key heads gradient", &dk);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &blk->dv, 4, sv, "value heads gradient", &dv);
    if (st == CLATTN_OK)
        st = core_backward(ctx, blk, &d_heads, &dq, &dk, &dv);

    /* add_bias_kv: row M of every batch's keys and values is the bias. */
    if (st == CLATTN_OK && blk->add_bias_kv) {
        clattn_tensor *gk = clattn__params_grad(ctx, set, blk->bias_k, &st);
        clattn_tensor *gv = clattn__params_grad(ctx, set, blk->bias_v, &st);
        size_t gk_global[2] = {(size_t)Dh, (size_t)H}, gv_global[2] = {(size_t)Dv, (size_t)H};
        cl_int ik[5] = {(cl_int)B, (cl_int)H, (cl_int)Mt, (cl_int)M, (cl_int)Dh};
        cl_int iv[5] = {(cl_int)B, (cl_int)H, (cl_int)Mt, (cl_int)M, (cl_int)Dv};
        if (st == CLATTN_OK)
            st = clattn__heads_kernel(ctx, &HEAD_ROW_GRAD, dk.mem, gk->mem, 5, ik, 2, gk_global);
        if (st == CLATTN_OK)
            st = clattn__heads_kernel(ctx, &HEAD_ROW_GRAD, dv.mem, gv->mem, 5, iv, 2, gv_global);
    }
    if (st != CLATTN_OK)
        return st;

    const clattn_tensor *xq = &blk->saved.x_q, *xk = &blk->saved.x_k, *xv = &blk->saved.x_v;
    if (blk->saved.packed) {
        /* One fused projection: gather dq, dk, dv into [B, N, 3E] and run
         * one backward GEMM pair for all three. */
        int64_t sp[3] = {B, N, 3 * E};
        clattn_tensor d_proj;
        st = clattn__workspace(ctx, &blk->d_proj, 3, sp, "packed q/k/v gradient [B, N, 3E]",
                               &d_proj);
        if (st == CLATTN_OK)
            st = merge_into(ctx, &dq, N, 3 * E, 0, &d_proj);
        if (st == CLATTN_OK)
            st = merge_into(ctx, &dk, N, 3 * E, E, &d_proj);
        if (st == CLATTN_OK)
            st = merge_into(ctx, &dv, N, 3 * E, 2 * E, &d_proj);
        clattn_tensor *gw = clattn__params_grad(ctx, set, blk->w_qkv, &st);
        clattn_tensor *gb = blk->b_qkv ? clattn__params_grad(ctx, set, blk->b_qkv, &st) : NULL;
        return st == CLATTN_OK
                   ? clattn_linear_backward(ctx, xq, blk->w_qkv, &d_proj, dx_q, gw, gb, true)
                   : st;
    }

    /* Separate projections. Self-attention without packing (the tutorial
     * block) sends all three input gradients to dx_q; key == value
     * tensors share one gradient. Partial sums go through d_merged's
     * buffer, free by now. */
    bool self = same_data(xq, xk) && same_data(xk, xv);
    int64_t spq[3] = {B, N, E}, spk[3] = {B, M, E}, spv[3] = {B, M, V};
    clattn_tensor d_pq, d_pk, d_pv;
    st = clattn__workspace(ctx, &blk->d_proj, 3, spq, "query projection gradient", &d_pq);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &blk->d_proj_k, 3, spk, "key projection gradient", &d_pk);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &blk->d_proj_v, 3, spv, "value projection gradient", &d_pv);
    if (st == CLATTN_OK)
        st = merge_into(ctx, &dq, N, E, 0, &d_pq);
    if (st == CLATTN_OK)
        st = merge_into(ctx, &dk, M, E, 0, &d_pk);
    if (st == CLATTN_OK)
        st = merge_into(ctx, &dv, M, V, 0, &d_pv);
    if (st != CLATTN_OK)
        return st;
    clattn_tensor *dxk = self ? NULL : dx_k, *dxv = self ? NULL : dx_v;
    bool kv_shared = dxk && dxk == dxv;
    clattn_tensor partial;
    bool need_partial = self ? dx_q != NULL : kv_shared;
    if (need_partial) {
        const clattn_tensor *like = self ? xq : xv;
        st = clattn__workspace(ctx, &blk->d_merged, 3, like->shape, "input gradient partial sum",
                               &partial);
        if (st != CLATTN_OK)
            return st;
    }
    proj_grad pq = {xq, blk->w_q, blk->b_q, 0};
    proj_grad pk = {xk, blk->w_k, blk->b_k, 1};
    proj_grad pv = {xv, blk->w_v, blk->b_v, 2};
    st = projection_backward(ctx, blk, set, &pq, &d_pq, dx_q);
    if (st == CLATTN_OK)
        st = projection_backward(ctx, blk, set, &pk, &d_pk,
                                 self ? (dx_q ? &partial : NULL) : dxk);
    if (st == CLATTN_OK && self && dx_q)
        st = clattn_add(ctx, dx_q, &partial, dx_q);
    if (st == CLATTN_OK)
        st = projection_backward(ctx, blk, set, &pv, &d_pv,
                                 need_partial ? &partial : dxv);
    if (st == CLATTN_OK && need_partial)
        st = clattn_add(ctx, self ? dx_q : dxk, &partial, self ? dx_q : dxk);
    return st;
}
