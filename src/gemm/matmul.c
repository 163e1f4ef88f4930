/* matmul.c - clattn_matmul: shape checks on tensors, then gemm.c. */
#include "gemm/gemm.h"

clattn_status clattn_matmul(clattn_ctx *ctx, const clattn_tensor *a, bool trans_a,
                            const clattn_tensor *b, bool trans_b, float alpha, float beta,
                            clattn_tensor *c)
{
    clattn__clear_thread_error();
    if (!ctx || !a || !b || !c)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "matmul: ctx, a, b and c must not be NULL");
    char sa[96], sb[96], sc[96];
    clattn__shape_str(a->shape, a->ndim, sa, sizeof sa);
    clattn__shape_str(b->shape, b->ndim, sb, sizeof sb);
    clattn__shape_str(c->shape, c->ndim, sc, sizeof sc);
    if (a->ndim != c->ndim || b->ndim != c->ndim || c->ndim < 2 || c->ndim > 3)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "matmul: a %s, b %s, c %s must all be 2-D or all 3-D", sa, sb, sc);
    if (c->mem == a->mem || c->mem == b->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "matmul: c must not alias a or b");
    int32_t r = c->ndim - 2; /* index of the row dimension */
    size_t batch = r ? (size_t)c->shape[0] : 1;
    size_t ba = r ? (size_t)a->shape[0] : 1, bb = r ? (size_t)b->shape[0] : 1;
    size_t a_rows = (size_t)a->shape[r], a_cols = (size_t)a->shape[r + 1];
    size_t b_rows = (size_t)b->shape[r], b_cols = (size_t)b->shape[r + 1];
    size_t m = trans_a ? a_cols : a_rows, k = trans_a ? a_rows : a_cols;
    size_t kb = trans_b ? b_cols : b_rows, n = trans_b ? b_rows : b_cols;
    if (k != kb || (size_t)c->shape[r] != m || (size_t)c->shape[r + 1] != n ||
        (ba != batch && ba != 1) || (bb != batch && bb != 1))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "matmul: shapes do not fit: a %s%s, b %s%s, c %s", sa,
                            trans_a ? " (transposed)" : "", sb, trans_b ? " (transposed)" : "",
                            sc);
    return clattn__gemm_batched(ctx, trans_a, trans_b, m, n, k, alpha, a->mem, 0, a_cols,
                                ba == 1 ? 0 : a_rows * a_cols, b->mem, 0, b_cols,
                                bb == 1 ? 0 : b_rows * b_cols, beta, c->mem, 0, n, m * n, batch);
}
