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
 * Activations: clattn_act in common.cl.
 */

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

/* wg_sum2 (the work-group sum these kernels use) is core/reduce.cl's,
 * listed before this file in the program (src/nn/layers.c). */

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

/* Sum of the n floats at p: 8 lanes of partial sums, then the tail. */
static inline float clattn_row_sum8(__global const float *p, uint n)
{
    float8 s8 = (float8)0.0f;
    uint i = 0;
    for (; i + 8 <= n; i += 8)
        s8 += vload8(0, p + i);
    float s = ((s8.s0 + s8.s4) + (s8.s1 + s8.s5)) + ((s8.s2 + s8.s6) + (s8.s3 + s8.s7));
    for (; i < n; ++i)
        s += p[i];
    return s;
}

/* layer_norm_rows for CPU devices: one work-item per row (global = rows,
 * local = 1), the row walked in order with 8-lane vectors and no
 * barriers: 4x faster than the work-group form on POCL at E = 384. Local
 * size 1 stops POCL from vectorising across work-items, which turned
 * each row's vector loads into gathers (5x slower than the tree). The
 * same two-pass formula as layer_norm_rows, with 8-lane partial sums
 * (another summation order, the same accuracy). y may be x. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void layer_norm_rows_cpu(__global const float *x, __global float *y,
                                  __global const float *gamma,
                                  __global const float *beta,
                                  const int has_gamma, const int has_beta,
                                  const uint cols, const float eps,
                                  const ulong rows)
{
    const size_t r = get_global_id(0);
    if (r >= rows) return;
    __global const float *xr = x + r * cols;
    __global float *yr = y + r * cols;
    const float m = clattn_row_sum8(xr, cols) / (float)cols;
    float8 d8 = (float8)0.0f, q8 = (float8)0.0f;
    uint i = 0;
    for (; i + 8 <= cols; i += 8) {
        const float8 d = vload8(0, xr + i) - m;
        d8 += d;
        q8 += d * d;
    }
    float dsum = ((d8.s0 + d8.s4) + (d8.s1 + d8.s5)) + ((d8.s2 + d8.s6) + (d8.s3 + d8.s7));
    float qsum = ((q8.s0 + q8.s4) + (q8.s1 + q8.s5)) + ((q8.s2 + q8.s6) + (q8.s3 + q8.s7));
    for (; i < cols; ++i) {
        const float d = xr[i] - m;
        dsum += d;
        qsum += d * d;
    }
    const float c = dsum / (float)cols;
    const float var = fmax(qsum / (float)cols - c * c, 0.0f);
    const float rstd = rsqrt(var + eps);
    i = 0;
    for (; i + 8 <= cols; i += 8) {
        float8 v = ((vload8(0, xr + i) - m) - c) * rstd;
        if (has_gamma) v *= vload8(0, gamma + i);
        if (has_beta) v += vload8(0, beta + i);
        vstore8(v, 0, yr + i);
    }
    for (; i < cols; ++i) {
        float v = ((xr[i] - m) - c) * rstd;
        if (has_gamma) v *= gamma[i];
        if (has_beta) v += beta[i];
        yr[i] = v;
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

/* ---- decoder-LM blocks: RMSNorm, rotary embeddings, SwiGLU ---------------
 * (nn/decoder_ops.c; lm/forward.c runs the same RMSNorm kernels.) */

/* y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) (* w), as transformers'
 * LlamaRMSNorm in float32. One work-group per row (the row kernels'
 * rule above); tmp: wg float2. y may be x. HAS_W is a compile-time
 * constant of each kernel (see layer_norm_bwd_rows in layers_backward.cl
 * for why not a runtime flag). */
#define CLATTN_RMS_ROWS(NAME, HAS_W)                                            \
    __kernel void NAME(__global const float *x, __global float *y,             \
                       __global const float *w, const uint cols,               \
                       const float eps, __local float2 *tmp)                   \
    {                                                                          \
        const uint lid = get_local_id(0), wg = get_local_size(0);              \
        const size_t base = get_group_id(0) * (size_t)cols;                    \
        float s = 0.0f;                                                        \
        for (uint i = lid; i < cols; i += wg) {                                \
            const float v = x[base + i];                                       \
            s += v * v;                                                        \
        }                                                                      \
        const float ms = wg_sum2((float2)(s, 0.0f), tmp).x / (float)cols;      \
        const float r = rsqrt(ms + eps);                                       \
        for (uint i = lid; i < cols; i += wg)                                  \
            y[base + i] = HAS_W ? w[i] * (x[base + i] * r) : x[base + i] * r;  \
    }
CLATTN_RMS_ROWS(rms_norm_rows, 0)
CLATTN_RMS_ROWS(rms_norm_rows_w, 1)

/* The same for CPU devices: one work-item per row (local size 1), the row
 * walked with 8-lane vectors and no barriers (as layer_norm_rows_cpu,
 * which measured 4x faster than the tree on POCL). */
#define CLATTN_RMS_ROWS_CPU(NAME, HAS_W)                                        \
    __kernel __attribute__((reqd_work_group_size(1, 1, 1)))                    \
    void NAME(__global const float *x, __global float *y,                      \
              __global const float *w, const uint cols, const float eps,       \
              const ulong rows)                                                \
    {                                                                          \
        const size_t row = get_global_id(0);                                   \
        if (row >= rows)                                                       \
            return;                                                            \
        __global const float *xr = x + row * cols;                             \
        __global float *yr = y + row * cols;                                   \
        float8 s8 = (float8)0.0f;                                              \
        uint i = 0;                                                            \
        for (; i + 8 <= cols; i += 8) {                                        \
            const float8 v = vload8(0, xr + i);                                \
            s8 += v * v;                                                       \
        }                                                                      \
        float s = ((s8.s0 + s8.s4) + (s8.s1 + s8.s5)) +                        \
                  ((s8.s2 + s8.s6) + (s8.s3 + s8.s7));                         \
        for (; i < cols; ++i)                                                  \
            s += xr[i] * xr[i];                                                \
        const float r = rsqrt(s / (float)cols + eps);                          \
        for (i = 0; i < cols; ++i)                                             \
            yr[i] = HAS_W ? w[i] * (xr[i] * r) : xr[i] * r;                    \
    }
CLATTN_RMS_ROWS_CPU(rms_norm_rows_cpu, 0)
CLATTN_RMS_ROWS_CPU(rms_norm_rows_w_cpu, 1)

/* Rotary embedding, transformers' rotate_half layout, on x [T, H, D]
 * (T tokens of H heads): the pair (i, i + D/2) of head h of token t is
 * turned by sgn * angle, angle = pos[t] * inv_freq[i] as one float32
 * product (lm_kernels.cl's rope_store computes the same). sgn is 1
 * (forward) or -1 (backward: the inverse rotation), an exact negation of
 * the sine. Global size [D/2, H, T]; y may be x (a work-item reads both
 * elements of its pair before writing them). */
__kernel void rotary(__global const float *x, __global float *y, __global const int *pos,
                     __global const float *inv_freq, const int h, const int d, const float sgn)
{
    const int i = get_global_id(0), head = get_global_id(1), t = get_global_id(2);
    const int half_d = d / 2;
    if (i >= half_d || head >= h)
        return;
    const size_t off = ((size_t)t * h + head) * d;
    const float a = x[off + i], b = x[off + i + half_d];
    const float angle = (float)pos[t] * inv_freq[i];
    const float c = cos(angle), s = sgn * sin(angle);
    y[off + i] = a * c - b * s;
    y[off + i + half_d] = b * c + a * s;
}

/* out[i] = silu(gate[i]) * up[i] = gate / (1 + exp(-gate)) * up, the form
 * of lm_kernels.cl's swiglu; i < n. out may be gate or up. */
__kernel void swiglu_fwd(__global const float *gate, __global const float *up,
                         __global float *out, const ulong n)
{
    const size_t i = get_global_id(0);
    if (i < n) {
        const float g = gate[i];
        out[i] = g / (1.0f + exp(-g)) * up[i];
    }
}
