/* rows.c - ops that reduce over the last dimension: layer norm and
 * softmax. Both run one work-group per row (cl/nn/layers.cl), with the
 * work-group size picked here from the device's and the kernel's limits
 * (the rule every reduction of src/ uses); on CPU devices layer norm has
 * a kernel with one work-item per row instead. */
#include "nn/nn.h"

#include <math.h>
#include <stdio.h>

/* Checks a vector argument v: [E] (NULL allowed). */
static clattn_status check_vector(clattn_ctx *ctx, const char *fn, const char *arg,
                                  const clattn_tensor *v, const clattn_tensor *x)
{
    if (!v)
        return CLATTN_OK;
    clattn_status st = clattn__check_tensor(ctx, fn, arg, v);
    if (st != CLATTN_OK)
        return st;
    if (v->ndim != 1 || v->shape[0] != x->shape[x->ndim - 1]) {
        char sv[96], sx[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: %s %s must be [E] for x %s [..., E]", fn, arg,
                            clattn__shape_str(v->shape, v->ndim, sv, sizeof sv),
                            clattn__shape_str(x->shape, x->ndim, sx, sizeof sx));
    }
    return CLATTN_OK;
}

/* Checks x and y: same shape, last dimension within the kernels' uint. */
static clattn_status check_xy(clattn_ctx *ctx, const char *fn, const clattn_tensor *x,
                              const clattn_tensor *y)
{
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR(y));
    if (st != CLATTN_OK)
        return st;
    char sx[96], sy[96];
    clattn__shape_str(x->shape, x->ndim, sx, sizeof sx);
    clattn__shape_str(y->shape, y->ndim, sy, sizeof sy);
    if (!clattn__same_shape(x, y))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: y %s must have the shape of x %s",
                            fn, sy, sx);
    if ((uint64_t)x->shape[x->ndim - 1] > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: x %s: last dimension over 2^32 - 1",
                            fn, sx);
    return CLATTN_OK;
}

clattn_status clattn_layer_norm(clattn_ctx *ctx, const clattn_tensor *x,
                                const clattn_tensor *gamma, const clattn_tensor *beta, float eps,
                                clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "layer_norm: ctx is NULL");
    clattn_status st = check_xy(ctx, "layer_norm", x, y);
    if (st == CLATTN_OK)
        st = check_vector(ctx, "layer_norm", "gamma", gamma, x);
    if (st == CLATTN_OK)
        st = check_vector(ctx, "layer_norm", "beta", beta, x);
    if (st != CLATTN_OK)
        return st;
    if (!isfinite(eps) || eps < 0.0f)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "layer_norm: eps = %g must be finite and >= 0", (double)eps);
    if ((gamma && y->mem == gamma->mem) || (beta && y->mem == beta->mem))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "layer_norm: y must not alias gamma or beta");
    /* CPU devices: the one-row-per-work-item kernel, for rows whose 8
     * partial sums stay within CLATTN_CPU_ITEM_SPAN terms each. */
    size_t cols_n = (size_t)x->shape[x->ndim - 1];
    bool per_row = ctx->info.type == CLATTN_DEVICE_CPU && cols_n <= 8 * CLATTN_CPU_ITEM_SPAN;
    static const clattn__kernel_spec LN_ROWS = {&clattn__layers_program, "layer_norm_rows"};
    static const clattn__kernel_spec LN_ROWS_CPU = {&clattn__layers_program,
                                                    "layer_norm_rows_cpu"};
    const clattn__kernel_spec *spec = per_row ? &LN_ROWS_CPU : &LN_ROWS;
    cl_kernel k;
    size_t cols = (size_t)x->shape[x->ndim - 1];
    size_t rows = x->numel / cols;
    cl_uint c = (cl_uint)cols;
    cl_ulong r = rows;
    cl_int has_gamma = gamma != NULL, has_beta = beta != NULL;
    cl_mem g = gamma ? gamma->mem : x->mem, b = beta ? beta->mem : x->mem; /* unread if absent */
    st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(x->mem), CLATTN_KARG(y->mem),
                             CLATTN_KARG(g), CLATTN_KARG(b), CLATTN_KARG(has_gamma),
                             CLATTN_KARG(has_beta), CLATTN_KARG(c), CLATTN_KARG(eps));
    if (st != CLATTN_OK)
        return st;
    if (per_row) {
        /* The per-row kernel takes the row count where the other takes
         * its __local scratch. */
        st = CLATTN_SET_ARGS_FROM(ctx, k, 8, spec->name, CLATTN_KARG(r));
        if (st != CLATTN_OK)
            return st;
        size_t one = 1; /* see the kernel's comment */
        return clattn__enqueue(ctx, k, 1, &rows, &one, spec->name);
    }
    return clattn__run_rows(ctx, k, 8, rows, cols, spec->name);
}

clattn_status clattn_softmax(clattn_ctx *ctx, const clattn_tensor *x, clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "softmax: ctx is NULL");
    static const clattn__kernel_spec SOFTMAX = {&clattn__layers_program, "softmax_rows"};
    clattn_status st = check_xy(ctx, "softmax", x, y);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &SOFTMAX, &k);
    if (st != CLATTN_OK)
        return st;
    size_t cols = (size_t)x->shape[x->ndim - 1];
    cl_uint c = (cl_uint)cols;
    st = CLATTN_SET_ARGS(ctx, k, "softmax_rows", CLATTN_KARG(x->mem), CLATTN_KARG(y->mem),
                         CLATTN_KARG(c));
    if (st != CLATTN_OK)
        return st;
    return clattn__run_rows(ctx, k, 3, x->numel / cols, cols, "softmax_rows");
}
