/* decoder_ops.c - the decoder-LM blocks of the header's Layers section
 * (RMSNorm, rotary embeddings, SwiGLU) and their backward passes
 * ("Training: backward passes"). Kernels: the forward ones in
 * cl/nn/layers.cl, the gradients in cl/nn/layers_backward.cl. lm/ runs
 * clattn__rms_norm_rows and clattn__rope_inv_freq too, so a model's
 * forward and these ops agree bit for bit.
 *
 * Every sum is deterministic: row sums one work-group per row (one
 * work-item per row on CPU devices), the weight gradient a column sum of
 * fixed order (layers_backward.c's col_reduce); no atomics. */
#include "nn/nn.h"
#include "nn/layers_backward.h"

#include <math.h>
#include <stdlib.h>

#define FWD_KERNEL(name) {&clattn__layers_program, name}
#define BWD_KERNEL(name) {&clattn__layers_backward_program, name}
/* [has weight]: layers.cl's row kernels. */
static const clattn__kernel_spec RMS_ROWS[2] = {FWD_KERNEL("rms_norm_rows"),
                                                FWD_KERNEL("rms_norm_rows_w")};
static const clattn__kernel_spec RMS_ROWS_CPU[2] = {FWD_KERNEL("rms_norm_rows_cpu"),
                                                    FWD_KERNEL("rms_norm_rows_w_cpu")};
static const clattn__kernel_spec ROTARY = FWD_KERNEL("rotary");
static const clattn__kernel_spec SWIGLU_FWD = FWD_KERNEL("swiglu_fwd");
static const clattn__kernel_spec RMS_BWD_ROWS[2] = {BWD_KERNEL("rms_norm_bwd_rows"),
                                                    BWD_KERNEL("rms_norm_bwd_rows_w")};
/* [accumulate] */
static const clattn__kernel_spec RMS_DWEIGHT[2] = {BWD_KERNEL("rms_dweight"),
                                                   BWD_KERNEL("rms_dweight_acc")};
static const clattn__kernel_spec SWIGLU_BWD = BWD_KERNEL("swiglu_bwd");
#undef FWD_KERNEL
#undef BWD_KERNEL

/* Positions must be exact as float32 (the angle is pos * inv_freq in
 * float32, as transformers computes it). */
#define ROPE_MAX_POSITION (1 << 24)

static bool same_mem(const clattn_tensor *a, const clattn_tensor *b)
{
    return a && b && a->mem == b->mem;
}

/* Fails unless t is NULL or has exactly the shape of like. */
static clattn_status check_like(clattn_ctx *ctx, const char *fn, const char *arg,
                                const clattn_tensor *t, const char *like_arg,
                                const clattn_tensor *like)
{
    if (!t || clattn__same_shape(t, like))
        return CLATTN_OK;
    char st[96], sl[96];
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must have the shape of %s %s", fn,
                        arg, clattn__shape_or_null(t, st, sizeof st), like_arg,
                        clattn__shape_or_null(like, sl, sizeof sl));
}

/* Fails unless t is NULL or is [E] for x [..., E]. */
static clattn_status check_vec(clattn_ctx *ctx, const char *fn, const char *arg,
                               const clattn_tensor *t, const clattn_tensor *x)
{
    if (!t || (t->ndim == 1 && t->shape[0] == x->shape[x->ndim - 1]))
        return CLATTN_OK;
    char st[96], sx[96];
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must be [E] for x %s [..., E]",
                        fn, arg, clattn__shape_or_null(t, st, sizeof st),
                        clattn__shape_or_null(x, sx, sizeof sx));
}

/* eps finite and >= 0, the last extent within the kernels' uint. */
static clattn_status check_eps_cols(clattn_ctx *ctx, const char *fn, const clattn_tensor *x,
                                    float eps)
{
    char sx[96];
    if ((uint64_t)x->shape[x->ndim - 1] > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: x %s: last dimension over 2^32 - 1",
                            fn, clattn__shape_or_null(x, sx, sizeof sx));
    if (!isfinite(eps) || eps < 0.0f)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0",
                            fn, (double)eps);
    return CLATTN_OK;
}

/* ======================================================================== */
/* RMSNorm                                                                   */
/* ======================================================================== */

clattn_status clattn__rms_norm_rows(clattn_ctx *ctx, cl_mem x, cl_mem w, cl_mem y, size_t rows,
                                    size_t cols, float eps)
{
    /* CPU devices: one work-item per row, for rows whose 8 partial sums
     * stay within CLATTN_CPU_ITEM_SPAN terms each (as layer norm). */
    bool per_row = ctx->info.type == CLATTN_DEVICE_CPU && cols <= 8 * CLATTN_CPU_ITEM_SPAN;
    const clattn__kernel_spec *spec = per_row ? &RMS_ROWS_CPU[w != NULL] : &RMS_ROWS[w != NULL];
    cl_kernel k;
    cl_uint c = (cl_uint)cols;
    cl_mem wm = w ? w : x; /* never read without a weight */
    clattn_status st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(x), CLATTN_KARG(y), CLATTN_KARG(wm),
                             CLATTN_KARG(c), CLATTN_KARG(eps));
    if (st != CLATTN_OK)
        return st;
    if (per_row) {
        cl_ulong r = rows;
        st = CLATTN_SET_ARGS_FROM(ctx, k, 5, spec->name, CLATTN_KARG(r));
        size_t one = 1; /* reqd_work_group_size(1, 1, 1) */
        return st == CLATTN_OK ? clattn__enqueue(ctx, k, 1, &rows, &one, spec->name) : st;
    }
    return clattn__run_rows(ctx, k, 5, rows, cols, spec->name);
}

clattn_status clattn_rms_norm(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *weight,
                              float eps, clattn_tensor *y)
{
    static const char fn[] = "rms_norm";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR_OPT(weight),
                                            CLATTN_TENSOR(y));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "y", y, "x", x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "weight", weight, x);
    if (st == CLATTN_OK)
        st = check_eps_cols(ctx, fn, x, eps);
    if (st != CLATTN_OK)
        return st;
    if (same_mem(y, weight))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: y must not alias weight", fn);
    size_t cols = (size_t)x->shape[x->ndim - 1];
    return clattn__rms_norm_rows(ctx, x->mem, weight ? weight->mem : NULL, y->mem,
                                 x->numel / cols, cols, eps);
}

clattn_status clattn_rms_norm_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                       const clattn_tensor *weight, float eps,
                                       const clattn_tensor *dy, clattn_tensor *dx,
                                       clattn_tensor *dweight, bool accumulate)
{
    static const char fn[] = "rms_norm_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR_OPT(weight),
                                            CLATTN_TENSOR(dy), CLATTN_TENSOR_OPT(dx),
                                            CLATTN_TENSOR_OPT(dweight));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dy", dy, "x", x);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dx", dx, "x", x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "weight", weight, x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "dweight", dweight, x);
    if (st == CLATTN_OK)
        st = check_eps_cols(ctx, fn, x, eps);
    if (st != CLATTN_OK)
        return st;
    if (dweight && !weight)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dweight needs weight (without weight there is no scale)", fn);
    if (same_mem(dx, x) || same_mem(dx, weight))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dx must not alias x or weight (it may be dy)", fn);
    if (same_mem(dweight, x) || same_mem(dweight, weight) || same_mem(dweight, dy) ||
        same_mem(dweight, dx))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dweight must not alias x, weight, dy or dx", fn);
    if (!dx && !dweight)
        return CLATTN_OK;

    size_t cols = (size_t)x->shape[x->ndim - 1], rows = x->numel / cols;
    /* dweight reads dy, so with dx written over dy it goes first, from a
     * statistics-only pass; otherwise one row pass writes both. */
    bool dx_first = dx && dx->mem != dy->mem;
    const clattn__kernel_spec *spec = &RMS_BWD_ROWS[weight != NULL];
    cl_kernel k;
    cl_mem stats = NULL;
    st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK && dweight)
        st = clattn__zeroed_buffer(ctx, rows * sizeof(float), "rms norm row statistics", &stats);
    if (st != CLATTN_OK)
        return st;
    cl_uint c = (cl_uint)cols;
    /* Absent buffers get x: never accessed (behind the kernel's flags, or
     * no weight in the kernel without one). Arguments 5 and 6 are the
     * per-pass flags. */
    cl_mem w = weight ? weight->mem : x->mem, d = dx ? dx->mem : x->mem;
    cl_mem sm = stats ? stats : x->mem;
    st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(x->mem), CLATTN_KARG(w),
                         CLATTN_KARG(dy->mem), CLATTN_KARG(d), CLATTN_KARG(sm));
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS_FROM(ctx, k, 7, spec->name, CLATTN_KARG(c), CLATTN_KARG(eps));
    cl_int write_dx = dx_first, write_stats = stats != NULL;
    if (st == CLATTN_OK && (write_dx || write_stats)) {
        st = CLATTN_SET_ARGS_FROM(ctx, k, 5, spec->name, CLATTN_KARG(write_dx),
                                  CLATTN_KARG(write_stats));
        if (st == CLATTN_OK)
            st = clattn__run_rows(ctx, k, 9, rows, cols, spec->name);
    }
    if (st == CLATTN_OK && dweight) {
        const clattn__kernel_spec *wspec = &RMS_DWEIGHT[accumulate];
        cl_kernel kw;
        st = clattn__kernel(ctx, wspec, &kw);
        if (st == CLATTN_OK)
            st = CLATTN_SET_ARGS(ctx, kw, wspec->name, CLATTN_KARG(x->mem), CLATTN_KARG(dy->mem),
                                 CLATTN_KARG(stats));
        if (st == CLATTN_OK)
            st = clattn__col_reduce(ctx, kw, 3, wspec->name, rows, cols, dweight->mem);
    }
    /* dx over dy last, once nothing else needs dy. */
    if (st == CLATTN_OK && dx && !dx_first) {
        write_dx = 1;
        write_stats = 0;
        st = CLATTN_SET_ARGS_FROM(ctx, k, 5, spec->name, CLATTN_KARG(write_dx),
                                  CLATTN_KARG(write_stats));
        if (st == CLATTN_OK)
            st = clattn__run_rows(ctx, k, 9, rows, cols, spec->name);
    }
    /* OpenCL keeps a released buffer until the enqueued kernels are done. */
    if (stats)
        clReleaseMemObject(stats);
    return st;
}

/* ======================================================================== */
/* Rotary embeddings                                                         */
/* ======================================================================== */

clattn_status clattn__rope_params_check(clattn_ctx *ctx, const char *fn,
                                       const clattn_rope_params *p)
{
    if (!isfinite(p->theta) || !(p->theta > 0))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: p->theta = %g must be finite and > 0",
                            fn, p->theta);
    if (p->type < CLATTN_ROPE_DEFAULT || p->type > CLATTN_ROPE_LLAMA3)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown p->type %d", fn,
                            (int)p->type);
    if (p->type != CLATTN_ROPE_DEFAULT && (!isfinite(p->factor) || !(p->factor > 0)))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: p->factor = %g must be finite and > 0", fn, p->factor);
    if (p->type == CLATTN_ROPE_LLAMA3) {
        if (!isfinite(p->low_freq_factor) || !(p->low_freq_factor > 0) ||
            !isfinite(p->high_freq_factor) || !(p->high_freq_factor > p->low_freq_factor))
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: p->low_freq_factor = %g and p->high_freq_factor = %g must "
                                "be finite with 0 < low < high",
                                fn, p->low_freq_factor, p->high_freq_factor);
        if (p->original_max_position <= 0)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: p->original_max_position = %d must be > 0", fn,
                                (int)p->original_max_position);
    }
    return CLATTN_OK;
}

/* A device buffer holding a copy of data[0 .. bytes), made when it is
 * created (CL_MEM_COPY_HOST_PTR: no queue command). */
static clattn_status copied_buffer(clattn_ctx *ctx, size_t bytes, const void *data,
                                   const char *what, cl_mem *out)
{
    clattn_status st = clattn__alloc_check(ctx, bytes, what);
    if (st != CLATTN_OK)
        return st;
    cl_int err;
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes,
                          (void *)data, &err);
    if (!*out)
        return clattn__fail(ctx, clattn__status_from_cl(err),
                            "allocating %zu bytes for %s failed: %s (%d)", bytes, what,
                            clattn__cl_error_name(err), (int)err);
    return CLATTN_OK;
}

/* clattn_rotary (sgn 1) and its backward (sgn -1): x to y. */
static clattn_status rotary_run(clattn_ctx *ctx, const char *fn, const char *xn, const char *yn,
                                const clattn_tensor *x, const int64_t *positions,
                                const clattn_rope_params *p, clattn_tensor *y, float sgn)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn__targ args[2] = {{xn, x, false}, {yn, y, false}};
    clattn_status st = clattn__check_tensors(ctx, fn, args, 2);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, yn, y, xn, x);
    if (st != CLATTN_OK)
        return st;
    char sx[96];
    clattn__shape_or_null(x, sx, sizeof sx);
    int32_t nd = x->ndim;
    if (nd != 3 && nd != 4)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must be [B, N, H, D] or [N, H, D]",
                            fn, xn, sx);
    int64_t d = x->shape[nd - 1], h = x->shape[nd - 2];
    size_t tokens = x->numel / (size_t)(d * h), n = (size_t)x->shape[nd - 3];
    if (d < 2 || d % 2 || d > INT32_MAX || h > INT32_MAX || tokens > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: %s %s: D must be even and >= 2 (and H, D, B * N below 2^31)",
                            fn, xn, sx);
    clattn_rope_params dp = clattn_rope_params_default();
    if (!p)
        p = &dp;
    st = clattn__rope_params_check(ctx, fn, p);
    if (st != CLATTN_OK)
        return st;
    for (size_t t = 0; positions && t < tokens; t++)
        if (positions[t] < 0 || positions[t] >= ROPE_MAX_POSITION)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: positions[%zu] = %lld is outside 0 .. 2^24 - 1 (%s %s)", fn,
                                t, (long long)positions[t], xn, sx);

    size_t half = (size_t)d / 2;
    float *freq = malloc(half * sizeof *freq);
    cl_int *pos = malloc(tokens * sizeof *pos);
    if (!freq || !pos) {
        free(freq);
        free(pos);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    clattn__rope_inv_freq(p, (int32_t)d, freq);
    for (size_t t = 0; t < tokens; t++)
        pos[t] = (cl_int)(positions ? positions[t] : (int64_t)(t % n));
    /* Fresh buffers made from the host arrays at creation (no queue
     * command to wait for), released once enqueued: OpenCL keeps them
     * until the kernel is done. */
    cl_mem dfreq = NULL, dpos = NULL;
    st = copied_buffer(ctx, half * sizeof(float), freq, "rotary inv_freq", &dfreq);
    if (st == CLATTN_OK)
        st = copied_buffer(ctx, tokens * sizeof(cl_int), pos, "rotary positions", &dpos);
    free(freq);
    free(pos);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &ROTARY, &k);
    cl_int hi = (cl_int)h, di = (cl_int)d;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "rotary", CLATTN_KARG(x->mem), CLATTN_KARG(y->mem),
                             CLATTN_KARG(dpos), CLATTN_KARG(dfreq), CLATTN_KARG(hi),
                             CLATTN_KARG(di), CLATTN_KARG(sgn));
    size_t global[3] = {half, (size_t)h, tokens};
    if (st == CLATTN_OK)
        st = clattn__enqueue(ctx, k, 3, global, NULL, "rotary");
    if (dfreq)
        clReleaseMemObject(dfreq);
    if (dpos)
        clReleaseMemObject(dpos);
    return st;
}

clattn_status clattn_rotary(clattn_ctx *ctx, const clattn_tensor *x, const int64_t *positions,
                            const clattn_rope_params *p, clattn_tensor *y)
{
    return rotary_run(ctx, "rotary", "x", "y", x, positions, p, y, 1.0f);
}

clattn_status clattn_rotary_backward(clattn_ctx *ctx, const clattn_tensor *dy,
                                     const int64_t *positions, const clattn_rope_params *p,
                                     clattn_tensor *dx)
{
    return rotary_run(ctx, "rotary_backward", "dy", "dx", dy, positions, p, dx, -1.0f);
}

/* ======================================================================== */
/* SwiGLU                                                                    */
/* ======================================================================== */

clattn_status clattn_swiglu(clattn_ctx *ctx, const clattn_tensor *gate, const clattn_tensor *up,
                            clattn_tensor *out)
{
    static const char fn[] = "swiglu";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(gate), CLATTN_TENSOR(up),
                                            CLATTN_TENSOR(out));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "up", up, "gate", gate);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "out", out, "gate", gate);
    cl_kernel k;
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &SWIGLU_FWD, &k);
    cl_ulong n = gate->numel;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "swiglu_fwd", CLATTN_KARG(gate->mem), CLATTN_KARG(up->mem),
                             CLATTN_KARG(out->mem), CLATTN_KARG(n));
    size_t global = gate->numel, local = 64;
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 1, &global, &local, "swiglu_fwd") : st;
}

clattn_status clattn_swiglu_backward(clattn_ctx *ctx, const clattn_tensor *gate,
                                     const clattn_tensor *up, const clattn_tensor *dout,
                                     clattn_tensor *dgate, clattn_tensor *dup)
{
    static const char fn[] = "swiglu_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(gate), CLATTN_TENSOR(up),
                                            CLATTN_TENSOR(dout), CLATTN_TENSOR_OPT(dgate),
                                            CLATTN_TENSOR_OPT(dup));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "up", up, "gate", gate);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dout", dout, "gate", gate);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dgate", dgate, "gate", gate);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dup", dup, "gate", gate);
    if (st != CLATTN_OK)
        return st;
    if (same_mem(dgate, gate) || same_mem(dgate, up) || same_mem(dup, gate) ||
        same_mem(dup, up))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dgate and dup must not alias gate or up (one may be dout)", fn);
    if (same_mem(dgate, dup))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dgate and dup must not alias", fn);
    if (!dgate && !dup)
        return CLATTN_OK;
    cl_kernel k;
    st = clattn__kernel(ctx, &SWIGLU_BWD, &k);
    cl_int has_dg = dgate != NULL, has_du = dup != NULL;
    /* An absent gradient's argument is the other one: never written. */
    cl_mem dg = dgate ? dgate->mem : dup->mem, du = dup ? dup->mem : dgate->mem;
    cl_ulong n = gate->numel;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "swiglu_bwd", CLATTN_KARG(gate->mem), CLATTN_KARG(up->mem),
                             CLATTN_KARG(dout->mem), CLATTN_KARG(dg), CLATTN_KARG(du),
                             CLATTN_KARG(has_dg), CLATTN_KARG(has_du), CLATTN_KARG(n));
    size_t global = gate->numel, local = 64;
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 1, &global, &local, "swiglu_bwd") : st;
}
