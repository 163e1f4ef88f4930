/* attention/attention.h - what sdpa.c shares with the files built on it
 * (presets, classic scores, multi-head attention and the backward in
 * sdpa_backward.c). */
#ifndef CLATTN_ATTENTION_INTERNAL_H
#define CLATTN_ATTENTION_INTERNAL_H

#include "core/core.h"
#include "gemm/gemm.h"

/* Where a strided q, k, v or out keeps element (b, h, i, d):
 * off + b*sb + h*sh + i*sn + d (elements). */
typedef struct clattn__sdpa_layout {
    int64_t off, sb, sh, sn;
} clattn__sdpa_layout;

/* One attention call, checked and resolved to buffers and integers. */
typedef struct clattn__sdpa_problem {
    int B, Hq, Hkv, N, M, D, Dv;
    float scale;
    int wl, wr;                 /* window, -1 = unlimited; causal folded in */
    bool has_bias, has_lse;      /* given by the caller (kv_len always is) */
    int64_t bias_sb, bias_sh, bias_sn; /* bias element strides; 0 broadcasts */
    cl_mem q;                   /* [B, Hq, N, D] */
    cl_mem k;                   /* [B, Hkv, M, D] */
    cl_mem v;                   /* [B, Hkv, M, Dv] */
    cl_mem out;                 /* [B, Hq, N, Dv] */
    /* strided: q, k, v, out are laid out as lq, lk, lv, lo say rather
     * than contiguous (multi-head attention reading heads straight from
     * its projections). Only the fused path takes it. */
    bool strided;
    clattn__sdpa_layout lq, lk, lv, lo;
    cl_mem weights;             /* [B, Hq, N, M] or NULL */
    cl_mem lse;                 /* [B, Hq, N] or a dummy */
    cl_mem bias;                /* broadcast to [B, Hq, N, M] or a dummy */
    cl_mem kv_len;              /* int [B] or a dummy */
    cl_mem mod_buf;             /* user buffer for snippets or a dummy */
    float p[4];                 /* snippet scalars p0..p3 */
    const char *score_mod, *mask_mod;
} clattn__sdpa_problem;

/* ---- qkv_check.c: the q, k, v, out checks of sdpa and classic attention -- */

/* What clattn__qkv_check requires of the tensors. */
typedef struct clattn__qkv_rules {
    int32_t ndim;     /* 4: heads [B, H, N, D] (sdpa); 3: one head [B, N, D] (classic) */
    bool same_width;  /* q's last extent must equal k's (false: classic projects q) */
    int max_head;     /* largest D and Dv; 0: no limit */
} clattn__qkv_rules;

/* Checks q [B, Hq, N, D], k [B, Hkv, M, D], v [B, Hkv, M, Dv] and out
 * [B, Hq, N, Dv] (3-D rules: the same without the heads extent, H = 1):
 * non-NULL, rules->ndim dimensions each, shapes that fit, Hq a multiple of
 * Hkv, head sizes within rules->max_head, extents within the kernels' int,
 * out not sharing a buffer with q, k or v. Fills pr's B, Hq, Hkv, N, M, D
 * (k's width), Dv, q, k, v and out, and nothing else. fn starts every
 * message. */
clattn_status clattn__qkv_check(clattn_ctx *ctx, const char *fn, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v,
                                const clattn_tensor *out, const clattn__qkv_rules *rules,
                                clattn__sdpa_problem *pr);

/* Checks q, k, v, out and the parameters (everything but p->weights and
 * p->lse) and fills pr (zeroed first) with the shape, scale, window, bias
 * strides and buffers. fn ("sdpa", "sdpa_backward") starts every message. */
clattn_status clattn__sdpa_check(clattn_ctx *ctx, const char *fn, const clattn_tensor *q,
                                const clattn_tensor *k, const clattn_tensor *v,
                                const clattn_tensor *out, const clattn_sdpa_params *p,
                                clattn__sdpa_problem *pr);

/* OpenCL C source defining the user's snippets as the functions
 * clattn_score_mod / clattn_mask_mod (with CLATTN_HAS_SCORE_MOD /
 * CLATTN_HAS_MASK_MOD), for a program's prefix; either may be NULL.
 * malloc'd; NULL when out of memory. */
char *clattn__sdpa_snippet_prefix(const char *score_mod, const char *mask_mod);

/* The forward program of the context's kernel family specialised for head
 * sizes d, dv, the optional inputs, and the user snippets (built or loaded
 * once per context). It also holds the row kernels (sdpa_softmax_rows,
 * sdpa_l2_normalize_rows). */
clattn_status clattn__attention_program(clattn_ctx *ctx, int d, int dv, bool bias,
                                        const char *score_mod, const char *mask_mod,
                                        cl_program *out);

/* Fills the dummy, kv_len and mod_buf buffers of a problem. */
clattn_status clattn__sdpa_aux_buffers(clattn_ctx *ctx, const int32_t *kv_len,
                                       const clattn_tensor *mod_buffer, clattn__sdpa_problem *pr);

/* Sets the common argument tail (lse onwards) of an attention kernel. */
clattn_status clattn__sdpa_set_tail_args(clattn_ctx *ctx, cl_kernel k, cl_uint first,
                                         const clattn__sdpa_problem *pr);

/* In place: scores [B, Hq, N, M] of raw q.k products -> probabilities. */
clattn_status clattn__sdpa_softmax(clattn_ctx *ctx, cl_program prog, cl_mem scores,
                                   const clattn__sdpa_problem *pr);

/* The same without a program: the row softmax does not depend on the head
 * size, so the kernel of the prebuilt D = Dv = 64 program without bias
 * (clattn__attention_prebuild) serves any problem without bias or
 * snippets; it is resolved once per context (classic attention). */
clattn_status clattn__sdpa_softmax_any(clattn_ctx *ctx, cl_mem scores,
                                       const clattn__sdpa_problem *pr);

/* Whether the fused forward kernel can run M keys at head sizes (D, Dv)
 * on this device: false only under a driver loop limit (clattn_ctx.
 * loop_budget, Mesa's llvmpipe) that the kernel would overrun. Then
 * clattn__sdpa_run takes the unfused path (impl AUTO) or fails with
 * CLATTN_ERR_UNSUPPORTED (impl FUSED, strided inputs). */
bool clattn__sdpa_fused_fits(const clattn_ctx *ctx, int d, int dv, int m);

/* Runs a checked problem (cosine normalises q and k first). */
clattn_status clattn__sdpa_run(clattn_ctx *ctx, clattn__sdpa_problem *pr, bool cosine,
                               clattn_sdpa_impl impl);

/* ---- sdpa.c, classic.c: warm-up at context creation ---------------------- */

/* Builds the fused attention program in its most common form (D = Dv = 64,
 * the context's kernel family), so a fresh context has it ready. */
clattn_status clattn__attention_prebuild(clattn_ctx *ctx);

/* attention/classic.cl: additive (Bahdanau) scores. */
extern const clattn__program_spec clattn__classic_program;

#endif
