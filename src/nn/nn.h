/* nn/nn.h - the layer ops (linear, embedding, elementwise, layer norm,
 * softmax, dropout) and their backward passes, shared within nn/ and with
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

/* The layer ops' programs: nn/layers.cl, nn/layers_backward.cl,
 * nn/dropout.cl. */
extern const clattn__program_spec clattn__layers_program;
extern const clattn__program_spec clattn__layers_backward_program;
extern const clattn__program_spec clattn__dropout_program;

#endif /* CLATTN_NN_H */
