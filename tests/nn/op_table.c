/* op_table.c - the rows of the layer-op table (see op_table.h) and their
 * double-precision references. The bounds are those of layer_check.h
 * (backward) and test_layers.c (forward), with their reasons there. */
#include "op_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void op_case_free(op_case *c)
{
    for (int i = 0; i < c->n_in; i++)
        free(c->x[i]);
    free(c->ids);
}

/* Input i of c: a 2-D [r, k] (or 1-D [r] when k is 0) tensor. */
static void input(op_case *c, int i, const char *name, int64_t r, int64_t k, bool grad,
                  int family, float lo, float hi)
{
    c->in_name[i] = name;
    c->ndim[i] = k ? 2 : 1;
    c->shape[i][0] = r;
    c->shape[i][1] = k;
    c->numel[i] = (size_t)r * (size_t)(k ? k : 1);
    c->grad[i] = grad;
    c->family[i] = family;
    c->fd_scale[i] = 1.0;
    c->x[i] = test_fvec(c->numel[i]);
    test_fill_uniform(c->x[i], c->numel[i], lo, hi);
    if (i >= c->n_in)
        c->n_in = i + 1;
}

static void output_2d(op_case *c, int64_t r, int64_t k)
{
    c->y_ndim = 2;
    c->y_shape[0] = r;
    c->y_shape[1] = k;
    c->y_numel = (size_t)r * (size_t)k;
}

/* ======================================================================== */
/* activations: x [a, b]                                                    */
/* ======================================================================== */

static void act_setup(op_case *c)
{
    input(c, 0, "x", c->s.a, c->s.b, true, W_ACT, -5, 5);
    size_t n = c->numel[0];
    float *x = c->x[0];
    if (c->s.fd) { /* random points, away from ReLU's kink */
        for (size_t i = 0; i < n; i++)
            if (fabsf(x[i]) < 1e-2f)
                x[i] = 0.5f;
    } else {
        for (size_t i = 0; i < n; i++)
            x[i] = n > 1 ? -6.0f + 12.0f * (float)i / (float)(n - 1) : 0.5f;
        if (n >= 16) { /* far out, where exp over/underflows, and the kink */
            float far[] = {-1e30f, -100.0f, -30.0f, -10.0f, 10.0f, 30.0f, 100.0f, 1e30f, 0.0f};
            for (size_t i = 0; i < sizeof far / sizeof *far; i++)
                x[(i * 7919) % n] = far[i];
        }
    }
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status act_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    return clattn_activation_apply(ctx, in[0], (clattn_activation)c->param, y);
}

static clattn_status act_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)y;
    return clattn_activation_backward(ctx, in[0], (clattn_activation)c->param, dy, din[0]);
}

static void act_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    for (size_t i = 0; i < c->y_numel; i++) {
        y[i] = act_ref(in[0][i], c->param);
        if (yb) /* test_layers.c: rtol 2e-6, atol 1e-6 */
            yb[i] = 2e-6 * fabs(y[i]) + 1e-6;
    }
}

static void act_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    for (size_t i = 0; i < c->y_numel; i++) {
        din[0][i] = dy[i] * act_grad_ref(c->x[0][i], c->param);
        bound[0][i] = 2e-6 * fabs(din[0][i]) + 1e-6 * fabs(dy[i]) + 1e-38;
    }
}

/* ======================================================================== */
/* layer norm: x [a, b], gamma [b], beta [b]; eps 1e-5                       */
/* ======================================================================== */

#define LN_EPS 1e-5f

static void ln_setup(op_case *c)
{
    /* unit spread: x uniform in [-sqrt(3), sqrt(3)] */
    input(c, 0, "x", c->s.a, c->s.b, true, W_LN, -1.7320508f, 1.7320508f);
    input(c, 1, "gamma", c->s.b, 0, true, W_COL, 0.5f, 1.5f);
    input(c, 2, "beta", c->s.b, 0, true, W_COL, -1, 1);
    c->fd_scale[1] = c->fd_scale[2] = (double)c->s.a;
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status ln_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                clattn_tensor *y)
{
    (void)c;
    return clattn_layer_norm(ctx, in[0], in[1], in[2], LN_EPS, y);
}

static clattn_status ln_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 const clattn_tensor *y, const clattn_tensor *dy,
                                 clattn_tensor *const *din)
{
    (void)c, (void)y;
    return clattn_layer_norm_backward(ctx, in[0], in[1], LN_EPS, dy, din[0], din[1], din[2],
                                      false);
}

static void ln_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    ln_fwd(in[0], in[1], in[2], (size_t)c->s.a, (size_t)c->s.b, LN_EPS, y);
    for (size_t i = 0; yb && i < c->y_numel; i++) /* test_layers.c: atol = rtol = 2e-5 */
        yb[i] = 2e-5 + 2e-5 * fabs(y[i]);
}

static void ln_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                    double *const *bound)
{
    (void)y;
    ln_ref(c->x[0], c->x[1], dy, (size_t)c->s.a, (size_t)c->s.b, LN_EPS, NULL, NULL, din[0],
           bound[0], din[1], bound[1], din[2], bound[2]);
}

/* ======================================================================== */
/* softmax: x [a, b]                                                        */
/* ======================================================================== */

static void sm_setup(op_case *c)
{
    input(c, 0, "x", c->s.a, c->s.b, true, W_SM, -4, 4);
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status sm_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                clattn_tensor *y)
{
    (void)c;
    return clattn_softmax(ctx, in[0], y);
}

static clattn_status sm_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 const clattn_tensor *y, const clattn_tensor *dy,
                                 clattn_tensor *const *din)
{
    (void)c, (void)in;
    return clattn_softmax_backward(ctx, y, dy, din[0]);
}

static void sm_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    softmax_d(in[0], (size_t)c->s.a, (size_t)c->s.b, y);
    for (size_t i = 0; yb && i < c->y_numel; i++) /* test_layers.c: rtol 2e-5, atol 1e-9 */
        yb[i] = 2e-5 * fabs(y[i]) + 1e-9;
}

/* From the device's y, as softmax_backward gets it. */
static void sm_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                    double *const *bound)
{
    size_t n = (size_t)c->s.b;
    for (size_t r = 0; r < (size_t)c->s.a; r++) {
        double s = 0, a = 0;
        for (size_t i = 0; i < n; i++) {
            s += (double)dy[r * n + i] * y[r * n + i];
            a += fabs((double)dy[r * n + i] * y[r * n + i]);
        }
        for (size_t i = 0; i < n; i++) {
            size_t j = r * n + i;
            din[0][j] = (double)y[j] * (dy[j] - s);
            bound[0][j] = TOL_SM * fabs(y[j]) * (fabs(dy[j]) + a) + 1e-38;
        }
    }
}

/* y was computed by the device: u |y| more against the exact softmax. */
static void sm_fd_bound(const op_case *c, const float *y, const float *dy, int i, double *bound)
{
    (void)i;
    for (size_t j = 0; j < c->y_numel; j++)
        bound[j] += 4 * U * fabs(y[j]) * (fabs(dy[j]) + 1);
}

/* ======================================================================== */
/* linear: x [a, b], w [c, b], bias [c]; y = x w^T + bias                    */
/* ======================================================================== */

static void lin_setup(op_case *c)
{
    input(c, 0, "x", c->s.a, c->s.b, true, W_LIN, -2, 2);
    input(c, 1, "w", c->s.c, c->s.b, true, W_LIN, -1, 1);
    input(c, 2, "b", c->s.c, 0, true, W_COL, -1, 1);
    c->fd_scale[1] = c->fd_scale[2] = (double)c->s.a;
    output_2d(c, c->s.a, c->s.c);
}

static clattn_status lin_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    (void)c;
    return clattn_linear(ctx, in[0], in[1], in[2], CLATTN_ACT_NONE, y);
}

static clattn_status lin_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)c, (void)y;
    return clattn_linear_backward(ctx, in[0], in[1], dy, din[0], din[1], din[2], false);
}

static void lin_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    size_t rows = (size_t)c->s.a, k = (size_t)c->s.b, out = (size_t)c->s.c;
    double worst_mag = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t o = 0; o < out; o++) {
            double s = in[2][o], mag = fabs(in[2][o]);
            for (size_t i = 0; i < k; i++) {
                s += in[0][r * k + i] * in[1][o * k + i];
                mag += fabs(in[0][r * k + i] * in[1][o * k + i]);
            }
            y[r * out + o] = s;
            worst_mag = mag > worst_mag ? mag : worst_mag;
        }
    /* test_layers.c: the GEMM bound at the worst row (times its 1.2 for an
     * activation's slope), atol 1e-6 and rtol 2e-6 for the epilogue. */
    for (size_t j = 0; yb && j < rows * out; j++)
        yb[j] = 1.2 * 2.0 * (double)(k + 3) * U * worst_mag + 1e-6 + 2e-6 * fabs(y[j]);
}

static void lin_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    size_t rows = (size_t)c->s.a, in = (size_t)c->s.b, out = (size_t)c->s.c;
    const float *x = c->x[0], *w = c->x[1];
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < in; i++) {
            double s = 0, m = 0;
            for (size_t o = 0; o < out; o++) {
                double t = (double)dy[r * out + o] * w[o * in + i];
                s += t;
                m += fabs(t);
            }
            din[0][r * in + i] = s;
            bound[0][r * in + i] = 2.0 * (double)(out + 2) * U * m + 1e-30;
        }
    for (size_t o = 0; o < out; o++) {
        for (size_t i = 0; i < in; i++) {
            double s = 0, m = 0;
            for (size_t r = 0; r < rows; r++) {
                double t = (double)dy[r * out + o] * x[r * in + i];
                s += t;
                m += fabs(t);
            }
            din[1][o * in + i] = s;
            bound[1][o * in + i] = 2.0 * (double)(rows + 3) * U * m + 1e-30;
        }
        double s = 0, m = 0;
        for (size_t r = 0; r < rows; r++) {
            s += dy[r * out + o];
            m += fabs(dy[r * out + o]);
        }
        din[2][o] = s;
        bound[2][o] = TOL_COL * m + 1e-30;
    }
}

/* ======================================================================== */
/* embedding: table [a, b], c ids; y [c, b]                                 */
/* ======================================================================== */

static void emb_setup(op_case *c)
{
    int64_t v = c->s.a;
    input(c, 0, "table", v, c->s.b, true, W_EMB, -1, 1);
    c->count = (size_t)c->s.c;
    c->ids = malloc(c->count * sizeof *c->ids);
    for (size_t i = 0; i < c->count; i++) /* skewed, with repeats and unused rows */
        c->ids[i] = (int64_t)((i * i * 7 + 3) % (size_t)((v + 1) / 2 + 1)) % v;
    c->ids[0] = v - 1;
    output_2d(c, c->s.c, c->s.b);
}

static clattn_status emb_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    return clattn_embedding(ctx, in[0], c->ids, c->count, y);
}

static clattn_status emb_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)in, (void)y;
    return clattn_embedding_backward(ctx, c->ids, c->count, dy, din[0], false);
}

static void emb_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    size_t e = (size_t)c->s.b;
    for (size_t i = 0; i < c->count; i++)
        for (size_t k = 0; k < e; k++) {
            y[i * e + k] = in[0][(size_t)c->ids[i] * e + k];
            if (yb)
                yb[i * e + k] = 0; /* an exact copy */
        }
}

static void emb_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    size_t e = (size_t)c->s.b, nt = c->numel[0];
    size_t *uses = calloc((size_t)c->s.a, sizeof *uses);
    for (size_t i = 0; i < c->count; i++) {
        uses[c->ids[i]]++;
        for (size_t k = 0; k < e; k++) {
            din[0][(size_t)c->ids[i] * e + k] += dy[i * e + k];
            bound[0][(size_t)c->ids[i] * e + k] += fabs(dy[i * e + k]);
        }
    }
    for (size_t j = 0; j < nt; j++)
        bound[0][j] = (double)(uses[j / e] + 1) * U * bound[0][j] + 1e-38;
    free(uses);
}

/* ======================================================================== */
/* dropout: x [a, b], p = 0.3, seed 0x5eed, offset a * 1000 + b              */
/* ======================================================================== */

#define DROP_P 0.3f
#define DROP_SEED 0x5eedull
#define DROP_OFFSET(c) ((uint64_t)((c)->s.a * 1000 + (c)->s.b))

static void drop_setup(op_case *c)
{
    input(c, 0, "x", c->s.a, c->s.b, true, W_FWD, -2, 2);
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status drop_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  clattn_tensor *y)
{
    return clattn_dropout(ctx, in[0], DROP_P, DROP_SEED, DROP_OFFSET(c), y);
}

static clattn_status drop_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                   const clattn_tensor *y, const clattn_tensor *dy,
                                   clattn_tensor *const *din)
{
    (void)in, (void)y;
    return clattn_dropout_backward(ctx, dy, DROP_P, DROP_SEED, DROP_OFFSET(c), din[0]);
}

/* The kept scale, 1 / (1 - p) rounded once to float (include/clattn.h). */
static double drop_scale(const op_case *c, size_t i)
{
    if (host_dropped(i, DROP_P, DROP_SEED, DROP_OFFSET(c)))
        return 0.0;
    return (double)(float)(1.0 / (1.0 - (double)DROP_P));
}

/* y = x * s in one float rounding: within u |y| of the double product. */
static void drop_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    for (size_t i = 0; i < c->y_numel; i++) {
        y[i] = in[0][i] * drop_scale(c, i);
        if (yb)
            yb[i] = U * fabs(y[i]) + 1e-38;
    }
}

static void drop_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                      double *const *bound)
{
    (void)y;
    for (size_t i = 0; i < c->y_numel; i++) {
        din[0][i] = dy[i] * drop_scale(c, i);
        bound[0][i] = U * fabs(din[0][i]) + 1e-38;
    }
}

/* ======================================================================== */
/* sequence mean: x [a, b, c] -> y [a, c]                                   */
/* ======================================================================== */

static void seq_setup(op_case *c)
{
    input(c, 0, "x", c->s.a * c->s.b, c->s.c, true, W_SEQ, -2, 2);
    c->ndim[0] = 3;
    c->shape[0][0] = c->s.a;
    c->shape[0][1] = c->s.b;
    c->shape[0][2] = c->s.c;
    output_2d(c, c->s.a, c->s.c);
}

static clattn_status seq_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    (void)c;
    return clattn_sequence_mean(ctx, in[0], y);
}

static clattn_status seq_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)c, (void)in, (void)y;
    return clattn_sequence_mean_backward(ctx, dy, din[0]);
}

static void seq_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    size_t bn = (size_t)c->s.a, n = (size_t)c->s.b, e = (size_t)c->s.c;
    for (size_t i = 0; i < bn; i++)
        for (size_t k = 0; k < e; k++) {
            double s = 0, a = 0;
            for (size_t t = 0; t < n; t++) {
                s += in[0][(i * n + t) * e + k];
                a += fabs(in[0][(i * n + t) * e + k]);
            }
            y[i * e + k] = s / (double)n;
            if (yb)
                yb[i * e + k] = (double)(n + 1) * U * a / (double)n +
                                3 * U * fabs(y[i * e + k]) + 1e-38;
        }
}

static void seq_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    size_t bn = (size_t)c->s.a, n = (size_t)c->s.b, e = (size_t)c->s.c;
    for (size_t i = 0; i < bn; i++)
        for (size_t t = 0; t < n; t++)
            for (size_t k = 0; k < e; k++) {
                size_t j = (i * n + t) * e + k;
                din[0][j] = (double)dy[i * e + k] / (double)n;
                bound[0][j] = 3 * U * fabs(din[0][j]) + 1e-38;
            }
}

/* ======================================================================== */
/* add and add_scaled: a, b [a, b]; y = alpha a + beta b                     */
/* ======================================================================== */

/* param 0: clattn_add (alpha = beta = 1); 1: clattn_add_scaled. */
#define ADD_ALPHA(c) ((c)->param ? 0.75f : 1.0f)
#define ADD_BETA(c) ((c)->param ? -1.5f : 1.0f)

static void add_setup(op_case *c)
{
    input(c, 0, "a", c->s.a, c->s.b, true, W_FWD, -2, 2);
    input(c, 1, "b", c->s.a, c->s.b, true, W_FWD, -2, 2);
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status add_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    if (c->param == 0)
        return clattn_add(ctx, in[0], in[1], y);
    return clattn_add_scaled(ctx, ADD_ALPHA(c), in[0], ADD_BETA(c), in[1], y);
}

/* The backward of a sum passes dy on, scaled (include/clattn.h: residual
 * connections pass dy unchanged): da = alpha dy, db = beta dy, each as
 * clattn_add_scaled(alpha, dy, 0, dy), exact for alpha = 1. */
static clattn_status add_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)in, (void)y;
    clattn_status st = clattn_add_scaled(ctx, ADD_ALPHA(c), dy, 0.0f, dy, din[0]);
    if (st == CLATTN_OK)
        st = clattn_add_scaled(ctx, ADD_BETA(c), dy, 0.0f, dy, din[1]);
    return st;
}

/* One rounding for add (exact products by 1); alpha a, beta b and the sum
 * are three for add_scaled: 3 u (|alpha a| + |beta b|). */
static void add_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    double al = ADD_ALPHA(c), be = ADD_BETA(c);
    for (size_t i = 0; i < c->y_numel; i++) {
        y[i] = al * in[0][i] + be * in[1][i];
        if (yb)
            yb[i] = (c->param ? 3 : 1) * U * (fabs(al * in[0][i]) + fabs(be * in[1][i])) + 1e-38;
    }
}

static void add_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    double s[2] = {ADD_ALPHA(c), ADD_BETA(c)};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < c->y_numel; i++) {
            din[k][i] = s[k] * dy[i];
            bound[k][i] = U * fabs(din[k][i]) + 1e-38;
        }
}

/* ======================================================================== */
/* RMSNorm: x [a, b], weight [b] (param 1) or none (param 0); eps 1e-6       */
/* ======================================================================== */

#define RMS_EPS 1e-6f

static void rms_setup(op_case *c)
{
    input(c, 0, "x", c->s.a, c->s.b, true, W_RMS, -2, 2);
    if (c->param) {
        input(c, 1, "weight", c->s.b, 0, true, W_COL, 0.5f, 1.5f);
        c->fd_scale[1] = (double)c->s.a;
    }
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status rms_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    return clattn_rms_norm(ctx, in[0], c->param ? in[1] : NULL, RMS_EPS, y);
}

static clattn_status rms_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)y;
    return clattn_rms_norm_backward(ctx, in[0], c->param ? in[1] : NULL, RMS_EPS, dy, din[0],
                                    c->param ? din[1] : NULL, false);
}

/* r of row x[0 .. e) in double. */
static double rms_r(const double *x, size_t e)
{
    double s = 0;
    for (size_t i = 0; i < e; i++)
        s += x[i] * x[i];
    return 1.0 / sqrt(s / (double)e + (double)RMS_EPS);
}

static void rms_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    size_t rows = (size_t)c->s.a, e = (size_t)c->s.b;
    for (size_t r = 0; r < rows; r++) {
        double rr = rms_r(in[0] + r * e, e);
        for (size_t i = 0; i < e; i++) {
            size_t j = r * e + i;
            y[j] = in[0][j] * rr * (c->param ? in[1][i] : 1.0);
            if (yb) /* layer_check.h: (E / 2 + 8) u |ref| */
                yb[j] = ((double)e / 2 + 8) * U * fabs(y[j]) + 1e-38;
        }
    }
}

static void rms_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    size_t rows = (size_t)c->s.a, e = (size_t)c->s.b;
    const float *x = c->x[0], *w = c->param ? c->x[1] : NULL;
    double *xd = test_dvec(e);
    if (w)
        for (size_t i = 0; i < e; i++)
            din[1][i] = bound[1][i] = 0;
    for (size_t r = 0; r < rows; r++) {
        to_double(x + r * e, xd, e);
        double rr = rms_r(xd, e), m = 0, ma = 0;
        for (size_t i = 0; i < e; i++) {
            double g = (double)dy[r * e + i] * (w ? w[i] : 1.0);
            m += g * xd[i] * rr;
            ma += fabs(g * xd[i] * rr);
        }
        m /= (double)e;
        ma /= (double)e;
        for (size_t i = 0; i < e; i++) {
            size_t j = r * e + i;
            double g = (double)dy[j] * (w ? w[i] : 1.0), xh = xd[i] * rr;
            din[0][j] = rr * (g - xh * m);
            bound[0][j] = ((double)e + 16) * U * rr * (fabs(g) + 2 * fabs(xh) * ma) + 1e-38;
            if (w) {
                din[1][i] += dy[j] * xh;
                bound[1][i] += fabs(dy[j] * xh);
            }
        }
    }
    for (size_t i = 0; w && i < e; i++)
        bound[1][i] = ((double)rows + 6 + (double)e / 2 + 6) * U * bound[1][i] + 1e-38;
    free(xd);
}

/* ======================================================================== */
/* rotary: x [a, b, 3, c] (B, N, H = 3, D); param: the rope type            */
/* ======================================================================== */

#define ROPE_H 3

/* The row's frequencies: DEFAULT at theta 10000 with positions 0 .. N-1
 * (positions NULL), LINEAR (theta 1e6, factor 4) and LLAMA3 (Llama 3.1's
 * theta 500000, factor 8, 1, 4, 8192) with explicit positions. */
static clattn_rope_params rope_params(int type)
{
    clattn_rope_params p = clattn_rope_params_default();
    p.type = (clattn_rope_type)type;
    if (type == CLATTN_ROPE_LINEAR) {
        p.theta = 1e6;
        p.factor = 4;
    } else if (type == CLATTN_ROPE_LLAMA3) {
        p.theta = 500000;
        p.factor = 8;
        p.low_freq_factor = 1;
        p.high_freq_factor = 4;
        p.original_max_position = 8192;
    }
    return p;
}

/* inv_freq as transformers' rope initialisers compute it in float32
 * (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
 * _compute_llama3_parameters): the header's definition, step by step. */
static void rope_freq_ref(int type, size_t d, float *f)
{
    clattn_rope_params p = rope_params(type);
    for (size_t i = 0; i < d / 2; i++) {
        float e = (float)(2 * i) / (float)d;
        float v = 1.0f / (float)pow((double)(float)p.theta, (double)e);
        if (type == CLATTN_ROPE_LINEAR)
            v /= (float)p.factor;
        if (type == CLATTN_ROPE_LLAMA3) {
            float factor = (float)p.factor, lo = (float)p.low_freq_factor;
            float hi = (float)p.high_freq_factor, old = (float)p.original_max_position;
            float wavelen = 2.0f * (float)PI / v;
            if (wavelen > old / lo) {
                v = v / factor;
            } else if (wavelen >= old / hi) {
                float smooth = (old / wavelen - lo) / (hi - lo);
                v = (1.0f - smooth) * v / factor + smooth * v;
            }
        }
        f[i] = v;
    }
}

static void rope_setup(op_case *c)
{
    int64_t b = c->s.a, n = c->s.b, d = c->s.c;
    input(c, 0, "x", b * n * ROPE_H, d, true, W_ROPE, -2, 2);
    c->ndim[0] = 4;
    c->shape[0][0] = b;
    c->shape[0][1] = n;
    c->shape[0][2] = ROPE_H;
    c->shape[0][3] = d;
    if (c->param != CLATTN_ROPE_DEFAULT) { /* packed sequences at scattered offsets */
        c->count = (size_t)(b * n);
        c->ids = malloc(c->count * sizeof *c->ids);
        for (size_t t = 0; t < c->count; t++)
            c->ids[t] = (int64_t)((t * 37 + 5) % 3001);
        c->ids[0] = 8191;
    }
    c->y_ndim = 4;
    memcpy(c->y_shape, c->shape[0], sizeof c->y_shape);
    c->y_numel = c->numel[0];
}

static clattn_status rope_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  clattn_tensor *y)
{
    clattn_rope_params p = rope_params(c->param);
    return clattn_rotary(ctx, in[0], c->ids, c->param ? &p : NULL, y);
}

static clattn_status rope_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                   const clattn_tensor *y, const clattn_tensor *dy,
                                   clattn_tensor *const *din)
{
    (void)in, (void)y;
    clattn_rope_params p = rope_params(c->param);
    return clattn_rotary_backward(ctx, dy, c->ids, c->param ? &p : NULL, din[0]);
}

/* v rotated by sgn * angle into out, with bound 8 u (|a| + |b|). */
static void rope_apply(const op_case *c, const double *v, double sgn, double *out, double *bd)
{
    size_t d = (size_t)c->s.c, half = d / 2, tokens = (size_t)(c->s.a * c->s.b);
    float *f = malloc(half * sizeof *f);
    rope_freq_ref(c->param, d, f);
    for (size_t t = 0; t < tokens; t++) {
        int64_t pos = c->ids ? c->ids[t] : (int64_t)(t % (size_t)c->s.b);
        for (size_t h = 0; h < ROPE_H; h++)
            for (size_t i = 0; i < half; i++) {
                size_t o = (t * ROPE_H + h) * d;
                float angle = (float)pos * f[i]; /* one float32 product */
                double co = cos((double)angle), si = sgn * sin((double)angle);
                double a = v[o + i], b = v[o + i + half];
                out[o + i] = a * co - b * si;
                out[o + i + half] = b * co + a * si;
                if (bd)
                    bd[o + i] = bd[o + i + half] = 8 * U * (fabs(a) + fabs(b)) + 1e-38;
            }
    }
    free(f);
}

static void rope_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    rope_apply(c, in[0], 1.0, y, yb);
}

static void rope_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                      double *const *bound)
{
    (void)y;
    double *dyd = test_dvec(c->y_numel);
    to_double(dy, dyd, c->y_numel);
    rope_apply(c, dyd, -1.0, din[0], bound[0]);
    free(dyd);
}

/* ======================================================================== */
/* SwiGLU: gate, up [a, b]; out = silu(gate) * up                            */
/* ======================================================================== */

static void glu_setup(op_case *c)
{
    input(c, 0, "gate", c->s.a, c->s.b, true, W_ACT, -6, 6);
    input(c, 1, "up", c->s.a, c->s.b, true, W_ACT, -2, 2);
    output_2d(c, c->s.a, c->s.b);
}

static clattn_status glu_forward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                 clattn_tensor *y)
{
    (void)c;
    return clattn_swiglu(ctx, in[0], in[1], y);
}

static clattn_status glu_backward(clattn_ctx *ctx, const op_case *c, clattn_tensor *const *in,
                                  const clattn_tensor *y, const clattn_tensor *dy,
                                  clattn_tensor *const *din)
{
    (void)c, (void)y;
    return clattn_swiglu_backward(ctx, in[0], in[1], dy, din[0], din[1]);
}

static double silu_d(double g)
{
    return g / (1.0 + exp(-g));
}

static void glu_reference(const op_case *c, const double *const *in, double *y, double *yb)
{
    for (size_t i = 0; i < c->y_numel; i++) {
        y[i] = silu_d(in[0][i]) * in[1][i];
        if (yb) /* layer_check.h: 10 u |ref| */
            yb[i] = 10 * U * fabs(y[i]) + 1e-38;
    }
}

static void glu_grad(const op_case *c, const float *y, const float *dy, double *const *din,
                     double *const *bound)
{
    (void)y;
    const float *g = c->x[0], *u = c->x[1];
    for (size_t i = 0; i < c->y_numel; i++) {
        double s = 1.0 / (1.0 + exp(-(double)g[i])), du = (double)dy[i] * u[i];
        din[0][i] = du * s * (1.0 + g[i] * (1.0 - s));
        bound[0][i] = 2e-6 * fabs(din[0][i]) + 1e-6 * fabs(du) + 1e-38;
        din[1][i] = (double)dy[i] * silu_d(g[i]);
        bound[1][i] = 10 * U * fabs(din[1][i]) + 1e-38;
    }
}

/* ======================================================================== */
/* shapes and the table                                                      */
/* ======================================================================== */

static const op_shape act_shapes[] = {
    {1, 1, 0, false, false}, {1, 5, 0, false, true}, {1, 64, 0, false, true},
    {1, 130, 0, false, false}, {3, 1, 0, false, true}, {3, 5, 0, false, true},
    {3, 64, 0, false, false}, {3, 130, 0, false, true}, {17, 1, 0, false, true},
    {17, 5, 0, false, false}, {17, 64, 0, false, true}, {17, 130, 0, false, true},
    {113, 1, 0, false, false}, {113, 5, 0, false, true}, {113, 64, 0, false, true},
    {113, 130, 0, false, false}, {1, 64, 0, true, false},
};

static const op_shape rowop_shapes[] = {
    {1, 1, 0, true, false}, {1, 5, 0, true, false}, {1, 64, 0, true, false},
    {1, 130, 0, false, false}, {1, 1000, 0, false, false}, {3, 1, 0, true, false},
    {3, 5, 0, true, false}, {3, 64, 0, true, false}, {3, 130, 0, false, false},
    {3, 1000, 0, false, false}, {17, 1, 0, false, false}, {17, 5, 0, false, false},
    {17, 64, 0, false, false}, {17, 130, 0, false, false}, {17, 1000, 0, false, true},
    {113, 1, 0, false, false}, {113, 5, 0, false, false}, {113, 64, 0, false, true},
    {113, 130, 0, false, true}, {113, 1000, 0, false, true},
};

static const op_shape linear_shapes[] = {
    {1, 1, 5, true, false}, {1, 5, 64, true, false}, {1, 64, 130, false, false},
    {1, 130, 1, false, false}, {3, 1, 64, true, false}, {3, 5, 130, false, false},
    {3, 64, 1, true, false}, {3, 130, 5, false, false}, {17, 1, 130, false, false},
    {17, 5, 1, true, false}, {17, 64, 5, true, false}, {17, 130, 64, false, false},
    {113, 1, 1, false, false}, {113, 5, 5, false, false}, {113, 64, 64, false, false},
    {113, 130, 130, false, false},
};

static const op_shape embedding_shapes[] = {
    {1, 5, 1, true, false}, {7, 1, 17, true, false}, {7, 5, 17, true, false},
    {113, 130, 60, false, false}, {113, 130, 300, false, true}, {113, 64, 60, false, false},
    {1000, 64, 5000, false, true},
};

static const op_shape seq_shapes[] = {
    {1, 1, 1, true, false}, {1, 1, 5, true, false}, {1, 1, 130, true, false},
    {1, 17, 1, true, false}, {1, 17, 5, true, false}, {1, 17, 130, false, false},
    {1, 113, 1, true, false}, {1, 113, 5, true, false}, {1, 113, 130, false, true},
    {3, 1, 1, true, false}, {3, 1, 5, true, false}, {3, 1, 130, true, false},
    {3, 17, 1, true, false}, {3, 17, 5, true, false}, {3, 17, 130, false, true},
    {3, 113, 1, true, false}, {3, 113, 5, true, false}, {3, 113, 130, false, true},
};

static const op_shape dropout_shapes[] = {
    {1, 1, 0, true, false}, {1, 1000, 0, true, false}, {17, 130, 0, false, false},
    {3, 4099, 0, false, false}, {1, 100003, 0, false, true},
};

static const op_shape add_shapes[] = {
    {1, 1, 0, true, false}, {3, 5, 0, true, false}, {17, 64, 0, false, false},
    {113, 130, 0, false, false}, {1, 1000, 0, false, false},
};

/* B, N, D (H = 3): D from 2 to 256, odd N, batch > 1. */
static const op_shape rope_shapes[] = {
    {1, 1, 2, true, false}, {1, 3, 4, true, false}, {2, 5, 8, true, false},
    {3, 17, 64, false, false}, {1, 113, 128, false, false}, {2, 7, 256, false, false},
    {4, 33, 64, false, true},
};

#define SHAPES(s) s, sizeof s / sizeof *s
#define ACT_ROW(nm, a)                                                                       \
    {nm, a, act_setup, act_forward, act_backward, act_reference, act_grad, NULL, W_ACT, false, \
     true, SHAPES(act_shapes)}

const op_row op_table[] = {
    ACT_ROW("activation none", CLATTN_ACT_NONE),
    ACT_ROW("activation relu", CLATTN_ACT_RELU),
    ACT_ROW("activation gelu", CLATTN_ACT_GELU),
    ACT_ROW("activation gelu_tanh", CLATTN_ACT_GELU_TANH),
    ACT_ROW("activation silu", CLATTN_ACT_SILU),
    {"layer_norm", 0, ln_setup, ln_forward, ln_backward, ln_reference, ln_grad, NULL, W_FWD,
     false, true, SHAPES(rowop_shapes)},
    {"softmax", 0, sm_setup, sm_forward, sm_backward, sm_reference, sm_grad, sm_fd_bound, W_SM,
     false, true, SHAPES(rowop_shapes)},
    {"linear", 0, lin_setup, lin_forward, lin_backward, lin_reference, lin_grad, NULL, W_LIN,
     true, false, SHAPES(linear_shapes)},
    {"embedding", 0, emb_setup, emb_forward, emb_backward, emb_reference, emb_grad, NULL, W_EMB,
     false, false, SHAPES(embedding_shapes)},
    {"dropout", 0, drop_setup, drop_forward, drop_backward, drop_reference, drop_grad, NULL,
     W_FWD, false, true, SHAPES(dropout_shapes)},
    {"sequence_mean", 0, seq_setup, seq_forward, seq_backward, seq_reference, seq_grad, NULL,
     W_SEQ, false, false, SHAPES(seq_shapes)},
    {"rms_norm", 0, rms_setup, rms_forward, rms_backward, rms_reference, rms_grad, NULL, W_RMS,
     false, true, SHAPES(rowop_shapes)},
    {"rms_norm weight", 1, rms_setup, rms_forward, rms_backward, rms_reference, rms_grad, NULL,
     W_RMS, false, true, SHAPES(rowop_shapes)},
    {"rotary default", CLATTN_ROPE_DEFAULT, rope_setup, rope_forward, rope_backward,
     rope_reference, rope_grad, NULL, W_ROPE, false, true, SHAPES(rope_shapes)},
    {"rotary linear", CLATTN_ROPE_LINEAR, rope_setup, rope_forward, rope_backward,
     rope_reference, rope_grad, NULL, W_ROPE, false, true, SHAPES(rope_shapes)},
    {"rotary llama3", CLATTN_ROPE_LLAMA3, rope_setup, rope_forward, rope_backward,
     rope_reference, rope_grad, NULL, W_ROPE, false, true, SHAPES(rope_shapes)},
    {"swiglu", 0, glu_setup, glu_forward, glu_backward, glu_reference, glu_grad, NULL, W_ACT,
     false, true, SHAPES(add_shapes)},
    {"add", 0, add_setup, add_forward, add_backward, add_reference, add_grad, NULL, W_FWD, false,
     false, SHAPES(add_shapes)},
    {"add_scaled", 1, add_setup, add_forward, add_backward, add_reference, add_grad, NULL, W_FWD,
     false, false, SHAPES(add_shapes)},
};
const size_t op_table_rows = sizeof op_table / sizeof *op_table;
