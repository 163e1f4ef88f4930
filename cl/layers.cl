/*
 * layers.cl - transformer layer ops (forward, float32): fused bias +
 * activation, residual add, embedding gather, layer norm and softmax over
 * the last dimension. OpenCL C 1.2, built WITHOUT fast-math options: the
 * activations need erf/tanh/exp as specified, and layer norm relies on
 * IEEE subtraction order (no reassociation).
 *
 * Layouts: float32, row-major, contiguous. "rows" are all leading
 * dimensions flattened; "cols" is the last dimension.
 *
 * Elementwise kernels are scalar per work-item on purpose: CPU
 * implementations (POCL) vectorise across work-items by themselves, and
 * GPUs are SIMT, so explicit float4 code would add tail handling for no
 * gain.
 *
 * Row kernels (layer_norm_rows, softmax_rows) run ONE work-group per row:
 *   global = (rows * wg), local = (wg), wg a power of two chosen by the
 *   host from the device's and the kernel's work-group limits; the
 *   reduction scratch is a __local kernel argument of wg * sizeof(float2)
 *   bytes, so one compiled program serves every row length and every device
 *   limit. Each work-item strides over the row (i = lid, lid + wg, ...), so
 *   any row length works, including lengths below wg.
 *
 * Activation codes (the host passes clattn_activation values):
 */
#define ACT_NONE 0
#define ACT_RELU 1
#define ACT_GELU 2          /* 0.5 x (1 + erf(x / sqrt 2)), PyTorch's default */
#define ACT_GELU_TANH 3     /* PyTorch approximate='tanh' */
#define ACT_SILU 4          /* x * sigmoid(x) */

static float clattn_act(float x, int act)
{
    switch (act) {
    case ACT_RELU:
        return x < 0.0f ? 0.0f : x;     /* NaN propagates, as torch.relu */
    case ACT_GELU: {
        /* 1 + erf(t) = erfc(-t): the same function, but without the
         * cancellation of 1 + erf for x << 0, where erf is about -1; erfc
         * of a negative argument is 2 - erfc of its magnitude. */
        const float z = x * -M_SQRT1_2_F;
        const float e = clattn_erfc_nonneg(fabs(z));
        return 0.5f * x * (z >= 0.0f ? e : 2.0f - e);
    }
    case ACT_GELU_TANH: {
        /* 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)), again avoiding 1 + tanh
         * cancelling for x << 0, where exp(-2u) ~ 1.7e38 makes y ~ 0. */
        const float k2 = 1.5957691216057308f; /* 2 sqrt(2 / pi) */
        return x / (1.0f + clattn_expf(-k2 * (x + 0.044715f * x * x * x)));
    }
    case ACT_SILU:
        /* For x < -88, exp(-x) ~ 1.7e38 makes x / (1 + exp(-x)) ~ 0. */
        return x / (1.0f + clattn_expf(-x));
    default:
        return x;
    }
}

/* y[r, c] = act(x[r, c] + (has_bias ? b[c] : 0)), one kernel per
 * activation (bias_act_none, _relu, _gelu, _gelu_tanh, _silu): with the
 * activation a compile-time constant POCL vectorises the kernel across
 * work-items, which a runtime switch prevented (GELU ran 6x slower).
 * global = (cols, rows), local chosen by the implementation. y may be x. */
#define CLATTN_BIAS_ACT(NAME, ACT)                                            \
    __kernel void NAME(__global const float *x, __global float *y,           \
                       __global const float *b, const int has_bias,          \
                       const uint cols)                                       \
    {                                                                         \
        const size_t c = get_global_id(0);                                    \
        const size_t i = get_global_id(1) * cols + c;                         \
        float v = x[i];                                                       \
        if (has_bias)                                                         \
            v += b[c];                                                        \
        y[i] = clattn_act(v, ACT);                                            \
    }
CLATTN_BIAS_ACT(bias_act_none, ACT_NONE)
CLATTN_BIAS_ACT(bias_act_relu, ACT_RELU)
CLATTN_BIAS_ACT(bias_act_gelu, ACT_GELU)
CLATTN_BIAS_ACT(bias_act_gelu_tanh, ACT_GELU_TANH)
CLATTN_BIAS_ACT(bias_act_silu, ACT_SILU)

/* y[i] = alpha * a[i] + beta * b[i] for i < n; global >= n. y may alias
 * a or b (each element is read and written by the same work-item). */
__kernel void add_scaled(__global const float *a, __global const float *b,
                         __global float *y, const float alpha, const float beta,
                         const ulong n)
{
    const size_t i = get_global_id(0);
    if (i < n)
        y[i] = alpha * a[i] + beta * b[i];
}

/* y[r, c] = table[ids[r], c]; ids already checked against V on the host.
 * global = (cols, count). */
__kernel void embedding_gather(__global const float *table, __global const long *ids,
                               __global float *y, const uint cols)
{
    const size_t c = get_global_id(0), r = get_global_id(1);
    y[r * cols + c] = table[(size_t)ids[r] * cols + c];
}

/* Sum over the work-group of v (component-wise); every work-item gets the
 * result. wg = get_local_size(0) must be a power of two. tmp is reused by
 * the next call, hence the barrier after the result is read. */
static float2 wg_sum2(float2 v, __local float2 *tmp)
{
    const uint lid = get_local_id(0);
    tmp[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = get_local_size(0) / 2; s > 0; s >>= 1) {
        if (lid < s)
            tmp[lid] += tmp[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float2 r = tmp[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* Layer norm of each row of cols elements (PyTorch: biased variance,
 * y = (x - mean) / sqrt(var + eps) * gamma + beta). y may be x.
 *
 * Corrected two-pass algorithm (Chan, Golub, LeVeque): pass 1 gives the
 * float mean m; pass 2 sums d = x - m and d^2. With x near m, x - m is
 * exact (Sterbenz), so c = sum(d) / cols recovers the rounding error of m
 * itself, var = sum(d^2) / cols - c^2, and the output uses (x - m) - c.
 * This stays accurate for rows like mean 1000, std 0.01, where
 * E[x^2] - E[x]^2 would lose every digit. */
__kernel void layer_norm_rows(__global const float *x, __global float *y,
                              __global const float *gamma, __global const float *beta,
                              const int has_gamma, const int has_beta,
                              const uint cols, const float eps,
                              __local float2 *tmp)
{
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const size_t base = get_group_id(0) * (size_t)cols;
    __global const float *xr = x + base;

    float s = 0.0f;
    for (uint i = lid; i < cols; i += wg)
        s += xr[i];
    const float m = wg_sum2((float2)(s, 0.0f), tmp).x / (float)cols;

    float2 acc = (float2)(0.0f, 0.0f);
    for (uint i = lid; i < cols; i += wg) {
        const float d = xr[i] - m;
        acc.x += d;
        acc.y += d * d;
    }
    acc = wg_sum2(acc, tmp);
    const float c = acc.x / (float)cols;
    const float var = fmax(acc.y / (float)cols - c * c, 0.0f);
    const float rstd = rsqrt(var + eps);

    /* Each element is read and written by the same work-item after both
     * reductions (which end in barriers), so y == x is safe. */
    for (uint i = lid; i < cols; i += wg) {
        float v = ((xr[i] - m) - c) * rstd;
        if (has_gamma)
            v *= gamma[i];
        if (has_beta)
            v += beta[i];
        y[base + i] = v;
    }
}

/* Merges two online-softmax states (max m, sum of exp(x - m) l). Starting
 * from m = -FLT_MAX rather than -inf keeps m1 - m finite for empty states,
 * so no inf - inf appears; real -inf inputs contribute exp(-inf) = 0. */
static float2 softmax_merge(float2 a, float2 b)
{
    const float m = fmax(a.x, b.x);
    return (float2)(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

/* Softmax of each row of cols elements, numerically stable: each
 * work-item keeps an online (max, sum) over its strided elements, a tree
 * reduction merges them, and pass 2 writes exp(x - max) / sum. y may be
 * x. As in PyTorch, a row with NaN or +inf, or with every entry -inf,
 * gives NaN. */
__kernel void softmax_rows(__global const float *x, __global float *y,
                           const uint cols, __local float2 *tmp)
{
    const uint lid = get_local_id(0), wg = get_local_size(0);
    const size_t base = get_group_id(0) * (size_t)cols;
    __global const float *xr = x + base;

    float2 st = (float2)(-FLT_MAX, 0.0f);
    for (uint i = lid; i < cols; i += wg)
        st = softmax_merge(st, (float2)(xr[i], 1.0f));
    tmp[lid] = st;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = wg / 2; s > 0; s >>= 1) {
        if (lid < s)
            tmp[lid] = softmax_merge(tmp[lid], tmp[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const float m = tmp[0].x, inv = 1.0f / tmp[0].y;

    for (uint i = lid; i < cols; i += wg)
        y[base + i] = exp(xr[i] - m) * inv;
}
