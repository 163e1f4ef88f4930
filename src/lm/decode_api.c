/* decode_api.c - clattn_sdpa_decode: the split-KV decode attention of
 * decode_attention.c on the caller's tensors (a float32 cache, one slot
 * per batch entry). */
#include "lm/lm.h"

#include <math.h>
#include <stdlib.h>

clattn_status clattn_sdpa_decode(clattn_ctx *ctx, const clattn_tensor *q, const clattn_tensor *k,
                                 const clattn_tensor *v, clattn_tensor *out,
                                 const int32_t *kv_len, int32_t window_left, float scale)
{
    clattn__clear_thread_error();
    clattn_status st = CLATTN_CHECK_TENSORS(ctx, "sdpa_decode", CLATTN_TENSOR(q),
                                            CLATTN_TENSOR(k), CLATTN_TENSOR(v),
                                            CLATTN_TENSOR(out));
    if (st != CLATTN_OK)
        return st;
    if (!kv_len)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "sdpa_decode: kv_len is NULL");
    char a[64], b[64], c[64], d[64];
    if (q->ndim != 4 || k->ndim != 4 || !clattn__same_shape(k, v) ||
        !clattn__same_shape(q, out) || q->shape[0] != k->shape[0] ||
        q->shape[3] != k->shape[3] || q->shape[2] % k->shape[1] != 0)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG,
                            "sdpa_decode: q %s, k %s, v %s, out %s do not fit q, out [B, R, Hq, "
                            "D] and k, v [B, Hkv, C, D] with Hq a multiple of Hkv",
                            clattn__shape_str(q->shape, q->ndim, a, sizeof a),
                            clattn__shape_str(k->shape, k->ndim, b, sizeof b),
                            clattn__shape_str(v->shape, v->ndim, c, sizeof c),
                            clattn__shape_str(out->shape, out->ndim, d, sizeof d));
    if (q->mem == out->mem)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "sdpa_decode: out must not alias q");
    const int64_t B = q->shape[0];
    if (B > INT32_MAX || k->shape[2] > INT32_MAX)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "sdpa_decode: extents over 2^31");
    int32_t *slot = malloc((size_t)B * sizeof *slot);
    if (!slot)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "out of host memory");
    for (int64_t i = 0; i < B; i++)
        slot[i] = (int32_t)i;
    clattn__kv_layer kv = {k->mem, v->mem};
    clattn__decode_args args = {(int32_t)B,
                                (int32_t)q->shape[1],
                                (int32_t)q->shape[2],
                                (int32_t)k->shape[1],
                                (int32_t)q->shape[3],
                                (int32_t)k->shape[2],
                                false,
                                &kv,
                                slot,
                                kv_len,
                                window_left,
                                scale > 0 ? scale : (float)(1.0 / sqrt((double)q->shape[3])),
                                q->mem,
                                out->mem};
    st = clattn__lm_decode_attention(ctx, &args);
    free(slot);
    return st;
}
