/* launch.c - enqueueing kernels on the context's queue, and the
 * work-group sizing rule every reduction uses (row and column sums, layer
 * norm, softmax, losses): the widest power of two the device, the kernel
 * and local memory allow, or on a CPU the fewest work-items that keep each
 * serial sum short. */
#include "core/core.h"

#include <stdio.h>

clattn_status clattn__set_args(clattn_ctx *ctx, cl_kernel k, cl_uint first,
                               const clattn__karg *args, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        cl_int err = clSetKernelArg(k, first + (cl_uint)i, args[i].size, args[i].ptr);
        if (err != CL_SUCCESS)
            return clattn__fail(ctx, clattn__status_from_cl(err), "%s: argument %u: %s (%d)",
                                what, (unsigned)(first + i), clattn__cl_error_name(err), (int)err);
    }
    return CLATTN_OK;
}

clattn_status clattn__enqueue(clattn_ctx *ctx, cl_kernel kernel, cl_uint dims,
                              const size_t *global, const size_t *local, const char *what)
{
    size_t g[3];
    for (cl_uint i = 0; i < dims; i++) {
        if (global[i] == 0)
            return CLATTN_OK; /* empty range: nothing to do, not an error */
        g[i] = local ? clattn__round_up(global[i], local[i]) : global[i];
    }
    cl_int err = clEnqueueNDRangeKernel(ctx->queue, kernel, dims, NULL, g, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, what);
}

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
    st = CLATTN_SET_ARGS_FROM(ctx, k, scratch_arg, what, CLATTN_KLOCAL(wg * sizeof(cl_float2)));
    if (st != CLATTN_OK)
        return st;
    size_t global = rows * wg;
    return clattn__enqueue(ctx, k, 1, &global, &wg, what);
}
