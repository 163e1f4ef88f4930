/* mha.c - attention blocks: torch.nn.MultiheadAttention and the tutorial
 * self-attention block (separate query/key/value Linear layers).
 *
 * Forward: project (one GEMM for packed self-attention, else three), split
 * heads into [B, H, N, Dh] (appending the bias_kv and zero-attention rows),
 * fold the masks into one bias, run the attention core, merge heads and
 * project out. No host round trips except uploading a mask bias. */
#include "modules/modules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const clattn__program_spec clattn__heads_program = {{"modules/heads.cl", NULL}, NULL};

static clattn_tensor *add(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                          const char *name, int32_t ndim, int64_t d0, int64_t d1, int64_t d2,
                          clattn_status *st)
{
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    int64_t shape[3] = {d0, d1, d2};
    return clattn__params_add(ctx, set, full, ndim, shape, 0.0f, st);
}

/* A packed parameter's separate q/k/v copies are not state_dict entries:
 * they live outside the set and are refreshed by clattn__attn_block_sync. */
static clattn_tensor *private_tensor(clattn_ctx *ctx, int32_t ndim, int64_t d0, int64_t d1,
                                     clattn_status *st)
{
    if (*st != CLATTN_OK)
        return NULL;
    int64_t shape[2] = {d0, d1};
    clattn_tensor *t = NULL;
    *st = clattn_tensor_create(ctx, ndim, shape, &t);
    return t;
}

clattn_status clattn__mha_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                               int64_t e, int64_t heads, int64_t kdim, int64_t vdim, bool bias,
                               bool add_bias_kv, bool add_zero_attn, clattn__attn_block *blk)
{
    memset(blk, 0, sizeof *blk);
    if (e <= 0 || heads <= 0 || e % heads != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%sMultiheadAttention: embed_dim %lld must be positive and divisible "
                            "by num_heads %lld",
                            prefix, (long long)e, (long long)heads);
    if (e / heads > 256)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "%sMultiheadAttention: head size %lld is over the 256 the attention "
                            "kernels support",
                            prefix, (long long)(e / heads));
    kdim = kdim > 0 ? kdim : e;
    vdim = vdim > 0 ? vdim : e;
    blk->q_in = e, blk->k_in = kdim, blk->v_in = vdim;
    blk->qk_dim = blk->v_dim = blk->out_dim = e;
    blk->heads = heads;
    blk->add_bias_kv = add_bias_kv;
    blk->add_zero_attn = add_zero_attn;
    clattn_status st = CLATTN_OK;
    /* state_dict order of nn.MultiheadAttention. */
    if (kdim == e && vdim == e) {
        blk->w_qkv = add(ctx, set, prefix, "in_proj_weight", 2, 3 * e, e, 0, &st);
        blk->w_q = private_tensor(ctx, 2, e, e, &st);
        blk->w_k = private_tensor(ctx, 2, e, e, &st);
        blk->w_v = private_tensor(ctx, 2, e, e, &st);
    } else {
        blk->w_q = add(ctx, set, prefix, "q_proj_weight", 2, e, e, 0, &st);
        blk->w_k = add(ctx, set, prefix, "k_proj_weight", 2, e, kdim, 0, &st);
        blk->w_v = add(ctx, set, prefix, "v_proj_weight", 2, e, vdim, 0, &st);
    }
    if (bias) {
        blk->b_qkv = add(ctx, set, prefix, "in_proj_bias", 1, 3 * e, 0, 0, &st);
        blk->b_q = private_tensor(ctx, 1, e, 0, &st);
        blk->b_k = private_tensor(ctx, 1, e, 0, &st);
        blk->b_v = private_tensor(ctx, 1, e, 0, &st);
    }
    if (add_bias_kv) {
        blk->bias_k = add(ctx, set, prefix, "bias_k", 3, 1, 1, e, &st);
        blk->bias_v = add(ctx, set, prefix, "bias_v", 3, 1, 1, e, &st);
    }
    blk->w_o = add(ctx, set, prefix, "out_proj.weight", 2, e, e, 0, &st);
    if (bias)
        blk->b_o = add(ctx, set, prefix, "out_proj.bias", 1, e, 0, 0, &st);
    /* in_proj_bias stays packed even with kdim/vdim != E; the separate
     * projections read it through the copies (clattn__attn_block_sync). */
    return st;
}

clattn_status clattn__attn_proj_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                                    const clattn__attn_names *names, int64_t in, int64_t a,
                                    int64_t v, int64_t out, int64_t heads, bool bias,
                                    clattn__attn_block *blk)
{
    memset(blk, 0, sizeof *blk);
    v = v > 0 ? v : a;
    if (in <= 0 || a <= 0 || heads <= 0 || a % heads != 0 || v % heads != 0 || out < 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "self-attention block: input width %lld, attention width %lld and "
                            "value width %lld must be positive, and both widths divisible by "
                            "num_heads %lld",
                            (long long)in, (long long)a, (long long)v, (long long)heads);
    if (a / heads > 256 || v / heads > 256)
        return clattn__fail(ctx, CLATTN_ERR_UNSUPPORTED,
                            "self-attention block: head sizes %lld / %lld are over the 256 the "
                            "attention kernels support",
                            (long long)(a / heads), (long long)(v / heads));
    blk->q_in = blk->k_in = blk->v_in = in;
    blk->qk_dim = a, blk->v_dim = v, blk->out_dim = out;
    blk->heads = heads;
    clattn_status st = CLATTN_OK;
    char w[160], b[160];
    const char *proj[3] = {names->query, names->key, names->value};
    clattn_tensor **ws[3] = {&blk->w_q, &blk->w_k, &blk->w_v};
    clattn_tensor **bs[3] = {&blk->b_q, &blk->b_k, &blk->b_v};
    for (int i = 0; i < 3; i++) {
        snprintf(w, sizeof w, "%s.weight", proj[i]);
        snprintf(b, sizeof b, "%s.bias", proj[i]);
        *ws[i] = add(ctx, set, prefix, w, 2, i == 2 ? v : a, in, 0, &st);
        if (bias)
            *bs[i] = add(ctx, set, prefix, b, 1, i == 2 ? v : a, 0, 0, &st);
    }
    if (out > 0) {
        snprintf(w, sizeof w, "%s.weight", names->out);
        snprintf(b, sizeof b, "%s.bias", names->out);
        blk->w_o = add(ctx, set, prefix, w, 2, out, v, 0, &st);
        if (bias)
            blk->b_o = add(ctx, set, prefix, b, 1, out, 0, 0, &st);
    }
    return st;
}

clattn_status clattn__self_attention_init(clattn_ctx *ctx, clattn__param_set *set,
                                          const char *prefix, int64_t in, int64_t a, int64_t v,
                                          int64_t out, int64_t heads, bool bias,
                                          clattn__attn_block *blk)
{
    static const clattn__attn_names names = {"query", "key", "value", "out"};
    return clattn__attn_proj_init(ctx, set, prefix, &names, in, a, v, out, heads, bias, blk);
}

static clattn_status copy_rows(clattn_ctx *ctx, const clattn_tensor *src, size_t first,
                               clattn_tensor *dst)
{
    cl_int err = clEnqueueCopyBuffer(ctx->queue, src->mem, dst->mem, first * sizeof(float), 0,
                                     dst->numel * sizeof(float), 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "copying q/k/v parameters");
}

clattn_status clattn__attn_block_sync(clattn_ctx *ctx, clattn__attn_block *blk)
{
    clattn_status st = CLATTN_OK;
    size_t e = (size_t)blk->qk_dim;
    if (blk->w_qkv) {
        st = copy_rows(ctx, blk->w_qkv, 0, blk->w_q);
        if (st == CLATTN_OK)
            st = copy_rows(ctx, blk->w_qkv, e * e, blk->w_k);
        if (st == CLATTN_OK)
            st = copy_rows(ctx, blk->w_qkv, 2 * e * e, blk->w_v);
    }
    if (blk->b_qkv && st == CLATTN_OK) {
        st = copy_rows(ctx, blk->b_qkv, 0, blk->b_q);
        if (st == CLATTN_OK)
            st = copy_rows(ctx, blk->b_qkv, e, blk->b_k);
        if (st == CLATTN_OK)
            st = copy_rows(ctx, blk->b_qkv, 2 * e, blk->b_v);
    }
    return st;
}

void clattn__attn_block_release(clattn__attn_block *blk)
{
    /* Parameters in the set are freed with it; the private copies here. */
    if (blk->w_qkv) {
        clattn_tensor_destroy(blk->w_q);
        clattn_tensor_destroy(blk->w_k);
        clattn_tensor_destroy(blk->w_v);
    }
    if (blk->b_qkv) {
        clattn_tensor_destroy(blk->b_q);
        clattn_tensor_destroy(blk->b_k);
        clattn_tensor_destroy(blk->b_v);
    }
    free(blk->saved.kv_len);
    clattn__buffer *bufs[] = {&blk->proj,     &blk->proj_k,   &blk->proj_v,    &blk->q,
                              &blk->k,        &blk->v,        &blk->heads_out, &blk->merged,
                              &blk->bias,     &blk->weights,  &blk->lse,       &blk->d_merged,
                              &blk->d_heads,  &blk->dq,       &blk->dk,        &blk->dv,
                              &blk->d_proj,   &blk->d_proj_k, &blk->d_proj_v,  &blk->g_tmp,
                              &blk->g_tmp2};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        clattn__buffer_release(bufs[i]);
    memset(blk, 0, sizeof *blk);
}

/* ---- forward ---------------------------------------------------------------- */

/* The kernels of cl/modules/heads.cl launched here. */
static const clattn__kernel_spec SPLIT_HEADS = {&clattn__heads_program, "split_heads"};
static const clattn__kernel_spec MEAN_HEADS = {&clattn__heads_program, "mean_heads"};
static const clattn__kernel_spec MERGE_HEADS = {&clattn__heads_program, "merge_heads"};

clattn_status clattn__split_heads(clattn_ctx *ctx, const clattn_tensor *in, int64_t col0,
                                 int64_t stride, int64_t b, int64_t heads, int64_t n,
                                 int64_t dh, int extra, const clattn_tensor *bias_row,
                                 clattn__buffer *out, clattn_tensor *view)
{
    int64_t shape[4] = {b, heads, n + extra, dh};
    clattn_status st = clattn__workspace(ctx, out, 4, shape, "attention heads [B, H, N, Dh]", view);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &SPLIT_HEADS, &k);
    if (st != CLATTN_OK)
        return st;
    cl_int ib = (cl_int)b, ih = (cl_int)heads, in_ = (cl_int)n, idh = (cl_int)dh;
    cl_int istride = (cl_int)stride, icol = (cl_int)col0, iextra = extra;
    cl_int has_row = bias_row != NULL;
    cl_mem row = bias_row ? bias_row->mem : in->mem;
    st = CLATTN_SET_ARGS(ctx, k, "split_heads", CLATTN_KARG(in->mem), CLATTN_KARG(view->mem),
                         CLATTN_KARG(row), CLATTN_KARG(ib), CLATTN_KARG(ih), CLATTN_KARG(in_),
                         CLATTN_KARG(idh), CLATTN_KARG(istride), CLATTN_KARG(icol),
                         CLATTN_KARG(iextra), CLATTN_KARG(has_row));
    if (st != CLATTN_OK)
        return st;
    size_t global[3] = {(size_t)dh, (size_t)(n + extra), (size_t)(b * heads)};
    return clattn__enqueue(ctx, k, 3, global, NULL, "split_heads");
}

clattn_status clattn__heads_kernel(clattn_ctx *ctx, const clattn__kernel_spec *spec, cl_mem in,
                                  cl_mem out, int nints, const cl_int *ints, cl_uint dims,
                                  const size_t *global)
{
    if (nints < 0 || nints > CLATTN_HEADS_MAX_INTS)
        return clattn__fail(ctx, CLATTN_ERR_INTERNAL, "%s: %d int arguments", spec->name, nints);
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(in), CLATTN_KARG(out));
    if (st != CLATTN_OK)
        return st;
    /* The ints follow in and out, one argument each. */
    clattn__karg args[CLATTN_HEADS_MAX_INTS];
    for (int i = 0; i < nints; i++)
        args[i] = CLATTN_KARG(ints[i]);
    st = clattn__set_args(ctx, k, 2, args, (size_t)nints, spec->name);
    if (st != CLATTN_OK)
        return st;
    return clattn__enqueue(ctx, k, dims, global, NULL, spec->name);
}

/* Records what clattn__attn_block_backward needs of this forward; the
 * buffers q, k, v, heads_out, merged and bias keep their contents. */
static clattn_status save_for_backward(clattn_ctx *ctx, clattn__attn_block *blk,
                                       const clattn__attn_call *call, int64_t B, int64_t N,
                                       int64_t M, bool causal, int32_t bias_ndim,
                                       const int64_t *bias_shape)
{
    blk->saved.valid = false;
    free(blk->saved.kv_len);
    blk->saved.kv_len = NULL;
    if (call->kv_len) {
        blk->saved.kv_len = malloc((size_t)B * sizeof(int32_t));
        if (!blk->saved.kv_len)
            return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
        memcpy(blk->saved.kv_len, call->kv_len, (size_t)B * sizeof(int32_t));
    }
    clattn_status st = clattn__buffer_reserve(ctx, &blk->lse,
                                              (size_t)(B * blk->heads * N) * sizeof(float),
                                              "attention log-sum-exp [B, H, N]");
    if (st != CLATTN_OK)
        return st;
    blk->saved.packed = blk->w_qkv && call->x_q == call->x_k && call->x_k == call->x_v;
    blk->saved.causal = causal;
    blk->saved.x_q = *call->x_q;
    blk->saved.x_k = *call->x_k;
    blk->saved.x_v = *call->x_v;
    blk->saved.B = B, blk->saved.N = N, blk->saved.M = M;
    blk->saved.bias_ndim = bias_ndim;
    if (bias_ndim)
        memcpy(blk->saved.bias_shape, bias_shape, 4 * sizeof *bias_shape);
    blk->saved.valid = true;
    return CLATTN_OK;
}

static bool shape3(const clattn_tensor *t, int64_t b, int64_t n, int64_t e)
{
    return t && t->ndim == 3 && (b < 0 || t->shape[0] == b) && (n < 0 || t->shape[1] == n) &&
           t->shape[2] == e;
}

clattn_status clattn__attn_block_forward(clattn_ctx *ctx, clattn__attn_block *blk,
                                         const clattn__attn_call *call, clattn_tensor *y)
{
    const char *what = blk->w_qkv || blk->bias_k || blk->out_dim == blk->qk_dim
                           ? "MultiheadAttention"
                           : "self-attention block";
    char s1[96], s2[96], s3[96];
    const clattn_tensor *xq = call->x_q, *xk = call->x_k, *xv = call->x_v;
    if (!shape3(xq, -1, -1, blk->q_in))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: query %s must be [B, N, %lld]",
                            what, xq ? clattn__shape_str(xq->shape, xq->ndim, s1, sizeof s1) : "NULL",
                            (long long)blk->q_in);
    int64_t B = xq->shape[0], N = xq->shape[1];
    if (!shape3(xk, B, -1, blk->k_in) || !shape3(xv, B, xk->shape[1], blk->v_in))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: key %s and value %s must be [B, M, %lld] and [B, M, %lld] with "
                            "B = %lld (query %s)",
                            what, xk ? clattn__shape_str(xk->shape, xk->ndim, s1, sizeof s1) : "NULL",
                            xv ? clattn__shape_str(xv->shape, xv->ndim, s2, sizeof s2) : "NULL",
                            (long long)blk->k_in, (long long)blk->v_in, (long long)B,
                            clattn__shape_str(xq->shape, xq->ndim, s3, sizeof s3));
    int64_t M = xk->shape[1], E = blk->qk_dim, V = blk->v_dim, H = blk->heads;
    int64_t out_w = blk->out_dim > 0 ? blk->out_dim : V;
    if (!shape3(y, B, N, out_w))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: output %s must be [%lld, %lld, %lld]",
                            what, y ? clattn__shape_str(y->shape, y->ndim, s1, sizeof s1) : "NULL",
                            (long long)B, (long long)N, (long long)out_w);
    int extra = (blk->add_bias_kv ? 1 : 0) + (blk->add_zero_attn ? 1 : 0);
    int64_t Mt = M + extra;
    /* Inference without weights or extra keys: the fused kernel reads the
     * heads straight out of the projections and writes them merged, so
     * nothing is split or merged (copies that cost a third of a small
     * BERT batch). Training keeps the head-split copies for backward, and
     * so does a key count the fused kernel cannot run on this device
     * (llvmpipe's loop limit), which then takes the unfused path. */
    bool direct = !call->train && !call->weights && extra == 0 &&
                  clattn__sdpa_fused_fits(ctx, (int)(E / H), (int)(V / H), (int)M);
    int64_t qk_ld = E, v_ld = V, k_col = 0, v_col = 0;

    /* Projections, then heads. */
    clattn_tensor q, k, v, proj, pk, pv;
    clattn_status st;
    if (blk->w_qkv && xq == xk && xk == xv) {
        int64_t sp[3] = {B, N, 3 * E};
        st = clattn__workspace(ctx, &blk->proj, 3, sp, "packed q/k/v projection [B, N, 3E]", &proj);
        if (st == CLATTN_OK)
            st = clattn_linear(ctx, xq, blk->w_qkv, blk->b_qkv, CLATTN_ACT_NONE, &proj);
        pk = pv = proj;
        qk_ld = v_ld = 3 * E, k_col = E, v_col = 2 * E;
        if (st == CLATTN_OK && !direct) {
            st = clattn__split_heads(ctx, &proj, 0, 3 * E, B, H, N, E / H, 0, NULL, &blk->q, &q);
            if (st == CLATTN_OK)
                st = clattn__split_heads(ctx, &proj, E, 3 * E, B, H, N, E / H, extra,
                                         blk->bias_k, &blk->k, &k);
            if (st == CLATTN_OK)
                st = clattn__split_heads(ctx, &proj, 2 * E, 3 * E, B, H, N, V / H, extra,
                                         blk->bias_v, &blk->v, &v);
        }
    } else {
        int64_t sq[3] = {B, N, E}, sk[3] = {B, M, E}, sv[3] = {B, M, V};
        /* Packed parameters may have changed since the last call (a load,
         * or the caller writing into in_proj_weight): refresh the separate
         * copies this path reads. Device-side copies of 3E^2 floats. */
        st = clattn__attn_block_sync(ctx, blk);
        if (st == CLATTN_OK)
            st = clattn__workspace(ctx, &blk->proj, 3, sq, "query projection [B, N, E]", &proj);
        if (st == CLATTN_OK)
            st = clattn__workspace(ctx, &blk->proj_k, 3, sk, "key projection [B, M, E]", &pk);
        if (st == CLATTN_OK)
            st = clattn__workspace(ctx, &blk->proj_v, 3, sv, "value projection [B, M, V]", &pv);
        if (st == CLATTN_OK)
            st = clattn_linear(ctx, xq, blk->w_q, blk->b_q, CLATTN_ACT_NONE, &proj);
        if (st == CLATTN_OK)
            st = clattn_linear(ctx, xk, blk->w_k, blk->b_k, CLATTN_ACT_NONE, &pk);
        if (st == CLATTN_OK)
            st = clattn_linear(ctx, xv, blk->w_v, blk->b_v, CLATTN_ACT_NONE, &pv);
        if (st == CLATTN_OK && !direct) {
            st = clattn__split_heads(ctx, &proj, 0, E, B, H, N, E / H, 0, NULL, &blk->q, &q);
            if (st == CLATTN_OK)
                st = clattn__split_heads(ctx, &pk, 0, E, B, H, M, E / H, extra, blk->bias_k,
                                         &blk->k, &k);
            if (st == CLATTN_OK)
                st = clattn__split_heads(ctx, &pv, 0, V, B, H, M, V / H, extra, blk->bias_v,
                                         &blk->v, &v);
        }
    }
    if (st != CLATTN_OK)
        return st;

    /* Masks. Causal self-attention with nothing else uses the kernel's own
     * causal mode (whole key blocks skipped); bottom-right and top-left
     * alignment agree when N == M'. */
    clattn__sdpa_problem pr;
    memset(&pr, 0, sizeof pr);
    bool any_mask = (call->attn_mask && call->attn_mask->kind != CLATTN_MASK_NONE) ||
                    (call->key_padding_mask && call->key_padding_mask->kind != CLATTN_MASK_NONE);
    bool kernel_causal = call->causal && !any_mask && N == Mt;
    clattn__mask_spec spec = {call->attn_mask, call->key_padding_mask,
                              call->causal && !kernel_causal, (int)B, (int)H, (int)N, (int)M,
                              extra};
    float *host_bias = NULL;
    int32_t bnd = 0, host_bias_ndim = 0;
    int64_t bshape[4];
    st = clattn__masks_to_bias(ctx, what, &spec, &host_bias, &bnd, bshape);
    if (st != CLATTN_OK)
        return st;
    if (host_bias) {
        clattn_tensor bias;
        st = clattn__workspace(ctx, &blk->bias, 4, bshape, "attention mask bias", &bias);
        if (st == CLATTN_OK) {
            cl_int err = clEnqueueWriteBuffer(ctx->queue, bias.mem, CL_TRUE, 0,
                                              bias.numel * sizeof(float), host_bias, 0, NULL,
                                              NULL);
            if (err != CL_SUCCESS)
                st = clattn__fail_cl(ctx, err, "uploading the mask bias");
        }
        free(host_bias);
        if (st != CLATTN_OK)
            return st;
        host_bias_ndim = 4;
        pr.has_bias = true;
        pr.bias = bias.mem;
        pr.bias_sb = bshape[0] == 1 ? 0 : bshape[1] * bshape[2] * bshape[3];
        pr.bias_sh = bshape[1] == 1 ? 0 : bshape[2] * bshape[3];
        pr.bias_sn = bshape[2] == 1 ? 0 : bshape[3];
    }

    /* Attention weights: per head into the caller's tensor, or into
     * workspace and then averaged over heads. */
    if (call->weights) {
        const int64_t *ws = call->weights->shape;
        bool avg = call->average_weights;
        bool ok = avg ? shape3(call->weights, B, N, Mt)
                      : call->weights->ndim == 4 && ws[0] == B && ws[1] == H && ws[2] == N &&
                            ws[3] == Mt;
        int64_t want[4] = {B, H, N, Mt}, want_avg[3] = {B, N, Mt};
        if (!ok)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: attn_weights %s must be %s %s", what,
                                clattn__shape_str(ws, call->weights->ndim, s1, sizeof s1),
                                avg ? "(averaged over heads)" : "(per head)",
                                avg ? clattn__shape_str(want_avg, 3, s2, sizeof s2)
                                    : clattn__shape_str(want, 4, s2, sizeof s2));
        if (avg) {
            int64_t sw[4] = {B, H, N, Mt};
            clattn_tensor w;
            st = clattn__workspace(ctx, &blk->weights, 4, sw, "per-head attention weights", &w);
            if (st != CLATTN_OK)
                return st;
            pr.weights = w.mem;
        } else {
            pr.weights = call->weights->mem;
        }
    }
    /* Merged heads [B, N, V]: straight into y when there is no output
     * projection. */
    int64_t so[4] = {B, H, N, V / H}, sm[3] = {B, N, V};
    clattn_tensor heads_out, merged;
    if (blk->w_o || call->accumulate)
        st = clattn__workspace(ctx, &blk->merged, 3, sm, "merged heads [B, N, V]", &merged);
    else
        merged = *y;
    if (st == CLATTN_OK && !direct)
        st = clattn__workspace(ctx, &blk->heads_out, 4, so, "attention output [B, H, N, Dv]",
                               &heads_out);
    if (st != CLATTN_OK)
        return st;
    pr.B = (int)B, pr.Hq = pr.Hkv = (int)H, pr.N = (int)N, pr.M = (int)Mt;
    pr.D = (int)(E / H), pr.Dv = (int)(V / H);
    pr.scale = (float)(1.0 / sqrt((double)pr.D));
    pr.wl = -1;
    pr.wr = kernel_causal ? 0 : -1;
    if (direct) {
        /* head h of row i: columns [h*D, (h+1)*D) of the projection row */
        pr.strided = true;
        pr.lq = (clattn__sdpa_layout){0, N * qk_ld, pr.D, qk_ld};
        pr.lk = (clattn__sdpa_layout){k_col, M * qk_ld, pr.D, qk_ld};
        pr.lv = (clattn__sdpa_layout){v_col, M * v_ld, pr.Dv, v_ld};
        pr.lo = (clattn__sdpa_layout){0, N * V, pr.Dv, V};
        pr.q = proj.mem, pr.k = pk.mem, pr.v = pv.mem, pr.out = merged.mem;
    } else {
        pr.q = q.mem, pr.k = k.mem, pr.v = v.mem, pr.out = heads_out.mem;
    }
    if (call->train) {
        st = save_for_backward(ctx, blk, call, B, N, M, kernel_causal, host_bias_ndim, bshape);
        if (st != CLATTN_OK)
            return st;
        pr.has_lse = true;
        pr.lse = blk->lse.mem;
    }
    st = clattn__sdpa_aux_buffers(ctx, call->kv_len, NULL, &pr);
    if (st == CLATTN_OK)
        st = clattn__sdpa_run(ctx, &pr, false, CLATTN_SDPA_AUTO);
    if (st == CLATTN_OK && call->weights && call->average_weights) {
        size_t global[3] = {(size_t)Mt, (size_t)N, (size_t)B};
        cl_int ints[3] = {(cl_int)H, (cl_int)N, (cl_int)Mt};
        st = clattn__heads_kernel(ctx, &MEAN_HEADS, pr.weights, call->weights->mem, 3, ints, 3,
                                  global);
    }
    if (st == CLATTN_OK && !direct) {
        size_t global[3] = {(size_t)(V / H), (size_t)N, (size_t)(B * H)};
        cl_int ints[4] = {(cl_int)B, (cl_int)H, (cl_int)N, (cl_int)(V / H)};
        st = clattn__heads_kernel(ctx, &MERGE_HEADS, heads_out.mem, merged.mem, 4, ints, 3,
                                  global);
    }
    if (st != CLATTN_OK)
        return st;
    if (!blk->w_o)
        return call->accumulate ? clattn_add(ctx, y, &merged, y) : CLATTN_OK;
    return call->accumulate ? clattn__linear_acc(ctx, &merged, blk->w_o, blk->b_o, y)
                            : clattn_linear(ctx, &merged, blk->w_o, blk->b_o, CLATTN_ACT_NONE, y);
}
