/* train/train.h - what loss.c, optimizer.c and checkpoint.c share:
 * the deterministic reductions of cl/train/loss.cl and the optimiser's layout.
 * Never installed. */
#ifndef CLATTN_TRAIN_INTERNAL_H
#define CLATTN_TRAIN_INTERNAL_H

#include "core/core.h"
#include "io/io.h"
#include "nn/nn.h"

/* ---- loss.c: reductions ------------------------------------------------- */

/* Squared L2 norm of all the gradients grads[0..count) (any may be NULL:
 * skipped), a blocking read into *sumsq. scratch (owned by the caller,
 * grown here) holds the per-work-group partial sums. The summation order
 * depends only on the tensors' sizes and the device, so a repeated call
 * gives the same bits. */
clattn_status clattn__grad_sumsq(clattn_ctx *ctx, int32_t count, const clattn_tensor *const *grads,
                                 clattn__buffer *scratch, float *sumsq);

/* ---- optimizer.c ---------------------------------------------------------- */

struct clattn_optimizer {
    clattn_ctx *ctx;
    clattn_optimizer_params p;
    int32_t count;
    char **names;              /* copies of the parameter names */
    clattn_tensor **values;    /* borrowed */
    clattn_tensor **grads;     /* borrowed */
    /* Per parameter, the shape of the parameter, owned: Adam/AdamW
     * exp_avg and exp_avg_sq; SGD with momentum > 0 momentum_buffer in
     * state1 (state2 NULL); SGD without momentum none. */
    clattn_tensor **state1, **state2;
    int64_t steps;
    float last_grad_norm;      /* -1 when the last step did not measure it */
    clattn__buffer norm_scratch;
};

/* Names of the optimiser's state tensors: "exp_avg" / "exp_avg_sq" or
 * "momentum_buffer" for slot 1 and 2 (NULL when the kind has none). */
const char *clattn__optimizer_state_name(const clattn_optimizer *opt, int slot);

/* "sgd", "adam" or "adamw". */
const char *clattn__optimizer_kind_name(clattn_optimizer_kind kind);

/* x *= s elementwise over a tensor (gradient clipping; optimizer.cl). */
clattn_status clattn__scale(clattn_ctx *ctx, clattn_tensor *x, float s);

/* train/loss.cl and train/optimizer.cl. */
extern const clattn__program_spec clattn__loss_program;
extern const clattn__program_spec clattn__optimizer_program;

#endif /* CLATTN_TRAIN_INTERNAL_H */
