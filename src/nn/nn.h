/* nn/nn.h - the layer ops (linear, embedding, elementwise, layer norm,
 * softmax, dropout, RMSNorm, rotary embeddings, SwiGLU) and their backward passes, shared within nn/ and with
 * the subsystems built on them. */
#ifndef CLATTN_NN_H
#define CLATTN_NN_H

#include "core/core.h"
#include "gemm/gemm.h"

/* ---- layers.c: helpers shared with rows.c ------------------------ */

/* y += x W^T + b: clattn_linear's checks and shapes, accumulating into y
 * in the GEMM's store (a residual add without its own pass). */
clattn_status clattn__linear_acc(clattn_ctx *ctx, const clattn_tensor *x, const clattn_tensor *w,
                                 const clattn_tensor *b, clattn_tensor *y);

/* layers.cl's fused bias + activation kernel for act (bias_act_none for
 * an unknown act). */
const clattn__kernel_spec *clattn__bias_act_spec(clattn_activation act);

/* ---- decoder_ops.c: what lm/ shares with the public ops ---------- */

/* y = x / sqrt(mean(x^2) + eps) (* w) over rows x cols floats (w: [cols]
 * or NULL), clattn_rms_norm's kernels without its checks. y may be x. */
clattn_status clattn__rms_norm_rows(clattn_ctx *ctx, cl_mem x, cl_mem w, cl_mem y, size_t rows,
                                    size_t cols, float eps);

/* inv_freq[0 .. head_dim/2) of the rotary embedding for p (checked by the
 * caller), in float32 in the order transformers' rope initialisers
 * compute it. */
void clattn__rope_inv_freq(const clattn_rope_params *p, int32_t head_dim, float *inv_freq);

/* Checks the fields of p that its type reads (CLATTN_ERR_INVALID_ARG
 * naming fn and the field): theta finite and > 0, a known type, and the
 * type's factors. */
clattn_status clattn__rope_params_check(clattn_ctx *ctx, const char *fn,
                                       const clattn_rope_params *p);

/* The layer ops' programs: nn/layers.cl, nn/layers_backward.cl,
 * nn/dropout.cl. */
extern const clattn__program_spec clattn__layers_program;
extern const clattn__program_spec clattn__layers_backward_program;
extern const clattn__program_spec clattn__dropout_program;

#endif /* CLATTN_NN_H */
