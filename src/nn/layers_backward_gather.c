/* layers_backward_gather.c - the ops that move whole rows: the embedding
 * gradient (rows of dy scattered, summed, into the table's rows) and the
 * sequence mean with its gradient (rows pooled, and broadcast back).
 * Kernels: cl/nn/layers_backward.cl. */
#include "nn/nn.h"
#include "nn/layers_backward.h"

#include <stdlib.h>

/* The kernels of cl/nn/layers_backward.cl launched here. */
static const clattn__kernel_spec EMBEDDING_BWD_ROWS = {&clattn__layers_backward_program,
                                                       "embedding_bwd_rows"};
static const clattn__kernel_spec SEQ_MEAN_FWD = {&clattn__layers_backward_program,
                                                 "sequence_mean_fwd"};
static const clattn__kernel_spec SEQ_MEAN_BWD = {&clattn__layers_backward_program,
                                                 "sequence_mean_bwd"};

/* ---- embedding --------------------------------------------------------------- */

/* The positions of each used vocabulary row, as the CSR list that
 * embedding_bwd_rows reads (layout in cl/nn/layers_backward.cl): a stable
 * counting sort of 0..count-1 by id, so each row's positions ascend and
 * the device sums them in that order. *csr is malloc'd, *used its rows. */
static clattn_status build_csr(clattn_ctx *ctx, const int64_t *ids, size_t count, size_t v,
                               cl_long **csr, size_t *used)
{
    size_t *start = calloc(v + 1, sizeof *start);
    if (!start)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                            "embedding_backward: out of host memory (%zu rows)", v);
    for (size_t i = 0; i < count; i++)
        start[(size_t)ids[i] + 1]++;
    size_t u = 0;
    for (size_t r = 0; r < v; r++) {
        u += start[r + 1] != 0;
        start[r + 1] += start[r]; /* start[r] = first slot of row r */
    }
    cl_long *out = malloc((2 * u + 1 + count) * sizeof *out);
    if (!out) {
        free(start);
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY,
                            "embedding_backward: out of host memory (%zu ids)", count);
    }
    cl_long *rows = out, *offs = out + u, *pos = out + 2 * u + 1;
    size_t j = 0;
    for (size_t r = 0; r < v; r++) {
        if (start[r + 1] != start[r]) {
            rows[j] = (cl_long)r;
            offs[j] = (cl_long)start[r];
            j++;
        }
    }
    offs[u] = (cl_long)count;
    for (size_t i = 0; i < count; i++) /* ascending i: a stable sort */
        pos[start[(size_t)ids[i]]++] = (cl_long)i;
    free(start);
    *csr = out;
    *used = u;
    return CLATTN_OK;
}

clattn_status clattn_embedding_backward(clattn_ctx *ctx, const int64_t *ids, size_t count,
                                        const clattn_tensor *dy, clattn_tensor *dtable,
                                        bool accumulate)
{
    static const char fn[] = "embedding_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st =
        CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(dy), CLATTN_TENSOR_OPT(dtable));
    if (st != CLATTN_OK)
        return st;
    if (!ids || count == 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: ids must not be NULL and count must be >= 1", fn);
    if (!dtable)
        return CLATTN_OK;
    char st_[96], sdy[96];
    clattn__shape_or_null(dtable, st_, sizeof st_);
    clattn__shape_or_null(dy, sdy, sizeof sdy);
    if (dtable->ndim != 2)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dtable %s must be [V, E]", fn, st_);
    size_t v = (size_t)dtable->shape[0], e = (size_t)dtable->shape[1];
    if (count > SIZE_MAX / e || dy->numel != count * e)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dy %s must hold count * E = %zu * %zu elements (dtable %s)", fn,
                            sdy, count, e, st_);
    if (dy->mem == dtable->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dtable must not alias dy", fn);
    if (e > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: dtable %s: E over 2^32 - 1", fn,
                            st_);
    /* All ids first, as clattn_embedding: a bad one leaves dtable as it was. */
    for (size_t i = 0; i < count; i++)
        if (ids[i] < 0 || (uint64_t)ids[i] >= v)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: ids[%zu] = %lld is outside 0 .. %lld (dtable %s)", fn, i,
                                (long long)ids[i], (long long)v - 1, st_);
    cl_long *csr = NULL;
    size_t used = 0;
    cl_kernel k;
    st = clattn__kernel(ctx, &EMBEDDING_BWD_ROWS, &k);
    if (st == CLATTN_OK)
        st = build_csr(ctx, ids, count, v, &csr, &used);
    if (st != CLATTN_OK)
        return st;
    size_t bytes = (2 * used + 1 + count) * sizeof *csr;
    cl_mem dev = NULL;
    st = clattn__buffer_create(ctx, bytes, "embedding_backward position list", &dev);
    cl_int err = CL_SUCCESS;
    /* Blocking: csr is freed right after. */
    if (st == CLATTN_OK &&
        (err = clEnqueueWriteBuffer(ctx->queue, dev, CL_TRUE, 0, bytes, csr, 0, NULL, NULL)) !=
            CL_SUCCESS)
        st = clattn__fail_cl(ctx, err, "clEnqueueWriteBuffer(embedding_backward positions)");
    free(csr);
    /* Rows no id uses are zero unless accumulating: clear the table first
     * (the in-order queue runs the scatter after it). */
    if (st == CLATTN_OK && !accumulate)
        st = clattn_tensor_fill(dtable, 0.0f);
    if (st == CLATTN_OK) {
        cl_ulong u = used;
        cl_uint c = (cl_uint)e;
        cl_int acc = accumulate;
        size_t global[2] = {e, used};
        st = CLATTN_SET_ARGS(ctx, k, "embedding_bwd_rows", CLATTN_KARG(dy->mem),
                             CLATTN_KARG(dtable->mem), CLATTN_KARG(dev), CLATTN_KARG(u),
                             CLATTN_KARG(c), CLATTN_KARG(acc));
        if (st == CLATTN_OK)
            st = clattn__enqueue(ctx, k, 2, global, NULL, "embedding_bwd_rows");
    }
    /* OpenCL keeps a released buffer until the enqueued kernel is done. */
    if (dev)
        clReleaseMemObject(dev);
    return st;
}

/* ---- sequence mean ----------------------------------------------------------- */

/* Checks x [B, N, E] and y [B, E] (x and y under the given names) and
 * that they do not share a buffer. */
static clattn_status check_seq(clattn_ctx *ctx, const char *fn, const char *xname,
                               const clattn_tensor *x, const char *yname, const clattn_tensor *y)
{
    char sx[96], sy[96];
    clattn__shape_or_null(x, sx, sizeof sx);
    clattn__shape_or_null(y, sy, sizeof sy);
    if (x->ndim != 3 || y->ndim != 2 || y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2])
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: shapes do not fit: %s %s must be [B, N, E] and %s %s [B, E]", fn,
                            xname, sx, yname, sy);
    if ((uint64_t)x->shape[1] > UINT32_MAX || (uint64_t)x->shape[2] > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s %s: N or E over 2^32 - 1", fn,
                            xname, sx);
    if (x->mem == y->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s must not alias %s", fn, yname,
                            xname);
    return CLATTN_OK;
}

/* Runs sequence_mean_fwd or _bwd: a is read, b written; grid (E, rows). */
static clattn_status run_seq(clattn_ctx *ctx, const clattn__kernel_spec *spec, cl_mem a,
                             cl_mem b, const clattn_tensor *x3, size_t grid_rows)
{
    cl_kernel k;
    cl_uint n = (cl_uint)x3->shape[1], c = (cl_uint)x3->shape[2];
    clattn_status st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(a), CLATTN_KARG(b), CLATTN_KARG(n),
                             CLATTN_KARG(c));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {(size_t)c, grid_rows};
    return clattn__enqueue(ctx, k, 2, global, NULL, spec->name);
}

clattn_status clattn_sequence_mean(clattn_ctx *ctx, const clattn_tensor *x, clattn_tensor *y)
{
    static const char fn[] = "sequence_mean";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(x), CLATTN_TENSOR(y));
    if (st == CLATTN_OK)
        st = check_seq(ctx, fn, "x", x, "y", y);
    if (st != CLATTN_OK)
        return st;
    return run_seq(ctx, &SEQ_MEAN_FWD, x->mem, y->mem, x, (size_t)x->shape[0]);
}

clattn_status clattn_sequence_mean_backward(clattn_ctx *ctx, const clattn_tensor *dy,
                                            clattn_tensor *dx)
{
    static const char fn[] = "sequence_mean_backward";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(dy), CLATTN_TENSOR_OPT(dx));
    if (st != CLATTN_OK)
        return st;
    if (!dx) {
        /* Nothing to compute, but a dy that cannot be [B, E] is still wrong. */
        char sdy[96];
        return dy->ndim == 2 ? CLATTN_OK
                             : clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                            "%s: dy %s must be [B, E]", fn,
                                            clattn__shape_or_null(dy, sdy, sizeof sdy));
    }
    st = check_seq(ctx, fn, "dx", dx, "dy", dy);
    if (st != CLATTN_OK)
        return st;
    return run_seq(ctx, &SEQ_MEAN_BWD, dy->mem, dx->mem, dx,
                   (size_t)(dx->shape[0] * dx->shape[1]));
}
