/* module_train.c - training of clattn_module: the stacks' training
 * forward, the backward dispatch per kind, and the gradients' public
 * access (clattn_module_grad, _zero_grad, _param_refs). The forward
 * itself is module.c's with train set. */
#include "modules/modules.h"

#include <string.h>

clattn_backward_args clattn_backward_args_default(void)
{
    clattn_backward_args a;
    memset(&a, 0, sizeof a);
    return a;
}

clattn_status clattn__stack_train_forward(clattn_module *m, int32_t first, int32_t count,
                                          const clattn__layer_call *call,
                                          const clattn__norm *norm, const clattn_tensor *x,
                                          clattn_tensor *y)
{
    clattn_ctx *ctx = m->ctx;
    /* Each layer copies its input into its own saved stream, so one
     * running buffer serves every layer; it ends as the norm's input. */
    clattn_tensor run;
    clattn_status st = clattn__workspace(ctx, &m->x, 3, x->shape, "stack activations [B, N, E]",
                                         &run);
    memcpy(m->train_shape, x->shape, sizeof m->train_shape);
    const clattn_tensor *in = x;
    for (int32_t i = first; i < first + count && st == CLATTN_OK; i++) {
        st = clattn__layer_train_forward(ctx, &m->layers[i], call, in, &run);
        in = &run;
    }
    if (st != CLATTN_OK)
        return st;
    return norm->weight ? clattn_layer_norm(ctx, &run, norm->weight, norm->bias,
                                            m->cfg.layer_norm_eps, y)
                        : clattn_tensor_copy(&run, y);
}

static bool same_shape(const clattn_tensor *a, const clattn_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, (size_t)a->ndim * sizeof(int64_t)) == 0;
}

/* Fails unless grad (when given) has the shape of what it is the gradient
 * of. */
static clattn_status check_grad(clattn_ctx *ctx, const char *what, const char *name,
                                const clattn_tensor *grad, const clattn_tensor *like)
{
    if (!grad || same_shape(grad, like))
        return CLATTN_OK;
    char s1[96], s2[96];
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s backward: %s %s must be %s", what, name,
                        clattn__shape_str(grad->shape, grad->ndim, s1, sizeof s1),
                        clattn__shape_str(like->shape, like->ndim, s2, sizeof s2));
}

static clattn_status attention_backward(clattn_module *m, const clattn_backward_args *a)
{
    clattn_ctx *ctx = m->ctx;
    clattn__attn_block *blk = &m->attn;
    bool mha = m->cfg.kind == CLATTN_MODULE_MHA;
    const char *what = mha ? "MultiheadAttention" : "self-attention block";
    bool self = blk->saved.x_q.mem == blk->saved.x_k.mem &&
                blk->saved.x_k.mem == blk->saved.x_v.mem;
    if (!mha && (a->dkey || a->dvalue || a->dsrc))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s backward: its input is query, so its gradient is dquery", what);
    if (self && (a->dkey || a->dvalue))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s backward: query, key and value were one tensor, whose whole "
                            "gradient goes to dquery; dkey and dvalue must be NULL",
                            what);
    if (a->dkey && a->dkey == a->dvalue && blk->saved.x_k.mem != blk->saved.x_v.mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s backward: dkey and dvalue may be one tensor only when key and "
                            "value were",
                            what);
    clattn_status st = check_grad(ctx, what, "dquery", a->dquery, &blk->saved.x_q);
    if (st == CLATTN_OK)
        st = check_grad(ctx, what, "dkey", a->dkey, &blk->saved.x_k);
    if (st == CLATTN_OK)
        st = check_grad(ctx, what, "dvalue", a->dvalue, &blk->saved.x_v);
    return st == CLATTN_OK ? clattn__attn_block_backward(ctx, blk, &m->params, a->dout,
                                                         a->dquery, a->dkey, a->dvalue)
                           : st;
}

static clattn_status stack_backward(clattn_module *m, const clattn_backward_args *a)
{
    clattn_ctx *ctx = m->ctx;
    const clattn_module_config *c = &m->cfg;
    bool decoder = c->kind == CLATTN_MODULE_DECODER_LAYER || c->kind == CLATTN_MODULE_DECODER;
    const char *what = decoder ? "transformer decoder" : "transformer encoder";
    const clattn__norm *norm = decoder ? &m->dec_norm : &m->enc_norm;
    const clattn_tensor *dout = a->dout;
    clattn_tensor *dx = decoder ? a->dtgt : a->dsrc;
    if ((decoder && a->dsrc) || (!decoder && (a->dtgt || a->dmemory)) || a->dquery || a->dkey ||
        a->dvalue)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s backward: its input gradients are %s", what,
                            decoder ? "dtgt and dmemory" : "dsrc");
    char s1[96], s2[96];
    if (dout->ndim != 3 || memcmp(dout->shape, m->train_shape, sizeof m->train_shape) != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s backward: dout %s must have the forward output's shape %s", what,
                            clattn__shape_str(dout->shape, dout->ndim, s1, sizeof s1),
                            clattn__shape_str(m->train_shape, 3, s2, sizeof s2));
    clattn_status st = check_grad(ctx, what, decoder ? "dtgt" : "dsrc", dx, dout);
    if (st == CLATTN_OK && a->dmemory)
        st = check_grad(ctx, what, "dmemory", a->dmemory, &m->layers[0].cross_attn.saved.x_k);
    clattn_tensor g;
    if (st == CLATTN_OK)
        st = clattn__workspace(ctx, &m->d_x, 3, dout->shape, "stack gradient [B, N, E]", &g);
    if (st != CLATTN_OK)
        return st;
    if (norm->weight) {
        clattn_tensor run = clattn__tensor_view(ctx, m->x.mem, 3, dout->shape);
        clattn_tensor *gw = clattn__params_grad(ctx, &m->params, norm->weight, &st);
        clattn_tensor *gb = norm->bias ? clattn__params_grad(ctx, &m->params, norm->bias, &st)
                                       : NULL;
        if (st == CLATTN_OK)
            st = clattn_layer_norm_backward(ctx, &run, norm->weight, c->layer_norm_eps, dout, &g,
                                            gw, gb, true);
    } else {
        st = clattn_tensor_copy(dout, &g);
    }
    if (st == CLATTN_OK && a->dmemory)
        st = clattn_tensor_fill(a->dmemory, 0.0f);
    for (int32_t i = m->n_layers - 1; i >= 0 && st == CLATTN_OK; i--)
        st = clattn__layer_backward(ctx, &m->layers[i], &m->params, &g, &g, a->dmemory);
    return st == CLATTN_OK && dx ? clattn_tensor_copy(&g, dx) : st;
}

clattn_status clattn_module_backward(clattn_module *m, const clattn_backward_args *a)
{
    clattn__clear_thread_error();
    if (!m || !a || !a->dout)
        return clattn__fail(m ? m->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                            "module_backward: m, a and a->dout must not be NULL");
    if (!m->train_saved)
        return clattn__fail(m->ctx, CLATTN_ERR_INVALID_ARG,
                            "module_backward: no clattn_module_train_forward to go back through "
                            "(or another forward ran since)");
    /* Gradients exist before any is accumulated into. */
    clattn_status st = clattn__params_alloc_grads(m->ctx, &m->params);
    if (st != CLATTN_OK)
        return st;
    switch (m->cfg.kind) {
    case CLATTN_MODULE_MHA:
    case CLATTN_MODULE_SELF_ATTENTION:
        return attention_backward(m, a);
    case CLATTN_MODULE_ENCODER_LAYER:
    case CLATTN_MODULE_ENCODER:
    case CLATTN_MODULE_DECODER_LAYER:
    case CLATTN_MODULE_DECODER:
        return stack_backward(m, a);
    case CLATTN_MODULE_TRANSFORMER:
        break;
    }
    return clattn__fail(m->ctx, CLATTN_ERR_UNSUPPORTED, "module_backward: not for this kind");
}

clattn_tensor *clattn_module_grad(clattn_module *m, const char *name)
{
    if (!m || !name)
        return NULL;
    clattn__param *p = clattn__params_find(&m->params, name);
    clattn_status st = CLATTN_OK;
    return p ? clattn__params_grad(m->ctx, &m->params, p->value, &st) : NULL;
}

clattn_status clattn_module_zero_grad(clattn_module *m)
{
    clattn__clear_thread_error();
    if (!m)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "module_zero_grad: NULL module");
    return clattn__params_zero_grads(&m->params);
}

int32_t clattn_module_param_refs(clattn_module *m, clattn_param_ref *refs, int32_t cap)
{
    clattn__clear_thread_error();
    if (!m || cap < 0 || (cap > 0 && !refs)) {
        clattn__fail(m ? m->ctx : NULL, CLATTN_ERR_INVALID_ARG,
                     "module_param_refs: NULL module, or refs NULL with cap > 0");
        return -1;
    }
    return clattn__params_refs(m->ctx, &m->params, refs, cap);
}
