/* elementwise.cl - simple elementwise kernels over flat float buffers. */

/* x[i] = value for i < n. global >= n (rounded up by the host). */
__kernel void fill_f32(__global float *x, const ulong n, const float value)
{
    size_t i = get_global_id(0);
    if (i < n)
        x[i] = value;
}

/* x[i] = value for i < n (int buffers, e.g. a default kv_len). */
__kernel void fill_i32(__global int *x, const ulong n, const int value)
{
    size_t i = get_global_id(0);
    if (i < n)
        x[i] = value;
}

/* dst[offset + i] += src[i] for i < n: adds a gradient into a slice of a
 * packed one (e.g. the query third of in_proj_weight's gradient). */
__kernel void add_into(__global float *dst, const ulong offset, __global const float *src,
                       const ulong n)
{
    size_t i = get_global_id(0);
    if (i < n)
        dst[offset + i] += src[i];
}
