/* test_decoder_ops.c - the special cases of the decoder-LM blocks that the
 * op table (op_table.c: forward and backward against double references
 * and finite differences) does not cover: RMSNorm's accumulation, output
 * subsets, zero and NaN rows; rotary's default positions, its backward
 * undoing the forward, NaN and Inf staying in their pair; SwiGLU at
 * extreme gates and with one gradient; and every argument error with
 * its status and message. Tolerances: layer_check.h. */
#include "layer_check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ======================================================================== */
/* RMSNorm                                                                   */
/* ======================================================================== */

/* dweight accumulates (prior + gradient, one float add more: u |ref|, so
 * its error / bound may reach 1, never exceed it),
 * dweight alone equals dweight with dx, dx alone equals dx with dweight,
 * in place equals out of place, bit for bit. */
static void rms_accumulate(clattn_ctx *ctx)
{
    enum { R = 17, E = 130 };
    int64_t sx[2] = {R, E}, se = E;
    float *x = test_fvec(R * E), *dy = test_fvec(R * E), *w = test_fvec(E), *prior = test_fvec(E);
    test_fill_uniform(x, R * E, -2, 2);
    test_fill_uniform(dy, R * E, -1, 1);
    test_fill_uniform(w, E, 0.5f, 1.5f);
    test_fill_uniform(prior, E, -1, 1);
    clattn_tensor *X = test_tensor(ctx, 2, sx, x), *DY = test_tensor(ctx, 2, sx, dy);
    clattn_tensor *W = test_tensor(ctx, 1, &se, w), *DW = test_tensor(ctx, 1, &se, NULL);
    clattn_tensor *DX = test_tensor(ctx, 2, sx, NULL), *DWa = test_tensor(ctx, 1, &se, prior);
    clattn_tensor *DX2 = test_tensor(ctx, 2, sx, NULL), *DW2 = test_tensor(ctx, 1, &se, NULL);
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, DY, DX, DW, false));
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, DY, NULL, DWa, true));
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, DY, NULL, DW2, false));
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, DY, DX2, NULL, false));
    float *dw = test_fvec(E), *dwa = test_fvec(E), *dw2 = test_fvec(E);
    float *dx = test_fvec(R * E), *dx2 = test_fvec(R * E);
    read_into(DW, dw);
    read_into(DWa, dwa);
    read_into(DW2, dw2);
    read_into(DX, dx);
    read_into(DX2, dx2);
    double *ref = test_dvec(E), *bd = test_dvec(E);
    for (size_t i = 0; i < E; i++) {
        ref[i] = (double)prior[i] + dw[i];
        bd[i] = U * fabs(ref[i]) + 1e-38;
    }
    close_bound(W_COL, "rms_norm_backward: dweight accumulated", dwa, ref, bd, E);
    same_bits("rms_norm_backward: dweight alone vs with dx", dw2, dw, E);
    same_bits("rms_norm_backward: dx alone vs with dweight", dx2, dx, R * E);
    /* dx over dy, with dweight (which reads dy first). */
    clattn_tensor *DY2 = test_tensor(ctx, 2, sx, dy), *DW3 = test_tensor(ctx, 1, &se, NULL);
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, DY2, DY2, DW3, false));
    read_into(DY2, dx2);
    read_into(DW3, dw2);
    same_bits("rms_norm_backward: dx in place vs not", dx2, dx, R * E);
    same_bits("rms_norm_backward: dweight with dx in place", dw2, dw, E);
    /* Forward in place. */
    clattn_tensor *Y = test_tensor(ctx, 2, sx, NULL), *X2 = test_tensor(ctx, 2, sx, x);
    CHECK_OK(clattn_rms_norm(ctx, X, W, 1e-6f, Y));
    CHECK_OK(clattn_rms_norm(ctx, X2, W, 1e-6f, X2));
    read_into(Y, dx);
    read_into(X2, dx2);
    same_bits("rms_norm: in place vs not", dx2, dx, R * E);
    clattn_tensor *all[] = {X, DY, W, DW, DX, DWa, DX2, DW2, DY2, DW3, Y, X2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
    free(x), free(dy), free(w), free(prior), free(dw), free(dwa), free(dw2), free(dx), free(dx2);
    free(ref), free(bd);
}

/* A zero row with eps > 0 gives y = 0 and dx = r dy (finite); a NaN in a
 * row makes that row NaN; +inf makes r = 0, so the row is 0 but for NaN
 * at the inf (inf * 0), as PyTorch's x * rsqrt(mean(x^2) + eps). */
static void rms_special_rows(clattn_ctx *ctx)
{
    enum { E = 5 };
    float x[3 * E] = {0, 0, 0, 0, 0, 1, NAN, 2, 3, 4, 1, INFINITY, 2, 3, 4};
    float dy[3 * E] = {1, -1, 0.5f, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    int64_t sx[2] = {3, E};
    clattn_tensor *X = test_tensor(ctx, 2, sx, x), *Y = test_tensor(ctx, 2, sx, NULL);
    clattn_tensor *DY = test_tensor(ctx, 2, sx, dy), *DX = test_tensor(ctx, 2, sx, NULL);
    CHECK_OK(clattn_rms_norm(ctx, X, NULL, 1e-6f, Y));
    CHECK_OK(clattn_rms_norm_backward(ctx, X, NULL, 1e-6f, DY, DX, NULL, false));
    float y[3 * E], dx[3 * E];
    read_into(Y, y);
    read_into(DX, dx);
    double r0 = 1.0 / sqrt((double)1e-6f);
    for (int i = 0; i < E; i++) {
        CHECK(y[i] == 0.0f, "rms_norm: zero row y[%d] = %g", i, (double)y[i]);
        CHECK(fabs(dx[i] - r0 * dy[i]) <= 4 * U * r0 * fabs(dy[i]),
              "rms_norm_backward: zero row dx[%d] = %g, expected %g", i, (double)dx[i],
              r0 * dy[i]);
        CHECK(isnan(y[E + i]) && isnan(dx[E + i]), "rms_norm: NaN row [%d]: y %g dx %g", i,
              (double)y[E + i], (double)dx[E + i]);
        CHECK(i == 1 ? isnan(y[2 * E + i]) : y[2 * E + i] == 0.0f, "rms_norm: +inf row y[%d] = %g",
              i, (double)y[2 * E + i]);
    }
    clattn_tensor_destroy(X), clattn_tensor_destroy(Y), clattn_tensor_destroy(DY);
    clattn_tensor_destroy(DX);
}

static void rms_errors(clattn_ctx *ctx)
{
    const clattn_status E = CLATTN_ERR_INVALID_ARG;
    int64_t sx[2] = {3, 7}, s7 = 7, s6 = 6, sb[2] = {3, 6};
    clattn_tensor *X = test_tensor(ctx, 2, sx, NULL), *Y = test_tensor(ctx, 2, sx, NULL);
    clattn_tensor *W = test_tensor(ctx, 1, &s7, NULL), *W6 = test_tensor(ctx, 1, &s6, NULL);
    clattn_tensor *Xb = test_tensor(ctx, 2, sb, NULL), *DW = test_tensor(ctx, 1, &s7, NULL);
    clattn_tensor *all[] = {X, Y, W, W6, Xb, DW};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CHECK_OK(clattn_tensor_fill(all[i], 0.5f));
    clattn_tensor fx = foreign(X);
    CHECK_STATUS(clattn_rms_norm(NULL, X, W, 1e-6f, Y), E);
    CHECK_STATUS(clattn_rms_norm(ctx, NULL, W, 1e-6f, Y), E);
    CHECK_MSG("x is NULL");
    CHECK_STATUS(clattn_rms_norm(ctx, X, W, 1e-6f, NULL), E);
    CHECK_MSG("y is NULL");
    CHECK_STATUS(clattn_rms_norm(ctx, &fx, W, 1e-6f, Y), E);
    CHECK_MSG("another context");
    CHECK_STATUS(clattn_rms_norm(ctx, X, W6, 1e-6f, Y), E);
    CHECK_MSG("weight [6] must be [E]");
    CHECK_STATUS(clattn_rms_norm(ctx, X, W, 1e-6f, Xb), E);
    CHECK_MSG("y [3, 6] must have the shape of x [3, 7]");
    CHECK_STATUS(clattn_rms_norm(ctx, X, W, -1.0f, Y), E);
    CHECK_MSG("eps = -1");
    CHECK_STATUS(clattn_rms_norm(ctx, X, W, NAN, Y), E);
    CHECK_MSG("eps = nan");
    CHECK_STATUS(clattn_rms_norm(ctx, W, W, 1e-6f, W), E);
    CHECK_MSG("y must not alias weight");
    CHECK_OK(clattn_rms_norm(ctx, X, NULL, 0.0f, Y));

    CHECK_STATUS(clattn_rms_norm_backward(NULL, X, W, 1e-6f, Y, Xb, DW, false), E);
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, NULL, NULL, DW, false), E);
    CHECK_MSG("dy is NULL");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Xb, NULL, DW, false), E);
    CHECK_MSG("dy [3, 6]");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, Xb, NULL, false), E);
    CHECK_MSG("dx [3, 6]");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, NULL, W6, false), E);
    CHECK_MSG("dweight [6]");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, NULL, 1e-6f, Y, NULL, DW, false), E);
    CHECK_MSG("dweight needs weight");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, INFINITY, Y, NULL, DW, false), E);
    CHECK_MSG("eps = inf");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, X, NULL, false), E);
    CHECK_MSG("dx must not alias x or weight");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, NULL, W, false), E);
    CHECK_MSG("dweight must not alias");
    CHECK_STATUS(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, Y, DW, false), CLATTN_OK);
    CHECK_OK(clattn_rms_norm_backward(ctx, X, W, 1e-6f, Y, NULL, NULL, false));
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

/* ======================================================================== */
/* Rotary                                                                    */
/* ======================================================================== */

/* positions NULL is 0 .. N-1 in every sequence (the same bits as the
 * explicit array); [N, H, D] is B = 1; the backward undoes the forward
 * (an orthogonal rotation: within 16 u (|a| + |b|), two rotations' 8 u);
 * in place equals out of place; a NaN or Inf stays within its pair. */
static void rope_cases(clattn_ctx *ctx)
{
    enum { B = 2, N = 9, H = 2, D = 16, NUM = B * N * H * D };
    int64_t s4[4] = {B, N, H, D}, s3[3] = {N, H, D};
    float *x = test_fvec(NUM), *y1 = test_fvec(NUM), *y2 = test_fvec(NUM), *back = test_fvec(NUM);
    test_fill_uniform(x, NUM, -2, 2);
    int64_t pos[B * N];
    for (int t = 0; t < B * N; t++)
        pos[t] = t % N;
    clattn_rope_params p = clattn_rope_params_default();
    p.theta = 500000;
    clattn_tensor *X = test_tensor(ctx, 4, s4, x), *Y = test_tensor(ctx, 4, s4, NULL);
    clattn_tensor *Y2 = test_tensor(ctx, 4, s4, NULL), *X3 = test_tensor(ctx, 3, s3, x);
    clattn_tensor *Y3 = test_tensor(ctx, 3, s3, NULL), *XI = test_tensor(ctx, 4, s4, x);
    CHECK_OK(clattn_rotary(ctx, X, NULL, &p, Y));
    CHECK_OK(clattn_rotary(ctx, X, pos, &p, Y2));
    read_into(Y, y1);
    read_into(Y2, y2);
    same_bits("rotary: positions NULL vs 0 .. N-1", y1, y2, NUM);
    CHECK_OK(clattn_rotary(ctx, X3, NULL, &p, Y3));
    read_into(Y3, y2);
    same_bits("rotary: [N, H, D] vs the first sequence of [B, N, H, D]", y2, y1, NUM / B);
    CHECK_OK(clattn_rotary(ctx, XI, NULL, &p, XI));
    read_into(XI, y2);
    same_bits("rotary: in place vs not", y2, y1, NUM);
    /* Y back from the host first: Oclgrind's --uninitialized counts only
     * host writes as initialising (see test_layer_ops). */
    CHECK_OK(clattn_tensor_write(Y, y1));
    CHECK_OK(clattn_rotary_backward(ctx, Y, NULL, &p, Y));
    read_into(Y, back);
    double *xd = test_dvec(NUM), *bd = test_dvec(NUM);
    for (size_t i = 0; i < NUM; i++) {
        size_t pair = i % D < D / 2 ? i + D / 2 : i - D / 2;
        xd[i] = x[i];
        bd[i] = 16 * U * (fabs(x[i]) + fabs(x[pair])) + 1e-38;
    }
    close_bound(W_ROPE, "rotary_backward(rotary(x)) = x", back, xd, bd, NUM);

    /* NaN at (token 1, head 0, i = 3) and +inf at (token 2, head 1, i + D/2 = 10). */
    x[1 * H * D + 3] = NAN;
    x[(2 * H + 1) * D + 10] = INFINITY;
    CHECK_OK(clattn_tensor_write(X, x));
    CHECK_OK(clattn_rotary(ctx, X, NULL, &p, Y));
    read_into(Y, y1);
    size_t bad = 0;
    for (size_t i = 0; i < NUM; i++) {
        bool in_nan_pair = i == 1 * H * D + 3 || i == 1 * H * D + 3 + D / 2;
        bool in_inf_pair = i == (2 * H + 1) * D + 10 || i == (2 * H + 1) * D + 2;
        if (!in_nan_pair && !in_inf_pair && !isfinite(y1[i]))
            bad++;
        if (in_nan_pair && !isnan(y1[i]))
            bad++;
    }
    CHECK(bad == 0, "rotary: %zu elements wrong around a NaN / Inf input", bad);
    /* Position 0 is the identity. */
    CHECK(y1[0] == x[0] && y1[D - 1] == x[D - 1], "rotary: position 0 changed x: %g %g",
          (double)y1[0], (double)y1[D - 1]);
    clattn_tensor *all[] = {X, Y, Y2, X3, Y3, XI};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
    free(x), free(y1), free(y2), free(back), free(xd), free(bd);
}

static void rope_errors(clattn_ctx *ctx)
{
    const clattn_status E = CLATTN_ERR_INVALID_ARG;
    int64_t s4[4] = {1, 3, 2, 4}, s_odd[4] = {1, 3, 2, 5}, s2[2] = {3, 8}, s_other[4] = {1, 3, 2, 6};
    float half[24];
    for (int i = 0; i < 24; i++)
        half[i] = 0.5f;
    /* The one input the kernel reads, X, is written from the host (Oclgrind's
     * --uninitialized counts only host writes, see test_layer_ops). */
    clattn_tensor *X = test_tensor(ctx, 4, s4, half), *Y = test_tensor(ctx, 4, s4, NULL);
    clattn_tensor *Xo = test_tensor(ctx, 4, s_odd, NULL), *X2 = test_tensor(ctx, 2, s2, NULL);
    clattn_tensor *Yb = test_tensor(ctx, 4, s_other, NULL);
    clattn_tensor *all[] = {X, Y, Xo, X2, Yb};
    for (size_t i = 1; i < sizeof all / sizeof *all; i++)
        CHECK_OK(clattn_tensor_fill(all[i], 0.5f));
    clattn_tensor fx = foreign(X);
    int64_t pos[3] = {0, 5, -1}, big[3] = {0, 1, 1 << 24};
    clattn_rope_params p = clattn_rope_params_default();
    CHECK_STATUS(clattn_rotary(NULL, X, NULL, NULL, Y), E);
    CHECK_STATUS(clattn_rotary(ctx, NULL, NULL, NULL, Y), E);
    CHECK_MSG("x is NULL");
    CHECK_STATUS(clattn_rotary_backward(ctx, NULL, NULL, NULL, Y), E);
    CHECK_MSG("dy is NULL");
    CHECK_STATUS(clattn_rotary(ctx, &fx, NULL, NULL, Y), E);
    CHECK_MSG("another context");
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, NULL, Yb), E);
    CHECK_MSG("y [1, 3, 2, 6] must have the shape of x [1, 3, 2, 4]");
    CHECK_STATUS(clattn_rotary(ctx, X2, NULL, NULL, X2), E);
    CHECK_MSG("must be [B, N, H, D] or [N, H, D]");
    CHECK_STATUS(clattn_rotary(ctx, Xo, NULL, NULL, Xo), E);
    CHECK_MSG("D must be even");
    CHECK_STATUS(clattn_rotary(ctx, X, pos, NULL, Y), E);
    CHECK_MSG("positions[2] = -1");
    CHECK_STATUS(clattn_rotary_backward(ctx, X, big, NULL, Y), E);
    CHECK_MSG("positions[2] = 16777216");
    p.theta = 0;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    CHECK_MSG("p->theta = 0");
    p.theta = NAN;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    p = clattn_rope_params_default();
    p.type = (clattn_rope_type)7;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    CHECK_MSG("unknown p->type 7");
    p.type = CLATTN_ROPE_LINEAR;
    p.factor = 0;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    CHECK_MSG("p->factor = 0");
    p = clattn_rope_params_default();
    p.type = CLATTN_ROPE_LLAMA3;
    p.high_freq_factor = p.low_freq_factor;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    CHECK_MSG("0 < low < high");
    p.high_freq_factor = 4;
    p.original_max_position = 0;
    CHECK_STATUS(clattn_rotary(ctx, X, NULL, &p, Y), E);
    CHECK_MSG("p->original_max_position = 0");
    p.original_max_position = 8192;
    CHECK_OK(clattn_rotary(ctx, X, NULL, &p, Y));
    p.type = CLATTN_ROPE_DEFAULT;
    p.factor = 0; /* not read by DEFAULT */
    CHECK_OK(clattn_rotary(ctx, X, NULL, &p, Y));
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

/* ======================================================================== */
/* SwiGLU                                                                    */
/* ======================================================================== */

/* Gates far out (where exp overflows or underflows) against the double
 * reference, a NaN gate giving NaN, one gradient at a time equal to both,
 * and out over gate / dgate over dout bit for bit. */
static void glu_cases(clattn_ctx *ctx)
{
    enum { N = 12 };
    float g[N] = {-1e30f, -100.0f, -88.0f, -30.0f, -1.0f, 0.0f, 1e-3f, 1.0f, 30.0f, 100.0f, 1e30f, NAN};
    float u[N], d[N];
    for (int i = 0; i < N; i++) {
        u[i] = 0.25f * (float)(i + 1) - 1.5f;
        d[i] = 1.0f - 0.125f * (float)i;
    }
    int64_t sn = N;
    clattn_tensor *G = test_tensor(ctx, 1, &sn, g), *Uu = test_tensor(ctx, 1, &sn, u);
    clattn_tensor *D = test_tensor(ctx, 1, &sn, d), *O = test_tensor(ctx, 1, &sn, NULL);
    clattn_tensor *DG = test_tensor(ctx, 1, &sn, NULL), *DU = test_tensor(ctx, 1, &sn, NULL);
    clattn_tensor *DG1 = test_tensor(ctx, 1, &sn, NULL), *DU1 = test_tensor(ctx, 1, &sn, NULL);
    CHECK_OK(clattn_swiglu(ctx, G, Uu, O));
    CHECK_OK(clattn_swiglu_backward(ctx, G, Uu, D, DG, DU));
    CHECK_OK(clattn_swiglu_backward(ctx, G, Uu, D, DG1, NULL));
    CHECK_OK(clattn_swiglu_backward(ctx, G, Uu, D, NULL, DU1));
    float o[N], dg[N], du[N], dg1[N], du1[N];
    read_into(O, o);
    read_into(DG, dg);
    read_into(DU, du);
    read_into(DG1, dg1);
    read_into(DU1, du1);
    double ro[N], rg[N], ru[N], bo[N], bg[N], bu[N];
    for (int i = 0; i < N - 1; i++) {
        double gd = g[i], s = gd < -700 ? 0.0 : 1.0 / (1.0 + exp(-gd));
        double silu = gd < -700 ? 0.0 : gd * s;
        ro[i] = silu * u[i];
        ru[i] = (double)d[i] * silu;
        rg[i] = (double)d[i] * u[i] * (gd < -700 ? 0.0 : s * (1.0 + gd * (1.0 - s)));
        /* the table's bounds, plus a floor of 1e-37: for gate < -88.7,
         * exp(-gate) overflows float32 and silu is 0 where the true value
         * is below 1e-36 in magnitude (silu(-100) ~ -3.7e-42) */
        bo[i] = 10 * U * fabs(ro[i]) + 1e-37;
        bu[i] = 10 * U * fabs(ru[i]) + 1e-37;
        bg[i] = 2e-6 * fabs(rg[i]) + 1e-6 * fabs((double)d[i] * u[i]) + 1e-37;
    }
    close_bound(W_ACT, "swiglu: extreme gates", o, ro, bo, N - 1);
    close_bound(W_ACT, "swiglu_backward: dgate at extreme gates", dg, rg, bg, N - 1);
    close_bound(W_ACT, "swiglu_backward: dup at extreme gates", du, ru, bu, N - 1);
    CHECK(isnan(o[N - 1]) && isnan(dg[N - 1]) && isnan(du[N - 1]),
          "swiglu at a NaN gate: %g %g %g", (double)o[N - 1], (double)dg[N - 1],
          (double)du[N - 1]);
    same_bits("swiglu_backward: dgate alone", dg1, dg, N);
    same_bits("swiglu_backward: dup alone", du1, du, N);
    /* In place: out over gate; dup over dout. */
    clattn_tensor *G2 = test_tensor(ctx, 1, &sn, g), *D2 = test_tensor(ctx, 1, &sn, d);
    CHECK_OK(clattn_swiglu(ctx, G2, Uu, G2));
    CHECK_OK(clattn_swiglu_backward(ctx, G, Uu, D2, DG1, D2));
    read_into(G2, dg1);
    read_into(D2, du1);
    same_bits("swiglu: out over gate", dg1, o, N);
    same_bits("swiglu_backward: dup over dout", du1, du, N);
    clattn_tensor *all[] = {G, Uu, D, O, DG, DU, DG1, DU1, G2, D2};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

static void glu_errors(clattn_ctx *ctx)
{
    const clattn_status E = CLATTN_ERR_INVALID_ARG;
    int64_t s[2] = {3, 4}, sb[2] = {4, 3};
    clattn_tensor *G = test_tensor(ctx, 2, s, NULL), *Uu = test_tensor(ctx, 2, s, NULL);
    clattn_tensor *O = test_tensor(ctx, 2, s, NULL), *Bd = test_tensor(ctx, 2, sb, NULL);
    clattn_tensor *DG = test_tensor(ctx, 2, s, NULL);
    clattn_tensor *all[] = {G, Uu, O, Bd, DG};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        CHECK_OK(clattn_tensor_fill(all[i], 0.5f));
    clattn_tensor fg = foreign(G);
    CHECK_STATUS(clattn_swiglu(NULL, G, Uu, O), E);
    CHECK_STATUS(clattn_swiglu(ctx, G, NULL, O), E);
    CHECK_MSG("up is NULL");
    CHECK_STATUS(clattn_swiglu(ctx, &fg, Uu, O), E);
    CHECK_MSG("another context");
    CHECK_STATUS(clattn_swiglu(ctx, G, Bd, O), E);
    CHECK_MSG("up [4, 3] must have the shape of gate [3, 4]");
    CHECK_STATUS(clattn_swiglu(ctx, G, Uu, Bd), E);
    CHECK_MSG("out [4, 3]");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, NULL, DG, NULL), E);
    CHECK_MSG("dout is NULL");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, Bd, DG, NULL), E);
    CHECK_MSG("dout [4, 3]");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, O, Bd, NULL), E);
    CHECK_MSG("dgate [4, 3]");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, O, NULL, Bd), E);
    CHECK_MSG("dup [4, 3]");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, O, G, NULL), E);
    CHECK_MSG("must not alias gate or up");
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, O, NULL, Uu), E);
    CHECK_STATUS(clattn_swiglu_backward(ctx, G, Uu, O, DG, DG), E);
    CHECK_MSG("dgate and dup must not alias");
    CHECK_OK(clattn_swiglu_backward(ctx, G, Uu, O, NULL, NULL));
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        clattn_tensor_destroy(all[i]);
}

int main(void)
{
    clattn_ctx *ctx = layer_test_init();
    rms_accumulate(ctx);
    rms_special_rows(ctx);
    rms_errors(ctx);
    rope_cases(ctx);
    rope_errors(ctx);
    glu_cases(ctx);
    glu_errors(ctx);
    return layer_test_finish(ctx, "test_decoder_ops");
}
