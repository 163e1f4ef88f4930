/* tensor_check.c - the argument checks every op shares: a tensor is
 * non-NULL and belongs to the calling context, shapes agree. */
#include "core/core.h"

clattn_status clattn__check_tensor(clattn_ctx *ctx, const char *fn, const char *arg,
                                   const clattn_tensor *t)
{
    if (!t)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s is NULL", fn, arg);
    if (t->ctx != ctx)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: %s belongs to another context", fn, arg);
    return CLATTN_OK;
}

bool clattn__same_shape(const clattn_tensor *a, const clattn_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int32_t i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

clattn_status clattn__check_tensors(clattn_ctx *ctx, const char *fn, const clattn__targ *args,
                                    size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (args[i].optional && !args[i].t)
            continue;
        clattn_status st = clattn__check_tensor(ctx, fn, args[i].name, args[i].t);
        if (st != CLATTN_OK)
            return st;
    }
    return CLATTN_OK;
}
