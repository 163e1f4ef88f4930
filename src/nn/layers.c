/* layers.c - elementwise layer ops: linear (+ fused bias and activation),
 * activations, residual adds and embedding lookup. The row reductions
 * (layer norm, softmax) are in rows.c. Kernels: cl/nn/layers.cl. */
#include "nn/nn.h"

#include <string.h>

const clattn__program_spec clattn__layers_program = {{"core/reduce.cl", "nn/layers.cl", NULL}, NULL};

/* ---- shared helpers ------------------------------------------------------ */

static bool act_valid(clattn_activation act)
{
    return act >= CLATTN_ACT_NONE && act <= CLATTN_ACT_SILU;
}

/* layers.cl's fused bias + activation kernels, indexed by clattn_activation
 * (act_valid bounds the index). */
static const clattn__kernel_spec BIAS_ACT[] = {
    [CLATTN_ACT_NONE] = {&clattn__layers_program, "bias_act_none"},
    [CLATTN_ACT_RELU] = {&clattn__layers_program, "bias_act_relu"},
    [CLATTN_ACT_GELU] = {&clattn__layers_program, "bias_act_gelu"},
    [CLATTN_ACT_GELU_TANH] = {&clattn__layers_program, "bias_act_gelu_tanh"},
    [CLATTN_ACT_SILU] = {&clattn__layers_program, "bias_act_silu"},
};

const clattn__kernel_spec *clattn__bias_act_spec(clattn_activation act)
{
    return &BIAS_ACT[act_valid(act) ? act : CLATTN_ACT_NONE];
}

/* y[r, c] = act(x[r, c] + b[c]) over a [rows, cols] view; b may be NULL.
 * x and y may be the same buffer. */
static clattn_status bias_act(clattn_ctx *ctx, cl_mem x, cl_mem y, cl_mem b, size_t rows,
                              size_t cols, clattn_activation act)
{
    cl_kernel k;
    const clattn__kernel_spec *spec = clattn__bias_act_spec(act);
    cl_int has_bias = b != NULL;
    cl_uint c = (cl_uint)cols;
    cl_mem bias = b ? b : x; /* never read without has_bias */
    clattn_status st = clattn__kernel(ctx, spec, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, spec->name, CLATTN_KARG(x), CLATTN_KARG(y),
                             CLATTN_KARG(bias), CLATTN_KARG(has_bias), CLATTN_KARG(c));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {cols, rows};
    return clattn__enqueue(ctx, k, 2, global, NULL, spec->name);
}

/* ---- linear -------------------------------------------------------------- */

/* y = act(x W^T + b) + beta y, beta 0 (clattn_linear) or 1 with act NONE
 * (clattn__linear_acc). */
static clattn_status linear(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *w,
                            const clattn_tensor *b, clattn_activation act, float beta,
                            clattn_tensor *y);

clattn_status clattn_linear(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *w,
                            const clattn_tensor *b, clattn_activation act, clattn_tensor *y)
{
    clattn__clear_thread_error();
    return linear(ctx, x, w, b, act, 0.0f, y);
}

clattn_status clattn__linear_acc(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *w,
                                 const clattn_tensor *b, clattn_tensor *y)
{
    return linear(ctx, x, w, b, CLATTN_ACT_NONE, 1.0f, y);
}

static clattn_status linear(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *w,
                            const clattn_tensor *b, clattn_activation act, float beta,
                            clattn_tensor *y)
{
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "linear: ctx is NULL");
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, "linear", CLATTN_TENSOR(x), CLATTN_TENSOR(w),
                                            CLATTN_TENSOR_OPT(b), CLATTN_TENSOR(y));
    if (st != CLATTN_OK)
        return st;
    if (!act_valid(act))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "linear: unknown activation %d",
                            (int)act);
    char sx[96], sw[96], sb[96] = "NULL", sy[96];
    clattn__shape_str(x->shape, x->ndim, sx, sizeof sx);
    clattn__shape_str(w->shape, w->ndim, sw, sizeof sw);
    clattn__shape_str(y->shape, y->ndim, sy, sizeof sy);
    if (b)
        clattn__shape_str(b->shape, b->ndim, sb, sizeof sb);
    int32_t nd = x->ndim;
    bool ok = nd >= 2 && w->ndim == 2 && y->ndim == nd && w->shape[1] == x->shape[nd - 1] &&
              y->shape[nd - 1] == w->shape[0] &&
              (!b || (b->ndim == 1 && b->shape[0] == w->shape[0]));
    for (int32_t i = 0; ok && i < nd - 1; i++)
        ok = y->shape[i] == x->shape[i];
    if (!ok)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "linear: shapes do not fit: x %s [..., in] (2 to 4 dims), w %s "
                            "[out, in], b %s [out] or NULL, y %s [..., out]",
                            sx, sw, sb, sy);
    if (y->mem == x->mem || y->mem == w->mem || (b && y->mem == b->mem))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "linear: y must not alias x, w or b");
    size_t in = (size_t)w->shape[1], out = (size_t)w->shape[0], rows = x->numel / in;
    if (out > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "linear: w %s: out over 2^32 - 1", sw);
    /* y[rows, out] = x[rows, in] W^T: W is stored [out, in], so B is
     * transposed and its leading dimension is in. */
    /* clattn's CPU GEMM adds the bias (and applies ReLU) as it stores y,
     * saving a pass over y. Other activations keep their own vectorised
     * pass: evaluated per lane in the GEMM's store, GELU cost more than
     * the pass it saved. */
    if (ctx->gemm_backend == CLATTN_GEMM_CPU && rows > 0 && out > 0) {
        bool fuse_act = act == CLATTN_ACT_NONE || act == CLATTN_ACT_RELU;
        st = clattn__gemm_cpu_epilogue(ctx, false, true, rows, out, in, 1.0f, x->mem, 0, in, 0,
                                       w->mem, 0, in, 0, beta, y->mem, 0, out, 0, 1,
                                       b ? b->mem : NULL, fuse_act ? act : CLATTN_ACT_NONE,
                                       w->gemm_packed);
        if (st != CLATTN_OK || fuse_act)
            return st;
        return bias_act(ctx, y->mem, y->mem, NULL, rows, out, act);
    }
    st = clattn__gemm(ctx, false, true, rows, out, in, 1.0f, x->mem, 0, in, w->mem, 0, in, beta,
                      y->mem, 0, out);
    if (st != CLATTN_OK || (!b && act == CLATTN_ACT_NONE))
        return st;
    return bias_act(ctx, y->mem, y->mem, b ? b->mem : NULL, rows, out, act);
}

/* ---- activations --------------------------------------------------------- */

clattn_status clattn_activation_apply(clattn_ctx *ctx, const clattn_tensor *x,
                                      clattn_activation act, clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "activation_apply: ctx is NULL");
    clattn_status st =
        CLATTN_CHECK_TENSORS(ctx, "activation_apply", CLATTN_TENSOR(x), CLATTN_TENSOR(y));
    if (st != CLATTN_OK)
        return st;
    if (!act_valid(act))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "activation_apply: unknown activation %d",
                            (int)act);
    if (!clattn__same_shape(x, y)) {
        char sx[96], sy[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "activation_apply: y %s must have the shape of x %s",
                            clattn__shape_str(y->shape, y->ndim, sy, sizeof sy),
                            clattn__shape_str(x->shape, x->ndim, sx, sizeof sx));
    }
    size_t cols = (size_t)x->shape[x->ndim - 1];
    if (cols > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "activation_apply: last dimension over 2^32 - 1");
    if (act == CLATTN_ACT_NONE && x->mem == y->mem)
        return CLATTN_OK;
    return bias_act(ctx, x->mem, y->mem, NULL, x->numel / cols, cols, act);
}

/* ---- residual adds ------------------------------------------------------- */

clattn_status clattn_add_scaled(clattn_ctx *ctx, float alpha, const clattn_tensor *a, float beta,
                                const clattn_tensor *b, clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "add: ctx is NULL");
    clattn_status st =
        CLATTN_CHECK_TENSORS(ctx, "add", CLATTN_TENSOR(a), CLATTN_TENSOR(b), CLATTN_TENSOR(y));
    if (st != CLATTN_OK)
        return st;
    if (!clattn__same_shape(a, b) || !clattn__same_shape(a, y)) {
        char sa[96], sb[96], sy[96];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "add: a %s, b %s and y %s must have the same shape",
                            clattn__shape_str(a->shape, a->ndim, sa, sizeof sa),
                            clattn__shape_str(b->shape, b->ndim, sb, sizeof sb),
                            clattn__shape_str(y->shape, y->ndim, sy, sizeof sy));
    }
    static const clattn__kernel_spec ADD_SCALED = {&clattn__layers_program, "add_scaled"};
    cl_kernel k;
    cl_ulong n = a->numel;
    st = clattn__kernel(ctx, &ADD_SCALED, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "add_scaled", CLATTN_KARG(a->mem), CLATTN_KARG(b->mem),
                             CLATTN_KARG(y->mem), CLATTN_KARG(alpha), CLATTN_KARG(beta),
                             CLATTN_KARG(n));
    if (st != CLATTN_OK)
        return st;
    size_t global = a->numel, local = 64;
    return clattn__enqueue(ctx, k, 1, &global, &local, "add_scaled");
}

clattn_status clattn_add(clattn_ctx *ctx, const clattn_tensor *a, const clattn_tensor *b,
                         clattn_tensor *y)
{
    /* 1 * a + 1 * b is exactly a + b in IEEE arithmetic, fused or not. */
    return clattn_add_scaled(ctx, 1.0f, a, 1.0f, b, y);
}

/* ---- embedding ----------------------------------------------------------- */

clattn_status clattn_embedding(clattn_ctx *ctx, const clattn_tensor *table, const int64_t *ids,
                               size_t count, clattn_tensor *y)
{
    clattn__clear_thread_error();
    if (!ctx)
        return clattn__fail(NULL, CLATTN_ERR_INVALID_ARG, "embedding: ctx is NULL");
    clattn_status st =
        CLATTN_CHECK_TENSORS(ctx, "embedding", CLATTN_TENSOR(table), CLATTN_TENSOR(y));
    if (st != CLATTN_OK)
        return st;
    if (!ids || count == 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedding: ids must not be NULL and count must be >= 1");
    char stab[96], sy[96];
    clattn__shape_str(table->shape, table->ndim, stab, sizeof stab);
    clattn__shape_str(y->shape, y->ndim, sy, sizeof sy);
    if (table->ndim != 2)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "embedding: table %s must be [V, E]",
                            stab);
    int64_t v = table->shape[0];
    size_t e = (size_t)table->shape[1];
    if (count > SIZE_MAX / e || y->numel != count * e)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "embedding: y %s must hold count * E = %zu * %zu elements (table %s)",
                            sy, count, e, stab);
    if (y->mem == table->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "embedding: y must not alias table");
    if (e > UINT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "embedding: table %s: E over 2^32 - 1",
                            stab);
    /* All ids first: a bad one must leave y untouched. */
    for (size_t i = 0; i < count; i++)
        if (ids[i] < 0 || ids[i] >= v)
            return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                                "embedding: ids[%zu] = %lld is outside 0 .. %lld (table %s)", i,
                                (long long)ids[i], (long long)(v - 1), stab);
    static const clattn__kernel_spec GATHER = {&clattn__layers_program, "embedding_gather"};
    cl_mem dev_ids;
    cl_kernel k;
    st = clattn__scratch(ctx, CLATTN_SCRATCH_IDS, count * sizeof(cl_long), "embedding ids",
                         &dev_ids);
    if (st == CLATTN_OK)
        st = clattn__kernel(ctx, &GATHER, &k);
    if (st != CLATTN_OK)
        return st;
    /* Blocking: ids are the caller's and only borrowed for the call. The
     * in-order queue orders this after earlier kernels reading the slot. */
    cl_int err = clEnqueueWriteBuffer(ctx->queue, dev_ids, CL_TRUE, 0, count * sizeof(cl_long),
                                      ids, 0, NULL, NULL);
    if (err != CL_SUCCESS)
        return clattn__fail_cl(ctx, err, "clEnqueueWriteBuffer(embedding ids)");
    cl_uint cols = (cl_uint)e;
    st = CLATTN_SET_ARGS(ctx, k, "embedding_gather", CLATTN_KARG(table->mem),
                         CLATTN_KARG(dev_ids), CLATTN_KARG(y->mem), CLATTN_KARG(cols));
    if (st != CLATTN_OK)
        return st;
    size_t global[2] = {e, count};
    return clattn__enqueue(ctx, k, 2, global, NULL, "embedding_gather");
}
