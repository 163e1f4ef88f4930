/* test_dropout.c - clattn_dropout and clattn_dropout_backward: the host
 * Philox4x32-10 against Random123's known-answer vectors, the device's
 * generator through dropout.cl's test kernel, the mask equal element by
 * element to the host's, kept values bit-identical to x * (float)(1 / (1 -
 * p)), the keep fraction, counters that wrap, the backward applying the
 * forward's mask, and bad p. Tolerances: layer_check.h. */
#include "layer_check.h" /* and nn/nn.h: the dropout program and kernel lookup */

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t kat[3][10] = {
    {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
     0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
     0x94fdcceb, 0x5001e420, 0x24126ea1},
};

static void test_philox(clattn_ctx *ctx)
{
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        philox_host(kat[v], kat[v] + 4, out);
        CHECK(memcmp(out, kat[v] + 6, sizeof out) == 0,
              "host philox4x32-10 KAT %d: got %08x %08x %08x %08x", v, out[0], out[1], out[2],
              out[3]);
    }
    /* The device's generator itself, all four words, through dropout.cl's
     * test kernel (counters with nonzero words 2 and 3, which dropout
     * never uses, included). */
    float in[18], outf[12];
    for (int v = 0; v < 3; v++)
        memcpy(in + 6 * v, kat[v], 6 * sizeof(uint32_t));
    int64_t s_in = 18, s_out = 12;
    clattn_tensor *I = test_tensor(ctx, 1, &s_in, in), *O = test_tensor(ctx, 1, &s_out, NULL);
    cl_program prog;
    cl_kernel k;
    CHECK_OK(clattn__program_get(ctx, &clattn__dropout_program, NULL, NULL, &prog));
    CHECK_OK(clattn__kernel_get(ctx, prog, "philox_test", &k));
    cl_int err = CLATTN_ARG(k, 0, I->mem);
    err |= CLATTN_ARG(k, 1, O->mem);
    CHECK(err == CL_SUCCESS, "philox_test arguments: %d", (int)err);
    size_t global = 3;
    CHECK_OK(clattn__enqueue(ctx, k, 1, &global, NULL, "philox_test"));
    read_into(O, outf);
    for (int v = 0; v < 3; v++) {
        uint32_t out[4];
        memcpy(out, outf + 4 * v, sizeof out);
        CHECK(memcmp(out, kat[v] + 6, sizeof out) == 0,
              "device philox4x32-10 KAT %d: got %08x %08x %08x %08x", v, out[0], out[1],
              out[2], out[3]);
    }
    clattn_tensor_destroy(I);
    clattn_tensor_destroy(O);
}

static void dropout_case(clattn_ctx *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                         bool in_place, bool backward)
{
    float *x = test_fvec(n), *got = test_fvec(n), *want = test_fvec(n);
    test_fill_uniform(x, n, -2, 2);
    float scale = p < 1.0f ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = host_dropped(i, p, seed, offset);
        want[i] = drop ? 0.0f : x[i] * scale;
        kept += !drop;
    }
    int64_t shape[2] = {1, (int64_t)n};
    clattn_tensor *X = test_tensor(ctx, 2, shape, x);
    clattn_tensor *Y = in_place ? X : test_tensor(ctx, 2, shape, NULL);
    if (backward)
        CHECK_OK(clattn_dropout_backward(ctx, X, p, seed, offset, Y));
    else
        CHECK_OK(clattn_dropout(ctx, X, p, seed, offset, Y));
    read_into(Y, got);
    char what[200];
    snprintf(what, sizeof what, "dropout%s n=%zu p=%g seed=%llx offset=%llx%s",
             backward ? "_backward" : "", n, (double)p, (unsigned long long)seed,
             (unsigned long long)offset, in_place ? " in place" : "");
    same_bits(what, got, want, n);
    /* The keep fraction is binomial(n, 1 - p): within 5 sigma (+1 for
     * the discreteness at small n). */
    double sd = sqrt((double)n * p * (1 - p));
    CHECK(fabs((double)kept - (double)n * (1 - p)) <= 5 * sd + 1,
          "%s: kept %zu of %zu, expected about %.1f", what, kept, n, (double)n * (1 - p));
    if (!in_place)
        clattn_tensor_destroy(Y);
    clattn_tensor_destroy(X);
    free(x);
    free(got);
    free(want);
}

static void test_dropout(clattn_ctx *ctx)
{
    test_philox(ctx);
    const size_t big = small ? 4099 : 100003;
    const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f, 1.0f};
    for (size_t i = 0; i < 5; i++)
        dropout_case(ctx, big, ps[i], 0x0123456789abcdefull, 0, i % 2 == 1, false);
    /* Counters whose high word changes inside the tensor, and wrap. */
    dropout_case(ctx, 1000, 0.3f, 42, 0xfffffe00ull, false, false);
    dropout_case(ctx, 1000, 0.3f, 0xffffffffffffffffull, 0xffffffffffffff00ull, false, true);
    dropout_case(ctx, 1, 0.5f, 7, 3, true, true);
    dropout_case(ctx, 17, 0.25f, 1ull << 40, 12345, false, true);
    dropout_case(ctx, 1000, 1e-9f, 5, 0, false, false); /* tiny p: threshold rounds up */

    /* The backward applies the forward's mask: dx = dy * keep * scale. */
    const size_t n = 513;
    float x[513], y[513], d[513];
    test_fill_uniform(x, n, -1, 1);
    int64_t s = (int64_t)n;
    clattn_tensor *X = test_tensor(ctx, 1, &s, x), *Y = test_tensor(ctx, 1, &s, NULL);
    CHECK_OK(clattn_dropout(ctx, X, 0.4f, 99, 1000, Y));
    CHECK_OK(clattn_dropout_backward(ctx, X, 0.4f, 99, 1000, X));
    read_into(Y, y);
    read_into(X, d);
    same_bits("dropout_backward of x equals dropout of x", d, y, n);
    /* Finite differences of L = sum dy * dropout(x): linear in x. */
    float dy[513], got[513];
    double g[513], bound[513];
    test_fill_uniform(dy, n, -1, 1);
    clattn_tensor *DY = test_tensor(ctx, 1, &s, dy);
    CHECK_OK(clattn_dropout_backward(ctx, DY, 0.4f, 99, 1000, DY));
    read_into(DY, got);
    float scale = (float)(1.0 / 0.6);
    for (size_t i = 0; i < n; i++) {
        /* y_i = x_i * m_i * scale (the float product, exact in double
         * arithmetic up to its one rounding): dL/dx_i = dy_i m_i scale. */
        double m = host_dropped(i, 0.4f, 99, 1000) ? 0.0 : (double)scale;
        double lp = dy[i] * ((x[i] + FD_H) * m), lm = dy[i] * ((x[i] - FD_H) * m);
        g[i] = (lp - lm) / (2 * FD_H);
        bound[i] = 2 * U * fabs(g[i]);
    }
    check_fd("dropout_backward vs finite differences", got, g, bound, n, 1.0);
    clattn_tensor_destroy(DY);

    /* Bad p. */
    const float bad[] = {-0.1f, 1.1f, NAN, INFINITY};
    for (size_t i = 0; i < 4; i++) {
        CHECK_STATUS(clattn_dropout(ctx, X, bad[i], 1, 0, Y), CLATTN_ERR_INVALID_ARG);
        CHECK_MSG("p = ");
        CHECK_STATUS(clattn_dropout_backward(ctx, X, bad[i], 1, 0, Y), CLATTN_ERR_INVALID_ARG);
        CHECK_STATUS(clattn_dropout_backward(ctx, X, bad[i], 1, 0, NULL), CLATTN_ERR_INVALID_ARG);
    }
    int64_t s2[2] = {1, (int64_t)n};
    clattn_tensor *Y2 = test_tensor(ctx, 2, s2, NULL);
    CHECK_STATUS(clattn_dropout(ctx, X, 0.5f, 1, 0, Y2), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[1, 513]");
    CHECK_STATUS(clattn_dropout(ctx, X, 0.5f, 1, 0, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_dropout(ctx, NULL, 0.5f, 1, 0, Y), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_dropout(NULL, X, 0.5f, 1, 0, Y), CLATTN_ERR_INVALID_ARG);
    clattn_tensor fx = foreign(X);
    CHECK_STATUS(clattn_dropout(ctx, &fx, 0.5f, 1, 0, Y), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("another context");
    CHECK_OK(clattn_dropout_backward(ctx, X, 0.5f, 1, 0, NULL));
    clattn_tensor_destroy(Y2);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(Y);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    test_dropout(ctx);
    return layer_test_finish(ctx, "test_dropout");
}
