/* train_lm.h - clattn-train lm: a Llama (clattn_llama) learns multi-digit
 * addition from generated text (common/lm_task.h), with its own
 * character-level tokenizer (common/lm_tokenizer.h), and can be exported
 * as a Hugging Face folder that clattn-generate answers from.
 *
 *   train_lm.c          the run: model, optimiser, training loop, output
 *   train_lm_options.c  the command line, range-checked
 *   train_lm_eval.c     held-out loss and greedy exact-match accuracy
 *   train_lm_plot.c     --plot: the loss curves and the accuracy
 *   train_lm_export.c   --export: a Hugging Face folder */
#ifndef CLATTN_TOOLS_TRAIN_LM_H
#define CLATTN_TOOLS_TRAIN_LM_H

#include "lm_task.h"

#include <clattn.h>
#include <stdbool.h>
#include <stdint.h>

#define LM_TOOL "clattn-train"
#define LM_ANSWER_MAX (LM_MAX_DIGITS + 2) /* the longest answer and </s> */

typedef struct lm_options {
    int64_t digits, heldout;                        /* the task */
    int64_t layers, hidden, heads, kv_heads, ff;    /* the model */
    double dropout;
    int64_t epochs, steps, batch, warmup, seed;     /* the run */
    double lr, min_lr, weight_decay, clip;
    const char *init, *checkpoint, *plot, *export_dir, *heldout_file, *device;
    bool json, quiet;
} lm_options;

/* clattn-train lm ARGS: the whole run; returns the exit status. */
int train_lm_main(int argc, char **argv);

/* Parses argv[2..] (argv[1] is "lm"). 0: parsed; 1: --help was printed
 * (exit 0); 2: a usage error was printed (exit 2). */
int lm_options_parse(int argc, char **argv, lm_options *o);

/* The model's configuration from the options (sizes checked by
 * lm_options_parse). */
clattn_llama_config lm_options_config(const lm_options *o);

/* ---- evaluation (train_lm_eval.c) ----------------------------------------- */

/* Batches of B rows of T = lm_max_len(digits) ids, and the logits
 * [B, T, V] they give (on the device, and a host copy for decoding). The
 * training loop shares them. */
typedef struct lm_batch {
    clattn_ctx *ctx;
    int32_t B, T, V, digits;
    int64_t *ids, *labels;      /* host [B * T] each, row b at b * T */
    clattn_tensor *logits;      /* [B, T, V] */
    float *host;                /* [B * T * V] */
    /* Greedy decoding's state per row: length, answer ids matched so far,
     * the answer's ids and </s>, finished. */
    int32_t *len, *got;         /* [B] */
    int64_t (*want)[LM_ANSWER_MAX]; /* [B][LM_ANSWER_MAX] */
    bool *done;                 /* [B] */
} lm_batch;

clattn_status lm_batch_init(lm_batch *b, clattn_ctx *ctx, int32_t B, int32_t digits);
void lm_batch_free(lm_batch *b);

/* The held-out problems p[0..n) in batches: the mean loss over every
 * answer and eos token (teacher-forced, as in training), and the share of
 * problems whose greedy continuation of "<s>a+b=" is exactly the answer
 * and </s>. */
clattn_status lm_evaluate(clattn_llama *m, lm_batch *b, const lm_problem *p, int64_t n,
                          double *loss, double *accuracy);

/* ---- the exported folder (train_lm_export.c) ------------------------------- */

/* Writes o->export_dir (created if missing; its parent was checked) from the
 * model and the task's tokenizer; 0, or 1 with the message printed. */
int lm_export(const lm_options *o, clattn_llama *m);

/* ---- pictures (train_lm_plot.c) ------------------------------------------- */

typedef struct lm_history {
    const double *step_loss;    /* [epochs * steps] */
    const double *held_loss;    /* [epochs] */
    const double *held_acc;     /* [epochs], 0..1 */
    int64_t epochs, steps;
} lm_history;

/* Draws the curves into o->plot; false with the message printed. */
bool lm_plot(const lm_options *o, const lm_history *h);

#endif
