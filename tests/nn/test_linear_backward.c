/* test_linear_backward.c - clattn_linear_backward's cases beyond the op
 * table's plain sweep (test_layer_ops): accumulation into prefilled dw
 * and db, 3-D and 4-D x, each output alone (NULL for the others), against
 * the double loops and finite differences. Under oclgrind only the db
 * path (clattn's own kernel) runs: CLBlast stays out. Tolerances:
 * layer_check.h. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct lin_fd {
    double *x, *w, *b, *dy;
    size_t rows, in, out;
} lin_fd;

static double lin_loss(void *u)
{
    lin_fd *p = u;
    double l = 0;
    for (size_t r = 0; r < p->rows; r++)
        for (size_t o = 0; o < p->out; o++) {
            double s = p->b[o];
            for (size_t i = 0; i < p->in; i++)
                s += p->x[r * p->in + i] * p->w[o * p->in + i];
            l += p->dy[r * p->out + o] * s;
        }
    return l;
}

/* One linear_backward call: x [lead..., in] with rows = product of lead;
 * want_* select the outputs; acc: accumulate into prefilled dw, db. */
static void linear_case(clattn_ctx *ctx, int32_t nd, const int64_t *xshape, int64_t out_,
                        bool want_dx, bool want_dw, bool want_db, bool acc, bool fd)
{
    size_t in = (size_t)xshape[nd - 1], out = (size_t)out_, rows = 1;
    for (int32_t i = 0; i < nd - 1; i++)
        rows *= (size_t)xshape[i];
    size_t nx = rows * in, nw = out * in, ny = rows * out;
    float *x = test_fvec(nx), *w = test_fvec(nw), *dy = test_fvec(ny), *dw0 = test_fvec(nw), *db0 = test_fvec(out);
    float *got = test_fvec(nx > nw ? (nx > out ? nx : out) : (nw > out ? nw : out));
    test_fill_uniform(x, nx, -2, 2);
    test_fill_uniform(w, nw, -1, 1);
    test_fill_uniform(dy, ny, -1, 1);
    test_fill_uniform(dw0, nw, -3, 3);
    test_fill_uniform(db0, out, -3, 3);
    double *rdx = test_dvec(nx), *bdx = test_dvec(nx), *rdw = test_dvec(nw), *bdw = test_dvec(nw), *rdb = test_dvec(out),
           *bdb = test_dvec(out);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < in; i++) {
            double s = 0, m = 0;
            for (size_t o = 0; o < out; o++) {
                double t = (double)dy[r * out + o] * w[o * in + i];
                s += t;
                m += fabs(t);
            }
            rdx[r * in + i] = s;
            bdx[r * in + i] = 2.0 * (double)(out + 2) * U * m + 1e-30;
        }
    for (size_t o = 0; o < out; o++) {
        for (size_t i = 0; i < in; i++) {
            double s = acc ? dw0[o * in + i] : 0, m = fabs(s);
            for (size_t r = 0; r < rows; r++) {
                double t = (double)dy[r * out + o] * x[r * in + i];
                s += t;
                m += fabs(t);
            }
            rdw[o * in + i] = s;
            bdw[o * in + i] = 2.0 * (double)(rows + 3) * U * m + 1e-30;
        }
        double s = acc ? db0[o] : 0, m = fabs(s);
        for (size_t r = 0; r < rows; r++) {
            s += dy[r * out + o];
            m += fabs(dy[r * out + o]);
        }
        rdb[o] = s;
        bdb[o] = TOL_COL * m + 1e-30;
    }
    int64_t dyshape[4], wshape[2] = {out_, (int64_t)in};
    memcpy(dyshape, xshape, (size_t)nd * sizeof *dyshape);
    dyshape[nd - 1] = out_;
    clattn_tensor *X = test_tensor(ctx, nd, xshape, x), *W = test_tensor(ctx, 2, wshape, w);
    clattn_tensor *DY = test_tensor(ctx, nd, dyshape, dy);
    clattn_tensor *DX = want_dx ? test_tensor(ctx, nd, xshape, NULL) : NULL;
    clattn_tensor *DW = want_dw ? test_tensor(ctx, 2, wshape, acc ? dw0 : NULL) : NULL;
    clattn_tensor *DB = want_db ? test_tensor(ctx, 1, &out_, acc ? db0 : NULL) : NULL;
    /* Overwritten outputs start as NaN: none of it may leak through. */
    if (DX)
        CHECK_OK(clattn_tensor_fill(DX, NAN));
    if (DW && !acc)
        CHECK_OK(clattn_tensor_fill(DW, NAN));
    if (DB && !acc)
        CHECK_OK(clattn_tensor_fill(DB, NAN));
    CHECK_OK(clattn_linear_backward(ctx, X, W, DY, DX, DW, DB, acc));
    char what[200];
    snprintf(what, sizeof what, "linear_backward %dD rows=%zu in=%zu out=%zu%s", nd, rows, in,
             out, acc ? " accumulate" : "");
    char w2[240];
    if (DX) {
        read_into(DX, got);
        snprintf(w2, sizeof w2, "%s: dx", what);
        close_bound(W_LIN, w2, got, rdx, bdx, nx);
    }
    if (DW) {
        read_into(DW, got);
        snprintf(w2, sizeof w2, "%s: dw", what);
        close_bound(W_LIN, w2, got, rdw, bdw, nw);
    }
    if (DB) {
        read_into(DB, got);
        snprintf(w2, sizeof w2, "%s: db", what);
        close_bound(W_COL, w2, got, rdb, bdb, out);
    }
    if (fd && !acc && DX && DW && DB) {
        lin_fd p = {test_dvec(nx), test_dvec(nw), test_dvec(out), test_dvec(ny), rows, in, out};
        to_double(x, p.x, nx);
        to_double(w, p.w, nw);
        to_double(dy, p.dy, ny);
        double *g = test_dvec(nx + nw + out);
        fd_grad(lin_loss, &p, p.x, nx, FD_H, g);
        read_into(DX, got);
        snprintf(w2, sizeof w2, "%s: dx vs finite differences", what);
        check_fd(w2, got, g, bdx, nx, 1.0);
        fd_grad(lin_loss, &p, p.w, nw, FD_H, g);
        read_into(DW, got);
        snprintf(w2, sizeof w2, "%s: dw vs finite differences", what);
        check_fd(w2, got, g, bdw, nw, (double)rows);
        fd_grad(lin_loss, &p, p.b, out, FD_H, g);
        read_into(DB, got);
        snprintf(w2, sizeof w2, "%s: db vs finite differences", what);
        check_fd(w2, got, g, bdb, out, (double)rows);
        free(g);
        free(p.x);
        free(p.w);
        free(p.b);
        free(p.dy);
    }
    clattn_tensor *ts[] = {X, W, DY, DX, DW, DB};
    for (size_t i = 0; i < 6; i++)
        clattn_tensor_destroy(ts[i]);
    free(x);
    free(w);
    free(dy);
    free(dw0);
    free(db0);
    free(got);
    free(rdx);
    free(bdx);
    free(rdw);
    free(bdw);
    free(rdb);
    free(bdb);
}

static void test_linear(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 113}, feats[] = {1, 5, 64, 130};
    if (on_oclgrind) {
        /* CLBlast stays out of oclgrind; db alone is clattn's own kernel. */
        int64_t xs[2] = {17, 5};
        linear_case(ctx, 2, xs, 7, false, false, true, false, false);
        linear_case(ctx, 2, xs, 7, false, false, true, true, false);
        return;
    }
    /* Every other shape of the op table's sweep (test_layer_ops runs all
     * of them plainly), accumulating into prefilled dw and db. */
    int k = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++, k++) {
            if (k % 2 == 0)
                continue;
            int64_t xs[2] = {rows[i], feats[j]};
            linear_case(ctx, 2, xs, feats[(i + j + 1) % 4], true, true, true, true,
                        rows[i] <= 17 && feats[j] <= 64 && feats[(i + j + 1) % 4] <= 64);
        }
    int64_t xs3[3] = {3, 17, 64}, xs4[4] = {2, 3, 5, 7};
    linear_case(ctx, 3, xs3, 130, true, true, true, false, false);
    linear_case(ctx, 4, xs4, 5, true, true, true, true, true);
    /* NULL outputs: each alone. */
    int64_t xs[2] = {17, 5};
    linear_case(ctx, 2, xs, 7, true, false, false, false, false);
    linear_case(ctx, 2, xs, 7, false, true, false, true, false);
    linear_case(ctx, 2, xs, 7, false, false, true, false, false);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    if (on_oclgrind)
        fprintf(stderr, "oclgrind: skipping the CLBlast products of linear_backward\n");
    test_linear(ctx);
    return layer_test_finish(ctx, "test_linear_backward");
}
