/* masks.c - PyTorch-style masks (boolean "true = masked" or additive float,
 * attn_mask [N, M] or [B*H, N, M], key_padding_mask [B, M], a causal flag)
 * combined into the one additive bias clattn_sdpa takes. Done on the host:
 * masks arrive in host memory and are small next to the attention itself. */
#include "modules/modules.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float mask_value(const clattn_mask *m, size_t index)
{
    if (m->kind == CLATTN_MASK_BOOL)
        return ((const uint8_t *)m->data)[index] ? -INFINITY : 0.0f;
    return ((const float *)m->data)[index];
}

static clattn_status check_mask(clattn_ctx *ctx, const char *what, const char *name,
                                const clattn_mask *m, int32_t ndim, const int64_t *want,
                                const char *want_text)
{
    if (m->kind != CLATTN_MASK_BOOL && m->kind != CLATTN_MASK_FLOAT)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s has unknown kind %d", what,
                            name, (int)m->kind);
    if (!m->data)
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s has no data", what, name);
    bool ok = m->ndim == ndim;
    for (int32_t i = 0; ok && i < ndim; i++)
        ok = m->shape[i] == want[i];
    if (!ok) {
        char got[96];
        int64_t shape[3] = {0, 0, 0};
        for (int32_t i = 0; i < m->ndim && i < 3; i++)
            shape[i] = m->shape[i];
        return clattn__fail(ctx, CLATTN_ERR_INVALID_ARG, "%s: %s has shape %s, expected %s",
                            what, name,
                            clattn__shape_str(shape, m->ndim < 0 ? 0 : m->ndim > 3 ? 3 : m->ndim,
                                              got, sizeof got),
                            want_text);
    }
    return CLATTN_OK;
}

clattn_status clattn__masks_to_bias(clattn_ctx *ctx, const char *what,
                                    const clattn__mask_spec *spec, float **bias,
                                    int32_t *ndim, int64_t *shape)
{
    *bias = NULL;
    const clattn_mask *am = spec->attn_mask, *kpm = spec->key_padding_mask;
    bool has_am = am && am->kind != CLATTN_MASK_NONE;
    bool has_kpm = kpm && kpm->kind != CLATTN_MASK_NONE;
    if (!has_am && !has_kpm && !spec->causal)
        return CLATTN_OK;
    int64_t B = spec->B, H = spec->H, N = spec->N, M = spec->M, Mt = M + spec->extra;
    char text[160];
    bool am3 = false;
    if (has_am) {
        am3 = am->ndim == 3;
        int64_t want2[2] = {N, M}, want3[3] = {B * H, N, M};
        snprintf(text, sizeof text, "[%lld, %lld] or [%lld, %lld, %lld] (N, M or B*nhead, N, M)",
                 (long long)N, (long long)M, (long long)(B * H), (long long)N, (long long)M);
        clattn_status st = check_mask(ctx, what, "attn_mask", am, am3 ? 3 : 2,
                                      am3 ? want3 : want2, text);
        if (st != CLATTN_OK)
            return st;
    }
    if (has_kpm) {
        int64_t want[2] = {B, M};
        snprintf(text, sizeof text, "[%lld, %lld] (B, M)", (long long)B, (long long)M);
        clattn_status st = check_mask(ctx, what, "key_padding_mask", kpm, 2, want, text);
        if (st != CLATTN_OK)
            return st;
    }
    /* The smallest broadcastable shape that holds every mask given. */
    int64_t bb = (has_kpm || am3) ? B : 1, hb = am3 ? H : 1;
    int64_t nb = (has_am || spec->causal) ? N : 1;
    size_t count = (size_t)(bb * hb * nb * Mt);
    float *out = malloc(count * sizeof *out);
    if (!out)
        return clattn__fail(ctx, CLATTN_ERR_OUT_OF_MEMORY, "%s: out of host memory for masks",
                            what);
    for (int64_t b = 0; b < bb; b++)
        for (int64_t h = 0; h < hb; h++)
            for (int64_t i = 0; i < nb; i++) {
                float *row = out + ((b * hb + h) * nb + i) * Mt;
                for (int64_t j = 0; j < M; j++) {
                    float x = 0.0f;
                    if (has_am)
                        x += mask_value(am, (size_t)(((am3 ? b * H + h : 0) * N + i) * M + j));
                    if (has_kpm)
                        x += mask_value(kpm, (size_t)(b * M + j));
                    if (spec->causal && j > i)
                        x = -INFINITY;
                    row[j] = x;
                }
                /* bias_kv / zero-attention columns: PyTorch pads every mask
                 * with zeros there, so they stay visible. */
                for (int64_t j = M; j < Mt; j++)
                    row[j] = 0.0f;
            }
    *bias = out;
    *ndim = 4;
    shape[0] = bb, shape[1] = hb, shape[2] = nb, shape[3] = Mt;
    return CLATTN_OK;
}
