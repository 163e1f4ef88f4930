/* train_models.h - the two models tools/clattn-train trains, written on
 * clattn's public training API; also compiled into the trajectory test.
 * Their PyTorch definitions are in tests/fixtures/make_train_fixtures.py,
 * with the same state_dict names, so checkpoints load both ways.
 *
 *   TRAIN_REGRESSION  x [B, L, in_dim] -> one attention head (query/key/
 *                     value Linear layers, "attn.*") -> mean over L ->
 *                     Linear(hidden, 1) ("head.*") -> [B, 1]; MSE loss.
 *   TRAIN_CLASSIFIER  x [B, N, 2] (a value, and a flag marking position 0
 *                     as the query) -> Linear(2, d) per position
 *                     ("embed.*") -> TransformerEncoder ("encoder.*") ->
 *                     Linear(d, 1) per position ("head.*") -> logits
 *                     [B, N]; cross-entropy against the position 1 .. N-1
 *                     whose value is nearest the query's. Only attention
 *                     can bring the query's value to the other positions. */
#ifndef CLATTN_TOOLS_TRAIN_MODELS_H
#define CLATTN_TOOLS_TRAIN_MODELS_H

#include <clattn.h>

typedef enum train_task { TRAIN_REGRESSION = 0, TRAIN_CLASSIFIER = 1 } train_task;

typedef struct train_config {
    train_task task;
    int32_t batch;               /* B */
    int32_t seq_len;             /* L (regression) or N positions (classifier) */
    int32_t in_dim;              /* features per position: regression 10, classifier 2 */
    int32_t hidden;              /* regression: 5 */
    int32_t d_model, nhead, dim_ff, num_layers; /* classifier: 32, 4, 64, 2 */
} train_config;

/* The tutorial sizes: regression B 32, L 8, in 10, hidden 5; classifier
 * B 32, N 10, in 2, d 32, 4 heads, feed-forward 64, 2 layers. */
train_config train_config_default(train_task task);

typedef struct train_model train_model;

/* Builds the model on ctx (parameters zero until train_model_init or a
 * checkpoint load). On failure the message is in clattn_ctx_last_error. */
clattn_status train_model_create(clattn_ctx *ctx, const train_config *cfg, train_model **out);
void train_model_destroy(train_model *m);

/* PyTorch's default initialisation (Linear: U(+-1/sqrt(fan_in)) for weight
 * and bias; in_proj_weight: Xavier uniform; attention biases 0; LayerNorm
 * 1 and 0), drawn from a generator seeded with seed. */
clattn_status train_model_init(train_model *m, uint64_t seed);

/* The parameters with their state_dict names, value and gradient. */
int32_t train_model_params(train_model *m, const clattn_param_ref **refs);

/* One batch: x host [B * L * in_dim]; y host [B] targets
 * (regression) or [B] class indices. Computes the loss into *loss; with
 * train, keeps the activations and adds the gradients of every parameter
 * (zero them between steps). correct (classifier, may be NULL) receives
 * the number of rows whose largest logit is the target. */
clattn_status train_model_batch(train_model *m, const float *x, const float *y_reg,
                                const int64_t *y_cls, bool train, float *loss, int32_t *correct);

/* Generated data: a batch of inputs and targets from a seeded stream (the
 * tasks of make_train_fixtures.py). x as for train_model_batch; y_reg or
 * y_cls per task (the other may be NULL). *state is the generator state. */
void train_data_batch(const train_config *cfg, uint64_t *state, float *x, float *y_reg,
                      int64_t *y_cls);

#endif
