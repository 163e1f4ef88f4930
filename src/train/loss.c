/* loss.c - training losses (mean squared error, cross-entropy and its
 * causal-LM form with shifted labels) and the deterministic two-stage
 * sums of cl/train/loss.cl they share with the optimisers' gradient
 * norms (see the top of cl/train/loss.cl). */
#include "train/train.h"

#include <stdlib.h>

const clattn__program_spec clattn__loss_program = {{"core/reduce.cl", "train/loss.cl", NULL}, NULL};

/* Upper bound on the reduction work-group size: wider groups only add
 * tree levels, and 256 fits every device we know. */
/* Stage-1 work-groups per tensor: enough to fill a device, few enough
 * that stage 2 (one work-group) stays short. Each work-item adds at
 * least PARTIAL_MIN_ITEMS elements before the tree takes over. */
#define PARTIAL_GROUPS_MAX 256
#define PARTIAL_MIN_ITEMS 16

/* ======================================================================== */
/* Reductions                                                                */
/* ======================================================================== */

/* The kernels of cl/train/loss.cl. */
static const clattn__kernel_spec SUM_PARTIALS = {&clattn__loss_program, "sum_partials"};
static const clattn__kernel_spec SUMSQ_PARTIAL = {&clattn__loss_program, "sumsq_partial"};
static const clattn__kernel_spec MSE_PARTIAL = {&clattn__loss_program, "mse_partial"};
static const clattn__kernel_spec CE_ROWS = {&clattn__loss_program, "ce_rows"};

/* Stage-1 work-groups for n elements at wg work-items each. */
static size_t partial_groups(size_t n, size_t wg)
{
    size_t g = (n + wg * PARTIAL_MIN_ITEMS - 1) / (wg * PARTIAL_MIN_ITEMS);
    return g < 1 ? 1 : g > PARTIAL_GROUPS_MAX ? PARTIAL_GROUPS_MAX : g;
}

/* Stage 2: buf[n] = sum(buf[0..n)) / divisor, one work-group. */
static clattn_status sum_partials(clattn_ctx *ctx, cl_mem buf, size_t n, float divisor)
{
    cl_kernel k;
    size_t wg;
    cl_ulong nn = n;
    clattn_status st = clattn__kernel(ctx, &SUM_PARTIALS, &k);
    if (st == CLATTN_OK)
        st = clattn__work_group_width(ctx, k, n, sizeof(cl_float), &wg);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "sum_partials", CLATTN_KARG(buf), CLATTN_KARG(nn),
                             CLATTN_KARG(divisor), CLATTN_KLOCAL(wg * sizeof(cl_float)));
    if (st != CLATTN_OK)
        return st;
    return clattn__enqueue(ctx, k, 1, &wg, &wg, "sum_partials");
}

/* Blocking read of the float buf[index]. */
static clattn_status read_float(clattn_ctx *ctx, cl_mem buf, size_t index, float *out)
{
    cl_int err = clEnqueueReadBuffer(ctx->queue, buf, CL_TRUE, index * sizeof(float),
                                     sizeof(float), out, 0, NULL, NULL);
    return err == CL_SUCCESS ? CLATTN_OK : clattn__fail_cl(ctx, err, "reading a loss or norm");
}

clattn_status clattn__grad_sumsq(clattn_ctx *ctx, int32_t count, const clattn_tensor *const *grads,
                                 clattn__buffer *scratch, float *sumsq)
{
    cl_kernel k;
    clattn__group_limits lim;
    clattn_status st = clattn__kernel(ctx, &SUMSQ_PARTIAL, &k);
    if (st == CLATTN_OK)
        st = clattn__group_limits_get(ctx, k, "the gradient norm", &lim);
    if (st != CLATTN_OK)
        return st;
    /* Partials of tensor i at [off_i, off_i + G_i); the total after them. */
    size_t total = 0;
    for (int32_t i = 0; i < count; i++) {
        if (!grads[i])
            continue;
        size_t wg = clattn__reduction_width(ctx, &lim, grads[i]->numel, sizeof(cl_float));
        total += partial_groups(grads[i]->numel, wg);
    }
    st = clattn__buffer_reserve(ctx, scratch, (total + 1) * sizeof(float),
                                "gradient norm partial sums");
    if (st != CLATTN_OK)
        return st;
    cl_ulong off = 0;
    for (int32_t i = 0; i < count; i++) {
        if (!grads[i])
            continue;
        size_t wg = clattn__reduction_width(ctx, &lim, grads[i]->numel, sizeof(cl_float));
        size_t groups = partial_groups(grads[i]->numel, wg), global = groups * wg;
        cl_ulong n = grads[i]->numel;
        st = CLATTN_SET_ARGS(ctx, k, "sumsq_partial", CLATTN_KARG(grads[i]->mem),
                             CLATTN_KARG(n), CLATTN_KARG(scratch->mem), CLATTN_KARG(off),
                             CLATTN_KLOCAL(wg * sizeof(cl_float)));
        if (st == CLATTN_OK)
            st = clattn__enqueue(ctx, k, 1, &global, &wg, "sumsq_partial");
        if (st != CLATTN_OK)
            return st;
        off += groups;
    }
    if (total == 0) {
        *sumsq = 0.0f;
        return CLATTN_OK;
    }
    st = sum_partials(ctx, scratch->mem, total, 1.0f);
    return st == CLATTN_OK ? read_float(ctx, scratch->mem, total, sumsq) : st;
}

/* ======================================================================== */
/* Mean squared error                                                        */
/* ======================================================================== */

clattn_status clattn_mse_loss(clattn_ctx *ctx, const clattn_tensor *pred,
                              const clattn_tensor *target, float *loss, clattn_tensor *dpred)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "mse_loss: ctx is NULL");
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, "mse_loss", CLATTN_TENSOR(pred),
                                            CLATTN_TENSOR(target), CLATTN_TENSOR_OPT(dpred));
    if (st != CLATTN_OK)
        return st;
    if (!clattn__same_shape(pred, target) || (dpred && !clattn__same_shape(pred, dpred))) {
        char sp[96], stg[96], sd[96] = "NULL";
        clattn__shape_str(pred->shape, pred->ndim, sp, sizeof sp);
        clattn__shape_str(target->shape, target->ndim, stg, sizeof stg);
        if (dpred)
            clattn__shape_str(dpred->shape, dpred->ndim, sd, sizeof sd);
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "mse_loss: pred %s, target %s and dpred %s must have the same shape",
                            sp, stg, sd);
    }
    if (!loss && !dpred)
        return CLATTN_OK;

    cl_kernel k;
    size_t wg;
    st = clattn__kernel(ctx, &MSE_PARTIAL, &k);
    if (st == CLATTN_OK)
        st = clattn__work_group_width(ctx, k, pred->numel, sizeof(cl_float), &wg);
    if (st != CLATTN_OK)
        return st;
    size_t groups = partial_groups(pred->numel, wg), global = groups * wg;
    cl_mem partials;
    st = clattn__buffer_create(ctx, (groups + 1) * sizeof(float), "mse_loss partial sums",
                               &partials);
    if (st != CLATTN_OK)
        return st;
    cl_int has_grad = dpred != NULL;
    cl_mem d = dpred ? dpred->mem : pred->mem; /* never written without has_grad */
    cl_ulong n = pred->numel;
    cl_float scale = (float)(2.0 / (double)pred->numel);
    st = CLATTN_SET_ARGS(ctx, k, "mse_partial", CLATTN_KARG(pred->mem), CLATTN_KARG(target->mem),
                         CLATTN_KARG(d), CLATTN_KARG(has_grad), CLATTN_KARG(n),
                         CLATTN_KARG(scale), CLATTN_KARG(partials),
                         CLATTN_KLOCAL(wg * sizeof(cl_float)));
    if (st == CLATTN_OK)
        st = clattn__enqueue(ctx, k, 1, &global, &wg, "mse_partial");
    float value = 0.0f;
    if (st == CLATTN_OK && loss)
        st = sum_partials(ctx, partials, groups, (float)pred->numel);
    if (st == CLATTN_OK && loss)
        st = read_float(ctx, partials, groups, &value);
    /* Released now, freed by OpenCL once the enqueued kernels are done. */
    clReleaseMemObject(partials);
    if (st == CLATTN_OK && loss)
        *loss = value;
    return st;
}

/* ======================================================================== */
/* Cross-entropy                                                             */
/* ======================================================================== */

/* The device part of both cross-entropy losses: rows = the leading dims
 * of logits, targets[rows] checked, valid of them not ignore_index. */
static clattn_status ce_run(clattn_ctx *ctx, const clattn_tensor *logits, const int64_t *targets,
                            int64_t ignore_index, size_t valid, float *loss,
                            clattn_tensor *dlogits)
{
    int64_t classes = logits->shape[logits->ndim - 1];
    size_t rows = logits->numel / (size_t)classes;
    clattn_status st;
    cl_kernel k;
    size_t wg;
    st = clattn__kernel(ctx, &CE_ROWS, &k);
    if (st == CLATTN_OK)
        st = clattn__work_group_width(ctx, k, (size_t)classes, sizeof(cl_float2), &wg);
    if (st != CLATTN_OK)
        return st;
    cl_mem dev_targets = NULL, rowloss = NULL;
    st = clattn__buffer_create(ctx, rows * sizeof(cl_long), "cross_entropy_loss targets",
                               &dev_targets);
    if (st == CLATTN_OK)
        st = clattn__buffer_create(ctx, (rows + 1) * sizeof(float),
                                   "cross_entropy_loss row losses", &rowloss);
    cl_int err = CL_SUCCESS;
    if (st == CLATTN_OK) {
        /* Blocking: the targets are the caller's, borrowed for the call. */
        err = clEnqueueWriteBuffer(ctx->queue, dev_targets, CL_TRUE, 0, rows * sizeof(cl_long),
                                   targets, 0, NULL, NULL);
        if (err != CL_SUCCESS)
            st = clattn__fail_cl(ctx, err, "clEnqueueWriteBuffer(cross_entropy_loss targets)");
    }
    if (st == CLATTN_OK) {
        cl_long ignore = ignore_index;
        cl_uint cols = (cl_uint)classes;
        cl_float nvalid = valid ? (float)valid : 1.0f; /* unused when every row is ignored */
        cl_int has_grad = dlogits != NULL;
        cl_mem d = dlogits ? dlogits->mem : rowloss; /* never written without has_grad */
        st = CLATTN_SET_ARGS(ctx, k, "ce_rows", CLATTN_KARG(logits->mem),
                             CLATTN_KARG(dev_targets), CLATTN_KARG(ignore), CLATTN_KARG(cols),
                             CLATTN_KARG(nvalid), CLATTN_KARG(has_grad), CLATTN_KARG(d),
                             CLATTN_KARG(rowloss), CLATTN_KLOCAL(wg * sizeof(cl_float2)));
    }
    if (st == CLATTN_OK) {
        size_t global = rows * wg;
        st = clattn__enqueue(ctx, k, 1, &global, &wg, "ce_rows");
    }
    float value = 0.0f;
    if (st == CLATTN_OK && loss && valid) {
        st = sum_partials(ctx, rowloss, rows, (float)valid);
        if (st == CLATTN_OK)
            st = read_float(ctx, rowloss, rows, &value);
    }
    /* Released now, freed by OpenCL once the enqueued kernels are done. */
    if (dev_targets)
        clReleaseMemObject(dev_targets);
    if (rowloss)
        clReleaseMemObject(rowloss);
    if (st == CLATTN_OK && loss)
        *loss = value;
    return st;
}

clattn_status clattn_cross_entropy_loss(clattn_ctx *ctx, const clattn_tensor *logits,
                                        const int64_t *targets, int64_t ignore_index,
                                        float *loss, clattn_tensor *dlogits)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "cross_entropy_loss: ctx is NULL");
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, "cross_entropy_loss", CLATTN_TENSOR(logits),
                                            CLATTN_TENSOR_OPT(dlogits));
    if (st != CLATTN_OK)
        return st;
    char sl[96];
    clattn__shape_str(logits->shape, logits->ndim, sl, sizeof sl);
    if (dlogits && !clattn__same_shape(logits, dlogits)) {
        char sd[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "cross_entropy_loss: dlogits %s must have the shape of logits %s",
                            clattn__shape_str(dlogits->shape, dlogits->ndim, sd, sizeof sd), sl);
    }
    if (!targets)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "cross_entropy_loss: targets is NULL");
    int64_t classes = logits->shape[logits->ndim - 1];
    size_t rows = logits->numel / (size_t)classes;
    if ((uint64_t)classes > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "cross_entropy_loss: logits %s: over 2^32 - 1 classes", sl);
    /* Every target before any device work: a bad one leaves dlogits as it was. */
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++) {
        if (targets[r] == ignore_index)
            continue;
        if (targets[r] < 0 || targets[r] >= classes)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "cross_entropy_loss: targets[%zu] = %lld is outside 0 .. %lld "
                                "and is not ignore_index (%lld); logits %s",
                                r, (long long)targets[r], (long long)(classes - 1),
                                (long long)ignore_index, sl);
        valid++;
    }
    if (!loss && !dlogits)
        return CLATTN_OK;
    if (valid == 0 && !dlogits) { /* every row ignored: 0 by definition */
        *loss = 0.0f;
        return CLATTN_OK;
    }

    return ce_run(ctx, logits, targets, ignore_index, valid, loss, dlogits);
}


/* ======================================================================== */
/* Causal-LM cross-entropy                                                   */
/* ======================================================================== */

clattn_status clattn_causal_lm_loss(clattn_ctx *ctx, const clattn_tensor *logits,
                                    const int64_t *labels, int64_t ignore_index, float *loss,
                                    clattn_tensor *dlogits)
{
    static const char fn[] = "causal_lm_loss";
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "%s: ctx is NULL", fn);
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, fn, CLATTN_TENSOR(logits),
                                            CLATTN_TENSOR_OPT(dlogits));
    if (st != CLATTN_OK)
        return st;
    char sl[96];
    clattn__shape_str(logits->shape, logits->ndim, sl, sizeof sl);
    if (logits->ndim != 2 && logits->ndim != 3)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: logits %s must be [B, T, V] or [T, V]",
                            fn, sl);
    if (dlogits && !clattn__same_shape(logits, dlogits)) {
        char sd[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: dlogits %s must have the shape of logits %s", fn,
                            clattn__shape_str(dlogits->shape, dlogits->ndim, sd, sizeof sd), sl);
    }
    if (!labels)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: labels is NULL", fn);
    int64_t vocab = logits->shape[logits->ndim - 1];
    size_t t_len = (size_t)logits->shape[logits->ndim - 2];
    size_t rows = logits->numel / (size_t)vocab;
    if ((uint64_t)vocab > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: logits %s: V over 2^32 - 1", fn, sl);
    /* Every used label before any device work; labels[b * T] is never read. */
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++) {
        if (r % t_len == 0)
            continue;
        if (labels[r] == ignore_index)
            continue;
        if (labels[r] < 0 || labels[r] >= vocab)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "%s: labels[%zu] = %lld is outside 0 .. %lld and is not "
                                "ignore_index (%lld); logits %s",
                                fn, r, (long long)labels[r], (long long)(vocab - 1),
                                (long long)ignore_index, sl);
        valid++;
    }
    if (valid == 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: no label to predict (T = %zu; every label at t >= 1 is "
                            "ignore_index %lld): the mean over zero tokens is undefined; logits %s",
                            fn, t_len, (long long)ignore_index, sl);
    if (!loss && !dlogits)
        return CLATTN_OK;
    /* The shifted targets: row (b, t) predicts labels[b, t + 1]; the last
     * position of each sequence predicts nothing. */
    int64_t *targets = malloc(rows * sizeof *targets);
    if (!targets)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
    for (size_t r = 0; r < rows; r++)
        targets[r] = (r + 1) % t_len == 0 ? ignore_index : labels[r + 1];
    st = ce_run(ctx, logits, targets, ignore_index, valid, loss, dlogits);
    free(targets);
    return st;
}
