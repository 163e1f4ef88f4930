/* lm_task.h - clattn-train lm's task: multi-digit addition as text,
 * generated deterministically from a seed.
 *
 *   prompt "483+129="  answer "612", then eos
 *   row    <s> 4 8 3 + 1 2 9 = 6 1 2 </s> <pad> ...      (ids, [T])
 *   labels -100 ... -100          6 1 2 </s> -100 ...    (the answer only)
 *
 * Each operand is uniform in 0 .. 10^digits - 1 (so nine in ten have all
 * the digits at digits 1..9, and 0 .. 9 appear too), written without
 * leading zeros. The answer is the
 * plain decimal sum, most significant digit first, without leading zeros.
 * Held-out problems come from a stream of their own, distinct, and are
 * kept in a set that the training stream skips: no held-out problem is
 * ever trained on. */
#ifndef CLATTN_LM_TASK_H
#define CLATTN_LM_TASK_H

#include <stdbool.h>
#include <stdint.h>

#define LM_MAX_DIGITS 9 /* operands below 10^9: a, b and the sum fit uint32 */
#define LM_IGNORE (-100) /* the label of positions without a loss (PyTorch's) */

typedef struct lm_problem {
    uint32_t a, b;
} lm_problem;

/* The longest row of a task: <s>, two operands, '+', '=', an answer of
 * digits + 1 and </s>: 3 * digits + 5 positions. */
int32_t lm_max_len(int32_t digits);

/* How many problems there are: 10^(2 digits). */
uint64_t lm_problem_count(int32_t digits);

/* The next problem of the stream *state (splitmix64). */
lm_problem lm_draw(int32_t digits, uint64_t *state);

/* "a+b=" into buf (room for 2 * LM_MAX_DIGITS + 3 bytes); returns its length. */
int32_t lm_prompt_text(lm_problem p, char *buf);

/* The answer's digits into buf (room for LM_MAX_DIGITS + 2); its length. */
int32_t lm_answer_text(lm_problem p, char *buf);

/* <s> and the prompt's ids into ids (room for lm_max_len); their count. */
int32_t lm_prompt_ids(lm_problem p, int64_t *ids);

/* The answer's ids and </s> into ids; their count. */
int32_t lm_answer_ids(lm_problem p, int64_t *ids);

/* One training row of T >= lm_max_len(digits) ids and labels (layout
 * above); returns the positions used, the rest being <pad> / LM_IGNORE. */
int32_t lm_row(lm_problem p, int32_t T, int64_t *ids, int64_t *labels);

/* ---- the held-out set ----------------------------------------------------- */

typedef struct lm_problem_set lm_problem_set;

/* n distinct problems from the stream *state into out[0..n) and a set of
 * them; n must be at most lm_problem_count(digits) / 2 (the caller checks),
 * so that the draws end and half of the problems or more stay for
 * training. NULL when out of memory. */
lm_problem_set *lm_heldout_draw(int32_t digits, uint64_t *state, int64_t n, lm_problem *out);
bool lm_set_contains(const lm_problem_set *s, lm_problem p);
void lm_set_destroy(lm_problem_set *s);

/* The next problem of *state that is not in heldout (NULL: any). */
lm_problem lm_draw_train(int32_t digits, uint64_t *state, const lm_problem_set *heldout);

#endif
