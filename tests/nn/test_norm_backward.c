/* test_norm_backward.c - the row-normalising ops' backward beyond the op
 * table's plain sweep (test_layer_ops): layer norm with and without
 * gamma, accumulation, dx over dy, output subsets, large-mean small-spread
 * rows (the recomputed statistics must be the forward's corrected
 * two-pass ones), a non-unit spread under finite differences, and bitwise
 * determinism; softmax from host-rounded and device y, in place, wide and
 * near one-hot rows. Tolerances: layer_check.h. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ln_fd_t {
    double *x, *g, *b, *dy, *y, eps;
    size_t rows, e;
} ln_fd_t;

static double ln_loss(void *u)
{
    ln_fd_t *p = u;
    ln_fwd(p->x, p->g, p->b, p->rows, p->e, p->eps, p->y);
    double l = 0;
    for (size_t i = 0; i < p->rows * p->e; i++)
        l += p->dy[i] * p->y[i];
    return l;
}

/* One case. mean/std: the data's offset and spread; affine: gamma given;
 * want_*: which outputs; in_place: dx is dy; acc: accumulate; fd: also
 * check against finite differences. */
static void layer_norm_case(clattn_ctx *ctx, int64_t rows, int64_t e, double mean, double std,
                            bool affine, bool want_dx, bool want_dg, bool want_db, bool in_place,
                            bool acc, bool fd)
{
    size_t n = (size_t)(rows * e), ne = (size_t)e;
    float *x = test_fvec(n), *dy = test_fvec(n), *gam = test_fvec(ne), *bet = test_fvec(ne), *dg0 = test_fvec(ne),
          *db0 = test_fvec(ne), *got = test_fvec(n);
    float half = (float)(std * sqrt(3.0));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(mean + test_uniform(-half, half));
    test_fill_uniform(dy, n, -1, 1);
    test_fill_uniform(gam, ne, 0.5f, 1.5f);
    test_fill_uniform(bet, ne, -1, 1);
    test_fill_uniform(dg0, ne, -2, 2);
    test_fill_uniform(db0, ne, -2, 2);
    const float eps = 1e-5f;
    double *rdx = test_dvec(n), *bdx = test_dvec(n), *rdg = test_dvec(ne), *bdg = test_dvec(ne), *rdb = test_dvec(ne),
           *bdb = test_dvec(ne);
    ln_ref(x, affine ? gam : NULL, dy, (size_t)rows, ne, eps, acc ? dg0 : NULL, acc ? db0 : NULL,
           rdx, bdx, rdg, bdg, rdb, bdb);
    int64_t shape[2] = {rows, e};
    clattn_tensor *X = test_tensor(ctx, 2, shape, x), *DY = test_tensor(ctx, 2, shape, dy);
    clattn_tensor *G = affine ? test_tensor(ctx, 1, &e, gam) : NULL;
    clattn_tensor *DX = !want_dx ? NULL : in_place ? DY : test_tensor(ctx, 2, shape, NULL);
    clattn_tensor *DG = want_dg ? test_tensor(ctx, 1, &e, acc ? dg0 : NULL) : NULL;
    clattn_tensor *DB = want_db ? test_tensor(ctx, 1, &e, acc ? db0 : NULL) : NULL;
    if (DX && !in_place)
        CHECK_OK(clattn_tensor_fill(DX, NAN));
    if (DG && !acc)
        CHECK_OK(clattn_tensor_fill(DG, NAN));
    if (DB && !acc)
        CHECK_OK(clattn_tensor_fill(DB, NAN));
    CHECK_OK(clattn_layer_norm_backward(ctx, X, G, eps, DY, DX, DG, DB, acc));
    char what[200], w2[240];
    snprintf(what, sizeof what, "layer_norm_backward [%lld, %lld] mean %g std %g%s%s%s",
             (long long)rows, (long long)e, mean, std, affine ? " gamma" : "",
             in_place ? " in place" : "", acc ? " accumulate" : "");
    if (DX) {
        read_into(DX, got);
        snprintf(w2, sizeof w2, "%s: dx", what);
        close_bound(W_LN, w2, got, rdx, bdx, n);
    }
    if (DG) {
        read_into(DG, got);
        snprintf(w2, sizeof w2, "%s: dgamma", what);
        close_bound(W_COL, w2, got, rdg, bdg, ne);
    }
    if (DB) {
        read_into(DB, got);
        snprintf(w2, sizeof w2, "%s: dbeta", what);
        close_bound(W_COL, w2, got, rdb, bdb, ne);
    }
    if (fd && DX && !in_place && !acc) {
        ln_fd_t p = {test_dvec(n), affine ? test_dvec(ne) : NULL, test_dvec(ne), test_dvec(n), test_dvec(n), eps,
                     (size_t)rows, ne};
        to_double(x, p.x, n);
        if (affine)
            to_double(gam, p.g, ne);
        to_double(bet, p.b, ne);
        to_double(dy, p.dy, n);
        double *g = test_dvec(n);
        fd_grad(ln_loss, &p, p.x, n, FD_H * std, g);
        read_into(DX, got);
        snprintf(w2, sizeof w2, "%s: dx vs finite differences", what);
        check_fd(w2, got, g, bdx, n, 1.0 / std);
        if (DG) {
            fd_grad(ln_loss, &p, p.g, ne, FD_H, g);
            read_into(DG, got);
            snprintf(w2, sizeof w2, "%s: dgamma vs finite differences", what);
            check_fd(w2, got, g, bdg, ne, (double)rows);
        }
        if (DB) {
            fd_grad(ln_loss, &p, p.b, ne, FD_H, g);
            read_into(DB, got);
            snprintf(w2, sizeof w2, "%s: dbeta vs finite differences", what);
            check_fd(w2, got, g, bdb, ne, (double)rows);
        }
        free(g);
        free(p.x);
        free(p.g);
        free(p.b);
        free(p.dy);
        free(p.y);
    }
    if (DX && !in_place)
        clattn_tensor_destroy(DX);
    clattn_tensor *ts[] = {X, DY, G, DG, DB};
    for (size_t i = 0; i < 5; i++)
        clattn_tensor_destroy(ts[i]);
    free(x);
    free(dy);
    free(gam);
    free(bet);
    free(dg0);
    free(db0);
    free(got);
    free(rdx);
    free(bdx);
    free(rdg);
    free(bdg);
    free(rdb);
    free(bdb);
}

/* Two identical calls give identical bits (no atomics, fixed orders). */
static void layer_norm_deterministic(clattn_ctx *ctx)
{
    const int64_t rows = small ? 17 : 113, e = 130; /* oclgrind: 17 */
    int64_t shape[2] = {rows, e};
    size_t n = (size_t)(rows * e);
    float *x = test_fvec(n), *dy = test_fvec(n), *a = test_fvec(n), *b = test_fvec(n), g[130], ga[130], gb[130];
    test_fill_uniform(x, n, -3, 3);
    test_fill_uniform(dy, n, -1, 1);
    test_fill_uniform(g, 130, 0.5f, 1.5f);
    clattn_tensor *X = test_tensor(ctx, 2, shape, x), *DY = test_tensor(ctx, 2, shape, dy);
    clattn_tensor *G = test_tensor(ctx, 1, &e, g), *DX = test_tensor(ctx, 2, shape, NULL);
    clattn_tensor *DG = test_tensor(ctx, 1, &e, NULL);
    CHECK_OK(clattn_layer_norm_backward(ctx, X, G, 1e-5f, DY, DX, DG, NULL, false));
    read_into(DX, a);
    read_into(DG, ga);
    CHECK_OK(clattn_layer_norm_backward(ctx, X, G, 1e-5f, DY, DX, DG, NULL, false));
    read_into(DX, b);
    read_into(DG, gb);
    same_bits("layer_norm_backward dx, run twice", a, b, n);
    same_bits("layer_norm_backward dgamma, run twice", ga, gb, 130);
    /* In place and out of place agree bit for bit too. */
    CHECK_OK(clattn_layer_norm_backward(ctx, X, G, 1e-5f, DY, DY, DG, NULL, false));
    read_into(DY, b);
    read_into(DG, gb);
    same_bits("layer_norm_backward dx in place vs not", a, b, n);
    same_bits("layer_norm_backward dgamma with dx in place vs not", ga, gb, 130);
    clattn_tensor *ts[] = {X, DY, G, DX, DG};
    for (size_t i = 0; i < 5; i++)
        clattn_tensor_destroy(ts[i]);
    free(x);
    free(dy);
    free(a);
    free(b);
}

static void test_layer_norm(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 113}, widths[] = {1, 5, 64, 130, 1000};
    int k = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 5; j++, k++) {
            if (small && rows[i] * widths[j] > 4000)
                continue;
            /* With gamma, out of place and overwriting: the op table's
             * case (test_layer_ops); here the variants. */
            bool affine = k % 3 != 2, in_place = k % 4 == 1, acc = k % 2 == 1;
            if (affine && !in_place && !acc)
                continue;
            bool fd = rows[i] <= 3 && widths[j] <= 64;
            layer_norm_case(ctx, rows[i], widths[j], 0.0, 1.0, k % 3 != 2, true, k % 3 != 2,
                            true, k % 4 == 1, k % 2 == 1, fd);
        }
    /* Large mean, small spread: the recomputed statistics must be the
     * forward's corrected two-pass ones. */
    layer_norm_case(ctx, small ? 3 : 17, 300, 1000.0, 0.01, true, true, true, true, false, false,
                    false);
    layer_norm_case(ctx, 3, small ? 1000 : 4099, 1000.0, 0.01, true, true, true, true, true,
                    false, false);
    layer_norm_case(ctx, 3, small ? 1000 : 4099, 0.0, 1.0, false, true, false, true, false, true,
                    false);
    /* Finite differences with a non-unit spread, every output. */
    layer_norm_case(ctx, 3, 17, 2.0, 0.1, true, true, true, true, false, false, true);
    layer_norm_case(ctx, 1, 1, 0.0, 1.0, true, true, true, true, false, false, true);
    /* Subsets of outputs, with and without dx over dy. */
    layer_norm_case(ctx, 17, 64, 0.0, 1.0, true, false, true, false, false, false, false);
    layer_norm_case(ctx, 17, 64, 0.0, 1.0, true, false, false, true, false, true, false);
    layer_norm_case(ctx, 17, 64, 0.0, 1.0, true, true, false, false, true, false, false);
    layer_norm_case(ctx, 17, 64, 0.0, 1.0, true, true, true, true, true, true, false);
    layer_norm_deterministic(ctx);
}


typedef struct sm_fd {
    double *x, *dy, *y;
    size_t rows, n;
} sm_fd;

static double sm_loss(void *u)
{
    sm_fd *p = u;
    softmax_d(p->x, p->rows, p->n, p->y);
    double l = 0;
    for (size_t i = 0; i < p->rows * p->n; i++)
        l += p->dy[i] * p->y[i];
    return l;
}

/* y from logits spread over [-spread, spread]: float(softmax) on the host,
 * or the device's clattn_softmax (from_device). */
static void softmax_case(clattn_ctx *ctx, int64_t rows, int64_t n_, float spread, bool in_place,
                         bool from_device, bool fd)
{
    size_t n = (size_t)n_, tot = (size_t)rows * n;
    float *x = test_fvec(tot), *y = test_fvec(tot), *dy = test_fvec(tot), *got = test_fvec(tot);
    double *xd = test_dvec(tot), *yd = test_dvec(tot), *ref = test_dvec(tot), *bound = test_dvec(tot);
    test_fill_uniform(x, tot, -spread, spread);
    test_fill_uniform(dy, tot, -1, 1);
    to_double(x, xd, tot);
    softmax_d(xd, (size_t)rows, n, yd);
    for (size_t i = 0; i < tot; i++)
        y[i] = (float)yd[i];
    int64_t shape[2] = {rows, n_};
    clattn_tensor *Y = test_tensor(ctx, 2, shape, y), *DY = test_tensor(ctx, 2, shape, dy);
    if (from_device) {
        clattn_tensor *X = test_tensor(ctx, 2, shape, x);
        CHECK_OK(clattn_softmax(ctx, X, Y));
        read_into(Y, y);
        clattn_tensor_destroy(X);
    }
    for (size_t r = 0; r < (size_t)rows; r++) {
        double s = 0, a = 0;
        for (size_t i = 0; i < n; i++) {
            s += (double)dy[r * n + i] * y[r * n + i];
            a += fabs((double)dy[r * n + i] * y[r * n + i]);
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = r * n + i;
            ref[j] = (double)y[j] * (dy[j] - s);
            bound[j] = TOL_SM * fabs(y[j]) * (fabs(dy[j]) + a) + 1e-38;
        }
    }
    clattn_tensor *DX = in_place ? DY : test_tensor(ctx, 2, shape, NULL);
    CHECK_OK(clattn_softmax_backward(ctx, Y, DY, DX));
    read_into(DX, got);
    char what[160];
    snprintf(what, sizeof what, "softmax_backward [%lld, %lld] spread %g%s%s", (long long)rows,
             (long long)n_, (double)spread, in_place ? " in place" : "",
             from_device ? " (y from clattn_softmax)" : "");
    close_bound(W_SM, what, got, ref, bound, tot);
    if (fd) {
        sm_fd p = {xd, test_dvec(tot), test_dvec(tot), (size_t)rows, n};
        to_double(dy, p.dy, tot);
        double *g = test_dvec(tot);
        fd_grad(sm_loss, &p, xd, tot, FD_H, g);
        char w2[200];
        snprintf(w2, sizeof w2, "%s vs finite differences", what);
        /* y was rounded to float (or computed by the device): u |y| more. */
        for (size_t i = 0; i < tot; i++)
            bound[i] += 4 * U * fabs(y[i]) * (fabs(dy[i]) + 1);
        check_fd(w2, got, g, bound, tot, 1.0);
        free(g);
        free(p.dy);
        free(p.y);
    }
    if (!in_place)
        clattn_tensor_destroy(DX);
    clattn_tensor_destroy(Y);
    clattn_tensor_destroy(DY);
    free(x);
    free(y);
    free(dy);
    free(got);
    free(xd);
    free(yd);
    free(ref);
    free(bound);
}

static void test_softmax(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 113}, widths[] = {1, 5, 64, 130, 1000};
    int k = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 5; j++, k++) {
            if (small && rows[i] * widths[j] > 4000)
                continue;
            /* y from clattn_softmax is the op table's case
             * (test_layer_ops); here y rounded on the host. */
            if (k % 4 == 2)
                continue;
            softmax_case(ctx, rows[i], widths[j], 4.0f, k % 3 == 1, false,
                         rows[i] <= 3 && widths[j] <= 64);
        }
    softmax_case(ctx, 3, small ? 1000 : 5000, 20.0f, false, true, false);
    softmax_case(ctx, 3, 17, 50.0f, true, false, true); /* near one-hot rows */
    /* dx NULL: nothing to do. */
    int64_t s = 5;
    clattn_tensor *Y = test_tensor(ctx, 1, &s, NULL);
    CHECK_OK(clattn_softmax_backward(ctx, Y, Y, NULL));
    clattn_tensor_destroy(Y);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    test_layer_norm(ctx);
    test_softmax(ctx);
    return layer_test_finish(ctx, "test_norm_backward");
}
