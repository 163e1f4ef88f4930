/* test_loss.c - the training losses against double-precision C loops:
 * rows 1, 3, 17, 1000 times classes/features 1, 2, 10, 1000, values and
 * gradients, ignore_index (PyTorch's -100, a valid class index, every row
 * ignored), bad targets and bad arguments.
 *
 * Tolerances (u = 2^-24, the float32 unit roundoff):
 * - mse loss: d = p - t, d^2, Kahan sums per work-item and two trees of
 *   at most 8 levels each: about (3 + 2 + 16) u ~ 1.3e-6 relative, so
 *   rtol 2e-6. dpred = d * (2/n): 3 roundings, rtol 4e-7.
 * - cross-entropy, per row (m - x_t) + log(l): log and exp are allowed 3
 *   ulp in OpenCL and l carries (C/wg + 12) u, so a row is off by about
 *   u (|m - x_t| + 3 log l + C/wg + 15) <= 45 u ~ 3e-6 for logits in
 *   [-4, 4] and C <= 1000; the mean adds the sum's 20 u relative: atol
 *   3e-6 + rtol 2e-6. dlogits = (p - onehot) / nvalid with p off by
 *   ~(C/wg + 20) u relative: rtol 2e-6, atol 2e-6 / nvalid (the target
 *   entry p - 1 cancels).
 *
 * CLATTN_TEST_SMALL=1 drops the 1000-sized shapes (for oclgrind). */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool small = false; /* CLATTN_TEST_SMALL=1: no 1000-sized shapes (oclgrind) */

/* test_close, also keeping the largest share of its tolerance used by
 * any element in *worst (printed, so the margins can be seen in the log). */
static void close_tracked(const char *what, const float *got, const double *ref, size_t n,
                          double atol, double rtol, double *worst)
{
    for (size_t i = 0; i < n; i++) {
        double used = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs(ref[i]));
        if (used > *worst)
            *worst = used;
    }
    test_close(what, got, ref, n, atol, rtol);
}

static double worst_mse = 0, worst_ce = 0, worst_ce_grad = 0;

/* ======================================================================== */
/* Losses                                                                    */
/* ======================================================================== */

static void mse_case(clattn_ctx *ctx, int64_t rows, int64_t cols)
{
    size_t n = (size_t)(rows * cols);
    float *p = test_fvec(n), *t = test_fvec(n), *got = test_fvec(n);
    double *dref = test_dvec(n);
    test_fill_uniform(p, n, -3, 3);
    test_fill_uniform(t, n, -3, 3);
    t[0] = p[0]; /* an exact zero difference */
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)p[i] - t[i];
        s += d * d;
        dref[i] = 2 * d / (double)n;
    }
    double ref = s / (double)n;
    int64_t shape[2] = {rows, cols};
    clattn_tensor *P = test_tensor(ctx, 2, shape, p), *T = test_tensor(ctx, 2, shape, t);
    clattn_tensor *D = test_tensor(ctx, 2, shape, NULL);
    char what[96];
    float loss = NAN;
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_mse_loss(ctx, P, T, &loss, D));
    if (fabs(loss - ref) / (2e-6 * ref) > worst_mse)
        worst_mse = fabs(loss - ref) / (2e-6 * ref);
    CHECK(fabs(loss - ref) <= 2e-6 * ref, "mse [%lld, %lld]: loss %.9g, reference %.9g",
          (long long)rows, (long long)cols, (double)loss, ref);
    CHECK_OK(clattn_tensor_read(D, got));
    snprintf(what, sizeof what, "mse [%lld, %lld] dpred", (long long)rows, (long long)cols);
    test_close(what, got, dref, n, 1e-30, 4e-7);
    /* The loss alone, the gradient alone, and in place (dpred = pred). */
    float loss2 = NAN;
    CHECK_OK(clattn_mse_loss(ctx, P, T, &loss2, NULL));
    CHECK(loss2 == loss, "mse: the loss alone %.9g differs from %.9g", (double)loss2,
          (double)loss);
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_mse_loss(ctx, P, T, NULL, D));
    CHECK_OK(clattn_tensor_read(D, got));
    test_close(what, got, dref, n, 1e-30, 4e-7);
    CHECK_OK(clattn_mse_loss(ctx, P, T, NULL, P));
    CHECK_OK(clattn_tensor_read(P, got));
    snprintf(what, sizeof what, "mse [%lld, %lld] in place", (long long)rows, (long long)cols);
    test_close(what, got, dref, n, 1e-30, 4e-7);
    clattn_tensor_destroy(P);
    clattn_tensor_destroy(T);
    clattn_tensor_destroy(D);
    free(p);
    free(t);
    free(got);
    free(dref);
}

/* Cross-entropy reference in double; dref may be NULL. Returns the loss. */
static double ce_ref(const float *x, const int64_t *tg, int64_t ignore, size_t rows, size_t c,
                     double *dref)
{
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++)
        valid += tg[r] != ignore;
    double total = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * c;
        double m = -INFINITY, l = 0;
        for (size_t i = 0; i < c; i++)
            m = xr[i] > m ? xr[i] : m;
        for (size_t i = 0; i < c; i++)
            l += exp(xr[i] - m);
        bool ign = tg[r] == ignore;
        if (!ign)
            total += m + log(l) - xr[tg[r]];
        for (size_t i = 0; dref && i < c; i++)
            dref[r * c + i] = ign ? 0 : (exp(xr[i] - m) / l - (i == (size_t)tg[r])) / (double)valid;
    }
    return valid ? total / (double)valid : 0;
}

static void ce_case(clattn_ctx *ctx, int32_t ndim, const int64_t *shape, int64_t ignore,
                    int ignore_every, bool offsets)
{
    size_t c = (size_t)shape[ndim - 1], n = 1;
    for (int32_t i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    size_t rows = n / c;
    float *x = test_fvec(n), *got = test_fvec(n);
    double *dref = test_dvec(n);
    int64_t *tg = malloc(rows * sizeof *tg);
    test_fill_uniform(x, n, -4, 4);
    size_t valid = 0;
    for (size_t r = 0; r < rows; r++) {
        tg[r] = (int64_t)((r * 7 + 3) % c);
        if (ignore_every && r % (size_t)ignore_every == 0)
            tg[r] = ignore;
        valid += tg[r] != ignore;
        /* Shifted rows: softmax is shift-invariant, so these check that
         * nothing overflows or cancels (values stay within float range). */
        if (offsets && r % 3 == 1)
            for (size_t i = 0; i < c; i++)
                x[r * c + i] += (r % 2) ? 1000.0f : -1000.0f;
    }
    double ref = ce_ref(x, tg, ignore, rows, c, dref);
    clattn_tensor *X = test_tensor(ctx, ndim, shape, x), *D = test_tensor(ctx, ndim, shape, NULL);
    char what[160], sh[64];
    snprintf(sh, sizeof sh, "[%lld", (long long)shape[0]);
    for (int32_t i = 1; i < ndim; i++)
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), ", %lld", (long long)shape[i]);
    snprintf(what, sizeof what, "cross_entropy %s] ignore %lld every %d, valid %zu", sh,
             (long long)ignore, ignore_every, valid);
    float loss = NAN;
    CHECK_OK(clattn_tensor_fill(D, NAN));
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, &loss, D));
    if (fabs(loss - ref) / (3e-6 + 2e-6 * fabs(ref)) > worst_ce)
        worst_ce = fabs(loss - ref) / (3e-6 + 2e-6 * fabs(ref));
    CHECK(fabs(loss - ref) <= 3e-6 + 2e-6 * fabs(ref), "%s: loss %.9g, reference %.9g", what,
          (double)loss, ref);
    CHECK_OK(clattn_tensor_read(D, got));
    double nv = valid ? (double)valid : 1;
    close_tracked(what, got, dref, n, 2e-6 / nv, 2e-6, &worst_ce_grad);
    /* The loss alone; the gradient alone, in place (dlogits = logits). */
    float loss2 = NAN;
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, &loss2, NULL));
    CHECK(loss2 == loss, "%s: the loss alone %.9g differs from %.9g", what, (double)loss2,
          (double)loss);
    CHECK_OK(clattn_cross_entropy_loss(ctx, X, tg, ignore, NULL, X));
    CHECK_OK(clattn_tensor_read(X, got));
    test_close(what, got, dref, n, 2e-6 / nv, 2e-6);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(D);
    free(x);
    free(got);
    free(dref);
    free(tg);
}

static void test_losses(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 1000}, cls[] = {1, 2, 10, 1000};
    size_t n_sizes = small ? 3 : 4;
    for (size_t i = 0; i < n_sizes; i++) {
        for (size_t j = 0; j < n_sizes; j++) {
            int64_t shape[2] = {rows[i], cls[j]};
            mse_case(ctx, rows[i], cls[j]);
            ce_case(ctx, 2, shape, -100, 0, false);
            ce_case(ctx, 2, shape, -100, 4, true);
        }
    }
    /* 4-D logits; ignore_index that is also a valid class; every row ignored. */
    int64_t s4[4] = {2, 3, 5, 7}, s2[2] = {17, 10}, s1[1] = {10};
    ce_case(ctx, 4, s4, 2, 0, false); /* targets (7r + 3) % 7 hit class 2 sometimes */
    ce_case(ctx, 2, s2, 5, 1, false); /* all ignored: loss 0, dlogits 0 */
    ce_case(ctx, 1, s1, -100, 0, false);
    int64_t s3[3] = {3, 5, 113};
    mse_case(ctx, 1, 113);
    ce_case(ctx, 3, s3, -1, 3, true);

    /* Bad targets: an error naming position and value; dlogits untouched. */
    float x[30], got[30];
    test_fill_uniform(x, 30, -1, 1);
    int64_t shape[2] = {3, 10}, tg[3] = {0, 9, 10};
    clattn_tensor *X = test_tensor(ctx, 2, shape, x), *D = test_tensor(ctx, 2, shape, NULL);
    CHECK_OK(clattn_tensor_fill(D, 7.0f));
    float loss = 42.0f;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[2] = 10");
    tg[2] = 0;
    tg[1] = -1;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[1] = -1");
    tg[1] = -100;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -1, &loss, D), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("targets[1] = -100");
    CHECK(loss == 42.0f, "loss written on failure");
    CHECK_OK(clattn_tensor_read(D, got));
    bool untouched = true;
    for (int i = 0; i < 30; i++)
        untouched = untouched && got[i] == 7.0f;
    CHECK(untouched, "cross_entropy_loss with a bad target wrote to dlogits");
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, NULL, -100, &loss, D), CLATTN_ERR_INVALID_ARG);
    int64_t s_other[2] = {10, 3};
    clattn_tensor *O = test_tensor(ctx, 2, s_other, NULL);
    tg[1] = 1;
    CHECK_STATUS(clattn_cross_entropy_loss(ctx, X, tg, -100, &loss, O), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[10, 3]");
    CHECK_STATUS(clattn_mse_loss(ctx, X, O, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[10, 3]");
    CHECK_STATUS(clattn_mse_loss(ctx, X, X, &loss, O), CLATTN_ERR_INVALID_ARG);
    fprintf(stderr, "losses: worst share of the tolerance used: mse %.2f, cross-entropy %.2f, "
            "dlogits %.2f\n", worst_mse, worst_ce, worst_ce_grad);
    CHECK_STATUS(clattn_mse_loss(NULL, X, X, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_mse_loss(ctx, NULL, X, &loss, NULL), CLATTN_ERR_INVALID_ARG);
    CHECK_OK(clattn_mse_loss(ctx, X, X, NULL, NULL)); /* nothing asked: nothing done */
    CHECK_OK(clattn_mse_loss(ctx, X, X, &loss, NULL));
    CHECK(loss == 0.0f, "mse of x with itself: %g", (double)loss);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(D);
    clattn_tensor_destroy(O);
}

int main(void)
{
    const char *s = getenv("CLATTN_TEST_SMALL");
    small = s && *s && strcmp(s, "0") != 0;
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    test_losses(ctx);
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    return test_summary("test_loss");
}
