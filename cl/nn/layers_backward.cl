/*
 * layers_backward.cl - gradients of the layer ops of layers.cl (float32):
 * activations, layer norm, softmax, deterministic column sums (bias,
 * gamma and beta gradients), the embedding gradient, and the sequence mean
 * with its gradient. OpenCL C 1.2, built WITHOUT fast-math options, like
 * layers.cl: layer norm relies on IEEE subtraction order.
 *
 * Layouts: float32, row-major, contiguous; "rows" are all leading
 * dimensions flattened, "cols" the last dimension.
 *
 * Determinism: no atomics anywhere. Every sum has an order fixed by the
 * shapes and by the work-group sizes the host picks from the shapes and
 * the device's limits, so a call repeated on one device gives
 * bit-identical results.
 *
 * Row kernels (layer_norm_bwd_rows, softmax_bwd_rows) run ONE work-group
 * per row, exactly as layers.cl's row kernels do: global = (rows * wg),
 * local = (wg), wg a power of two, a __local scratch of wg * sizeof(float2)
 * bytes as the last argument, work-items striding over the row.
 */

/* Activation codes ACT_*: common.cl. */

/* x limited to [-lim, lim], NaN kept (clamp() may turn NaN into a bound).
 * The derivatives below use it where x^2 or x^3 would overflow, or where
 * clattn_expf's clamping at e^-87 / e^88 times a huge x would leave a
 * wrong finite value: beyond lim every derivative is 0 or 1 to float
 * precision, and so is its value at lim. */
static float clamp_keep_nan(float x, float lim)
{
    return fabs(x) > lim ? copysign(lim, x) : x;
}

/* dy * act'(x), exact derivatives of layers.cl's clattn_act. */
static float clattn_act_grad(float x, float dy, int act)
{
    switch (act) {
    case ACT_RELU:
        /* PyTorch's threshold_backward on the output: 0 where relu(x) <= 0
         * (x = 0 included), dy elsewhere (NaN x passes dy through). */
        return x <= 0.0f ? 0.0f : dy;
    case ACT_GELU: {
        /* d/dx x Phi(x) = Phi(x) + x phi(x). Phi(x) = erfc(-x / sqrt 2) / 2
         * as in the forward (no 1 + erf cancellation for x << 0); phi is
         * the standard normal density. */
        const float z = x * -M_SQRT1_2_F;
        const float e = clattn_erfc_nonneg(fabs(z));
        const float cdf = 0.5f * (z >= 0.0f ? e : 2.0f - e);
        const float xc = clamp_keep_nan(x, 20.0f);
        const float pdf = 0.3989422804014327f * clattn_expf(-0.5f * xc * xc);
        return dy * (cdf + xc * pdf);
    }
    case ACT_GELU_TANH: {
        /* y = x s with s = 0.5 (1 + tanh u) = sigmoid(2u),
         * u = k (x + c x^3): y' = s + x * 2 s (1 - s) * k (1 + 3 c x^2).
         * 1 - s = e s with e = exp(-2u) is exact in form for both signs of
         * u (no 1 - s cancellation). */
        const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
        const float xc = clamp_keep_nan(x, 20.0f);
        const float x2 = xc * xc;
        const float e = clattn_expf(-2.0f * k * xc * (1.0f + 0.044715f * x2));
        const float s = 1.0f / (1.0f + e);
        const float d = s + 2.0f * k * xc * s * (e * s) * (1.0f + 0.134145f * x2);
        return dy * d;
    }
    case ACT_SILU: {
        /* y = x s, s = sigmoid(x): y' = s (1 + x (1 - s)), 1 - s = e s. */
        const float xc = clamp_keep_nan(x, 100.0f);
        const float e = clattn_expf(-xc);
        const float s = 1.0f / (1.0f + e);
        return dy * (s * (1.0f + xc * (e * s)));
    }
    default:
        return dy;
    }
}

/* dx[i] = dy[i] * act'(x[i]) for i < n; global >= n (rounded up by the
 * host). One kernel per activation, the activation a compile-time constant
 * so that CPU compilers vectorise across work-items (see layers.cl's
 * bias_act). dx may be dy: each element is read and written by one
 * work-item. */
#define CLATTN_ACT_BWD(NAME, ACT)                                             \
    __kernel void NAME(__global const float *x, __global const float *dy,    \
                       __global float *dx, const ulong n)                    \
    {                                                                         \
        const size_t i = get_global_id(0);                                    \
        if (i < n)                                                            \
            dx[i] = clattn_act_grad(x[i], dy[i], ACT);                        \
    }
CLATTN_ACT_BWD(act_bwd_relu, ACT_RELU)
CLATTN_ACT_BWD(act_bwd_gelu, ACT_GELU)
CLATTN_ACT_BWD(act_bwd_gelu_tanh, ACT_GELU_TANH)
CLATTN_ACT_BWD(act_bwd_silu, ACT_SILU)

/* wg_sum2 is core/reduce.cl's, listed before this file in the program
 * (src/nn/layers_backward.c): the same tree as layer_norm_rows uses, so
 * the recomputed layer-norm statistics are the forward's bit for bit when
 * the host picks the same wg. */

/* Layer norm backward, one work-group per row of cols elements.
 *
 * The statistics are recomputed exactly as layers.cl's layer_norm_rows
 * computes them (corrected two-pass: float mean m, correction c = mean of
 * x - m, rstd = 1 / sqrt(var + eps)), so xhat = ((x - m) - c) * rstd is
 * the forward's normalised value. With g = dy * gamma (dy without gamma):
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
 * (exact for the biased variance with eps inside the root).
 *
 * write_dx: compute dx (passes 3 and 4); otherwise dx is not touched.
 * write_stats: work-item 0 stores (m, c, rstd) to stats[3 row .. 3 row + 3),
 * read by ln_dgamma (three scalars, not a float4: Oclgrind's
 * uninitialised-value check flags a float4 built from scalars).
 * dx may be dy: every element of dy is read and dx written by the same
 * work-item, after the reductions' barriers.
 *
 * HAS_GAMMA is a compile-time constant of each kernel below
 * (layer_norm_bwd_rows, layer_norm_bwd_rows_gamma), not an argument: POCL
 * 3.1 miscompiled the runtime form (has_gamma ? dy * gamma[i] : dy in both
 * loops), storing dx past the end of the row. */
#define CLATTN_LN_BWD(NAME, HAS_GAMMA)                                          \
    __kernel void NAME(__global const float *x, __global const float *gamma,   \
                       __global const float *dy, __global float *dx,           \
                       __global float *stats, const int write_dx,              \
                       const int write_stats, const uint cols, const float eps,\
                       __local float2 *tmp)                                    \
    {                                                                          \
        const uint lid = get_local_id(0), wg = get_local_size(0);              \
        const size_t row = get_group_id(0), base = row * (size_t)cols;         \
        __global const float *xr = x + base;                                   \
        __global const float *dyr = dy + base;                                 \
                                                                               \
        float s = 0.0f;                                                        \
        for (uint i = lid; i < cols; i += wg)                                  \
            s += xr[i];                                                        \
        const float m = wg_sum2((float2)(s, 0.0f), tmp).x / (float)cols;       \
                                                                               \
        float2 acc = (float2)(0.0f, 0.0f);                                     \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float d = xr[i] - m;                                         \
            acc.x += d;                                                        \
            acc.y += d * d;                                                    \
        }                                                                      \
        acc = wg_sum2(acc, tmp);                                               \
        const float c = acc.x / (float)cols;                                   \
        const float var = fmax(acc.y / (float)cols - c * c, 0.0f);            \
        const float rstd = rsqrt(var + eps);                                   \
        if (write_stats && lid == 0) {                                         \
            stats[3 * row] = m;                                                \
            stats[3 * row + 1] = c;                                            \
            stats[3 * row + 2] = rstd;                                         \
        }                                                                      \
        if (!write_dx)                                                         \
            return;                                                            \
                                                                               \
        float2 gs = (float2)(0.0f, 0.0f); /* (sum g, sum g * xhat) */          \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float xh = ((xr[i] - m) - c) * rstd;                         \
            const float g = HAS_GAMMA ? dyr[i] * gamma[i] : dyr[i];            \
            gs.x += g;                                                         \
            gs.y += g * xh;                                                    \
        }                                                                      \
        gs = wg_sum2(gs, tmp) / (float)cols;                                   \
                                                                               \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float xh = ((xr[i] - m) - c) * rstd;                         \
            const float g = HAS_GAMMA ? dyr[i] * gamma[i] : dyr[i];            \
            dx[base + i] = rstd * ((g - gs.x) - xh * gs.y);                    \
        }                                                                      \
    }
CLATTN_LN_BWD(layer_norm_bwd_rows, 0)
CLATTN_LN_BWD(layer_norm_bwd_rows_gamma, 1)

/* Softmax backward from the output, one work-group per row:
 *   dx = y * (dy - sum(dy * y)).
 * dx may be dy (same work-item reads then writes each element, after the
 * reduction's barriers). */
__kernel void softmax_bwd_rows(__global const float *y, __global const float *dy,
                               __global float *dx, const uint cols,
                               __local float2 *tmp)
{
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const size_t base = get_group_id(0) * (size_t)cols;
    float s = 0.0f;
    for (uint i = lid; i < cols; i += wg)
        s += dy[base + i] * y[base + i];
    s = wg_sum2((float2)(s, 0.0f), tmp).x;
    for (uint i = lid; i < cols; i += wg)
        dx[base + i] = y[base + i] * (dy[base + i] - s);
}

/* ---- deterministic column sums ------------------------------------------
 * out[c] = sum over r of v(r, c) for a [rows, cols] matrix in ONE kernel,
 * without atomics or a buffer of partial sums between kernels:
 *   local = (tc, tr), global = (ceil(cols / tc) * tc, tr): one work-group
 *   per block of tc columns. Work-item (lc, lr) sums rows lr, lr + tr,
 *   lr + 2 tr, ... of its column; a tree over lr in local memory (tc * tr
 *   floats, the last argument) adds the tr sums in a fixed order.
 * tc and tr are powers of two that the host picks from the shape and the
 * device's limits only, so a call repeated on one device sums in the same
 * order. Neighbouring work-items read neighbouring columns (coalesced on
 * GPUs, vectorised on CPUs). The _acc kernels add to out instead of
 * overwriting it: separate kernels, because with an accumulate flag the
 * compiler reads out[c] either way (a select), which may be memory the
 * caller never initialised. */

/* The tree over lr and the store; s is this work-item's partial sum. */
#define CLATTN_COL_TREE(ACC)                                                  \
    const uint lc = get_local_id(0), lr = get_local_id(1);                    \
    const uint tc = get_local_size(0), tr = get_local_size(1);                \
    tmp[lr * tc + lc] = s;                                                    \
    barrier(CLK_LOCAL_MEM_FENCE);                                             \
    for (uint h = tr / 2; h > 0; h >>= 1) {                                   \
        if (lr < h)                                                           \
            tmp[lr * tc + lc] += tmp[(lr + h) * tc + lc];                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                         \
    }                                                                         \
    if (lr == 0 && c < cols) {                                                \
        float t = tmp[lc];                                                    \
        if (ACC)                                                              \
            t = out[c] + t;                                                   \
        out[c] = t;                                                           \
    }

/* v(r, c) = src[r, c]: bias and beta gradients. */
#define CLATTN_COL_SUM(NAME, ACC)                                             \
    __kernel void NAME(__global const float *src, const ulong rows,           \
                       const uint cols, __global float *out,                  \
                       __local float *tmp)                                    \
    {                                                                         \
        const size_t c = get_global_id(0);                                    \
        float s = 0.0f;                                                       \
        if (c < cols)                                                         \
            for (ulong r = get_local_id(1); r < rows; r += get_local_size(1)) \
                s += src[r * cols + c];                                       \
        CLATTN_COL_TREE(ACC)                                                  \
    }
CLATTN_COL_SUM(col_sum, 0)
CLATTN_COL_SUM(col_sum_acc, 1)

/* v(r, c) = dy[r, c] * xhat[r, c], xhat from layer_norm_bwd_rows's stats
 * (the same expression, so the same value): the gamma gradient. */
#define CLATTN_LN_DGAMMA(NAME, ACC)                                           \
    __kernel void NAME(__global const float *x, __global const float *dy,     \
                       __global const float *stats, const ulong rows,         \
                       const uint cols, __global float *out,                  \
                       __local float *tmp)                                    \
    {                                                                         \
        const size_t c = get_global_id(0);                                    \
        float s = 0.0f;                                                       \
        if (c < cols) {                                                       \
            for (ulong r = get_local_id(1); r < rows;                         \
                 r += get_local_size(1)) {                                    \
                const float m = stats[3 * r], cr = stats[3 * r + 1];          \
                const float rstd = stats[3 * r + 2];                          \
                const size_t i = r * cols + c;                                \
                s += dy[i] * (((x[i] - m) - cr) * rstd);                      \
            }                                                                 \
        }                                                                     \
        CLATTN_COL_TREE(ACC)                                                  \
    }
CLATTN_LN_DGAMMA(ln_dgamma, 0)
CLATTN_LN_DGAMMA(ln_dgamma_acc, 1)

/* ---- embedding gradient ----------------------------------------------------
 * dtable[v, c] (+)= sum of dy[i, c] over the positions i with ids[i] == v,
 * for the used rows only, from a CSR list built on the host:
 *   csr[0 .. used)               the used vocabulary rows v_u, ascending
 *   csr[used .. 2 used + 1)      start of each row's positions (and the end)
 *   csr[2 used + 1 ..)           positions i, ascending within each row
 * global = (cols, used). Each output element has one writer and sums its
 * positions in ascending order: deterministic, no atomics. */
__kernel void embedding_bwd_rows(__global const float *dy, __global float *dtable,
                                 __global const long *csr, const ulong used,
                                 const uint cols, const int accumulate)
{
    const size_t c = get_global_id(0), u = get_global_id(1);
    const long v = csr[u], begin = csr[used + u], end = csr[used + u + 1];
    __global const long *pos = csr + 2 * used + 1;
    float s = 0.0f;
    for (long j = begin; j < end; j++)
        s += dy[(size_t)pos[j] * cols + c];
    const size_t o = (size_t)v * cols + c;
    dtable[o] = accumulate ? dtable[o] + s : s;
}

/* ---- sequence mean -------------------------------------------------------- */

/* y[b, c] = sum of x[b, 0..n, c] in order, / n (torch.mean's sum then
 * divide). global = (cols, B). */
__kernel void sequence_mean_fwd(__global const float *x, __global float *y,
                                const uint n, const uint cols)
{
    const size_t c = get_global_id(0), b = get_global_id(1);
    __global const float *xb = x + b * n * (size_t)cols + c;
    float s = 0.0f;
    for (uint i = 0; i < n; i++)
        s += xb[i * (size_t)cols];
    y[b * cols + c] = s / (float)n;
}

/* dx[b, i, c] = dy[b, c] / n. global = (cols, B * n). */
__kernel void sequence_mean_bwd(__global const float *dy, __global float *dx,
                                const uint n, const uint cols)
{
    const size_t c = get_global_id(0), r = get_global_id(1);
    dx[r * cols + c] = dy[(r / n) * cols + c] / (float)n;
}

/* ---- decoder-LM blocks: RMSNorm and SwiGLU gradients ------------------- */

/* RMSNorm backward, one work-group per row of cols elements. r = 1 /
 * sqrt(mean(x^2) + eps) is recomputed with the forward's tree (layers.cl's
 * rms_norm_rows), xhat = x * r as the forward computes it. With g = dy * w
 * (dy without weight):
 *   dx = r * (g - xhat * mean(g * xhat))
 * write_dx: compute dx; write_stats: work-item 0 stores r to stats[row]
 * (read by rms_dweight). dx may be dy: each element of dy is read and dx
 * written by one work-item, after the reductions' barriers. */
#define CLATTN_RMS_BWD(NAME, HAS_W)                                             \
    __kernel void NAME(__global const float *x, __global const float *w,       \
                       __global const float *dy, __global float *dx,           \
                       __global float *stats, const int write_dx,              \
                       const int write_stats, const uint cols, const float eps,\
                       __local float2 *tmp)                                    \
    {                                                                          \
        const uint lid = get_local_id(0), wg = get_local_size(0);              \
        const size_t row = get_group_id(0), base = row * (size_t)cols;         \
        __global const float *xr = x + base;                                   \
        __global const float *dyr = dy + base;                                 \
        float s = 0.0f;                                                        \
        for (uint i = lid; i < cols; i += wg)                                  \
            s += xr[i] * xr[i];                                                \
        const float r = rsqrt(wg_sum2((float2)(s, 0.0f), tmp).x / (float)cols  \
                              + eps);                                          \
        if (write_stats && lid == 0)                                           \
            stats[row] = r;                                                    \
        if (!write_dx)                                                         \
            return;                                                            \
        float gx = 0.0f;                                                       \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float g = HAS_W ? dyr[i] * w[i] : dyr[i];                    \
            gx += g * (xr[i] * r);                                             \
        }                                                                      \
        const float mgx = wg_sum2((float2)(gx, 0.0f), tmp).x / (float)cols;    \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float g = HAS_W ? dyr[i] * w[i] : dyr[i];                    \
            dx[base + i] = r * (g - (xr[i] * r) * mgx);                        \
        }                                                                      \
    }
CLATTN_RMS_BWD(rms_norm_bwd_rows, 0)
CLATTN_RMS_BWD(rms_norm_bwd_rows_w, 1)

/* v(r, c) = dy[r, c] * (x[r, c] * r_r), r_r from rms_norm_bwd_rows's
 * stats: the weight gradient, a column sum (the tree above). */
#define CLATTN_RMS_DW(NAME, ACC)                                              \
    __kernel void NAME(__global const float *x, __global const float *dy,     \
                       __global const float *stats, const ulong rows,         \
                       const uint cols, __global float *out,                  \
                       __local float *tmp)                                    \
    {                                                                         \
        const size_t c = get_global_id(0);                                    \
        float s = 0.0f;                                                       \
        if (c < cols)                                                         \
            for (ulong r = get_local_id(1); r < rows;                         \
                 r += get_local_size(1)) {                                    \
                const size_t i = r * cols + c;                                \
                s += dy[i] * (x[i] * stats[r]);                               \
            }                                                                 \
        CLATTN_COL_TREE(ACC)                                                  \
    }
CLATTN_RMS_DW(rms_dweight, 0)
CLATTN_RMS_DW(rms_dweight_acc, 1)

/* SwiGLU backward, i < n: dgate = dout * up * silu'(gate) (clattn_act_grad's
 * SILU form), dup = dout * silu(gate) (layers.cl's swiglu_fwd form). A
 * gradient is written only with its flag (its buffer is any other buffer
 * when absent). dgate or dup may be dout: each element of dout is read
 * before the work-item writes. */
__kernel void swiglu_bwd(__global const float *gate, __global const float *up,
                         __global const float *dout, __global float *dgate,
                         __global float *dup, const int has_dgate, const int has_dup,
                         const ulong n)
{
    const size_t i = get_global_id(0);
    if (i >= n)
        return;
    const float g = gate[i], u = up[i], d = dout[i];
    const float dg = clattn_act_grad(g, d * u, ACT_SILU);
    const float du = d * (g / (1.0f + exp(-g)));
    if (has_dgate)
        dgate[i] = dg;
    if (has_dup)
        dup[i] = du;
}
