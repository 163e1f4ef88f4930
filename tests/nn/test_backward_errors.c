/* test_backward_errors.c - every argument error the layer backward ops
 * (linear, activation, layer norm, softmax, sequence mean) promise in
 * include/clattn.h: NULL arguments, shapes, aliasing, other contexts,
 * views, each with its status and message. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_errors(clattn_ctx *ctx)
{
    const clattn_status E = CLATTN_ERR_INVALID_ARG;
    int64_t s_x[2] = {3, 7}, s_w[2] = {5, 7}, s_dy[2] = {3, 5}, s_wbad[2] = {5, 6}, s5 = 5,
            s7 = 7, s4 = 4, s_x3[3] = {3, 1, 7}, s_dy4[2] = {4, 5};
    clattn_tensor *X = test_tensor(ctx, 2, s_x, NULL), *W = test_tensor(ctx, 2, s_w, NULL);
    clattn_tensor *DY = test_tensor(ctx, 2, s_dy, NULL), *Wb = test_tensor(ctx, 2, s_wbad, NULL);
    clattn_tensor *DX = test_tensor(ctx, 2, s_x, NULL), *DW = test_tensor(ctx, 2, s_w, NULL);
    clattn_tensor *B5 = test_tensor(ctx, 1, &s5, NULL), *V7 = test_tensor(ctx, 1, &s7, NULL);
    clattn_tensor *V4 = test_tensor(ctx, 1, &s4, NULL), *X3 = test_tensor(ctx, 3, s_x3, NULL);
    clattn_tensor *DY4 = test_tensor(ctx, 2, s_dy4, NULL), *X2 = test_tensor(ctx, 2, s_x, NULL);
    clattn_tensor *V7b = test_tensor(ctx, 1, &s7, NULL);
    clattn_tensor *all[] = {X, W, DY, Wb, DX, DW, B5, V7, V4, X3, DY4, X2, V7b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CHECK_OK(clattn_tensor_fill(all[i], 0.5f));
    clattn_tensor fx = foreign(X);

    /* linear_backward */
    CHECK_STATUS(clattn_linear_backward(NULL, X, W, DY, DX, DW, B5, false), E);
    CHECK_STATUS(clattn_linear_backward(ctx, NULL, W, DY, DX, DW, B5, false), E);
    CHECK_MSG("x is NULL");
    CHECK_STATUS(clattn_linear_backward(ctx, X, NULL, DY, DX, DW, B5, false), E);
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, NULL, DX, DW, B5, false), E);
    CHECK_MSG("dy is NULL");
    CHECK_STATUS(clattn_linear_backward(ctx, &fx, W, DY, DX, DW, B5, false), E);
    CHECK_MSG("another context");
    CHECK_STATUS(clattn_linear_backward(ctx, X, Wb, DY, DX, NULL, NULL, false), E);
    CHECK_MSG("[5, 6]");
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY4, NULL, NULL, B5, false), E);
    CHECK_MSG("[4, 5]");
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, X3, NULL, NULL, false), E);
    CHECK_MSG("[3, 1, 7]");
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, NULL, Wb, NULL, false), E);
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, NULL, NULL, V4, false), E);
    CHECK_MSG("db [4]");
    CHECK_STATUS(clattn_linear_backward(ctx, V7, W, DY, NULL, NULL, B5, false), E); /* 1-D x */
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, X, NULL, NULL, false), E);
    CHECK_MSG("dx must not alias");
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, NULL, W, NULL, false), E);
    CHECK_MSG("dw must not alias");
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, NULL, NULL, B5, false), CLATTN_OK);
    clattn_tensor *DYv;
    CHECK_OK(clattn_tensor_view(DY, 1, (int64_t[]){15}, &DYv));
    CHECK_STATUS(clattn_linear_backward(ctx, X, W, DY, NULL, NULL, DYv, false), E); /* a view */
    clattn_tensor_destroy(DYv);
    CHECK_OK(clattn_linear_backward(ctx, X, W, DY, NULL, NULL, NULL, false));

    /* activation_backward */
    CHECK_STATUS(clattn_activation_backward(ctx, X, CLATTN_ACT_GELU, DY, DX), E);
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_activation_backward(ctx, X, CLATTN_ACT_GELU, X2, DY), E);
    CHECK_MSG("dx [3, 5]");
    CHECK_STATUS(clattn_activation_backward(ctx, X, (clattn_activation)5, X2, DX), E);
    CHECK_MSG("unknown activation");
    CHECK_STATUS(clattn_activation_backward(ctx, X, CLATTN_ACT_SILU, X2, X), E);
    CHECK_MSG("dx must not alias x");
    CHECK_STATUS(clattn_activation_backward(ctx, NULL, CLATTN_ACT_SILU, X2, DX), E);
    CHECK_STATUS(clattn_activation_backward(ctx, X, CLATTN_ACT_SILU, NULL, DX), E);
    CHECK_STATUS(clattn_activation_backward(ctx, X, CLATTN_ACT_SILU, &fx, DX), E);
    CHECK_OK(clattn_activation_backward(ctx, X, CLATTN_ACT_NONE, X2, DX)); /* a copy */

    /* layer_norm_backward */
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, B5, 1e-5f, X2, DX, NULL, NULL, false), E);
    CHECK_MSG("gamma [5]");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, DX, B5, NULL, false), E);
    CHECK_MSG("dgamma [5]");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, DX, NULL, V4, false), E);
    CHECK_MSG("dbeta [4]");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, DY, DX, NULL, NULL, false), E);
    CHECK_MSG("dy [3, 5]");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, X3, NULL, NULL, false), E);
    CHECK_MSG("dx [3, 1, 7]");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, NULL, 1e-5f, X2, DX, V7, NULL, false), E);
    CHECK_MSG("dgamma needs gamma");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, -1.0f, X2, DX, NULL, NULL, false), E);
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, NAN, X2, DX, NULL, NULL, false), E);
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, X, NULL, NULL, false), E);
    CHECK_MSG("dx must not alias x");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, DX, V7, NULL, false), E);
    CHECK_MSG("dgamma must not alias");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, DX, V7b, V7b, false), E);
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, DX, NULL, V7, false), E);
    CHECK_MSG("dbeta must not alias");
    CHECK_STATUS(clattn_layer_norm_backward(ctx, NULL, V7, 1e-5f, X2, DX, NULL, NULL, false), E);
    CHECK_STATUS(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, &fx, DX, NULL, NULL, false), E);
    CHECK_OK(clattn_layer_norm_backward(ctx, X, V7, 1e-5f, X2, NULL, NULL, NULL, false));

    /* softmax_backward */
    CHECK_STATUS(clattn_softmax_backward(ctx, X, DY, DX), E);
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_softmax_backward(ctx, X, X2, X3), E);
    CHECK_MSG("[3, 1, 7]");
    CHECK_STATUS(clattn_softmax_backward(ctx, X, X2, X), E);
    CHECK_MSG("dx must not alias y");
    CHECK_STATUS(clattn_softmax_backward(ctx, NULL, X2, DX), E);
    CHECK_STATUS(clattn_softmax_backward(ctx, X, &fx, DX), E);

    /* sequence mean */
    CHECK_STATUS(clattn_sequence_mean(ctx, X, DY), E); /* 2-D x */
    CHECK_MSG("[B, N, E]");
    CHECK_STATUS(clattn_sequence_mean(ctx, X3, DY), E); /* y [3, 5] for E 7 */
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_sequence_mean(ctx, X3, NULL), E);
    CHECK_STATUS(clattn_sequence_mean(ctx, &fx, X), E);
    CHECK_OK(clattn_sequence_mean(ctx, X3, X2)); /* [3, 1, 7] -> [3, 7] */
    clattn_tensor *X3v;
    CHECK_OK(clattn_tensor_view(X3, 2, s_x, &X3v));
    CHECK_STATUS(clattn_sequence_mean(ctx, X3, X3v), E); /* y is x's buffer */
    CHECK_MSG("must not alias");
    CHECK_STATUS(clattn_sequence_mean_backward(ctx, X2, X3v), E);
    CHECK_STATUS(clattn_sequence_mean_backward(ctx, DY, X3), E);
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_sequence_mean_backward(ctx, X3, NULL), E);
    CHECK_STATUS(clattn_sequence_mean_backward(ctx, NULL, X3), E);
    CHECK_OK(clattn_sequence_mean_backward(ctx, X2, NULL));
    CHECK_OK(clattn_sequence_mean_backward(ctx, X2, X3));
    clattn_tensor_destroy(X3v);

    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    test_errors(ctx);
    return layer_test_finish(ctx, "test_backward_errors");
}
