/*
 * loss.cl - training losses and the deterministic sums behind them (and
 * behind the optimisers' gradient norms): mean squared error, softmax
 * cross-entropy, sums of squares. OpenCL C 1.2, built without fast-math
 * options.
 *
 * No float atomics anywhere: every sum is a fixed tree, so a given shape
 * on a given device always gives the same bits. Two stages:
 *   1. a "partial" kernel: G work-groups of wg work-items (wg a power of
 *      two, G and wg chosen by the host from the size alone); each
 *      work-item adds its grid-strided elements with Kahan compensation,
 *      the work-group adds its wg results in a pairwise tree, and
 *      work-group g writes partials[off + g];
 *   2. sum_partials: ONE work-group adds the partials the same way and
 *      writes the total, divided by a divisor, right after them.
 * The error of a sum of n positive terms is then about (2 + log2(wg G)) u
 * relative, whatever n (u = 2^-24): Kahan keeps each work-item's long run
 * exact to a few u, the trees add one rounding per level.
 *
 * FP_CONTRACT OFF: Kahan's compensation must not be fused away into an
 * fma, and the elementwise formulas round as written.
 */
#pragma OPENCL FP_CONTRACT OFF

/* wg_sum (pairwise, result in work-item 0) is core/reduce.cl's, listed
 * before this file in the program (src/train/loss.c), so it is compiled
 * before the FP_CONTRACT OFF above takes effect; that is harmless, as it
 * only adds and there is no multiply to fuse. */

/* One Kahan step: sum += y, with c carrying the lost low part. Once the
 * sum is infinite, c stays 0: inf - inf would turn it (and the sum) into
 * NaN, and a gradient norm must read inf for an infinite element. */
#define KAHAN_ADD(sum, c, y)                                \
    do {                                                    \
        const float y_ = (y) - (c);                         \
        const float t_ = (sum) + y_;                        \
        (c) = isfinite(t_) ? (t_ - (sum)) - y_ : 0.0f;      \
        (sum) = t_;                                         \
    } while (0)

/* x[n] = (sum of x[0..n)) / divisor: stage 2, launched as ONE work-group.
 * The total lands right after the partials, in the same buffer. */
__kernel void sum_partials(__global float *x, const ulong n, const float divisor,
                           __local float *tmp)
{
    const uint lid = get_local_id(0), wg = get_local_size(0);
    float s = 0.0f, c = 0.0f;
    for (ulong i = lid; i < n; i += wg)
        KAHAN_ADD(s, c, x[i]);
    const float total = wg_sum(s, tmp);
    if (lid == 0)
        x[n] = total / divisor;
}

/* partials[off + g] = sum of x[i]^2 over work-group g's share of x[0..n)
 * (grid-strided). Stage 1 of a gradient's squared L2 norm. */
__kernel void sumsq_partial(__global const float *x, const ulong n,
                            __global float *partials, const ulong off, __local float *tmp)
{
    const size_t stride = get_global_size(0);
    float s = 0.0f, c = 0.0f;
    for (size_t i = get_global_id(0); i < n; i += stride) {
        const float v = x[i];
        KAHAN_ADD(s, c, v * v);
    }
    const float total = wg_sum(s, tmp);
    if (get_local_id(0) == 0)
        partials[off + get_group_id(0)] = total;
}

/* Mean squared error, stage 1: d = pred - target; partials[g] = sum of d^2
 * over work-group g's share; with has_grad, dpred = d * scale (scale =
 * 2 / n). dpred may be pred or target: each element is read, then
 * written, by one work-item. */
__kernel void mse_partial(__global const float *pred, __global const float *target,
                          __global float *dpred, const int has_grad, const ulong n,
                          const float scale, __global float *partials, __local float *tmp)
{
    const size_t stride = get_global_size(0);
    float s = 0.0f, c = 0.0f;
    for (size_t i = get_global_id(0); i < n; i += stride) {
        const float d = pred[i] - target[i];
        if (has_grad)
            dpred[i] = d * scale;
        KAHAN_ADD(s, c, d * d);
    }
    const float total = wg_sum(s, tmp);
    if (get_local_id(0) == 0)
        partials[get_group_id(0)] = total;
}

/* Merges two online-softmax states (max m, sum of exp(x - m) l); starting
 * from m = -FLT_MAX keeps m1 - m finite for empty states. */
static float2 lse_merge(float2 a, float2 b)
{
    const float m = fmax(a.x, b.x);
    return (float2)(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

/* Cross-entropy of one row per work-group (global = rows * wg):
 *   rowloss[r] = logsumexp(x[r, :]) - x[r, t]   (0 when t == ignore)
 *   dx[r, :]   = (softmax(x[r, :]) - onehot(t)) / nvalid  (0 when ignored)
 * targets were checked on the host (0 <= t < cols, or ignore). The loss is
 * formed as (max - x_t) + log(sum exp(x - max)), which keeps the
 * cancellation of lse - x_t out of the float rounding of lse. dx may be x:
 * x_t is read before a barrier with a global fence, and each element is
 * read, then written, by one work-item after it. */
__kernel void ce_rows(__global const float *x, __global const long *targets, const long ignore,
                      const uint cols, const float nvalid, const int has_grad,
                      __global float *dx, __global float *rowloss, __local float2 *tmp)
{
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const size_t row = get_group_id(0), base = row * (size_t)cols;
    __global const float *xr = x + base;
    const long t = targets[row];
    const int ignored = t == ignore;
    const float xt = ignored ? 0.0f : xr[t];

    float2 st = (float2)(-FLT_MAX, 0.0f);
    for (uint i = lid; i < cols; i += wg)
        st = lse_merge(st, (float2)(xr[i], 1.0f));
    tmp[lid] = st;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = wg / 2; s > 0; s >>= 1) {
        if (lid < s)
            tmp[lid] = lse_merge(tmp[lid], tmp[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float m = tmp[0].x, l = tmp[0].y;
    /* log(l) is taken by every work-item and stored to tmp, outside any
     * branch: reached only inside the lid == 0 branch, Rusticl's compiler
     * prints a warning ("load_kernel_arg in control flow") to stderr. The
     * barrier orders the store after every work-item's read of tmp[0],
     * and (global fence) the writes to dx after every read of x_t. */
    const float log_l = log(l);
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);
    tmp[lid].x = log_l;
    if (lid == 0)
        rowloss[row] = ignored ? 0.0f : (m - xt) + tmp[0].x;
    if (!has_grad)
        return;
    for (uint i = lid; i < cols; i += wg) {
        const float p = exp(xr[i] - m) / l;
        dx[base + i] = ignored ? 0.0f : (p - (i == t ? 1.0f : 0.0f)) / nvalid;
    }
}
