/* dropout.c - inverted dropout (clattn_dropout) and its backward, with
 * the mask drawn from Philox4x32-10 on the device (cl/nn/dropout.cl): a pure
 * function of (element index + offset, seed), so the backward recomputes
 * the forward's mask instead of storing it, and every device draws the
 * same one. */
#include "nn/nn.h"

#include <math.h>

const clattn__program_spec clattn__dropout_program = {{"nn/dropout.cl", NULL}, NULL};

/* y = x * keep / (1 - p) for x, y: the same shape; fn and the argument
 * names make the messages. y may be x. */
static clattn_status dropout_run(clattn_ctx *ctx, const char *fn, const char *xname,
                                 const clattn_tensor *x, float p, uint64_t seed, uint64_t offset,
                                 const char *yname, clattn_tensor *y)
{
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    /* Spelled out: the argument names are the caller's (x/y or dy/dx). */
    const clattn__targ args[] = {{xname, x, false}, {yname, y, false}};
    clattn_status st = clattn__check_tensors(ctx, fn, args, 2);
    if (st != CLATTN_OK)
        return st;
    if (!clattn__same_shape(x, y)) {
        char sx[96], sy[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must have the shape of %s %s",
                            fn, yname, clattn__shape_str(y->shape, y->ndim, sy, sizeof sy), xname,
                            clattn__shape_str(x->shape, x->ndim, sx, sizeof sx));
    }
    /* !(p >= 0 && p <= 1) also catches NaN. */
    if (!(p >= 0.0f && p <= 1.0f))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: p = %g must be in [0, 1]", fn,
                            (double)p);
    /* Drop iff r < p * 2^32 for the 32-bit integer r: the same as
     * r < ceil(p * 2^32), and p * 2^32 is exact in double (a float's 24
     * bits times a power of two). p = 0 gives 0 (nothing dropped), p = 1
     * gives 2^32 (everything dropped: r < 2^32 always). */
    cl_ulong threshold = (cl_ulong)ceil((double)p * 4294967296.0);
    /* 1 / (1 - p) rounded once; unused when everything is dropped. */
    cl_float scale = p < 1.0f ? (cl_float)(1.0 / (1.0 - (double)p)) : 0.0f;
    cl_uint key0 = (cl_uint)seed, key1 = (cl_uint)(seed >> 32);
    cl_ulong n = x->numel, off = offset;
    static const clattn__kernel_spec APPLY = {&clattn__dropout_program, "dropout_apply"};
    cl_kernel k;
    st = clattn__kernel(ctx, &APPLY, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "dropout_apply", CLATTN_KARG(x->mem), CLATTN_KARG(y->mem),
                             CLATTN_KARG(n), CLATTN_KARG(off), CLATTN_KARG(key0),
                             CLATTN_KARG(key1), CLATTN_KARG(threshold), CLATTN_KARG(scale));
    if (st != CLATTN_OK)
        return st;
    size_t global = x->numel, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "dropout_apply");
}

clattn_status clattn_dropout(clattn_ctx *ctx, const clattn_tensor *x, float p, uint64_t seed,
                             uint64_t offset, clattn_tensor *y)
{
    clattn__clear_thread_error();
    return dropout_run(ctx, "dropout", "x", x, p, seed, offset, "y", y);
}

clattn_status clattn_dropout_backward(clattn_ctx *ctx, const clattn_tensor *dy, float p,
                                      uint64_t seed, uint64_t offset, clattn_tensor *dx)
{
    clattn__clear_thread_error();
    /* The gradient of x * keep * scale is dy * keep * scale: the forward
     * itself, applied to dy with the same mask. dx NULL: not wanted, but
     * the other arguments are still checked. */
    if (ctx && !dx) {
        clattn_status st = clattn__check_tensor(ctx, "dropout_backward", "dy", dy);
        if (st == CLATTN_OK && !(p >= 0.0f && p <= 1.0f))
            st = clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                              "dropout_backward: p = %g must be in [0, 1]", (double)p);
        return st;
    }
    return dropout_run(ctx, "dropout_backward", "dy", dy, p, seed, offset, "dx", dx);
}
