/* layers_rows.c - ops that reduce over the last dimension: layer norm and
 * softmax. Both run one work-group per row (cl/layers.cl), with the
 * work-group size picked here from the device's and the kernel's limits
 * (the rule every reduction of src/ uses); on CPU devices layer norm has
 * a kernel with one work-item per row instead. */
#include "internal.h"

#include <math.h>
#include <stdio.h>

/* Upper bound on a reduction's work-group width. Wider groups only add tree
 * levels and idle work-items for typical rows (E = 768 .. 8192: 3 to 32
 * elements per work-item at 256), and 256 fits every device we know. */
#define REDUCTION_WG_MAX 256

clattn_status clattn__group_limits_get(clattn_ctx *ctx, cl_kernel k, const char *what,
                                       clattn__group_limits *out)
{
    size_t kernel_max = 0;
    *out = (clattn__group_limits){0};
    cl_int err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_WORK_GROUP_SIZE,
                                          sizeof kernel_max, &kernel_max, NULL);
    if (err == CL_SUCCESS)
        err = clGetKernelWorkGroupInfo(k, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE,
                                       sizeof out->kernel_local, &out->kernel_local, NULL);
    if (err == CL_SUCCESS)
        err = clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof out->item_max,
                              out->item_max, NULL);
    if (err != CL_SUCCESS) {
        char msg[96];
        snprintf(msg, sizeof msg, "querying work-group limits for %s", what);
        return clattn__fail_cl(ctx, err, msg);
    }
    out->group_max = ctx->info.max_work_group_size;
    if (kernel_max && kernel_max < out->group_max)
        out->group_max = kernel_max;
    return CLATTN_OK;
}

size_t clattn__reduction_width(const clattn_ctx *ctx, const clattn__group_limits *lim, size_t n,
                               size_t item_bytes)
{
    size_t limit = REDUCTION_WG_MAX;
    if (lim->group_max < limit)
        limit = lim->group_max;
    if (lim->item_max[0] && lim->item_max[0] < limit)
        limit = lim->item_max[0];
    /* On a CPU one work-item per row is fastest: it walks the row in
     * order with no barriers, and the work-group loop of POCL runs the
     * rows side by side. A tree over work-items costs a barrier per level,
     * which a CPU runtime executes as a loop over the work-items each time:
     * layer norm of [4096, 128] took several times longer that way. Rows
     * longer than CLATTN_CPU_ITEM_SPAN get just enough work-items to keep
     * each serial sum within it. */
    if (ctx->info.type == CLATTN_DEVICE_CPU) {
        size_t w = 1;
        while (w * CLATTN_CPU_ITEM_SPAN < n && w * 2 <= limit)
            w *= 2;
        limit = w;
    }
    size_t w = 1;
    while (w * 2 <= limit && w < n)
        w *= 2;
    while (w > 1 && lim->kernel_local + w * item_bytes > ctx->info.local_mem_bytes)
        w /= 2;
    return w;
}

clattn_status clattn__work_group_width(clattn_ctx *ctx, cl_kernel k, size_t n,
                                      size_t item_bytes, size_t *wg)
{
    clattn__group_limits lim;
    clattn_status st = clattn__group_limits_get(ctx, k, "a reduction kernel", &lim);
    if (st == CLATTN_OK)
        *wg = clattn__reduction_width(ctx, &lim, n, item_bytes);
    return st;
}

/* Enqueues a row kernel whose arguments are set except the last, the
 * __local scratch. */
clattn_status clattn__run_rows(clattn_ctx *ctx, cl_kernel k, cl_uint scratch_arg, size_t rows,
                              size_t cols, const char *what)
{
    size_t wg;
    clattn_status st = clattn__work_group_width(ctx, k, cols, sizeof(cl_float2), &wg);
    if (st != CLATTN_OK)
        return st;
    cl_int err = clSetKernelArg(k, scratch_arg, wg * sizeof(cl_float2), NULL);
    if (err != CL_SUCCESS)
        return clattn__fail_cl(ctx, err, what);
    size_t global = rows * wg;
    return clattn__enqueue(ctx, k, 1, &global, &wg, what);
}

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
    clattn_status st = clattn__check_tensor(ctx, fn, "x", x);
    if (st == CLATTN_OK)
        st = clattn__check_tensor(ctx, fn, "y", y);
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
    cl_kernel k;
    st = clattn__layers_kernel(ctx, per_row ? "layer_norm_rows_cpu" : "layer_norm_rows", &k);
    if (st != CLATTN_OK)
        return st;
    size_t cols = (size_t)x->shape[x->ndim - 1];
    cl_uint c = (cl_uint)cols;
    cl_int has_gamma = gamma != NULL, has_beta = beta != NULL;
    cl_mem g = gamma ? gamma->mem : x->mem, b = beta ? beta->mem : x->mem; /* unread if absent */
    cl_int err = CLATTN_ARG(k, 0, x->mem);
    err |= CLATTN_ARG(k, 1, y->mem);
    err |= CLATTN_ARG(k, 2, g);
    err |= CLATTN_ARG(k, 3, b);
    err |= CLATTN_ARG(k, 4, has_gamma);
    err |= CLATTN_ARG(k, 5, has_beta);
    err |= CLATTN_ARG(k, 6, c);
    err |= CLATTN_ARG(k, 7, eps);
    size_t rows = x->numel / cols;
    if (per_row) {
        cl_ulong r = rows;
        err |= CLATTN_ARG(k, 8, r);
        if (err != CL_SUCCESS)
            return clattn__fail_cl(ctx, err, "setting layer_norm_rows_cpu arguments");
        size_t one = 1; /* see the kernel's comment */
        return clattn__enqueue(ctx, k, 1, &rows, &one, "layer_norm_rows_cpu");
    }
    if (err != CL_SUCCESS)
        return clattn__fail_cl(ctx, err, "setting layer_norm_rows arguments");
    return clattn__run_rows(ctx, k, 8, rows, cols, "layer_norm_rows");
}

clattn_status clattn_softmax(clattn_ctx *ctx, const clattn_tensor *x, clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "softmax: ctx is NULL");
    clattn_status st = check_xy(ctx, "softmax", x, y);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = clattn__layers_kernel(ctx, "softmax_rows", &k);
    if (st != CLATTN_OK)
        return st;
    size_t cols = (size_t)x->shape[x->ndim - 1];
    cl_uint c = (cl_uint)cols;
    cl_int err = CLATTN_ARG(k, 0, x->mem);
    err |= CLATTN_ARG(k, 1, y->mem);
    err |= CLATTN_ARG(k, 2, c);
    if (err != CL_SUCCESS)
        return clattn__fail_cl(ctx, err, "setting softmax_rows arguments");
    return clattn__run_rows(ctx, k, 3, x->numel / cols, cols, "softmax_rows");
}
