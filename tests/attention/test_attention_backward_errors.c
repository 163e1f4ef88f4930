/* test_attention_backward_errors.c - clattn_sdpa_backward's argument
 * errors: every check the header promises (shapes, dtypes of the forward's
 * outputs, aliasing, bias gradients, contexts), each with its status and
 * message. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void error_cases(clattn_ctx *ctx)
{
    int64_t sq[4] = {2, 4, 5, 8}, sk[4] = {2, 2, 6, 8}, sv[4] = {2, 2, 6, 4};
    int64_t so[4] = {2, 4, 5, 4}, sl[3] = {2, 4, 5}, sbad[4] = {2, 4, 5, 5}, sl_bad[3] = {2, 4, 6};
    int64_t sbias[2] = {5, 6}, sbias_bad[2] = {1, 6};
    clattn_tensor *q = test_tensor(ctx, 4, sq, NULL), *k = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *v = test_tensor(ctx, 4, sv, NULL), *o = test_tensor(ctx, 4, so, NULL);
    clattn_tensor *lse = test_tensor(ctx, 3, sl, NULL), *dout = test_tensor(ctx, 4, so, NULL);
    clattn_tensor *dq = test_tensor(ctx, 4, sq, NULL), *dk = test_tensor(ctx, 4, sk, NULL);
    clattn_tensor *dv = test_tensor(ctx, 4, sv, NULL), *bad = test_tensor(ctx, 4, sbad, NULL);
    clattn_tensor *lse_bad = test_tensor(ctx, 3, sl_bad, NULL);
    clattn_tensor *bias = test_tensor(ctx, 2, sbias, NULL);
    clattn_tensor *db = test_tensor(ctx, 2, sbias, NULL);
    clattn_tensor *db_bad = test_tensor(ctx, 2, sbias_bad, NULL);
    clattn_tensor_fill(o, 0.0f);
    clattn_tensor_fill(lse, 0.0f);
    clattn_tensor_fill(dout, 0.0f);
    clattn_tensor_fill(q, 0.5f);
    clattn_tensor_fill(k, 0.5f);
    clattn_tensor_fill(v, 0.5f);
    clattn_tensor_fill(bias, 0.0f);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    clattn_sdpa_grads g = {dq, dk, dv, NULL};

    /* score_mod has no derivative: refused, also through a preset. */
    p.score_mod = "score * 2.0f";
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_UNSUPPORTED);
    CHECK(strstr(clattn_last_error(), "score_mod") != NULL, "message: %s", clattn_last_error());
    p = clattn_sdpa_params_default();
    clattn_sdpa_preset_softcap(&p, 5.0f);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_UNSUPPORTED);
    p = clattn_sdpa_params_default();

    /* Missing or misshapen arguments. */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, NULL, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "lse") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse_bad, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "lse [2, 4, 6]") != NULL, "message: %s",
          clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, NULL, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, bad, &p, &g), CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "dout") != NULL, "message: %s", clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, NULL),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, bad, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "sdpa_backward: out") != NULL, "message: %s",
          clattn_last_error());
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, q, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_sdpa_backward(NULL, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    clattn_sdpa_grads gb = {bad, NULL, NULL, NULL}; /* dq of the wrong shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "grads->dq [2, 4, 5, 5]") != NULL, "message: %s",
          clattn_last_error());
    gb = (clattn_sdpa_grads){NULL, dv, NULL, NULL}; /* dk with v's shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db}; /* dbias without a bias */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "dbias") != NULL, "message: %s", clattn_last_error());
    p.bias = bias;
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db_bad}; /* dbias not the bias's shape */
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, db};
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb));
    p = clattn_sdpa_params_default();

    /* Aliasing: a gradient over an input, or two gradients in one tensor. */
    gb = (clattn_sdpa_grads){q, NULL, NULL, NULL};
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "alias") != NULL, "message: %s", clattn_last_error());
    gb = (clattn_sdpa_grads){NULL, dk, dk, NULL};
    int64_t sv8[4] = {2, 2, 6, 8};
    clattn_tensor *v8 = test_tensor(ctx, 4, sv8, NULL);
    int64_t so8[4] = {2, 4, 5, 8};
    clattn_tensor *o8 = test_tensor(ctx, 4, so8, NULL), *do8 = test_tensor(ctx, 4, so8, NULL);
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v8, o8, lse, do8, &p, &gb),
                 CLATTN_ERR_INVALID_ARG);

    /* The forward's parameter checks apply. */
    p.window_left = -2;
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    p = clattn_sdpa_params_default();
    int32_t kv_bad[2] = {3, 7};
    p.kv_len = kv_bad;
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g),
                 CLATTN_ERR_INVALID_ARG);
    CHECK(strstr(clattn_last_error(), "kv_len[1] = 7") != NULL, "message: %s",
          clattn_last_error());
    p = clattn_sdpa_params_default();
    p.mask_mod = "q_idx >";
    CHECK_STATUS(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &g), CLATTN_ERR_BUILD);

    /* Nothing asked for: fine, nothing done; the context still works. */
    p = clattn_sdpa_params_default();
    gb = (clattn_sdpa_grads){NULL, NULL, NULL, NULL};
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, &p, &gb));
    CHECK_OK(clattn_sdpa_backward(ctx, q, k, v, o, lse, dout, NULL, &g));
    CHECK_OK(clattn_ctx_finish(ctx));

    clattn_tensor *all[] = {q, k, v, o, lse, dout, dq, dk, dv, bad, lse_bad, bias, db, db_bad,
                            v8, o8, do8};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

int main(void)
{
    test_seed(2025);
    clattn_ctx *ctx = test_ctx();
    error_cases(ctx);
    clattn_ctx_destroy(ctx);
    return test_summary("test_attention_backward_errors");
}
