/* transformer.c - torch.nn.TransformerEncoderLayer and
 * TransformerDecoderLayer forward passes (post-norm and pre-norm), on top
 * of the attention blocks (mha.c) and the layer ops.
 *
 *   post-norm: x = norm1(x + sa(x));  [x = norm2(x + ca(x, mem));]  x = normL(x + ff(x))
 *   pre-norm:  x = x + sa(norm1(x));  [x = x + ca(norm2(x), mem);]  x = x + ff(normL(x))
 *   ff(x) = linear2(act(linear1(x))), bias and activation fused into linear1. */
#include "modules/modules.h"

#include <stdio.h>
#include <string.h>

static clattn_status add_norm(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                              const char *name, int64_t e, bool bias, clattn__norm *norm)
{
    char full[160];
    clattn_status st = CLATTN_OK;
    snprintf(full, sizeof full, "%s%s.weight", prefix, name);
    /* LayerNorm starts as the identity: weight 1, bias 0. */
    norm->weight = clattn__params_add(ctx, set, full, 1, &e, 1.0f, &st);
    if (bias) {
        snprintf(full, sizeof full, "%s%s.bias", prefix, name);
        norm->bias = clattn__params_add(ctx, set, full, 1, &e, 0.0f, &st);
    }
    return st;
}

static clattn_status add_linear(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                                const char *name, int64_t out, int64_t in, bool bias,
                                clattn_tensor **w, clattn_tensor **b)
{
    char full[160];
    clattn_status st = CLATTN_OK;
    int64_t shape[2] = {out, in};
    snprintf(full, sizeof full, "%s%s.weight", prefix, name);
    *w = clattn__params_add(ctx, set, full, 2, shape, 0.0f, &st);
    *b = NULL;
    if (bias) {
        snprintf(full, sizeof full, "%s%s.bias", prefix, name);
        *b = clattn__params_add(ctx, set, full, 1, &out, 0.0f, &st);
    }
    return st;
}

clattn_status clattn__layer_init(clattn_ctx *ctx, clattn__param_set *set, const char *prefix,
                                 const clattn_module_config *cfg, bool decoder,
                                 clattn__layer *layer)
{
    memset(layer, 0, sizeof *layer);
    const char *kind = decoder ? "TransformerDecoderLayer" : "TransformerEncoderLayer";
    if (cfg->dim_feedforward <= 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dim_feedforward %lld must be > 0",
                            kind, (long long)cfg->dim_feedforward);
    if (cfg->activation != CLATTN_ACT_RELU && cfg->activation != CLATTN_ACT_GELU)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: activation must be relu or gelu (PyTorch's choices)", kind);
    if (!(cfg->layer_norm_eps > 0))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: layer_norm_eps %g must be > 0",
                            kind, (double)cfg->layer_norm_eps);
    layer->decoder = decoder;
    layer->norm_first = cfg->norm_first;
    layer->eps = cfg->layer_norm_eps;
    layer->act = cfg->activation;
    layer->d_model = cfg->d_model;
    layer->dim_ff = cfg->dim_feedforward;
    int64_t e = cfg->d_model;
    char sub[160];
    /* state_dict order: self_attn, [multihead_attn], linear1, linear2, norms. */
    snprintf(sub, sizeof sub, "%sself_attn.", prefix);
    clattn_status st = clattn__mha_init(ctx, set, sub, e, cfg->nhead, 0, 0, cfg->bias, false,
                                        false, &layer->self_attn);
    if (st == CLATTN_OK && decoder) {
        snprintf(sub, sizeof sub, "%smultihead_attn.", prefix);
        st = clattn__mha_init(ctx, set, sub, e, cfg->nhead, 0, 0, cfg->bias, false, false,
                              &layer->cross_attn);
    }
    if (st == CLATTN_OK)
        st = add_linear(ctx, set, prefix, "linear1", cfg->dim_feedforward, e, cfg->bias,
                        &layer->w1, &layer->b1);
    if (st == CLATTN_OK)
        st = add_linear(ctx, set, prefix, "linear2", e, cfg->dim_feedforward, cfg->bias,
                        &layer->w2, &layer->b2);
    if (st == CLATTN_OK)
        st = add_norm(ctx, set, prefix, "norm1", e, cfg->bias, &layer->norm1);
    if (st == CLATTN_OK)
        st = add_norm(ctx, set, prefix, "norm2", e, cfg->bias, &layer->norm2);
    if (st == CLATTN_OK && decoder)
        st = add_norm(ctx, set, prefix, "norm3", e, cfg->bias, &layer->norm3);
    return st;
}

void clattn__layer_release(clattn__layer *layer)
{
    clattn__attn_block_release(&layer->self_attn);
    clattn__attn_block_release(&layer->cross_attn);
    clattn__buffer_release(&layer->h);
    clattn__buffer_release(&layer->ff);
    clattn__buffer_release(&layer->tmp);
    clattn__layer_train_release(layer);
}

/* One residual sub-block: x = norm(x + f(x)) or x = x + f(norm(x)).
 * f's input is x or, pre-norm, the normalised copy h; f adds its result
 * to out (x itself: the residual add happens in the store of f's last
 * GEMM, after everything that reads x). */
typedef clattn_status (*sublayer_fn)(clattn_ctx *ctx, clattn__layer *layer,
                                     const clattn__layer_call *call, const clattn_tensor *in,
                                     clattn_tensor *out, clattn_tensor *ff);

static clattn_status self_attention(clattn_ctx *ctx, clattn__layer *layer,
                                    const clattn__layer_call *call, const clattn_tensor *in,
                                    clattn_tensor *out, clattn_tensor *ff)
{
    (void)ff;
    clattn__attn_call ac = {in, in, in, call->self_mask, call->self_kpm, call->self_causal,
                            call->self_weights, false, call->self_kv_len, false, true};
    return clattn__attn_block_forward(ctx, &layer->self_attn, &ac, out);
}

static clattn_status cross_attention(clattn_ctx *ctx, clattn__layer *layer,
                                     const clattn__layer_call *call, const clattn_tensor *in,
                                     clattn_tensor *out, clattn_tensor *ff)
{
    (void)ff;
    clattn__attn_call ac = {in, call->memory, call->memory, call->memory_mask, call->memory_kpm,
                            call->memory_causal, NULL, false, NULL, false, true};
    return clattn__attn_block_forward(ctx, &layer->cross_attn, &ac, out);
}

static clattn_status feed_forward(clattn_ctx *ctx, clattn__layer *layer,
                                  const clattn__layer_call *call, const clattn_tensor *in,
                                  clattn_tensor *out, clattn_tensor *ff)
{
    (void)call;
    clattn_status st = clattn_linear(ctx, in, layer->w1, layer->b1, layer->act, ff);
    return st == CLATTN_OK ? clattn__linear_acc(ctx, ff, layer->w2, layer->b2, out) : st;
}

static clattn_status residual(clattn_ctx *ctx, clattn__layer *layer, sublayer_fn f,
                              const clattn__norm *norm, const clattn__layer_call *call,
                              clattn_tensor *x, clattn_tensor *h, clattn_tensor *ff)
{
    clattn_status st;
    if (layer->norm_first) {
        st = clattn_layer_norm(ctx, x, norm->weight, norm->bias, layer->eps, h);
        return st == CLATTN_OK ? f(ctx, layer, call, h, x, ff) : st;
    }
    st = f(ctx, layer, call, x, x, ff);
    return st == CLATTN_OK ? clattn_layer_norm(ctx, x, norm->weight, norm->bias, layer->eps, x)
                           : st;
}

clattn_status clattn__layer_forward(clattn_ctx *ctx, clattn__layer *layer,
                                    const clattn__layer_call *call, clattn_tensor *x)
{
    const int64_t sh[3] = {x->shape[0], x->shape[1], layer->d_model};
    const int64_t sff[3] = {x->shape[0], x->shape[1], layer->dim_ff};
    clattn_tensor h, ff;
    clattn_status st = clattn__workspace(ctx, &layer->h, 3, sh, "layer workspace [B, N, E]", &h);
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &layer->ff, 3, sff, "feed-forward workspace [B, N, ff]", &ff);
    if (st == CLATTN_OK)
        st = residual(ctx, layer, self_attention, &layer->norm1, call, x, &h, &ff);
    if (st == CLATTN_OK && layer->decoder)
        st = residual(ctx, layer, cross_attention, &layer->norm2, call, x, &h, &ff);
    if (st == CLATTN_OK)
        st = residual(ctx, layer, feed_forward, layer->decoder ? &layer->norm3 : &layer->norm2,
                      call, x, &h, &ff);
    return st;
}
