/* lm_kernels.c - host side of cl/lm/lm_kernels.cl: rotary embeddings
 * with the KV-cache store, SwiGLU and the cache gather; RMSNorm runs
 * nn's kernels (clattn__rms_norm_rows, cl/nn/layers.cl). Shapes
 * are checked by the callers (forward.c), which own every buffer. */
#include "lm/lm.h"
#include "nn/nn.h"

static const clattn__program_spec LM_PROGRAM = {
    {"lm/lm_kernels.cl", NULL}, NULL};
/* The cache kernels read and write half when LM_CACHE_F16 is defined. */
static const clattn__program_spec LM_PROGRAM_F16 = {
    {"lm/lm_kernels.cl", NULL}, "-DLM_CACHE_F16"};
static const clattn__program_spec LM_PROGRAM_ROTARY = {
    {"lm/lm_kernels.cl", NULL}, "-DROTARY"};
static const clattn__program_spec LM_PROGRAM_ROTARY_F16 = {
    {"lm/lm_kernels.cl", NULL}, "-DROTARY -DLM_CACHE_F16"};

static const clattn__kernel_spec SWIGLU = {&LM_PROGRAM, "swiglu"};
static const clattn__kernel_spec ROPE_STORE[2][2] = {
    {{&LM_PROGRAM, "rope_store"}, {&LM_PROGRAM_F16, "rope_store"}},
    {{&LM_PROGRAM_ROTARY, "rope_store"}, {&LM_PROGRAM_ROTARY_F16, "rope_store"}},
};
static const clattn__kernel_spec CACHE_GATHER[2] = {
    {&LM_PROGRAM, "cache_gather"}, {&LM_PROGRAM_F16, "cache_gather"}};

clattn_status clattn__lm_rms_norm(clattn_ctx *ctx, cl_mem x, cl_mem w, cl_mem y, size_t rows,
                                  size_t cols, float eps)
{
    /* nn's kernels, shared with the public clattn_rms_norm. */
    return clattn__rms_norm_rows(ctx, x, w, y, rows, cols, eps);
}

clattn_status clattn__lm_rope_store(clattn_ctx *ctx, cl_mem qkv, cl_mem q,
                                    const clattn__kv_layer *kv, bool f16, cl_mem pos,
                                    cl_mem slot, cl_mem inv_freq, int T, int hq, int hkv, int d,
                                    int cap)
{
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, &ROPE_STORE[inv_freq != NULL][f16], &k);
    /* Without rotation the kernel never reads inv_freq: any buffer will do. */
    cl_mem freq = inv_freq ? inv_freq : pos;
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "rope_store", CLATTN_KARG(qkv), CLATTN_KARG(q),
                             CLATTN_KARG(kv->k), CLATTN_KARG(kv->v), CLATTN_KARG(pos),
                             CLATTN_KARG(slot), CLATTN_KARG(freq), CLATTN_KARG(hq),
                             CLATTN_KARG(hkv), CLATTN_KARG(d), CLATTN_KARG(cap));
    size_t global[3] = {(size_t)d / 2, (size_t)(hq + 2 * hkv), (size_t)T};
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 3, global, NULL, "rope_store") : st;
}

clattn_status clattn__lm_swiglu(clattn_ctx *ctx, cl_mem gu, cl_mem out, int T, int inter)
{
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, &SWIGLU, &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "swiglu", CLATTN_KARG(gu), CLATTN_KARG(out),
                             CLATTN_KARG(inter));
    size_t global[2] = {(size_t)inter, (size_t)T};
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 2, global, NULL, "swiglu") : st;
}

clattn_status clattn__lm_cache_gather(clattn_ctx *ctx, const clattn__kv_layer *kv, bool f16,
                                      int slot, int hkv, int d, int cap, int m, cl_mem out)
{
    cl_kernel k;
    clattn_status st = clattn__kernel(ctx, &CACHE_GATHER[f16], &k);
    if (st == CLATTN_OK)
        st = CLATTN_SET_ARGS(ctx, k, "cache_gather", CLATTN_KARG(kv->k), CLATTN_KARG(kv->v),
                             CLATTN_KARG(out), CLATTN_KARG(slot), CLATTN_KARG(hkv),
                             CLATTN_KARG(d), CLATTN_KARG(cap), CLATTN_KARG(m));
    size_t global[3] = {(size_t)d, (size_t)m, (size_t)hkv};
    return st == CLATTN_OK ? clattn__enqueue(ctx, k, 3, global, NULL, "cache_gather") : st;
}
