/* test_layers_backward.c - the backward ops of clattn.h's "Training:
 * backward passes" section (linear, activations, layer norm, softmax,
 * embedding, dropout, sequence mean) against two independent references
 * in double precision:
 *   1. the analytic gradient, written out in C loops here;
 *   2. central finite differences of the double forward, of the scalar
 *      loss L = sum(dy * y), on small shapes (checking the analytic
 *      formulas of 1 as well as the device).
 * Shapes sweep odd sizes (rows 1, 3, 17, 113; widths 1, 5, 64, 130 and
 * 1000+ for the row ops), with accumulate on and off, NULL outputs,
 * in-place calls and every error the API promises.
 * CLATTN_TEST_SMALL=1 drops the largest shapes and, as test_layers does,
 * the CLBlast paths (oclgrind; linear_backward's db-only path still runs).
 *
 * Tolerances (u = 2^-24, the float32 unit roundoff). Most bounds are per
 * element, scaled by the magnitudes that enter the result, so they are
 * tight where values are small and do not fail where they are large:
 * - linear (GEMM): the forward error bound 2 (k + 2) u sum|a b| of
 *   test_gemm, k the reduction length (out for dx, rows for dw);
 *   db: TOL_COL below.
 * - activations: 2e-6 |ref| + 1e-6 |dy|: the derivatives use erfc (NR's
 *   fit, relative error 1.2e-7) and clattn_expf (~1 ulp) in forms without
 *   cancellation; the absolute part covers zero crossings of GELU's
 *   derivative (x ~ -0.75), where two O(0.3) terms meet.
 * - layer norm dx: TOL_LN = 4e-6 (67 u) times rstd (|g_i| + mean|g| +
 *   |xhat_i| mean|g xhat|), the magnitudes of the three terms of
 *   rstd (g - mean g - xhat mean(g xhat)); each mean carries
 *   (E / wg + log2 wg) u of summation error (E = 4099, wg = 256: 24 u),
 *   the recomputed xhat and rstd about the same.
 * - column sums (db, dgamma, dbeta): TOL_COL = 1e-5 (168 u) times
 *   sum|terms|: each of tr row lanes sums rows / tr terms, then a tree
 *   of log2 tr levels: under (rows + 6) u for any tr, so 119 u for the
 *   largest rows here (113); about 20 u with POCL's tr = 8. For dgamma
 *   the terms are |dy| (|xhat| + 1): xhat's error is relative to its
 *   unit RMS (xhat near 0 has a large relative error, not absolute).
 * - softmax dx: TOL_SM = 2e-6 (34 u) times |y_i| (|dy_i| + sum|dy y|):
 *   the row sum carries (N / wg + log2 wg) u (N = 5000: 28 u).
 * - embedding: bit-identical to a float loop summing in ascending
 *   position order (the documented order), and within count u sum|dy|
 *   of the double sum.
 * - dropout: the mask equal element by element to a host Philox4x32-10
 *   (itself checked against Random123's known-answer vectors); kept
 *   values bit-identical to x * (float)(1 / (1 - p)).
 * - sequence mean: (N + 1) u mean|x| + 3 u |ref| (OpenCL's float divide
 *   is 2.5 ulp); its backward 3 u |ref|.
 * - finite differences: h = 1e-4 on O(1) data in double: truncation
 *   ~h^2 |L'''| / 6 and rounding ~1e-16 |L| / h stay below 1e-8, so FD
 *   comparisons use the analytic bound plus FD_ABS = 1e-7 (relative to
 *   the scale of the gradient).
 * The largest error / bound of each family is printed at the end (all
 * below 0.5 on POCL and Rusticl when written). */
#include "nn/nn.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define U 5.9604644775390625e-8
#define TOL_LN 4e-6
#define TOL_COL 1e-5
#define TOL_SM 2e-6
#define FD_H 1e-4
#define FD_ABS 1e-7
#define PI 3.14159265358979323846

static bool small = false;
static bool on_oclgrind = false;

static float *fvec(size_t n) { return malloc((n ? n : 1) * sizeof(float)); }
static double *dvec(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

/* Largest |got - ref| / bound seen per check family, printed at the end
 * (how much room the tolerances leave). */
enum { W_LIN, W_ACT, W_LN, W_COL, W_SM, W_EMB, W_SEQ, W_FD, W_COUNT };
static const char *const worst_names[W_COUNT] = {"linear", "activation", "layer norm dx",
                                                 "column sums", "softmax", "embedding", "sequence mean",
                                                 "finite differences"};
static double worst[W_COUNT];

/* Passes when every element is within its bound (and finite, or the same
 * non-finite value as the reference). Counts one check; prints the worst
 * element on failure. */
static bool close_bound(int family, const char *what, const float *got, const double *ref,
                        const double *bound, size_t n)
{
    size_t bad = n;
    double bad_ratio = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i], ratio;
        if (!isfinite(g) || !isfinite(r))
            ratio = (!isnan(g) && !isnan(r) && g == r) ? 0 : INFINITY;
        else
            ratio = fabs(g - r) / (bound[i] > 0 ? bound[i] : 1e-300);
        if (ratio > worst[family] && isfinite(ratio))
            worst[family] = ratio;
        if (ratio > 1 && (bad == n || ratio > bad_ratio)) {
            bad = i;
            bad_ratio = ratio;
        }
    }
    test_checks++;
    if (bad < n) {
        test_failures++;
        fprintf(stderr, "FAIL %s: element %zu of %zu: got %.9g, reference %.9g, bound %.3g\n",
                what, bad, n, (double)got[bad], ref[bad], bound[bad]);
        return false;
    }
    return true;
}

/* Bitwise equality of two float arrays (NaN == NaN with the same bits). */
static bool same_bits(const char *what, const float *a, const float *b, size_t n)
{
    test_checks++;
    for (size_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            test_failures++;
            fprintf(stderr, "FAIL %s: element %zu of %zu: %.9g vs %.9g\n", what, i, n,
                    (double)a[i], (double)b[i]);
            return false;
        }
    }
    return true;
}

static void read_into(const clattn_tensor *t, float *dst) { CHECK_OK(clattn_tensor_read(t, dst)); }

/* Central finite differences of loss(user) with respect to p[0..n):
 * p is perturbed in place and restored. */
typedef double (*loss_fn)(void *user);
static void fd_grad(loss_fn loss, void *user, double *p, size_t n, double h, double *grad)
{
    for (size_t i = 0; i < n; i++) {
        double t = p[i];
        p[i] = t + h;
        double lp = loss(user);
        p[i] = t - h;
        double lm = loss(user);
        p[i] = t;
        grad[i] = (lp - lm) / (2 * h);
    }
}

/* FD check: got against the FD gradient fd with bound[i] + FD_ABS * scale. */
static void check_fd(const char *what, const float *got, const double *fd, const double *bound,
                     size_t n, double scale)
{
    double *b = dvec(n);
    for (size_t i = 0; i < n; i++)
        b[i] = bound[i] + FD_ABS * scale;
    close_bound(W_FD, what, got, fd, b, n);
    free(b);
}

static void to_double(const float *f, double *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
}

/* A tensor struct that claims another context (for the ctx-mismatch
 * checks, without building a second context). */
static clattn_tensor foreign(const clattn_tensor *t)
{
    static char other; /* any address that is not the context */
    clattn_tensor f = *t;
    f.ctx = (clattn_ctx *)&other;
    return f;
}

#define CHECK_MSG(...)                                                                  \
    CHECK(strstr(clattn_last_error(), __VA_ARGS__), "message lacks \"%s\": %s", __VA_ARGS__, \
          clattn_last_error())

/* ======================================================================== */
/* linear                                                                   */
/* ======================================================================== */

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
    float *x = fvec(nx), *w = fvec(nw), *dy = fvec(ny), *dw0 = fvec(nw), *db0 = fvec(out);
    float *got = fvec(nx > nw ? (nx > out ? nx : out) : (nw > out ? nw : out));
    test_fill_uniform(x, nx, -2, 2);
    test_fill_uniform(w, nw, -1, 1);
    test_fill_uniform(dy, ny, -1, 1);
    test_fill_uniform(dw0, nw, -3, 3);
    test_fill_uniform(db0, out, -3, 3);
    double *rdx = dvec(nx), *bdx = dvec(nx), *rdw = dvec(nw), *bdw = dvec(nw), *rdb = dvec(out),
           *bdb = dvec(out);
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
        lin_fd p = {dvec(nx), dvec(nw), dvec(out), dvec(ny), rows, in, out};
        to_double(x, p.x, nx);
        to_double(w, p.w, nw);
        to_double(dy, p.dy, ny);
        double *g = dvec(nx + nw + out);
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
    int k = 0;
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 4; j++, k++) {
            int64_t xs[2] = {rows[i], feats[j]};
            linear_case(ctx, 2, xs, feats[(i + j + 1) % 4], true, true, true, k % 2 == 1,
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

/* ======================================================================== */
/* activations                                                              */
/* ======================================================================== */

static const char *act_name(int a)
{
    static const char *names[] = {"none", "relu", "gelu", "gelu_tanh", "silu"};
    return names[a];
}

static double act_ref(double x, int a)
{
    switch (a) {
    case CLATTN_ACT_RELU: return x > 0 ? x : 0;
    case CLATTN_ACT_GELU: return 0.5 * x * erfc(-x / sqrt(2.0));
    case CLATTN_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / PI) * (x + 0.044715 * x * x * x)));
    case CLATTN_ACT_SILU: return x / (1.0 + exp(-x));
    default: return x;
    }
}

/* act'(x), written independently of the kernels' forms. */
static double act_grad_ref(double x, int a)
{
    switch (a) {
    case CLATTN_ACT_RELU: return x > 0 ? 1 : 0;
    case CLATTN_ACT_GELU: return 0.5 * erfc(-x / sqrt(2.0)) + x * exp(-0.5 * x * x) / sqrt(2 * PI);
    case CLATTN_ACT_GELU_TANH: {
        double k = sqrt(2.0 / PI), t = tanh(k * (x + 0.044715 * x * x * x));
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x);
    }
    case CLATTN_ACT_SILU: {
        double s = 1 / (1 + exp(-x));
        return s * (1 + x * (1 - s));
    }
    default: return 1;
    }
}

typedef struct act_fd {
    double *x, *dy;
    size_t n;
    int act;
} act_fd;

static double act_loss(void *u)
{
    act_fd *p = u;
    double l = 0;
    for (size_t i = 0; i < p->n; i++)
        l += p->dy[i] * act_ref(p->x[i], p->act);
    return l;
}

static void activation_case(clattn_ctx *ctx, int64_t rows, int64_t cols, int act, bool in_place)
{
    size_t n = (size_t)(rows * cols);
    float *x = fvec(n), *dy = fvec(n), *got = fvec(n);
    double *ref = dvec(n), *bound = dvec(n);
    for (size_t i = 0; i < n; i++)
        x[i] = n > 1 ? -6.0f + 12.0f * (float)i / (float)(n - 1) : 0.5f;
    if (n >= 16) { /* far out, where exp over/underflows, and the kink */
        float far[] = {-1e30f, -100.0f, -30.0f, -10.0f, 10.0f, 30.0f, 100.0f, 1e30f, 0.0f};
        for (size_t i = 0; i < sizeof far / sizeof *far; i++)
            x[(i * 7919) % n] = far[i];
    }
    test_fill_uniform(dy, n, -1, 1);
    for (size_t i = 0; i < n; i++) {
        ref[i] = dy[i] * act_grad_ref(x[i], act);
        bound[i] = 2e-6 * fabs(ref[i]) + 1e-6 * fabs(dy[i]) + 1e-38;
    }
    int64_t shape[2] = {rows, cols};
    clattn_tensor *X = test_tensor(ctx, 2, shape, x), *DY = test_tensor(ctx, 2, shape, dy);
    clattn_tensor *DX = in_place ? DY : test_tensor(ctx, 2, shape, NULL);
    CHECK_OK(clattn_activation_backward(ctx, X, (clattn_activation)act, DY, DX));
    read_into(DX, got);
    char what[128];
    snprintf(what, sizeof what, "activation_backward %s [%lld, %lld]%s", act_name(act),
             (long long)rows, (long long)cols, in_place ? " in place" : "");
    close_bound(W_ACT, what, got, ref, bound, n);
    if (!in_place)
        clattn_tensor_destroy(DX);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(DY);
    free(x);
    free(dy);
    free(got);
    free(ref);
    free(bound);
}

/* Finite differences on random points, away from ReLU's kink. */
static void activation_fd(clattn_ctx *ctx, int act)
{
    const size_t n = 64;
    float x[64], dy[64], got[64];
    double xd[64], dyd[64], g[64], bound[64];
    for (size_t i = 0; i < n; i++) {
        x[i] = test_uniform(-5, 5);
        if (fabsf(x[i]) < 1e-2f)
            x[i] = 0.5f;
        dy[i] = test_uniform(-1, 1);
        xd[i] = x[i];
        dyd[i] = dy[i];
        bound[i] = 2e-6 * fabs(dy[i] * act_grad_ref(x[i], act)) + 1e-6 * fabs(dy[i]);
    }
    act_fd p = {xd, dyd, n, act};
    fd_grad(act_loss, &p, xd, n, FD_H, g);
    int64_t s = (int64_t)n;
    clattn_tensor *X = test_tensor(ctx, 1, &s, x), *DY = test_tensor(ctx, 1, &s, dy);
    CHECK_OK(clattn_activation_backward(ctx, X, (clattn_activation)act, DY, DY));
    read_into(DY, got);
    char what[96];
    snprintf(what, sizeof what, "activation_backward %s vs finite differences", act_name(act));
    check_fd(what, got, g, bound, n, 1.0);
    clattn_tensor_destroy(X);
    clattn_tensor_destroy(DY);
}

static void test_activations(clattn_ctx *ctx)
{
    static const int64_t rows[] = {1, 3, 17, 113}, cols[] = {1, 5, 64, 130};
    int k = 0;
    for (int a = 0; a <= CLATTN_ACT_SILU; a++) {
        for (size_t i = 0; i < 4; i++)
            for (size_t j = 0; j < 4; j++, k++)
                if (!small || (i + j) % 3 == 0)
                    activation_case(ctx, rows[i], cols[j], a, k % 3 == 0);
        activation_fd(ctx, a);
    }
    /* NaN inputs: GELU, GELU_TANH and SiLU give NaN; ReLU passes dy on,
     * as PyTorch's threshold_backward (NaN <= 0 is false). */
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
    /* dx NULL: nothing to do, still OK. */
    clattn_tensor *X = test_tensor(ctx, 1, &s2, x);
    CHECK_OK(clattn_activation_backward(ctx, X, CLATTN_ACT_GELU, X, NULL));
    clattn_tensor_destroy(X);
}

/* ======================================================================== */
/* layer norm                                                               */
/* ======================================================================== */

/* Double layer norm forward of rows x e (gamma, beta may be NULL). */
static void ln_fwd(const double *x, const double *g, const double *b, size_t rows, size_t e,
                   double eps, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        const double *xr = x + r * e;
        double m = 0, v = 0;
        for (size_t i = 0; i < e; i++)
            m += xr[i];
        m /= (double)e;
        for (size_t i = 0; i < e; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (double)e;
        double rs = 1 / sqrt(v + eps);
        for (size_t i = 0; i < e; i++)
            y[r * e + i] = (xr[i] - m) * rs * (g ? g[i] : 1) + (b ? b[i] : 0);
    }
}

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

/* Analytic reference and per-element bounds. dg0/db0: the prior values
 * when accumulating (NULL otherwise). */
static void ln_ref(const float *x, const float *gamma, const float *dy, size_t rows, size_t e,
                   double eps, const float *dg0, const float *db0, double *dx, double *bdx,
                   double *dg, double *bdg, double *db, double *bdb)
{
    for (size_t i = 0; i < e; i++) {
        dg[i] = dg0 ? dg0[i] : 0;
        bdg[i] = fabs(dg[i]);
        db[i] = db0 ? db0[i] : 0;
        bdb[i] = fabs(db[i]);
    }
    double *xh = dvec(e), *g = dvec(e);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * e, *dyr = dy + r * e;
        double m = 0, v = 0;
        for (size_t i = 0; i < e; i++)
            m += xr[i];
        m /= (double)e;
        for (size_t i = 0; i < e; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (double)e;
        double rs = 1 / sqrt(v + eps), mg = 0, mgx = 0, ag = 0, agx = 0;
        for (size_t i = 0; i < e; i++) {
            xh[i] = (xr[i] - m) * rs;
            g[i] = (double)dyr[i] * (gamma ? gamma[i] : 1);
            mg += g[i];
            mgx += g[i] * xh[i];
            ag += fabs(g[i]);
            agx += fabs(g[i] * xh[i]);
            dg[i] += dyr[i] * xh[i];
            /* xhat has unit RMS: its rounding errors are relative to 1,
             * not to |xhat| (which is tiny where x is near the mean). */
            bdg[i] += fabs(dyr[i]) * (fabs(xh[i]) + 1);
            db[i] += dyr[i];
            bdb[i] += fabs(dyr[i]);
        }
        mg /= (double)e;
        mgx /= (double)e;
        ag /= (double)e;
        agx /= (double)e;
        for (size_t i = 0; i < e; i++) {
            dx[r * e + i] = rs * (g[i] - mg - xh[i] * mgx);
            bdx[r * e + i] = TOL_LN * rs * (fabs(g[i]) + ag + fabs(xh[i]) * agx) + 1e-30;
        }
    }
    for (size_t i = 0; i < e; i++) {
        bdg[i] = TOL_COL * bdg[i] + 1e-30;
        bdb[i] = TOL_COL * bdb[i] + 1e-30;
    }
    free(xh);
    free(g);
}

/* One case. mean/std: the data's offset and spread; affine: gamma given;
 * want_*: which outputs; in_place: dx is dy; acc: accumulate; fd: also
 * check against finite differences. */
static void layer_norm_case(clattn_ctx *ctx, int64_t rows, int64_t e, double mean, double std,
                            bool affine, bool want_dx, bool want_dg, bool want_db, bool in_place,
                            bool acc, bool fd)
{
    size_t n = (size_t)(rows * e), ne = (size_t)e;
    float *x = fvec(n), *dy = fvec(n), *gam = fvec(ne), *bet = fvec(ne), *dg0 = fvec(ne),
          *db0 = fvec(ne), *got = fvec(n);
    float half = (float)(std * sqrt(3.0));
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(mean + test_uniform(-half, half));
    test_fill_uniform(dy, n, -1, 1);
    test_fill_uniform(gam, ne, 0.5f, 1.5f);
    test_fill_uniform(bet, ne, -1, 1);
    test_fill_uniform(dg0, ne, -2, 2);
    test_fill_uniform(db0, ne, -2, 2);
    const float eps = 1e-5f;
    double *rdx = dvec(n), *bdx = dvec(n), *rdg = dvec(ne), *bdg = dvec(ne), *rdb = dvec(ne),
           *bdb = dvec(ne);
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
        ln_fd_t p = {dvec(n), affine ? dvec(ne) : NULL, dvec(ne), dvec(n), dvec(n), eps,
                     (size_t)rows, ne};
        to_double(x, p.x, n);
        if (affine)
            to_double(gam, p.g, ne);
        to_double(bet, p.b, ne);
        to_double(dy, p.dy, n);
        double *g = dvec(n);
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
    float *x = fvec(n), *dy = fvec(n), *a = fvec(n), *b = fvec(n), g[130], ga[130], gb[130];
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

/* ======================================================================== */
/* softmax                                                                  */
/* ======================================================================== */

static void softmax_d(const double *x, size_t rows, size_t n, double *y)
{
    for (size_t r = 0; r < rows; r++) {
        double m = -INFINITY, s = 0;
        for (size_t i = 0; i < n; i++)
            m = fmax(m, x[r * n + i]);
        for (size_t i = 0; i < n; i++)
            s += exp(x[r * n + i] - m);
        for (size_t i = 0; i < n; i++)
            y[r * n + i] = exp(x[r * n + i] - m) / s;
    }
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
    float *x = fvec(tot), *y = fvec(tot), *dy = fvec(tot), *got = fvec(tot);
    double *xd = dvec(tot), *yd = dvec(tot), *ref = dvec(tot), *bound = dvec(tot);
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
        sm_fd p = {xd, dvec(tot), dvec(tot), (size_t)rows, n};
        to_double(dy, p.dy, tot);
        double *g = dvec(tot);
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
            softmax_case(ctx, rows[i], widths[j], 4.0f, k % 3 == 1, k % 4 == 2,
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

/* ======================================================================== */
/* embedding                                                                */
/* ======================================================================== */

static void embedding_case(clattn_ctx *ctx, int64_t v, int64_t e, size_t count, bool acc,
                           bool fd)
{
    size_t ne = (size_t)e, nt = (size_t)v * ne, nd = count * ne;
    int64_t *ids = malloc(count * sizeof *ids);
    float *dy = fvec(nd), *t0 = fvec(nt), *got = fvec(nt), *fsum = fvec(nt);
    double *ref = dvec(nt), *bound = dvec(nt);
    for (size_t i = 0; i < count; i++) /* skewed, with repeats and unused rows */
        ids[i] = (int64_t)((i * i * 7 + 3) % (size_t)((v + 1) / 2 + 1)) % v;
    ids[0] = v - 1;
    test_fill_uniform(dy, nd, -1, 1);
    test_fill_uniform(t0, nt, -1, 1);
    for (size_t j = 0; j < nt; j++) {
        ref[j] = acc ? t0[j] : 0;
        bound[j] = fabs(ref[j]);
        fsum[j] = 0.0f;
    }
    size_t *uses = calloc((size_t)v, sizeof *uses);
    for (size_t i = 0; i < count; i++) {
        uses[ids[i]]++;
        for (size_t c = 0; c < ne; c++) {
            size_t j = (size_t)ids[i] * ne + c;
            ref[j] += dy[i * ne + c];
            bound[j] += fabs(dy[i * ne + c]);
            fsum[j] += dy[i * ne + c]; /* the documented order: ascending i */
        }
    }
    for (size_t j = 0; j < nt; j++) {
        size_t k = uses[j / ne] + 1;
        bound[j] = (double)k * U * bound[j] + 1e-38;
        if (acc)
            fsum[j] = uses[j / ne] ? t0[j] + fsum[j] : t0[j];
    }
    int64_t ts[2] = {v, e}, ds[2] = {(int64_t)count, e};
    clattn_tensor *DY = test_tensor(ctx, 2, ds, dy);
    clattn_tensor *DT = test_tensor(ctx, 2, ts, acc ? t0 : NULL);
    if (!acc)
        CHECK_OK(clattn_tensor_fill(DT, NAN));
    CHECK_OK(clattn_embedding_backward(ctx, ids, count, DY, DT, acc));
    read_into(DT, got);
    char what[160];
    snprintf(what, sizeof what, "embedding_backward V=%lld E=%lld count=%zu%s", (long long)v,
             (long long)e, count, acc ? " accumulate" : "");
    close_bound(W_EMB, what, got, ref, bound, nt);
    char w2[200];
    snprintf(w2, sizeof w2, "%s: bits of the ordered float sum", what);
    same_bits(w2, got, fsum, nt);
    if (fd && !acc) {
        /* L = sum dy * table[ids]: linear in the table. */
        double *td = dvec(nt), *g = dvec(nt);
        to_double(t0, td, nt);
        for (size_t j = 0; j < nt; j++) {
            double s = 0;
            for (int sign = -1; sign <= 1; sign += 2) {
                double l = 0, keep = td[j];
                td[j] = keep + sign * FD_H;
                for (size_t i = 0; i < count; i++)
                    for (size_t c = 0; c < ne; c++)
                        l += (double)dy[i * ne + c] * td[(size_t)ids[i] * ne + c];
                td[j] = keep;
                s += sign * l;
            }
            g[j] = s / (2 * FD_H);
        }
        snprintf(w2, sizeof w2, "%s vs finite differences", what);
        check_fd(w2, got, g, bound, nt, 1.0);
        free(td);
        free(g);
    }
    clattn_tensor_destroy(DY);
    clattn_tensor_destroy(DT);
    free(ids);
    free(dy);
    free(t0);
    free(got);
    free(fsum);
    free(ref);
    free(bound);
    free(uses);
}

static void test_embedding(clattn_ctx *ctx)
{
    embedding_case(ctx, 1, 5, 1, false, true);
    embedding_case(ctx, 7, 1, 17, false, true);
    embedding_case(ctx, 7, 5, 17, true, false);
    embedding_case(ctx, 7, 5, 17, false, true);
    embedding_case(ctx, 113, 130, small ? 60 : 300, false, false);
    embedding_case(ctx, 113, 64, small ? 60 : 300, true, false);
    if (!small)
        embedding_case(ctx, 1000, 64, 5000, false, false);

    /* Bad ids: the error names position and value; dtable unchanged. */
    int64_t ts[2] = {7, 5}, ds[2] = {3, 5};
    clattn_tensor *DT = test_tensor(ctx, 2, ts, NULL), *DY = test_tensor(ctx, 2, ds, NULL);
    CHECK_OK(clattn_tensor_fill(DT, 7.0f));
    CHECK_OK(clattn_tensor_fill(DY, 1.0f));
    int64_t bad[3] = {0, 7, 1};
    CHECK_STATUS(clattn_embedding_backward(ctx, bad, 3, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ids[1] = 7");
    bad[1] = -1;
    CHECK_STATUS(clattn_embedding_backward(ctx, bad, 3, DY, DT, true), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("ids[1] = -1");
    float got[35];
    read_into(DT, got);
    bool untouched = true;
    for (size_t i = 0; i < 35; i++)
        untouched = untouched && got[i] == 7.0f;
    CHECK(untouched, "embedding_backward with a bad id wrote to dtable");
    int64_t ok[3] = {0, 1, 2};
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 2, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[3, 5]");
    CHECK_STATUS(clattn_embedding_backward(ctx, NULL, 3, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 0, DY, DT, false), CLATTN_ERR_INVALID_ARG);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 3, DY, DY, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("must not alias"); /* [3, 5] fits as a table: only the aliasing is wrong */
    CHECK_OK(clattn_embedding_backward(ctx, ok, 3, DY, NULL, false));
    int64_t s15 = 15;
    clattn_tensor *T1 = test_tensor(ctx, 1, &s15, NULL);
    CHECK_STATUS(clattn_embedding_backward(ctx, ok, 3, DY, T1, false), CLATTN_ERR_INVALID_ARG);
    CHECK_MSG("[V, E]");
    clattn_tensor_destroy(T1);
    clattn_tensor_destroy(DT);
    clattn_tensor_destroy(DY);
}

/* ======================================================================== */
/* dropout                                                                  */
/* ======================================================================== */

/* Philox4x32-10 on the host, from the Random123 paper's description:
 * 10 rounds, the key bumped by the Weyl constants before every round but
 * the first. */
static void philox_host(const uint32_t in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c[4] = {in[0], in[1], in[2], in[3]}, k[2] = {key_in[0], key_in[1]};
    for (int r = 0; r < 10; r++) {
        if (r) {
            k[0] += 0x9E3779B9u;
            k[1] += 0xBB67AE85u;
        }
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n[4] = {(uint32_t)(p1 >> 32) ^ c[1] ^ k[0], (uint32_t)p1,
                         (uint32_t)(p0 >> 32) ^ c[3] ^ k[1], (uint32_t)p0};
        memcpy(c, n, sizeof c);
    }
    memcpy(out, c, sizeof c);
}

/* Random123's known-answer vectors for philox4x32-10 (kat_vectors). */
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

/* Host mask: true where element i is dropped (the header's definition,
 * compared in double: r < p * 2^32). */
static bool host_dropped(size_t i, float p, uint64_t seed, uint64_t offset)
{
    uint64_t c = offset + i;
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, out[4];
    philox_host(ctr, key, out);
    return (double)out[0] < (double)p * 4294967296.0;
}

static void dropout_case(clattn_ctx *ctx, size_t n, float p, uint64_t seed, uint64_t offset,
                         bool in_place, bool backward)
{
    float *x = fvec(n), *got = fvec(n), *want = fvec(n);
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

/* ======================================================================== */
/* sequence mean                                                            */
/* ======================================================================== */

static void sequence_mean_case(clattn_ctx *ctx, int64_t b, int64_t n_, int64_t e_)
{
    size_t bn = (size_t)b, n = (size_t)n_, e = (size_t)e_, nx = bn * n * e, ny = bn * e;
    float *x = fvec(nx), *dy = fvec(ny), *got = fvec(nx);
    double *ref = dvec(nx), *bound = dvec(nx);
    test_fill_uniform(x, nx, -2, 2);
    test_fill_uniform(dy, ny, -1, 1);
    for (size_t i = 0; i < bn; i++)
        for (size_t c = 0; c < e; c++) {
            double s = 0, a = 0;
            for (size_t t = 0; t < n; t++) {
                s += x[(i * n + t) * e + c];
                a += fabs(x[(i * n + t) * e + c]);
            }
            ref[i * e + c] = s / (double)n;
            bound[i * e + c] = (double)(n + 1) * U * a / (double)n +
                               3 * U * fabs(ref[i * e + c]) + 1e-38;
        }
    int64_t xs[3] = {b, n_, e_}, ys[2] = {b, e_};
    clattn_tensor *X = test_tensor(ctx, 3, xs, x), *Y = test_tensor(ctx, 2, ys, NULL);
    CHECK_OK(clattn_sequence_mean(ctx, X, Y));
    read_into(Y, got);
    char what[128], w2[160];
    snprintf(what, sizeof what, "sequence_mean [%lld, %lld, %lld]", (long long)b, (long long)n_,
             (long long)e_);
    close_bound(W_SEQ, what, got, ref, bound, ny);
    /* Backward: dx[b, t, :] = dy[b, :] / N; also against finite
     * differences of L = sum dy * mean(x) on small shapes. */
    clattn_tensor *DY = test_tensor(ctx, 2, ys, dy), *DX = test_tensor(ctx, 3, xs, NULL);
    CHECK_OK(clattn_tensor_fill(DX, NAN));
    CHECK_OK(clattn_sequence_mean_backward(ctx, DY, DX));
    read_into(DX, got);
    for (size_t i = 0; i < bn; i++)
        for (size_t t = 0; t < n; t++)
            for (size_t c = 0; c < e; c++) {
                size_t j = (i * n + t) * e + c;
                ref[j] = (double)dy[i * e + c] / (double)n;
                bound[j] = 3 * U * fabs(ref[j]) + 1e-38;
            }
    snprintf(w2, sizeof w2, "%s backward", what);
    close_bound(W_SEQ, w2, got, ref, bound, nx);
    if (nx <= 2000) {
        double *g = dvec(nx);
        for (size_t i = 0; i < bn; i++)
            for (size_t t = 0; t < n; t++)
                for (size_t c = 0; c < e; c++) {
                    /* L = sum_b,c dy[b, c] * (sum_t x[b, t, c]) / N. */
                    size_t j = (i * n + t) * e + c;
                    double l[2];
                    for (int s = 0; s < 2; s++) {
                        double sum = 0;
                        for (size_t tt = 0; tt < n; tt++) {
                            double xv = x[(i * n + tt) * e + c];
                            if (tt == t)
                                xv += s ? FD_H : -FD_H;
                            sum += xv;
                        }
                        l[s] = dy[i * e + c] * sum / (double)n;
                    }
                    g[j] = (l[1] - l[0]) / (2 * FD_H);
                }
        snprintf(w2, sizeof w2, "%s backward vs finite differences", what);
        check_fd(w2, got, g, bound, nx, 1.0);
        free(g);
    }
    clattn_tensor *ts[] = {X, Y, DY, DX};
    for (size_t i = 0; i < 4; i++)
        clattn_tensor_destroy(ts[i]);
    free(x);
    free(dy);
    free(got);
    free(ref);
    free(bound);
}

static void test_sequence_mean(clattn_ctx *ctx)
{
    static const int64_t bs[] = {1, 3}, ns[] = {1, 17, 113}, es[] = {1, 5, 130};
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 3; j++)
            for (size_t k = 0; k < 3; k++)
                if (!small || bs[i] * ns[j] * es[k] <= 3000)
                    sequence_mean_case(ctx, bs[i], ns[j], es[k]);
}

/* ======================================================================== */
/* argument errors                                                          */
/* ======================================================================== */

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
    const char *s = getenv("CLATTN_TEST_SMALL");
    small = s && *s && strcmp(s, "0") != 0;
    clattn_ctx *ctx = test_ctx();
    test_seed(23);
    clattn_device_info info;
    CHECK_OK(clattn_ctx_device_info(ctx, &info));
    /* As in test_layers: CLBlast under oclgrind is slow and reports false
     * positives outside clattn, so only clattn's own kernels run there. */
    on_oclgrind = strstr(info.platform_name, "Oclgrind") != NULL;
    if (on_oclgrind)
        fprintf(stderr, "oclgrind: skipping the CLBlast products of linear_backward\n");
    test_linear(ctx);
    test_activations(ctx);
    test_layer_norm(ctx);
    test_softmax(ctx);
    test_embedding(ctx);
    test_dropout(ctx);
    test_sequence_mean(ctx);
    test_errors(ctx);
    CHECK_OK(clattn_ctx_finish(ctx));
    clattn_ctx_destroy(ctx);
    for (int i = 0; i < W_COUNT; i++)
        fprintf(stderr, "worst error / bound, %s: %.3f\n", worst_names[i], worst[i]);
    return test_summary("test_layers_backward");
}
