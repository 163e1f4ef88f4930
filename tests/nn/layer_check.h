/* layer_check.h - what the layer backward tests of tests/nn share: the
 * per-element bound comparison with the largest error / bound kept per
 * check family, bitwise comparison, central finite differences, and the
 * double-precision references of the layer ops (activations and their
 * derivatives, layer norm with its analytic gradients, softmax, the host
 * Philox4x32-10 of dropout). The op table (op_table.h) and the
 * special-case programs (test_linear_backward, test_norm_backward,
 * test_embedding_backward, test_dropout, test_backward_errors) use them.
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
 * - forward ops (the op table's forward checks), as test_layers.c: the
 *   GEMM bound 2 (in + 3) u max sum|x w| (times 1.2, as there) + 1e-6
 *   + 2e-6 |ref| for linear; activations 2e-6 |ref| + 1e-6; layer norm
 *   2e-5 (1 + |ref|); softmax 2e-5 |ref| + 1e-9; embedding exact; add
 *   and dropout one float rounding of the double result, u |ref| (so
 *   their error / bound may reach 1, never exceed it), add_scaled three,
 *   3 u (|alpha a| + |beta b|); sequence mean as above.
 * - RMSNorm (forward, dx, dweight): r = 1 / sqrt(mean(x^2) + eps) from a
 *   sum of E positive squares, in whatever order the device's row kernel
 *   uses (serial on CPUs up to 1024, a tree elsewhere): at most (E - 1) u
 *   relative in any order, so (E / 2 + 3) u in r with rsqrt's 2 ulp;
 *   forward (E / 2 + 8) u |ref| (the divide, x r, w (x r)). dx = r (g -
 *   xhat mean(g xhat)): (E + 16) u r (|g_i| + 2 |xhat_i| mean|g xhat|)
 *   (r's error twice in xhat mean(..), the mean's E u); dweight: the
 *   column sum's (rows + 6) u plus each term's (E / 2 + 6) u, times
 *   sum|dy xhat|.
 * - rotary: a cos - b sin with OpenCL's cos and sin within 4 ulp of the
 *   float32 angle the header defines (the reference takes the same
 *   float32 angle, then cos and sin in double): 8 u (|a| + |b|).
 * - SwiGLU: silu(g) u with exp (3 ulp), the divide (2.5 ulp) and two
 *   roundings: 10 u |ref|; dgate as the activations' SiLU derivative
 *   (2e-6 |ref| + 1e-6 |dout up|); dup 10 u |ref|.
 * The largest error / bound of each family is printed at the end of each
 * program (all below 0.5 on POCL and Rusticl when written, but for the
 * one-rounding forward bounds above). */
#ifndef CLATTN_TEST_LAYER_CHECK_H
#define CLATTN_TEST_LAYER_CHECK_H

#include "nn/nn.h" /* clattn_tensor's fields (foreign) */
#include "testutil.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define U 5.9604644775390625e-8
#define TOL_LN 4e-6
#define TOL_COL 1e-5
#define TOL_SM 2e-6
#define FD_H 1e-4
#define FD_ABS 1e-7
#define PI 3.14159265358979323846

/* CLATTN_TEST_SMALL=1: the largest shapes are dropped (oclgrind). */
extern bool small;
/* Oclgrind: CLBlast is slow there and reports false positives outside
 * clattn, so only clattn's own kernels run (as in test_layers). */
extern bool on_oclgrind;

/* Check families: the largest |got - ref| / bound of each is kept. */
enum { W_LIN, W_ACT, W_LN, W_COL, W_SM, W_EMB, W_SEQ, W_FD, W_FWD, W_RMS, W_ROPE, W_COUNT };

/* Creates the context, seeds the data (23) and sets small and
 * on_oclgrind. */
clattn_ctx *layer_test_init(void);
/* Finishes and destroys ctx, prints the worst error / bound of every
 * family that ran, then the summary; returns the exit code. */
int layer_test_finish(clattn_ctx *ctx, const char *name);

/* Passes when every element is within its bound (and finite, or the same
 * non-finite value as the reference). Counts one check; prints the worst
 * element (got, reference and bound) on failure. */
bool close_bound(int family, const char *what, const float *got, const double *ref,
                 const double *bound, size_t n);
/* Bitwise equality of two float arrays (NaN == NaN with the same bits). */
bool same_bits(const char *what, const float *a, const float *b, size_t n);
void read_into(const clattn_tensor *t, float *dst);

/* Central finite differences of loss(user) with respect to p[0..n):
 * p is perturbed in place and restored. */
typedef double (*loss_fn)(void *user);
void fd_grad(loss_fn loss, void *user, double *p, size_t n, double h, double *grad);
/* FD check: got against the FD gradient fd with bound[i] + FD_ABS * scale. */
void check_fd(const char *what, const float *got, const double *fd, const double *bound,
              size_t n, double scale);
void to_double(const float *f, double *d, size_t n);
/* A tensor struct that claims another context (for the ctx-mismatch
 * checks, without building a second context). */
clattn_tensor foreign(const clattn_tensor *t);

/* Activations: names, the double forward and act'(x), written
 * independently of the kernels' forms. a is a clattn_activation. */
const char *act_name(int a);
double act_ref(double x, int a);
double act_grad_ref(double x, int a);

/* Double layer norm forward of rows x e (gamma, beta may be NULL). */
void ln_fwd(const double *x, const double *g, const double *b, size_t rows, size_t e,
            double eps, double *y);
/* Layer norm's analytic gradients and per-element bounds. dg0/db0: the
 * prior values when accumulating (NULL otherwise). */
void ln_ref(const float *x, const float *gamma, const float *dy, size_t rows, size_t e,
            double eps, const float *dg0, const float *db0, double *dx, double *bdx, double *dg,
            double *bdg, double *db, double *bdb);
/* Double softmax of rows x n. */
void softmax_d(const double *x, size_t rows, size_t n, double *y);

/* Philox4x32-10 on the host, from the Random123 paper's description. */
void philox_host(const uint32_t in[4], const uint32_t key_in[2], uint32_t out[4]);
/* Host mask: true where element i is dropped (the header's definition,
 * compared in double: r < p * 2^32). */
bool host_dropped(size_t i, float p, uint64_t seed, uint64_t offset);

#endif
