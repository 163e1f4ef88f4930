/* bench_train.h - clattn-bench's timing of one training step of
 * clattn-train's models (common/train_models.h). */
#ifndef CLATTN_TOOLS_BENCH_TRAIN_H
#define CLATTN_TOOLS_BENCH_TRAIN_H

#include "train_models.h"

/* Times zero_grad + forward + loss + backward + Adam step on generated
 * batches: one warm-up step, then the best of reps steps (each finished on
 * the device) in milliseconds. */
clattn_status bench_train_step(clattn_ctx *ctx, const train_config *c, int reps, double *best_ms);

/* The same for a Llama decoder (clattn_llama, untied head): zero_grad +
 * train_forward on random ids [B, T] + clattn_causal_lm_loss + backward +
 * AdamW step, best of reps after one warm-up step, in milliseconds. */
clattn_status bench_train_lm_step(clattn_ctx *ctx, const clattn_llama_config *c, int32_t B,
                                  int32_t T, int reps, double *best_ms);

#endif
