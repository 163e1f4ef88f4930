/* bench_train.c - see bench_train.h. */
#include "bench_train.h"

#include <stdlib.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

clattn_status bench_train_step(clattn_ctx *ctx, const train_config *c, int reps, double *best_ms)
{
    train_model *m = NULL;
    clattn_optimizer *opt = NULL;
    const clattn_param_ref *refs;
    size_t nx = (size_t)c->batch * c->seq_len * c->in_dim;
    float *x = malloc(nx * sizeof *x), *y = malloc((size_t)c->batch * sizeof *y);
    int64_t *yc = malloc((size_t)c->batch * sizeof *yc);
    clattn_status st = x && y && yc ? train_model_create(ctx, c, &m) : CLATTN_ERR_OUT_OF_MEMORY;
    if (st == CLATTN_OK)
        st = train_model_init(m, 1);
    int32_t n = st == CLATTN_OK ? train_model_params(m, &refs) : 0;
    clattn_optimizer_params op = clattn_optimizer_params_default(CLATTN_OPTIM_ADAM);
    if (st == CLATTN_OK)
        st = clattn_optimizer_create(ctx, &op, n, refs, &opt);
    uint64_t state = 1;
    *best_ms = 1e300;
    for (int r = 0; r <= reps && st == CLATTN_OK; r++) {
        train_data_batch(c, &state, x, y, yc);
        double t0 = now_ms();
        float loss;
        st = clattn_optimizer_zero_grad(opt);
        if (st == CLATTN_OK)
            st = train_model_batch(m, x, y, yc, true, &loss, NULL);
        if (st == CLATTN_OK)
            st = clattn_optimizer_step(opt);
        if (st == CLATTN_OK)
            st = clattn_ctx_finish(ctx);
        double dt = now_ms() - t0;
        if (r > 0 && dt < *best_ms) /* step 0 warms up (kernel builds, buffers) */
            *best_ms = dt;
    }
    clattn_optimizer_destroy(opt);
    train_model_destroy(m);
    free(x);
    free(y);
    free(yc);
    return st;
}

clattn_status bench_train_lm_step(clattn_ctx *ctx, const clattn_llama_config *c, int32_t B,
                                  int32_t T, int reps, double *best_ms)
{
    clattn_llama *m = NULL;
    clattn_optimizer *opt = NULL;
    clattn_tensor *logits = NULL; /* [B, T, V]; the loss's gradient replaces it */
    clattn_param_ref *refs = NULL;
    size_t rows = (size_t)B * (size_t)T;
    int64_t *ids = malloc(rows * sizeof *ids), *labels = malloc(rows * sizeof *labels);
    clattn_status st = ids && labels ? clattn_llama_create(ctx, c, 1, &m)
                                     : CLATTN_ERR_OUT_OF_MEMORY;
    int32_t n = st == CLATTN_OK ? clattn_llama_param_refs(m, NULL, 0) : 0;
    if (st == CLATTN_OK && !(refs = calloc((size_t)n, sizeof *refs)))
        st = CLATTN_ERR_OUT_OF_MEMORY;
    if (st == CLATTN_OK)
        clattn_llama_param_refs(m, refs, n);
    clattn_optimizer_params op = clattn_optimizer_params_default(CLATTN_OPTIM_ADAMW);
    if (st == CLATTN_OK)
        st = clattn_optimizer_create(ctx, &op, n, refs, &opt);
    int64_t shape[3] = {B, T, c->vocab_size};
    if (st == CLATTN_OK)
        st = clattn_tensor_create(ctx, 3, shape, &logits);
    uint64_t state = 1;
    for (size_t i = 0; i < rows; i++) { /* LCG ids: the benchmark needs no real text */
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = labels[i] = (int64_t)((state >> 33) % (uint64_t)c->vocab_size);
    }
    *best_ms = 1e300;
    for (int r = 0; r <= reps && st == CLATTN_OK; r++) {
        double t0 = now_ms();
        float loss;
        st = clattn_optimizer_zero_grad(opt);
        if (st == CLATTN_OK)
            st = clattn_llama_train_forward(m, ids, B, T, logits);
        if (st == CLATTN_OK)
            st = clattn_causal_lm_loss(ctx, logits, labels, -100, &loss, logits);
        if (st == CLATTN_OK)
            st = clattn_llama_backward(m, logits);
        if (st == CLATTN_OK)
            st = clattn_optimizer_step(opt);
        if (st == CLATTN_OK)
            st = clattn_ctx_finish(ctx);
        double dt = now_ms() - t0;
        if (r > 0 && dt < *best_ms) /* step 0 warms up (kernel builds, buffers) */
            *best_ms = dt;
    }
    clattn_tensor_destroy(logits);
    clattn_optimizer_destroy(opt);
    clattn_llama_destroy(m);
    free(refs);
    free(ids);
    free(labels);
    return st;
}
