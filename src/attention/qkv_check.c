/* qkv_check.c - the q, k, v and out checks that scaled dot-product
 * attention (sdpa.c, heads [B, H, N, D]) and classic attention (classic.c,
 * one head [B, N, D]) share: one set of rules on a 4-D view of both. */
#include "attention/attention.h"

/* Extents of t as [B, H, rows, width]: a 3-D t is one head. */
static void heads_view(const clattn_tensor *t, int64_t dims[4])
{
    if (t->ndim == 4) {
        for (int i = 0; i < 4; i++)
            dims[i] = t->shape[i];
        return;
    }
    dims[0] = t->shape[0], dims[1] = 1, dims[2] = t->shape[1], dims[3] = t->shape[2];
}

clattn_status clattn__qkv_check(clattn_ctx *ctx, const char *fn, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v,
                                const clattn_tensor *out, const clattn__qkv_rules *rules,
                                clattn__sdpa_problem *pr)
{
    if (!q || !k || !v || !out)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: q, k, v and out must not be NULL",
                            fn);
    bool heads = rules->ndim == 4;
    /* How the messages name each layout. */
    const char *lq = heads ? "[B, Hq, N, D]" : "[B, N, Dq]";
    const char *lk = heads ? "[B, Hkv, M, D]" : "[B, M, Dk]";
    const char *lv = heads ? "[B, Hkv, M, Dv]" : "[B, M, Dv]";
    const char *lo = heads ? "[B, Hq, N, Dv]" : "[B, N, Dv]";
    char sq[96], sk[96], sv[96], so[96];
    clattn__shape_str(q->shape, q->ndim, sq, sizeof sq);
    clattn__shape_str(k->shape, k->ndim, sk, sizeof sk);
    clattn__shape_str(v->shape, v->ndim, sv, sizeof sv);
    clattn__shape_str(out->shape, out->ndim, so, sizeof so);
    if (q->ndim != rules->ndim || k->ndim != rules->ndim || v->ndim != rules->ndim ||
        out->ndim != rules->ndim)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: q %s, k %s, v %s and out %s must be %d-D (%s row-major)", fn, sq,
                            sk, sv, so, (int)rules->ndim,
                            heads ? "[B, H, N, D]" : "[B, N, D]");
    int64_t qs[4], ks[4], vs[4], os[4];
    heads_view(q, qs);
    heads_view(k, ks);
    heads_view(v, vs);
    heads_view(out, os);
    /* Classic attention projects q before the scores, so its width need
     * not be k's; attention proper compares q and k as they are. */
    if (ks[0] != qs[0] || vs[0] != qs[0] || ks[1] != vs[1] || ks[2] != vs[2] ||
        (rules->same_width && ks[3] != qs[3]))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: shapes do not fit: q %s %s, k %s %s, v %s %s", fn, sq, lq, sk,
                            lk, sv, lv);
    if (qs[1] % ks[1] != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: query heads Hq = %lld (q %s) must be a multiple of key/value "
                            "heads Hkv = %lld (k %s)",
                            fn, (long long)qs[1], sq, (long long)ks[1], sk);
    if (os[0] != qs[0] || os[1] != qs[1] || os[2] != qs[2] || os[3] != vs[3]) {
        /* The expected shape in the caller's layout. */
        int64_t want[4] = {qs[0], qs[1], qs[2], vs[3]};
        int64_t want3[3] = {qs[0], qs[2], vs[3]};
        char sw[96];
        clattn__shape_str(heads ? want : want3, rules->ndim, sw, sizeof sw);
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: out %s must be %s = %s", fn, so,
                            lo, sw);
    }
    if (rules->max_head > 0 && (qs[3] > rules->max_head || vs[3] > rules->max_head))
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "%s: head sizes D = %lld (q %s) and Dv = %lld (v %s) must be at "
                            "most %d",
                            fn, (long long)qs[3], sq, (long long)vs[3], sv, rules->max_head);
    /* Kernels index rows with int; keep every extent within that range.
     * One head (classic attention) runs its GEMMs on all B * N queries
     * and B * M keys as single matrices, so those products must fit. */
    bool too_large = heads ? qs[0] * qs[1] > INT32_MAX || qs[2] > INT32_MAX || ks[2] > INT32_MAX
                           : qs[0] * qs[2] > INT32_MAX || ks[0] * ks[2] > INT32_MAX;
    if (too_large)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: q %s or k %s too large", fn, sq, sk);
    if (out->mem == q->mem || out->mem == k->mem || out->mem == v->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: out must not alias q, k or v", fn);
    pr->B = (int)qs[0];
    pr->Hq = (int)qs[1];
    pr->Hkv = (int)ks[1];
    pr->N = (int)qs[2];
    pr->M = (int)ks[2];
    pr->D = (int)ks[3]; /* q's width too, unless same_width is false */
    pr->Dv = (int)vs[3];
    pr->q = q->mem;
    pr->k = k->mem;
    pr->v = v->mem;
    pr->out = out->mem;
    return CLATTN_OK;
}
