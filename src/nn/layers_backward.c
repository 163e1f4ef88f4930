/* layers_backward.c - gradients of the layer ops (header section
 * "Training: backward passes"): linear, activations, layer norm and
 * softmax. The embedding gradient and the sequence mean are in
 * layers_backward_gather.c, dropout in dropout.c. Kernels:
 * cl/nn/layers_backward.cl.
 *
 * Every sum is deterministic: GEMMs on CLBlast (a fixed reduction order per
 * device and shape), column sums as a work-group tree of fixed shape, row
 * sums one work-group per row; no float atomics. */
#include "nn/nn.h"
#include "nn/layers_backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const clattn__program_spec clattn__layers_backward_program = {{"core/reduce.cl", "nn/layers_backward.cl", NULL}, NULL};

/* ---- helpers --------------------------------------------------------------- */

/* The kernels of cl/nn/layers_backward.cl launched here. */
#define BWD_KERNEL(name) {&clattn__layers_backward_program, name}
static const clattn__kernel_spec COL_SUM = BWD_KERNEL("col_sum");
static const clattn__kernel_spec COL_SUM_ACC = BWD_KERNEL("col_sum_acc");
static const clattn__kernel_spec LN_BWD_ROWS = BWD_KERNEL("layer_norm_bwd_rows");
static const clattn__kernel_spec LN_BWD_ROWS_GAMMA = BWD_KERNEL("layer_norm_bwd_rows_gamma");
static const clattn__kernel_spec LN_DGAMMA = BWD_KERNEL("ln_dgamma");
static const clattn__kernel_spec LN_DGAMMA_ACC = BWD_KERNEL("ln_dgamma_acc");
static const clattn__kernel_spec SOFTMAX_BWD_ROWS = BWD_KERNEL("softmax_bwd_rows");
/* Indexed by clattn_activation; NONE is a copy, not a kernel. */
static const clattn__kernel_spec ACT_BWD[] = {
    [CLATTN_ACT_RELU] = BWD_KERNEL("act_bwd_relu"),
    [CLATTN_ACT_GELU] = BWD_KERNEL("act_bwd_gelu"),
    [CLATTN_ACT_GELU_TANH] = BWD_KERNEL("act_bwd_gelu_tanh"),
    [CLATTN_ACT_SILU] = BWD_KERNEL("act_bwd_silu"),
};
#undef BWD_KERNEL

/* true when both are given and share a device buffer (views included). */
static bool same_mem(const clattn_tensor *a, const clattn_tensor *b)
{
    return a && b && a->mem == b->mem;
}

const char *clattn__shape_or_null(const clattn_tensor *t, char *buf, size_t size)
{
    return t ? clattn__shape_str(t->shape, t->ndim, buf, size) : "NULL";
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
                        arg, clattn__shape_or_null(t, st, sizeof st), like_arg, clattn__shape_or_null(like, sl, sizeof sl));
}

/* Fails unless t is NULL or is [e] (a per-feature vector of x [..., E]). */
static clattn_status check_vec(clattn_ctx *ctx, const char *fn, const char *arg,
                               const clattn_tensor *t, const clattn_tensor *x)
{
    if (!t || (t->ndim == 1 && t->shape[0] == x->shape[x->ndim - 1]))
        return CLATTN_OK;
    char st[96], sx[96];
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s must be [E] for x %s [..., E]",
                        fn, arg, clattn__shape_or_null(t, st, sizeof st), clattn__shape_or_null(x, sx, sizeof sx));
}

/* Fails when the last extent of t does not fit the kernels' uint. */
static clattn_status check_cols(clattn_ctx *ctx, const char *fn, const char *arg,
                                const clattn_tensor *t)
{
    if ((uint64_t)t->shape[t->ndim - 1] <= UINT32_MAX)
        return CLATTN_OK;
    char s[96];
    return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s: last dimension over 2^32 - 1",
                        fn, arg, clattn__shape_or_null(t, s, sizeof s));
}

/* Releases a temporary buffer. OpenCL keeps a released buffer alive until
 * the commands already enqueued on it have finished, so a call may release
 * its temporaries right after enqueueing the kernels that use them. */
static void release_mem(cl_mem m)
{
    if (m)
        clReleaseMemObject(m);
}

/* A device buffer of bytes holding zeros, copied from the host when it is
 * created (no queue command). Used for the one temporary a kernel writes
 * and another reads (layer norm's row statistics): every entry is written
 * before it is read, but Oclgrind (21.10) tracks the contents of a buffer
 * that reuses an earlier buffer's number correctly only after a host
 * store of the whole buffer, and flags the reads otherwise. 12 bytes per
 * row. */
clattn_status clattn__zeroed_buffer(clattn_ctx *ctx, size_t bytes, const char *what, cl_mem *out)
{
    clattn_status st = clattn__alloc_check(ctx, bytes, what);
    if (st != CLATTN_OK)
        return st;
    void *zeros = calloc(bytes ? bytes : 1, 1);
    if (!zeros)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory (%s)", what);
    cl_int err;
    *out = clCreateBuffer(ctx->cl_ctx, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                          bytes ? bytes : 1, zeros, &err);
    free(zeros); /* COPY_HOST_PTR copies during clCreateBuffer */
    if (!*out)
        return clattn__fail(ctx, clattn__status_from_cl(err),
                            "allocating %zu bytes for %s failed: %s (%d)", bytes, what,
                            clattn__cl_error_name(err), (int)err);
    return CLATTN_OK;
}

/* Row kernels run through rows.c's clattn__run_rows, so the
 * recomputed layer-norm statistics use the forward's work-group width and
 * reduction tree (and so its rounding). */

/* ---- deterministic column sums -------------------------------------------- */

/* Work-group shape of the column-sum kernels (cl/nn/layers_backward.cl): tc
 * columns by tr row lanes. 32 columns keep reads coalesced on GPUs; more
 * row lanes add parallelism for tall matrices (and are what a narrow
 * matrix, e.g. one column, gets instead of columns). */
#define COL_TC_MAX 32
#define COL_TR_MAX 64

/* The smallest power of two >= n, at most cap (a power of two). */
static size_t pow2_at_least(size_t n, size_t cap)
{
    size_t p = 1;
    while (p < n && p < cap)
        p *= 2;
    return p;
}

/* out[c] (+)= sum over the rows of the values of column-sum kernel k,
 * whose leading arguments (the inputs) are set; from argument first on
 * follow rows, cols, out and the __local scratch. The shape depends on
 * rows, cols and the device only: the same call always sums in the same
 * order. */
clattn_status clattn__col_reduce(clattn_ctx *ctx, cl_kernel k, cl_uint first, const char *kname,
                                size_t rows, size_t cols, cl_mem out)
{
    clattn__group_limits lim;
    clattn_status st = clattn__group_limits_get(ctx, k, "a column sum", &lim);
    if (st != CLATTN_OK)
        return st;
    size_t limit = lim.group_max;
    size_t tc = pow2_at_least(cols, COL_TC_MAX), tr = pow2_at_least(rows, COL_TR_MAX);
    /* On a CPU each work-item sums its column down the rows, with no
     * barriers, and 16 columns per group give every core groups to run
     * (one 32 x 64 group was one core's work for a whole bias gradient).
     * Row lanes come back only past CLATTN_CPU_ITEM_SPAN rows per
     * work-item, to bound a serial float sum's rounding error. */
    if (ctx->info.type == CLATTN_DEVICE_CPU) {
        tc = pow2_at_least(cols, 16);
        tr = 1;
        while (tr * CLATTN_CPU_ITEM_SPAN < rows && tr < COL_TR_MAX)
            tr *= 2;
    }
    while (tc > 1 && (tc > limit || (lim.item_max[0] && tc > lim.item_max[0])))
        tc /= 2;
    while (tr > 1 && (tc * tr > limit || (lim.item_max[1] && tr > lim.item_max[1]) ||
                      lim.kernel_local + tc * tr * sizeof(float) > ctx->info.local_mem_bytes))
        tr /= 2;
    cl_ulong r = rows;
    cl_uint c = (cl_uint)cols;
    st = CLATTN_SET_ARGS_FROM(ctx, k, first, kname, CLATTN_KARG(r), CLATTN_KARG(c),
                              CLATTN_KARG(out), CLATTN_KLOCAL(tc * tr * sizeof(float)));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {cols, tr}, local[2] = {tc, tr};
    return clattn__enqueue(ctx, k, 2, global, local, kname);
}

/* out[c] (+)= sum over r of src[r, c], src a [rows, cols] buffer. */
static clattn_status col_sum(clattn_ctx *ctx, cl_mem src, size_t rows, size_t cols, cl_mem out,
                             bool accumulate)
{
    const clattn__kernel_spec *spec = accumulate ? &COL_SUM_ACC : &COL_SUM;
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(src));
    if (st != CLATTN_OK)
        return st;
    return clattn__col_reduce(ctx, k, 1, spec->name, rows, cols, out);
}

/* ---- linear ------------------------------------------------------------------ */

clattn_status clattn_linear_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                     const clattn_tensor *w, const clattn_tensor *dy,
                                     clattn_tensor *dx, clattn_tensor *dw, clattn_tensor *db,
                                     bool accumulate)
{
    static const char fn[] = "linear_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st =
        CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR(w), CLATTN_TENSOR(dy),
                             CLATTN_TENSOR_OPT(dx), CLATTN_TENSOR_OPT(dw), CLATTN_TENSOR_OPT(db));
    if (st != CLATTN_OK)
        return st;
    char sx[96], sw[96], sdy[96], sdx[96], sdw[96], sdb[96];
    clattn__shape_or_null(x, sx, sizeof sx);
    clattn__shape_or_null(w, sw, sizeof sw);
    clattn__shape_or_null(dy, sdy, sizeof sdy);
    int32_t nd = x->ndim;
    bool ok = nd >= 2 && w->ndim == 2 && dy->ndim == nd && w->shape[1] == x->shape[nd - 1] &&
              dy->shape[nd - 1] == w->shape[0];
    for (int32_t i = 0; ok && i < nd - 1; i++)
        ok = dy->shape[i] == x->shape[i];
    ok = ok && (!dx || clattn__same_shape(dx, x)) && (!dw || clattn__same_shape(dw, w)) &&
         (!db || (db->ndim == 1 && db->shape[0] == w->shape[0]));
    if (!ok)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: shapes do not fit: x %s [..., in] (2 to 4 dims), w %s [out, in], "
                            "dy %s [..., out], dx %s (x's shape or NULL), dw %s (w's shape or "
                            "NULL), db %s ([out] or NULL)",
                            fn, sx, sw, sdy, clattn__shape_or_null(dx, sdx, sizeof sdx),
                            clattn__shape_or_null(dw, sdw, sizeof sdw), clattn__shape_or_null(db, sdb, sizeof sdb));
    /* Outputs are written while the inputs are still read (GEMM tiles, the
     * column sums), and into one another never: no sharing at all. */
    if (same_mem(dx, x) || same_mem(dx, w) || same_mem(dx, dy))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dx must not alias x, w or dy", fn);
    if (same_mem(dw, x) || same_mem(dw, w) || same_mem(dw, dy) || same_mem(dw, dx))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dw must not alias x, w, dy or dx", fn);
    if (same_mem(db, x) || same_mem(db, w) || same_mem(db, dy) || same_mem(db, dx) ||
        same_mem(db, dw))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: db must not alias x, w, dy, dx or dw", fn);
    size_t in = (size_t)w->shape[1], out = (size_t)w->shape[0], rows = x->numel / in;
    if (out > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: w %s: out over 2^32 - 1", fn, sw);
    /* dx[rows, in] = dy[rows, out] W[out, in]. */
    if (dx)
        st = clattn__gemm(ctx, false, false, rows, in, out, 1.0f, dy->mem, 0, out, w->mem, 0, in,
                          0.0f, dx->mem, 0, in);
    /* dw[out, in] (+)= dy^T x: dy stored [rows, out], so A is transposed
     * with leading dimension out. beta 1 adds to the existing gradient. */
    if (st == CLATTN_OK && dw)
        st = clattn__gemm(ctx, true, false, out, in, rows, 1.0f, dy->mem, 0, out, x->mem, 0, in,
                          accumulate ? 1.0f : 0.0f, dw->mem, 0, in);
    if (st == CLATTN_OK && db)
        st = col_sum(ctx, dy->mem, rows, out, db->mem, accumulate);
    return st;
}

/* ---- activations ------------------------------------------------------------- */

static bool act_valid(clattn_activation act)
{
    return act >= CLATTN_ACT_NONE && act <= CLATTN_ACT_SILU;
}

clattn_status clattn_activation_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                         clattn_activation act, const clattn_tensor *dy,
                                         clattn_tensor *dx)
{
    static const char fn[] = "activation_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR(dy),
                                            CLATTN_TENSOR_OPT(dx));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dy", dy, "x", x);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dx", dx, "x", x);
    if (st != CLATTN_OK)
        return st;
    if (!act_valid(act))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: unknown activation %d", fn,
                            (int)act);
    if (same_mem(dx, x))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dx must not alias x (it may be dy)", fn);
    if (!dx || (act == CLATTN_ACT_NONE && dx->mem == dy->mem))
        return CLATTN_OK;
    if (act == CLATTN_ACT_NONE) {
        cl_int err = clEnqueueCopyBuffer(ctx->queue, dy->mem, dx->mem, 0, 0,
                                         dy->numel * sizeof(float), 0, NULL, NULL);
        return err == CL_SUCCESS ? CLATTN_OK
                                 : clattn__fail_cl(ctx, err, "clEnqueueCopyBuffer(dy to dx)");
    }
    const clattn__kernel_spec *spec = &ACT_BWD[act];
    cl_kernel k;
    cl_ulong n = x->numel;
    st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(x->mem), CLATTN_KARG(dy->mem),
                             CLATTN_KARG(dx->mem), CLATTN_KARG(n));
    if (st != CLATTN_OK)
        return st;
    size_t global = x->numel, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, spec->name);
}

/* ---- layer norm -------------------------------------------------------------- */

clattn_status clattn_layer_norm_backward(clattn_ctx *ctx, const clattn_tensor *x,
                                         const clattn_tensor *gamma, float eps,
                                         const clattn_tensor *dy, clattn_tensor *dx,
                                         clattn_tensor *dgamma, clattn_tensor *dbeta,
                                         bool accumulate)
{
    static const char fn[] = "layer_norm_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(
        ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR(dy), CLATTN_TENSOR_OPT(gamma),
        CLATTN_TENSOR_OPT(dx), CLATTN_TENSOR_OPT(dgamma), CLATTN_TENSOR_OPT(dbeta));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dy", dy, "x", x);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dx", dx, "x", x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "gamma", gamma, x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "dgamma", dgamma, x);
    if (st == CLATTN_OK)
        st = check_vec(ctx, fn, "dbeta", dbeta, x);
    if (st == CLATTN_OK)
        st = check_cols(ctx, fn, "x", x);
    if (st != CLATTN_OK)
        return st;
    if (dgamma && !gamma)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dgamma needs gamma (without gamma there is no scale)", fn);
    if (!isfinite(eps) || eps < 0.0f)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: eps = %g must be finite and >= 0",
                            fn, (double)eps);
    if (same_mem(dx, x) || same_mem(dx, gamma))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dx must not alias x or gamma (it may be dy)", fn);
    if (same_mem(dgamma, x) || same_mem(dgamma, gamma) || same_mem(dgamma, dy) ||
        same_mem(dgamma, dx) || same_mem(dgamma, dbeta))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dgamma must not alias x, gamma, dy, dx or dbeta", fn);
    if (same_mem(dbeta, x) || same_mem(dbeta, gamma) || same_mem(dbeta, dy) ||
        same_mem(dbeta, dx))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dbeta must not alias x, gamma, dy or dx", fn);

    size_t cols = (size_t)x->shape[x->ndim - 1], rows = x->numel / cols;
    /* The parameter gradients read dy, so with dx written over dy they go
     * first, from a statistics-only pass; otherwise one row pass writes dx
     * and the statistics together. */
    bool dx_first = dx && dx->mem != dy->mem;
    cl_mem stats = NULL;
    cl_kernel k;
    const clattn__kernel_spec *spec = gamma ? &LN_BWD_ROWS_GAMMA : &LN_BWD_ROWS;
    const char *kname = spec->name;
    st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK && dgamma)
        st = clattn__zeroed_buffer(ctx, rows * 3 * sizeof(float), "layer norm row statistics", &stats);
    if (st != CLATTN_OK)
        return st;
    cl_uint c = (cl_uint)cols;
    cl_int write_stats = stats != NULL;
    /* Unused buffer arguments get x: never accessed (no gamma in the
     * kernel without it; dx and stats behind their flags). Arguments 5
     * and 6 are the per-pass flags, set before each pass. */
    cl_mem g = gamma ? gamma->mem : x->mem, d = dx ? dx->mem : x->mem;
    cl_mem sm = stats ? stats : x->mem;
    st = CLATTN_SET_ARGS(ctx, k, kname, CLATTN_KARG(x->mem), CLATTN_KARG(g),
                         CLATTN_KARG(dy->mem), CLATTN_KARG(d), CLATTN_KARG(sm));
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS_FROM(ctx, k, 7, kname, CLATTN_KARG(c), CLATTN_KARG(eps));

    /* First row pass: dx (unless it must wait) and the statistics. */
    cl_int write_dx = dx_first;
    if (st == CLATTN_OK && (write_dx || write_stats)) {
        st = CLATTN_SET_ARGS_FROM(ctx, k, 5, kname, CLATTN_KARG(write_dx),
                                  CLATTN_KARG(write_stats));
        if (st == CLATTN_OK)
            st = clattn__run_rows(ctx, k, 9, rows, cols, kname);
    }
    if (st == CLATTN_OK && dgamma) {
        const clattn__kernel_spec *gspec = accumulate ? &LN_DGAMMA_ACC : &LN_DGAMMA;
        cl_kernel kg;
        st = clattn__kernel(ctx, gspec, &kg);
        if (st == CLATTN_OK)
            st = CLATTN_SET_ARGS(ctx, kg, gspec->name, CLATTN_KARG(x->mem),
                                 CLATTN_KARG(dy->mem), CLATTN_KARG(stats));
        if (st == CLATTN_OK)
            st = clattn__col_reduce(ctx, kg, 3, gspec->name, rows, cols, dgamma->mem);
    }
    if (st == CLATTN_OK && dbeta)
        st = col_sum(ctx, dy->mem, rows, cols, dbeta->mem, accumulate);
    /* dx over dy last, once nothing else needs dy. */
    if (st == CLATTN_OK && dx && !dx_first) {
        write_dx = 1;
        write_stats = 0;
        st = CLATTN_SET_ARGS_FROM(ctx, k, 5, kname, CLATTN_KARG(write_dx),
                                  CLATTN_KARG(write_stats));
        if (st == CLATTN_OK)
            st = clattn__run_rows(ctx, k, 9, rows, cols, kname);
    }
    release_mem(stats);
    return st;
}

/* ---- softmax ----------------------------------------------------------------- */

clattn_status clattn_softmax_backward(clattn_ctx *ctx, const clattn_tensor *y,
                                      const clattn_tensor *dy, clattn_tensor *dx)
{
    static const char fn[] = "softmax_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(y), CLATTN_TENSOR(dy),
                                            CLATTN_TENSOR_OPT(dx));
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dy", dy, "y", y);
    if (st == CLATTN_OK)
        st = check_like(ctx, fn, "dx", dx, "y", y);
    if (st == CLATTN_OK)
        st = check_cols(ctx, fn, "y", y);
    if (st != CLATTN_OK)
        return st;
    if (same_mem(dx, y))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dx must not alias y (it may be dy)", fn);
    if (!dx)
        return CLATTN_OK;
    cl_kernel k;
    size_t cols = (size_t)y->shape[y->ndim - 1];
    cl_uint c = (cl_uint)cols;
    st = clattn__kernel(ctx, &SOFTMAX_BWD_ROWS, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "softmax_bwd_rows", CLATTN_KARG(y->mem),
                             CLATTN_KARG(dy->mem), CLATTN_KARG(dx->mem), CLATTN_KARG(c));
    if (st != CLATTN_OK)
        return st;
    return clattn__run_rows(ctx, k, 4, y->numel / cols, cols, "softmax_bwd_rows");
}
