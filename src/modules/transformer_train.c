/* transformer_train.c - training forward and backward of one
 * TransformerEncoderLayer / TransformerDecoderLayer.
 *
 * A layer is two (encoder) or three (decoder) residual sub-blocks f:
 * self-attention, cross-attention over the memory, feed-forward. With
 * stream[i] the residual stream entering sub-block i:
 *   post-norm:  aux[i] = stream[i] + f(stream[i]);  stream[i+1] = LN(aux[i])
 *   pre-norm:   aux[i] = LN(stream[i]);             stream[i+1] = stream[i] + f(aux[i])
 * Unlike the inference forward (in place, transformer.c), every stream and
 * aux tensor gets its own buffer so the backward can read them. */
#include "modules/modules.h"

#include <string.h>

typedef enum sub_kind { SUB_SELF, SUB_CROSS, SUB_FF } sub_kind;

static int sub_count(const clattn__layer *layer) { return layer->decoder ? 3 : 2; }

static sub_kind sub_at(const clattn__layer *layer, int i)
{
    if (i == 0)
        return SUB_SELF;
    return layer->decoder && i == 1 ? SUB_CROSS : SUB_FF;
}

static const clattn__norm *norm_at(const clattn__layer *layer, int i)
{
    return i == 0 ? &layer->norm1 : i == 1 ? &layer->norm2 : &layer->norm3;
}

static clattn_status bne(clattn_ctx *ctx, clattn__buffer *buf, const int64_t *bne_shape,
                         int64_t width, const char *what, clattn_tensor *t)
{
    int64_t shape[3] = {bne_shape[0], bne_shape[1], width};
    return clattn__workspace(ctx, buf, 3, shape, what, t);
}

/* out [B, N, E] = f(in) for sub-block kind, keeping its activations. */
static clattn_status sub_forward(clattn_ctx *ctx, clattn__layer *layer,
                                 const clattn__layer_call *call, sub_kind kind,
                                 const clattn_tensor *in, clattn_tensor *out)
{
    if (kind == SUB_SELF) {
        clattn__attn_call ac = {in,   in,    in,   call->self_mask, call->self_kpm,
                                call->self_causal, NULL, false, call->self_kv_len, true,
                                false};
        return clattn__attn_block_forward(ctx, &layer->self_attn, &ac, out);
    }
    if (kind == SUB_CROSS) {
        clattn__attn_call ac = {in,    call->memory, call->memory, call->memory_mask,
                                call->memory_kpm, call->memory_causal, NULL, false, NULL, true,
                                false};
        return clattn__attn_block_forward(ctx, &layer->cross_attn, &ac, out);
    }
    /* Feed-forward: the pre-activation and the activation are both kept,
     * so the activation is not fused into linear1 here. */
    clattn_tensor pre, act;
    clattn_status st = bne(ctx, &layer->ff_pre, in->shape, layer->dim_ff,
                           "feed-forward pre-activation [B, N, ff]", &pre);
    if (st == CLATTN_OK)
        st = bne(ctx, &layer->ff_act, in->shape, layer->dim_ff,
                 "feed-forward activation [B, N, ff]", &act);
    if (st == CLATTN_OK)
        st = clattn_linear(ctx, in, layer->w1, layer->b1, CLATTN_ACT_NONE, &pre);
    if (st == CLATTN_OK)
        st = clattn_activation_apply(ctx, &pre, layer->act, &act);
    return st == CLATTN_OK ? clattn_linear(ctx, &act, layer->w2, layer->b2, CLATTN_ACT_NONE, out)
                           : st;
}

clattn_status clattn__layer_train_forward(clattn_ctx *ctx, clattn__layer *layer,
                                          const clattn__layer_call *call,
                                          const clattn_tensor *x, clattn_tensor *y)
{
    layer->saved = false;
    int n = sub_count(layer);
    clattn_tensor stream[4], aux[3], tmp;
    clattn_status st = CLATTN_OK;
    /* Every buffer first, so none moves once written. */
    for (int i = 0; i <= n && st == CLATTN_OK; i++)
        st = bne(ctx, &layer->stream[i], x->shape, layer->d_model, "residual stream [B, N, E]",
                 &stream[i]);
    for (int i = 0; i < n && st == CLATTN_OK; i++)
        st = bne(ctx, &layer->aux[i], x->shape, layer->d_model, "norm activations [B, N, E]",
                 &aux[i]);
    if (st == CLATTN_OK)
        st = bne(ctx, &layer->tmp, x->shape, layer->d_model, "sub-block output [B, N, E]", &tmp);
    if (st == CLATTN_OK)
        st = clattn_tensor_copy(x, &stream[0]);
    for (int i = 0; i < n && st == CLATTN_OK; i++) {
        const clattn__norm *norm = norm_at(layer, i);
        if (layer->norm_first) {
            st = clattn_layer_norm(ctx, &stream[i], norm->weight, norm->bias, layer->eps, &aux[i]);
            if (st == CLATTN_OK)
                st = sub_forward(ctx, layer, call, sub_at(layer, i), &aux[i], &tmp);
            if (st == CLATTN_OK)
                st = clattn_add(ctx, &stream[i], &tmp, &stream[i + 1]);
        } else {
            st = sub_forward(ctx, layer, call, sub_at(layer, i), &stream[i], &tmp);
            if (st == CLATTN_OK)
                st = clattn_add(ctx, &stream[i], &tmp, &aux[i]);
            if (st == CLATTN_OK)
                st = clattn_layer_norm(ctx, &aux[i], norm->weight, norm->bias, layer->eps,
                                       &stream[i + 1]);
        }
    }
    if (st == CLATTN_OK)
        st = clattn_tensor_copy(&stream[n], y);
    layer->saved = st == CLATTN_OK;
    return st;
}

/* din = the gradient of sub-block i's input given dout, the gradient of its
 * output; parameter gradients added into set. */
static clattn_status sub_backward(clattn_ctx *ctx, clattn__layer *layer, clattn__param_set *set,
                                  int i, const clattn_tensor *f_in, const clattn_tensor *dout,
                                  clattn_tensor *din, clattn_tensor *dmemory)
{
    sub_kind kind = sub_at(layer, i);
    clattn_status st = CLATTN_OK;
    if (kind == SUB_SELF)
        return clattn__attn_block_backward(ctx, &layer->self_attn, set, dout, din, NULL, NULL);
    if (kind == SUB_CROSS) {
        if (!dmemory)
            return clattn__attn_block_backward(ctx, &layer->cross_attn, set, dout, din, NULL,
                                               NULL);
        /* Keys and values are both the memory: their gradients sum. */
        clattn_tensor dmem;
        st = clattn__workspace(ctx, &layer->d_mem, 3, dmemory->shape,
                               "memory gradient [B, S, E]", &dmem);
        if (st == CLATTN_OK)
            st = clattn__attn_block_backward(ctx, &layer->cross_attn, set, dout, din, &dmem,
                                             &dmem);
        return st == CLATTN_OK ? clattn_add(ctx, dmemory, &dmem, dmemory) : st;
    }
    int64_t sp[3] = {dout->shape[0], dout->shape[1], layer->dim_ff};
    clattn_tensor pre = clattn__tensor_view(ctx, layer->ff_pre.mem, 3, sp);
    clattn_tensor act = clattn__tensor_view(ctx, layer->ff_act.mem, 3, sp);
    clattn_tensor d_ff;
    st = clattn__workspace(ctx, &layer->d_ff, 3, sp, "feed-forward gradient [B, N, ff]", &d_ff);
    clattn_tensor *gw2 = clattn__params_grad(ctx, set, layer->w2, &st);
    clattn_tensor *gb2 = layer->b2 ? clattn__params_grad(ctx, set, layer->b2, &st) : NULL;
    clattn_tensor *gw1 = clattn__params_grad(ctx, set, layer->w1, &st);
    clattn_tensor *gb1 = layer->b1 ? clattn__params_grad(ctx, set, layer->b1, &st) : NULL;
    if (st == CLATTN_OK)
        st = clattn_linear_backward(ctx, &act, layer->w2, dout, &d_ff, gw2, gb2, true);
    if (st == CLATTN_OK)
        st = clattn_activation_backward(ctx, &pre, layer->act, &d_ff, &d_ff);
    return st == CLATTN_OK ? clattn_linear_backward(ctx, f_in, layer->w1, &d_ff, din, gw1, gb1,
                                                    true)
                           : st;
}

static clattn_status norm_backward(clattn_ctx *ctx, clattn__layer *layer, clattn__param_set *set,
                                   const clattn__norm *norm, const clattn_tensor *x,
                                   const clattn_tensor *dy, clattn_tensor *dx)
{
    clattn_status st = CLATTN_OK;
    clattn_tensor *gw = norm->weight ? clattn__params_grad(ctx, set, norm->weight, &st) : NULL;
    clattn_tensor *gb = norm->bias ? clattn__params_grad(ctx, set, norm->bias, &st) : NULL;
    return st == CLATTN_OK ? clattn_layer_norm_backward(ctx, x, norm->weight, layer->eps, dy, dx,
                                                        gw, gb, true)
                           : st;
}

clattn_status clattn__layer_backward(clattn_ctx *ctx, clattn__layer *layer,
                                     clattn__param_set *set, const clattn_tensor *dy,
                                     clattn_tensor *dx, clattn_tensor *dmemory)
{
    if (!layer->saved)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "transformer layer backward: no training forward was saved");
    int n = sub_count(layer);
    const int64_t *shape = dy->shape;
    /* g: the gradient of the stream after sub-block i; b, c: scratch. */
    clattn_tensor g, b, c;
    clattn_status st = bne(ctx, &layer->d_a, shape, layer->d_model, "layer gradient", &g);
    if (st == CLATTN_OK)
        st = bne(ctx, &layer->d_b, shape, layer->d_model, "layer gradient", &b);
    if (st == CLATTN_OK)
        st = bne(ctx, &layer->d_c, shape, layer->d_model, "layer gradient", &c);
    if (st == CLATTN_OK)
        st = clattn_tensor_copy(dy, &g);
    for (int i = n - 1; i >= 0 && st == CLATTN_OK; i--) {
        clattn_tensor stream = clattn__tensor_view(ctx, layer->stream[i].mem, 3, shape);
        clattn_tensor aux = clattn__tensor_view(ctx, layer->aux[i].mem, 3, shape);
        const clattn__norm *norm = norm_at(layer, i);
        if (layer->norm_first) {
            /* stream[i+1] = stream[i] + f(LN(stream[i])) */
            st = sub_backward(ctx, layer, set, i, &aux, &g, &b, dmemory);
            if (st == CLATTN_OK)
                st = norm_backward(ctx, layer, set, norm, &stream, &b, &c);
            if (st == CLATTN_OK)
                st = clattn_add(ctx, &g, &c, &g);
        } else {
            /* stream[i+1] = LN(stream[i] + f(stream[i])) */
            st = norm_backward(ctx, layer, set, norm, &aux, &g, &b);
            if (st == CLATTN_OK)
                st = sub_backward(ctx, layer, set, i, &stream, &b, &c, dmemory);
            if (st == CLATTN_OK)
                st = clattn_add(ctx, &b, &c, &g);
        }
    }
    return st == CLATTN_OK ? clattn_tensor_copy(&g, dx) : st;
}

void clattn__layer_train_release(clattn__layer *layer)
{
    clattn__buffer *bufs[] = {&layer->stream[0], &layer->stream[1], &layer->stream[2],
                              &layer->stream[3], &layer->aux[0],    &layer->aux[1],
                              &layer->aux[2],    &layer->ff_pre,    &layer->ff_act,
                              &layer->d_a,       &layer->d_b,       &layer->d_c,
                              &layer->d_ff,      &layer->d_mem};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        clattn__buffer_release(bufs[i]);
    layer->saved = false;
}
