/* test_layer_ops.c - the op table (op_table.h): every layer op with a
 * backward, forward and backward on the device against the double
 * reference and finite differences, on every shape of its row; then the
 * special cases of the elementwise ops (NaN inputs, NULL outputs).
 * CLATTN_TEST_SMALL=1 drops the shapes marked big and, on oclgrind, the
 * rows that run CLBlast. Tolerances: layer_check.h. */
#include "op_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The loss of the finite differences: L = sum(dy * reference(in)). */
typedef struct op_fd {
    const op_row *row;
    const op_case *c;
    double *const *in;
    const double *dy;
    double *y;
} op_fd;

static double op_loss(void *u)
{
    op_fd *p = u;
    p->row->reference(p->c, (const double *const *)p->in, p->y, NULL);
    double l = 0;
    for (size_t i = 0; i < p->c->y_numel; i++)
        l += p->dy[i] * p->y[i];
    return l;
}

static void shape_name(const op_case *c, char *buf, size_t size)
{
    int at = snprintf(buf, size, "[");
    for (int32_t d = 0; d < c->ndim[0]; d++)
        at += snprintf(buf + at, size - (size_t)at, "%s%lld", d ? ", " : "",
                       (long long)c->shape[0][d]);
    snprintf(buf + at, size - (size_t)at, "]%s", c->n_in > 1 || c->ids ? " ..." : "");
}

static void run_shape(clattn_ctx *ctx, const op_row *row, const op_shape *s)
{
    op_case c;
    memset(&c, 0, sizeof c);
    c.s = *s;
    c.param = row->param;
    row->setup(&c);
    char sh[96], what[200], w2[300];
    shape_name(&c, sh, sizeof sh);
    if (row->gemm) /* linear: the output width too */
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), " out=%lld", (long long)s->c);
    if (c.ids)
        snprintf(sh + strlen(sh), sizeof sh - strlen(sh), " count=%zu", c.count);
    snprintf(what, sizeof what, "%s %s", row->name, sh);

    size_t ny = c.y_numel;
    float *y = test_fvec(ny), *dy = test_fvec(ny);
    test_fill_uniform(dy, ny, -1, 1);
    clattn_tensor *in[OP_MAX_IN] = {NULL}, *din[OP_MAX_IN] = {NULL};
    double *ind[OP_MAX_IN] = {NULL};
    for (int i = 0; i < c.n_in; i++) {
        in[i] = test_tensor(ctx, c.ndim[i], c.shape[i], c.x[i]);
        ind[i] = test_dvec(c.numel[i]);
        to_double(c.x[i], ind[i], c.numel[i]);
    }

    /* Forward: y starts as NaN, none of it may leak through. Written from
     * the host: oclgrind's --uninitialized tracks only host writes as
     * initialising, and the backward reads this y (softmax). */
    for (size_t i = 0; i < ny; i++)
        y[i] = NAN;
    clattn_tensor *Y = test_tensor(ctx, c.y_ndim, c.y_shape, y);
    CHECK_OK(row->forward(ctx, &c, in, Y));
    read_into(Y, y);
    double *yref = test_dvec(ny), *ybound = test_dvec(ny);
    row->reference(&c, (const double *const *)ind, yref, ybound);
    snprintf(w2, sizeof w2, "%s: forward", what);
    close_bound(row->fwd_family, w2, y, yref, ybound, ny);

    /* Backward: every gradient starts as NaN. */
    clattn_tensor *DY = test_tensor(ctx, c.y_ndim, c.y_shape, dy);
    for (int i = 0; i < c.n_in; i++)
        if (c.grad[i]) {
            din[i] = test_tensor(ctx, c.ndim[i], c.shape[i], NULL);
            CHECK_OK(clattn_tensor_fill(din[i], NAN));
        }
    CHECK_OK(row->backward(ctx, &c, in, Y, DY, din));
    double *gref[OP_MAX_IN] = {NULL}, *gbound[OP_MAX_IN] = {NULL};
    float *got[OP_MAX_IN] = {NULL};
    for (int i = 0; i < c.n_in; i++) {
        gref[i] = test_dvec(c.numel[i]);
        gbound[i] = test_dvec(c.numel[i]);
        got[i] = test_fvec(c.numel[i]);
    }
    row->grad_reference(&c, y, dy, gref, gbound);
    for (int i = 0; i < c.n_in; i++) {
        if (!c.grad[i])
            continue;
        read_into(din[i], got[i]);
        snprintf(w2, sizeof w2, "%s: d%s", what, c.in_name[i]);
        close_bound(c.family[i], w2, got[i], gref[i], gbound[i], c.numel[i]);
    }

    /* Finite differences of the double forward. */
    if (s->fd) {
        double *dyd = test_dvec(ny), *fy = test_dvec(ny);
        to_double(dy, dyd, ny);
        op_fd p = {row, &c, ind, dyd, fy};
        for (int i = 0; i < c.n_in; i++) {
            if (!c.grad[i])
                continue;
            double *g = test_dvec(c.numel[i]);
            fd_grad(op_loss, &p, ind[i], c.numel[i], FD_H, g);
            if (row->fd_bound)
                row->fd_bound(&c, y, dy, i, gbound[i]);
            snprintf(w2, sizeof w2, "%s: d%s vs finite differences", what, c.in_name[i]);
            check_fd(w2, got[i], g, gbound[i], c.numel[i], c.fd_scale[i]);
            free(g);
        }
        free(dyd);
        free(fy);
    }

    /* In place (dx over dy): the same bits as out of place. */
    if (row->in_place && c.grad[0]) {
        clattn_tensor *DY2 = test_tensor(ctx, c.y_ndim, c.y_shape, dy);
        clattn_tensor *dip[OP_MAX_IN] = {DY2, NULL, NULL};
        CHECK_OK(row->backward(ctx, &c, in, Y, DY2, dip));
        float *g2 = test_fvec(ny);
        read_into(DY2, g2);
        snprintf(w2, sizeof w2, "%s: d%s in place vs not", what, c.in_name[0]);
        same_bits(w2, g2, got[0], ny);
        free(g2);
        clattn_tensor_destroy(DY2);
    }

    for (int i = 0; i < c.n_in; i++) {
        clattn_tensor_destroy(in[i]);
        clattn_tensor_destroy(din[i]);
        free(ind[i]);
        free(gref[i]);
        free(gbound[i]);
        free(got[i]);
    }
    clattn_tensor_destroy(Y);
    clattn_tensor_destroy(DY);
    free(y);
    free(dy);
    free(yref);
    free(ybound);
    op_case_free(&c);
}

static void test_table(clattn_ctx *ctx)
{
    for (size_t r = 0; r < op_table_rows; r++) {
        const op_row *row = &op_table[r];
        if (row->gemm && on_oclgrind) {
            fprintf(stderr, "oclgrind: skipping %s (CLBlast)\n", row->name);
            continue;
        }
        for (size_t k = 0; k < row->n_shapes; k++)
            if (!small || !row->shapes[k].big)
                run_shape(ctx, row, &row->shapes[k]);
    }
}

/* NaN inputs: GELU, GELU_TANH and SiLU give NaN; ReLU passes dy on, as
 * PyTorch's threshold_backward (NaN <= 0 is false). dx NULL: nothing to
 * do, still OK. */
static void test_special_cases(clattn_ctx *ctx)
{
    float x[2] = {NAN, 1.0f}, dy[2] = {0.5f, 0.25f}, got[2];
    int64_t s2 = 2;
    for (int a = 1; a <= CLATTN_ACT_SILU; a++) {
        clattn_tensor *X = test_tensor(ctx, 1, &s2, x), *DY = test_tensor(ctx, 1, &s2, dy);
        CHECK_OK(clattn_activation_backward(ctx, X, (clattn_activation)a, DY, DY));
        read_into(DY, got);
        if (a == CLATTN_ACT_RELU)
            CHECK(got[0] == 0.5f && got[1] == 0.25f, "relu backward at NaN: %g %g",
                  (double)got[0], (double)got[1]);
        else
            CHECK(isnan(got[0]) && isfinite(got[1]), "%s backward at NaN: %g %g", act_name(a),
                  (double)got[0], (double)got[1]);
        clattn_tensor_destroy(X);
        clattn_tensor_destroy(DY);
    }
    clattn_tensor *X = test_tensor(ctx, 1, &s2, x);
    CHECK_OK(clattn_activation_backward(ctx, X, CLATTN_ACT_GELU, X, NULL));
    clattn_tensor_destroy(X);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    if (on_oclgrind)
        fprintf(stderr, "oclgrind: skipping the CLBlast rows\n");
    test_table(ctx);
    test_special_cases(ctx);
    return layer_test_finish(ctx, "test_layer_ops");
}
