/* bench_dispatch.c - the host cost of one op call: argument checks, the
 * kernel lookup, setting arguments and enqueueing, measured on tensors of
 * a few elements so that the kernels themselves take almost nothing. The
 * small-shape workloads (short-text embeddings, decoding one token) make
 * hundreds of such calls per step. */
#include "bench_dispatch.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The tiny operands every op below runs on. */
typedef struct dispatch_tensors {
    clattn_tensor *x, *y;   /* [1, 8] */
    clattn_tensor *w;       /* [8, 8] */
    clattn_tensor *gamma;   /* [8] */
    clattn_tensor *q, *out; /* [1, 1, 4, 8] (q doubles as k and v) */
} dispatch_tensors;

typedef enum { OP_ADD, OP_GELU, OP_LAYER_NORM, OP_SOFTMAX, OP_LINEAR, OP_SDPA, OP_COUNT } op_id;
static const char *const OP_NAMES[OP_COUNT] = {"add", "gelu", "layer_norm", "softmax",
                                               "linear", "sdpa"};

static clattn_status call_op(clattn_ctx *ctx, const dispatch_tensors *t, op_id op,
                             const clattn_sdpa_params *sp)
{
    switch (op) {
    case OP_ADD: return clattn_add(ctx, t->x, t->x, t->y);
    case OP_GELU: return clattn_activation_apply(ctx, t->x, CLATTN_ACT_GELU, t->y);
    case OP_LAYER_NORM: return clattn_layer_norm(ctx, t->x, t->gamma, t->gamma, 1e-5f, t->y);
    case OP_SOFTMAX: return clattn_softmax(ctx, t->x, t->y);
    case OP_LINEAR: return clattn_linear(ctx, t->x, t->w, t->gamma, CLATTN_ACT_NONE, t->y);
    case OP_SDPA: return clattn_sdpa(ctx, t->q, t->q, t->q, t->out, sp);
    default: return CLATTN_ERR_INVALID_ARG;
    }
}

static clattn_status make(clattn_ctx *ctx, int32_t ndim, const int64_t *shape, clattn_tensor **t)
{
    clattn_status st = clattn_tensor_create(ctx, ndim, shape, t);
    return st == CLATTN_OK ? clattn_tensor_fill(*t, 0.25f) : st;
}

clattn_status bench_dispatch(clattn_ctx *ctx, int calls, int reps, bool json)
{
    dispatch_tensors t = {0};
    const int64_t s_x[2] = {1, 8}, s_w[2] = {8, 8}, s_g[1] = {8}, s_q[4] = {1, 1, 4, 8};
    clattn_status st = make(ctx, 2, s_x, &t.x);
    if (st == CLATTN_OK) st = make(ctx, 2, s_x, &t.y);
    if (st == CLATTN_OK) st = make(ctx, 2, s_w, &t.w);
    if (st == CLATTN_OK) st = make(ctx, 1, s_g, &t.gamma);
    if (st == CLATTN_OK) st = make(ctx, 4, s_q, &t.q);
    if (st == CLATTN_OK) st = make(ctx, 4, s_q, &t.out);
    clattn_sdpa_params sp = clattn_sdpa_params_default();
    double best_us[OP_COUNT];
    for (int op = 0; op < OP_COUNT && st == CLATTN_OK; op++) {
        /* A warm-up batch compiles and allocates; then the best of reps
         * batches, since the machine's speed only ever adds time. */
        best_us[op] = INFINITY;
        for (int r = 0; r <= reps && st == CLATTN_OK; r++) {
            double t0 = now_s();
            for (int i = 0; i < calls && st == CLATTN_OK; i++)
                st = call_op(ctx, &t, (op_id)op, &sp);
            if (st == CLATTN_OK)
                st = clattn_ctx_finish(ctx);
            if (r > 0)
                best_us[op] = fmin(best_us[op], (now_s() - t0) * 1e6 / calls);
        }
    }
    if (st == CLATTN_OK) {
        if (json) {
            printf("{\"bench\": \"dispatch\", \"calls\": %d, \"reps\": %d", calls, reps);
            for (int op = 0; op < OP_COUNT; op++)
                printf(", \"%s_us\": %.3f", OP_NAMES[op], best_us[op]);
            printf("}\n");
        } else {
            printf("host cost per call on [1, 8] tensors (best of %d batches of %d calls, "
                   "finished once per batch):\n", reps, calls);
            for (int op = 0; op < OP_COUNT; op++)
                printf("  %-10s %8.3f us\n", OP_NAMES[op], best_us[op]);
        }
    }
    clattn_tensor_destroy(t.x);
    clattn_tensor_destroy(t.y);
    clattn_tensor_destroy(t.w);
    clattn_tensor_destroy(t.gamma);
    clattn_tensor_destroy(t.q);
    clattn_tensor_destroy(t.out);
    return st;
}
