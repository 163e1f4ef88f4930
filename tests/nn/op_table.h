/* op_table.h - one table for the layer ops with a backward: a row is
 * {name, forward, backward, double-precision reference, shapes}.
 * test_layer_ops loops over the rows and their shapes and, for each, runs
 * the forward and the backward on the device, and compares
 *   - the forward's y with the row's double reference,
 *   - every input gradient with the row's analytic double gradient,
 *   - the same gradients with central finite differences of the double
 *     loss L = sum(dy * reference(inputs)) (shapes marked fd),
 *   - where the op allows dx = dy, the in-place backward bit for bit,
 * each element within a per-element bound (layer_check.h gives them and
 * their reasons), NaN and Inf failing unless the reference has the same.
 * Adding an op means adding a row (and its reference) to op_table.c.
 * Special cases (accumulation, output subsets, error paths, odd
 * arguments) live in the per-op programs. */
#ifndef CLATTN_TEST_OP_TABLE_H
#define CLATTN_TEST_OP_TABLE_H

#include "layer_check.h"

#define OP_MAX_IN 3

/* A shape; what a, b and c mean is the row's (e.g. rows, width). */
typedef struct op_shape {
    int64_t a, b, c;
    bool fd;  /* also check against finite differences (small shapes) */
    bool big; /* dropped under CLATTN_TEST_SMALL */
} op_shape;

/* One case: the row's setup fills in the inputs (host data), their
 * shapes and which have gradients, and y's shape. */
typedef struct op_case {
    op_shape s;
    int param; /* the row's parameter (the activation, ...) */
    int n_in;
    const char *in_name[OP_MAX_IN];
    int32_t ndim[OP_MAX_IN];
    int64_t shape[OP_MAX_IN][4];
    size_t numel[OP_MAX_IN];
    bool grad[OP_MAX_IN];       /* the backward gives this input's gradient */
    int family[OP_MAX_IN];      /* its check family (W_*) */
    double fd_scale[OP_MAX_IN]; /* FD_ABS is relative to this */
    float *x[OP_MAX_IN];
    int32_t y_ndim;
    int64_t y_shape[4];
    size_t y_numel;
    int64_t *ids; /* embedding: host ids */
    size_t count;
} op_case;

typedef struct op_row {
    const char *name;
    int param;
    /* Shapes and inputs of c (c->s and c->param set). */
    void (*setup)(op_case *c);
    clattn_status (*forward)(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                             clattn_tensor *y);
    /* din[i] is NULL where !c->grad[i]; y is the device forward's output. */
    clattn_status (*backward)(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                              const clattn_tensor *y, const clattn_tensor *dy,
                              clattn_tensor *const *din);
    /* The double forward; ybound (may be NULL) gets the forward's bounds. */
    void (*reference)(const op_case *c, const double *const *in, double *y, double *ybound);
    /* The analytic double gradients and their bounds, from the device's y
     * and dy (grad[i] only). */
    void (*grad_reference)(const op_case *c, const float *y, const float *dy, double *const *din,
                           double *const *bound);
    /* Optional: widens bound for the finite-difference check of input i. */
    void (*fd_bound)(const op_case *c, const float *y, const float *dy, int i, double *bound);
    int fwd_family;
    bool gemm;     /* runs CLBlast: skipped on oclgrind */
    bool in_place; /* the backward may write din[0] over dy */
    const op_shape *shapes;
    size_t n_shapes;
} op_row;

extern const op_row op_table[];
extern const size_t op_table_rows;

/* Frees what a row's setup allocated. */
void op_case_free(op_case *c);

#endif
